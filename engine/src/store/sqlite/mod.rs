//! The embedded store: SQLite in WAL mode, in the data directory.
//!
//! All writes go through one writer thread, which takes every command waiting for it and
//! commits them in one transaction (group commit): under load, many accepted events, processed
//! events and delivery attempts share one `fsync`, and nobody is answered before their write
//! is on disk (`synchronous = FULL`). One failing command does not undo the others: a batch in
//! which a command fails is rolled back and run again with each command in its own savepoint.
//! Reads use their own connections, on blocking threads; WAL lets them run beside the writer.
//! The engine's own reads (pending events and deliveries) have one to themselves; operators'
//! reads (the admin API, metrics) share two more (`readers`).
//! The one read made per delivery (an entity's conflict state, by primary key) takes
//! microseconds and runs inline on a third connection: a hop to a blocking thread and back
//! would cost more than the read.
//!
//! # Layout
//!
//! - `schema.sql` and `migrate`: the tables, and upgrades from older versions;
//! - `writer`: the writer thread and its commands;
//! - `events`: accepting, pending events, what processing made;
//! - `outbox`: due rows, attempts, conflict state;
//! - `dead_letters`: listing and replay;
//! - `history`: one event's whole story, and the backlog;
//! - `plugins`: plugin versions and activations;
//! - `readers`: the read-only connections;
//! - `replica`: which log a replica follows, and how far it has applied it;
//! - `retention`: pruning finished work;
//! - `columns`: how values are written to columns and read back (by name).

mod columns;
mod dead_letters;
mod events;
mod history;
mod migrate;
mod outbox;
mod plugins;
mod readers;
mod replica;
mod retention;
mod writer;

use super::{
    Accepted, Activation, AttemptRecord, Backlog, DeadLetter, DeadLetterFilter, EntityRef,
    EntityState, EventHistory, EventQuery, Footprint, FoundEvent, Intake, LaneBacklog, NewEvent,
    Outbox, OutboxRow, PendingEvent, PluginStore, PluginVersion, PluginVersionInfo, PluginWrite,
    Processed, Prune, Pruned, Records, ReplayOutcome, Retention, ShadowRun, StoreError,
    StoreFuture, SupersedeRecord, WorkQueue, Write, Written,
};
use readers::Readers;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Notify, oneshot};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "sync-engine.db";

/// Which log the database file `path` follows and how far it applied it, without opening it
/// as a store: `None` when there is no database or an empty one that follows no log;
/// `("", 0)` for one that holds events of its own (an embedded store).
pub fn read_file_binding(path: &Path) -> Result<Option<(String, u64)>, StoreError> {
    replica::read_binding(path)
}

/// Read-only connections for operators' reads.
const RECORDS_READERS: usize = 2;

/// How many bytes of accepted events may wait for the store at once (their payloads, and
/// [`ACCEPT_OVERHEAD`] each); beyond it acceptance answers "busy" (503) until commits catch
/// up, so a burst cannot fill the engine's memory.
pub const MAX_ACCEPTING: usize = 64 << 20;

/// What one waiting accepted event counts besides its payload (its headers and bookkeeping).
pub const ACCEPT_OVERHEAD: usize = 1024;

/// Bytes taken from a budget, given back when dropped.
struct Held {
    budget: Arc<AtomicUsize>,
    weight: usize,
}

impl Held {
    /// Takes `weight` from `budget` (bytes in use), unless that would pass [`MAX_ACCEPTING`].
    fn take(budget: &Arc<AtomicUsize>, weight: usize) -> Option<Held> {
        budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(weight)
                    .filter(|total| *total <= MAX_ACCEPTING)
            })
            .ok()?;
        Some(Held {
            budget: budget.clone(),
            weight,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.weight, Ordering::AcqRel);
    }
}

