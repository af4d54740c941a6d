//! Shadow versions: a candidate that runs beside a plugin's active version on live events and
//! delivers nothing. After the active version has run on an event (and its result is what
//! counts), the event is offered to the plugin's shadow; one worker runs the shadow on it as a
//! dry run does ([`super::trial`]), compares, counts, and records the comparison with the
//! event.
//!
//! A shadow never makes live work wait for it: the offer is a `try_send` into a bounded queue
//! (at most [`QUEUE_EVENTS`] events and [`QUEUE_BYTES`] of payloads and rows), the worker is one
//! task running one event at a time, and it never waits for a sandbox slot: when none is free
//! it skips. An event the queue has no room for, or that finds no free slot, is skipped and
//! counted. While it runs it does hold a slot (and a core), so `sandbox.maxInstances` should
//! leave room for it.

use super::routes::{RouteHandler, Routes};
use super::trial::{Then, Verdict, try_on};
use crate::metrics::Metrics;
use crate::sandbox::Plugin;
use crate::sandbox::event::Event;
use crate::store::{OutboxAction, Records, ShadowRun, now_ms};
use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most events waiting for shadows.
pub const QUEUE_EVENTS: usize = 256;

/// The most bytes (payloads, and the rows they are compared with) waiting for shadows.
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// How many of a shadow's latest differences (and failures) are kept for its report.
pub const LATEST: usize = 20;

/// Shadow runs recorded in one store write at most.
const BATCH: usize = 64;

/// A shadow version of one plugin, and what it has done so far.
pub struct Shadow {
    /// The candidate, compiled.
    pub plugin: Plugin,
    /// Its component, for promotion.
    pub component: Vec<u8>,
    /// The fixtures it came with, for promotion.
    pub fixtures: Option<String>,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Who started it.
    pub by: String,
    stats: Mutex<Stats>,
}

/// What a shadow has done.
pub struct Stats {
    /// Events where it made what the active version made.
    pub same: u64,
    /// Events where it made something else.
    pub different: u64,
    /// Events it failed where the active version did not (or failed otherwise).
    pub failed: u64,
    /// Events it did not run on: the queue was full, or no sandbox slot was free.
    pub skipped: u64,
    /// Its run times, microseconds.
    pub shadow_us: Histogram<u32>,
    /// The active version's run times on the same events, microseconds.
    pub active_us: Histogram<u32>,
    /// The latest differences and failures, newest last.
    pub latest: VecDeque<ShadowRun>,
}

impl Shadow {
    /// A shadow of `plugin` (its `component` and `fixtures` kept for promotion), started now by
    /// `by`.
    pub fn new(plugin: Plugin, component: Vec<u8>, fixtures: Option<String>, by: &str) -> Shadow {
        let times = || Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid bounds");
        Shadow {
            plugin,
            component,
            fixtures,
            started_at: now_ms(),
            by: by.to_owned(),
            stats: Mutex::new(Stats {
                same: 0,
                different: 0,
                failed: 0,
                skipped: 0,
                shadow_us: times(),
                active_us: times(),
                latest: VecDeque::new(),
            }),
        }
    }

    /// What it has done so far.
    pub fn stats<T>(&self, read: impl FnOnce(&Stats) -> T) -> T {
        read(&self.stats.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn skipped(&self, metrics: &Metrics) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .skipped += 1;
        metrics.count_shadow(self.plugin.name(), "skipped");
    }
}

/// What the active version made of an event, as the shadow is compared with it.
#[derive(Debug, Clone)]
pub enum Live {
    /// These rows.
    Made(Vec<OutboxAction>),
    /// It failed with this code and error.
    Failed(String, String),
}

/// An event waiting for a shadow.
struct Job {
    shadow: Arc<Shadow>,
    event: Event,
    index: usize,
    handler: RouteHandler,
    live: Live,
    active_hash: String,
    active_us: u64,
    /// What it counts for in the queue's byte budget.
    bytes: usize,
}

/// The shadows of every plugin, and the queue to their worker.
pub struct Shadows {
    by_plugin: ArcSwap<HashMap<String, Arc<Shadow>>>,
    queue: mpsc::Sender<Job>,
    jobs: Mutex<Option<mpsc::Receiver<Job>>>,
    queued_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Shadows {
    /// No shadows yet; [`Shadows::run`] is their worker.
    pub fn new(metrics: Arc<Metrics>) -> Shadows {
        let (queue, jobs) = mpsc::channel(QUEUE_EVENTS);
        Shadows {
            by_plugin: ArcSwap::from_pointee(HashMap::new()),
            queue,
            jobs: Mutex::new(Some(jobs)),
            queued_bytes: Arc::default(),
            metrics,
        }
    }

    /// The shadow of `plugin`, if it has one.
    pub fn of(&self, plugin: &str) -> Option<Arc<Shadow>> {
        self.by_plugin.load().get(plugin).cloned()
    }

    /// Makes `shadow` the shadow of its plugin; answers the one it replaces.
    pub fn start(&self, shadow: Shadow) -> Option<Arc<Shadow>> {
        let name = shadow.plugin.name().to_owned();
        let shadow = Arc::new(shadow);
        let mut replaced = None;
        self.by_plugin.rcu(|current| {
            let mut next = HashMap::clone(current);
            replaced = next.insert(name.clone(), shadow.clone());
            next
        });
        replaced
    }

    /// Ends the shadow of `plugin`; answers it.
    pub fn stop(&self, plugin: &str) -> Option<Arc<Shadow>> {
        let mut stopped = None;
        self.by_plugin.rcu(|current| {
            let mut next = HashMap::clone(current);
            stopped = next.remove(plugin);
            next
        });
        stopped
    }

    /// Offers an event the active version of `handler`'s plugin just ran on to its shadow, if
    /// it has one; never waits. `live` is what the active version made.
    pub fn offer(
        &self,
        event: &Event,
        index: usize,
        handler: &RouteHandler,
        live: &Result<Vec<OutboxAction>, (String, String)>,
        active: &Plugin,
        active_took: Duration,
    ) {
        let Some(shadow) = self.of(&handler.handler.name) else {
            return;
        };
        // What the job holds: the payload and the rows to compare with.
        let bytes = event.payload.len()
            + live
                .as_ref()
                .map_or(0, |rows| rows.iter().map(|r| r.body.len() + 256).sum());
        if self.queued_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            shadow.skipped(&self.metrics);
            return;
        }
        let job = Job {
            shadow: shadow.clone(),
            event: event.clone(),
            index,
            handler: handler.clone(),
            live: match live {
                Ok(rows) => Live::Made(rows.clone()),
                Err((code, error)) => Live::Failed(code.clone(), error.clone()),
            },
            active_hash: active.hash().to_owned(),
            active_us: u64::try_from(active_took.as_micros()).unwrap_or(u64::MAX),
            bytes,
        };
        if self.queue.try_send(job).is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            shadow.skipped(&self.metrics);
        }
    }

