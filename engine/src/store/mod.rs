//! The durable store, behind six small seams, one per thing a stage asks of it:
//!
//! | seam | asked by | what |
//! | --- | --- | --- |
//! | [`Intake`] | the listeners | commit an accepted event (deduplicated), prove writes land |
//! | [`WorkQueue`] | the processor | read pending events, commit what processing made |
//! | [`Outbox`] | the dispatcher | pending deliveries (after a restart or a replay), attempts, conflict state |
//! | [`PluginStore`] | the registry | plugin versions and activations |
//! | [`Records`] | the admin API, metrics | dead letters and replay, event history, backlog, entity state |
//! | [`Retention`] | [`housekeeping`] | prune finished work, size and free space, refuse events while space is low |
//!
//! Each seam is an object-safe trait; a [`Backend`] holds one of each. A write returns a future
//! that was queued when the method was called, so a caller can queue many writes and then await
//! them: they share one commit (group commit). [`sqlite`] is the embedded backend, and the
//! reference for every guarantee; `conformance` (tests) holds the suite any backend must pass.
//!
//! The records every backend keeps and returns are in [`model`].

pub mod dir_lock;
pub mod housekeeping;
pub mod model;
pub mod nats;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod properties;

pub use model::*;
pub use sqlite::SqliteStore;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The data directory or database file could not be used.
    #[error("{0}")]
    Io(String),
    /// The store is closing: its writer is gone.
    #[error("the store is shutting down")]
    Closed,
    /// A stored value could not be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The write contradicts what is stored (deleting the active version of a plugin).
    #[error("{0}")]
    Conflict(String),
    /// The write names something that is not stored.
    #[error("{0}")]
    NotFound(String),
    /// More accepted events are waiting for the store than it holds in memory: the sender
    /// should try again shortly.
    #[error("{0}")]
    Busy(String),
    /// The data directory's file system is nearly full: new events are refused until there is
    /// room again (retention frees some; an operator may have to free more).
    #[error("{0}")]
    Full(String),
}

impl StoreError {
    /// Whether the same write may pass when tried again later: the disk or the database was
    /// unavailable (full, failing, locked by another process), or acceptance was shedding load.
    /// Such a failure is waited out, never made a dead letter.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Io(_) | StoreError::Busy(_) | StoreError::Full(_)
        )
    }
}

/// A store call in flight. Writes are queued when the call is made, not when this is awaited.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Where accepted events go.
pub trait Intake: Send + Sync {
    /// Commits an accepted event; answers once it is durable. An event whose dedupe key was seen
    /// before is not stored again: the answer is the first event's id, marked duplicate.
    fn accept(&self, event: NewEvent) -> StoreFuture<Accepted>;

    /// Makes a write and waits until it is durable: a readiness check.
    fn probe(&self) -> StoreFuture<()>;
}

/// The events waiting to be processed.
pub trait WorkQueue: Send + Sync {
    /// Up to `limit` unprocessed events accepted after `after_seq`, oldest first; fewer when
    /// their payloads are large, so a batch stays small in memory.
    fn pending(&self, after_seq: i64, limit: usize) -> StoreFuture<Vec<PendingEvent>>;

    /// [`WorkQueue::pending`] for the events of one route (`bus:<type>` or `webhook:<path>`).
    fn pending_of(
        &self,
        route: &str,
        after_seq: i64,
        limit: usize,
    ) -> StoreFuture<Vec<PendingEvent>>;

    /// The routes that have unprocessed events.
    fn pending_routes(&self) -> StoreFuture<Vec<String>>;

    /// The routes of the events committed since the last call (after [`WorkQueue::accepted`]
    /// notified): which routes have new events.
    fn accepted_routes(&self) -> Vec<String>;

    /// Records the runs of a processed event and its outbox rows, and marks it processed, in
    /// one transaction. Answers the rows it queued for delivery, with their ids, which the
    /// processor hands to the dispatcher (none when the event was already processed).
    fn complete(&self, processed: Processed) -> StoreFuture<Vec<OutboxRow>>;

    /// Notified after new events are committed.
    fn accepted(&self) -> Arc<Notify>;

    /// Notified after replayed events become pending again (they may be older than any the
    /// processor has read).
    fn requeued(&self) -> Arc<Notify>;
}

/// The deliveries waiting to be sent, and what their destinations hold.
pub trait Outbox: Send + Sync {
    /// The lanes with pending rows: each destination's name, and [`CORE_TARGET`] for emitted
    /// events (as [`OutboxAction::target_name`] names them).
    fn lanes(&self) -> StoreFuture<Vec<String>>;

    /// Up to `limit` pending rows of a lane, in event acceptance order (`event_seq`, then
    /// `id`), after the row `after` in that order: how the dispatcher learns of rows it was not
    /// handed (after a start, a replay, or while its queue is full).
    fn load(
        &self,
        lane: &str,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> StoreFuture<Vec<OutboxRow>>;

    /// Records one delivery attempt and what follows it; answers the pending deliveries a
    /// delivered version superseded (see [`crate::conflict`]).
    fn record_attempt(&self, attempt: AttemptRecord) -> StoreFuture<Vec<i64>>;

    /// Marks a pending row superseded. Answers whether it was still pending (a delivered
    /// version may have superseded it already).
    fn supersede(&self, record: SupersedeRecord) -> StoreFuture<bool>;

    /// What the target last got for an entity, if anything. Asked before every keyed delivery,
    /// so it must be cheap.
    fn entity_state(&self, entity: EntityRef) -> StoreFuture<Option<EntityState>>;

    /// Notified after dead deliveries are replayed: pending rows the dispatcher was not handed.
    fn requeued(&self) -> Arc<Notify>;
}

/// Plugin versions and which one is active.
pub trait PluginStore: Send + Sync {
    /// Keeps a version, activates one, or deletes one.
    fn write(&self, write: PluginWrite) -> StoreFuture<()>;

