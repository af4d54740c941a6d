//! The admin API, behind the bearer token `admin.token`: dead letters (list, show, replay), the
//! whole history of an event, an entity's conflict state (show, reset), and plugin versions
//! (list, show, upload, activate, roll back, delete). Every request without the token is refused before anything else is read; without a
//! configured token the admin API is off. Answers are the types of [`api`], camelCase; the
//! operations reference lists every endpoint.
//!
//! Times in requests are RFC 3339 (`2026-11-27T10:00:00Z`) or Unix milliseconds.

pub mod api;
mod dead_letters;
mod entities;
mod events;
mod plugins;

use crate::http::ApiError;
use crate::http::auth::check_bearer;
use crate::registry::Registry;
use crate::store::Records;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use std::sync::Arc;

/// The largest JSON body an admin request may send (a replay selection, an activation).
pub const MAX_JSON_BODY: usize = 256 * 1024;

/// Refuses a request without the admin token before its handler reads anything.
async fn guard(
    State(admin): State<Arc<Admin>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    admin.authorize(request.headers())?;
    Ok(next.run(request).await)
}

/// What the admin API needs.
pub struct Admin {
    records: Arc<dyn Records>,
    registry: Arc<Registry>,
    token: Option<String>,
    /// Who the token is in records: `admin:` and the start of its SHA-256.
    identity: String,
}

impl Admin {
    /// The admin API over `records` and `registry`, guarded by `token` (off when `None`).
    pub fn new(records: Arc<dyn Records>, registry: Arc<Registry>, token: Option<String>) -> Admin {
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
            records,
            registry,
            token,
            identity,
        }
    }

    /// The admin routes, to merge into the engine's router; uploads may be up to `max_upload`
    /// bytes, other bodies [`MAX_JSON_BODY`]. The token is checked before anything else runs,
    /// so a request without it is refused before its body is read.
    pub fn router(self: Arc<Self>, max_upload: usize) -> Router {
        Router::new()
            .route("/admin/dead-letters", get(dead_letters::list))
            .route("/admin/dead-letters/replay", post(dead_letters::replay))
            .route("/admin/dead-letters/{id}", get(dead_letters::show))
            .route("/admin/events/{id}", get(events::show))
            .route(
                "/admin/entities",
                get(entities::show).delete(entities::reset),
            )
            .route("/admin/plugins", get(plugins::list))
            .route(
                "/admin/plugins/{name}",
                get(plugins::show)
                    .put(plugins::upload)
                    .layer(DefaultBodyLimit::max(max_upload)),
            )
            .route("/admin/plugins/{name}/activate", post(plugins::activate))
            .route("/admin/plugins/{name}/rollback", post(plugins::rollback))
            .route(
                "/admin/plugins/{name}/versions/{hash}",
                delete(plugins::delete_version),
            )
            .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
            .route_layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self)
    }

    /// Whether a request may use the admin API.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin-disabled",
                "the admin API is off: set `admin.token` in the configuration",
            ));
        };
        check_bearer(headers, token)
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

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_unix_ms_or_rfc_3339() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
