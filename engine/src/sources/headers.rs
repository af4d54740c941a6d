//! What a request says about its event: the JSON body (signed, for webhooks with secrets), the
//! `hms-*` metadata headers, and the sender's idempotency key. Every problem is a 4xx naming
//! the header or the body.

use crate::http::ApiError;
use crate::signing::Verifier;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};

/// The longest idempotency key a sender may use.
const MAX_IDEMPOTENCY_KEY: usize = 256;
/// The longest `hms-path` the engine takes.
const MAX_PATH: usize = 32;

/// A header's value as text; an unreadable value is a 400.
pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid_header(format!("the `{name}` header is not readable text")))
        })
        .transpose()
}

fn invalid_header(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-header", message)
}

/// The body, checked to be a JSON payload the engine takes ([`crate::json`]: UTF-8, no name
/// twice in an object, nested at most `max_depth` levels) within the size limit (and signed,
/// when `verifier` is given), with its content type.
pub(super) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    verifier: Option<&Verifier>,
    max_depth: usize,
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
    if let Err(e) = crate::json::check(&body, max_depth) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-json",
            format!("the body is not valid JSON: {e}"),
        ));
    }
    Ok((content_type, body.to_vec()))
}

/// The `hms-hops` header: how many systems the update crossed before it came here (0 when
/// absent). Systems that relay updates pass it on, so the engine can stop cycles.
pub(super) fn hops(headers: &HeaderMap) -> Result<u32, ApiError> {
    header(headers, "hms-hops")?
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| invalid_header(format!("`hms-hops: {v}` is not a whole number")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The `hms-version` header: a whole number from 0 to 2^63 - 1.
pub(super) fn version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    header(headers, "hms-version")?
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|v| i64::try_from(*v).is_ok())
                .ok_or_else(|| {
                    invalid_header(format!(
                        "`hms-version: {v}` is not a whole number from 0 to 2^63 - 1"
                    ))
                })
        })
        .transpose()
}

/// The `hms-timestamp` header (Unix ms; default: `now`). One further ahead of `now` than `max_skew_ms`
/// is refused: under last-write-wins a far-future time would make every later update of its
/// entity stale.
pub(super) fn timestamp(headers: &HeaderMap, now: i64, max_skew_ms: i64) -> Result<i64, ApiError> {
    let Some(value) = header(headers, "hms-timestamp")? else {
        return Ok(now);
    };
    let at = value.parse::<i64>().map_err(|_| {
        invalid_header(format!(
            "`hms-timestamp: {value}` is not a time in Unix milliseconds"
        ))
    })?;
    if at > now.saturating_add(max_skew_ms) {
        return Err(invalid_header(format!(
            "`hms-timestamp: {value}` is {} s ahead of the engine's clock, more than the \
             {} s `maxClockSkew` allows",
            (at - now) / 1000,
            max_skew_ms / 1000
        )));
    }
    Ok(at)
}

fn check_system(header: &str, name: &str) -> Result<String, ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(invalid_header(format!(
            "`{header}` holds `{name}`, which is not a system name (1 to 64 of A-Z a-z 0-9 - _ . /)"
        )))
    }
}

/// Where an update comes from: its origin (the `hms-origin` header, else the first system of
/// its `hms-path`, else `here`) and its path (the `hms-path` header's systems, then `here`, the
/// system that handed it to the engine).
pub(super) fn provenance(
    headers: &HeaderMap,
    here: &str,
) -> Result<(String, Vec<String>), ApiError> {
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
        return Err(invalid_header(format!(
            "`hms-path` lists more than {MAX_PATH} systems"
        )));
    }
    let origin = match header(headers, "hms-origin")? {
        Some(origin) => check_system("hms-origin", origin)?,
        None => path.first().map_or_else(|| here.to_owned(), Clone::clone),
    };
    path.push(here.to_owned());
    Ok((origin, path))
}

/// The route-scoped dedupe key from `idempotency-key` or `webhook-id`, if the sender sent one.
/// On a `signed` route only `webhook-id` counts: the signature covers it, so a captured request
/// sent again is a duplicate whatever unsigned key it carries.
pub(super) fn dedupe_key(
    headers: &HeaderMap,
    route: &str,
    signed: bool,
) -> Result<Option<String>, ApiError> {
    let key = match header(headers, "idempotency-key")? {
        Some(key) if !signed => Some(key),
        _ => header(headers, "webhook-id")?,
    };
    key.map(|key| {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(invalid_header(format!(
                "an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} characters long"
            )));
        }
        Ok(format!("{route}\n{key}"))
    })
    .transpose()
}

