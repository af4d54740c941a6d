//! Credentials: bearer tokens (`Authorization: Bearer <token>`, the scheme in any case),
//! compared without leaking the token's content or length, and the throttle every check of a
//! presented credential goes through ([`AuthThrottle`]), so that guessing is slow.

use super::error::ApiError;
use crate::metrics::Metrics;
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a request presented, against the credential it needs.
#[derive(Debug)]
pub enum Verdict {
    /// The right credential.
    Passed,
    /// None at all: refused with this error, not counted as a guess.
    Absent(ApiError),
    /// A wrong one: refused with this error, and counted.
    Wrong(ApiError),
}

impl Verdict {
    /// The verdict as a result: `Ok` when it passed.
    pub fn into_result(self) -> Result<(), ApiError> {
        match self {
            Verdict::Passed => Ok(()),
            Verdict::Absent(e) | Verdict::Wrong(e) => Err(e),
        }
    }
}

/// What `Authorization: Bearer <token>` says against `token`.
pub fn bearer(headers: &HeaderMap, token: &str) -> Verdict {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start());
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {
            Verdict::Passed
        }
        Some(_) => Verdict::Wrong(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )),
        None => Verdict::Absent(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`",
        )),
    }
}

/// The address a request came from, as the listener saw it (put on every request by
/// [`super::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// Wrong credentials an address may present in [`WINDOW`] before its checks are spaced out.
pub const FREE_FAILURES: u32 = 5;
/// Wrong credentials all addresses together may present in [`WINDOW`] before every address
/// that has presented one is spaced out too.
pub const GLOBAL_FREE_FAILURES: u32 = 60;
/// How long failures count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The spacing between two checks from a throttled address.
pub const STEP: Duration = Duration::from_secs(1);
/// The spacing between two checks from throttled addresses together, once all of them failed
/// more than [`GLOBAL_FREE_FAILURES`] times.
pub const GLOBAL_STEP: Duration = Duration::from_millis(100);
/// The longest a check waits its turn; one that would wait longer is answered 429 at once.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// The most addresses remembered; beyond, the ones whose window has passed are forgotten.
const MAX_CLIENTS: usize = 65_536;

/// Who presented a credential: an IPv4 address, or the /64 network of an IPv6 one (what one
/// host is usually given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(std::net::Ipv4Addr),
    V6(u64),
}

impl Client {
    fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Failures in the current window, and when the next check may run.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    since: Instant,
    next_at: Instant,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record {
            failures: 0,
            since: now,
            next_at: now,
        }
    }

    /// Starts a new window when the last one has passed.
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.since) >= WINDOW {
            self.failures = 0;
            self.since = now;
        }
    }
}

#[derive(Debug)]
struct Throttled {
    clients: HashMap<Client, Record>,
    all: Record,
}

/// Slows the guessing of credentials without locking their owner out. Each address may present
/// [`FREE_FAILURES`] wrong credentials a minute; past them, every answer to it about a
/// credential (right or wrong alike, so that how soon it comes tells nothing) waits its turn,
/// one a second. A check that would wait more than [`MAX_WAIT`] is answered 429 with
/// `Retry-After` at once, so waiting holds few connections. Past [`GLOBAL_FREE_FAILURES`] wrong
/// credentials a minute from everywhere, every address that has presented one also takes its
/// turn in one queue, ten a second. A failure counts the moment it arrives, so a burst sent at
/// once is throttled like one sent in a row. An address that has presented no wrong credential
/// (the owner's, usually) never waits; a right one forgets the address's failures. A request
/// that presents no credential at all is refused at once and not counted.
pub struct AuthThrottle {
    state: Mutex<Throttled>,
    metrics: Arc<Metrics>,
}