    /// The active version of a plugin, if it has one.
    fn active(&self, name: &str) -> StoreFuture<Option<String>>;

    /// One version of a plugin, with its component.
    fn version(&self, name: &str, hash: &str) -> StoreFuture<Option<PluginVersion>>;

    /// Every version of a plugin, oldest first.
    fn versions(&self, name: &str) -> StoreFuture<Vec<PluginVersionInfo>>;

    /// Every activation of a plugin, oldest first.
    fn activations(&self, name: &str) -> StoreFuture<Vec<Activation>>;

    /// The plugins whose active version changed since the last call (by any engine, with a
    /// shared backend), and a notice that fires when one does.
    fn activated(&self) -> (Vec<String>, Arc<Notify>);
}

/// What happened, for operators: dead letters, histories, the backlog.
pub trait Records: Send + Sync {
    /// The dead letters `filter` selects, oldest first.
    fn dead_letters(&self, filter: DeadLetterFilter) -> StoreFuture<Vec<DeadLetter>>;

    /// Queues the dead letters `filter` selects again: a delivery goes back to pending with a
    /// fresh retry schedule; a plugin failure makes its event pending again, so that handler
    /// runs again. Those already replayed are skipped, so nothing pending is queued twice.
    fn replay(&self, filter: DeadLetterFilter) -> StoreFuture<ReplayOutcome>;

    /// Everything recorded about one event; `None` when no event has this id.
    fn event_history(&self, id: &str) -> StoreFuture<Option<EventHistory>>;

    /// How much work is waiting.
    fn backlog(&self) -> StoreFuture<Backlog>;

    /// How many events the store holds.
    fn event_count(&self) -> StoreFuture<u64>;

    /// The events `query` selects, newest first, without their payloads.
    fn find_events(&self, query: EventQuery) -> StoreFuture<Vec<FoundEvent>>;

    /// The deliveries waiting for each lane that has some.
    fn lanes(&self) -> StoreFuture<Vec<LaneBacklog>>;

    /// Records shadow versions' runs (those of events pruned meanwhile are left out).
    fn record_shadow_runs(&self, runs: Vec<ShadowRun>) -> StoreFuture<()>;

    /// What a target holds for an entity (the conflict strategies' state), if anything.
    fn entity(&self, entity: EntityRef) -> StoreFuture<Option<EntityState>>;

    /// Forgets what a target holds for an entity, so its next update is sent whatever its
    /// version or timestamp (an entity pinned by a far-future version); answers what it held.
    fn reset_entity(&self, entity: EntityRef) -> StoreFuture<Option<EntityState>>;
}

/// Keeping the store's size bounded: removing finished work, watching free space.
pub trait Retention: Send + Sync {
    /// One round of pruning: removes events whose work is finished (processed, every action
    /// delivered, dropped or superseded, no dead letter younger than its cut-off) and that were
    /// accepted before the cut-off, with their payloads, runs, actions, attempts and dead
    /// letters; forgets old dedupe keys; gives freed space back to the file system. Small, so
    /// other writes wait little for it.
    fn prune(&self, prune: Prune) -> StoreFuture<Pruned>;

    /// The store's size and the free space beside it.
    fn footprint(&self) -> std::io::Result<Footprint>;

    /// Refuses new events with `why` (the disk is low), or, with `None`, takes them again.
    fn refuse_accepts(&self, why: Option<String>);
}

/// Where the writes of a replica go: a log that every instance applies in the same order
/// (the NATS backend). [`WriteLog::submit`] answers once the write is in the log *and* this
/// instance has applied it, with the answer applying it gave.
pub trait WriteLog: Send + Sync {
    /// Appends a write to the log; queued when called.
    fn submit(&self, write: Write) -> StoreFuture<Written>;
}

/// One backend: a handle on each seam.
#[derive(Clone)]
pub struct Backend {
    /// For the listeners.
    pub intake: Arc<dyn Intake>,
    /// For the processor.
    pub queue: Arc<dyn WorkQueue>,
    /// For the dispatcher.
    pub outbox: Arc<dyn Outbox>,
    /// For the registry.
    pub plugins: Arc<dyn PluginStore>,
    /// For the admin API and metrics.
    pub records: Arc<dyn Records>,
    /// For housekeeping.
    pub retention: Arc<dyn Retention>,
}

impl Backend {
    /// The embedded SQLite store as a backend.
    pub fn sqlite(store: &SqliteStore) -> Backend {
        Backend {
            intake: Arc::new(store.clone()),
            queue: Arc::new(store.clone()),
            outbox: Arc::new(store.clone()),
            plugins: Arc::new(store.clone()),
            records: Arc::new(store.clone()),
            retention: Arc::new(store.clone()),
        }
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
