//! Housekeeping: the store's size stays bounded. Finished work is pruned in the background a
//! small round at a time (`store.retention`), and while free space on the data directory is
//! below `store.minFreeSpace`, acceptance answers 503 (before the disk is full and every write
//! fails). Works on any backend through [`Retention`].

use super::{Cutoffs, Prune, Retention, now_ms};
use crate::config::StoreConfig;
use crate::metrics::{Metrics, PrunedLabels};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often free space is checked.
pub const SPACE_CHECK: Duration = Duration::from_secs(5);
/// Events removed (and dedupe keys forgotten) per round at most: one round is one small
/// transaction among the engine's other writes.
pub const ROUND: usize = 500;

/// Prunes and watches free space until `shutdown`.
pub async fn run(
    store: Arc<dyn Retention>,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut low = false;
    let mut next_prune = tokio::time::Instant::now();
    loop {
        low = check_space(&*store, &config, &metrics, low);
        if tokio::time::Instant::now() >= next_prune {
            prune(&*store, &config, &metrics, &shutdown).await;
            next_prune = tokio::time::Instant::now() + config.retention.interval;
        }
        let wake = next_prune.min(tokio::time::Instant::now() + SPACE_CHECK);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Reads the store's size and free space; refuses new events while space is low, and takes
/// them again once there is room. Returns whether space is low.
fn check_space(
    store: &dyn Retention,
    config: &StoreConfig,
    metrics: &Metrics,
    was_low: bool,
) -> bool {
    let footprint = match store.footprint() {
        Ok(footprint) => footprint,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the store's size or free space");
            return was_low;
        }
    };
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    metrics.store_bytes.set(gauge(footprint.bytes));
    metrics.store_free_bytes.set(gauge(footprint.free_bytes));
    let min_free = u64::try_from(config.min_free_space).unwrap_or(u64::MAX);
    let low = footprint.free_bytes < min_free;
    if low {
        let why = format!(
            "only {} MiB are free on the data directory's file system (store.minFreeSpace is {} MiB)",
            footprint.free_bytes >> 20,
            min_free >> 20
        );
        if !was_low {
            tracing::error!(
                free_bytes = footprint.free_bytes,
                min_free,
                "{why}; new events are refused until there is room"
            );
        }
        store.refuse_accepts(Some(why));
    } else if was_low {
        tracing::info!(
            free_bytes = footprint.free_bytes,
            "there is room on the data directory again; new events are accepted"
        );
        store.refuse_accepts(None);
    }
    low
}

/// Prunes round after round until nothing old enough is left, or `shutdown`.
async fn prune(
    store: &dyn Retention,
    config: &StoreConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) {
    let now = now_ms();
    let before =
        |age: Duration| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let cutoffs = Cutoffs {
        finished: before(config.retention.finished),
        dead_letters: before(config.retention.dead_letters),
        dedupe: before(config.retention.dedupe),
    };
    let (mut after, mut events, mut keys) = (0, 0, 0);
    while !shutdown.is_cancelled() {
        let round = match store
            .prune(Prune {
                cutoffs,
                after,
                limit: ROUND,
            })
            .await
        {
            Ok(round) => round,
            Err(e) => {
                tracing::error!(error = %e, "cannot prune finished work; trying again at the next interval");
                break;
            }
        };
        for (what, n) in [("events", round.events), ("dedupe-keys", round.dedupe_keys)] {
            metrics
                .pruned
                .get_or_create(&PrunedLabels { what: what.into() })
                .inc_by(n);
        }
        events += round.events;
        keys += round.dedupe_keys;
        match round.next {
            Some(next) => after = next,
            None if round.dedupe_keys == ROUND as u64 => {}
            None => break,
        }
        // Let the engine's own writes go first.
        tokio::task::yield_now().await;
    }
    if events + keys > 0 {
        tracing::info!(events, dedupe_keys = keys, "pruned finished work");
    }
}
