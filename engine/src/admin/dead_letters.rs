//! `GET /admin/dead-letters`, `GET /admin/dead-letters/{id}`, `POST /admin/dead-letters/replay`.

use super::api::{DeadLetterDetail, DeadLetters, Replayed, Selection};
use super::{Admin, parse_time};
use crate::http::ApiError;
use crate::store::DeadLetterFilter;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use std::sync::Arc;

/// Dead letters per page when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// The most a page may hold.
const MAX_PAGE: usize = 1000;

impl Selection {
    /// The store's filter for this selection (`all` is the caller's to interpret).
    fn filter(&self) -> Result<DeadLetterFilter, ApiError> {
        Ok(DeadLetterFilter {
            ids: self.ids.clone(),
            target: self.destination.clone(),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            include_replayed: false,
            limit: 0,
            after: None,
        })
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.destination.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<Json<DeadLetters>, ApiError> {
    let Query(selection) = query.map_err(ApiError::bad_request)?;
    admin.dead_letters(&selection).await.map(Json)
}

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<DeadLetterDetail>, ApiError> {
    let Path(id) = id.map_err(ApiError::bad_request)?;
    admin.dead_letter(id).await.map(Json)
}

pub(super) async fn replay(
    State(admin): State<Arc<Admin>>,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let Json(selection) = body.map_err(|e| ApiError::from_json_rejection(&e))?;
    admin.replay(&selection).await.map(Json)
}

impl Admin {
    /// The dead letters `selection` lists (a page of them, oldest first).
    pub async fn dead_letters(&self, selection: &Selection) -> Result<DeadLetters, ApiError> {
        let mut filter = selection.filter()?;
        filter.include_replayed = selection.all;
        let limit = selection.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "`limit` is 1 to {MAX_PAGE} (default {DEFAULT_PAGE})"
            )));
        }
        filter.limit = limit;
        filter.after = selection.after;
        let dead = self
            .records
            .dead_letters(filter)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        let next = (dead.len() == limit)
            .then(|| dead.last().map(|d| d.id))
            .flatten();
        Ok(DeadLetters {
            dead_letters: dead.into_iter().map(Into::into).collect(),
            next,
        })
    }

    /// One dead letter, with its event's history.
    pub async fn dead_letter(&self, id: i64) -> Result<DeadLetterDetail, ApiError> {
        let filter = DeadLetterFilter {
            ids: vec![id],
            include_replayed: true,
            ..DeadLetterFilter::default()
        };
        let dead = self
            .records
            .dead_letters(filter)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        let Some(dead) = dead.into_iter().next() else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no dead letter has the id {id}"),
            ));
        };
        let history = self
            .records
            .event_history(&dead.event_id)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        Ok(DeadLetterDetail {
            dead_letter: dead.into(),
            event: history.map(Into::into),
        })
    }

    /// Queues the dead letters `selection` names again.
    pub async fn replay(&self, selection: &Selection) -> Result<Replayed, ApiError> {
        if selection.is_empty() && !selection.all {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "empty-selection",
                "say which dead letters to replay: `ids`, `destination`, `since`/`until`, or `all: true`",
            ));
        }
        let filter = selection.filter()?;
        let outcome = self
            .records
            .replay(filter)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        tracing::info!(
            replayed = outcome.replayed.len(),
            skipped = outcome.skipped.len(),
            by = %self.identity,
            "dead letters replayed"
        );
        Ok(outcome.into())
    }
}
