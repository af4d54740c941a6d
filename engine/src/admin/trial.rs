//! `POST /admin/plugins/{name}/try`: a dry run of a candidate version over stored events of the
//! plugin's routes. The candidate is compiled as an upload is, never stored or activated; each
//! event runs in the same sandbox, limits and settings, and nothing it makes is delivered.
//!
//! A dry run is bound to its request: one runs at a time (a second is refused with 409 until
//! the first one's work has ended, not only its request), and it stops at the next event when
//! its client goes away, when the engine stops, or when its time budget runs out (then it
//! answers with what it tried). It reads one event's history at a time, so its memory does not
//! grow with the payloads it reads, and its report carries at most [`MAX_CHANGE_BYTES`] of
//! changes.

use super::api::{Trial, TrialEvent, TrialQuery, TrialSummary};
use super::{Admin, parse_time};
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::pipeline::Routes;
use crate::pipeline::trial::{Then, Verdict, changes, try_on};
use crate::sandbox::{Plugin, World};
use crate::store::{EventHistory, EventQuery, FoundEvent, Records, RunOutcome};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Events a dry run takes when the request does not say.
const DEFAULT_EVENTS: usize = 1_000;
/// The most one dry run takes.
const MAX_EVENTS: usize = 10_000;

/// How long a dry run may take when the request does not say.
const DEFAULT_BUDGET: Duration = Duration::from_secs(120);
/// The longest a dry run may take.
const MAX_BUDGET: Duration = Duration::from_secs(600);

/// The most bytes of changes (as JSON) one report carries; past them, an event keeps its
/// verdict and leaves its changes out.
const MAX_CHANGE_BYTES: usize = 8 << 20;

/// How long a dry run waits, per event, for a sandbox slot that live events hold.
const BUSY_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn try_version(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<TrialQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<Trial>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let Query(query) = query.map_err(ApiError::bad_request)?;
    let (component, _) = super::plugins::read_upload(&headers, request).await?;
    admin.try_version(&name, component, &query).await.map(Json)
}

impl Admin {
    /// Runs `component` as a version of `name` over the stored events `query` selects and
    /// compares what it makes with what was made then. The work stops when this future is
    /// dropped (the request's client went away), when the engine stops, or when the query's
    /// time budget runs out; only then may another dry run start.
    pub async fn try_version(
        &self,
        name: &str,
        component: Vec<u8>,
        query: &TrialQuery,
    ) -> Result<Trial, ApiError> {
        let started = Instant::now();
        let limit = query.limit.unwrap_or(DEFAULT_EVENTS);
        if !(1..=MAX_EVENTS).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "`limit` is 1 to {MAX_EVENTS} (default {DEFAULT_EVENTS})"
            )));
        }
        let budget = budget(query.budget.as_deref())?;
        let time = |raw: &Option<String>| {
            raw.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(parse_time)
                .transpose()
        };
        let (since, until) = (time(&query.since)?, time(&query.until)?);
        if component.is_empty() {
            return Err(ApiError::bad_request("the request holds no component"));
        }
        let candidate = self
            .registry
            .candidate(name, component)
            .await
            .map_err(super::plugins::refused)?;
        if candidate.world() == World::Resolver {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                "a dry run tries transformers and handlers; a resolver has no events of its own",
            ));
        }
        let handled: Vec<(String, usize)> = self
            .routes
            .of_plugin(name)
            .into_iter()
            .map(|(route, index, _)| (route, index))
            .collect();
        // One dry run at a time, held by its work until that ends.
        let running = self.trials.clone().try_lock_owned().map_err(|_| {
            ApiError::new(
                StatusCode::CONFLICT,
                "dry-run-running",
                "another dry run is running on this engine; try again when it has finished",
            )
        })?;
        let found = if handled.is_empty() {
            Vec::new()
        } else {
            self.records
                .find_events(EventQuery {
                    routes: handled.iter().map(|(route, _)| route.clone()).collect(),
                    since,
                    until,
                    limit,
                    ..EventQuery::default()
                })
                .await
                .map_err(|e| ApiError::store_unavailable(&e))?
        };
        let stop = self.shutdown.child_token();
        // Dropped with this future when the client goes away: the work stops at its next event.
        let _stop_when_dropped = stop.clone().drop_guard();
        let work = Work {
            plugin: name.to_owned(),
            found,
            handled,
            records: self.records.clone(),
            routes: self.routes.clone(),
            candidate,
            metrics: self.metrics.clone(),
            runtime: tokio::runtime::Handle::current(),
            shutdown: self.shutdown.clone(),
            stop,
            deadline: started + budget,
            budget,
            _running: running,
        };
        let (report, stopped) = tokio::task::spawn_blocking(move || work.run())
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "engine-error",
                    format!("the dry run failed: {e}"),
                )
            })??;
        let trial = report.into_trial(name, stopped, started);
        tracing::info!(
            plugin = name,
            candidate = %trial.candidate,
            selected = trial.summary.selected,
            events = trial.summary.events,
            same = trial.summary.same,
            different = trial.summary.different,
            failed = trial.summary.failed,
            stopped = trial.stopped.as_deref().unwrap_or("no"),
            by = %self.identity,
            "dry run"
        );
        Ok(Trial {
            active: self.registry.get(name).map(|p| p.hash().to_owned()),
            ..trial
        })
    }
}