impl AuthThrottle {
    /// A throttle counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> AuthThrottle {
        let now = Instant::now();
        AuthThrottle {
            state: Mutex::new(Throttled {
                clients: HashMap::new(),
                all: Record::new(now),
            }),
            metrics,
        }
    }

    /// Answers for a credential (`credential` names which, for the metrics) presented from
    /// `peer` and found to be `verdict`: counts it when it is wrong, and answers once the
    /// address's turn has come (at once, unless it has failed too often).
    pub async fn check(
        &self,
        peer: Option<Peer>,
        credential: &'static str,
        verdict: Verdict,
    ) -> Result<(), ApiError> {
        let client = peer.map(|Peer(ip)| Client::of(ip));
        if let Verdict::Absent(e) = verdict {
            return Err(e);
        }
        let wrong = matches!(verdict, Verdict::Wrong(_));
        if wrong {
            self.metrics.count_auth_failure(credential);
        }
        match self.turn(client, Instant::now(), wrong) {
            Err(retry_after) => {
                self.metrics.count_auth_throttled(credential);
                return Err(too_many(retry_after));
            }
            Ok(wait) if !wait.is_zero() => {
                self.metrics.count_auth_throttled(credential);
                tokio::time::sleep(wait).await;
            }
            Ok(_) => {}
        }
        if let (Verdict::Passed, Some(client)) = (&verdict, client) {
            self.lock().clients.remove(&client);
        }
        verdict.into_result()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Throttled> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the answer to a check from `client` at `now` waits for its turn (taking it),
    /// or, when that would be past [`MAX_WAIT`], how long to come back after; a `wrong`
    /// credential is counted too, after the turn is decided.
    fn turn(
        &self,
        client: Option<Client>,
        now: Instant,
        wrong: bool,
    ) -> Result<Duration, Duration> {
        let mut state = self.lock();
        let turn = state.take_turn(client, now);
        if wrong {
            state.failed(client, now);
        }
        turn
    }
}

impl Throttled {
    /// How long a check from `client` at `now` waits (taking its turn), or how long to come
    /// back after.
    fn take_turn(&mut self, client: Option<Client>, now: Instant) -> Result<Duration, Duration> {
        self.all.roll(now);
        let global = self.all.failures >= GLOBAL_FREE_FAILURES;
        let global_next = self.all.next_at;
        let Some(record) = client.and_then(|c| self.clients.get_mut(&c)) else {
            return Ok(Duration::ZERO);
        };
        record.roll(now);
        let own = record.failures >= FREE_FAILURES;
        let shared = global && record.failures > 0;
        let mut at = now;
        if own {
            at = at.max(record.next_at);
        }
        if shared {
            at = at.max(global_next);
        }
        let wait = at.duration_since(now);
        if wait > MAX_WAIT {
            return Err(wait);
        }
        if own {
            record.next_at = at + STEP;
        }
        if shared {
            self.all.next_at = at + GLOBAL_STEP;
        }
        Ok(wait)
    }

    /// Counts a wrong credential from `client` at `now`.
    fn failed(&mut self, client: Option<Client>, now: Instant) {
        self.all.roll(now);
        self.all.failures = self.all.failures.saturating_add(1);
        let Some(client) = client else { return };
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&client) {
            self.clients
                .retain(|_, r| now.duration_since(r.since) < WINDOW || r.next_at > now);
        }
        if self.clients.len() < MAX_CLIENTS || self.clients.contains_key(&client) {
            let record = self
                .clients
                .entry(client)
                .or_insert_with(|| Record::new(now));
            record.roll(now);
            record.failures = record.failures.saturating_add(1);
        }
    }
}

/// The answer to a check that would wait too long.
fn too_many(retry_after: Duration) -> ApiError {
    let seconds = retry_after.as_secs().max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-failures",
        format!(
            "too many wrong credentials from this address: its checks are spaced out; try again \
             in {seconds} s"
        ),
    )
    .with_retry_after(seconds)
}

