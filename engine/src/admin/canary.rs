//! `/admin/plugins/{name}/canary`: start (`PUT`), resize (`PATCH`), report (`GET`), stop
//! (`DELETE`) and promote (`POST .../promote`) a canary: a version checked and stored as an
//! upload is, that takes a share of live events by entity key ([`crate::pipeline::canary`]).

use super::Admin;
use super::api::{CanaryQuery, CanaryReport, CanaryShare, RunWindow, Swapped};
use crate::http::ApiError;
use crate::pipeline::canary::{Canary, Limits, Snapshot, Window};
use crate::sandbox::World;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use std::sync::Arc;

/// The share a canary takes when the request does not say.
const DEFAULT_PERCENT: u8 = 10;

pub(super) async fn start(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<CanaryQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<CanaryReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let Query(query) = query.map_err(ApiError::bad_request)?;
    let (component, fixtures) = super::plugins::read_upload(&headers, request).await?;
    admin
        .start_canary(&name, component, fixtures, &query)
        .await
        .map(Json)
}

pub(super) async fn resize(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<CanaryShare>, JsonRejection>,
) -> Result<Json<CanaryReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let Json(share) = body.map_err(|e| ApiError::from_json_rejection(&e))?;
    admin.resize_canary(&name, share.percent).map(Json)
}

pub(super) async fn report(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CanaryReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.canary_report(&name).map(Json)
}

pub(super) async fn stop(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CanaryReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.stop_canary(&name).map(Json)
}

pub(super) async fn promote(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.promote_canary(&name).await.map(Json)
}

fn no_canary(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-canary",
        format!("`{name}` has no canary running"),
    )
}

fn share(percent: u8) -> Result<u8, ApiError> {
    if (1..=99).contains(&percent) {
        Ok(percent)
    } else {
        // At 100% the active version would run nothing to compare with: promote instead.
        Err(ApiError::bad_request(
            "`percent` is the share of entity keys the canary takes: 1 to 99 (to give it \
             every key, promote it)",
        ))
    }
}

