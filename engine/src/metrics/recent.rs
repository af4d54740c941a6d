//! The last hour in memory, minute by minute: events accepted, deliveries made, failures and
//! supersedes, and per destination and per plugin their outcomes and times. The admin API's
//! overview (and the console's charts) read it; Prometheus keeps the long history.
//!
//! One engine's own work since it started: after a restart the hour starts empty, and with
//! several engines each counts what it did. Times are kept per minute in histograms of two
//! significant digits (within 1%; ten minutes at most).

use crate::store::AttemptOutcome;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How many minutes are kept.
pub const MINUTES: usize = 60;

const MINUTE_MS: i64 = 60_000;

/// The last hour's counts.
#[derive(Default)]
pub struct Recent {
    minutes: Mutex<VecDeque<Minute>>,
}

/// One minute's counts.
#[derive(Default)]
struct Minute {
    /// Its start, Unix ms (a multiple of a minute).
    at: i64,
    totals: Totals,
    destinations: BTreeMap<String, Deliveries>,
    plugins: BTreeMap<String, Runs>,
}

/// The four series of the overview, for one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events accepted.
    pub accepted: u64,
    /// Deliveries that succeeded (to destinations and the core).
    pub delivered: u64,
    /// Failures that need a person: plugin runs that failed, deliveries that gave up.
    pub failed: u64,
    /// Deliveries not sent because the target holds a newer version.
    pub superseded: u64,
}

/// What became of one target's deliveries.
struct Deliveries {
    delivered: u64,
    retried: u64,
    dead: u64,
    superseded: u64,
    /// Attempt times, microseconds.
    times: Histogram<u32>,
}

/// One plugin's runs.
struct Runs {
    runs: u64,
    failed: u64,
    /// Run times, microseconds.
    times: Histogram<u32>,
}

/// The longest time kept apart: longer ones count as this (ten minutes, in microseconds).
const MAX_TIME_US: u64 = 600_000_000;

/// Times from 1 µs to ten minutes, two significant digits (about 12 KiB each).
fn times() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_TIME_US, 2).expect("valid histogram bounds")
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            delivered: 0,
            retried: 0,
            dead: 0,
            superseded: 0,
            times: times(),
        }
    }
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            runs: 0,
            failed: 0,
            times: times(),
        }
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TIME_US)
}

/// One target's last hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetHour {
    /// Attempts that delivered.
    pub delivered: u64,
    /// Attempts that failed and will be tried again.
    pub retried: u64,
    /// Attempts that gave up.
    pub dead: u64,
    /// Deliveries superseded before they were sent.
    pub superseded: u64,
    /// The median attempt time, in milliseconds, when there were attempts.
    pub p50_ms: Option<f64>,
    /// The 99th percentile attempt time, in milliseconds.
    pub p99_ms: Option<f64>,
}

/// One plugin's last hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginHour {
    /// Runs.
    pub runs: u64,
    /// Runs that failed.
    pub failed: u64,
    /// The 99th percentile run time, in milliseconds, when there were runs.
    pub p99_ms: Option<f64>,
}

/// The last hour as the overview shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hour {
    /// Each minute's start (Unix ms) and counts, oldest first, [`MINUTES`] of them; the last is
    /// the current (partial) minute.
    pub minutes: Vec<(i64, Totals)>,
    /// Per target (destination, or `hms-core`), by name.
    pub targets: BTreeMap<String, TargetHour>,
    /// Per plugin, by name.
    pub plugins: BTreeMap<String, PluginHour>,
}

impl Recent {
    /// Counts into the minute of `now` (Unix ms), dropping minutes older than the hour.
    fn count(&self, now: i64, f: impl FnOnce(&mut Minute)) {
        let at = now - now.rem_euclid(MINUTE_MS);
        let mut minutes = self.minutes.lock().unwrap_or_else(PoisonError::into_inner);
        if minutes.back().is_none_or(|m| m.at < at) {
            minutes.push_back(Minute {
                at,
                ..Minute::default()
            });
        }
        while minutes
            .front()
            .is_some_and(|m| m.at <= at - MINUTES as i64 * MINUTE_MS)
        {
            minutes.pop_front();
        }
        // A clock stepped back counts into the newest minute kept.
        if let Some(minute) = minutes.back_mut() {
            f(minute);
        }
    }

    /// `n` events accepted at `now`.
    pub fn accepted(&self, now: i64, n: u64) {
        self.count(now, |m| m.totals.accepted += n);
    }

    /// A plugin run of `plugin` that took `elapsed` and failed or not.
    pub fn plugin_run(&self, now: i64, plugin: &str, failed: bool, elapsed: Duration) {
        self.count(now, |m| {
            let runs = entry(&mut m.plugins, plugin);
            runs.runs += 1;
            if failed {
                runs.failed += 1;
                m.totals.failed += 1;
            }
            let _ = runs.times.record(micros(elapsed));
        });
    }

    /// A delivery attempt to `target` that took `elapsed`.
    pub fn attempt(&self, now: i64, target: &str, outcome: AttemptOutcome, elapsed: Duration) {
        self.count(now, |m| {
            let deliveries = entry(&mut m.destinations, target);
            match outcome {
                AttemptOutcome::Delivered => {
                    deliveries.delivered += 1;
                    m.totals.delivered += 1;
                }
                AttemptOutcome::Retry => deliveries.retried += 1,
                AttemptOutcome::Dead => {
                    deliveries.dead += 1;
                    m.totals.failed += 1;
                }
            }
            let _ = deliveries.times.record(micros(elapsed));
        });
    }

