//! A native test harness: run a plugin's logic with `cargo test`, without WebAssembly and
//! without the engine.
//!
//! [`TestHost`] plays the engine's part: it gives the plugin a route configuration, records
//! what the plugin logs (cut and capped as the engine does), and returns the plugin's result with
//! the log lines. It checks the result against the same output rules as the engine (the
//! `hms-sync-rules` crate): an action with a header the engine sets itself, an empty
//! destination, an event type such as `..`, or output over the limit makes
//! [`TestHost::transform`], [`TestHost::handle`] and [`TestHost::resolve`] panic with the error
//! code the engine would record (`malformed-output`, `output-too-large`), so the plugin's own
//! `cargo test` fails. [`TestHost::try_handle`] and its siblings return the refusal instead.
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
use hms_sync_rules as rules;
pub use hms_sync_rules::Refusal;
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
#[derive(Debug, Clone)]
pub struct TestHost {
    config: BTreeMap<String, String>,
    output_limit: usize,
    action_limit: usize,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost {
            config: BTreeMap::new(),
            output_limit: rules::DEFAULT_OUTPUT_LIMIT,
            action_limit: rules::DEFAULT_ACTION_LIMIT,
        }
    }
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

    /// Sets the output limit in bytes, as the route's `limits.output` does in the engine
    /// (default: the engine's, 1 MiB).
    pub fn with_output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Sets how many actions a handler may return for one event, as the plugin's
    /// `limits.actions` does in the engine (default: the engine's, 256).
    pub fn with_action_limit(mut self, actions: usize) -> Self {
        self.action_limit = actions;
        self
    }

    /// Runs a [`Transformer`] on one event.
    ///
    /// # Panics
    ///
    /// When the engine would refuse the payload (larger than the output limit).
    pub fn transform<T: Transformer>(&self, event: Event) -> Outcome<Vec<u8>> {
        accepted(self.try_transform::<T>(event))
    }

    /// Runs a [`Handler`] on one event.
    ///
    /// # Panics
    ///
    /// When the engine would refuse the actions (see the module's documentation).
    pub fn handle<H: Handler>(&self, event: Event) -> Outcome<Vec<Action>> {
        accepted(self.try_handle::<H>(event))
    }

    /// Runs a [`Resolver`] on two versions of an entity.
    ///
    /// # Panics
    ///
    /// When the engine would refuse the merged payload (larger than the output limit).
    pub fn resolve<R: Resolver>(&self, current: Entity, incoming: Entity) -> Outcome<Resolution> {
        accepted(self.try_resolve::<R>(current, incoming))
    }

    /// Runs a [`Transformer`] on one event; `Err` when the engine would refuse its payload.
    pub fn try_transform<T: Transformer>(
        &self,
        event: Event,
    ) -> std::result::Result<Outcome<Vec<u8>>, Refusal> {
        let outcome = self.run(|| T::transform(event));
        if let Ok(payload) = &outcome.result {
            rules::check_size(payload.len(), self.output_limit)?;
        }
        Ok(outcome)
    }

    /// Runs a [`Handler`] on one event; `Err` when the engine would refuse its actions.
    pub fn try_handle<H: Handler>(
        &self,
        event: Event,
    ) -> std::result::Result<Outcome<Vec<Action>>, Refusal> {
        let outcome = self.run(|| H::handle(event));
        if let Ok(actions) = &outcome.result {
            rules::check_actions(
                actions.iter().map(view),
                self.output_limit,
                self.action_limit,
            )?;
        }
        Ok(outcome)
    }

    /// Runs a [`Resolver`] on two versions of an entity; `Err` when the engine would refuse
    /// its merged payload.
    pub fn try_resolve<R: Resolver>(
        &self,
        current: Entity,
        incoming: Entity,
    ) -> std::result::Result<Outcome<Resolution>, Refusal> {
        let outcome = self.run(|| R::resolve(current, incoming));
        if let Ok(Resolution::Merged(payload)) = &outcome.result {
            rules::check_size(payload.len(), self.output_limit)?;
        }
        Ok(outcome)
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

/// The outcome, or a panic saying why the engine would refuse it.
fn accepted<T>(checked: std::result::Result<Outcome<T>, Refusal>) -> Outcome<T> {
    checked.unwrap_or_else(|refusal| {
        panic!(
            "the engine would refuse this output ({}): {refusal}",
            refusal.code()
        )
    })
}

/// How the output rules see one of the SDK's actions.
fn view(action: &Action) -> rules::Action<'_> {
    match action {
        Action::Deliver(d) => rules::Action::Deliver {
            destination: &d.destination,
            body: &d.body,
            content_type: d.content_type.as_deref(),
            headers: d
                .headers
                .iter()
                .map(|h| rules::Header {
                    name: &h.name,
                    value: &h.value,
                })
                .collect(),
            key: d.key.as_deref(),
            version: d.version,
        },
        Action::Emit(e) => rules::Action::Emit {
            event_type: &e.event_type,
            payload: &e.payload,
            content_type: e.content_type.as_deref(),
            key: e.key.as_deref(),
            version: e.version,
        },
        Action::Drop(reason) => rules::Action::Drop { reason },
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
        // As in the engine: long lines are cut, and lines past the per-event cap dropped.
        Some(active) if active.logs.len() >= rules::MAX_LOG_LINES => {}
        Some(active) => active.logs.push(LogLine {
            level,
            message: rules::truncate_log_line(message.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, Emission};

    struct SetsEngineHeader;
    impl Handler for SetsEngineHeader {
        fn handle(_: Event) -> Result<Vec<Action>> {
            Ok(vec![
                Delivery::new("state", "{}")
                    .with_header("hms-hops", "0")
                    .into(),
            ])
        }
    }

    struct EmitsDotDot;
    impl Handler for EmitsDotDot {
        fn handle(_: Event) -> Result<Vec<Action>> {
            Ok(vec![Emission::new("..", "{}").into()])
        }
    }

    struct Big;
    impl Transformer for Big {
        fn transform(_: Event) -> Result<Vec<u8>> {
            Ok(vec![b'x'; 100])
        }
    }

    struct Chatty;
    impl Transformer for Chatty {
        fn transform(_: Event) -> Result<Vec<u8>> {
            for _ in 0..1000 {
                crate::info!("{}", "x".repeat(10_000));
            }
            Ok(Vec::new())
        }
    }

    fn event() -> Event {
        json_event("t", &serde_json::json!({}))
    }

    #[test]
    fn output_the_engine_refuses_is_refused_here_with_the_same_code() {
        let refusal = TestHost::new()
            .try_handle::<SetsEngineHeader>(event())
            .unwrap_err();
        assert_eq!(refusal.code(), "malformed-output");
        assert!(refusal.to_string().contains("`hms-hops`"), "{refusal}");
        let refusal = TestHost::new()
            .try_handle::<EmitsDotDot>(event())
            .unwrap_err();
        assert!(refusal.to_string().contains("empty segment"), "{refusal}");
        let refusal = TestHost::new()
            .with_output_limit(10)
            .try_transform::<Big>(event())
            .unwrap_err();
        assert_eq!(
            refusal,
            Refusal::TooLarge {
                size: 100,
                limit: 10
            }
        );
        assert!(TestHost::new().try_transform::<Big>(event()).is_ok());
    }

    #[test]
    #[should_panic(expected = "the engine would refuse this output (malformed-output)")]
    fn a_refused_output_fails_the_plugins_own_test() {
        let _ = TestHost::new().handle::<SetsEngineHeader>(event());
    }

    #[test]
    fn logs_are_cut_and_capped_as_the_engine_does() {
        let outcome = TestHost::new().transform::<Chatty>(event());
        assert_eq!(outcome.logs.len(), rules::MAX_LOG_LINES);
        assert!(outcome.logs[0].message.ends_with("bytes cut)"));
    }
}
