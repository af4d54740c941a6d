//! Log lines that fit the rate: a failure that repeats thousands of times a second is logged
//! once per interval and key, with how many like it were left out since.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a repeated failure is logged, per key.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Decides which of a stream of repeated log lines to write.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Per key: when a line was last written, and how many were left out since.
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Throttle {
    /// Whether to write a line for `key` at `now`: `Some(n)`, with `n` lines left out since the
    /// last one written, at most once per [`INTERVAL`]; `None` to leave this one out.
    pub fn check(&self, key: &str, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.get_mut(key) {
            Some((at, left_out)) if now.duration_since(*at) < INTERVAL => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                *at = now;
                Some(std::mem::take(left_out))
            }
            None => {
                last.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_key_with_the_count_left_out() {
        let throttle = Throttle::default();
        let start = Instant::now();
        assert_eq!(throttle.check("a", start), Some(0));
        assert_eq!(throttle.check("a", start + Duration::from_millis(10)), None);
        assert_eq!(throttle.check("a", start + Duration::from_millis(20)), None);
        assert_eq!(throttle.check("b", start), Some(0), "keys are apart");
        assert_eq!(throttle.check("a", start + INTERVAL), Some(2));
        assert_eq!(throttle.check("a", start + INTERVAL), None);
    }
}
