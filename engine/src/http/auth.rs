//! Bearer tokens: `Authorization: Bearer <token>` (the scheme in any case), compared without
//! leaking the token's content or length.

use super::error::ApiError;
use axum::http::{HeaderMap, StatusCode};

/// Checks `Authorization: Bearer <token>`; a missing or wrong token is a 401.
pub fn check_bearer(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start());
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

/// Compares two secrets in time that depends neither on where they differ nor on the expected
/// one's length: their SHA-256 digests (of equal length) are compared byte by byte, all of them.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        assert!(check_bearer(&with("Bearer s3cret-token"), "s3cret-token").is_ok());
        let wrong = check_bearer(&with("Bearer other"), "s3cret-token").unwrap_err();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(check_bearer(&with("Basic abc"), "s3cret-token").is_err());
        // The scheme is case-insensitive (RFC 9110), the token is not.
        assert!(check_bearer(&with("bearer s3cret-token"), "s3cret-token").is_ok());
        assert!(check_bearer(&with("BEARER s3cret-token"), "s3cret-token").is_ok());
        assert!(check_bearer(&with("Bearer S3CRET-TOKEN"), "s3cret-token").is_err());
        assert!(check_bearer(&with("Bearer"), "s3cret-token").is_err());
        assert!(check_bearer(&HeaderMap::new(), "s3cret-token").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