impl From<rusqlite::Error> for StoreError {
    /// What the disk or another process does (full, failing, locked) passes: an I/O error,
    /// to try again. The rest is about the write itself.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(
                ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed,
            ) => StoreError::Io(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Handle to the SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<writer::Command>,
    /// For the processor's and the dispatcher's reads.
    work: Arc<Readers>,
    /// For operators' reads: the admin API, metrics, plugin versions.
    records: Arc<Readers>,
    /// Bytes of accepted events waiting for their commit.
    accepting: Arc<AtomicUsize>,
    /// Why new events are refused, while they are (the disk is low).
    refusing: Mutex<Option<String>>,
    /// For point reads made inline (see the module's documentation).
    lookup: Mutex<Connection>,
    signals: writer::Signals,
    /// Where writes go when the store is a replica of a log.
    log: Option<Arc<dyn super::WriteLog>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (creating or upgrading if needed) the store in the data directory `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir, None)
    }

    /// Opens the store in `dir` as a replica of `log`: its writes go to the log, and it
    /// applies what the log holds ([`SqliteStore::apply_logged`]); see [`SqliteStore::bind_log`].
    pub fn open_replica(
        dir: &Path,
        log: Arc<dyn super::WriteLog>,
    ) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir, Some(log))
    }

    fn open_with(
        dir: &Path,
        log: Option<Arc<dyn super::WriteLog>>,
    ) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        let mut write = migrate::open_connection(&path, false)?;
        migrate::migrate(&mut write)?;
        let work = Arc::new(Readers::open(&path, 1)?);
        let records = Arc::new(Readers::open(&path, RECORDS_READERS)?);
        let lookup = migrate::open_connection(&path, true)?;
        let signals = writer::Signals::default();
        let (tx, rx) = mpsc::channel();
        let thread = writer::spawn(write, rx, signals.clone())
            .map_err(|e| StoreError::Io(format!("cannot start the store's writer thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: tx,
                work,
                records,
                accepting: Arc::default(),
                refusing: Mutex::new(None),
                lookup: Mutex::new(lookup),
                signals,
                log,
                writer_thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many transactions (one per batch of writes) the writer has run: with group commit,
    /// far fewer than the writes it was sent under load.
    pub fn commits(&self) -> u64 {
        self.inner.signals.commits.load(Ordering::Relaxed)
    }

    /// Stops the writer after it has committed everything sent before, and waits for it.
    pub async fn close(self) {
        let thread = self
            .inner
            .writer_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The writer ends when every sender is gone; a `Close` makes it end now even if other
        // clones of this store are still alive.
        let _ = self.inner.writer.send(writer::Command::Close);
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Sends a write to the writer now, and returns a future of its result, taken out of
    /// its [`Written`] by `answer`. Sending before the future is awaited lets a caller queue
    /// many writes, then wait: they share one commit.
    ///
    /// A replica sends its writes to its log instead: they come back through
    /// [`SqliteStore::apply_logged`], in the log's order, on every instance.
    fn queue<T: Send + 'static>(
        &self,
        write: Write,
        answer: fn(Written) -> Result<T, StoreError>,
    ) -> StoreFuture<T> {
        let written = match &self.inner.log {
            Some(log) => log.submit(write),
            None => self.send(write, None),
        };
        Box::pin(async move { answer(written.await?) })
    }

    fn send(&self, write: Write, logged: Option<writer::Logged>) -> StoreFuture<Written> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .inner
            .writer
            .send(writer::Command::Write {
                write,
                logged,
                reply,
            })
            .is_ok();
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Makes this store a replica of the log named `log` (or checks that it is one), and
    /// answers the position of the last entry it applied (0 for none). Refuses a store that
    /// holds events of its own or follows another log.
    pub fn bind_log(&self, log: &str) -> Result<u64, StoreError> {
        // Once, at start, on a connection of its own (the writer thread's is its alone).
        let write = migrate::open_connection(&self.inner.path, false)?;
        replica::bind(&write, log)
    }

    /// Writes a consistent copy of the whole database to `into` (`VACUUM INTO`: compact, no
    /// write-ahead log), on a connection of its own, beside the writer; answers the log
    /// position the copy has applied.
    pub fn snapshot(&self, into: &Path) -> Result<u64, StoreError> {
        let conn = migrate::open_connection(&self.inner.path, true)?;
        conn.execute("VACUUM INTO ?1", [into.to_string_lossy()])?;
        match replica::read_binding(into)? {
            Some((_, position)) => Ok(position),
            None => Err(StoreError::Corrupt("the snapshot follows no log".into())),
        }
    }

    /// The acceptance order of the oldest unprocessed event of `route`, if it has one: every
    /// event of the route accepted before it has been processed.
    pub fn pending_floor(&self, route: &str) -> Result<Option<i64>, StoreError> {
        let conn = self
            .inner
            .lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        events::floor(&conn, route)
    }

    /// The position of the last log entry this replica applied (0 for none).
    pub fn log_position(&self) -> Result<u64, StoreError> {
        let conn = self
            .inner
            .lookup
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        replica::position(&conn)
    }

    /// Applies the log entry at `position`, in the order of the calls, recording the position
    /// in the same transaction. With `floors`, a `Complete` is answered with its route's floor
    /// (`Written::QueuedOn`), for a dispatcher fed from the log.
    pub fn apply_logged(&self, position: u64, write: Write, floors: bool) -> StoreFuture<Written> {
        self.send(write, Some(writer::Logged { position, floors }))
    }

    /// Tells the dispatcher that pending deliveries were written that nobody handed it: a
    /// replica applied another engine's processing, or one of its own whose caller had
    /// stopped waiting (the log acknowledged it too late).
    pub fn deliveries_written_elsewhere(&self) {
        self.inner.signals.outbox_requeued.notify_one();
    }

    fn activated_plugins(&self) -> (Vec<String>, Arc<Notify>) {
        let names = std::mem::take(
            &mut *self
                .inner
                .signals
                .activated
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        (
            names.into_iter().collect(),
            self.inner.signals.plugins_activated.clone(),
        )
    }

    /// Runs one of the engine's own reads, on a blocking thread.
    fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<T> {
        Self::read_on(self.inner.work.clone(), query)
    }

    /// Runs an operator's read, on a blocking thread.
    fn read_records<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<T> {
        Self::read_on(self.inner.records.clone(), query)
    }

    fn read_on<T: Send + 'static>(
        readers: Arc<Readers>,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<T> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || readers.run(query))
                .await
                .map_err(|e| StoreError::Io(format!("a store read panicked: {e}")))?
        })
    }
}

impl Intake for SqliteStore {
    fn accept(&self, event: NewEvent) -> StoreFuture<Accepted> {
        if let Some(why) = &*self
            .inner
            .refusing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Box::pin(std::future::ready(Err(StoreError::Full(why.clone()))));
        }
        let weight = event.event.payload.len() + ACCEPT_OVERHEAD;
        let Some(held) = Held::take(&self.inner.accepting, weight) else {
            return Box::pin(std::future::ready(Err(StoreError::Busy(format!(
                "more than {} MiB of accepted events are waiting for the store",
                MAX_ACCEPTING >> 20
            )))));
        };
        let committed = self.queue(Write::Accept(event), Written::accepted);
        Box::pin(async move {
            let _held = held;
            committed.await
        })
    }

    fn probe(&self) -> StoreFuture<()> {
        self.queue(
            Write::Probe {
                at: super::now_ms(),
            },
            Written::done,
        )
    }
}

impl WorkQueue for SqliteStore {
    fn pending(&self, after_seq: i64, limit: usize) -> StoreFuture<Vec<PendingEvent>> {
        self.read(move |conn| events::pending(conn, None, after_seq, limit))
    }

    fn pending_of(
        &self,
        route: &str,
        after_seq: i64,
        limit: usize,
    ) -> StoreFuture<Vec<PendingEvent>> {
        let route = route.to_owned();
        self.read(move |conn| events::pending(conn, Some(&route), after_seq, limit))
    }

    fn pending_routes(&self) -> StoreFuture<Vec<String>> {
        self.read(events::pending_routes)
    }

    fn accepted_routes(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .inner
                .signals
                .accepted_routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
        .into_iter()
        .collect()
    }

    fn complete(&self, processed: Processed) -> StoreFuture<Vec<OutboxRow>> {
        self.queue(Write::Complete(processed), Written::queued)
    }

    fn accepted(&self) -> Arc<Notify> {
        self.inner.signals.events_accepted.clone()
    }

    fn requeued(&self) -> Arc<Notify> {
        self.inner.signals.events_requeued.clone()
    }
}

impl Outbox for SqliteStore {
    fn lanes(&self) -> StoreFuture<Vec<String>> {
        self.read(outbox::lanes)
    }

    fn load(
        &self,
        lane: &str,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> StoreFuture<Vec<OutboxRow>> {
        let lane = lane.to_owned();
        self.read(move |conn| outbox::pending(conn, &lane, after, limit))
    }

    fn record_attempt(&self, attempt: AttemptRecord) -> StoreFuture<Vec<i64>> {
        self.queue(Write::Attempt(attempt), Written::superseded)
    }

    fn supersede(&self, record: SupersedeRecord) -> StoreFuture<bool> {
        self.queue(Write::Supersede(record), Written::was_pending)
    }

    fn entity_state(&self, entity: EntityRef) -> StoreFuture<Option<EntityState>> {
        let state = {
            let conn = self
                .inner
                .lookup
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            outbox::entity_state(&conn, &entity)
        };
        Box::pin(std::future::ready(state))
    }

    fn requeued(&self) -> Arc<Notify> {
        self.inner.signals.outbox_requeued.clone()
    }
}

impl Retention for SqliteStore {
    fn prune(&self, prune: Prune) -> StoreFuture<Pruned> {
        self.queue(Write::Prune(prune), Written::pruned)
    }

    fn footprint(&self) -> std::io::Result<Footprint> {
        let mut bytes = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.inner.path.clone().into_os_string();
            name.push(suffix);
            match std::fs::metadata(&name) {
                Ok(meta) => bytes += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let dir = self.inner.path.parent().unwrap_or(Path::new("."));
        let stats = rustix::fs::statvfs(dir)?;
        Ok(Footprint {
            bytes,
            free_bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
        })
    }

    fn refuse_accepts(&self, why: Option<String>) {
        *self
            .inner
            .refusing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }
}

impl PluginStore for SqliteStore {
    fn write(&self, write: PluginWrite) -> StoreFuture<()> {
        self.queue(Write::Plugin(write), Written::done)
    }

    fn activated(&self) -> (Vec<String>, Arc<Notify>) {
        self.activated_plugins()
    }

    fn active(&self, name: &str) -> StoreFuture<Option<String>> {
        let name = name.to_owned();
        self.read_records(move |conn| plugins::active(conn, &name))
    }

    fn version(&self, name: &str, hash: &str) -> StoreFuture<Option<PluginVersion>> {
        let (name, hash) = (name.to_owned(), hash.to_owned());
        self.read_records(move |conn| plugins::version(conn, &name, &hash))
    }

    fn versions(&self, name: &str) -> StoreFuture<Vec<PluginVersionInfo>> {
        let name = name.to_owned();
        self.read_records(move |conn| plugins::versions(conn, &name))
    }

    fn activations(&self, name: &str) -> StoreFuture<Vec<Activation>> {
        let name = name.to_owned();
        self.read_records(move |conn| plugins::activations(conn, &name))
    }
}

impl Records for SqliteStore {
    fn dead_letters(&self, filter: DeadLetterFilter) -> StoreFuture<Vec<DeadLetter>> {
        self.read_records(move |conn| dead_letters::list(conn, &filter))
    }

    fn replay(&self, filter: DeadLetterFilter) -> StoreFuture<ReplayOutcome> {
        self.queue(
            Write::Replay {
                filter,
                at: super::now_ms(),
            },
            Written::replayed,
        )
    }

    fn event_history(&self, id: &str) -> StoreFuture<Option<EventHistory>> {
        let id = id.to_owned();
        self.read_records(move |conn| history::event_history(conn, &id))
    }

    fn backlog(&self) -> StoreFuture<Backlog> {
        self.read_records(history::backlog)
    }

    fn entity(&self, entity: EntityRef) -> StoreFuture<Option<EntityState>> {
        self.read_records(move |conn| outbox::entity_state(conn, &entity))
    }

    fn reset_entity(&self, entity: EntityRef) -> StoreFuture<Option<EntityState>> {
        self.queue(Write::ResetEntity(entity), Written::held)
    }

    fn event_count(&self) -> StoreFuture<u64> {
        self.read_records(history::event_count)
    }

    fn find_events(&self, query: EventQuery) -> StoreFuture<Vec<FoundEvent>> {
        self.read_records(move |conn| history::find_events(conn, &query))
    }

    fn lanes(&self) -> StoreFuture<Vec<LaneBacklog>> {
        self.read_records(history::lanes)
    }

    fn record_shadow_runs(&self, runs: Vec<ShadowRun>) -> StoreFuture<()> {
        self.queue(Write::Shadowed(runs), Written::done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{new_event, run_all};
    use crate::store::{Backend, DeadLetterFilter, Next};

    #[tokio::test]
    async fn sqlite_passes_the_conformance_suite() {
        let dirs = std::sync::Mutex::new(Vec::new());
        run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            dirs.lock().unwrap().push(dir);
            std::future::ready(Backend::sqlite(&store))
        })
        .await;
    }

    #[test]
    fn a_database_locked_elsewhere_is_a_transient_error_a_broken_constraint_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER PRIMARY KEY);")
            .unwrap();
        let writer = Connection::open(&path).unwrap();
        writer.busy_timeout(std::time::Duration::ZERO).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let locked: StoreError = writer
            .execute("INSERT INTO t VALUES (1)", [])
            .unwrap_err()
            .into();
        assert!(locked.is_transient(), "{locked:?}");
        holder
            .execute_batch("INSERT INTO t VALUES (1); COMMIT")
            .unwrap();
        let duplicate: StoreError = writer
            .execute("INSERT INTO t VALUES (1)", [])
            .unwrap_err()
            .into();
        assert!(!duplicate.is_transient(), "{duplicate:?}");
    }

    #[tokio::test]
    async fn accepts_beyond_the_bytes_waiting_for_the_store_are_refused_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let big = |n: usize| {
            let mut event = new_event(&format!("big-{n}"), None, None);
            event.event.payload = vec![b' '; 1 << 20];
            event
        };
        // Queued, none awaited: each holds its bytes until its answer is taken.
        let fits = MAX_ACCEPTING / ((1 << 20) + ACCEPT_OVERHEAD);
        let waiting: Vec<_> = (0..fits + 5).map(|n| store.accept(big(n))).collect();
        let mut answers = Vec::new();
        for write in waiting {
            answers.push(write.await);
        }
        let busy = answers
            .iter()
            .filter(|a| matches!(a, Err(StoreError::Busy(_))))
            .count();
        assert_eq!(busy, 5, "{answers:?}");
        assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), fits);
        // Answered, they hold nothing: the next one is taken.
        assert!(store.accept(big(fits + 5)).await.is_ok());
        assert_eq!(store.event_count().await.unwrap(), fits as u64 + 1);
        store.close().await;
    }

    #[tokio::test]
    async fn concurrent_accepts_share_commits_and_all_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let before = store.commits();
        // Every write is queued before any is awaited, as concurrent requests would be.
        let writes: Vec<_> = (0..200)
            .map(|n| store.accept(new_event(&format!("event-{n}"), None, None)))
            .collect();
        for write in writes {
            assert!(!write.await.unwrap().duplicate);
        }
        let commits = store.commits() - before;
        assert!(commits < 20, "200 accepts took {commits} commits");
        store.close().await;

        // A fresh process sees every event, whole.
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.event_count().await.unwrap(), 200);
        let pending = store.pending(0, 1000).await.unwrap();
        assert_eq!(pending.len(), 200);
        assert_eq!(
            pending[17].stored.event,
            new_event("event-17", None, None).event
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let before = store.commits();
        // An attempt for an outbox row that does not exist breaks a foreign key. It is queued
        // between accepts, before any is awaited, so it shares their transactions.
        let bad = AttemptRecord {
            outbox_id: 999_999,
            attempt: crate::store::Attempt {
                number: 1,
                started_at: 1,
                duration_ms: 1,
                status: Some(200),
                error: None,
                outcome: Next::Delivered.outcome(),
            },
            next: Next::Delivered,
            holds: None,
        };
        let accept = |n: usize| store.accept(new_event(&format!("event-{n}"), None, None));
        let first: Vec<_> = (0..100).map(accept).collect();
        let failing = store.record_attempt(bad);
        let second: Vec<_> = (100..200).map(accept).collect();
        let error = failing.await.unwrap_err();
        assert!(
            error.to_string().contains("FOREIGN KEY"),
            "unexpected error: {error}"
        );
        for write in first.into_iter().chain(second) {
            assert!(!write.await.unwrap().duplicate);
        }
        let commits = store.commits() - before;
        assert!(commits < 20, "201 writes took {commits} commits");
        store.close().await;

        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.event_count().await.unwrap(), 200);
        assert!(
            store
                .dead_letters(DeadLetterFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
        store.close().await;
    }

    #[test]
    fn loading_a_lane_uses_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let mut conn = migrate::open_connection(&path, false).unwrap();
        migrate::migrate(&mut conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT id FROM outbox
                 WHERE state = 'pending' AND {} = 'x' AND (event_seq, id) > (0, 0)
                 ORDER BY event_seq, id LIMIT 10",
                outbox::LANE
            ))
            .unwrap()
            .query_map([], |row| row.get::<_, String>("detail"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("outbox_lane")),
            "{plan:?}"
        );
        assert!(outbox::LANE.contains(&format!("'{}'", crate::store::CORE_TARGET)));
    }

    #[tokio::test]
    async fn a_batch_of_large_events_is_cut_short_by_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..3 {
            let mut event = new_event(&format!("event-{n}"), None, None);
            event.event.payload = vec![b'x'; 10 << 20];
            store.accept(event).await.unwrap();
        }
        // 10 MiB, then 20 MiB: past the 16 MiB budget after the second.
        let first = store.pending(0, 10).await.unwrap();
        assert_eq!(first.len(), 2);
        let rest = store.pending(first[1].stored.seq, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].stored.event.id, "event-2");
        store.close().await;
    }
}
