//! The answers an operator's console needs beyond single records: a search of events, the
//! overview of the last hour, and the running configuration with its secrets masked.

use crate::store;
use serde::{Deserialize, Serialize};

/// `GET /admin/events`: which events to find. Set fields narrow the search; empty ones are
/// ignored (as a form sends them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventSearch {
    /// The event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The entity key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The event type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The system it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Accepted at or after this time (RFC 3339 or Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Accepted before this time (RFC 3339 or Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The page after the one whose `next` this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// At most this many (default 50, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The answer of `GET /admin/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    /// The events found, newest first.
    pub events: Vec<EventSummary>,
    /// When the page is full: the `before` that asks for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// An event found, without its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// Its id.
    pub id: String,
    /// The route it arrived on: `bus:<type>` or `webhook:<path>`.
    pub route: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The system it came from.
    pub origin: String,
    /// The entity key.
    pub key: Option<String>,
    /// The entity version.
    pub version: Option<u64>,
    /// When it was accepted.
    pub accepted_at: i64,
    /// When it was processed.
    pub processed_at: Option<i64>,
    /// Where its work stands: `processing` (a handler has yet to run), `delivering` (actions
    /// wait), `failed` (a dead letter not replayed) or `done`.
    pub state: String,
}

/// Where an event's work stands: `failed` (a dead letter not replayed), `processing` (a handler
/// has yet to run), `delivering` (actions wait) or `done`.
pub fn work_state(dead: bool, processed: bool, delivering: bool) -> &'static str {
    if dead {
        "failed"
    } else if !processed {
        "processing"
    } else if delivering {
        "delivering"
    } else {
        "done"
    }
}

impl super::EventHistory {
    /// Where the event's work stands (see [`work_state`]).
    pub fn state(&self) -> &'static str {
        work_state(
            self.dead_letters.iter().any(|d| !d.replayed),
            self.event.processed_at.is_some(),
            self.actions.iter().any(|a| a.state == "pending"),
        )
    }
}

impl From<store::FoundEvent> for EventSummary {
    fn from(f: store::FoundEvent) -> Self {
        let state = work_state(f.dead, f.event.processed_at.is_some(), f.delivering);
        let e = f.event.event;
        EventSummary {
            id: e.id,
            route: f.event.route.to_string(),
            event_type: e.event_type,
            origin: e.origin,
            key: e.key,
            version: e.version,
            accepted_at: f.event.accepted_at,
            processed_at: f.event.processed_at,
            state: state.to_owned(),
        }
    }
}

/// `GET /admin/overview`: the last hour of this engine, what waits, and how each destination
/// and plugin fares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// When it was made (Unix ms).
    pub now: i64,
    /// Each of the last 60 minutes, oldest first; the last is the current, partial one.
    pub minutes: Vec<MinuteCounts>,
    /// What waits.
    pub backlog: BacklogView,
    /// Each destination (and `hms-core`, when emitted events go to the core).
    pub destinations: Vec<DestinationHealth>,
    /// Each configured plugin.
    pub plugins: Vec<PluginHealth>,
}

/// One minute's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinuteCounts {
    /// The minute's start (Unix ms).
    pub at: i64,
    /// Events accepted.
    pub accepted: u64,
    /// Deliveries that succeeded.
    pub delivered: u64,
    /// Plugin runs that failed and deliveries that gave up (each a dead letter).
    pub failed: u64,
    /// Deliveries not sent because the target held a newer version.
    pub superseded: u64,
}

/// What waits, as the store counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BacklogView {
    /// Events accepted and not yet processed.
    pub pending_events: u64,
    /// Deliveries waiting.
    pub pending_deliveries: u64,
    /// How long the oldest waiting work has waited, in milliseconds.
    pub oldest_pending_ms: Option<i64>,
    /// Dead letters not replayed.
    pub dead_letters: u64,
}

/// How one destination fares over the last hour, and now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationHealth {
    /// Its name (`hms-core` for emitted events).
    pub name: String,
    /// Attempts that delivered in the last hour.
    pub delivered: u64,
    /// Attempts that failed and will be tried again.
    pub retried: u64,
    /// Attempts that gave up (dead letters).
    pub dead: u64,
    /// Deliveries superseded before they were sent.
    pub superseded: u64,
    /// Delivered attempts over all attempts, when there were any.
    pub success_rate: Option<f64>,
    /// The median attempt time, in milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile attempt time, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Requests in flight now.
    pub in_flight: i64,
    /// How many it may have in flight.
    pub concurrency: usize,
    /// Deliveries waiting.
    pub pending: u64,
    /// Of those, how many failed at least once and wait for a retry.
    pub retrying: u64,
    /// When the soonest retry is due (Unix ms).
    pub next_retry_at: Option<i64>,
}

/// How one plugin fares over the last hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginHealth {
    /// Its name.
    pub name: String,
    /// The active version's hash.
    pub active: Option<String>,
    /// Runs in the last hour.
    pub runs: u64,
    /// Runs per minute, over the last hour.
    pub runs_per_minute: f64,
    /// Failed runs over all runs, when there were any.
    pub error_rate: Option<f64>,
    /// The 99th percentile run time, in milliseconds.
    pub p99_ms: Option<f64>,
}

/// `GET /admin/config`: the running routes and destinations, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    /// Every route: HMS bus events and external webhooks.
    pub routes: Vec<RouteView>,
    /// Every destination.
    pub destinations: Vec<DestinationView>,
    /// Where emitted events go: the core's URL (masked), if configured.
    pub core: Option<String>,
    /// The HMS bus.
    pub bus: BusView,
    /// The store: `sqlite` or `nats`.
    pub store: String,
}

/// The HMS bus: where HMS events come from and emitted events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BusView {
    /// `http` (`POST /events/{type}` and the core's URL) or `nats`.
    pub kind: String,
    /// On NATS: the servers (users and passwords masked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// On NATS: the subject of events of type `t` is `<subjectPrefix>.t`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
    /// On NATS: the stream read and published to (none: plain subjects, at most once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// On NATS: the durable consumer (or queue group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
}

/// One route, from where events arrive to where the results go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// `bus` or `webhook`.
    pub source: String,
    /// The event type (bus) or the path (webhook).
    pub on: String,
    /// For a webhook: the system that calls it.
    pub system: Option<String>,
    /// For a webhook: how many signing secrets it checks (never the secrets).
    pub secrets: usize,
    /// The plugin that handles the events.
    pub plugin: String,
    /// Where a transformer's result goes: `deliver` (a destination) or `emit` (an HMS event
    /// type); `actions` when the plugin is a handler that decides itself.
    pub output: String,
    /// The destination or event type, for a transformer.
    pub target: Option<String>,
    /// The conflict strategy.
    pub conflict: String,
}

/// One destination, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView {
    /// Its name.
    pub name: String,
    /// The HTTP method.
    pub method: String,
    /// The URL, with any user, password and query values masked.
    pub url: String,
    /// The headers it sends: names only, values masked.
    pub headers: Vec<String>,
    /// How many signing secrets it signs with (never the secrets).
    pub secrets: usize,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// How long one attempt may take, in milliseconds.
    pub timeout_ms: u64,
}
