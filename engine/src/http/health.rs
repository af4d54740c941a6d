//! `GET /healthz` (the process answers), `GET /readyz` (the store takes writes) and
//! `GET /metrics` (Prometheus, with the backlog read at each scrape; behind a bearer token when
//! `admin.metricsToken` is set).

use super::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{Intake, Records, now_ms};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// What the health endpoints read.
pub struct Health {
    /// Probed by `/readyz`.
    pub intake: Arc<dyn Intake>,
    /// The backlog, for `/metrics`.
    pub records: Arc<dyn Records>,
    /// The counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
}

impl Health {
    /// `/healthz` and `/readyz`, served on every listener.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self)
    }

    /// `/metrics`, served with the admin API.
    pub fn metrics_router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .with_state(self)
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store takes a write within two seconds; every plugin was loaded and checked
/// before the listeners started.
async fn readyz(State(health): State<Arc<Health>>) -> Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), health.intake.probe()).await;
    let problem = match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            // The store's own error is for the log, not for whoever asks.
            tracing::error!(error = %e, "readiness: the store does not take writes");
            Some("the store does not take writes".to_owned())
        }
        Err(_) => Some("the store did not take a write within 2 seconds".to_owned()),
    };
    match problem {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, super::error::RETRY_AFTER_SECONDS)],
            Json(json!({"status": "not-ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(
    State(health): State<Arc<Health>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &health.metrics_token {
        super::auth::check_bearer(&headers, token)?;
    }
    let backlog = health
        .records
        .backlog()
        .await
        .map_err(|e| ApiError::store_unavailable(&e))?;
    let body = health.metrics.render(&backlog, now_ms());
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
