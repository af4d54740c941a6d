//! The NATS JetStream backend: several engines share one log of writes.
//!
//! Every write any engine makes ([`Write`]: an accepted event, what processing made, an
//! attempt, a replay, a plugin version) is appended to one JetStream stream, `<prefix>_LOG`,
//! and every engine applies that log, in its order, to a replica of its own: the embedded
//! SQLite store, in its data directory. Applying a write depends only on the write and what
//! the replica holds, so every replica holds the same state and gives every write the same
//! answer: a duplicate idempotency key is answered with the first event's id whichever engine
//! took either; a replay from two engines at once replays once (the second finds the dead
//! letter replayed); a delivered version moves an entity's state only forward, whichever
//! engine delivered it. The guarantees are the embedded store's, because the code that keeps
//! them is the same; what changes is what "durable" means: an answer waits for the log's
//! publish acknowledgement (a majority of the stream's replicas hold the write) and for this
//! engine's replica to have applied it.
//!
//! Reads (pending events and deliveries, histories, dead letters, plugin versions) come from
//! the local replica: every engine answers them the same, once it has applied the same log.
//!
//! One engine at a time holds the *work lease* ([`lease`]): it runs the processor, the
//! dispatcher and housekeeping; every engine accepts events, serves the admin API and loads
//! plugin versions activated anywhere. When the holder stops, it gives the lease back; when it
//! dies, another engine takes the lease once it expires, and goes on from the replicated
//! state: pending events are processed, pending deliveries resume on their stored schedule,
//! in order per entity.
//!
//! Large values stay out of the log: a plugin component is kept in the `<prefix>_plugins`
//! object store (by name and hash) and the log entry refers to it; a write whose encoding is
//! larger than the servers take in one message goes to `<prefix>_writes` the same way.
//!
//! - `log`: appending writes, and applying the log to the replica;
//! - `lease`: the work lease;
//! - `snapshot`: snapshots of a replica, the log trimmed below them, replicas started from one;
//! - `server` (tests): a real `nats-server` on loopback ports.

mod feed;
pub mod lease;
mod log;
#[cfg(any(test, feature = "test-server"))]
pub mod server;
mod snapshot;

use super::{SqliteStore, StoreError, Write};
use crate::config::NatsConfig;
use async_nats::jetstream;
use std::path::Path;
use std::sync::Arc;

pub use feed::Feed;
pub use lease::{Partitions, WorkLease};
pub use snapshot::{Compacted, Compactor};

/// The names on the servers, from the prefix.
#[derive(Debug, Clone)]
struct Names {
    stream: String,
    subject: String,
    plugins: String,
    writes: String,
    leases: String,
    positions: String,
    snapshots: String,
}

impl Names {
    fn new(prefix: &str) -> Names {
        Names {
            stream: format!("{prefix}_LOG"),
            subject: format!("{prefix}.log"),
            plugins: format!("{prefix}_plugins"),
            writes: format!("{prefix}_writes"),
            leases: format!("{prefix}_leases"),
            positions: format!("{prefix}_positions"),
            snapshots: format!("{prefix}_snapshots"),
        }
    }
}

/// A connection to the servers, with the log and buckets created or checked.
#[derive(Clone)]
pub struct Connection {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    plugins: jetstream::object_store::ObjectStore,
    writes: jetstream::object_store::ObjectStore,
    leases: jetstream::kv::Store,
    /// Each replica's applied position, by replica.
    positions: jetstream::kv::Store,
    snapshots: jetstream::object_store::ObjectStore,
    names: Names,
    /// Which log this is: the stream's name and when it was created (a stream deleted and made
    /// again is another log, which no replica of the first may follow).
    identity: String,
    /// The largest message the servers take.
    max_payload: usize,
    config: NatsConfig,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("NATS: {what}: {e}"))
}