impl Admin {
    /// Checks `component` as an upload is (its fixtures, or the active version's), keeps it
    /// in the store without activating it, and lets it take `query.percent` of `name`'s keys.
    pub async fn start_canary(
        &self,
        name: &str,
        component: Vec<u8>,
        fixtures: Option<String>,
        query: &CanaryQuery,
    ) -> Result<CanaryReport, ApiError> {
        let percent = share(query.percent.unwrap_or(DEFAULT_PERCENT))?;
        let defaults = Limits::default();
        let window = match query.window.as_deref() {
            Some(raw) => humantime::parse_duration(raw).map_err(|e| {
                ApiError::bad_request(format!("`window` is a duration such as `5m`: {e}"))
            })?,
            None => defaults.window,
        };
        let limits = Limits {
            window,
            min_runs: query.min_runs.unwrap_or(defaults.min_runs).max(1),
            failure_margin: query.failure_margin.unwrap_or(defaults.failure_margin),
            p99_ratio: query.p99_ratio.unwrap_or(defaults.p99_ratio),
        };
        if !(limits.failure_margin >= 0.0 && limits.p99_ratio >= 1.0) {
            return Err(ApiError::bad_request(
                "`failureMargin` is 0 or more and `p99Ratio` 1 or more",
            ));
        }
        if component.is_empty() {
            return Err(ApiError::bad_request("the request holds no component"));
        }
        // What it is, before it is stored: a resolver, or the active version, is refused
        // without a trace (its compiled code is cached, so staging it compiles nothing again).
        let candidate = self
            .registry
            .candidate(name, component.clone())
            .await
            .map_err(super::plugins::refused)?;
        if candidate.world() == World::Resolver {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                "a canary takes a share of a transformer's or a handler's events; a resolver has none",
            ));
        }
        if self
            .registry
            .get(name)
            .is_some_and(|active| active.hash() == candidate.hash())
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already-active",
                "this version is the active one already",
            ));
        }
        drop(candidate);
        let plugin = self
            .registry
            .stage(name, component, fixtures, &self.identity)
            .await
            .map_err(super::plugins::refused)?;
        let canary =
            self.registry
                .canaries()
                .start(Canary::new(plugin, percent, limits, &self.identity));
        tracing::info!(plugin = name, canary = %canary.plugin.version_tag(), percent, by = %self.identity, "canary started");
        Ok(self.canary_of(&canary.snapshot()))
    }

    /// Sets the share of keys `name`'s canary takes.
    pub fn resize_canary(&self, name: &str, percent: u8) -> Result<CanaryReport, ApiError> {
        let percent = share(percent)?;
        let canary = self
            .registry
            .canaries()
            .of(name)
            .ok_or_else(|| no_canary(name))?;
        canary.set_percent(percent);
        tracing::info!(plugin = name, percent, by = %self.identity, "canary share changed");
        Ok(self.canary_of(&canary.snapshot()))
    }

    /// How `name`'s canary fares (its last one, once ended).
    pub fn canary_report(&self, name: &str) -> Result<CanaryReport, ApiError> {
        let canary = self
            .registry
            .canaries()
            .latest(name)
            .ok_or_else(|| no_canary(name))?;
        Ok(self.canary_of(&canary))
    }

    /// Stops `name`'s canary: its keys go back to the active version.
    pub fn stop_canary(&self, name: &str) -> Result<CanaryReport, ApiError> {
        let canary = self
            .registry
            .canaries()
            .end(name, "stopped", format!("stopped by {}", self.identity))
            .ok_or_else(|| no_canary(name))?;
        tracing::info!(plugin = name, by = %self.identity, "canary stopped");
        Ok(self.canary_of(&canary))
    }

    /// Makes `name`'s canary the active version, through the checks of an activation; the
    /// canary ends once it is active. One that has ended (rolled back) is not promoted.
    pub async fn promote_canary(&self, name: &str) -> Result<Swapped, ApiError> {
        let canary = self
            .registry
            .canaries()
            .of(name)
            .filter(|c| c.ended().is_none())
            .ok_or_else(|| no_canary(name))?;
        let swap = self
            .registry
            .activate(name, canary.plugin.hash(), &self.identity, "promote")
            .await
            .map_err(super::plugins::refused)?;
        self.registry.canaries().end_if(
            &canary,
            "promoted",
            format!("promoted by {}", self.identity),
        );
        Ok(Swapped { plugin: swap })
    }

    /// The version `name`'s running canary delivers with, if it has one.
    pub(super) fn canary_hash(&self, name: &str) -> Option<String> {
        self.registry
            .canaries()
            .of(name)
            .map(|c| c.plugin.hash().to_owned())
    }

    fn canary_of(&self, canary: &Snapshot) -> CanaryReport {
        let window = |w: Window| RunWindow {
            runs: w.runs,
            failed: w.failed,
            failure_rate: w.failure_rate,
            p99_ms: w.p99_ms,
        };
        let ended = canary.ended.as_ref();
        CanaryReport {
            plugin: canary.plugin.clone(),
            canary: canary.hash.clone(),
            active: self
                .registry
                .get(&canary.plugin)
                .map(|p| p.hash().to_owned()),
            percent: canary.percent,
            started_at: canary.started_at,
            started_by: canary.by.clone(),
            state: ended.map_or_else(|| "running".to_owned(), |e| e.how.clone()),
            ended_at: ended.map(|e| e.at),
            why: ended.map(|e| e.why.clone()),
            window_ms: u64::try_from(canary.limits.window.as_millis()).unwrap_or(u64::MAX),
            min_runs: canary.limits.min_runs,
            failure_margin: canary.limits.failure_margin,
            p99_ratio: canary.limits.p99_ratio,
            canary_window: window(canary.canary),
            active_window: window(canary.active),
        }
    }
}
