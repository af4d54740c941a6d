//! The console's sessions: logging in with the admin token gives a session, kept in memory and
//! named by a random id in a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when the request
//! came over TLS). Each session has its own CSRF token, which every request that changes
//! something must send back (a form field, or the `x-csrf-token` header), and a message for the
//! next page it shows (what the last action did).
//!
//! Sessions end when they are logged out, after [`LIFETIME`], or when the engine restarts.

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "sync_console";

/// How long a session lasts after logging in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept at once; logging in past it ends the oldest.
pub const MAX_SESSIONS: usize = 256;

/// A message for the next page: what an action did or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// `ok` or `refused`.
    pub kind: &'static str,
    /// One sentence.
    pub title: String,
    /// Details, one per line (each fixture case, each skipped dead letter).
    pub lines: Vec<String>,
}

impl Notice {
    /// An action that did what was asked.
    pub fn ok(title: impl Into<String>, lines: Vec<String>) -> Notice {
        Notice {
            kind: "ok",
            title: title.into(),
            lines,
        }
    }

    /// An action refused, with why.
    pub fn refused(title: impl Into<String>, lines: Vec<String>) -> Notice {
        Notice {
            kind: "refused",
            title: title.into(),
            lines,
        }
    }
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie's value.
    pub id: String,
    /// The token its forms carry.
    pub csrf: String,
    started: Instant,
    notice: Option<Notice>,
}

impl Session {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        crate::http::auth::constant_time_eq(presented.as_bytes(), self.csrf.as_bytes())
    }
}

/// 244 random bits from the operating system, as 64 hex digits.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The sessions of one engine.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session.
    pub fn start(&self) -> Session {
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            started: Instant::now(),
            notice: None,
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, s| s.started.elapsed() < LIFETIME);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .values()
                .min_by_key(|s| s.started)
                .map(|s| s.id.clone())
        {
            live.remove(&oldest);
        }
        live.insert(session.id.clone(), session.clone());
        session
    }

    /// The session the request's cookie names, if it is live.
    pub fn from_cookie(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.get(id)
            .filter(|s| s.started.elapsed() < LIFETIME)
            .cloned()
    }

    /// Ends the session `id`.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Leaves `notice` for the session's next page.
    pub fn notify(&self, id: &str, notice: Notice) {
        if let Some(session) = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            session.notice = Some(notice);
        }
    }

    /// The notice left for the session's next page, taken.
    pub fn take_notice(&self, id: &str) -> Option<Notice> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
            .and_then(|s| s.notice.take())
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// Whether the request reached the engine over TLS: the engine serves plain HTTP, so a TLS
/// proxy in front of it says so in `X-Forwarded-Proto` or `Forwarded`. (A client that claims
/// it only makes its own cookie stricter.)
pub fn over_tls(headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    header("x-forwarded-proto")
        .split(',')
        .next()
        .is_some_and(|p| p.trim() == "https")
        || header("forwarded")
            .split([';', ','])
            .any(|part| part.trim() == "proto=https")
}

/// The `Set-Cookie` value that gives a browser `session`.
pub fn set_cookie(session: &Session, secure: bool) -> String {
    format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session.id,
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::default();
        let session = sessions.start();
        assert_eq!(session.id.len(), 64);
        assert_ne!(session.id, session.csrf);
        let headers = with_cookie(&format!("other=1; {COOKIE}={}; x=y", session.id));
        let found = sessions.from_cookie(&headers).unwrap();
        assert!(found.csrf_matches(&session.csrf));
        assert!(!found.csrf_matches("forged"));
        assert!(
            sessions
                .from_cookie(&with_cookie(&format!("{COOKIE}=guess")))
                .is_none()
        );
        sessions.notify(&session.id, Notice::ok("done", vec![]));
        assert_eq!(sessions.take_notice(&session.id).unwrap().title, "done");
        assert!(sessions.take_notice(&session.id).is_none(), "shown once");
        sessions.end(&session.id);
        assert!(sessions.from_cookie(&headers).is_none());
    }

    #[test]
    fn past_the_limit_the_oldest_session_ends() {
        let sessions = Sessions::default();
        let first = sessions.start();
        for _ in 1..MAX_SESSIONS {
            sessions.start();
        }
        let cookie = |s: &Session| with_cookie(&format!("{COOKIE}={}", s.id));
        assert!(sessions.from_cookie(&cookie(&first)).is_some());
        let last = sessions.start();
        assert!(sessions.from_cookie(&cookie(&first)).is_none());
        assert!(sessions.from_cookie(&cookie(&last)).is_some());
    }

    #[test]
    fn the_cookie_is_secure_only_behind_tls() {
        let mut headers = HeaderMap::new();
        assert!(!over_tls(&headers));
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(over_tls(&headers));
        let mut forwarded = HeaderMap::new();
        forwarded.insert("forwarded", "for=1.2.3.4;proto=https".parse().unwrap());
        assert!(over_tls(&forwarded));
        let session = Sessions::default().start();
        let plain = set_cookie(&session, false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie(&session, true).ends_with("; Secure"));
    }
}
