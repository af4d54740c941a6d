//! The operator console at `/console`, served beside the admin API (on `admin.listen` when set):
//! server-rendered pages ([`pages`]) over the same [`Admin`] methods the JSON API and the CLI
//! use, a small script that refreshes the live parts of a page, and the vendored charting
//! library ([`assets`]), all built into the binary.
//!
//! The dead letters ([`dead_letters`]) and plugins ([`plugins`]) pages have their own modules.
//!
//! Logging in with the admin token starts a session ([`session`]); every form that changes
//! something carries the session's CSRF token, and a request whose `Origin` is another site is
//! refused. Each action leaves a notice on the next page saying what it did, or what was
//! refused and why.

mod assets;
mod dead_letters;
mod pages;
mod plugins;
pub mod session;

pub use session::Sessions;

use crate::admin::api::{Configuration, EventSearch, MinuteCounts};
use crate::admin::{Admin, MAX_JSON_BODY};
use crate::http::ApiError;
use crate::http::auth::{Peer, Verdict};
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
        .route("/console/dead-letters", get(dead_letters::list))
        .route("/console/dead-letters/replay", post(dead_letters::replay))
        .route("/console/plugins", get(plugins::list))
        .route("/console/plugins/{name}", get(plugins::show))
        .route(
            "/console/plugins/{name}/{action}",
            post(plugins::post).layer(DefaultBodyLimit::max(max_upload)),
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
    let peer = request.extensions().get::<Peer>().copied();
    let fields = match form_fields(request).await {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let next = field(&fields, "next").unwrap_or("").to_owned();
    let token = field(&fields, "token").unwrap_or("");
    let verdict = if admin.is_token(token) {
        Verdict::Passed
    } else {
        Verdict::Wrong(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "That is not the admin token.",
        ))
    };
    let checked = admin.auth().check(peer, "console", verdict).await;
    if let Err(refused) = checked {
        // Logged at most once a second, with how many were left out.
        static WRONG: std::sync::LazyLock<crate::throttle::Throttle> =
            std::sync::LazyLock::new(crate::throttle::Throttle::default);
        if let Some(left_out) = WRONG.check("login", std::time::Instant::now()) {
            tracing::warn!(left_out, "console: a login with a wrong token");
        }
        let status = refused.status();
        let error = match status {
            StatusCode::TOO_MANY_REQUESTS => {
                "Too many wrong tokens came from this address: try again in a few seconds."
            }
            _ => "That is not the admin token.",
        };
        return render(
            "login.html",
            context! {
                next,
                error,
                off => !admin.enabled(),
                assets => assets::VERSION.as_str(),
            },
            status,
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
