//! The dispatcher's loop: fills free slots with due rows, within the overall and per-target
//! concurrency and one delivery per entity at a time, and wakes when a delivery finishes, when
//! the outbox changes, or when the next retry is due.

use super::Dispatcher;
use super::slots::Slots;
use crate::store::{DueQuery, now_ms};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long the dispatcher sleeps at most before looking for due rows again.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// The longest a free delivery slot waits to be refilled while others are being freed, so that
/// under load one store query refills several slots.
const REFILL_PAUSE: Duration = Duration::from_millis(2);
/// How long shutdown waits for requests in flight before leaving them to the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Dispatcher {
    /// Sends due rows until `shutdown`, within the overall and per-target concurrency limits.
    /// Requests in flight then get a grace period to finish and be recorded; those that do not
    /// stay pending.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let changed = self.outbox.changed();
        let mut inflight: JoinSet<bool> = JoinSet::new();
        let mut slots = Slots::default();
        // When the store was last asked for due rows: under load a refill waits for a few
        // slots to free (or a moment to pass), so one query starts many deliveries.
        let mut last_query: Option<Instant> = None;
        let refill_batch = (self.concurrency / 8).max(1);
        let finish =
            |slots: &mut Slots, done: Result<(tokio::task::Id, bool), tokio::task::JoinError>| {
                let (task, recorded) = match done {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(error = %e, "a delivery task failed; its row stays pending");
                        (e.id(), false)
                    }
                };
                slots.release(task, recorded, Instant::now());
            };
        loop {
            // Take back every finished task first: one query then refills all their slots.
            while let Some(done) = inflight.try_join_next_with_id() {
                finish(&mut slots, done);
            }
            let free = self.concurrency.saturating_sub(inflight.len());
            let since_query = last_query.map_or(Duration::MAX, |at| at.elapsed());
            let mut sleep = IDLE_POLL;
            if free > 0 && (free >= refill_batch || since_query >= REFILL_PAUSE) {
                last_query = Some(Instant::now());
                let now = now_ms();
                let (skip, busy) = slots.exclusions(Instant::now(), |name| self.limit_of(name));
                let query = DueQuery {
                    now,
                    limit: free,
                    skip,
                    busy,
                };
                let mut started = 0;
                match self.outbox.due(query).await {
                    Ok(rows) => {
                        for row in rows {
                            if inflight.len() >= self.concurrency {
                                break;
                            }
                            let Some(claim) = slots.claim(&row, |name| self.limit_of(name)) else {
                                continue;
                            };
                            let this = self.clone();
                            let task = inflight.spawn(async move { this.deliver(row).await });
                            slots.hold(task.id(), claim);
                            started += 1;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read due deliveries"),
                }
                // Every free slot filled: finishing tasks wake the loop. Otherwise sleep
                // until the next row is due (a retry), or a new row is queued.
                if started < free
                    && let Ok(Some(at)) = self.outbox.next_due(now).await
                {
                    let wait = u64::try_from(at - now_ms()).unwrap_or(0);
                    sleep = Duration::from_millis(wait).min(IDLE_POLL);
                }
            } else if free > 0 {
                sleep = REFILL_PAUSE.saturating_sub(since_query);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    finish(&mut slots, done);
                }
                () = changed.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = inflight.len(),
                "deliveries still in flight at shutdown; they stay pending and are sent again on the next start"
            );
        }
    }
}
