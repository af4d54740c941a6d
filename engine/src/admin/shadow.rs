//! `/admin/plugins/{name}/shadow`: start (`PUT`), report (`GET`), stop (`DELETE`) and promote
//! (`POST .../promote`) a shadow version: a candidate that runs beside the active version on
//! live events and delivers nothing ([`crate::pipeline::shadow`]).

use super::Admin;
use super::api::{ShadowDifference, ShadowReport, Swapped};
use crate::http::ApiError;
use crate::pipeline::shadow::Shadow;
use crate::sandbox::World;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use hdrhistogram::Histogram;
use std::sync::Arc;

pub(super) async fn start(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Json<ShadowReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let (component, fixtures) = super::plugins::read_upload(&headers, request).await?;
    admin
        .start_shadow(&name, component, fixtures)
        .await
        .map(Json)
}

pub(super) async fn report(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ShadowReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.shadow_report(&name).map(Json)
}

pub(super) async fn stop(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ShadowReport>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.stop_shadow(&name).map(Json)
}

pub(super) async fn promote(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.promote_shadow(&name).await.map(Json)
}

fn no_shadow(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-shadow",
        format!("`{name}` has no shadow version"),
    )
}

impl Admin {
    /// Makes `component` the shadow of `name` (replacing its shadow, if any), checked as a
    /// candidate; its `fixtures` are kept for promotion.
    pub async fn start_shadow(
        &self,
        name: &str,
        component: Vec<u8>,
        fixtures: Option<String>,
    ) -> Result<ShadowReport, ApiError> {
        if component.is_empty() {
            return Err(ApiError::bad_request("the request holds no component"));
        }
        let plugin = self
            .registry
            .candidate(name, component.clone())
            .await
            .map_err(super::plugins::refused)?;
        if plugin.world() == World::Resolver {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                "a shadow runs beside a transformer or a handler; a resolver has no events of its own",
            ));
        }
        let hash = plugin.hash().to_owned();
        let shadow = Shadow::new(plugin, component, fixtures, &self.identity);
        let replaced = self.registry.shadows().start(shadow);
        tracing::info!(
            plugin = name,
            shadow = %hash,
            replaced = replaced.as_ref().map(|s| s.plugin.hash().to_owned()),
            by = %self.identity,
            "shadow version started"
        );
        self.shadow_report(name)
    }

    /// What the shadow of `name` has done so far.
    pub fn shadow_report(&self, name: &str) -> Result<ShadowReport, ApiError> {
        let shadow = self
            .registry
            .shadows()
            .of(name)
            .ok_or_else(|| no_shadow(name))?;
        Ok(self.report(&shadow))
    }

    /// Ends the shadow of `name`; answers what it did.
    pub fn stop_shadow(&self, name: &str) -> Result<ShadowReport, ApiError> {
        let shadow = self
            .registry
            .shadows()
            .stop(name)
            .ok_or_else(|| no_shadow(name))?;
        tracing::info!(plugin = name, shadow = %shadow.plugin.hash(), by = %self.identity, "shadow version stopped");
        Ok(self.report(&shadow))
    }

    /// Makes the shadow of `name` the active version, through the same checks as an upload
    /// (its fixtures, or the active version's); the shadow ends once it is active, and keeps
    /// running when it is refused.
    pub async fn promote_shadow(&self, name: &str) -> Result<Swapped, ApiError> {
        let shadow = self
            .registry
            .shadows()
            .of(name)
            .ok_or_else(|| no_shadow(name))?;
        let swap = self
            .registry
            .submit(
                name,
                shadow.component.clone(),
                shadow.fixtures.clone(),
                &self.identity,
                "promote",
            )
            .await
            .map_err(super::plugins::refused)?;
        let shadows = self.registry.shadows();
        if shadows
            .of(name)
            .is_some_and(|current| Arc::ptr_eq(&current, &shadow))
        {
            shadows.stop(name);
        }
        Ok(Swapped { plugin: swap })
    }

    fn report(&self, shadow: &Shadow) -> ShadowReport {
        let ms = |h: &Histogram<u32>, q: f64| {
            (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
        };
        shadow.stats(|s| {
            let runs = s.same + s.different + s.failed;
            ShadowReport {
                plugin: shadow.plugin.name().to_owned(),
                shadow: shadow.plugin.hash().to_owned(),
                active: self
                    .registry
                    .get(shadow.plugin.name())
                    .map(|p| p.hash().to_owned()),
                started_at: shadow.started_at,
                started_by: shadow.by.clone(),
                runs,
                same: s.same,
                different: s.different,
                failed: s.failed,
                skipped: s.skipped,
                agreement_rate: (runs > 0).then(|| s.same as f64 / runs as f64),
                shadow_p50_ms: ms(&s.shadow_us, 0.5),
                shadow_p99_ms: ms(&s.shadow_us, 0.99),
                active_p50_ms: ms(&s.active_us, 0.5),
                active_p99_ms: ms(&s.active_us, 0.99),
                latest: s
                    .latest
                    .iter()
                    .rev()
                    .map(|run| ShadowDifference {
                        event_id: run.event_id.clone(),
                        verdict: run.verdict.clone(),
                        changes: run
                            .changes
                            .as_deref()
                            .and_then(|c| serde_json::from_str(c).ok())
                            .unwrap_or_default(),
                        error: run.error.clone(),
                        ran_at: run.ran_at,
                    })
                    .collect(),
            }
        })
    }
}
