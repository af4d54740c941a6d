//! Accepted events, the routes they arrived on, and the runs processing made.

use super::outbox::OutboxAction;
use crate::sandbox::event::Event;
use std::fmt;

/// Where an event arrived: the route it runs on.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Route {
    /// The HMS bus, for events of this type (`POST /events/{type}`).
    Bus(String),
    /// A webhook, at this path.
    Webhook(String),
}

/// The kind of listener an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The HMS bus.
    Bus,
    /// An external webhook.
    Webhook,
}

impl Source {
    /// `bus` or `webhook`, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Bus => "bus",
            Source::Webhook => "webhook",
        }
    }
}

impl Route {
    /// The listener the route belongs to.
    pub fn source(&self) -> Source {
        match self {
            Route::Bus(_) => Source::Bus,
            Route::Webhook(_) => Source::Webhook,
        }
    }

    /// Reads a route as [`Route`]'s `Display` writes it (`bus:<type>`, `webhook:<path>`).
    pub fn parse(text: &str) -> Option<Route> {
        match text.split_once(':')? {
            ("bus", event_type) => Some(Route::Bus(event_type.to_owned())),
            ("webhook", path) => Some(Route::Webhook(path.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Bus(event_type) => write!(f, "bus:{event_type}"),
            Route::Webhook(path) => write!(f, "webhook:{path}"),
        }
    }
}

/// An event to commit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewEvent {
    /// The event, with the id the listener gave it.
    #[serde(with = "super::writes::EventDef")]
    pub event: Event,
    /// The route it arrived on.
    pub route: Route,
    /// The sender's idempotency key, when it sent one: a second event with the same key on the
    /// same route is not stored again.
    pub dedupe_key: Option<String>,
    /// When it was accepted (Unix ms).
    pub accepted_at: i64,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The event's id: the new one, or the first event's when this was a duplicate.
    pub id: String,
    /// Whether an event with the same dedupe key was already stored.
    pub duplicate: bool,
}

/// An accepted event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Acceptance order.
    pub seq: i64,
    /// The route it arrived on.
    pub route: Route,
    /// The event.
    pub event: Event,
    /// When it was accepted (Unix ms).
    pub accepted_at: i64,
    /// When it was processed (Unix ms), if it was.
    pub processed_at: Option<i64>,
}

/// An event waiting to be processed, with the handlers that already ran on it (whose runs
/// stand: only a replayed failed run makes its handler run again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// The event.
    pub stored: StoredEvent,
    /// The indexes of the handlers not to run again.
    pub done_handlers: Vec<usize>,
    /// The event's replay generation when it was read (see [`Processed::generation`]).
    pub generation: i64,
}

/// How a plugin run ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RunOutcome {
    /// The plugin ran and its actions were kept.
    Ok,
    /// The plugin failed the event; the code is the error's (`invalid-input`, `timeout`, ...).
    Failed(String),
    /// The event's route is no longer configured.
    NoRoute,
    /// The engine could not process the event (a panic, a result the store kept refusing).
    EngineError,
}

impl RunOutcome {
    /// The outcome's name in records: `ok`, `no-route`, `engine-error`, or the error's code.
    pub fn as_str(&self) -> &str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed(code) => code,
            RunOutcome::NoRoute => "no-route",
            RunOutcome::EngineError => "engine-error",
        }
    }

    /// Reads an outcome as [`RunOutcome::as_str`] writes it.
    pub fn parse(text: &str) -> RunOutcome {
        match text {
            "ok" => RunOutcome::Ok,
            "no-route" => RunOutcome::NoRoute,
            "engine-error" => RunOutcome::EngineError,
            code => RunOutcome::Failed(code.to_owned()),
        }
    }
}

/// One plugin run on an event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// The handler's index among its route's handlers.
    pub handler: usize,
    /// The plugin's name (empty when no plugin ran).
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The error's message, when it failed.
    pub error: Option<String>,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// When it ran (Unix ms).
    pub ran_at: i64,
    /// When the failed run was replayed (Unix ms), if it was.
    pub replayed_at: Option<i64>,
}

/// A run to record, with the actions it produced, in order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// The run.
    pub run: Run,
    /// Its actions, ready to send.
    pub actions: Vec<OutboxAction>,
}

/// A processed event: its runs and their actions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Processed {
    /// The event's id.
    pub event_id: String,
    /// The event's acceptance order.
    pub event_seq: i64,
    /// One record per handler that ran.
    pub runs: Vec<RunRecord>,
    /// When processing finished (Unix ms).
    pub processed_at: i64,
    /// The replay generation the event had when it was read. When a replay came in meanwhile,
    /// the runs are recorded but the event stays pending, so the replayed handler runs too.
    pub generation: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_written() {
        for route in [
            Route::Bus("tax.rate.updated".into()),
            Route::Webhook("/webhook/tax-rate".into()),
        ] {
            assert_eq!(Route::parse(&route.to_string()), Some(route));
        }
        assert_eq!(Route::parse("queue:x"), None);
        assert_eq!(Route::Bus("t".into()).source().as_str(), "bus");
        for outcome in [
            RunOutcome::Ok,
            RunOutcome::NoRoute,
            RunOutcome::EngineError,
            RunOutcome::Failed("timeout".into()),
        ] {
            assert_eq!(RunOutcome::parse(outcome.as_str()), outcome);
        }
    }
}
