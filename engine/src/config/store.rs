//! The `store` section: where the data lives, how long finished work is kept, and the free
//! space below which acceptance stops.

use super::values::{self, ExpandedPath};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The durable store.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreConfig {
    /// The data directory; the SQLite database lives inside it.
    #[serde(default = "default_store_path")]
    pub path: ExpandedPath,
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
            path: default_store_path(),
            min_free_space: default_min_free_space(),
            retention: RetentionConfig::default(),
        }
    }
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
