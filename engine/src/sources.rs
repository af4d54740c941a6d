//! Sources: the HTTP listeners that accept events.
//!
//! - `POST /events/{type}` is the embedded HMS bus: HMS modules (and the HMS core) emit events
//!   here. Optional headers describe the event: `hms-origin` (default `hms`), `hms-key`,
//!   `hms-version` and `hms-timestamp` (Unix ms, default now).
//! - Every configured webhook path accepts external webhooks.
//!
//! A request is answered `202 Accepted` with the event's id only after the event is committed
//! to the store. Bad input is refused with a 4xx and a JSON error saying what is wrong, and
//! nothing is stored. A sender may repeat a request safely by sending the same
//! `idempotency-key` (or Standard Webhooks `webhook-id`) header: the repeat is answered with
//! the first event's id and not stored again.

use crate::config::Config;
use crate::metrics::{EventLabels, Metrics, source_of};
use crate::pipeline::{Routes, bus_route, webhook_route};
use crate::sandbox::event::{Event, HMS_ORIGIN, Header, check_event_type};
use crate::signing::Verifier;
use crate::store::{NewEvent, Store, now_ms};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The longest idempotency key a sender may use.
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// An error answer: a status and a JSON body `{"error": {"code", "message"}}`, with a list of
/// `failures` when there are several.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    failures: Vec<String>,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            failures: Vec::new(),
        }
    }

    /// The same answer, listing every failure found.
    pub fn with_failures(mut self, failures: Vec<String>) -> Self {
        self.failures = failures;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.failures.is_empty() {
            error["failures"] = json!(self.failures);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// What a webhook route gives its events.
struct WebhookSource {
    system: String,
    event_type: String,
    /// Lower-case names of the headers plugins may see.
    headers: Vec<String>,
    /// Checks Standard Webhooks signatures, when the route has secrets.
    verifier: Option<Verifier>,
}

/// What the listeners share.
pub struct Sources {
    store: Store,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    bus_token: Option<String>,
    webhooks: HashMap<String, WebhookSource>,
}

impl Sources {
    /// The listeners of a checked configuration.
    pub fn new(
        config: &Config,
        store: Store,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Sources> {
        let webhooks = config
            .external_webhooks
            .iter()
            .map(|w| {
                let secrets: Vec<&str> = w.secrets.iter().map(|s| &**s).collect();
                let source = WebhookSource {
                    system: w.system().to_owned(),
                    event_type: w.event_type(),
                    headers: w.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    verifier: Verifier::new(&secrets).map_err(anyhow::Error::msg)?,
                };
                Ok((w.path.clone(), source))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Sources {
            store,
            routes,
            metrics,
            bus_token: config.bus.token.as_ref().map(|t| t.0.clone()),
            webhooks,
        })
    }

    /// The HTTP router: the bus endpoint, every webhook path, `/healthz`, `/readyz`,
    /// `/metrics`, and JSON errors for everything else.
    pub fn router(self: Arc<Self>, max_body: usize) -> Router {
        let mut router = Router::new()
            .route("/events/{event_type}", post(bus_event))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics));
        for path in self.webhooks.keys() {
            router = router.route(path, post(webhook_event));
        }
        router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(self)
    }

    /// Stores an event that arrived on `route` and answers for it.
    async fn accept(
        &self,
        event: Event,
        route: String,
        headers: &HeaderMap,
        accepted_at: i64,
    ) -> Result<Response, ApiError> {
        let labels = EventLabels {
            source: source_of(&route).to_owned(),
            event_type: event.event_type.clone(),
        };
        let new = NewEvent {
            dedupe_key: dedupe_key(headers, &route)?,
            event,
            route,
            accepted_at,
        };
        let accepted = self.store.accept(new).await.map_err(|e| {
            tracing::error!(error = %e, "cannot store an event; the sender was told to retry");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                format!(
                    "the event could not be stored, so it was not accepted; send it again ({e})"
                ),
            )
        })?;
        let status = if accepted.duplicate {
            "duplicate"
        } else {
            "accepted"
        };
        if !accepted.duplicate {
            self.metrics.events_accepted.get_or_create(&labels).inc();
        }
        tracing::debug!(event_id = %accepted.id, status, "event accepted");
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"id": accepted.id, "status": status})),
        )
            .into_response())
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store takes a write within two seconds; every plugin was loaded and checked
/// before the listeners started.
async fn readyz(State(sources): State<Arc<Sources>>) -> Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), sources.store.probe()).await;
    let problem = match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("the store does not take writes: {e}")),
        Err(_) => Some("the store did not take a write within 2 seconds".to_owned()),
    };
    match problem {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not-ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(sources): State<Arc<Sources>>) -> Result<Response, ApiError> {
    let backlog = sources.store.backlog().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            format!("cannot read the backlog: {e}"),
        )
    })?;
    let body = sources.metrics.render(&backlog, now_ms());
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("nothing is served at `{}`", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("`{}` accepts POST only", uri.path()),
    )
}

