//! Actions ready to send (outbox rows), their attempts, and the conflict state deliveries
//! leave.

use super::CORE_TARGET;
use crate::config::Strategy;
use crate::sandbox::event::Header;

/// What an outbox row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OutboxKind {
    /// Deliver the body to a named destination.
    Deliver,
    /// Emit an event on the HMS bus (through the core).
    Emit,
    /// Nothing: the plugin dropped the event, for the row's reason.
    Drop,
}

impl OutboxKind {
    /// The kind's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Deliver => "deliver",
            OutboxKind::Emit => "emit",
            OutboxKind::Drop => "drop",
        }
    }

    /// Reads a kind as [`OutboxKind::as_str`] writes it.
    pub fn parse(text: &str) -> Option<OutboxKind> {
        [OutboxKind::Deliver, OutboxKind::Emit, OutboxKind::Drop]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for its next attempt.
    Pending,
    /// A receiver accepted it.
    Delivered,
    /// A dead letter: a permanent error, or its attempts or time ran out. It can be replayed.
    Dead,
    /// Not sent: a drop action, an echo back to the system the update came from, or an update
    /// past the hop limit; the row's reason says which.
    Dropped,
    /// Not sent: the destination already holds a newer version of the entity.
    Superseded,
}

impl OutboxState {
    /// The state's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
            OutboxState::Dropped => "dropped",
            OutboxState::Superseded => "superseded",
        }
    }

    /// Reads a state as [`OutboxState::as_str`] writes it.
    pub fn parse(text: &str) -> Option<OutboxState> {
        [
            OutboxState::Pending,
            OutboxState::Delivered,
            OutboxState::Dead,
            OutboxState::Dropped,
            OutboxState::Superseded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One action of a plugin, ready to send: what an outbox row asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxAction {
    /// What it asks for.
    pub kind: OutboxKind,
    /// The destination's name, or the emitted event's type; empty for a drop.
    pub target: String,
    /// Why it is not sent, when it is not: the plugin's drop reason, an echo, the hop limit, or
    /// (once superseded) the newer version the destination holds.
    pub reason: Option<String>,
    /// The key sent with every attempt; the same for every retry.
    pub idempotency_key: String,
    /// The origin of the event that caused it.
    pub origin: String,
    /// The body's media type.
    pub content_type: String,
    /// Extra request headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
    /// The entity key.
    pub key: Option<String>,
    /// The entity version.
    pub version: Option<u64>,
    /// When this version was made (Unix ms).
    pub timestamp: i64,
    /// The systems the update will have crossed when it arrives (sent as `hms-hops`).
    pub hops: u32,
    /// The systems the update passed through, oldest first (sent as `hms-path`).
    pub path: Vec<String>,
    /// The route's conflict strategy.
    pub conflict: Strategy,
    /// The resolver plugin, for the `plugin` strategy.
    pub resolver: Option<String>,
}

impl OutboxAction {
    /// The name of the row's target as dead letters and metrics give it: the destination, or
    /// [`CORE_TARGET`] for an emitted event.
    pub fn target_name(&self) -> &str {
        match self.kind {
            OutboxKind::Emit => CORE_TARGET,
            _ => &self.target,
        }
    }

    /// The entity the row updates, when it has a key.
    pub fn entity(&self) -> Option<EntityRef> {
        self.key.as_ref().map(|key| EntityRef {
            kind: self.kind,
            target: self.target.clone(),
            key: key.clone(),
        })
    }
}

/// One entity at one target: (outbox kind, destination or event type, entity key). Deliveries
/// to it go one at a time, in order, and its conflict state is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EntityRef {
    /// Deliveries or emitted events.
    pub kind: OutboxKind,
    /// The destination's name or the event type.
    pub target: String,
    /// The entity key.
    pub key: String,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The row's id.
    pub id: i64,
    /// The event that caused it.
    pub event_id: String,
    /// That event's acceptance order.
    pub event_seq: i64,
    /// What it asks for.
    pub action: OutboxAction,
    /// Where it stands.
    pub state: OutboxState,
    /// How many attempts were made, over the row's whole life.
    pub attempts: u32,
    /// How many attempts were made since it was queued or last replayed.
    pub round_attempts: u32,
    /// When it was queued or last replayed (Unix ms): the start of its retry schedule.
    pub round_started_at: i64,
    /// When the next attempt is due (Unix ms).
    pub next_attempt_at: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it reached a final state (Unix ms).
    pub finished_at: Option<i64>,
    /// The event whose version won, when it was superseded.
    pub superseded_by: Option<String>,
}

/// What follows a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Next {
    /// The receiver accepted it.
    Delivered,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// Give up: the row becomes a dead letter.
    Dead,
}

