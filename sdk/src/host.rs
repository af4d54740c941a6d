//! The two host imports, wherever the plugin runs: the engine's imports inside a component,
//! the native test harness ([`crate::testing`]) everywhere else.

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::bindings::handler::hms::sync::{config, log};
    use crate::log::Level;

    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log(level, message);
    }

    pub(crate) fn config_get(key: &str) -> Option<String> {
        config::get(key)
    }

    pub(crate) fn config_entries() -> Vec<(String, String)> {
        config::entries()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub(crate) use crate::testing::{config_entries, config_get, log};
}

pub(crate) use imp::{config_entries, config_get, log};