/// A new event id: a UUIDv7, so ids sort by acceptance time.
pub(super) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn one(name: &'static str, value: &str) -> Option<HeaderMap> {
        let value = http::HeaderValue::from_str(value).ok()?;
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        Some(headers)
    }

    proptest! {
        /// Whatever a sender puts in the `hms-*` headers is read or refused with a 400; nothing
        /// panics, and what is read is what was sent.
        #[test]
        fn any_hms_header_value_is_read_or_refused(value in "\\PC{0,24}|[0-9+-]{1,22}") {
            if let Some(h) = one("hms-hops", &value) {
                match hops(&h) {
                    Ok(n) => prop_assert_eq!(value.trim().parse::<u32>().ok(), Some(n)),
                    Err(e) => prop_assert_eq!(e.status(), http::StatusCode::BAD_REQUEST),
                }
            }
            if let Some(h) = one("hms-version", &value) {
                match version(&h) {
                    Ok(Some(v)) => prop_assert!(i64::try_from(v).is_ok()),
                    Ok(None) => prop_assert!(false, "a header that is set reads as set"),
                    Err(e) => prop_assert_eq!(e.status(), http::StatusCode::BAD_REQUEST),
                }
            }
            if let Some(h) = one("hms-timestamp", &value) {
                match timestamp(&h, 1_800_000_000_000, 300_000) {
                    Ok(at) => prop_assert!(at <= 1_800_000_300_000),
                    Err(e) => prop_assert_eq!(e.status(), http::StatusCode::BAD_REQUEST),
                }
            }
            if let Some(h) = one("hms-path", &value)
                && let Ok((origin, path)) = provenance(&h, "hms")
            {
                prop_assert_eq!(path.last().map(String::as_str), Some("hms"));
                prop_assert!(!origin.is_empty());
            }
        }

        /// Every whole number up to 2^63 - 1 is a version, read back exactly.
        #[test]
        fn versions_read_back(n in 0u64..=i64::MAX as u64) {
            let h = one("hms-version", &n.to_string()).unwrap();
            prop_assert_eq!(version(&h).unwrap(), Some(n));
        }

        /// A timestamp is taken exactly when it is at most the skew ahead of now.
        #[test]
        fn timestamps_ahead_by_more_than_the_skew_are_refused(
            now in 0i64..4_000_000_000_000,
            offset in -1_000_000_000i64..1_000_000_000,
            skew in 0i64..10_000_000,
        ) {
            let at = now + offset;
            let h = one("hms-timestamp", &at.to_string()).unwrap();
            prop_assert_eq!(timestamp(&h, now, skew).is_ok(), offset <= skew);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn provenance_is_the_origin_then_the_path_ending_here() {
        let (origin, path) = provenance(&headers(&[]), "hms").unwrap();
        assert_eq!((origin.as_str(), path), ("hms", vec!["hms".to_owned()]));
        let (origin, path) =
            provenance(&headers(&[("hms-path", "irs, state-api")]), "hms").unwrap();
        assert_eq!(origin, "irs");
        assert_eq!(path, ["irs", "state-api", "hms"]);
        let (origin, _) = provenance(
            &headers(&[("hms-origin", "dmv"), ("hms-path", "irs")]),
            "hms",
        )
        .unwrap();
        assert_eq!(origin, "dmv");
        assert!(provenance(&headers(&[("hms-origin", "no spaces")]), "hms").is_err());
        let long = vec!["s"; MAX_PATH].join(",");
        assert!(provenance(&headers(&[("hms-path", &long)]), "hms").is_err());
    }

    #[test]
    fn metadata_headers_are_checked() {
        assert_eq!(hops(&headers(&[])).unwrap(), 0);
        assert_eq!(hops(&headers(&[("hms-hops", "3")])).unwrap(), 3);
        assert!(hops(&headers(&[("hms-hops", "-1")])).is_err());
        assert_eq!(version(&headers(&[("hms-version", "7")])).unwrap(), Some(7));
        assert!(version(&headers(&[("hms-version", "9223372036854775808")])).is_err());
        assert_eq!(timestamp(&headers(&[]), 42, 1000).unwrap(), 42);
        assert!(timestamp(&headers(&[("hms-timestamp", "soon")]), 42, 1000).is_err());
        assert_eq!(
            timestamp(&headers(&[("hms-timestamp", "1042")]), 42, 1000).unwrap(),
            1042
        );
        let ahead = timestamp(&headers(&[("hms-timestamp", "1043")]), 42, 1000).unwrap_err();
        assert!(format!("{ahead:?}").contains("maxClockSkew"), "{ahead:?}");
    }

    #[test]
    fn dedupe_keys_are_scoped_to_their_route() {
        assert_eq!(dedupe_key(&headers(&[]), "bus:t", false).unwrap(), None);
        let both = headers(&[("idempotency-key", "k1"), ("webhook-id", "w")]);
        assert_eq!(
            dedupe_key(&both, "bus:t", false).unwrap().as_deref(),
            Some("bus:t\nk1")
        );
        assert_eq!(
            dedupe_key(&headers(&[("webhook-id", "w")]), "webhook:/x", false)
                .unwrap()
                .as_deref(),
            Some("webhook:/x\nw")
        );
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY + 1);
        assert!(dedupe_key(&headers(&[("idempotency-key", &long)]), "bus:t", false).is_err());
    }

    #[test]
    fn a_signed_route_dedupes_on_the_signed_webhook_id_only() {
        let both = headers(&[("idempotency-key", "k1"), ("webhook-id", "w")]);
        assert_eq!(
            dedupe_key(&both, "webhook:/x", true).unwrap().as_deref(),
            Some("webhook:/x\nw")
        );
        let unsigned_only = headers(&[("idempotency-key", "k1")]);
        assert_eq!(
            dedupe_key(&unsigned_only, "webhook:/x", true).unwrap(),
            None
        );
    }
}
