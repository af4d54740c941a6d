//! The operator console at `/console`, served beside the admin API (on `admin.listen` when set):
//! server-rendered pages ([`pages`]) over the same [`Admin`] methods the JSON API and the CLI
//! use, a small script that refreshes the live parts of a page, and the vendored charting
//! library ([`assets`]), all built into the binary.
//!
//! Logging in with the admin token starts a session ([`session`]); every form that changes
//! something carries the session's CSRF token, and a request whose `Origin` is another site is
//! refused. Each action leaves a notice on the next page saying what it did, or what was
//! refused and why.

mod assets;
mod pages;
pub mod session;

pub use session::Sessions;

use crate::admin::api::{Configuration, EventSearch, MinuteCounts, Selection};
use crate::admin::{Admin, MAX_JSON_BODY};
use crate::http::ApiError;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;
use minijinja::value::Value;
use session::{Notice, Session};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The console's routes, for the listener that serves the admin API; uploads may be up to
/// `max_upload` bytes.
pub fn router(admin: Arc<Admin>, max_upload: usize) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/overview", get(overview))
        .route("/console/events", get(events))
        .route("/console/events/{id}", get(event))
        .route("/console/dead-letters", get(dead_letters))
        .route("/console/dead-letters/replay", post(replay))
        .route("/console/plugins", get(plugins))
        .route("/console/plugins/{name}", get(plugin))
        .route(
            "/console/plugins/{name}/{action}",
            post(plugin_post).layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/console/config", get(configuration))
        .route("/console/assets/{*file}", get(assets::asset))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::map_response(protect))
        .with_state(admin)
}

/// What every console answer carries: pages are not cached, framed, sniffed, or given scripts
/// and styles from anywhere but the engine.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A logged-in request: its session, and the notice left for the page it shows.
struct LoggedIn {
    session: Session,
    notice: Option<Notice>,
}

impl FromRequestParts<Arc<Admin>> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        admin: &Arc<Admin>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(session) = admin.sessions().from_cookie(&parts.headers) {
            let notice = admin.sessions().take_notice(&session.id);
            return Ok(LoggedIn { session, notice });
        }
        // Back to the page asked for after logging in; a form posted with an ended session
        // goes back to the overview (its action is not redone).
        let next = parts
            .uri
            .path_and_query()
            .filter(|_| parts.method == axum::http::Method::GET)
            .map_or("/console/overview", |p| p.as_str());
        let to = format!("/console/login?next={}", encode(next));
        Err(Redirect::to(&to).into_response())
    }
}

/// A value for a template, as its JSON form (camelCase, as the admin API answers).
fn json<T: serde::Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// `text` for a query string.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A page for a logged-in operator: `template` with `context`, the base layout's needs added.
fn page(template: &str, who: &LoggedIn, active: &str, context: Value) -> Response {
    let context = context! {
        session => context! { csrf => who.session.csrf.clone() },
        notice => json(&who.notice),
        page => active,
        assets => assets::VERSION.as_str(),
        ..context
    };
    render(template, context, StatusCode::OK)
}

fn render(template: &str, context: Value, status: StatusCode) -> Response {
    match pages::render(template, context) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), template, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the console could not render this page; the engine's log says why",
            )
                .into_response()
        }
    }
}

/// A page that could not be shown: the admin API's error, as a page.
fn error_page(who: &LoggedIn, active: &str, error: &ApiError, back: &str) -> Response {
    let detail = error.detail();
    let title = match error.status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::SERVICE_UNAVAILABLE => "The store is unavailable",
        _ => "Refused",
    };
    let mut response = page(
        "error.html",
        who,
        active,
        context! { title, message => detail.message.clone(), failures => detail.failures.clone(), back },
    );
    *response.status_mut() = error.status();
    response
}

/// Checks a form that changes something: it carries the session's CSRF token, and it comes
/// from this site (an `Origin` header, when the browser sends one, names the host it was sent
/// to). `Err` is the 403 to answer.
fn check_form(session: &Session, csrf: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let same_site = match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest == host),
        (Some(_), None) => false,
    };
    if same_site && session.csrf_matches(csrf) {
        Ok(())
    } else {
        Err(Refusal(
            StatusCode::FORBIDDEN,
            "refused: the form did not come from this console (its CSRF token or origin is \
             wrong); reload the page and try again",
        ))
    }
}

