//! What operators read: an event's whole history, dead letters and their replay, the backlog.

use super::events::{Run, StoredEvent};
use super::outbox::{Attempt, OutboxRow};

/// Everything recorded about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHistory {
    /// The event.
    pub event: StoredEvent,
    /// Its runs.
    pub runs: Vec<Run>,
    /// Its outbox rows, each with its attempts.
    pub outbox: Vec<(OutboxRow, Vec<Attempt>)>,
    /// Its dead letters, replayed or not.
    pub dead_letters: Vec<DeadLetter>,
    /// What shadow versions made of it, beside the runs that counted.
    pub shadow_runs: Vec<ShadowRun>,
}

/// What a dead letter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// A delivery that failed for good.
    Delivery,
    /// A plugin run that failed.
    Plugin,
}

impl DeadLetterKind {
    /// The kind's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Delivery => "delivery",
            DeadLetterKind::Plugin => "plugin",
        }
    }

    /// Reads a kind as [`DeadLetterKind::as_str`] writes it.
    pub fn parse(text: &str) -> Option<DeadLetterKind> {
        [DeadLetterKind::Delivery, DeadLetterKind::Plugin]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id.
    pub id: i64,
    /// What it is about.
    pub kind: DeadLetterKind,
    /// The event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The destination ([`CORE_TARGET`](super::CORE_TARGET) for emitted events) or, for a plugin failure, the
    /// plugin.
    pub target: String,
    /// The plugin that ran on the event.
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// The outbox row, for a delivery.
    pub outbox_id: Option<i64>,
    /// The last error.
    pub error: String,
    /// When it died (Unix ms).
    pub created_at: i64,
    /// When it was replayed (Unix ms), if it was.
    pub replayed_at: Option<i64>,
}

/// Which dead letters to list or replay. Set fields narrow the selection (all must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterFilter {
    /// Only these ids.
    pub ids: Vec<i64>,
    /// Only those for this destination (or plugin).
    pub target: Option<String>,
    /// Only those that died at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only those that died before this time (Unix ms).
    pub until: Option<i64>,
    /// Replayed ones too (listing only; replay takes only dead ones).
    pub include_replayed: bool,
    /// At most this many (listing only); 0 means no limit.
    pub limit: usize,
    /// Only those with a greater id (listing only): the page after the one that ended there.
    pub after: Option<i64>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The dead letters queued again.
    pub replayed: Vec<i64>,
    /// Dead letters selected but not replayed, with why (already replayed, unknown id).
    pub skipped: Vec<(i64, String)>,
}

/// How much work is waiting, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events accepted and not yet processed.
    pub pending_events: u64,
    /// Outbox rows waiting for delivery.
    pub pending_deliveries: u64,
    /// When the oldest waiting work was queued (Unix ms): the oldest pending event's acceptance
    /// or the oldest pending delivery's queueing, whichever is older.
    pub oldest_pending_at: Option<i64>,
    /// Dead letters not replayed.
    pub dead_letters: u64,
}

/// What is old enough to remove, as Unix ms cut-offs: everything strictly older goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cutoffs {
    /// Events accepted before this whose work is finished.
    pub finished: i64,
    /// Dead letters (not replayed) created before this no longer keep their event.
    pub dead_letters: i64,
    /// Dedupe keys of events accepted before this are forgotten.
    pub dedupe: i64,
}

/// One round of pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prune {
    /// What is old enough.
    pub cutoffs: Cutoffs,
    /// Look at events accepted after this one (its `seq`): where the last round stopped.
    pub after: i64,
    /// Remove at most this many events, and forget at most this many dedupe keys.
    pub limit: usize,
}

/// What one round of pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events removed, with everything recorded about them.
    pub events: u64,
    /// Dedupe keys forgotten.
    pub dedupe_keys: u64,
    /// Where the next round should go on from, when this one stopped before the cut-off (at
    /// its limit); `None` when every event old enough has been looked at.
    pub next: Option<i64>,
}

/// How much room the store takes, and has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Bytes of the store's files.
    pub bytes: u64,
    /// Bytes free for the store on its file system.
    pub free_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_written() {
        assert_eq!(
            DeadLetterKind::parse("plugin"),
            Some(DeadLetterKind::Plugin)
        );
        assert_eq!(
            DeadLetterKind::parse("delivery"),
            Some(DeadLetterKind::Delivery)
        );
        assert_eq!(DeadLetterKind::parse("other"), None);
    }
}

/// Which events to find (the admin API's search). Set fields narrow the search (all must hold);
/// the newest come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only the event with this id.
    pub id: Option<String>,
    /// Only events about this entity.
    pub key: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events from this system.
    pub origin: Option<String>,
    /// Only events that arrived on one of these routes (`bus:<type>`, `webhook:<path>`), when
    /// any are given.
    pub routes: Vec<String>,
    /// Only events accepted at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only events accepted before this time (Unix ms).
    pub until: Option<i64>,
    /// Only events accepted before this one (its acceptance order): the page after the one that
    /// ended there.
    pub before: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// An event a search found, without its payload, and where its work stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEvent {
    /// The event (its payload left empty).
    pub event: StoredEvent,
    /// Whether some of its actions wait for delivery.
    pub delivering: bool,
    /// Whether it has a dead letter not replayed.
    pub dead: bool,
}

/// The deliveries waiting for one lane (a destination, or [`CORE_TARGET`](super::CORE_TARGET)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneBacklog {
    /// The destination, or [`CORE_TARGET`](super::CORE_TARGET) for emitted events.
    pub lane: String,
    /// Deliveries waiting.
    pub pending: u64,
    /// Of those, how many failed at least once since they were queued (or replayed).
    pub retrying: u64,
    /// When the soonest retry is due (Unix ms).
    pub next_retry_at: Option<i64>,
}

/// A shadow version's run on an event: what it made, against what the active version made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShadowRun {
    /// The event.
    pub event_id: String,
    /// The plugin's place among the route's handlers.
    pub handler: usize,
    /// The plugin.
    pub plugin: String,
    /// The shadow version's hash.
    pub shadow_hash: String,
    /// The active version's hash, whose run counted.
    pub active_hash: String,
    /// `same`, `different` or `failed`.
    pub verdict: String,
    /// The differences (JSON Patch operations with the values they replace), as JSON text.
    pub changes: Option<String>,
    /// The shadow's error, when it failed.
    pub error: Option<String>,
    /// How long the shadow's run took, in microseconds.
    pub duration_us: i64,
    /// When it ran (Unix ms).
    pub ran_at: i64,
}
