//! Error answers: a status and a JSON body `{"error": {"code", "message", "failures"}}`, the
//! same for every endpoint.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable code, such as `not-found` or `refused`.
    pub code: String,
    /// A sentence saying what is wrong.
    pub message: String,
    /// Every failure found, when there are several (a refused plugin version's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// What passed beside the failures (a refused plugin version's fixture cases that passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: ErrorDetail,
    /// When to try again, in seconds (`Retry-After`); a 503 says 1 s unless told.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error answer with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                failures: Vec::new(),
                passed: Vec::new(),
            },
            retry_after: None,
        }
    }

    /// The same answer, asking the caller to try again after `seconds` (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The same answer, listing what passed beside the failures.
    pub fn with_passed(mut self, passed: Vec<String>) -> Self {
        self.detail.passed = passed;
        self
    }

    /// What the answer says.
    pub fn detail(&self) -> &ErrorDetail {
        &self.detail
    }

    /// The same answer, listing every failure found.
    pub fn with_failures(mut self, failures: Vec<String>) -> Self {
        self.detail.failures = failures;
        self
    }

    /// A 400 for a request that does not parse.
    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            message.to_string(),
        )
    }

    /// A JSON body that could not be read: 413 when it is larger than the route allows, else
    /// 400 (or the status axum gives, such as 415 for another content type).
    pub fn from_json_rejection(rejection: &axum::extract::rejection::JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            _ => "invalid-request",
        };
        ApiError::new(status, code, rejection.body_text())
    }

    /// A 503 for a store that cannot answer. The store's own error goes to the log, not to
    /// the caller.
    pub fn store_unavailable(error: &crate::store::StoreError) -> Self {
        tracing::error!(%error, "the store cannot answer a request");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "the store cannot answer right now; try again shortly",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// How long a 503 asks the caller to wait before trying again, in seconds.
pub(crate) const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorAnswer { error: self.detail })).into_response();
        let retry_after = match self.retry_after {
            Some(seconds) => Some(http::HeaderValue::from(seconds)),
            None => (self.status == StatusCode::SERVICE_UNAVAILABLE)
                .then(|| http::HeaderValue::from_static(RETRY_AFTER_SECONDS)),
        };
        if let Some(value) = retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_says_when_to_try_again_and_keeps_the_stores_error_to_the_log() {
        let error = ApiError::store_unavailable(&crate::store::StoreError::Io(
            "disk I/O error at /secret/path".into(),
        ));
        assert!(!error.detail.message.contains("/secret/path"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        let other = ApiError::bad_request("no").into_response();
        assert!(other.headers().get(http::header::RETRY_AFTER).is_none());
    }
}
