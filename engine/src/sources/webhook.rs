//! `POST <path>`: external webhooks, one route per configured path.

use super::{Sources, headers};
use crate::config::WebhookRoute;
use crate::http::ApiError;
use crate::sandbox::event::{Event, Header};
use crate::signing::Verifier;
use crate::store::{Route, now_ms};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use std::sync::Arc;

/// What a webhook route gives its events.
pub(super) struct WebhookSource {
    system: String,
    event_type: String,
    /// Lower-case names of the headers plugins may see.
    headers: Vec<String>,
    /// Checks Standard Webhooks signatures, when the route has secrets.
    verifier: Option<Verifier>,
}

impl WebhookSource {
    pub(super) fn new(route: &WebhookRoute) -> anyhow::Result<WebhookSource> {
        let secrets: Vec<&str> = route.secrets.iter().map(|s| &**s).collect();
        Ok(WebhookSource {
            system: route.system().to_owned(),
            event_type: route.event_type(),
            headers: route
                .headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            verifier: Verifier::new(&secrets).map_err(anyhow::Error::msg)?,
        })
    }
}

/// Accepts a webhook request on its route.
pub(super) async fn receive(
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
    let (content_type, payload) = headers::json_body(
        &headers,
        body,
        source.verifier.as_ref(),
        sources.max_json_depth,
    )?;
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
    let hops = headers::hops(&headers)?;
    let (origin, path) = headers::provenance(&headers, &source.system)?;
    let event = Event {
        id: headers::new_id(),
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
    let route = Route::Webhook(uri.path().to_owned());
    let signed = source.verifier.is_some();
    sources.accept(event, route, &headers, signed, now).await
}
