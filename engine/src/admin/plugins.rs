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

pub(super) fn refused(r: Refused) -> ApiError {
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
    .with_passed(r.passed)
}

fn swapped(swap: Swap) -> Swapped {
    Swapped { plugin: swap }
}

pub(super) async fn list(State(admin): State<Arc<Admin>>) -> Json<Plugins> {
    Json(admin.plugins())
}

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginDetail>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.plugin(&name).await.map(Json)
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
    let (component, fixtures) = read_upload(&headers, request).await?;
    admin.upload(&name, component, fixtures).await.map(Json)
}

/// A component and its fixtures: the body (`application/wasm`, no fixtures), or a form's
/// `component` and `fixtures` parts.
pub(super) async fn read_upload(
    headers: &HeaderMap,
    request: Request,
) -> Result<(Vec<u8>, Option<String>), ApiError> {
    if is_form(headers) {
        let form = read_form(request).await?;
        Ok((form.component, form.fixtures))
    } else {
        Ok((read_body(request).await?, None))
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

async fn read_body(request: Request) -> Result<Vec<u8>, ApiError> {
    let body = axum::body::Bytes::from_request(request, &())
        .await
        .map_err(|e| upload_error(&e.body_text()))?;
    Ok(body.to_vec())
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

/// An upload sent as a form.
pub(crate) struct UploadForm {
    /// The component.
    pub(crate) component: Vec<u8>,
    /// Its fixtures (JSON), when the form has a non-empty `fixtures` part.
    pub(crate) fixtures: Option<String>,
    /// The console's CSRF token, when a console form sent it.
    pub(crate) csrf: Option<String>,
    /// The canary share the console's form asks for.
    pub(crate) percent: Option<String>,
}

/// Reads a `multipart/form-data` upload: a `component` part, optionally `fixtures` (JSON) and,
/// from the console, `csrf` and `percent`.
pub(crate) async fn read_form(request: Request) -> Result<UploadForm, ApiError> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (mut component, mut fixtures) = (None, None);
    let (mut csrf, mut percent) = (None, None);
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
                let text = field
                    .text()
                    .await
                    .map_err(|e| upload_error(&e.body_text()))?;
                // A form's file input with no file chosen sends an empty part.
                fixtures = (!text.trim().is_empty()).then_some(text);
            }
            Some(name @ ("csrf" | "percent")) => {
                let slot = if name == "csrf" {
                    &mut csrf
                } else {
                    &mut percent
                };
                *slot = Some(
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
    Ok(UploadForm {
        component,
        fixtures,
        csrf,
        percent,
    })
}

pub(super) async fn activate(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<ActivateRequest>, JsonRejection>,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    let Json(request) = body.map_err(|e| ApiError::from_json_rejection(&e))?;
    admin.activate(&name, &request.hash).await.map(Json)
}

pub(super) async fn rollback(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Swapped>, ApiError> {
    let Path(name) = name.map_err(ApiError::bad_request)?;
    admin.rollback(&name).await.map(Json)
}

pub(super) async fn delete_version(
    State(admin): State<Arc<Admin>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Path((name, hash)) = path.map_err(ApiError::bad_request)?;
    admin.delete_version(&name, &hash).await.map(Json)
}

impl Admin {
    /// Every configured plugin and its active version.
    pub fn plugins(&self) -> Plugins {
        let plugins = self
            .registry
            .names()
            .map(|name| {
                let active = self.registry.get(name);
                PluginSummary {
                    name: name.to_owned(),
                    active: active.as_ref().map(|p| p.hash().to_owned()),
                    world: active.as_ref().map(|p| p.world().to_string()),
                    size: active.as_ref().map(|p| p.size()),
                }
            })
            .collect();
        Plugins { plugins }
    }

    /// One plugin: its versions and activations.
    pub async fn plugin(&self, name: &str) -> Result<PluginDetail, ApiError> {
        let Some(active) = self.registry.get(name) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no plugin is named `{name}`"),
            ));
        };
        let (versions, activations) = self
            .registry
            .describe(name)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        Ok(PluginDetail {
            active: active.hash().to_owned(),
            world: active.world().to_string(),
            name: name.to_owned(),
            versions: versions.into_iter().map(Into::into).collect(),
            activations: activations.into_iter().map(Into::into).collect(),
        })
    }

    /// Checks `component` (against `fixtures`, its own or its plugin's) and makes it the
    /// active version of `name`.
    pub async fn upload(
        &self,
        name: &str,
        component: Vec<u8>,
        fixtures: Option<String>,
    ) -> Result<Swapped, ApiError> {
        if component.is_empty() {
            return Err(ApiError::bad_request("the upload holds no component"));
        }
        let swap = self
            .registry
            .submit(name, component, fixtures, &self.identity, "upload")
            .await
            .map_err(refused)?;
        Ok(swapped(swap))
    }

    /// Makes the stored version `hash` of `name` active again.
    pub async fn activate(&self, name: &str, hash: &str) -> Result<Swapped, ApiError> {
        let swap = self
            .registry
            .activate(name, hash, &self.identity, "activate")
            .await
            .map_err(refused)?;
        Ok(swapped(swap))
    }

    /// Makes the version active before the current one active again.
    pub async fn rollback(&self, name: &str) -> Result<Swapped, ApiError> {
        let swap = self
            .registry
            .rollback(name, &self.identity)
            .await
            .map_err(refused)?;
        Ok(swapped(swap))
    }

    /// Deletes a stored version that is not active.
    pub async fn delete_version(&self, name: &str, hash: &str) -> Result<Deleted, ApiError> {
        if self.canary_hash(name).as_deref() == Some(hash) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "canary-version",
                "this version runs as the plugin's canary: stop the canary first",
            ));
        }
        self.registry
            .delete(name, hash)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "active-version", m),
                StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not-found", m),
                other => ApiError::store_unavailable(&other),
            })?;
        tracing::info!(plugin = name, hash, by = %self.identity, "plugin version deleted");
        Ok(Deleted {
            deleted: VersionRef {
                name: name.to_owned(),
                hash: hash.to_owned(),
            },
        })
    }
}
