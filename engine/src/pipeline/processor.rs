//! The processor: one *lane* per route (`bus:<type>`, `webhook:<path>`), each reading its
//! route's pending events in acceptance order and processing them on blocking threads,
//! committing every result of a batch in one group commit, then handing the rows it queued and
//! its watermark to the dispatcher. Lanes go on independently: a route whose plugin is slow
//! (or burns its deadline on every event) holds up its own events only.

use super::Routes;
use super::handoff::{ALL_PROCESSED, Handoff};
use super::process::{failed_processing, process};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::{PendingEvent, Processed, WorkQueue};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many pending events a lane reads at a time.
const BATCH: usize = 256;
/// How often the store may refuse an event's result (for a reason about the write, not an
/// outage) before the event is recorded as failed.
const MAX_REFUSALS: u32 = 3;
/// The pause after a batch left events unprocessed; doubled while the store stays unavailable.
const PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause.
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a lane needs, shared by every lane.
/// Which pending events this engine processes, when engines share the work.
pub type EventFilter = Arc<dyn Fn(&PendingEvent) -> bool + Send + Sync>;

struct Shared {
    queue: Arc<dyn WorkQueue>,
    routes: Arc<Routes>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    handoff: Handoff,
    workers: usize,
    /// The events this engine processes, when engines share the work (the rest are other
    /// engines'); all of them otherwise.
    owns: Option<EventFilter>,
    shutdown: CancellationToken,
    /// During an outage every event fails alike: one line a second says so.
    throttle: crate::throttle::Throttle,
}

/// How the processor wakes a lane.
#[derive(Default)]
struct Wake {
    /// New events were accepted.
    accepted: Notify,
    /// Replayed events became pending (maybe older than the lane's cursor).
    requeued: Notify,
}

/// Processes pending events until `shutdown`: one lane per configured route, and one per
/// route with pending events that is no longer configured (found at the start and after each
/// replay), each on up to `workers` threads. When `shutdown` comes, the events already running
/// finish and are committed; the rest stay pending for the next start. Committed rows and each
/// route's watermark go to `handoff`.
#[expect(
    clippy::too_many_arguments,
    reason = "the processor's collaborators, each a different kind; bundling them would only move the list"
)]
pub async fn run_processor(
    queue: Arc<dyn WorkQueue>,
    routes: Arc<Routes>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    handoff: Handoff,
    workers: usize,
    owns: Option<EventFilter>,
    shutdown: CancellationToken,
) {
    let accepted = queue.accepted();
    let requeued = queue.requeued();
    let shared = Arc::new(Shared {
        queue,
        routes,
        registry,
        metrics,
        handoff,
        workers,
        owns,
        shutdown,
        throttle: crate::throttle::Throttle::default(),
    });
    let mut lanes: HashMap<Arc<str>, Arc<Wake>> = HashMap::new();
    let mut running = JoinSet::new();
    let mut names: Vec<Arc<str>> = shared.routes.names().map(Arc::from).collect();
    names.extend(pending_routes(&shared).await);
    names.sort();
    names.dedup();
    shared.handoff.start(&names);
    for name in names {
        add_lane(&shared, &mut lanes, &mut running, name);
    }
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            () = accepted.notified() => {
                // Only the lanes whose routes got events wake (and read the store).
                for name in shared.queue.accepted_routes() {
                    let name: Arc<str> = Arc::from(name);
                    match lanes.get(&name) {
                        Some(wake) => wake.accepted.notify_one(),
                        None => {
                            shared.handoff.start(std::slice::from_ref(&name));
                            add_lane(&shared, &mut lanes, &mut running, name);
                        }
                    }
                }
            }
            () = requeued.notified() => {
                for name in pending_routes(&shared).await {
                    if !lanes.contains_key(&name) {
                        shared.handoff.start(std::slice::from_ref(&name));
                        add_lane(&shared, &mut lanes, &mut running, name);
                    }
                }
                for wake in lanes.values() {
                    wake.requeued.notify_one();
                }
            }
        }
    }
    while let Some(ended) = running.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "a processing lane failed");
        }
    }
}

/// The routes with pending events (none when the store cannot say: they are found again after
/// the next replay or start).
async fn pending_routes(shared: &Shared) -> Vec<Arc<str>> {
    match shared.queue.pending_routes().await {
        Ok(routes) => routes.into_iter().map(Arc::from).collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read which routes have pending events");
            Vec::new()
        }
    }
}

fn add_lane(
    shared: &Arc<Shared>,
    lanes: &mut HashMap<Arc<str>, Arc<Wake>>,
    running: &mut JoinSet<()>,
    route: Arc<str>,
) {
    let wake = Arc::new(Wake::default());
    lanes.insert(route.clone(), wake.clone());
    running.spawn(run_lane(shared.clone(), route, wake));
}

