//! The HTTP side of the engine: one router for the listeners ([`crate::sources`]), the admin
//! API ([`crate::admin`]) and health ([`health`]), with the answers they share: JSON errors
//! ([`error`]) and bearer tokens ([`auth`]); URLs with their secrets masked ([`redact`]).

pub mod auth;
pub mod body_deadline;
pub mod error;
pub mod health;
pub mod redact;
pub mod serve;

pub use error::ApiError;

use axum::Router;
use axum::http::{Method, StatusCode, Uri};

/// What the engine serves on a listener (the sources, the admin API, health, merged as the
/// configuration places them), with JSON answers for unknown paths and methods.
pub fn router(routes: Router) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("nothing is served at `{}`", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "`{}` does not accept {method} (the `allow` header lists what it does)",
            uri.path()
        ),
    )
}