impl Connection {
    /// Connects to the servers and creates the log, the buckets and the lease bucket, or
    /// checks that those there match the configuration.
    pub async fn open(config: &NatsConfig) -> Result<Connection, StoreError> {
        let (servers, options) = crate::bus::connect_options(
            &config.servers,
            config.credentials.as_ref(),
            config.user.as_ref().zip(config.password.as_ref()),
            config.request_timeout,
        )
        .await
        .map_err(|e| StoreError::Io(format!("NATS: {e}")))?;
        let client = tokio::time::timeout(
            config.request_timeout,
            async_nats::connect_with_options(servers, options),
        )
        .await
        .map_err(|_| {
            StoreError::Io(format!(
                "NATS: no server of {} answered within {:?}",
                servers_text(config),
                config.request_timeout
            ))
        })?
        .map_err(|e| unavailable(&format!("cannot connect to {}", servers_text(config)), e))?;
        let max_payload = client.server_info().max_payload;
        let mut js = jetstream::new(client);
        js.set_timeout(config.request_timeout);
        let names = Names::new(&config.prefix);
        let stream = ensure_stream(&js, &names, config).await?;
        let identity = format!(
            "{}@{}",
            names.stream,
            stream.cached_info().created.unix_timestamp_nanos()
        );
        let plugins = ensure_objects(&js, &names.plugins, config.replicas).await?;
        let writes = ensure_objects(&js, &names.writes, config.replicas).await?;
        let leases = js
            .create_or_update_key_value(jetstream::kv::Config {
                bucket: names.leases.clone(),
                description: "the sync engine's work lease".into(),
                history: 1,
                max_age: config.lease,
                num_replicas: config.replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&format!("the lease bucket {}", names.leases), e))?;
        let positions = js
            .create_or_update_key_value(jetstream::kv::Config {
                bucket: names.positions.clone(),
                description: "how far each replica of the sync engine's log has applied it".into(),
                history: 1,
                max_age: snapshot::POSITION_KEPT,
                num_replicas: config.replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&format!("the bucket {}", names.positions), e))?;
        let snapshots = ensure_objects(&js, &names.snapshots, config.replicas).await?;
        Ok(Connection {
            js,
            stream,
            plugins,
            writes,
            leases,
            positions,
            snapshots,
            names,
            identity,
            max_payload,
            config: config.clone(),
        })
    }

    /// Opens this engine's replica of the log in `dir`, brings it up to date with the log, and
    /// goes on following the log until `stop` (writes are answered only while it does: stop
    /// it after everything that writes).
    pub async fn replica(
        &self,
        dir: &Path,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<(SqliteStore, Follower), StoreError> {
        let first = self.log_info().await?.state.first_sequence;
        snapshot::restore_if_needed(self, dir, first).await?;
        let log = Arc::new(log::Log::new(self.clone()));
        let store = SqliteStore::open_replica(dir, log.clone())?;
        let position = store.bind_log(&self.identity)?;
        let feed = log.feed.clone();
        let follower = log::Follower::start(log, store.clone(), position).await?;
        let id = replica_id(dir)?;
        tokio::spawn(snapshot::report_position(
            self.clone(),
            store.clone(),
            id,
            stop.clone(),
        ));
        Ok((
            store,
            Follower {
                task: tokio::spawn(follower.run(stop)),
                feed,
            },
        ))
    }

    /// Snapshots and log trimming for the replica `store` in `dir`: run by the engine holding
    /// the work lease.
    pub fn compactor(&self, store: &SqliteStore, dir: &Path) -> Compactor {
        Compactor::new(self.clone(), store.clone(), dir)
    }

    /// The work lease, for this engine.
    pub fn lease(&self) -> WorkLease {
        WorkLease::new(self.leases.clone(), self.config.lease)
    }

    /// The processing partitions, when there is more than one (`store.nats.partitions`).
    pub fn partitions(&self, lease: &WorkLease) -> Option<lease::Partitions> {
        (self.config.partitions > 1)
            .then(|| lease::Partitions::new(lease.clone(), self.config.partitions))
    }

    /// Checks that the log takes writes (a publish its stream acknowledges), for `validate`.
    pub async fn check(&self) -> Result<(), StoreError> {
        let entry = log::entry(&Write::Probe {
            at: super::now_ms(),
        })?;
        log::publish(
            &self.js,
            &self.names.subject,
            &uuid::Uuid::now_v7().to_string(),
            entry,
        )
        .await
        .map(drop)
    }

    /// The name of the server that leads the log's stream (the one whose acknowledgement a
    /// write waits for), when it has a leader.
    pub async fn log_leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .log_info()
            .await?
            .cluster
            .and_then(|cluster| cluster.leader))
    }

    /// The position of the first entry the log holds (entries before it were trimmed behind a
    /// snapshot).
    pub async fn log_first(&self) -> Result<u64, StoreError> {
        Ok(self.log_info().await?.state.first_sequence)
    }

    /// The log stream's state and cluster, as the servers say now.
    pub(super) async fn log_info(&self) -> Result<jetstream::stream::Info, StoreError> {
        self.stream
            .get_info()
            .await
            .map_err(|e| unavailable("cannot read the log's state", e))
    }

    /// A short description for logs: the servers and the stream.
    pub fn describe(&self) -> String {
        format!(
            "{} (stream {})",
            servers_text(&self.config),
            self.names.stream
        )
    }
}

