//! `POST /events/{type}`: the embedded HMS bus; what an HMS event's headers and body say,
//! however the bus brought it.

use super::{Sources, headers};
use crate::http::ApiError;
use crate::http::auth::{Peer, bearer};
use crate::sandbox::event::{Event, HMS_ORIGIN, check_event_type};
use crate::store::{Route, now_ms};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Refuses a request without the bus token (when one is configured) before its body is read.
pub(super) async fn guard(
    State(sources): State<Arc<Sources>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &sources.bus_token {
        let peer = request.extensions().get::<Peer>().copied();
        sources
            .auth
            .check(peer, "bus", bearer(request.headers(), token))
            .await?;
    }
    Ok(next.run(request).await)
}

/// Accepts an event of type `event_type` from the HMS bus.
pub(super) async fn receive(
    State(sources): State<Arc<Sources>>,
    Path(event_type): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let event = hms_event(&sources, event_type, &headers, body, now)?;
    let route = Route::Bus(event.event_type.clone());
    sources.accept(event, route, &headers, false, now).await
}

/// The HMS event of type `event_type` that `headers` and `body` describe (the `hms-*` metadata,
/// a JSON body), received at `now`, whichever way the bus brought it; an error saying what is
/// wrong with it, or that no route takes its type.
pub(super) fn hms_event(
    sources: &Sources,
    event_type: String,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    now: i64,
) -> Result<Event, ApiError> {
    if check_event_type(&event_type).is_err() || !sources.routes.has_bus_route(&event_type) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-event-type",
            format!("no route handles events of type `{event_type}`"),
        ));
    }
    let (content_type, payload) = headers::json_body(headers, body, None, sources.max_json_depth)?;
    let (origin, path) = headers::provenance(headers, HMS_ORIGIN)?;
    Ok(Event {
        id: headers::new_id(),
        event_type,
        origin,
        key: headers::header(headers, "hms-key")?.map(str::to_owned),
        version: headers::version(headers)?,
        timestamp: headers::timestamp(headers, now, sources.max_clock_skew_ms)?,
        content_type,
        payload,
        headers: Vec::new(),
        hops: headers::hops(headers)?,
        path,
    })
}
