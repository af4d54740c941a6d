//! `GET /admin/entities` and `DELETE /admin/entities`: what a target holds for an entity under
//! its conflict strategy, and forgetting it. A version or timestamp far ahead (a sender's bug)
//! makes every later update of the entity lose; a reset lets the next one through.

use super::Admin;
use super::api::{Entity, EntityAnswer, EntityQuery, EntityReset};
use crate::http::ApiError;
use crate::store::{EntityRef, OutboxKind};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use std::sync::Arc;

impl EntityQuery {
    /// The store's name for the entity asked about.
    fn entity(self) -> Result<EntityRef, ApiError> {
        let (kind, target) = match (self.destination, self.emit) {
            (Some(destination), None) => (OutboxKind::Deliver, destination),
            (None, Some(event_type)) => (OutboxKind::Emit, event_type),
            _ => {
                return Err(ApiError::bad_request(
                    "say whose entity: `destination` (a destination's name) or `emit` (an \
                     emitted event type), not both",
                ));
            }
        };
        if self.key.is_empty() {
            return Err(ApiError::bad_request("`key` is empty"));
        }
        Ok(EntityRef {
            kind,
            target,
            key: self.key,
        })
    }
}

fn nothing_held(entity: &EntityRef) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "`{}` holds nothing for the entity `{}` (nothing keyed was sent to it under a \
             conflict strategy, or it was reset)",
            entity.target, entity.key
        ),
    )
}

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<EntityQuery>, QueryRejection>,
) -> Result<Json<EntityAnswer>, ApiError> {
    let Query(query) = query.map_err(ApiError::bad_request)?;
    let entity = query.entity()?;
    match admin
        .records
        .entity(entity.clone())
        .await
        .map_err(|e| ApiError::store_unavailable(&e))?
    {
        Some(state) => Ok(Json(EntityAnswer {
            entity: Entity::new(&entity, state),
        })),
        None => Err(nothing_held(&entity)),
    }
}

pub(super) async fn reset(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<EntityQuery>, QueryRejection>,
) -> Result<Json<EntityReset>, ApiError> {
    let Query(query) = query.map_err(ApiError::bad_request)?;
    let entity = query.entity()?;
    let Some(state) = admin
        .records
        .reset_entity(entity.clone())
        .await
        .map_err(|e| ApiError::store_unavailable(&e))?
    else {
        return Err(nothing_held(&entity));
    };
    let reset = Entity::new(&entity, state);
    tracing::warn!(
        by = %admin.identity,
        kind = %reset.kind,
        target = %reset.target,
        key = %reset.key,
        version = ?reset.version,
        timestamp = reset.timestamp,
        event_id = %reset.event_id,
        "entity conflict state reset: its next update is sent whatever its version or timestamp"
    );
    Ok(Json(EntityReset {
        reset,
        by: admin.identity.clone(),
    }))
}
