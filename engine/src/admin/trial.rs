//! `POST /admin/plugins/{name}/try`: a dry run of a candidate version over stored events of the
//! plugin's routes. The candidate is compiled as an upload is, never stored or activated; each
//! event runs in the same sandbox, limits and settings, and nothing it makes is delivered.

use super::api::{Trial, TrialEvent, TrialQuery, TrialSummary};
use super::{Admin, parse_time};
use crate::http::ApiError;
use crate::pipeline::trial::{Then, Verdict, changes, try_on};
use crate::sandbox::World;
use crate::store::{EventHistory, EventQuery, RunOutcome};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events a dry run takes when the request does not say.
const DEFAULT_EVENTS: usize = 1_000;
/// The most one dry run takes.
const MAX_EVENTS: usize = 10_000;

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

/// One event to try: its history, and the plugin's place among its route's handlers.
struct Case {
    history: EventHistory,
    index: usize,
}

impl Admin {
    /// Runs `component` as a version of `name` over the stored events `query` selects and
    /// compares what it makes with what was made then.
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
        let handled = self.routes.of_plugin(name);
        // One dry run at a time: each reads and runs up to MAX_EVENTS events.
        let _running = self.trials.try_lock().map_err(|_| {
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
                    routes: handled.iter().map(|(route, _, _)| route.clone()).collect(),
                    since,
                    until,
                    limit,
                    ..EventQuery::default()
                })
                .await
                .map_err(|e| ApiError::store_unavailable(&e))?
        };
        let mut cases = Vec::with_capacity(found.len());
        for f in found {
            let route = f.event.route.to_string();
            let Some(history) = self
                .records
                .event_history(&f.event.event.id)
                .await
                .map_err(|e| ApiError::store_unavailable(&e))?
            else {
                continue; // pruned since it was found
            };
            for (_, index, _) in handled.iter().filter(|(r, _, _)| *r == route) {
                cases.push(Case {
                    history: history.clone(),
                    index: *index,
                });
            }
        }
        let candidate_hash = candidate.hash().to_owned();
        let routes = self.routes.clone();
        let plugin = name.to_owned();
        let events = tokio::task::spawn_blocking(move || {
            cases
                .iter()
                .map(|case| try_case(case, &plugin, &routes, &candidate))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "engine-error",
                format!("the dry run failed: {e}"),
            )
        })?;
        let (events, candidate_us, then_us): (Vec<TrialEvent>, Vec<u64>, Vec<u64>) =
            events.into_iter().fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |(mut events, mut c, mut t), (event, candidate, then)| {
                    c.extend(candidate);
                    t.extend(then);
                    events.push(event);
                    (events, c, t)
                },
            );
        let count = |verdict: &str| events.iter().filter(|e| e.verdict == verdict).count();
        let summary = TrialSummary {
            events: events.len(),
            same: count("same"),
            different: count("different"),
            failed: count("failed"),
            skipped: count("skipped"),
            candidate_p50_ms: percentile_ms(&candidate_us, 0.5),
            candidate_p99_ms: percentile_ms(&candidate_us, 0.99),
            then_p50_ms: percentile_ms(&then_us, 0.5),
            then_p99_ms: percentile_ms(&then_us, 0.99),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        tracing::info!(
            plugin = name,
            candidate = %candidate_hash,
            events = summary.events,
            same = summary.same,
            different = summary.different,
            failed = summary.failed,
            by = %self.identity,
            "dry run"
        );
        Ok(Trial {
            plugin: name.to_owned(),
            candidate: candidate_hash,
            active: self.registry.get(name).map(|p| p.hash().to_owned()),
            summary,
            events,
        })
    }
}

/// Tries the candidate on one case: the event's verdict, the candidate's run time and the
/// recorded run time then (microseconds), when it ran.
fn try_case(
    case: &Case,
    plugin: &str,
    routes: &crate::pipeline::Routes,
    candidate: &crate::sandbox::Plugin,
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
        BUSY_WAIT,
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
