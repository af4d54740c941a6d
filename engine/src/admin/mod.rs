//! The admin API, behind the bearer token `admin.token`: dead letters (list, show, replay), the
//! whole history of an event and a search of events, an entity's conflict state (show, reset),
//! plugin versions (list, show, upload, activate, roll back, delete), the overview of the last
//! hour and the running configuration (secrets masked). Every request without the token is
//! refused before anything else is read; without a configured token the admin API is off.
//!
//! Each endpoint is a method of [`Admin`] that the HTTP handler wraps: the console
//! ([`crate::console`]) calls the same methods, so it has no second path to the data. A
//! request may also present a console session (its cookie) instead of the token; then a
//! request that changes anything must carry the session's CSRF token as well.
//!
//! Answers are the types of [`api`], camelCase; the operations reference lists every endpoint.
//!
//! Times in requests are RFC 3339 (`2026-11-27T10:00:00Z`) or Unix milliseconds.

pub mod api;
mod canary;
mod dead_letters;
mod entities;
mod events;
mod overview;
mod plugins;
mod shadow;
mod trial;

pub(crate) use plugins::{UploadForm, read_form};

use crate::console::Sessions;
use crate::http::ApiError;
use crate::http::auth::{AuthThrottle, Peer, Verdict, bearer};
use crate::http::health::BacklogCache;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::Records;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
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
    let peer = request.extensions().get::<Peer>().copied();
    admin
        .auth
        .check(
            peer,
            "admin",
            admin.authorize(request.method(), request.headers()),
        )
        .await?;
    Ok(next.run(request).await)
}

/// What the admin API needs.
pub struct Admin {
    records: Arc<dyn Records>,
    registry: Arc<Registry>,
    token: Option<String>,
    /// Who the token is in records: `admin:` and the start of its SHA-256.
    identity: String,
    /// The console's sessions, which stand for the token.
    sessions: Sessions,
    metrics: Arc<Metrics>,
    /// The backlog, counted at most 1% of the time (shared with `/metrics`).
    backlog: Arc<BacklogCache>,
    /// The per-destination backlog, read at most every two seconds.
    lanes: overview::LanesCache,
    /// What the configuration runs, secrets masked.
    configuration: api::Configuration,
    /// How many requests the core may have in flight.
    core_concurrency: usize,
    /// The routes, for dry runs.
    routes: Arc<crate::pipeline::Routes>,
    /// Held while a dry run's work goes on (past its request, if its client left): one at a
    /// time.
    trials: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled when the engine stops: dry runs stop with it.
    shutdown: tokio_util::sync::CancellationToken,
    /// Every check of a presented token (or session) goes through it.
    auth: Arc<AuthThrottle>,
}

/// What the admin API reads besides the store and the registry.
pub struct Sight {
    /// The engine's metrics (the overview reads the last hour from them).
    pub metrics: Arc<Metrics>,
    /// The backlog count `/metrics` shares.
    pub backlog: Arc<BacklogCache>,
    /// The running configuration.
    pub configuration: api::Configuration,
    /// How many requests the core may have in flight (`deliveryConcurrency`).
    pub core_concurrency: usize,
    /// The routes (a dry run runs a candidate as its routes would).
    pub routes: Arc<crate::pipeline::Routes>,
    /// The engine's shutdown: what runs on behalf of a request (a dry run) stops with it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The throttle every credential check goes through.
    pub auth: Arc<AuthThrottle>,
}

impl Admin {
    /// The admin API over `records` and `registry`, guarded by `token` (off when `None`).
    pub fn new(
        records: Arc<dyn Records>,
        registry: Arc<Registry>,
        token: Option<String>,
        sight: Sight,
    ) -> Admin {
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
            sessions: Sessions::default(),
            metrics: sight.metrics,
            backlog: sight.backlog,
            lanes: overview::LanesCache::default(),
            configuration: sight.configuration,
            core_concurrency: sight.core_concurrency,
            routes: sight.routes,
            trials: Arc::default(),
            shutdown: sight.shutdown,
            auth: sight.auth,
        }
    }

    /// Who the admin token is in records and logs.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The console's sessions.
    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The throttle every credential check goes through (the console's login too).
    pub(crate) fn auth(&self) -> &AuthThrottle {
        &self.auth
    }

    /// Whether `presented` is the admin token (compared in constant time); never with the API
    /// off.
    pub(crate) fn is_token(&self, presented: &str) -> bool {
        self.token.as_deref().is_some_and(|token| {
            crate::http::auth::constant_time_eq(presented.as_bytes(), token.as_bytes())
        })
    }

    /// What the configuration runs, secrets masked.
    pub fn configuration(&self) -> &api::Configuration {
        &self.configuration
    }

    /// Whether the admin API (and with it the console) is on.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// The admin routes, to merge into the engine's router; uploads may be up to `max_upload`
    /// bytes, other bodies [`MAX_JSON_BODY`]. The token is checked before anything else runs,
    /// so a request without it is refused before its body is read.
    pub fn router(self: Arc<Self>, max_upload: usize) -> Router {
        Router::new()
            .route("/admin/dead-letters", get(dead_letters::list))
            .route("/admin/dead-letters/replay", post(dead_letters::replay))
            .route("/admin/dead-letters/{id}", get(dead_letters::show))
            .route("/admin/events", get(events::search))
            .route("/admin/events/{id}", get(events::show))
            .route("/admin/overview", get(overview::overview))
            .route("/admin/config", get(overview::configuration))
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
            .route(
                "/admin/plugins/{name}/try",
                post(trial::try_version).layer(DefaultBodyLimit::max(max_upload)),
            )
            .route(
                "/admin/plugins/{name}/shadow",
                get(shadow::report)
                    .put(shadow::start)
                    .delete(shadow::stop)
                    .layer(DefaultBodyLimit::max(max_upload)),
            )
            .route(
                "/admin/plugins/{name}/shadow/promote",
                post(shadow::promote),
            )
            .route(
                "/admin/plugins/{name}/canary",
                get(canary::report)
                    .put(canary::start)
                    .patch(canary::resize)
                    .delete(canary::stop)
                    .layer(DefaultBodyLimit::max(max_upload)),
            )
            .route(
                "/admin/plugins/{name}/canary/promote",
                post(canary::promote),
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

    /// Whether a request may use the admin API: it carries the token, or a console session
    /// (and, unless it only reads, the session's CSRF token in `x-csrf-token`). Only a wrong
    /// token counts as a guess.
    fn authorize(&self, method: &Method, headers: &HeaderMap) -> Verdict {
        let Some(token) = &self.token else {
            return Verdict::Absent(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin-disabled",
                "the admin API is off: set `admin.token` in the configuration",
            ));
        };
        if headers.contains_key(http::header::AUTHORIZATION) {
            return bearer(headers, token);
        }
        let Some(session) = self.sessions.from_cookie(headers) else {
            return bearer(headers, token);
        };
        let reads = matches!(*method, Method::GET | Method::HEAD);
        let csrf = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if reads || session.csrf_matches(csrf) {
            Verdict::Passed
        } else {
            Verdict::Absent(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a request with a console session that changes something must carry the \
                 session's CSRF token in `x-csrf-token`",
            ))
        }
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