impl Next {
    /// How the attempt ended.
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            Next::Delivered => AttemptOutcome::Delivered,
            Next::RetryAt(_) => AttemptOutcome::Retry,
            Next::Dead => AttemptOutcome::Dead,
        }
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttemptOutcome {
    /// The receiver accepted the request.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// It failed for good: the row became a dead letter.
    Dead,
}

impl AttemptOutcome {
    /// The outcome's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }

    /// Reads an outcome as [`AttemptOutcome::as_str`] writes it.
    pub fn parse(text: &str) -> Option<AttemptOutcome> {
        [
            AttemptOutcome::Delivered,
            AttemptOutcome::Retry,
            AttemptOutcome::Dead,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    /// The attempt's number over the row's whole life, from 1.
    pub number: u32,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// One delivery attempt to record, and what follows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    /// The outbox row.
    pub outbox_id: i64,
    /// The attempt.
    pub attempt: Attempt,
    /// What follows (its outcome is the attempt's).
    pub next: Next,
    /// When the row was delivered and has a key and a conflict strategy: the state its entity
    /// now holds at the destination (recorded if newer than the state recorded before).
    pub holds: Option<EntityHolds>,
}

/// The conflict state a delivered row leaves its entity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntityHolds {
    /// The entity.
    pub entity: EntityRef,
    /// The route's conflict strategy (what "newer" means).
    pub strategy: Strategy,
    /// The state: the row's version, with the body only where the strategy keeps it.
    pub state: EntityState,
}

impl OutboxRow {
    /// The conflict state this row leaves its entity once delivered, with `merged` as the
    /// body when a resolver merged it. `None` for rows without a key or a strategy.
    pub fn holds(&self, merged: Option<Vec<u8>>) -> Option<EntityHolds> {
        let action = &self.action;
        let entity = action.entity()?;
        if action.conflict == Strategy::None {
            return None;
        }
        let body = match action.conflict {
            Strategy::Plugin => Some(merged.unwrap_or_else(|| action.body.clone())),
            _ => None,
        };
        Some(EntityHolds {
            entity,
            strategy: action.conflict,
            state: EntityState {
                version: action.version,
                timestamp: action.timestamp,
                event_id: self.event_id.clone(),
                outbox_id: self.id,
                content_type: action.content_type.clone(),
                body,
            },
        })
    }
}

/// Marks an outbox row superseded: the destination holds a newer version of its entity.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SupersedeRecord {
    /// The outbox row.
    pub outbox_id: i64,
    /// The event whose version won.
    pub winner: String,
    /// Why, for the record.
    pub reason: String,
    /// When (Unix ms).
    pub at: i64,
}

/// What a destination last got for one entity: the conflict state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntityState {
    /// The version delivered.
    pub version: Option<u64>,
    /// Its timestamp (Unix ms).
    pub timestamp: i64,
    /// The event that carried it.
    pub event_id: String,
    /// The outbox row delivered (the last tie-breaker of last-write-wins: later rows win).
    pub outbox_id: i64,
    /// The body's media type.
    pub content_type: String,
    /// The body delivered (kept for the `plugin` strategy).
    pub body: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_written() {
        for kind in [OutboxKind::Deliver, OutboxKind::Emit, OutboxKind::Drop] {
            assert_eq!(OutboxKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(
            OutboxState::parse("superseded"),
            Some(OutboxState::Superseded)
        );
        assert_eq!(AttemptOutcome::parse("retry"), Some(AttemptOutcome::Retry));
        assert_eq!(Next::RetryAt(5).outcome(), AttemptOutcome::Retry);
    }
}