/// A dry run's time budget: the query's, else [`DEFAULT_BUDGET`]; at most [`MAX_BUDGET`].
fn budget(raw: Option<&str>) -> Result<Duration, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(DEFAULT_BUDGET);
    };
    humantime::parse_duration(raw)
        .ok()
        .filter(|b| !b.is_zero() && *b <= MAX_BUDGET)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`budget` is a duration from 1s to {} (such as `30s`; default {})",
                humantime::format_duration(MAX_BUDGET),
                humantime::format_duration(DEFAULT_BUDGET)
            ))
        })
}

/// A dry run's work, on a thread that may block: the events found, tried one at a time.
struct Work {
    plugin: String,
    found: Vec<FoundEvent>,
    /// The plugin's routes and its place among each one's handlers.
    handled: Vec<(String, usize)>,
    records: Arc<dyn Records>,
    routes: Arc<Routes>,
    candidate: Plugin,
    metrics: Arc<Metrics>,
    /// To read each event's history from the blocking thread.
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    /// Cancelled by the shutdown or when the request is dropped.
    stop: CancellationToken,
    deadline: Instant,
    budget: Duration,
    /// The one-at-a-time lock, held until the work ends.
    _running: tokio::sync::OwnedMutexGuard<()>,
}

impl Work {
    /// Tries every event found, or those before it was told to stop: the report, and why it
    /// stopped early.
    fn run(self) -> Result<(Report, Option<String>), ApiError> {
        let _counted = Counted::new(&self.metrics.dry_runs_running);
        let mut report = Report::new(self.found.len(), self.candidate.hash());
        let keep_waiting = |waited: Duration| waited < BUSY_WAIT && !self.stop.is_cancelled();
        for (tried, found) in self.found.iter().enumerate() {
            if let Some(why) = self.why_stop() {
                let why = format!("{why} after {tried} of {} events", self.found.len());
                if !self.shutdown.is_cancelled() && self.stop.is_cancelled() {
                    tracing::info!(plugin = %self.plugin, "dry run stopped: {why}");
                }
                return Ok((report, Some(why)));
            }
            let id = &found.event.event.id;
            let history = self
                .runtime
                .block_on(self.records.event_history(id))
                .map_err(|e| ApiError::store_unavailable(&e))?;
            // Pruned since it was found: nothing to compare.
            let Some(history) = history else { continue };
            let route = found.event.route.to_string();
            for (_, index) in self.handled.iter().filter(|(r, _)| *r == route) {
                let case = Case {
                    history: &history,
                    index: *index,
                };
                report.add(try_case(
                    &case,
                    &self.plugin,
                    &self.routes,
                    &self.candidate,
                    &keep_waiting,
                ));
                self.metrics.dry_run_events.inc();
            }
        }
        Ok((report, None))
    }

    /// Why the work should stop now, if it should.
    fn why_stop(&self) -> Option<String> {
        if self.shutdown.is_cancelled() {
            Some("the engine is stopping".to_owned())
        } else if self.stop.is_cancelled() {
            Some("its client went away".to_owned())
        } else if Instant::now() >= self.deadline {
            Some(format!(
                "its time budget of {} ran out",
                humantime::format_duration(self.budget)
            ))
        } else {
            None
        }
    }
}

/// A dry run counted in `sync_dry_runs_running` while it lives.
struct Counted(prometheus_client::metrics::gauge::Gauge);

