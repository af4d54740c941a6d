//! The durable store: SQLite in WAL mode, in the data directory.
//!
//! All writes go through one writer thread, which takes every command waiting for it and
//! commits them in one transaction (group commit): under load, many accepted events, processed
//! events and delivery attempts share one `fsync`, and nobody is answered before their write
//! is on disk (`synchronous = FULL`). One failing command does not undo the others: a batch in
//! which a command fails is rolled back and run again with each command in its own savepoint.
//! Reads use their own connection; WAL lets them run beside the writer.

mod plugins;
mod records;
mod writer;

pub use plugins::{Activation, ActivationRecord, PluginVersion, PluginVersionInfo, PluginWrite};
pub use records::{
    Accepted, AttemptRecord, AttemptRow, Backlog, CORE_TARGET, DeadLetterFilter, DeadLetterKind,
    DeadLetterRow, EntityState, EventHistory, NewEvent, Next, OutboxAction, OutboxKind, OutboxRow,
    OutboxState, PendingEvent, Processed, ReplayOutcome, RunRecord, RunRow, StoredEvent,
    SupersedeRecord,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Notify, mpsc, oneshot};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "sync-engine.db";

const SCHEMA_VERSION: i64 = 1;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The data directory or database file could not be used.
    #[error("{0}")]
    Io(String),
    /// The writer thread is gone (the store is closing).
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
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::UnboundedSender<writer::Command>,
    reader: Arc<Mutex<Connection>>,
    events_accepted: Arc<Notify>,
    events_requeued: Arc<Notify>,
    outbox_changed: Arc<Notify>,
    commits: Arc<AtomicU64>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Store {
    /// Opens (creating if needed) the store in the data directory `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        let mut write = open_connection(&path, false)?;
        migrate(&mut write)?;
        let reader = open_connection(&path, true)?;
        let events_accepted = Arc::new(Notify::new());
        let events_requeued = Arc::new(Notify::new());
        let outbox_changed = Arc::new(Notify::new());
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let signals = writer::Signals {
            events_accepted: events_accepted.clone(),
            events_requeued: events_requeued.clone(),
            outbox_changed: outbox_changed.clone(),
            commits: commits.clone(),
        };
        let thread = writer::spawn(write, rx, signals)
            .map_err(|e| StoreError::Io(format!("cannot start the store's writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writer: tx,
                reader: Arc::new(Mutex::new(reader)),
                events_accepted,
                events_requeued,
                outbox_changed,
                commits,
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
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Notified after new events are committed.
    pub fn events_accepted(&self) -> Arc<Notify> {
        self.inner.events_accepted.clone()
    }

    /// Notified after replayed events become pending again (they may be older than any the
    /// processor has read).
    pub fn events_requeued(&self) -> Arc<Notify> {
        self.inner.events_requeued.clone()
    }

    /// Notified after outbox rows are added or change state.
    pub fn outbox_changed(&self) -> Arc<Notify> {
        self.inner.outbox_changed.clone()
    }

    /// Sends a write to the writer now, and returns a future of its result. Sending before the
    /// future is awaited lets a caller queue many writes, then wait: they share one commit.
    fn queue<T>(
        &self,
        command: writer::Command,
        reply: oneshot::Receiver<Result<T, StoreError>>,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + use<T> {
        let sent = self.inner.writer.send(command).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            reply.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Commits an accepted event. Answers only once it is on disk. An event whose dedupe key
    /// was seen before is not stored again; the first event's id is returned, marked duplicate.
    pub fn accept(
        &self,
        event: NewEvent,
    ) -> impl std::future::Future<Output = Result<Accepted, StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Accept(event, tx), rx)
    }

    /// Records the runs of a processed event and its outbox rows, and marks it processed, in
    /// one transaction. The write is queued at once.
    pub fn complete(
        &self,
        processed: Processed,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Processed(processed, tx), rx)
    }

    /// Records one delivery attempt and what follows it. The write is queued at once. Answers
    /// how many pending deliveries a delivered version superseded (see [`crate::conflict`]).
    pub fn record_attempt(
        &self,
        attempt: AttemptRecord,
    ) -> impl std::future::Future<Output = Result<usize, StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Attempt(attempt, tx), rx)
    }

    /// Replays the dead letters `filter` selects (see [`DeadLetterFilter`]); those already
    /// replayed are skipped, so nothing pending is ever queued twice.
    pub fn replay(
        &self,
        filter: DeadLetterFilter,
    ) -> impl std::future::Future<Output = Result<ReplayOutcome, StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Replay(filter, tx), rx)
    }

    /// Marks a pending outbox row superseded. The write is queued at once.
    pub fn supersede(
        &self,
        record: SupersedeRecord,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Supersede(record, tx), rx)
    }

    /// What `target` last got for the entity `key` (rows of `kind`), if anything.
    pub async fn entity_state(
        &self,
        kind: OutboxKind,
        target: String,
        key: String,
    ) -> Result<Option<EntityState>, StoreError> {
        self.read(move |conn| records::entity_state(conn, kind, &target, &key))
            .await
    }

    /// Writes a plugin version or activation. The write is queued at once.
    pub fn plugin_write(
        &self,
        write: PluginWrite,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Plugin(write, tx), rx)
    }

    /// The active version of a plugin, if it has one.
    pub async fn active_plugin(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| plugins::active(conn, &name)).await
    }

    /// One version of a plugin, with its component.
    pub async fn plugin_version(
        &self,
        name: &str,
        hash: &str,
    ) -> Result<Option<PluginVersion>, StoreError> {
        let (name, hash) = (name.to_owned(), hash.to_owned());
        self.read(move |conn| plugins::version(conn, &name, &hash))
            .await
    }

    /// Every version of a plugin, oldest first.
    pub async fn plugin_versions(&self, name: &str) -> Result<Vec<PluginVersionInfo>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| plugins::versions(conn, &name)).await
    }

    /// Every activation of a plugin, oldest first.
    pub async fn plugin_activations(&self, name: &str) -> Result<Vec<Activation>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| plugins::activations(conn, &name))
            .await
    }

    /// Writes to the store and waits until the write is on disk: a readiness check.
    pub fn probe(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
        let (tx, rx) = oneshot::channel();
        self.queue(writer::Command::Probe(tx), rx)
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

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.inner.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            query(&conn)
        })
        .await
        .map_err(|e| StoreError::Io(format!("a store read panicked: {e}")))?
    }

    /// Up to `limit` unprocessed events accepted after `after_seq`, oldest first; fewer when
    /// their payloads add up to 16 MiB, so a batch of large events stays small.
    pub async fn pending_events(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.read(move |conn| records::pending_events(conn, after_seq, limit))
            .await
    }

    /// Up to `limit` pending outbox rows due at `now` (Unix ms), soonest first, skipping the
    /// rows in `skip` and the targets (destination names, `hms-core` for emits) in `busy`.
    pub async fn due_outbox(
        &self,
        now: i64,
        limit: usize,
        skip: Vec<i64>,
        busy: Vec<String>,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(move |conn| records::due_outbox(conn, now, limit, &skip, &busy))
            .await
    }

    /// When the first pending outbox row due after `after` (Unix ms) is due, if any is.
    pub async fn next_due(&self, after: i64) -> Result<Option<i64>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT MIN(next_attempt_at) FROM outbox
                     WHERE state = 'pending' AND next_attempt_at > ?1",
                    [after],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .optional()?
                .flatten())
        })
        .await
    }

    /// How many events the store holds.
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let count: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// The dead letters `filter` selects, oldest first.
    pub async fn dead_letters(
        &self,
        filter: DeadLetterFilter,
    ) -> Result<Vec<DeadLetterRow>, StoreError> {
        self.read(move |conn| records::list_dead_letters(conn, &filter))
            .await
    }

    /// How much work is waiting.
    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.read(records::backlog).await
    }

    /// Everything recorded about one event: the event, its runs, its outbox rows and their
    /// attempts. `None` when no event has this id.
    pub async fn event_history(&self, id: &str) -> Result<Option<EventHistory>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| records::event_history(conn, &id))
            .await
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !read_only {
        // WAL lets readers run beside the writer; FULL makes every commit durable.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "{} cannot use WAL mode (got `{mode}`)",
                path.display()
            )));
        }
        // Statement journals (and temporary tables) in memory, not in a file per statement.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    match version {
        0 => {
            let tx = conn.transaction()?;
            tx.execute_batch(include_str!("schema.sql"))?;
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            tx.commit()?;
            Ok(())
        }
        SCHEMA_VERSION => Ok(()),
        newer => Err(StoreError::Io(format!(
            "the database has schema version {newer}; this engine knows version {SCHEMA_VERSION}"
        ))),
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::event::{Event, Header};

    fn new_event(n: usize, dedupe: Option<&str>) -> NewEvent {
        NewEvent {
            event: Event {
                id: format!("event-{n}"),
                event_type: "tax.rate.updated".into(),
                origin: "hms".into(),
                key: Some(format!("key-{n}")),
                version: Some(7),
                timestamp: 1_700_000_000_000,
                content_type: "application/json".into(),
                payload: br#"{"rate": 1}"#.to_vec(),
                headers: vec![Header::new("x-agency", "irs")],
                hops: 2,
                path: vec!["irs".into(), "hms".into()],
            },
            route: "bus:tax.rate.updated".into(),
            dedupe_key: dedupe.map(str::to_owned),
            accepted_at: 1,
        }
    }

    #[tokio::test]
    async fn concurrent_accepts_share_commits_and_all_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.commits();
        // Every write is queued before any is awaited, as concurrent requests would be.
        let writes: Vec<_> = (0..200).map(|n| store.accept(new_event(n, None))).collect();
        for write in writes {
            assert!(!write.await.unwrap().duplicate);
        }
        let commits = store.commits() - before;
        assert!(commits < 20, "200 accepts took {commits} commits");
        store.close().await;

        // A fresh process sees every event, whole.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.event_count().await.unwrap(), 200);
        let pending = store.pending_events(0, 1000).await.unwrap();
        assert_eq!(pending.len(), 200);
        assert_eq!(pending[17].stored.event, new_event(17, None).event);
        assert!(
            pending
                .windows(2)
                .all(|w| w[0].stored.seq < w[1].stored.seq)
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_failing_write_fails_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.commits();
        // An attempt for an outbox row that does not exist breaks a foreign key. It is queued
        // between accepts, before any is awaited, so it shares their transactions.
        let bad = AttemptRecord {
            outbox_id: 999_999,
            attempt: 1,
            started_at: 1,
            duration_ms: 1,
            status: Some(200),
            error: None,
            next: Next::Delivered,
            merged_body: None,
        };
        let first: Vec<_> = (0..100).map(|n| store.accept(new_event(n, None))).collect();
        let failing = store.record_attempt(bad);
        let second: Vec<_> = (100..200)
            .map(|n| store.accept(new_event(n, None)))
            .collect();
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

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.event_count().await.unwrap(), 200);
        store.close().await;
    }

    #[tokio::test]
    async fn a_batch_of_large_events_is_cut_short_by_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..3 {
            let mut event = new_event(n, None);
            event.event.payload = vec![b'x'; 10 << 20];
            store.accept(event).await.unwrap();
        }
        // 10 MiB, then 20 MiB: past the 16 MiB budget after the second.
        let first = store.pending_events(0, 10).await.unwrap();
        assert_eq!(first.len(), 2);
        let rest = store.pending_events(first[1].stored.seq, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].stored.event.id, "event-2");
        store.close().await;
    }

    fn failed_run(handler: usize) -> RunRecord {
        RunRecord {
            handler,
            plugin: format!("plugin-{handler}"),
            plugin_hash: "0".repeat(64),
            outcome: "internal".into(),
            error: Some("boom".into()),
            duration_us: 1,
            ran_at: 1,
            actions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_replay_that_lands_while_the_event_runs_again_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.accept(new_event(1, None)).await.unwrap();
        let first = store.pending_events(0, 10).await.unwrap().remove(0);
        store
            .complete(Processed {
                event_id: "event-1".into(),
                event_seq: first.stored.seq,
                runs: vec![failed_run(0), failed_run(1)],
                processed_at: 2,
                generation: first.generation,
            })
            .await
            .unwrap();
        let dead = store
            .dead_letters(DeadLetterFilter::default())
            .await
            .unwrap();
        assert_eq!(dead.len(), 2);

        // Replay handler 0's failure; while handler 0 runs again, handler 1's is replayed too.
        let replay = |id| DeadLetterFilter {
            ids: vec![id],
            ..DeadLetterFilter::default()
        };
        store.replay(replay(dead[0].id)).await.unwrap();
        let again = store.pending_events(0, 10).await.unwrap().remove(0);
        assert_eq!(again.done_handlers, [1]);
        store.replay(replay(dead[1].id)).await.unwrap();
        let mut ok = failed_run(0);
        ok.outcome = "ok".into();
        ok.error = None;
        store
            .complete(Processed {
                event_id: "event-1".into(),
                event_seq: again.stored.seq,
                runs: vec![ok],
                processed_at: 3,
                generation: again.generation,
            })
            .await
            .unwrap();
        // The event stays pending, and only handler 1 is left to run.
        let last = store.pending_events(0, 10).await.unwrap();
        assert_eq!(last.len(), 1, "the second replay was not swallowed");
        assert_eq!(last[0].done_handlers, [0]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_repeated_dedupe_key_is_stored_once_and_answers_the_first_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.accept(new_event(1, Some("k"))).await.unwrap();
        let second = store.accept(new_event(2, Some("k"))).await.unwrap();
        assert_eq!(
            first,
            Accepted {
                id: "event-1".into(),
                duplicate: false
            }
        );
        assert_eq!(
            second,
            Accepted {
                id: "event-1".into(),
                duplicate: true
            }
        );
        assert_eq!(store.event_count().await.unwrap(), 1);
        store.close().await;
    }
}
