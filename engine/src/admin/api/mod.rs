//! The admin API's answers and requests: its own types, camelCase on the wire, made from the
//! store's records (so renaming a store field never changes the API). The `sync-engine` CLI
//! reads the same types back.
//!
//! Times are Unix milliseconds. Payloads and bodies are text (invalid UTF-8 replaced).

use crate::store;
use serde::{Deserialize, Serialize};

mod overview;
mod plugins;
mod trial;
pub use overview::*;
pub use plugins::*;
pub use trial::*;

pub use crate::http::error::{ErrorAnswer, ErrorDetail};

/// `GET /admin/dead-letters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetters {
    /// The dead letters, oldest first.
    pub dead_letters: Vec<DeadLetter>,
    /// When the page is full: the `after` that asks for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Its id.
    pub id: i64,
    /// `delivery` or `plugin`.
    pub kind: String,
    /// The event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The destination (`hms-core` for emitted events) or, for a plugin failure, the plugin.
    pub target: String,
    /// The plugin that ran on the event.
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// The action, for a delivery.
    pub action_id: Option<i64>,
    /// The last error.
    pub error: String,
    /// When it died.
    pub created_at: i64,
    /// Whether it was replayed.
    pub replayed: bool,
    /// When it was replayed.
    pub replayed_at: Option<i64>,
}

impl From<store::DeadLetter> for DeadLetter {
    fn from(d: store::DeadLetter) -> Self {
        DeadLetter {
            id: d.id,
            kind: d.kind.as_str().to_owned(),
            event_id: d.event_id,
            event_type: d.event_type,
            target: d.target,
            plugin: d.plugin,
            plugin_hash: d.plugin_hash,
            action_id: d.outbox_id,
            error: d.error,
            created_at: d.created_at,
            replayed: d.replayed_at.is_some(),
            replayed_at: d.replayed_at,
        }
    }
}

/// `GET /admin/dead-letters/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterDetail {
    /// The dead letter.
    pub dead_letter: DeadLetter,
    /// Its event's history.
    pub event: Option<EventHistory>,
}

/// Which dead letters to list (query string) or replay (JSON body). Set fields narrow the
/// selection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selection {
    /// Only these ids (replay only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<i64>,
    /// Only those for this destination (`hms-core` for emitted events) or plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Only those that died at or after this time (RFC 3339 or Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only those that died before this time (RFC 3339 or Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Listing: replayed ones too. Replay: every dead letter, when nothing else is given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Listing: at most this many (default 100, at most 1,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Listing: the page after this id (the `next` of the page before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
}

/// `POST /admin/dead-letters/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    /// The dead letters queued again.
    pub replayed: Vec<i64>,
    /// Those selected but not replayed, with why.
    pub skipped: Vec<Skipped>,
}

/// A dead letter a replay skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// Its id.
    pub id: i64,
    /// Why (already replayed, unknown id).
    pub reason: String,
}

impl From<store::ReplayOutcome> for Replayed {
    fn from(o: store::ReplayOutcome) -> Self {
        Replayed {
            replayed: o.replayed,
            skipped: o
                .skipped
                .into_iter()
                .map(|(id, reason)| Skipped { id, reason })
                .collect(),
        }
    }
}

/// `GET /admin/events/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventAnswer {
    /// The event's history.
    pub event: EventHistory,
}

/// Everything recorded about one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHistory {
    /// The event as accepted.
    pub event: Event,
    /// Each plugin run on it.
    pub runs: Vec<Run>,
    /// What the runs asked for, each with its attempts.
    pub actions: Vec<ActionRecord>,
    /// Its dead letters, replayed or not.
    pub dead_letters: Vec<DeadLetter>,
    /// What shadow versions made of it, beside the runs that counted.
    #[serde(default)]
    pub shadow_runs: Vec<ShadowRun>,
}

impl From<store::EventHistory> for EventHistory {
    fn from(h: store::EventHistory) -> Self {
        EventHistory {
            event: h.event.into(),
            runs: h.runs.into_iter().map(Into::into).collect(),
            actions: h.outbox.into_iter().map(Into::into).collect(),
            dead_letters: h.dead_letters.into_iter().map(Into::into).collect(),
            shadow_runs: h.shadow_runs.into_iter().map(Into::into).collect(),
        }
    }
}

/// A shadow version's run on the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowRun {
    /// The handler's index among its route's handlers.
    pub handler: usize,
    /// The plugin.
    pub plugin: String,
    /// The shadow version's hash.
    pub shadow_hash: String,
    /// The active version's hash, whose run counted.
    pub active_hash: String,
    /// `same`, `different` or `failed`.
    pub verdict: String,
    /// What differs from what the active version made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The shadow's error, when it failed.
    pub error: Option<String>,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// When it ran.
    pub ran_at: i64,
}

impl From<store::ShadowRun> for ShadowRun {
    fn from(r: store::ShadowRun) -> Self {
        ShadowRun {
            handler: r.handler,
            plugin: r.plugin,
            shadow_hash: r.shadow_hash,
            active_hash: r.active_hash,
            verdict: r.verdict,
            changes: r
                .changes
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
            error: r.error,
            duration_us: r.duration_us,
            ran_at: r.ran_at,
        }
    }
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
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
    /// When the change happened.
    pub timestamp: i64,
    /// The payload's media type.
    pub content_type: String,
    /// The payload.
    pub payload: String,
    /// The inbound headers plugins see.
    pub headers: Vec<Header>,
    /// The systems the update crossed before it came here.
    pub hops: u32,
    /// Those systems, oldest first, ending with the one that handed it to the engine.
    pub path: Vec<String>,
    /// When it was accepted.
    pub accepted_at: i64,
    /// When it was processed.
    pub processed_at: Option<i64>,
}