    /// The worker: runs each offered event on its shadow, one at a time, and records the
    /// comparisons in `records`, until `shutdown`. Runs once: a second call returns at once.
    pub async fn run(
        self: Arc<Self>,
        routes: Arc<Routes>,
        records: Arc<dyn Records>,
        shutdown: CancellationToken,
    ) {
        let Some(mut jobs) = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        loop {
            let first = tokio::select! {
                job = jobs.recv() => job,
                () = shutdown.cancelled() => None,
            };
            let Some(first) = first else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let bytes: usize = batch.iter().map(|j| j.bytes).sum();
            let (routes, worker, stopping) = (routes.clone(), self.clone(), shutdown.clone());
            let runs = tokio::task::spawn_blocking(move || {
                // A stopping engine does not wait for the rest of the batch.
                batch
                    .iter()
                    .take_while(|_| !stopping.is_cancelled())
                    .filter_map(|job| worker.run_one(job, &routes))
                    .collect::<Vec<_>>()
            })
            .await;
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            match runs {
                Ok(runs) if !runs.is_empty() => {
                    if let Err(e) = records.record_shadow_runs(runs).await {
                        tracing::warn!(error = %e, "cannot record shadow runs; they are counted but not kept");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "a shadow run panicked"),
            }
        }
    }

    /// Runs one offered event on its shadow, unless the shadow was stopped meanwhile.
    fn run_one(&self, job: &Job, routes: &Routes) -> Option<ShadowRun> {
        let current = self.of(job.shadow.plugin.name())?;
        if !Arc::ptr_eq(&current, &job.shadow) {
            return None;
        }
        let then = match &job.live {
            Live::Made(rows) => Then::Made(rows),
            Live::Failed(code, error) => Then::Failed { code, error },
        };
        let tried = try_on(
            &job.event,
            job.index,
            &job.handler,
            routes,
            &job.shadow.plugin,
            then,
            &|_| false,
        );
        let (verdict, changes, error) = match tried.verdict {
            Verdict::Same => ("same", None, None),
            Verdict::Different { before, patch, .. } => {
                let changes = super::trial::changes(&before, &patch);
                ("different", serde_json::to_string(&changes).ok(), None)
            }
            Verdict::Busy => {
                job.shadow.skipped(&self.metrics);
                return None;
            }
            Verdict::Failed(error) => ("failed", None, Some(error)),
        };
        self.metrics.count_shadow(job.shadow.plugin.name(), verdict);
        let run = ShadowRun {
            event_id: job.event.id.clone(),
            handler: job.index,
            plugin: job.shadow.plugin.name().to_owned(),
            shadow_hash: job.shadow.plugin.hash().to_owned(),
            active_hash: job.active_hash.clone(),
            verdict: verdict.to_owned(),
            changes,
            error,
            duration_us: i64::try_from(tried.took.as_micros()).unwrap_or(i64::MAX),
            ran_at: now_ms(),
        };
        let mut stats = job
            .shadow
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match verdict {
            "same" => stats.same += 1,
            "different" => stats.different += 1,
            _ => stats.failed += 1,
        }
        let micros = |us: u64| us.clamp(1, 600_000_000);
        let _ = stats
            .shadow_us
            .record(micros(u64::try_from(run.duration_us).unwrap_or(0)));
        let _ = stats.active_us.record(micros(job.active_us));
        if verdict != "same" {
            if stats.latest.len() == LATEST {
                stats.latest.pop_front();
            }
            stats.latest.push_back(run.clone());
        }
        Some(run)
    }
}
