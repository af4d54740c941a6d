//! A native test harness: run a plugin's logic with `cargo test`, without WebAssembly and
//! without the engine.
//!
//! [`TestHost`] plays the engine's part: it gives the plugin a route configuration, records
//! what the plugin logs, and returns the plugin's result with the log lines.
//!
//! ```
//! use hms_sync_sdk::testing::{TestHost, json_event};
//! use hms_sync_sdk::{Action, Emission, Event, Handler, Result};
//!
//! struct Greeter;
//! impl Handler for Greeter {
//!     fn handle(event: Event) -> Result<Vec<Action>> {
//!         let greeting = hms_sync_sdk::config::require("greeting")?;
//!         hms_sync_sdk::info!("greeting {}", event.id);
//!         Ok(vec![Emission::new("greeted", greeting).into()])
//!     }
//! }
//!
//! let outcome = TestHost::new()
//!     .with_config("greeting", "hello")
//!     .handle::<Greeter>(json_event("person.created", &serde_json::json!({})));
//! assert_eq!(outcome.result, Ok(vec![Emission::new("greeted", "hello").into()]));
//! assert_eq!(outcome.logs[0].message, "greeting test-event-1");
//! ```
//!
//! Outside a [`TestHost`] (calling your trait method directly in a test), the configuration is
//! empty and log lines are printed to stderr.

use crate::log::Level;
use crate::{Action, Entity, Event, Handler, Resolution, Resolver, Result, Transformer};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The line's level.
    pub level: Level,
    /// The message.
    pub message: String,
}

/// What a plugin returned, with what it logged on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    /// The plugin's result.
    pub result: Result<T>,
    /// The lines the plugin logged, in order.
    pub logs: Vec<LogLine>,
}

/// Stands in for the engine while a plugin runs natively.
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    config: BTreeMap<String, String>,
}

struct Active {
    config: BTreeMap<String, String>,
    logs: Vec<LogLine>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

impl TestHost {
    /// A host with an empty route configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one key of the route's plugin configuration.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Runs a [`Transformer`] on one event.
    pub fn transform<T: Transformer>(&self, event: Event) -> Outcome<Vec<u8>> {
        self.run(|| T::transform(event))
    }

    /// Runs a [`Handler`] on one event.
    pub fn handle<H: Handler>(&self, event: Event) -> Outcome<Vec<Action>> {
        self.run(|| H::handle(event))
    }

    /// Runs a [`Resolver`] on two versions of an entity.
    pub fn resolve<R: Resolver>(&self, current: Entity, incoming: Entity) -> Outcome<Resolution> {
        self.run(|| R::resolve(current, incoming))
    }

    fn run<T>(&self, plugin: impl FnOnce() -> Result<T>) -> Outcome<T> {
        let previous = ACTIVE.replace(Some(Active {
            config: self.config.clone(),
            logs: Vec::new(),
        }));
        let result = plugin();
        let active = ACTIVE.replace(previous);
        Outcome {
            result,
            logs: active.map(|a| a.logs).unwrap_or_default(),
        }
    }
}

/// An event of type `event_type` whose payload is `value` as JSON, as the engine would pass
/// it from the HMS bus: id `test-event-1`, origin `hms`, timestamp 0, no key, version or headers.
pub fn json_event<T: serde::Serialize + ?Sized>(event_type: &str, value: &T) -> Event {
    let payload = serde_json::to_vec(value).expect("a test payload serialises as JSON");
    event(event_type, payload)
}

/// An event of type `event_type` with a raw `application/json` payload (which need not be valid
/// JSON: use it to test how a plugin treats bad input). The other fields are as [`json_event`]'s;
/// change them on the returned value.
pub fn event(event_type: &str, payload: impl Into<Vec<u8>>) -> Event {
    Event {
        id: "test-event-1".to_owned(),
        event_type: event_type.to_owned(),
        origin: "hms".to_owned(),
        key: None,
        version: None,
        timestamp: 0,
        content_type: "application/json".to_owned(),
        payload: payload.into(),
        headers: Vec::new(),
    }
}

/// A version of the entity `key`, carrying `value` as its JSON payload.
pub fn json_entity<T: serde::Serialize + ?Sized>(
    key: &str,
    version: Option<u64>,
    value: &T,
) -> Entity {
    Entity {
        key: key.to_owned(),
        version,
        timestamp: 0,
        event_id: format!("test-event-{}", version.unwrap_or(0)),
        content_type: "application/json".to_owned(),
        payload: serde_json::to_vec(value).expect("a test payload serialises as JSON"),
    }
}

pub(crate) fn log(level: Level, message: &str) {
    ACTIVE.with_borrow_mut(|active| match active {
        Some(active) => active.logs.push(LogLine {
            level,
            message: message.to_owned(),
        }),
        #[allow(clippy::print_stderr)]
        None => eprintln!("[{level:?}] {message}"),
    });
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    ACTIVE.with_borrow(|active| active.as_ref()?.config.get(key).cloned())
}

pub(crate) fn config_entries() -> Vec<(String, String)> {
    ACTIVE.with_borrow(|active| {
        active
            .iter()
            .flat_map(|a| a.config.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}
