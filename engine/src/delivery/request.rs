//! One HTTP request for one attempt: the headers every request carries (provenance for loop
//! prevention, entity metadata, the idempotency key, Standard Webhooks id, timestamp and
//! signature), the body, and what the answer means for the retry schedule.

use super::endpoint::HttpTarget;
use super::retry::{self, Verdict};
use crate::signing::Signer;
use crate::store::{OutboxAction, OutboxKind, now_ms};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// How much of a failed response's body is kept in the attempt's error.
const ERROR_BODY: usize = 512;

/// What one request got.
pub(super) struct Sent {
    /// Delivered, retry, or permanent.
    pub(super) verdict: Verdict,
    /// The HTTP status, when a response came.
    pub(super) status: Option<u16>,
    /// What went wrong, when something did.
    pub(super) error: Option<String>,
    /// How long the receiver asked to wait (`Retry-After`).
    pub(super) retry_after: Option<Duration>,
}

/// The headers of a request for `action` of `event_id`, with `body`: the endpoint's own
/// (`base`), the provenance and entity headers, the plugin's, and the idempotency and Standard
/// Webhooks ones (signed by `signer`, when the endpoint has secrets). An error when the body
/// cannot be signed.
pub(super) fn headers(
    base: &HeaderMap,
    signer: Option<&Signer>,
    event_id: &str,
    action: &OutboxAction,
    body: &[u8],
) -> Result<HeaderMap, String> {
    let mut headers = base.clone();
    // Where the update comes from and what it is about, on every request: the bus endpoint
    // reads the same headers, and systems that relay updates pass `hms-origin` and `hms-hops`
    // on, so cycles end.
    for (name, value) in [
        ("hms-origin", Some(action.origin.clone())),
        ("hms-hops", Some(action.hops.to_string())),
        ("hms-path", Some(action.path.join(","))),
        ("hms-source-event", Some(event_id.to_owned())),
        ("hms-key", action.key.clone()),
        ("hms-version", action.version.map(|v| v.to_string())),
        ("hms-timestamp", Some(action.timestamp.to_string())),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    // The plugin's own headers were checked against every header set here, so they add.
    for header in &action.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_str(&header.value),
        ) {
            headers.append(name, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&action.content_type) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    // Standard Webhooks headers: the id is the idempotency key, stable across retries; the
    // timestamp and signature are made for each attempt.
    let timestamp = now_ms() / 1000;
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("idempotency-key", &action.idempotency_key);
    set("webhook-id", &action.idempotency_key);
    set("webhook-timestamp", &timestamp.to_string());
    if let Some(signer) = signer {
        set(
            "webhook-signature",
            &signer.sign(&action.idempotency_key, timestamp, body)?,
        );
    }
    Ok(headers)
}

/// Where a request for `action` goes: the endpoint's URL, or `{core.url}/events/{type}` for an
/// emitted event, however the core's URL ends.
pub(super) fn url(target: &HttpTarget, action: &OutboxAction) -> reqwest::Url {
    let mut url = target.url.clone();
    if action.kind == OutboxKind::Emit {
        let path = format!(
            "{}/events/{}",
            url.path().trim_end_matches('/'),
            action.target
        );
        url.set_path(&path);
    }
    url
}

impl Sent {
    /// No answer came: `verdict` says whether to try again.
    pub(super) fn failed(verdict: Verdict, error: String) -> Sent {
        Sent {
            verdict,
            status: None,
            error: Some(error),
            retry_after: None,
        }
    }
}

/// Sends one request for `action` of `event_id`, with `body`, waiting `timeout` for its answer.
pub(super) async fn send(
    client: &reqwest::Client,
    target: &HttpTarget,
    timeout: Duration,
    event_id: &str,
    action: &OutboxAction,
    body: &[u8],
) -> Sent {
    let headers = match headers(
        &target.headers,
        target.signer.as_ref(),
        event_id,
        action,
        body,
    ) {
        Ok(headers) => headers,
        Err(e) => return Sent::failed(Verdict::Permanent, e),
    };
    let request = client
        .request(target.method.clone(), url(target, action))
        .headers(headers)
        .timeout(timeout)
        .body(body.to_vec());
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let verdict = retry::classify_status(status);
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
            let error = if verdict == Verdict::Delivered {
                None
            } else {
                Some(with_body_excerpt(format!("HTTP {status}"), response).await)
            };
            Sent {
                verdict,
                status: Some(status.as_u16()),
                error,
                retry_after,
            }
        }
        Err(mut e) => {
            // reqwest's message names the URL: never with its credentials or query values,
            // which end up in attempts, dead letters and logs.
            if let Some(url) = e.url_mut() {
                crate::http::redact::mask(url);
            }
            let message = if e.is_timeout() {
                format!("no answer within {}ms", timeout.as_millis())
            } else {
                error_chain(&e)
            };
            Sent::failed(retry::classify_error(&e), message)
        }
    }
}

/// `prefix: <the start of the response body>`, when the body has text.
async fn with_body_excerpt(prefix: String, mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY);
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        prefix
    } else {
        format!("{prefix}: {text}")
    }
}

/// An error and its causes, `: `-separated (reqwest's own message hides the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Header;

    fn target(url: &str, signed: bool) -> HttpTarget {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        HttpTarget {
            url: reqwest::Url::parse(url).unwrap(),
            method: http::Method::POST,
            headers,
            signer: signed.then(|| {
                Signer::new(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
                    .unwrap()
                    .unwrap()
            }),
        }
    }

    fn action(kind: OutboxKind, target: &str) -> OutboxAction {
        let mut action = crate::store::samples::row(1, "e1", target, Some("tax-rate/2025")).action;
        action.kind = kind;
        action.origin = "state-api".into();
        action.headers = vec![Header::new("x-agency", "irs")];
        action.timestamp = 5;
        action.hops = 2;
        action.path = vec!["state-api".into(), "hms".into()];
        action
    }

    #[test]
    fn every_request_carries_provenance_idempotency_and_a_signature() {
        let target = target("http://x/api", true);
        let headers = headers(
            &target.headers,
            target.signer.as_ref(),
            "e1",
            &action(OutboxKind::Deliver, "state"),
            b"{}",
        )
        .unwrap();
        let get = |name: &str| headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(get("hms-origin"), "state-api");
        assert_eq!(get("hms-hops"), "2");
        assert_eq!(get("hms-path"), "state-api,hms");
        assert_eq!(get("hms-source-event"), "e1");
        assert_eq!(get("hms-key"), "tax-rate/2025");
        assert!(headers.get("hms-version").is_none());
        assert_eq!(get("idempotency-key"), "e1.0.0");
        assert_eq!(get("webhook-id"), "e1.0.0");
        assert!(get("webhook-signature").starts_with("v1,"));
        assert_eq!(get("x-api-key"), "k");
        assert_eq!(get("x-agency"), "irs");
        assert_eq!(get("content-type"), "application/json");
    }

    #[test]
    fn emitted_events_go_under_the_cores_url() {
        for base in ["http://core/hms", "http://core/hms/"] {
            let url = url(
                &target(base, false),
                &action(OutboxKind::Emit, "tax.rate.updated"),
            );
            assert_eq!(url.as_str(), "http://core/hms/events/tax.rate.updated");
        }
        let url = url(
            &target("http://state/api/rates", false),
            &action(OutboxKind::Deliver, "state"),
        );
        assert_eq!(url.as_str(), "http://state/api/rates");
    }
}
