//! The plugin pages: the list, a plugin's versions, and every form posted to a plugin (upload,
//! dry run, shadow, canary, and the buttons that activate, roll back, delete, stop and promote).
//! Each action leaves a notice saying what it did, then shows the plugin's page again.

use super::session::Notice;
use super::{LoggedIn, check_form, checked_form, encode, error_page, field, json, page};
use crate::admin::Admin;
use crate::http::ApiError;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use std::sync::Arc;

pub(super) async fn list(State(admin): State<Arc<Admin>>, who: LoggedIn) -> Response {
    let plugins = admin.plugins().plugins;
    page(
        "plugins.html",
        &who,
        "plugins",
        context! { plugins => json(&plugins) },
    )
}

pub(super) async fn show(
    State(admin): State<Arc<Admin>>,
    who: LoggedIn,
    Path(name): Path<String>,
) -> Response {
    match admin.plugin(&name).await {
        Ok(p) => {
            let shadow = admin.shadow_report(&name).ok();
            let canary = admin.canary_report(&name).ok();
            page(
                "plugin.html",
                &who,
                "plugins",
                context! { p => json(&p), shadow => json(&shadow), canary => json(&canary) },
            )
        }
        Err(e) => error_page(&who, "plugins", &e, "/console/plugins"),
    }
}

/// What a version change did, for the notice.
fn swapped_notice(verb: &str, swap: &crate::registry::Swap) -> Notice {
    let title = if swap.unchanged {
        format!(
            "{} is already the active version of {}; nothing changed.",
            short(&swap.hash),
            swap.name
        )
    } else {
        format!(
            "{verb}: {} is now the active version of {}{}.",
            short(&swap.hash),
            swap.name,
            swap.replaced
                .as_deref()
                .map(|r| format!(" (it replaced {})", short(r)))
                .unwrap_or_default()
        )
    };
    let mut lines: Vec<String> = swap
        .fixture_cases
        .iter()
        .map(|case| format!("passed: {case}"))
        .collect();
    if lines.is_empty() && verb == "Uploaded" {
        lines.push("No fixtures were run (none came with it or with the active version).".into());
    }
    lines.push(format!("Checked and swapped in {} ms.", swap.took_ms));
    Notice::ok(title, lines)
}

/// A refusal, for the notice: why; for an upload, each fixture case that failed, then those
/// that passed.
fn refused_notice(title: &str, error: &ApiError, cases: bool) -> Notice {
    let detail = error.detail();
    let mut lines = Vec::new();
    if detail.failures.is_empty() {
        lines.push(detail.message.clone());
    }
    lines.extend(detail.failures.iter().map(|f| {
        if cases {
            format!("failed: {f}")
        } else {
            f.clone()
        }
    }));
    lines.extend(detail.passed.iter().map(|p| format!("passed: {p}")));
    Notice::refused(title, lines)
}

