//! Retries, in two separate pieces: *classification* says whether an attempt's result is worth
//! another try; the *schedule* says when, and when to stop.

use crate::config::RetryConfig;
use crate::store::Next;
use http::StatusCode;
use std::time::Duration;

/// What an attempt's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver accepted the request.
    Delivered,
    /// The attempt failed in a way that may pass: try again later.
    Retry,
    /// The receiver refused the request for good: do not try again.
    Permanent,
}

/// Classifies a response status.
///
/// - 2xx is delivered.
/// - 408 (request timeout), 409 (conflict), 425 (too early) and 429 (too many requests) are
///   worth another try, as is every 5xx except 501 (not implemented) and 505 (HTTP version not
///   supported), which will not change.
/// - Any other 4xx is permanent: the request itself is wrong.
/// - 3xx is a failed attempt (redirects are never followed: a destination's URL is configured,
///   not discovered), retried like a server error.
pub fn classify_status(status: StatusCode) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        408 | 409 | 425 | 429 => Verdict::Retry,
        501 | 505 => Verdict::Permanent,
        400..=499 => Verdict::Permanent,
        _ => Verdict::Retry,
    }
}

/// Classifies a request that got no response. A request that could not even be built is
/// permanent; a connection refused, reset or timed out is worth another try.
pub fn classify_error(err: &reqwest::Error) -> Verdict {
    if err.is_builder() {
        Verdict::Permanent
    } else {
        Verdict::Retry
    }
}

/// When to try again: exponential backoff with jitter, up to a number of attempts and an age,
/// never sooner than the receiver's `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    initial_delay: Duration,
    factor: f64,
    max_delay: Duration,
    max_attempts: u32,
    max_age: Duration,
    max_retry_after: Duration,
}

/// How far a delay may stray from the exponential curve, either way (a fraction of it).
const JITTER: f64 = 0.2;

impl Schedule {
    /// The schedule of a retry policy.
    pub fn new(config: &RetryConfig) -> Self {
        Schedule {
            initial_delay: config.initial_delay,
            factor: config.factor.max(1.0),
            max_delay: config.max_delay,
            max_attempts: config.max_attempts.get(),
            max_age: config.max_age,
            max_retry_after: config.max_retry_after,
        }
    }