/// The task that applies the log to the replica; see [`Connection::replica`].
pub struct Follower {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    feed: Feed,
}

impl Follower {
    /// The deliveries applied writes queue, for a dispatcher when engines share processing.
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Waits until it stops: at its `stop`, or when the log cannot be followed (the replica
    /// cannot apply an entry, or one cannot be read), which is an error: an engine whose
    /// replica stops cannot answer writes.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.task
            .await
            .map_err(|e| StoreError::Io(format!("the replica's follower panicked: {e}")))?
    }
}

/// The replica's name among the positions: made once, kept in its directory.
fn replica_id(dir: &Path) -> Result<String, StoreError> {
    let path = dir.join("replica-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::now_v7().simple().to_string();
            std::fs::write(&path, &id)
                .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", path.display())))?;
            Ok(id)
        }
    }
}

/// The servers' addresses, for logs and errors: with their credentials masked.
fn servers_text(config: &NatsConfig) -> String {
    config
        .servers
        .iter()
        .map(|s| crate::http::redact::masked_server(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stream's metadata key that records `store.nats.partitions`: engines that divided the
/// events differently could leave some to nobody.
pub const PARTITIONS_KEY: &str = "sync-engine-partitions";

/// Creates the log stream, or checks the one there: its subject, replica count, limits and
/// partition count.
async fn ensure_stream(
    js: &jetstream::Context,
    names: &Names,
    nats: &NatsConfig,
) -> Result<jetstream::stream::Stream, StoreError> {
    let replicas = nats.replicas;
    let config = jetstream::stream::Config {
        metadata: [(PARTITIONS_KEY.to_owned(), nats.partitions.to_string())].into(),
        name: names.stream.clone(),
        description: Some("the sync engine's log of writes".into()),
        subjects: vec![names.subject.clone()],
        retention: jetstream::stream::RetentionPolicy::Limits,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: std::time::Duration::from_secs(120),
        ..Default::default()
    };
    let stream = js
        .get_or_create_stream(config)
        .await
        .map_err(|e| unavailable(&format!("the log stream {}", names.stream), e))?;
    let found = &stream.cached_info().config;
    if found.subjects != [names.subject.clone()] {
        return Err(StoreError::Conflict(format!(
            "the stream {} takes the subjects {:?}, not [{}]: another application uses this prefix",
            names.stream, found.subjects, names.subject
        )));
    }
    if found.num_replicas != replicas {
        return Err(StoreError::Conflict(format!(
            "the stream {} has {} replicas but store.nats.replicas is {replicas}: change one to match",
            names.stream, found.num_replicas
        )));
    }
    if found.max_age != std::time::Duration::ZERO || found.max_messages > 0 || found.max_bytes > 0 {
        return Err(StoreError::Conflict(format!(
            "the stream {} drops old entries (a max age, count or size): a new engine could not rebuild its replica from it",
            names.stream
        )));
    }
    let recorded = found
        .metadata
        .get(PARTITIONS_KEY)
        .map_or("1", String::as_str);
    if recorded != nats.partitions.to_string() {
        return Err(StoreError::Conflict(format!(
            "the log {} is divided into {recorded} partitions but store.nats.partitions is {}: every engine of a log must use the same count (to change it, stop every engine, set the stream's metadata `{PARTITIONS_KEY}`, and start them with the new count)",
            names.stream, nats.partitions
        )));
    }
    Ok(stream)
}

async fn ensure_objects(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<jetstream::object_store::ObjectStore, StoreError> {
    match js.get_object_store(bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: bucket.to_owned(),
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&format!("the object store {bucket}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::server::NatsServer;
    use super::*;
    use crate::config::Expanded;
    use crate::store::Backend;
    use crate::store::conformance::{new_event, run_all};

    pub(crate) fn config(server: &NatsServer, prefix: &str) -> NatsConfig {
        NatsConfig {
            servers: vec![Expanded(server.url())],
            credentials: None,
            user: None,
            password: None,
            prefix: prefix.into(),
            replicas: 1,
            lease: std::time::Duration::from_secs(2),
            request_timeout: std::time::Duration::from_secs(5),
            snapshot_interval: std::time::Duration::from_secs(600),
            partitions: 1,
        }
    }

    /// A replica of the log `prefix` in a fresh directory, following the log until the test
    /// ends.
    async fn replica(server: &NatsServer, prefix: &str) -> (SqliteStore, tempfile::TempDir) {
        let conn = Connection::open(&config(server, prefix)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, _follower) = conn
            .replica(dir.path(), tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        (store, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_passes_the_conformance_suite() {
        let server = NatsServer::start();
        let dirs = std::sync::Mutex::new(Vec::new());
        let n = std::sync::atomic::AtomicUsize::new(0);
        run_all(|| async {
            let prefix = format!(
                "case{}",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let (store, dir) = replica(&server, &prefix).await;
            dirs.lock().unwrap().push(dir);
            Backend::sqlite(&store)
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_answer_alike_and_a_new_one_catches_up() {
        use crate::store::{Intake, Records};
        let server = NatsServer::start();
        let (a, _a) = replica(&server, "two").await;
        let (b, _b) = replica(&server, "two").await;
        let first = a
            .accept(new_event("e1", Some("k"), Some("same")))
            .await
            .unwrap();
        let second = b
            .accept(new_event("e2", Some("k"), Some("same")))
            .await
            .unwrap();
        assert_eq!(first.id, "e1");
        assert!(!first.duplicate);
        assert_eq!(
            second.id, "e1",
            "the key was taken at the other engine first"
        );
        assert!(second.duplicate);
        // A large payload goes through the object store.
        let mut big = new_event("e3", None, None);
        big.event.payload = vec![b'x'; 1 << 20];
        assert!(!b.accept(big).await.unwrap().duplicate);
        let (c, _c) = replica(&server, "two").await;
        for store in [&a, &b, &c] {
            assert_eq!(store.event_count().await.unwrap(), 2);
            let history = store.event_history("e3").await.unwrap().unwrap();
            assert_eq!(history.event.event.payload.len(), 1 << 20);
        }
        // A replica of another log's directory is refused.
        let conn = Connection::open(&config(&server, "other")).await.unwrap();
        let error = conn
            .replica(_a.path(), tokio_util::sync::CancellationToken::new())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("replica of the log"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_fail_while_the_servers_are_down_and_pass_after() {
        use crate::store::Intake;
        let mut server = NatsServer::start();
        let (a, _a) = replica(&server, "down").await;
        a.accept(new_event("e1", None, None)).await.unwrap();
        server.kill();
        let error = a.accept(new_event("e2", None, None)).await.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        server.restart();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match a.accept(new_event("e3", None, None)).await {
                Ok(accepted) => {
                    assert_eq!(accepted.id, "e3");
                    break;
                }
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_engine_holds_the_work_lease_until_it_gives_it_back_or_loses_it() {
        let server = NatsServer::start();
        let conn = Connection::open(&config(&server, "lease")).await.unwrap();
        let (first, second) = (conn.lease(), conn.lease());
        let never = tokio_util::sync::CancellationToken::new();
        let mut held = first.acquire(&never).await.unwrap();
        // The second waits while the first holds it, renewing.
        let stop = tokio_util::sync::CancellationToken::new();
        let waiting = tokio::spawn({
            let (second, stop) = (second.clone(), stop.clone());
            async move { second.acquire(&stop).await }
        });
        let keep_until = tokio_util::sync::CancellationToken::new();
        let keeping = tokio::spawn({
            let (first, keep_until) = (first.clone(), keep_until.clone());
            async move {
                let result = first.keep(&mut held, &keep_until).await;
                (result, held)
            }
        });
        // Longer than the lease (2 s): renewed, so still held.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(!waiting.is_finished(), "taken while held");
        keep_until.cancel();
        let (kept, held) = keeping.await.unwrap();
        kept.unwrap();
        first.release(held).await;
        let mut taken = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("taken soon after it was given back")
            .unwrap()
            .expect("held by the second");
        // The first, taking it again over the second's head, makes the second lose it.
        let entry = conn.leases.entry("work").await.unwrap().unwrap();
        conn.leases
            .update("work", "intruder".into(), entry.revision)
            .await
            .unwrap();
        let lost = second.keep(&mut taken, &never).await.unwrap_err();
        assert!(
            lost.to_string().contains("taken by another engine"),
            "{lost}"
        );
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trimmed_log_keeps_a_snapshot_a_new_replica_starts_from() {
        use crate::store::{Intake, Records};
        let server = NatsServer::start();
        let (a, dir_a) = replica(&server, "trim").await;
        for n in 0..5 {
            a.accept(new_event(&format!("e{n}"), None, None))
                .await
                .unwrap();
        }
        let conn = Connection::open(&config(&server, "trim")).await.unwrap();
        // `a` reports its position every few seconds; here, now.
        let id_a = replica_id(dir_a.path()).unwrap();
        let position_a = a.log_position().unwrap();
        conn.positions
            .put(id_a.as_str(), position_a.to_string().into())
            .await
            .unwrap();
        // A replica that reported it has applied only 2 entries holds the rest in the log.
        conn.positions.put("behind", "2".into()).await.unwrap();
        let compactor = conn.compactor(&a, dir_a.path());
        let done = compactor.compact().await.unwrap();
        assert_eq!(done.snapshot, a.log_position().unwrap());
        assert_eq!(done.trimmed_to, 2);
        assert_eq!(conn.log_first().await.unwrap(), 3);
        conn.positions.delete("behind").await.unwrap();
        let done = compactor.compact().await.unwrap();
        assert_eq!(done.trimmed_to, done.snapshot);
        assert_eq!(conn.log_first().await.unwrap(), done.snapshot + 1);
        // A new replica starts from the snapshot, then follows the log.
        let (c, _c) = replica(&server, "trim").await;
        assert_eq!(c.event_count().await.unwrap(), 5);
        a.accept(new_event("e5", None, None)).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while c.event_count().await.unwrap() < 6 {
            assert!(
                std::time::Instant::now() < deadline,
                "the new replica does not follow"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(c.event_history("e5").await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_refuses_engines_that_divide_it_otherwise_or_keep_it_elsewhere() {
        let server = NatsServer::start();
        Connection::open(&config(&server, "checked")).await.unwrap();
        let four = NatsConfig {
            partitions: 4,
            ..config(&server, "checked")
        };
        let error = Connection::open(&four).await.err().unwrap();
        assert!(
            error
                .to_string()
                .contains("divided into 1 partitions but store.nats.partitions is 4"),
            "{error}"
        );
        let three = NatsConfig {
            replicas: 3,
            ..config(&server, "checked")
        };
        let error = Connection::open(&three).await.err().unwrap();
        assert!(error.to_string().contains("has 1 replicas"), "{error}");
    }
}