    /// `n` deliveries to `target` superseded.
    pub fn superseded(&self, now: i64, target: &str, n: u64) {
        self.count(now, |m| {
            entry(&mut m.destinations, target).superseded += n;
            m.totals.superseded += n;
        });
    }

    /// The hour that ends at `now`.
    pub fn hour(&self, now: i64) -> Hour {
        let current = now - now.rem_euclid(MINUTE_MS);
        let first = current - (MINUTES as i64 - 1) * MINUTE_MS;
        let minutes = self.minutes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hour = Hour {
            minutes: (0..MINUTES as i64)
                .map(|i| (first + i * MINUTE_MS, Totals::default()))
                .collect(),
            ..Hour::default()
        };
        let mut target_times: BTreeMap<&str, Histogram<u32>> = BTreeMap::new();
        let mut plugin_times: BTreeMap<&str, Histogram<u32>> = BTreeMap::new();
        for minute in minutes.iter().filter(|m| m.at >= first && m.at <= current) {
            let slot = usize::try_from((minute.at - first) / MINUTE_MS).unwrap_or(0);
            hour.minutes[slot].1 = minute.totals;
            for (name, d) in &minute.destinations {
                let target = hour.targets.entry(name.clone()).or_default();
                target.delivered += d.delivered;
                target.retried += d.retried;
                target.dead += d.dead;
                target.superseded += d.superseded;
                let _ = target_times.entry(name).or_insert_with(times).add(&d.times);
            }
            for (name, r) in &minute.plugins {
                let plugin = hour.plugins.entry(name.clone()).or_default();
                plugin.runs += r.runs;
                plugin.failed += r.failed;
                let _ = plugin_times.entry(name).or_insert_with(times).add(&r.times);
            }
        }
        let ms = |h: &Histogram<u32>, q: f64| {
            (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
        };
        for (name, h) in target_times {
            if let Some(target) = hour.targets.get_mut(name) {
                target.p50_ms = ms(&h, 0.5);
                target.p99_ms = ms(&h, 0.99);
            }
        }
        for (name, h) in plugin_times {
            if let Some(plugin) = hour.plugins.get_mut(name) {
                plugin.p99_ms = ms(&h, 0.99);
            }
        }
        hour
    }
}

/// The entry of `name`, made on first use (the name is copied only then).
fn entry<'a, T: Default>(map: &'a mut BTreeMap<String, T>, name: &str) -> &'a mut T {
    if !map.contains_key(name) {
        map.insert(name.to_owned(), T::default());
    }
    map.get_mut(name).expect("just inserted")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000; // a minute boundary

    #[test]
    fn counts_land_in_their_minute_and_the_hour_keeps_sixty() {
        let recent = Recent::default();
        recent.accepted(T0 + 5, 3);
        recent.attempt(
            T0 + 10,
            "api",
            AttemptOutcome::Delivered,
            Duration::from_millis(4),
        );
        recent.attempt(
            T0 + 20,
            "api",
            AttemptOutcome::Retry,
            Duration::from_millis(100),
        );
        recent.attempt(
            T0 + MINUTE_MS,
            "api",
            AttemptOutcome::Dead,
            Duration::from_millis(2),
        );
        recent.superseded(T0 + MINUTE_MS, "api", 2);
        recent.plugin_run(T0 + MINUTE_MS, "p", true, Duration::from_micros(300));
        recent.plugin_run(T0 + MINUTE_MS, "p", false, Duration::from_micros(100));

        let hour = recent.hour(T0 + MINUTE_MS + 1);
        assert_eq!(hour.minutes.len(), MINUTES);
        let (at, first) = hour.minutes[MINUTES - 2];
        assert_eq!(at, T0);
        assert_eq!(
            first,
            Totals {
                accepted: 3,
                delivered: 1,
                failed: 0,
                superseded: 0
            }
        );
        let (at, last) = hour.minutes[MINUTES - 1];
        assert_eq!(at, T0 + MINUTE_MS);
        assert_eq!((last.failed, last.superseded), (2, 2));
        let api = &hour.targets["api"];
        assert_eq!(
            (api.delivered, api.retried, api.dead, api.superseded),
            (1, 1, 1, 2)
        );
        assert!((3.9..4.1).contains(&api.p50_ms.unwrap()), "{api:?}");
        assert!((99.0..101.0).contains(&api.p99_ms.unwrap()), "{api:?}");
        let p = &hour.plugins["p"];
        assert_eq!((p.runs, p.failed), (2, 1));
        assert!((0.29..0.31).contains(&p.p99_ms.unwrap()), "{p:?}");

        // An hour later the first minute has gone, the second is the oldest; a minute after
        // that it has gone too.
        let later = recent.hour(T0 + MINUTES as i64 * MINUTE_MS);
        assert_eq!(later.minutes[0], (T0 + MINUTE_MS, last));
        assert_eq!(later.targets["api"].delivered, 0);
        recent.accepted(T0 + (MINUTES as i64 + 1) * MINUTE_MS, 1);
        let empty = recent.hour(T0 + (MINUTES as i64 + 1) * MINUTE_MS);
        assert!(empty.targets.is_empty());
        assert_eq!(empty.minutes.iter().map(|m| m.1.accepted).sum::<u64>(), 1);
    }
}