    /// How many attempts in all before giving up.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before the next attempt, after `attempts` failed ones; `None` when no attempt
    /// is left. The n-th retry waits `initial_delay * factor^(n-1)`, within ±20% at random (so
    /// receivers that fail together are not retried together), and never more than `max_delay`.
    pub fn delay_after(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = i32::try_from(attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.factor.powi(exponent);
        let jittered = base * (1.0 - JITTER + 2.0 * JITTER * fastrand::f64());
        let capped = jittered.min(self.max_delay.as_secs_f64());
        Some(Duration::from_secs_f64(capped.max(0.0)))
    }

    /// The delay before the next attempt of a round that started `age` ago and made `attempts`
    /// failed attempts, when the receiver asked to wait `retry_after` (cut to
    /// `max_retry_after`). `None` when the round is over: no attempt left, or the next one would
    /// come later than `max_age` after the round started.
    pub fn next(
        &self,
        attempts: u32,
        age: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let backoff = self.delay_after(attempts)?;
        let delay = match retry_after {
            Some(asked) => backoff.max(asked.min(self.max_retry_after)),
            None => backoff,
        };
        (age + delay <= self.max_age).then_some(delay)
    }
}

impl Schedule {
    /// What follows a failed attempt of a round that started at `round_started_at` and had
    /// made `round_attempts` attempts before this one, as of `now` (all Unix ms): the time of
    /// the next attempt, or [`Next::Dead`] when the round is over.
    pub fn after_failure(
        &self,
        round_attempts: u32,
        round_started_at: i64,
        retry_after: Option<Duration>,
        now: i64,
    ) -> Next {
        let age = Duration::from_millis(u64::try_from(now - round_started_at).unwrap_or(0));
        match self.next(round_attempts + 1, age, retry_after) {
            Some(delay) => Next::RetryAt(
                now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            ),
            None => Next::Dead,
        }
    }
}

/// Reads a `Retry-After` value: a number of seconds, or an HTTP date (as of `now`). A date in
/// the past means now; anything else unreadable is ignored.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn statuses() {
        for (code, verdict) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (301, Verdict::Retry),
            (307, Verdict::Retry),
            (400, Verdict::Permanent),
            (401, Verdict::Permanent),
            (404, Verdict::Permanent),
            (408, Verdict::Retry),
            (409, Verdict::Retry),
            (410, Verdict::Permanent),
            (422, Verdict::Permanent),
            (425, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (501, Verdict::Permanent),
            (502, Verdict::Retry),
            (503, Verdict::Retry),
            (504, Verdict::Retry),
            (505, Verdict::Permanent),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify_status(status), verdict, "{code}");
        }
    }

    fn schedule(max_attempts: u32) -> Schedule {
        Schedule::new(&RetryConfig {
            initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(60),
            max_attempts: NonZeroU32::new(max_attempts).unwrap(),
            max_age: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(600),
        })
    }

    #[test]
    fn delays_grow_within_their_jitter_and_stop_at_the_cap() {
        let s = schedule(20);
        for _ in 0..200 {
            let mut previous = Duration::ZERO;
            for attempts in 1..=5 {
                let delay = s.delay_after(attempts).unwrap();
                let base = f64::from(1u32 << (attempts - 1));
                assert!(
                    delay.as_secs_f64() >= base * 0.8 - 1e-9,
                    "{attempts}: {delay:?}"
                );
                assert!(
                    delay.as_secs_f64() <= base * 1.2 + 1e-9,
                    "{attempts}: {delay:?}"
                );
                assert!(
                    delay > previous,
                    "delays increase: {previous:?} then {delay:?}"
                );
                previous = delay;
            }
            assert_eq!(s.delay_after(15).unwrap(), Duration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_is_honoured_within_its_bound_and_never_shortens_the_backoff() {
        let s = schedule(20);
        let young = Duration::from_secs(1);
        let asked = s.next(1, young, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(asked, Duration::from_secs(30));
        let cut = s.next(1, young, Some(Duration::from_secs(7200))).unwrap();
        assert_eq!(cut, Duration::from_secs(600));
        let backoff_wins = s.next(1, young, Some(Duration::ZERO)).unwrap();
        assert!(
            backoff_wins >= Duration::from_millis(800),
            "{backoff_wins:?}"
        );
    }

    #[test]
    fn the_round_ends_at_its_max_age() {
        let s = schedule(20);
        assert!(s.next(1, Duration::from_millis(3_599_500), None).is_none());
        assert!(s.next(1, Duration::from_secs(10), None).is_some());
        // A Retry-After that reaches past the end of the round ends it.
        assert!(
            s.next(1, Duration::from_secs(3500), Some(Duration::from_secs(200)))
                .is_none()
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn the_next_attempt_is_timed_from_the_failure_and_the_round_ends() {
        let s = schedule(3);
        let now = 1_000_000;
        // The first retry waits about a second (±20%), counted from `now`.
        let Next::RetryAt(at) = s.after_failure(0, now - 10, None, now) else {
            panic!("a retry")
        };
        assert!((now + 800..=now + 1200).contains(&at), "{at}");
        // Retry-After pushes it further out.
        assert_eq!(
            s.after_failure(0, now, Some(Duration::from_secs(30)), now),
            Next::RetryAt(now + 30_000)
        );
        // The third attempt was the last; a round older than its max age is over too.
        assert_eq!(s.after_failure(2, now, None, now), Next::Dead);
        assert_eq!(s.after_failure(0, now - 3_600_000, None, now), Next::Dead);
    }

    #[test]
    fn attempts_run_out() {
        let s = schedule(3);
        assert!(s.delay_after(1).is_some());
        assert!(s.delay_after(2).is_some());
        assert_eq!(s.delay_after(3), None);
    }
}
