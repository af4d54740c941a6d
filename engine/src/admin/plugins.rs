//! The plugin endpoints: list, show, upload a version, activate a stored one, roll back, delete.

use super::Admin;
use super::api::{
    ActivateRequest, Deleted, PluginDetail, PluginSummary, Plugins, Swapped, VersionRef,
};
use crate::http::ApiError;
use crate::registry::{Refused, Swap};
use crate::store::StoreError;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use std::sync::Arc;

fn refused(r: Refused) -> ApiError {
    let (status, code) = if r.not_found {
        (StatusCode::NOT_FOUND, "not-found")
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, "refused")
    };
    ApiError::new(
        status,
        code,
        "the version was refused; the active version keeps serving",
    )
    .with_failures(r.failures)
}

fn swapped(swap: Swap) -> Json<Swapped> {
    Json(Swapped { plugin: swap })
}

pub(super) async fn list(State(admin): State<Arc<Admin>>) -> Result<Json<Plugins>, ApiError> {
    let plugins = admin
        .registry
        .names()
        .map(|name| {
            let active = admin.registry.get(name);
            PluginSummary {
                name: name.to_owned(),
                active: active.as_ref().map(|p| p.hash().to_owned()),
                world: active.as_ref().map(|p| p.world().to_string()),
                size: active.as_ref().map(|p| p.size()),
            }
        })
        .collect();
    Ok(Json(Plugins { plugins }))
}

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginDetail>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let Some(active) = admin.registry.get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no plugin is named `{name}`"),
        ));
    };
    let (versions, activations) = admin
        .registry
        .describe(&name)
        .await
        .map_err(|e| ApiError::store_unavailable(&e))?;
    Ok(Json(PluginDetail {
        active: active.hash().to_owned(),
        world: active.world().to_string(),
        name,
        versions: versions.into_iter().map(Into::into).collect(),
        activations: activations.into_iter().map(Into::into).collect(),
    }))
}

/// A new version: the component as the body (`application/wasm`), or a multipart form with a
/// `component` part and an optional `fixtures` part (JSON).
pub(super) async fn upload(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let multipart = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (component, fixtures) = if multipart {
        read_form(request).await?
    } else {
        let body = axum::body::Bytes::from_request(request, &())
            .await
            .map_err(|e| upload_error(&e.body_text()))?;
        (body.to_vec(), None)
    };
    if component.is_empty() {
        return Err(ApiError::bad_request("the upload holds no component"));
    }
    let swap = admin
        .registry
        .submit(&name, component, fixtures, &admin.identity, "upload")
        .await
        .map_err(refused)?;
    Ok(swapped(swap))
}

fn upload_error(message: &str) -> ApiError {
    if message.contains("length limit") {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "the upload is larger than `admin.maxUploadSize`",
        )
    } else {
        ApiError::bad_request(message)
    }
}

async fn read_form(request: Request) -> Result<(Vec<u8>, Option<String>), ApiError> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (mut component, mut fixtures) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| upload_error(&e.body_text()))?
    {
        match field.name() {
            Some("component") => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| upload_error(&e.body_text()))?;
                component = Some(bytes.to_vec());
            }
            Some("fixtures") => {
                fixtures = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| upload_error(&e.body_text()))?,
                );
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field `{}`: send `component` and, optionally, `fixtures`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let component =
        component.ok_or_else(|| ApiError::bad_request("the form has no `component` field"))?;
    Ok((component, fixtures))
}

pub(super) async fn activate(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<ActivateRequest>, JsonRejection>,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let Json(request) = body.map_err(|e| ApiError::from_json_rejection(&e))?;
    let swap = admin
        .registry
        .activate(&name, &request.hash, &admin.identity, "activate")
        .await
        .map_err(refused)?;
    Ok(swapped(swap))
}

pub(super) async fn rollback(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let swap = admin
        .registry
        .rollback(&name, &admin.identity)
        .await
        .map_err(refused)?;
    Ok(swapped(swap))
}

pub(super) async fn delete_version(
    State(admin): State<Arc<Admin>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Path((name, hash)) = path.map_err(ApiError::bad_request)?;
    admin
        .registry
        .delete(&name, &hash)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "active-version", m),
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not-found", m),
            other => ApiError::store_unavailable(&other),
        })?;
    Ok(Json(Deleted {
        deleted: VersionRef { name, hash },
    }))
}
