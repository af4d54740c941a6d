//! `GET /admin/events/{id}`: an event's whole history.

use super::Admin;
use super::api::EventAnswer;
use crate::http::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::sync::Arc;

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
) -> Result<Json<EventAnswer>, ApiError> {
    match admin
        .records
        .event_history(&id)
        .await
        .map_err(|e| ApiError::store_unavailable(&e))?
    {
        Some(history) => Ok(Json(EventAnswer {
            event: history.into(),
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no event has the id `{id}`"),
        )),
    }
}