impl From<store::StoredEvent> for Event {
    fn from(s: store::StoredEvent) -> Self {
        let e = s.event;
        Event {
            id: e.id,
            route: s.route.to_string(),
            event_type: e.event_type,
            origin: e.origin,
            key: e.key,
            version: e.version,
            timestamp: e.timestamp,
            content_type: e.content_type,
            payload: text(e.payload),
            headers: e.headers.into_iter().map(Into::into).collect(),
            hops: e.hops,
            path: e.path,
            accepted_at: s.accepted_at,
            processed_at: s.processed_at,
        }
    }
}

/// A header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

impl From<crate::sandbox::Header> for Header {
    fn from(h: crate::sandbox::Header) -> Self {
        Header {
            name: h.name,
            value: h.value,
        }
    }
}

/// A plugin run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The handler's index among its route's handlers.
    pub handler: usize,
    /// The plugin.
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// `ok`, `no-route`, `engine-error`, or the plugin's error code.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// When it ran.
    pub ran_at: i64,
    /// When the failed run was replayed.
    pub replayed_at: Option<i64>,
}

impl From<store::Run> for Run {
    fn from(r: store::Run) -> Self {
        Run {
            handler: r.handler,
            outcome: r.outcome.as_str().to_owned(),
            plugin: r.plugin,
            plugin_hash: r.plugin_hash,
            error: r.error,
            duration_us: r.duration_us,
            ran_at: r.ran_at,
            replayed_at: r.replayed_at,
        }
    }
}

/// One action of a run, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    /// Its id.
    pub id: i64,
    /// `deliver`, `emit` or `drop`.
    pub kind: String,
    /// The destination, or the emitted event's type; none for a drop.
    pub target: Option<String>,
    /// `pending`, `delivered`, `dead`, `dropped` or `superseded`.
    pub state: String,
    /// Why it was not sent: the drop reason, an echo, the hop limit, a newer version held.
    pub reason: Option<String>,
    /// The event whose version won, when superseded.
    pub superseded_by: Option<String>,
    /// The key sent with every attempt (`idempotency-key`, `webhook-id`).
    pub idempotency_key: String,
    /// The entity key.
    pub key: Option<String>,
    /// The entity version.
    pub version: Option<u64>,
    /// When this version was made.
    pub timestamp: i64,
    /// The body's media type.
    pub content_type: String,
    /// The body.
    pub body: String,
    /// The route's conflict strategy.
    pub conflict: String,
    /// The systems the update will have crossed when it arrives (sent as `hms-hops`).
    pub hops: u32,
    /// The systems it passed through, oldest first (sent as `hms-path`).
    pub path: Vec<String>,
    /// When the next attempt is due (while pending).
    pub next_attempt_at: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: i64,
    /// When it reached its final state.
    pub finished_at: Option<i64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

impl From<(store::OutboxRow, Vec<store::Attempt>)> for ActionRecord {
    fn from((row, attempts): (store::OutboxRow, Vec<store::Attempt>)) -> Self {
        let a = row.action;
        let pending = row.state == store::OutboxState::Pending;
        ActionRecord {
            id: row.id,
            kind: a.kind.as_str().to_owned(),
            target: (a.kind != store::OutboxKind::Drop).then_some(a.target),
            state: row.state.as_str().to_owned(),
            reason: a.reason,
            superseded_by: row.superseded_by,
            idempotency_key: a.idempotency_key,
            key: a.key,
            version: a.version,
            timestamp: a.timestamp,
            content_type: a.content_type,
            body: text(a.body),
            conflict: a.conflict.as_str().to_owned(),
            hops: a.hops,
            path: a.path,
            next_attempt_at: pending.then_some(row.next_attempt_at),
            last_error: row.last_error,
            created_at: row.created_at,
            finished_at: row.finished_at,
            attempts: attempts.into_iter().map(Into::into).collect(),
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// Its number over the action's whole life, from 1.
    pub number: u32,
    /// When it started.
    pub started_at: i64,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

impl From<store::Attempt> for Attempt {
    fn from(a: store::Attempt) -> Self {
        Attempt {
            number: a.number,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status: a.status,
            error: a.error,
            outcome: a.outcome.as_str().to_owned(),
        }
    }
}

/// Bytes as text, invalid UTF-8 replaced.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Which entity, for `GET` and `DELETE /admin/entities`: a destination's or an emitted event
/// type's, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityQuery {
    /// The destination the entity is delivered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Or the event type it is emitted as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit: Option<String>,
    /// The entity key.
    pub key: String,
}

/// What a target holds for an entity: the last version it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    /// `deliver` or `emit`.
    pub kind: String,
    /// The destination or the event type.
    pub target: String,
    /// The entity key.
    pub key: String,
    /// The version held, when the updates carry versions.
    pub version: Option<u64>,
    /// Its timestamp (Unix ms).
    pub timestamp: i64,
    /// The event that carried it.
    pub event_id: String,
}

impl Entity {
    /// The state `entity` holds, as the API shows it.
    pub(crate) fn new(entity: &store::EntityRef, state: store::EntityState) -> Self {
        Entity {
            kind: entity.kind.as_str().to_owned(),
            target: entity.target.clone(),
            key: entity.key.clone(),
            version: state.version,
            timestamp: state.timestamp,
            event_id: state.event_id,
        }
    }
}

/// `GET /admin/entities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityAnswer {
    /// What the target holds.
    pub entity: Entity,
}

/// `DELETE /admin/entities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityReset {
    /// What the target held, now forgotten.
    pub reset: Entity,
    /// Who reset it, as the logs and records name the admin token.
    pub by: String,
}