/// Compares two secrets in time that depends neither on where they differ nor on the expected
/// one's length: their SHA-256 digests (of equal length) are compared byte by byte, all of them.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn check_bearer(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
        bearer(headers, token).into_result()
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        assert!(check_bearer(&with("Bearer s3cret-token"), "s3cret-token").is_ok());
        let wrong = check_bearer(&with("Bearer other"), "s3cret-token").unwrap_err();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(check_bearer(&with("Basic abc"), "s3cret-token").is_err());
        // The scheme is case-insensitive (RFC 9110), the token is not.
        assert!(check_bearer(&with("bearer s3cret-token"), "s3cret-token").is_ok());
        assert!(check_bearer(&with("BEARER s3cret-token"), "s3cret-token").is_ok());
        assert!(check_bearer(&with("Bearer S3CRET-TOKEN"), "s3cret-token").is_err());
        assert!(check_bearer(&with("Bearer"), "s3cret-token").is_err());
        assert!(check_bearer(&HeaderMap::new(), "s3cret-token").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    fn client(ip: &str) -> Option<Client> {
        Some(Client::of(ip.parse().unwrap()))
    }

    fn throttle() -> AuthThrottle {
        AuthThrottle::new(Arc::new(Metrics::default()))
    }

    #[test]
    fn an_address_that_keeps_failing_waits_its_turn_and_others_do_not() {
        let throttle = throttle();
        let (a, b) = (client("10.0.0.1"), client("10.0.0.2"));
        let t0 = Instant::now();
        // Its free failures, at once, however close together.
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.turn(a, t0, true), Ok(Duration::ZERO));
        }
        // Then one answer a second, right or wrong, until the queue is MAX_WAIT long.
        let mut waits = Vec::new();
        while let Ok(wait) = throttle.turn(a, t0, true) {
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, (0..=MAX_WAIT.as_secs()).collect::<Vec<_>>());
        assert_eq!(throttle.turn(a, t0, false), Err(MAX_WAIT + STEP));
        // Another address is not held up.
        assert_eq!(throttle.turn(b, t0, false), Ok(Duration::ZERO));
        // A minute later (and its queue gone), the address starts afresh.
        let later = t0 + WINDOW + MAX_WAIT + STEP * 2;
        assert_eq!(throttle.turn(a, later, true), Ok(Duration::ZERO));
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_its_address() {
        assert_eq!(client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff::9"));
        assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
        assert_eq!(client("::ffff:10.0.0.1"), client("10.0.0.1"));
    }

    #[test]
    fn past_the_global_budget_every_address_that_failed_shares_one_queue() {
        let throttle = throttle();
        let t0 = Instant::now();
        // One failure each from many addresses: none reaches its own budget.
        let many: Vec<_> = (0..GLOBAL_FREE_FAILURES)
            .map(|i| client(&format!("10.1.{}.{}", i / 200, i % 200)))
            .collect();
        for address in &many {
            assert_eq!(throttle.turn(*address, t0, true), Ok(Duration::ZERO));
        }
        // Now each of them waits in one queue; an address that never failed does not.
        assert_eq!(throttle.turn(many[0], t0, true), Ok(Duration::ZERO));
        assert_eq!(throttle.turn(many[1], t0, true), Ok(GLOBAL_STEP));
        assert_eq!(throttle.turn(many[2], t0, false), Ok(GLOBAL_STEP * 2));
        assert_eq!(
            throttle.turn(client("10.9.9.9"), t0, false),
            Ok(Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_right_credential_gets_in_after_the_wait_and_forgets_the_failures() {
        let throttle = throttle();
        let peer = Some(Peer("10.0.0.1".parse().unwrap()));
        let wrong = || {
            Verdict::Wrong(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong",
            ))
        };
        for _ in 0..FREE_FAILURES + 1 {
            let refused = throttle.check(peer, "admin", wrong()).await.unwrap_err();
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        }
        let started = tokio::time::Instant::now();
        throttle
            .check(peer, "admin", Verdict::Passed)
            .await
            .unwrap();
        assert_eq!(started.elapsed(), STEP, "its turn came after a second");
        // Forgotten: the next failure is answered at once.
        let started = tokio::time::Instant::now();
        assert!(throttle.check(peer, "admin", wrong()).await.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Presenting nothing is refused at once, and not counted.
        let absent = || {
            Verdict::Absent(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "none",
            ))
        };
        for _ in 0..100 {
            assert!(throttle.check(peer, "admin", absent()).await.is_err());
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        let metrics = throttle
            .metrics
            .render(&crate::store::Backlog::default(), 0);
        assert!(
            metrics.contains(r#"sync_auth_failures_total{credential="admin"} 7"#),
            "{metrics}"
        );
    }
}
