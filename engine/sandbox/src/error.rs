//! What can go wrong loading a plugin or running it on one event.

use std::time::Duration;

/// Why a component was refused at load. Nothing is loaded when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly component: {0}")]
    NotWasm(String),
    /// The bytes are a core module that cannot be made a component: it does not say which
    /// world it implements, or it imports what a component cannot (a `wasm32-wasip1` build).
    #[error(
        "this is a core WebAssembly module that cannot be made a component ({0}): build the \
         plugin with the SDK (or `wit-bindgen`) for `wasm32-unknown-unknown`, or as a component \
         for `wasm32-wasip2`"
    )]
    CoreModule(String),
    /// The component failed to validate or compile.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// The component implements neither plugin world, or both.
    #[error("{0}")]
    WrongWorld(String),
    /// The component exports the world's interface with the wrong shape.
    #[error("{0}")]
    WrongShape(String),
    /// The component could not be instantiated (its start-up code trapped, or it needs more
    /// memory than the default limit).
    #[error("{0}")]
    Instantiate(String),
    /// The component imports something the sandbox does not provide.
    #[error("{0}")]
    UnsupportedImport(String),
    /// The component was built against a version of the WIT package this engine does not load.
    #[error("{0}")]
    WitVersion(String),
}

/// The kind of error a plugin reported itself (the WIT `error-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestErrorKind {
    /// The event is not what the plugin can read.
    InvalidInput,
    /// The plugin refuses the event on purpose.
    Rejected,
    /// The plugin failed.
    Internal,
}

impl GuestErrorKind {
    /// The kind's name as the WIT spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestErrorKind::InvalidInput => "invalid-input",
            GuestErrorKind::Rejected => "rejected",
            GuestErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for GuestErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a plugin produced no result for one event. The engine, and the next event, are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The plugin returned its own error.
    #[error("the plugin failed the event ({kind}): {message}")]
    Plugin {
        /// What kind of failure the plugin reported.
        kind: GuestErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The plugin ran past its wall-clock deadline and was interrupted.
    #[error("the plugin ran past its {}ms deadline and was stopped", limit.as_millis())]
    Timeout {
        /// The deadline.
        limit: Duration,
    },
    /// The plugin asked for more linear memory than its limit.
    #[error(
        "the plugin tried to grow its memory to {requested} bytes, over its limit of {limit} bytes"
    )]
    MemoryLimit {
        /// The size the plugin asked for, in bytes.
        requested: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The plugin returned more output than its limit.
    #[error("the plugin returned {size} bytes of output, over its limit of {limit} bytes")]
    OutputTooLarge {
        /// The size of the output, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A handler returned more actions than its limit.
    #[error("the plugin returned {count} actions, over its limit of {limit} per event")]
    TooManyActions {
        /// How many it returned.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The plugin trapped: a panic, an `unreachable`, a stack overflow, a bad memory access.
    #[error("the plugin crashed: {reason}")]
    Trap {
        /// The trap, followed by the last lines the plugin wrote to stderr (a panic message).
        reason: String,
    },
    /// The plugin returned a result the engine cannot act on.
    #[error("the plugin returned a malformed result: {0}")]
    Malformed(String),
    /// The plugin implements another world than the call needs (a resolver run on an event).
    #[error("{0}")]
    WrongWorld(String),
    /// A fresh instance could not be made. Not the plugin's fault when every instance slot is
    /// busy; see [`RunError::is_capacity`].
    #[error("could not start a plugin instance: {reason}")]
    Instantiate {
        /// What failed.
        reason: String,
        /// Whether every instance slot of the pool was busy (try again later).
        capacity: bool,
    },
}

impl RunError {
    /// A short, stable name for the error, for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Plugin { kind, .. } => kind.as_str(),
            RunError::Timeout { .. } => "timeout",
            RunError::MemoryLimit { .. } => "memory-limit",
            RunError::OutputTooLarge { .. } | RunError::TooManyActions { .. } => "output-too-large",
            RunError::Trap { .. } => "trap",
            RunError::Malformed(_) => "malformed-output",
            RunError::WrongWorld(_) => "wrong-world",
            RunError::Instantiate { .. } => "instantiate",
        }
    }

    /// Whether the failure came from the engine being busy rather than from the plugin or the
    /// event, so running the event again later can succeed.
    pub fn is_capacity(&self) -> bool {
        matches!(self, RunError::Instantiate { capacity: true, .. })
    }
}

impl From<hms_sync_rules::Refusal> for RunError {
    fn from(refusal: hms_sync_rules::Refusal) -> Self {
        match refusal {
            hms_sync_rules::Refusal::TooLarge { size, limit } => {
                RunError::OutputTooLarge { size, limit }
            }
            hms_sync_rules::Refusal::TooManyActions { count, limit } => {
                RunError::TooManyActions { count, limit }
            }
            hms_sync_rules::Refusal::Malformed(reason) => RunError::Malformed(reason),
        }
    }
}
