//! Every write to the store as one value, and what each answers.
//!
//! The embedded backend's writer applies [`Write`]s in the order they arrive; the NATS backend
//! logs them on a JetStream stream and every instance applies the log in the same order to its
//! own replica, so each write's answer (the first event's id for a duplicate, whether a replay
//! found the dead letter still dead, whether a delivered version is newer) is the same on every
//! instance. A write therefore carries every value it depends on (its times, its ids): applying
//! it must not read the clock.

use super::{
    Accepted, AttemptRecord, DeadLetterFilter, EntityRef, EntityState, NewEvent, OutboxRow,
    PluginWrite, Processed, Prune, Pruned, ReplayOutcome, ShadowRun, SupersedeRecord,
};
use crate::sandbox::event::{Event, Header};
use crate::store::StoreError;

/// One write.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Write {
    /// Commit an accepted event (deduplicated by its key).
    Accept(NewEvent),
    /// Record what processing made of an event.
    Complete(Processed),
    /// Record a delivery attempt and what follows it.
    Attempt(AttemptRecord),
    /// Mark a pending row superseded.
    Supersede(SupersedeRecord),
    /// Queue dead letters again, as of `at` (Unix ms).
    Replay {
        /// Which dead letters.
        filter: DeadLetterFilter,
        /// When (the time the replayed rows' new retry schedule starts).
        at: i64,
    },
    /// Forget what a target holds for an entity.
    ResetEntity(EntityRef),
    /// One round of retention.
    Prune(Prune),
    /// Keep, activate or delete a plugin version.
    Plugin(PluginWrite),
    /// Prove that writes land, as of `at` (Unix ms).
    Probe {
        /// When.
        at: i64,
    },
    /// Record shadow versions' runs (kept last: the NATS log's older entries still read).
    Shadowed(Vec<ShadowRun>),
}

/// What a write answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// [`Write::Accept`]: the event's id, or the first one's.
    Accepted(Accepted),
    /// [`Write::Complete`]: the rows queued for delivery.
    Queued(Vec<OutboxRow>),
    /// [`Write::Complete`] applied from a log: the rows queued for delivery, the event's route,
    /// and the oldest event of that route still unprocessed once it was applied (where the
    /// route's watermark stands at that point of the log).
    QueuedOn {
        /// The rows.
        rows: Vec<OutboxRow>,
        /// The event's route (`bus:<type>`, `webhook:<path>`).
        route: String,
        /// The route's oldest unprocessed event, if any.
        floor: Option<i64>,
    },
    /// [`Write::Attempt`]: the pending rows a delivered version superseded.
    Superseded(Vec<i64>),
    /// [`Write::Supersede`]: whether the row was still pending.
    WasPending(bool),
    /// [`Write::Replay`].
    Replayed(ReplayOutcome),
    /// [`Write::ResetEntity`]: what the target held.
    Held(Option<EntityState>),
    /// [`Write::Prune`].
    Pruned(Pruned),
    /// [`Write::Plugin`], [`Write::Probe`] and [`Write::Shadowed`].
    Done,
}

impl Write {
    /// The write's binary form (what a log entry carries).
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_stdvec(self)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a write: {e}")))
    }

    /// Reads a write from its binary form.
    pub fn decode(bytes: &[u8]) -> Result<Write, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|e| StoreError::Corrupt(format!("cannot decode a write: {e}")))
    }
}

/// Takes the answer of one kind of write out of a [`Written`].
macro_rules! answer {
    ($name:ident, $variant:ident, $type:ty) => {
        /// The answer, when it is of this kind.
        pub fn $name(self) -> Result<$type, StoreError> {
            match self {
                Written::$variant(value) => Ok(value),
                other => Err(StoreError::Corrupt(format!(
                    "a write answered {other:?}, not {}",
                    stringify!($variant)
                ))),
            }
        }
    };
}

impl Written {
    answer!(accepted, Accepted, Accepted);

    /// The rows a [`Write::Complete`] queued, however it was applied.
    pub fn queued(self) -> Result<Vec<OutboxRow>, StoreError> {
        match self {
            Written::Queued(rows) | Written::QueuedOn { rows, .. } => Ok(rows),
            other => Err(StoreError::Corrupt(format!(
                "a write answered {other:?}, not Queued"
            ))),
        }
    }
    answer!(superseded, Superseded, Vec<i64>);
    answer!(was_pending, WasPending, bool);
    answer!(replayed, Replayed, ReplayOutcome);
    answer!(held, Held, Option<EntityState>);
    answer!(pruned, Pruned, Pruned);

    /// The answer of a write that answers nothing.
    pub fn done(self) -> Result<(), StoreError> {
        match self {
            Written::Done => Ok(()),
            other => Err(StoreError::Corrupt(format!(
                "a write answered {other:?}, not Done"
            ))),
        }
    }
}

/// The binary form of an [`Event`] (whose own `Serialize` is a JSON view for people, with the
/// payload as text): every field, the payload as bytes. The compiler holds the two to the same
/// fields.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(remote = "Event")]
pub(super) struct EventDef {
    id: String,
    event_type: String,
    origin: String,
    key: Option<String>,
    version: Option<u64>,
    timestamp: i64,
    content_type: String,
    payload: Vec<u8>,
    headers: Vec<Header>,
    hops: u32,
    path: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::new_event;

    #[test]
    fn a_write_reads_back_as_written() {
        let mut event = new_event("e1", Some("k"), Some("d"));
        event.event.payload = vec![0, 159, 146, 150, 255];
        let bytes = Write::Accept(event.clone()).encode().unwrap();
        match Write::decode(&bytes).unwrap() {
            Write::Accept(read) => {
                assert_eq!(read.event, event.event);
                assert_eq!(read.route, event.route);
                assert_eq!(read.dedupe_key, event.dedupe_key);
                assert_eq!(read.accepted_at, event.accepted_at);
            }
            other => panic!("read back {other:?}"),
        }
        assert!(Write::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Written::Done.accepted().is_err());
        assert!(Written::WasPending(true).was_pending().unwrap());
    }
}