/// One route's lane: reads its pending events a batch at a time, processes and commits them,
/// and hands the rows and its watermark over, until shutdown. The batch in hand when shutdown
/// comes is not finished: events not started stay pending.
async fn run_lane(shared: Arc<Shared>, route: Arc<str>, wake: Arc<Wake>) {
    let (queue, handoff, shutdown) = (&shared.queue, &shared.handoff, &shared.shutdown);
    let mut cursor = 0;
    // Events whose result the store refused, and how often.
    let mut refused: HashMap<String, u32> = HashMap::new();
    // The pause before trying an incomplete batch again.
    let mut pause = PAUSE;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Replayed events can be older than the cursor: read from the start again.
        if take_permit(&wake.requeued) {
            cursor = 0;
        }
        let mut batch = match queue.pending_of(&route, cursor, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(%route, error = %e, "cannot read pending events; retrying in a second");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Some(owns) = &shared.owns
            && let Some(read_to) = batch.last().map(|last| last.stored.seq)
        {
            batch.retain(|event| owns(event));
            if batch.is_empty() {
                // Every event read is another engine's: read on after them.
                cursor = read_to;
                continue;
            }
        }
        let Some(last) = batch.last() else {
            // Nothing is waiting: every event of the route read so far was processed.
            handoff.watermark(&route, ALL_PROCESSED);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.accepted.notified() => continue,
                () = wake.requeued.notified() => {
                    cursor = 0;
                    continue;
                }
            }
        };
        let last_seq = last.stored.seq;
        let first_seq = batch[0].stored.seq;
        if cursor == 0 {
            // A read from the start (after a start or a replay): nothing from this batch on is
            // known to be processed.
            handoff.watermark(&route, first_seq);
        }
        let (results, thread_failed) = process_batch(
            batch,
            &shared.routes,
            &shared.registry,
            &shared.metrics,
            shared.workers,
            shutdown,
        )
        .await;
        let mut incomplete = thread_failed;
        // Whether the store was unavailable (a full or failing disk, a lock held elsewhere).
        let mut outage = false;
        // The first event of the batch left unprocessed.
        let mut unprocessed = i64::MAX;
        // Queue every result before waiting, so they share one commit.
        let writes: Vec<_> = results
            .into_iter()
            .map(|(pending, result)| {
                let processed = match result {
                    Some(processed)
                        if refused.get(&pending.stored.event.id) < Some(&MAX_REFUSALS) =>
                    {
                        processed
                    }
                    Some(_) => failed_processing(
                        &pending,
                        format!("the store refused this event's result {MAX_REFUSALS} times"),
                    ),
                    None => {
                        incomplete = true;
                        unprocessed = unprocessed.min(pending.stored.seq);
                        return None;
                    }
                };
                Some((pending, queue.complete(processed)))
            })
            .collect();
        for (pending, write) in writes.into_iter().flatten() {
            match write.await {
                Ok(rows) => {
                    refused.remove(&pending.stored.event.id);
                    handoff.rows(&route, rows);
                }
                Err(e) => {
                    incomplete = true;
                    unprocessed = unprocessed.min(pending.stored.seq);
                    if e.is_transient() {
                        // An outage is waited out: it never makes the event a dead letter.
                        outage = true;
                    } else {
                        *refused.entry(pending.stored.event.id.clone()).or_default() += 1;
                    }
                    if let Some(left_out) =
                        shared.throttle.check("record", std::time::Instant::now())
                    {
                        tracing::error!(event_id = %pending.stored.event.id, error = %e, left_out, "cannot record a processed event; it will run again");
                    }
                }
            }
        }
        // Rows of events after one left unprocessed wait for it: an older row of their entity
        // may still appear. (A failed thread's events are unknown: the whole batch waits.)
        handoff.watermark(
            &route,
            match (incomplete, thread_failed) {
                (false, _) => ALL_PROCESSED,
                (true, true) => first_seq,
                (true, false) => unprocessed,
            },
        );
        if incomplete {
            // Start again from this batch after a pause (longer while the store stays
            // unavailable): committed events are skipped, the rest run again.
            cursor = first_seq - 1;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            pause = if outage {
                (pause * 2).min(MAX_PAUSE)
            } else {
                PAUSE
            };
        } else {
            cursor = last_seq;
            pause = PAUSE;
        }
    }
}

/// Takes the permit a `notify_one` left, if there is one, without waiting.
fn take_permit(notify: &tokio::sync::Notify) -> bool {
    let mut notified = std::pin::pin!(notify.notified());
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    std::future::Future::poll(notified.as_mut(), &mut context).is_ready()
}

/// Processes a batch on up to `workers` blocking threads, keeping the batch's order. Each
/// event comes back with its result: `None` when it must run again later (the sandbox was
/// busy, or `shutdown` came before it started). A panic while processing an event fails that
/// event alone. The flag says whether a thread failed outright (its events stay pending).
async fn process_batch(
    batch: Vec<PendingEvent>,
    routes: &Arc<Routes>,
    registry: &Arc<Registry>,
    metrics: &Arc<Metrics>,
    workers: usize,
    shutdown: &CancellationToken,
) -> (Vec<(PendingEvent, Option<Processed>)>, bool) {
    let chunk = batch.len().div_ceil(workers.max(1));
    let mut tasks = Vec::new();
    let mut batch = batch;
    while !batch.is_empty() {
        let rest = batch.split_off(chunk.min(batch.len()));
        let part = std::mem::replace(&mut batch, rest);
        let routes = routes.clone();
        let registry = registry.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|pending| {
                    if shutdown.is_cancelled() {
                        return (pending, None);
                    }
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        process(&pending, &routes, &registry, &metrics)
                    }));
                    let processed = match result {
                        Ok(processed) => processed,
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "no message".into());
                            tracing::error!(event_id = %pending.stored.event.id, panic = %message, "processing the event panicked; it is a dead letter");
                            Some(failed_processing(
                                &pending,
                                format!("the engine panicked processing this event: {message}"),
                            ))
                        }
                    };
                    (pending, processed)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut processed = Vec::new();
    let mut failed = false;
    for task in tasks {
        match task.await {
            Ok(part) => processed.extend(part),
            Err(e) => {
                failed = true;
                tracing::error!(error = %e, "a processing thread failed; its events stay pending");
            }
        }
    }
    (processed, failed)
}