/// `POST /console/plugins/{name}/{action}`: a form with a component (multipart: `upload`,
/// `try`, `shadow`, `canary`), or one of the buttons ([`plugin_action`]).
pub(super) async fn post(
    State(admin): State<Arc<Admin>>,
    who: LoggedIn,
    Path((name, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return plugin_action(&admin, &who, &name, &action, request).await;
    }
    let form = match candidate_form(&admin, &who, &name, request).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let notice = match action.as_str() {
        "upload" => match admin.upload(&name, form.component, form.fixtures).await {
            Ok(swapped) => swapped_notice("Uploaded", &swapped.plugin),
            Err(e) => refused_notice(
                "The new version was refused; the active version keeps serving.",
                &e,
                true,
            ),
        },
        "try" => {
            let query = crate::admin::api::TrialQuery::default();
            match admin.try_version(&name, form.component, &query).await {
                // The result is its own page.
                Ok(t) => return page("trial.html", &who, "plugins", context! { t => json(&t) }),
                Err(e) => refused_notice("The dry run was refused.", &e, false),
            }
        }
        "shadow" => match admin
            .start_shadow(&name, form.component, form.fixtures)
            .await
        {
            Ok(r) => Notice::ok(
                format!(
                    "Shadow {} started beside the active version of {name}: it runs on live \
                     events and delivers nothing.",
                    short(&r.shadow)
                ),
                Vec::new(),
            ),
            Err(e) => refused_notice("The shadow was refused.", &e, false),
        },
        "canary" => start_canary(&admin, &name, form).await,
        other => Notice::refused(format!("The console has no action `{other}`."), Vec::new()),
    };
    back_with(&admin, &who, &name, notice)
}

/// A version hash, shortened for a notice.
fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// Starts a canary of the form's component on the share it asks for; says what happened.
async fn start_canary(admin: &Admin, name: &str, form: crate::admin::UploadForm) -> Notice {
    let percent = form
        .percent
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let Ok(percent) = percent.map(str::parse::<u8>).transpose() else {
        return Notice::refused(
            "The canary's share is a whole percentage, 1 to 99.",
            Vec::new(),
        );
    };
    let query = crate::admin::api::CanaryQuery {
        percent,
        ..Default::default()
    };
    match admin
        .start_canary(name, form.component, form.fixtures, &query)
        .await
    {
        Ok(r) => Notice::ok(
            format!(
                "Canary {} started on {}% of {name}'s keys: what it makes is delivered.",
                short(&r.canary),
                r.percent
            ),
            Vec::new(),
        ),
        Err(e) => refused_notice("The canary was refused.", &e, true),
    }
}

/// Leaves `notice` for the session and sends the browser back to the plugin's page.
fn back_with(admin: &Admin, who: &LoggedIn, name: &str, notice: Notice) -> Response {
    admin.sessions().notify(&who.session.id, notice);
    Redirect::to(&format!("/console/plugins/{}", encode(name))).into_response()
}

/// A component sent from the plugin page's forms, once its CSRF token is checked; else the
/// answer to give: a 403 for a forged form, the plugin's page saying why for one that does not
/// read.
async fn candidate_form(
    admin: &Admin,
    who: &LoggedIn,
    name: &str,
    request: Request,
) -> Result<crate::admin::UploadForm, Response> {
    let headers = request.headers().clone();
    let form = crate::admin::read_form(request).await.map_err(|e| {
        back_with(
            admin,
            who,
            name,
            refused_notice("The form was refused.", &e, false),
        )
    })?;
    check_form(&who.session, form.csrf.as_deref().unwrap_or(""), &headers)
        .map_err(IntoResponse::into_response)?;
    Ok(form)
}

/// A button's form: `activate`, `rollback`, `delete`, and the shadow's and canary's
/// `shadow-stop`, `shadow-promote`, `canary-stop`, `canary-promote` and `canary-share`.
async fn plugin_action(
    admin: &Admin,
    who: &LoggedIn,
    name: &str,
    action: &str,
    request: Request,
) -> Response {
    let fields = match checked_form(who, request).await {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let hash = field(&fields, "hash").unwrap_or("").to_owned();
    let notice = match action {
        "activate" => match admin.activate(name, &hash).await {
            Ok(swapped) => swapped_notice("Activated", &swapped.plugin),
            Err(e) => refused_notice("The version was not activated.", &e, true),
        },
        "rollback" => match admin.rollback(name).await {
            Ok(swapped) => swapped_notice("Rolled back", &swapped.plugin),
            Err(e) => refused_notice("Nothing was rolled back.", &e, true),
        },
        "delete" => match admin.delete_version(name, &hash).await {
            Ok(deleted) => Notice::ok(
                format!(
                    "Deleted version {} of {}.",
                    short(&deleted.deleted.hash),
                    deleted.deleted.name
                ),
                Vec::new(),
            ),
            Err(e) => refused_notice("The version was not deleted.", &e, false),
        },
        "shadow-stop" => match admin.stop_shadow(name) {
            Ok(r) => Notice::ok(
                format!("The shadow stopped after {} runs.", r.runs),
                Vec::new(),
            ),
            Err(e) => refused_notice("Nothing was stopped.", &e, false),
        },
        "shadow-promote" => match admin.promote_shadow(name).await {
            Ok(swapped) => swapped_notice("Promoted the shadow", &swapped.plugin),
            Err(e) => refused_notice("The shadow was not promoted.", &e, true),
        },
        "canary-stop" => match admin.stop_canary(name) {
            Ok(_) => Notice::ok(
                "The canary stopped: its keys go to the active version.",
                Vec::new(),
            ),
            Err(e) => refused_notice("Nothing was stopped.", &e, false),
        },
        "canary-promote" => match admin.promote_canary(name).await {
            Ok(swapped) => swapped_notice("Promoted the canary", &swapped.plugin),
            Err(e) => refused_notice("The canary was not promoted.", &e, true),
        },
        "canary-share" => match field(&fields, "percent").unwrap_or("").trim().parse::<u8>() {
            Ok(percent) => match admin.resize_canary(name, percent) {
                Ok(r) => Notice::ok(
                    format!("The canary takes {}% of the keys now.", r.percent),
                    Vec::new(),
                ),
                Err(e) => refused_notice("The share was not changed.", &e, false),
            },
            Err(_) => Notice::refused(
                "The canary's share is a whole percentage, 1 to 99.",
                Vec::new(),
            ),
        },
        other => Notice::refused(format!("The console has no action `{other}`."), Vec::new()),
    };
    back_with(admin, who, name, notice)
}
