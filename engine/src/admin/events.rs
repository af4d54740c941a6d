//! `GET /admin/events/{id}` (an event's whole history) and `GET /admin/events` (a search).

use super::api::{EventAnswer, EventList, EventSearch, EventSummary};
use super::{Admin, parse_time};
use crate::http::ApiError;
use crate::store::EventQuery;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use std::sync::Arc;

/// Events per page when the search does not say.
const DEFAULT_PAGE: usize = 50;
/// The most a page may hold.
const MAX_PAGE: usize = 500;

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<EventAnswer>, ApiError> {
    admin.event(&id).await.map(Json)
}

pub(super) async fn search(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<EventSearch>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let Query(search) = query.map_err(ApiError::bad_request)?;
    admin.find_events(&search).await.map(Json)
}

/// A search field: trimmed, and absent when empty (as a form sends an unused field).
fn given(field: Option<&String>) -> Option<String> {
    field
        .map(|f| f.trim())
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
}

impl Admin {
    /// Everything recorded about the event `id`.
    pub async fn event(&self, id: &str) -> Result<EventAnswer, ApiError> {
        match self
            .records
            .event_history(id)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?
        {
            Some(history) => Ok(EventAnswer {
                event: history.into(),
            }),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no event has the id `{id}`"),
            )),
        }
    }

    /// The events `search` finds, newest first, a page at a time.
    pub async fn find_events(&self, search: &EventSearch) -> Result<EventList, ApiError> {
        let limit = search.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "`limit` is 1 to {MAX_PAGE} (default {DEFAULT_PAGE})"
            )));
        }
        let time = |raw: Option<&String>| given(raw).as_deref().map(parse_time).transpose();
        let query = EventQuery {
            id: given(search.id.as_ref()),
            key: given(search.key.as_ref()),
            event_type: given(search.event_type.as_ref()),
            origin: given(search.origin.as_ref()),
            routes: Vec::new(),
            since: time(search.since.as_ref())?,
            until: time(search.until.as_ref())?,
            before: search.before,
            limit,
        };
        let found = self
            .records
            .find_events(query)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        let next = (found.len() == limit)
            .then(|| found.last().map(|f| f.event.seq))
            .flatten();
        Ok(EventList {
            events: found.into_iter().map(EventSummary::from).collect(),
            next,
        })
    }
}
