//! The `store` section: where the data lives, how long finished work is kept, and the free
//! space below which acceptance stops.

use super::values::{self, Expanded, ExpandedPath};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The durable store.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreConfig {
    /// Which backend keeps the engine's state: `sqlite` (embedded, the default) or `nats`
    /// (a NATS JetStream log that several engines share; `nats` says where).
    #[serde(default)]
    pub kind: StoreKind,
    /// The data directory; the SQLite database lives inside it (with `kind: nats`, this
    /// instance's replica of the log).
    #[serde(default = "default_store_path")]
    pub path: ExpandedPath,
    /// The NATS servers and names, with `kind: nats`.
    #[serde(default)]
    pub nats: Option<NatsConfig>,
    /// Below this much free space on the data directory's file system, acceptance answers 503
    /// (before the disk is full and every write fails).
    #[serde(default = "default_min_free_space", deserialize_with = "values::size")]
    pub min_free_space: usize,
    /// How long finished work and dedupe keys are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::default(),
            path: default_store_path(),
            nats: None,
            min_free_space: default_min_free_space(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Which backend keeps the engine's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// SQLite in the data directory: one engine.
    #[default]
    Sqlite,
    /// A log on NATS JetStream that several engines share, each with a replica of it.
    Nats,
}

/// Where the NATS backend keeps its log, and how it connects.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NatsConfig {
    /// The servers to connect to (`nats://host:port`); any one of a cluster will do.
    pub servers: Vec<Expanded>,
    /// A credentials file (`.creds`: a user JWT and its NKey seed), when the servers ask for one.
    #[serde(default)]
    pub credentials: Option<ExpandedPath>,
    /// A user and password, when the servers ask for them (not with `credentials`).
    #[serde(default)]
    pub user: Option<Expanded>,
    /// The password of `user`.
    #[serde(default)]
    pub password: Option<Expanded>,
    /// Starts the names of everything the engine keeps on the servers (the `<prefix>_LOG`
    /// stream and its `<prefix>.log` subject, the `<prefix>_plugins`, `<prefix>_writes`,
    /// `<prefix>_snapshots`, `<prefix>_leases` and `<prefix>_positions` buckets): engines with
    /// the same prefix share their work. Letters, digits, `-` and `_`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How many servers keep each copy of the log (1, 3 or 5): an answer 202 waits for a
    /// majority of them.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long the engine holding the work (processing and delivery) keeps it without
    /// renewing it: another engine takes over this long after the holder dies.
    #[serde(
        default = "default_lease",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub lease: Duration,
    /// How long a call to the servers may take before it fails (a write answered 503).
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub request_timeout: Duration,
    /// How often the engine holding the work lease snapshots its replica and removes from
    /// the log what every engine has applied.
    #[serde(
        default = "default_snapshot_interval",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub snapshot_interval: Duration,
    /// Into how many partitions the work is divided: with more than one, every engine processes
    /// and delivers the partitions it holds (spread over the live engines), and the engine
    /// holding the work lease keeps house. 1: the engine holding the work lease does all of it.
    /// Every engine of a log must use the same count.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
}

fn default_partitions() -> u32 {
    1
}

fn default_snapshot_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_prefix() -> String {
    "sync".into()
}
fn default_replicas() -> usize {
    1
}
fn default_lease() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

/// How long finished work is kept before it is pruned (in the background, in small
/// transactions).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionConfig {
    /// An event whose work is finished (processed, and every action delivered, dropped or
    /// superseded) is removed with its payload, runs, actions and attempts this long after it
    /// was accepted.
    #[serde(
        default = "default_finished",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub finished: Duration,
    /// An event with a dead letter not replayed is kept until the dead letter is this old.
    #[serde(
        default = "default_dead_letters",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub dead_letters: Duration,
    /// How long a sender's idempotency key is remembered (a repeat within it is a duplicate).
    #[serde(
        default = "default_dedupe",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub dedupe: Duration,
    /// How often pruning runs.
    #[serde(
        default = "default_interval",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            finished: default_finished(),
            dead_letters: default_dead_letters(),
            dedupe: default_dedupe(),
            interval: default_interval(),
        }
    }
}

fn default_store_path() -> ExpandedPath {
    ExpandedPath(PathBuf::from("data"))
}
fn default_min_free_space() -> usize {
    256 << 20
}
fn default_finished() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_dead_letters() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_dedupe() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