impl Counted {
    fn new(running: &prometheus_client::metrics::gauge::Gauge) -> Counted {
        running.inc();
        Counted(running.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a dry run found so far.
struct Report {
    candidate: String,
    selected: usize,
    events: Vec<TrialEvent>,
    candidate_us: Vec<u64>,
    then_us: Vec<u64>,
    /// Bytes of changes kept so far.
    change_bytes: usize,
}

impl Report {
    fn new(selected: usize, candidate: &str) -> Report {
        Report {
            candidate: candidate.to_owned(),
            selected,
            events: Vec::new(),
            candidate_us: Vec::new(),
            then_us: Vec::new(),
            change_bytes: 0,
        }
    }

    /// Adds one case's result, keeping its changes while the report has room for them.
    fn add(&mut self, (mut event, candidate, then): (TrialEvent, Option<u64>, Option<u64>)) {
        if !event.changes.is_empty() {
            let bytes = serde_json::to_vec(&event.changes).map_or(usize::MAX, |b| b.len());
            if self.change_bytes.saturating_add(bytes) > MAX_CHANGE_BYTES {
                event.changes = Vec::new();
                event.changes_omitted = true;
            } else {
                self.change_bytes += bytes;
            }
        }
        self.candidate_us.extend(candidate);
        self.then_us.extend(then);
        self.events.push(event);
    }

    fn into_trial(self, plugin: &str, stopped: Option<String>, started: Instant) -> Trial {
        let count = |verdict: &str| self.events.iter().filter(|e| e.verdict == verdict).count();
        let summary = TrialSummary {
            selected: self.selected,
            events: self.events.len(),
            same: count("same"),
            different: count("different"),
            failed: count("failed"),
            skipped: count("skipped"),
            candidate_p50_ms: percentile_ms(&self.candidate_us, 0.5),
            candidate_p99_ms: percentile_ms(&self.candidate_us, 0.99),
            then_p50_ms: percentile_ms(&self.then_us, 0.5),
            then_p99_ms: percentile_ms(&self.then_us, 0.99),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        Trial {
            plugin: plugin.to_owned(),
            candidate: self.candidate,
            active: None,
            summary,
            stopped,
            events: self.events,
        }
    }
}

/// One event to try: its history, and the plugin's place among its route's handlers.
struct Case<'a> {
    history: &'a EventHistory,
    index: usize,
}

/// Tries the candidate on one case: the event's verdict, the candidate's run time and the
/// recorded run time then (microseconds), when it ran.
fn try_case(
    case: &Case<'_>,
    plugin: &str,
    routes: &Routes,
    candidate: &Plugin,
    keep_waiting: &dyn Fn(Duration) -> bool,
) -> (TrialEvent, Option<u64>, Option<u64>) {
    let stored = &case.history.event;
    let mut event = TrialEvent {
        event_id: stored.event.id.clone(),
        event_type: stored.event.event_type.clone(),
        key: stored.event.key.clone(),
        accepted_at: stored.accepted_at,
        handler: case.index,
        verdict: "skipped".into(),
        then_version: None,
        changes: Vec::new(),
        changes_omitted: false,
        error: None,
    };
    let Some(run) = case
        .history
        .runs
        .iter()
        .rev()
        .find(|r| r.handler == case.index)
    else {
        event.error = Some("not processed yet".into());
        return (event, None, None);
    };
    if run.plugin != plugin {
        event.error = Some(format!("`{}` handled it then", run.plugin));
        return (event, None, None);
    }
    event.then_version = Some(run.plugin_hash.clone());
    let Some(handler) = routes
        .handlers(&stored.route)
        .get(case.index)
        .filter(|h| h.handler.name == plugin)
    else {
        event.error = Some("its route no longer runs this plugin there".into());
        return (event, None, None);
    };
    let prefix = format!("{}.{}.", stored.event.id, case.index);
    let made: Vec<_> = case
        .history
        .outbox
        .iter()
        .filter(|(row, _)| row.action.idempotency_key.starts_with(&prefix))
        .map(|(row, _)| {
            let mut action = row.action.clone();
            // Superseding a row records why in its `reason`; when it was made it had none.
            if row.state == crate::store::OutboxState::Superseded {
                action.reason = None;
            }
            action
        })
        .collect();
    let error = run.error.clone().unwrap_or_default();
    let then = match &run.outcome {
        RunOutcome::Ok => Then::Made(&made),
        other => Then::Failed {
            code: other.as_str(),
            error: &error,
        },
    };
    let tried = try_on(
        &stored.event,
        case.index,
        handler,
        routes,
        candidate,
        then,
        keep_waiting,
    );
    match tried.verdict {
        Verdict::Same => event.verdict = "same".into(),
        Verdict::Failed(e) => {
            event.verdict = "failed".into();
            event.error = Some(e);
        }
        Verdict::Different { before, patch, .. } => {
            event.verdict = "different".into();
            event.changes = changes(&before, &patch);
        }
        Verdict::Busy => {
            event.verdict = "failed".into();
            event.error = Some(format!(
                "no sandbox slot came free within {} (live events hold them all)",
                humantime::format_duration(BUSY_WAIT)
            ));
        }
    }
    let took = u64::try_from(tried.took.as_micros()).unwrap_or(u64::MAX);
    (event, Some(took), u64::try_from(run.duration_us).ok())
}

/// The `q` quantile of `micros`, in milliseconds.
fn percentile_ms(micros: &[u64], q: f64) -> Option<f64> {
    if micros.is_empty() {
        return None;
    }
    let mut sorted = micros.to_vec();
    sorted.sort_unstable();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64 / 1000.0)
}
