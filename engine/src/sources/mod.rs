//! Sources: where events come in.
//!
//! - `POST /events/{type}` is the embedded HMS bus (`bus`, with `bus.kind: http`): HMS modules
//!   (and the HMS core) emit events here. Optional headers describe the event: `hms-origin`
//!   (default `hms`), `hms-key`, `hms-version` and `hms-timestamp` (Unix ms, default now).
//! - With `bus.kind: nats`, the engine reads the same events, with the same headers, from the
//!   HMS bus on NATS instead (`nats`), and acknowledges each message once its event is
//!   committed.
//! - Every configured webhook path accepts external webhooks (`webhook`).
//!
//! A request is answered `202 Accepted` with the event's id only after the event is committed
//! to the store. Bad input is refused with a 4xx and a JSON error saying what is wrong, and
//! nothing is stored (`headers` reads and checks what a request says). A sender may repeat a
//! request safely by sending the same `idempotency-key` (or Standard Webhooks `webhook-id`)
//! header: the repeat is answered with the first event's id and not stored again.

mod bus;
mod headers;
mod nats;
mod webhook;

use crate::config::Config;
use crate::http::ApiError;
use crate::http::auth::AuthThrottle;
use crate::metrics::Metrics;
use crate::pipeline::Routes;
use crate::sandbox::event::Event;
use crate::store::{Accepted, Intake, NewEvent, Route, StoreError};
use crate::throttle::Throttle;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
pub use nats::BusSource;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;
use tracing::Instrument;
use webhook::WebhookSource;

/// What the listeners share.
pub struct Sources {
    intake: Arc<dyn Intake>,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    bus_token: Option<String>,
    /// Every check of a presented bus token goes through it.
    auth: Arc<AuthThrottle>,
    /// Whether HMS events come to `POST /events/{type}` (`bus.kind: http`).
    http_bus: bool,
    /// The largest body (or bus message) accepted.
    max_body: usize,
    /// How deep a payload may nest.
    max_json_depth: usize,
    /// How far ahead of the engine's clock an `hms-timestamp` may be.
    max_clock_skew_ms: i64,
    webhooks: HashMap<String, WebhookSource>,
}

impl Sources {
    /// The listeners of a checked configuration.
    pub fn new(
        config: &Config,
        intake: Arc<dyn Intake>,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
        auth: Arc<AuthThrottle>,
    ) -> anyhow::Result<Sources> {
        let webhooks = config
            .external_webhooks
            .iter()
            .map(|w| Ok((w.path.clone(), WebhookSource::new(w)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Sources {
            intake,
            routes,
            metrics,
            bus_token: config.bus.token.as_ref().map(|t| t.0.clone()),
            auth,
            http_bus: config.bus.nats().is_none(),
            max_body: config.max_body_size,
            max_json_depth: config.max_json_depth,
            max_clock_skew_ms: config.max_clock_skew_ms(),
            webhooks,
        })
    }

    /// The bus endpoint (on the HTTP bus) and every webhook path; bodies are limited to
    /// `maxBodySize`.
    pub fn router(self: Arc<Self>) -> Router {
        let mut router = Router::new();
        if self.http_bus {
            // The bus token is checked before the body is read.
            router = router.route(
                "/events/{event_type}",
                post(bus::receive)
                    .route_layer(middleware::from_fn_with_state(self.clone(), bus::guard)),
            );
        }
        for path in self.webhooks.keys() {
            router = router.route(path, post(webhook::receive));
        }
        router
            .layer(DefaultBodyLimit::max(self.max_body))
            .with_state(self)
    }

    /// Stores an event that arrived on `route` and answers for it: the accept stage. On a
    /// `signed` route (a webhook with secrets) the sender's dedupe key is the signed
    /// `webhook-id` only.
    async fn accept(
        &self,
        event: Event,
        route: Route,
        headers: &HeaderMap,
        signed: bool,
        accepted_at: i64,
    ) -> Result<Response, ApiError> {
        let dedupe_key = headers::dedupe_key(headers, &route.to_string(), signed)?;
        let accepted = self
            .commit(event, route, dedupe_key, accepted_at)
            .await
            .map_err(|e| not_stored(&e))?;
        let status = if accepted.duplicate {
            "duplicate"
        } else {
            "accepted"
        };
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": accepted.id, "status": status})),
        )
            .into_response())
    }

    /// Commits an event that arrived on `route`, or finds the first one with its dedupe key,
    /// and counts it.
    async fn commit(
        &self,
        event: Event,
        route: Route,
        dedupe_key: Option<String>,
        accepted_at: i64,
    ) -> Result<Accepted, StoreError> {
        let span = tracing::debug_span!("accept", event_id = %event.id, route = %route);
        async move {
            let labels = crate::metrics::EventLabels::new(&route, &event.event_type);
            let new = NewEvent {
                dedupe_key,
                event,
                route,
                accepted_at,
            };
            let accepted = self.intake.accept(new).await?;
            if !accepted.duplicate {
                self.metrics.events_accepted.get_or_create(&labels).inc();
                self.metrics.recent.accepted(accepted_at, 1);
            }
            tracing::debug!(first_id = %accepted.id, duplicate = accepted.duplicate, "event accepted");
            Ok(accepted)
        }
        .instrument(span)
        .await
    }
}

/// Refusals to store an event, logged at most once a second each kind.
static REFUSALS: LazyLock<Throttle> = LazyLock::new(Throttle::default);

/// The answer for an event the store did not take: 503 either way (the sender sends it again),
/// `disk-low` while the data directory is nearly full, `store-busy` when acceptance is
/// shedding load, else `store-unavailable`.
fn not_stored(error: &StoreError) -> ApiError {
    if let StoreError::Full(why) = error {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "disk-low",
            format!("the engine is not accepting events: {why}; send it again later"),
        );
    }
    if matches!(error, StoreError::Busy(_)) {
        if let Some(left_out) = REFUSALS.check("busy", Instant::now()) {
            tracing::warn!(reason = %error, left_out, "acceptance is shedding load; senders are told to retry");
        }
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-busy",
            "more accepted events are waiting for the store than the engine holds; send it again shortly",
        );
    }
    if let Some(left_out) = REFUSALS.check("error", Instant::now()) {
        tracing::error!(%error, left_out, "cannot store an event; the sender was told to retry");
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store-unavailable",
        "the event could not be stored, so it was not accepted; send it again",
    )
}
