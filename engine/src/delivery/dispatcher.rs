//! The dispatcher's loop: starts a delivery whenever a row is ready and its target has a free
//! slot, and wakes for exactly what can change that: a delivery ending, rows handed over by the
//! processor, a watermark moving, a retry's time coming, or dead letters being replayed.

use super::Dispatcher;
use super::attempt::Finished;
use super::queue::{Capacity, LOAD_PAGE, Order, Queue};
use super::slots::{Held, SlotRelease, Slots};
use crate::pipeline::handoff::{Handed, HandedRows};
use crate::store::{StoreError, now_ms};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long the dispatcher sleeps at most without anything to wake it.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// How long shutdown waits for requests in flight before leaving them to the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long to wait before loading again when the store could not be read.
const LOAD_RETRY: Duration = Duration::from_secs(1);

impl Dispatcher {
    /// Sends rows as they become ready until `shutdown`, within the overall and per-target
    /// concurrency. The rows come from the processor through `handed`; the store's pending rows
    /// are loaded at the start, after a replay, and page by page for a lane the full queue left
    /// partial. Requests in flight then get a grace period to finish and be recorded; those
    /// that do not stay pending.
    pub async fn run(self: Arc<Self>, mut handed: Handed, shutdown: CancellationToken) {
        let requeued = self.outbox.requeued();
        let mut queue = Queue::new(Capacity::default());
        let mut slots = Slots::shown_in(self.metrics.in_flight.clone());
        let mut inflight: JoinSet<Finished> = JoinSet::new();
        // Tasks tell when their request has ended, freeing its slot before they record it.
        let (request_ended, mut requests_ended) = tokio::sync::mpsc::unbounded_channel();
        // Tasks recording an attempt hold their row, not a slot; at most this many in all.
        let max_tasks = self.concurrency.saturating_mul(2);
        // Whether to read the store's pending rows anew (at the start, after a replay).
        let mut reload = true;
        // When reading may be tried again, after the store could not be read.
        let mut load_after: Option<Instant> = None;
        loop {
            if load_after.is_none_or(|at| Instant::now() >= at) {
                match self.load(&mut queue, reload, handed.owns.as_ref()).await {
                    Ok(()) => {
                        reload = false;
                        load_after = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read pending deliveries; trying again in a second");
                        load_after = Some(Instant::now() + LOAD_RETRY);
                    }
                }
            }
            queue.set_watermarks(&handed.watermarks.borrow_and_update());
            queue.advance(now_ms());
            while slots.requests() < self.concurrency && slots.tasks() < max_tasks {
                let Some(row) = queue.take(|target| slots.has_room(target, self.limit_of(target)))
                else {
                    break;
                };
                let this = self.clone();
                let held = Held::of(&row);
                let slot = SlotRelease::new(request_ended.clone());
                let task = inflight.spawn(async move { this.deliver(row, slot).await });
                slots.hold(task.id(), held);
            }
            let mut wake = queue.next_time().map_or(IDLE_POLL, |at| {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
            });
            if let Some(at) = load_after {
                wake = wake.min(at.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    let (task, finished) = match done {
                        Ok((task, finished)) => (task, finished),
                        Err(e) => {
                            tracing::error!(error = %e, "a delivery task failed; its row stays pending");
                            (e.id(), Finished::default())
                        }
                    };
                    if let Some(held) = slots.finished(task) {
                        // A task that failed outright leaves its row to the next load.
                        queue.finished(
                            held.id,
                            held.entity.as_ref(),
                            finished.again,
                            &finished.superseded,
                        );
                    }
                }
                Some(task) = requests_ended.recv() => {
                    slots.request_ended(task);
                    while let Ok(task) = requests_ended.try_recv() {
                        slots.request_ended(task);
                    }
                }
                Some(batch) = handed.rows.recv() => {
                    let mut batch = Some(batch);
                    // Take every batch already waiting before starting deliveries.
                    while let Some(HandedRows { route, rows }) =
                        batch.take().or_else(|| handed.rows.try_recv().ok())
                    {
                        for row in rows {
                            if handed.owns.as_ref().is_none_or(|owns| owns(&row)) {
                                queue.handed_on(&route, row);
                            }
                        }
                    }
                }
                Ok(()) = handed.watermarks.changed() => {}
                () = requeued.notified() => reload = true,
                () = tokio::time::sleep(wake.min(IDLE_POLL)) => {}
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

    /// Reads pending rows from the store into the queue: every lane's first page when
    /// `everything` (the queue is emptied first), else the next page of each partial lane that
    /// has worked most of its rows off.
    async fn load(
        &self,
        queue: &mut Queue,
        everything: bool,
        owns: Option<&crate::pipeline::handoff::RowFilter>,
    ) -> Result<(), StoreError> {
        let lanes: Vec<(String, Option<Order>)> = if everything {
            queue.clear();
            self.outbox
                .lanes()
                .await?
                .into_iter()
                .map(|lane| (lane, None))
                .collect()
        } else {
            queue
                .to_load()
                .into_iter()
                .map(|(lane, after)| (lane, Some(after)))
                .collect()
        };
        for (lane, after) in lanes {
            let mut rows = self.outbox.load(&lane, after, LOAD_PAGE).await?;
            let complete = rows.len() < LOAD_PAGE;
            let through = rows.last().map(super::queue::order);
            if let Some(owns) = owns {
                rows.retain(|row| owns(row));
            }
            queue.loaded_through(&lane, rows, complete, through);
        }
        Ok(())
    }
}