async fn bus_event(
    State(sources): State<Arc<Sources>>,
    Path(event_type): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if let Some(token) = &sources.bus_token {
        check_bearer(&headers, token)?;
    }
    if check_event_type(&event_type).is_err() || !sources.routes.has_bus_route(&event_type) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-event-type",
            format!("no route handles events of type `{event_type}`"),
        ));
    }
    let (content_type, payload) = json_body(&headers, body, None)?;
    let (origin, path) = provenance(&headers, HMS_ORIGIN)?;
    let key = header(&headers, "hms-key")?.map(str::to_owned);
    let version = header(&headers, "hms-version")?
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|v| i64::try_from(*v).is_ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid-header",
                        format!("`hms-version: {v}` is not a whole number from 0 to 2^63 - 1"),
                    )
                })
        })
        .transpose()?;
    let now = now_ms();
    let timestamp = header(&headers, "hms-timestamp")?
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-header",
                    format!("`hms-timestamp: {v}` is not a time in Unix milliseconds"),
                )
            })
        })
        .transpose()?
        .unwrap_or(now);
    let hops = hops(&headers)?;
    let route = bus_route(&event_type);
    let event = Event {
        id: new_id(),
        event_type,
        origin,
        key,
        version,
        timestamp,
        content_type,
        payload,
        headers: Vec::new(),
        hops,
        path,
    };
    sources.accept(event, route, &headers, now).await
}

async fn webhook_event(
    State(sources): State<Arc<Sources>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(source) = sources.webhooks.get(uri.path()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no webhook is served at `{}`", uri.path()),
        ));
    };
    let (content_type, payload) = json_body(&headers, body, source.verifier.as_ref())?;
    let route = webhook_route(uri.path());
    let exposed = source
        .headers
        .iter()
        .flat_map(|name| {
            headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| Header::new(name.clone(), v))
                .collect::<Vec<_>>()
        })
        .collect();
    let now = now_ms();
    let hops = hops(&headers)?;
    let (origin, path) = provenance(&headers, &source.system)?;
    let event = Event {
        id: new_id(),
        event_type: source.event_type.clone(),
        origin,
        key: None,
        version: None,
        timestamp: now,
        content_type,
        payload,
        headers: exposed,
        hops,
        path,
    };
    sources.accept(event, route, &headers, now).await
}

/// The `hms-hops` header: how many systems the update crossed before it came here (0 when
/// absent). Systems that relay updates pass it on, so the engine can stop cycles.
fn hops(headers: &HeaderMap) -> Result<u32, ApiError> {
    header(headers, "hms-hops")?
        .map(|v| {
            v.parse::<u32>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-header",
                    format!("`hms-hops: {v}` is not a whole number"),
                )
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// A new event id: a UUIDv7, so ids sort by acceptance time.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The body, checked to be JSON within the size limit (and signed, when `verifier` is given),
/// with its content type.
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    verifier: Option<&Verifier>,
) -> Result<(String, Vec<u8>), ApiError> {
    let content_type = match headers.get(http::header::CONTENT_TYPE) {
        None => "application/json".to_owned(),
        Some(value) => {
            let value = value.to_str().unwrap_or_default();
            let essence = value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    format!("the body must be JSON (`application/json`), not `{value}`"),
                ));
            }
            value.to_owned()
        }
    };
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(e)
            if std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit")) =>
        {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "the body is larger than the engine accepts (`maxBodySize`)".to_owned(),
            )
        }
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable-body",
            other.body_text(),
        ),
    })?;
    if let Some(verifier) = verifier {
        verifier.verify(&body, headers).map_err(|reason| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad-signature",
                format!("the Standard Webhooks signature does not verify: {reason}"),
            )
        })?;
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-json",
            format!("the body is not valid JSON: {e}"),
        ));
    }
    Ok((content_type, body.to_vec()))
}

/// A header's value as text; an unreadable value is a 400.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-header",
                    format!("the `{name}` header is not readable text"),
                )
            })
        })
        .transpose()
}

/// The longest `hms-path` the engine takes.
const MAX_PATH: usize = 32;

fn check_system(header: &str, name: &str) -> Result<String, ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            format!(
                "`{header}` holds `{name}`, which is not a system name (1 to 64 of A-Z a-z 0-9 - _ . /)"
            ),
        ))
    }
}

/// Where an update comes from: its origin (the `hms-origin` header, else the first system of
/// its `hms-path`, else `here`) and its path (the `hms-path` header's systems, then `here`, the
/// system that handed it to the engine).
fn provenance(headers: &HeaderMap, here: &str) -> Result<(String, Vec<String>), ApiError> {
    let mut path = match header(headers, "hms-path")? {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|system| check_system("hms-path", system))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if path.len() >= MAX_PATH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            format!("`hms-path` lists more than {MAX_PATH} systems"),
        ));
    }
    let origin = match header(headers, "hms-origin")? {
        Some(origin) => check_system("hms-origin", origin)?,
        None => path.first().map_or_else(|| here.to_owned(), Clone::clone),
    };
    path.push(here.to_owned());
    Ok((origin, path))
}

/// The route-scoped dedupe key from `idempotency-key` or `webhook-id`, if the sender sent one.
fn dedupe_key(headers: &HeaderMap, route: &str) -> Result<Option<String>, ApiError> {
    let key = match header(headers, "idempotency-key")? {
        Some(key) => Some(key),
        None => header(headers, "webhook-id")?,
    };
    key.map(|key| {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-header",
                format!("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} characters long"),
            ));
        }
        Ok(format!("{route}\n{key}"))
    })
    .transpose()
}

/// Checks `Authorization: Bearer <token>`; a missing or wrong token is a 401.
pub(crate) fn check_bearer(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`",
        )),
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
