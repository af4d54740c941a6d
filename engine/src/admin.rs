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
//! | `GET /admin/plugins` | every plugin and its active version |
//! | `GET /admin/plugins/{name}` | a plugin's versions and activations |
//! | `PUT /admin/plugins/{name}` | a new version (`application/wasm`, or multipart with `component` and `fixtures`), checked then activated |
//! | `POST /admin/plugins/{name}/activate` `{"hash"}` | makes a stored version active again, after the same checks |
//! | `POST /admin/plugins/{name}/rollback` | makes the version active before the current one active again |
//! | `DELETE /admin/plugins/{name}/versions/{hash}` | deletes a version that is not active |
//!
//! Times are RFC 3339 (`2026-11-27T10:00:00Z`) or Unix milliseconds.

use crate::registry::{Refused, Registry, Swap};
use crate::sources::ApiError;
use crate::store::{DeadLetterFilter, Store, StoreError};
use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// What the admin API needs.
pub struct Admin {
    store: Store,
    registry: Arc<Registry>,
    token: Option<String>,
    /// Who the token is in records: `admin:` and the start of its SHA-256.
    identity: String,
}

impl Admin {
    /// The admin API over `store` and `registry`, guarded by `token` (off when `None`).
    pub fn new(store: Store, registry: Arc<Registry>, token: Option<String>) -> Admin {
        let identity = token.as_deref().map_or_else(
            || "admin".to_owned(),
            |t| {
                use sha2::Digest;
                format!(
                    "admin:{}",
                    &hex::encode(sha2::Sha256::digest(t.as_bytes()))[..12]
                )
            },
        );
        Admin {
            store,
            registry,
            token,
            identity,
        }
    }

    /// The admin routes, to merge into the engine's router; uploads may be up to `max_upload`
    /// bytes.
    pub fn router(self: Arc<Self>, max_upload: usize) -> Router {
        Router::new()
            .route("/admin/dead-letters", get(list_dead_letters))
            .route("/admin/dead-letters/replay", post(replay))
            .route("/admin/dead-letters/{id}", get(show_dead_letter))
            .route("/admin/events/{id}", get(show_event))
            .route("/admin/plugins", get(list_plugins))
            .route("/admin/plugins/{name}", get(show_plugin).put(upload_plugin))
            .route("/admin/plugins/{name}/activate", post(activate_plugin))
            .route("/admin/plugins/{name}/rollback", post(rollback_plugin))
            .route(
                "/admin/plugins/{name}/versions/{hash}",
                delete(delete_version),
            )
            .layer(DefaultBodyLimit::max(max_upload))
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

fn refused(r: Refused) -> ApiError {
    let (status, code) = if r.not_found {
        (StatusCode::NOT_FOUND, "not-found")
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, "refused")
    };
    ApiError::new(
        status,
        code,
        "the version was refused; the active version keeps serving",
    )
    .with_failures(r.failures)
}

fn swapped(swap: &Swap) -> Json<Value> {
    Json(json!({ "plugin": swap }))
}

async fn list_plugins(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let plugins: Vec<Value> = admin
        .registry
        .names()
        .map(|name| {
            let active = admin.registry.get(name);
            json!({
                "name": name,
                "active": active.as_ref().map(|p| p.hash()),
                "world": active.as_ref().map(|p| p.world().to_string()),
                "size": active.as_ref().map(|p| p.size()),
            })
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })))
}

async fn show_plugin(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Path(name) = name.map_err(|e| bad_request(&e))?;
    let Some(active) = admin.registry.get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no plugin is named `{name}`"),
        ));
    };
    let (versions, activations) = admin.registry.describe(&name).await.map_err(store_error)?;
    Ok(Json(json!({
        "name": name,
        "active": active.hash(),
        "world": active.world().to_string(),
        "versions": versions,
        "activations": activations,
    })))
}

/// A new version: the component as the body (`application/wasm`), or a multipart form with a
/// `component` part and an optional `fixtures` part (JSON).
async fn upload_plugin(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Path(name) = name.map_err(|e| bad_request(&e))?;
    let multipart = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (component, fixtures) = if multipart {
        read_form(request).await?
    } else {
        let body = axum::body::Bytes::from_request(request, &())
            .await
            .map_err(|e| upload_error(&e.body_text()))?;
        (body.to_vec(), None)
    };
    if component.is_empty() {
        return Err(bad_request(&"the upload holds no component"));
    }
    let swap = admin
        .registry
        .submit(&name, component, fixtures, &admin.identity, "upload")
        .await
        .map_err(refused)?;
    Ok(swapped(&swap))
}

fn upload_error(message: &str) -> ApiError {
    if message.contains("length limit") {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "the upload is larger than `admin.maxUploadSize`",
        )
    } else {
        bad_request(&message)
    }
}

async fn read_form(request: Request) -> Result<(Vec<u8>, Option<String>), ApiError> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| bad_request(&e.body_text()))?;
    let (mut component, mut fixtures) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| upload_error(&e.body_text()))?
    {
        match field.name() {
            Some("component") => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| upload_error(&e.body_text()))?;
                component = Some(bytes.to_vec());
            }
            Some("fixtures") => {
                fixtures = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| upload_error(&e.body_text()))?,
                );
            }
            other => {
                return Err(bad_request(&format!(
                    "unknown form field `{}`: send `component` and, optionally, `fixtures`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let component = component.ok_or_else(|| bad_request(&"the form has no `component` field"))?;
    Ok((component, fixtures))
}

/// The body of `activate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateRequest {
    hash: String,
}

async fn activate_plugin(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<ActivateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Path(name) = name.map_err(|e| bad_request(&e))?;
    let Json(request) = body.map_err(|e| bad_request(&e.body_text()))?;
    let swap = admin
        .registry
        .activate(&name, &request.hash, &admin.identity, "activate")
        .await
        .map_err(refused)?;
    Ok(swapped(&swap))
}

async fn rollback_plugin(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Path(name) = name.map_err(|e| bad_request(&e))?;
    let swap = admin
        .registry
        .rollback(&name, &admin.identity)
        .await
        .map_err(refused)?;
    Ok(swapped(&swap))
}

async fn delete_version(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    admin.authorize(&headers)?;
    let Path((name, hash)) = path.map_err(|e| bad_request(&e))?;
    admin
        .registry
        .delete(&name, &hash)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "active-version", m),
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not-found", m),
            other => store_error(other),
        })?;
    Ok(Json(json!({ "deleted": { "name": name, "hash": hash } })))
}
