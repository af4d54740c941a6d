//! The admin API, behind the bearer token `admin.token`: dead letters (list, show, replay) and
//! the whole history of an event. Every request without the token is refused; without a
//! configured token the admin API is off.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /admin/dead-letters?destination=&since=&until=&all=&limit=` | dead letters, oldest first |
//! | `GET /admin/dead-letters/{id}` | one dead letter and its event's history |
//! | `POST /admin/dead-letters/replay` `{"ids", "destination", "since", "until", "all"}` | what was replayed and what was skipped |
//! | `GET /admin/events/{id}` | the event's history: runs, actions, attempts, dead letters |
//!
//! Times are RFC 3339 (`2026-11-27T10:00:00Z`) or Unix milliseconds.

use crate::sources::ApiError;
use crate::store::{DeadLetterFilter, Store};
use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// What the admin API needs.
pub struct Admin {
    store: Store,
    token: Option<String>,
}

impl Admin {
    /// The admin API over `store`, guarded by `token` (off when `None`).
    pub fn new(store: Store, token: Option<String>) -> Admin {
        Admin { store, token }
    }

    /// The admin routes, to merge into the engine's router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/admin/dead-letters", get(list_dead_letters))
            .route("/admin/dead-letters/replay", post(replay))
            .route("/admin/dead-letters/{id}", get(show_dead_letter))
            .route("/admin/events/{id}", get(show_event))
            .with_state(self)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin-disabled",
                "the admin API is off: set `admin.token` in the configuration",
            ));
        };
        crate::sources::check_bearer(headers, token)
    }
}

#[allow(clippy::needless_pass_by_value)] // the shape `map_err` passes
fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store-unavailable",
        e.to_string(),
    )
}

/// A selection of dead letters, from a query string or a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only these ids (JSON bodies only).
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Only those for this destination (or plugin).
    pub destination: Option<String>,
    /// Only those that died at or after this time.
    pub since: Option<String>,
    /// Only those that died before this time.
    pub until: Option<String>,
    /// Listing: replayed ones too. Replay: every dead letter, when nothing else is given.
    #[serde(default)]
    pub all: bool,
    /// Listing: at most this many.
    pub limit: Option<usize>,
}

impl Selection {
    fn filter(&self) -> Result<DeadLetterFilter, ApiError> {
        Ok(DeadLetterFilter {
            ids: self.ids.clone(),
            target: self.destination.clone(),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            include_replayed: false,
            limit: self.limit.unwrap_or(0),
        })
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.destination.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// A time as Unix milliseconds or RFC 3339.
pub fn parse_time(raw: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(raw).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-time",
            format!(
                "`{raw}` is not a time: write RFC 3339 (2026-11-27T10:00:00Z) or Unix milliseconds"
            ),
        )
    })?;
    let ms = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A path or query that did not parse: a 400, but only once the caller is authorized.
fn bad_request(rejection: &impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid-request",
        rejection.to_string(),
    )
}

async fn list_dead_letters(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Query(selection) = query.map_err(|e| bad_request(&e))?;
    let mut filter = selection.filter()?;
    filter.include_replayed = selection.all;
    let dead = admin
        .store
        .dead_letters(filter)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "dead_letters": dead })))
}

async fn show_dead_letter(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Path(id) = id.map_err(|e| bad_request(&e))?;
    let filter = DeadLetterFilter {
        ids: vec![id],
        include_replayed: true,
        ..DeadLetterFilter::default()
    };
    let dead = admin
        .store
        .dead_letters(filter)
        .await
        .map_err(store_error)?;
    let Some(dead) = dead.into_iter().next() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no dead letter has the id {id}"),
        ));
    };
    let history = admin
        .store
        .event_history(&dead.event_id)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({ "dead_letter": dead, "event": history })))
}

async fn replay(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: Result<Json<Selection>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Json(selection) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", e.body_text()))?;
    if selection.is_empty() && !selection.all {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty-selection",
            "say which dead letters to replay: `ids`, `destination`, `since`/`until`, or `all: true`",
        ));
    }
    let filter = selection.filter()?;
    let outcome = admin.store.replay(filter).await.map_err(store_error)?;
    tracing::info!(
        replayed = outcome.replayed.len(),
        skipped = outcome.skipped.len(),
        "dead letters replayed"
    );
    let skipped: Vec<Value> = outcome
        .skipped
        .iter()
        .map(|(id, reason)| json!({"id": id, "reason": reason}))
        .collect();
    Ok(Json(
        json!({ "replayed": outcome.replayed, "skipped": skipped }),
    ))
}

async fn show_event(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    match admin.store.event_history(&id).await.map_err(store_error)? {
        Some(history) => Ok(Json(json!({ "event": history }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no event has the id `{id}`"),
        )),
    }
}