/// A form refused before it was acted on, and why.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The fields of a form (`application/x-www-form-urlencoded`), in order; names may repeat.
async fn form_fields(request: Request) -> Result<Vec<(String, String)>, Refusal> {
    let body = axum::body::to_bytes(request.into_body(), MAX_JSON_BODY)
        .await
        .map_err(|_| Refusal(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}

/// The fields of a form that changes something, once [`check_form`] has let it through.
async fn checked_form(who: &LoggedIn, request: Request) -> Result<Vec<(String, String)>, Refusal> {
    let headers = request.headers().clone();
    let fields = form_fields(request).await?;
    check_form(&who.session, field(&fields, "csrf").unwrap_or(""), &headers)?;
    Ok(fields)
}

/// The first value of the field `name`.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A non-empty field's value.
fn given(fields: &[(String, String)], name: &str) -> Option<String> {
    field(fields, name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Where to go after an action: `to` when it is a console page, else `fallback`.
fn back_to(to: Option<&str>, fallback: &str) -> Redirect {
    match to {
        Some(to) if to.starts_with("/console/") && !to.starts_with("/console//") => {
            Redirect::to(to)
        }
        _ => Redirect::to(fallback),
    }
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
    bye: Option<String>,
}

async fn login_page(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    render(
        "login.html",
        context! {
            next => query.next.unwrap_or_default(),
            bye => query.bye.is_some(),
            off => !admin.enabled(),
            assets => assets::VERSION.as_str(),
        },
        StatusCode::OK,
    )
}

async fn login(State(admin): State<Arc<Admin>>, request: Request) -> Response {
    let secure = session::over_tls(request.headers());
    let fields = match form_fields(request).await {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let next = field(&fields, "next").unwrap_or("").to_owned();
    if !admin.is_token(field(&fields, "token").unwrap_or("")) {
        // Logged at most once a second, with how many were left out.
        static WRONG: std::sync::LazyLock<crate::throttle::Throttle> =
            std::sync::LazyLock::new(crate::throttle::Throttle::default);
        if let Some(left_out) = WRONG.check("login", std::time::Instant::now()) {
            tracing::warn!(left_out, "console: a login with a wrong token");
        }
        return render(
            "login.html",
            context! {
                next,
                error => "That is not the admin token.",
                off => !admin.enabled(),
                assets => assets::VERSION.as_str(),
            },
            StatusCode::UNAUTHORIZED,
        );
    }
    let session = admin.sessions().start();
    tracing::info!(by = admin.identity(), "console: logged in");
    (
        [(header::SET_COOKIE, session::set_cookie(&session, secure))],
        back_to(Some(&next), "/console/overview"),
    )
        .into_response()
}

async fn logout(State(admin): State<Arc<Admin>>, who: LoggedIn, request: Request) -> Response {
    let secure = session::over_tls(request.headers());
    if let Err(refused) = checked_form(&who, request).await {
        return refused.into_response();
    }
    admin.sessions().end(&who.session.id);
    (
        [(header::SET_COOKIE, session::clear_cookie(secure))],
        Redirect::to("/console/login?bye=1"),
    )
        .into_response()
}

async fn overview(State(admin): State<Arc<Admin>>, who: LoggedIn) -> Response {
    match admin.overview().await {
        Ok(o) => {
            let total = |f: fn(&MinuteCounts) -> u64| o.minutes.iter().map(f).sum::<u64>();
            let totals = BTreeMap::from([
                ("accepted", total(|m| m.accepted)),
                ("delivered", total(|m| m.delivered)),
                ("failed", total(|m| m.failed)),
                ("superseded", total(|m| m.superseded)),
            ]);
            page(
                "overview.html",
                &who,
                "overview",
                context! { o => json(&o), totals => json(&totals) },
            )
        }
        Err(e) => error_page(&who, "overview", &e, "/console/overview"),
    }
}

/// A time as an operator types it: `2026-11-30T14:00` (what a browser's date-time field
/// sends) gains its seconds and means UTC; anything else goes to the admin API as it is.
fn typed_time(raw: Option<String>) -> Option<String> {
    raw.map(|t| {
        let t = t.trim().to_owned();
        if t.len() == 16 && t.as_bytes().get(10) == Some(&b'T') {
            format!("{t}:00Z")
        } else {
            t
        }
    })
}

async fn events(
    State(admin): State<Arc<Admin>>,
    who: LoggedIn,
    query: Result<Query<EventSearch>, QueryRejection>,
) -> Response {
    let search = match query {
        Ok(Query(search)) => search,
        Err(e) => return error_page(&who, "events", &ApiError::bad_request(e), "/console/events"),
    };
    let asked = EventSearch {
        since: typed_time(search.since.clone()),
        until: typed_time(search.until.clone()),
        ..search.clone()
    };
    let searched = [
        &search.id,
        &search.key,
        &search.event_type,
        &search.origin,
        &search.since,
        &search.until,
    ]
    .iter()
    .any(|f| f.as_deref().is_some_and(|f| !f.trim().is_empty()));
    let (list, error) = match admin.find_events(&asked).await {
        Ok(list) => (Some(list), None),
        Err(e) => (None, Some(e.detail().message.clone())),
    };
    let more = list.as_ref().and_then(|l| l.next).map(|next| {
        let page = EventSearch {
            before: Some(next),
            ..search.clone()
        };
        with_query("/console/events", &page)
    });
    page(
        "events.html",
        &who,
        "events",
        context! { search => json(&search), list => json(&list), error, searched, more },
    )
}

/// `path` with `value`'s fields (as the admin API names them) as its query string.
fn with_query<T: serde::Serialize>(path: &str, value: &T) -> String {
    let json = serde_json::to_value(value).unwrap_or_default();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in json.as_object().into_iter().flatten() {
        match value {
            serde_json::Value::String(s) => query.append_pair(name, s),
            serde_json::Value::Null | serde_json::Value::Array(_) => continue,
            other => query.append_pair(name, &other.to_string()),
        };
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

async fn event(State(admin): State<Arc<Admin>>, who: LoggedIn, Path(id): Path<String>) -> Response {
    match admin.event(&id).await {
        Ok(answer) => {
            let h = answer.event;
            let state = h.state();
            page(
                "event.html",
                &who,
                "events",
                context! { h => json(&h), state },
            )
        }
        Err(e) => error_page(&who, "events", &e, "/console/events"),
    }
}

/// Where a replayed dead letter's work stands now.
#[derive(serde::Serialize)]
struct Now {
    state: String,
    text: String,
    /// Whether it may still change (the page refreshes while one may).
    awaiting: bool,
}

async fn dead_letters(
    State(admin): State<Arc<Admin>>,
    who: LoggedIn,
    request_query: Result<Query<Selection>, QueryRejection>,
) -> Response {
    let selection = match request_query {
        Ok(Query(selection)) => selection,
        Err(e) => {
            return error_page(
                &who,
                "dead-letters",
                &ApiError::bad_request(e),
                "/console/dead-letters",
            );
        }
    };
    let selection = Selection {
        destination: selection.destination.filter(|d| !d.is_empty()),
        since: typed_time(selection.since.filter(|s| !s.is_empty())),
        until: typed_time(selection.until.filter(|s| !s.is_empty())),
        ..selection
    };
    let filtered =
        selection.destination.is_some() || selection.since.is_some() || selection.until.is_some();
    let (dead, next, error) = match admin.dead_letters(&selection).await {
        Ok(list) => (list.dead_letters, list.next, None),
        Err(e) => (Vec::new(), None, Some(e.detail().message.clone())),
    };
    // Where each replayed one's work stands now: its delivery's state, or its event's.
    let mut now = BTreeMap::new();
    for d in dead.iter().filter(|d| d.replayed) {
        let Ok(history) = admin.event(&d.event_id).await else {
            continue;
        };
        let h = history.event;
        let (state, text) = match d
            .action_id
            .and_then(|id| h.actions.iter().find(|a| a.id == id))
        {
            Some(action) => {
                let attempts = action.attempts.len();
                let text = match action.state.as_str() {
                    "delivered" => format!(
                        "delivered {} (attempt {attempts})",
                        pages::when(action.finished_at)
                    ),
                    "pending" => format!("pending, attempt {} next", attempts + 1),
                    other => format!("{other} again"),
                };
                (action.state.clone(), text)
            }
            None => {
                let state = h.state();
                (state.to_owned(), format!("event {state}"))
            }
        };
        let awaiting = matches!(state.as_str(), "pending" | "processing" | "delivering");
        now.insert(
            d.id,
            Now {
                state,
                text,
                awaiting,
            },
        );
    }
    let mut targets: Vec<String> = admin
        .configuration()
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .chain(
            admin
                .configuration()
                .core
                .iter()
                .map(|_| "hms-core".to_owned()),
        )
        .chain(admin.plugins().plugins.into_iter().map(|p| p.name))
        .collect();
    targets.sort();
    targets.dedup();
    let here = with_query("/console/dead-letters", &selection);
    let more = next.map(|after| {
        let page = Selection {
            after: Some(after),
            ..selection.clone()
        };
        with_query("/console/dead-letters", &page)
    });
    page(
        "dead_letters.html",
        &who,
        "dead-letters",
        context! {
            dead => json(&dead), now => json(&now), selection => json(&selection), targets,
            filtered, error, next, more, here
        },
    )
}

async fn replay(State(admin): State<Arc<Admin>>, who: LoggedIn, request: Request) -> Response {
    let fields = match checked_form(&who, request).await {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let back = field(&fields, "return").map(str::to_owned);
    let notice = match replay_selection(&fields) {
        Err(why) => Notice::refused(why, Vec::new()),
        Ok(selection) => match admin.replay(&selection).await {
            Ok(replayed) => {
                let ids = |ids: &[i64]| {
                    ids.iter()
                        .map(|id| format!("#{id}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut lines: Vec<String> = replayed
                    .skipped
                    .iter()
                    .map(|s| format!("#{} skipped: {}", s.id, s.reason))
                    .collect();
                if replayed.replayed.is_empty() {
                    Notice::refused("Nothing was replayed.", lines)
                } else {
                    lines.insert(
                        0,
                        "They are queued again; the Now column shows them land.".to_owned(),
                    );
                    Notice::ok(
                        format!(
                            "Replayed {} dead letter{}: {}.",
                            replayed.replayed.len(),
                            if replayed.replayed.len() == 1 {
                                ""
                            } else {
                                "s"
                            },
                            ids(&replayed.replayed)
                        ),
                        lines,
                    )
                }
            }
            Err(e) => Notice::refused(e.detail().message.clone(), e.detail().failures.clone()),
        },
    };
    admin.sessions().notify(&who.session.id, notice);
    // Show the replayed ones too, so they can be seen to land.
    let to = back.map(|b| {
        if b.contains("all=") {
            b
        } else if b.contains('?') {
            format!("{b}&all=true")
        } else {
            format!("{b}?all=true")
        }
    });
    back_to(to.as_deref(), "/console/dead-letters?all=true").into_response()
}

/// What a replay form asks for: the ticked dead letters, or every one the filter matches.
fn replay_selection(fields: &[(String, String)]) -> Result<Selection, String> {
    match field(fields, "scope") {
        Some("matching") => {
            let selection = Selection {
                destination: given(fields, "destination"),
                since: typed_time(given(fields, "since")),
                until: typed_time(given(fields, "until")),
                ..Selection::default()
            };
            let all = selection.destination.is_none()
                && selection.since.is_none()
                && selection.until.is_none();
            Ok(Selection { all, ..selection })
        }
        _ => {
            let ids = fields
                .iter()
                .filter(|(name, _)| name == "ids")
                .map(|(_, id)| {
                    id.parse::<i64>()
                        .map_err(|_| format!("`{id}` is not a dead letter's id"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Err("Tick the dead letters to replay first.".to_owned());
            }
            Ok(Selection {
                ids,
                ..Selection::default()
            })
        }
    }
}

async fn plugins(State(admin): State<Arc<Admin>>, who: LoggedIn) -> Response {
    let plugins = admin.plugins().plugins;
    page(
        "plugins.html",
        &who,
        "plugins",
        context! { plugins => json(&plugins) },
    )
}

async fn plugin(
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
async fn plugin_post(
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

async fn configuration(State(admin): State<Arc<Admin>>, who: LoggedIn) -> Response {
    let c: &Configuration = admin.configuration();
    let active: BTreeMap<String, String> = admin
        .plugins()
        .plugins
        .into_iter()
        .filter_map(|p| Some((p.name, p.active?)))
        .collect();
    let urls: BTreeMap<&str, String> = c
        .destinations
        .iter()
        .map(|d| (d.name.as_str(), format!("{} {}", d.method, d.url)))
        .collect();
    page(
        "config.html",
        &who,
        "config",
        context! { c => json(c), active, urls },
    )
}
