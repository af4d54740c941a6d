//! Logging into the engine's structured logs.
//!
//! Every line is recorded with the plugin's name and version and the id of the event being
//! handled. Use the macros [`trace!`](crate::trace), [`debug!`](crate::debug),
//! [`info!`](crate::info), [`warn!`](crate::warn) and [`error!`](crate::error), which take
//! `format!` arguments, or call [`log`] directly. Output a plugin prints to stdout or stderr is
//! recorded too, line by line, but without a level.

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing, normally off.
    Trace,
    /// Detail useful while debugging a plugin.
    Debug,
    /// A normal, noteworthy step.
    Info,
    /// Something unexpected that the plugin could handle.
    Warn,
    /// Something failed.
    Error,
}

/// Records one log line at the given level.
pub fn log(level: Level, message: &str) {
    crate::host::log(level, message);
}

/// Logs a `format!` message at [`Level::Trace`].
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs a `format!` message at [`Level::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs a `format!` message at [`Level::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs a `format!` message at [`Level::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs a `format!` message at [`Level::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)+)) };
}
