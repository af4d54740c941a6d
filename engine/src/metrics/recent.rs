//! The last hour in memory, minute by minute: events accepted, deliveries made, failures and
//! supersedes, and per destination and per plugin their outcomes and times. The admin API's
//! overview (and the console's charts) read it; Prometheus keeps the long history.
//!
//! One engine's own work since it started: after a restart the hour starts empty, and with
//! several engines each counts what it did. Counts are kept per minute; times in histograms of
//! two significant digits (within 1%; ten minutes at most) per ten minutes, so that memory stays
//! small however many destinations and plugins there are (about 12 KiB per name and ten
//! minutes): the hour's times cover its last 50 to 60 minutes.

use crate::store::AttemptOutcome;
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How many minutes are kept.
pub const MINUTES: usize = 60;

const MINUTE_MS: i64 = 60_000;

/// How long one set of time histograms covers.
const SLOT_MS: i64 = 10 * MINUTE_MS;

/// The last hour's counts.
#[derive(Default)]
pub struct Recent {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Minute by minute, oldest first.
    minutes: VecDeque<Minute>,
    /// Ten minutes by ten minutes, oldest first.
    slots: VecDeque<Slot>,
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

/// Ten minutes' times, microseconds.
#[derive(Default)]
struct Slot {
    /// Its start, Unix ms (a multiple of ten minutes).
    at: i64,
    attempts: BTreeMap<String, Histogram<u32>>,
    runs: BTreeMap<String, Histogram<u32>>,
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
#[derive(Default)]
struct Deliveries {
    delivered: u64,
    retried: u64,
    dead: u64,
    superseded: u64,
}

/// One plugin's runs.
#[derive(Default)]
struct Runs {
    runs: u64,
    failed: u64,
}

/// The longest time kept apart: longer ones count as this (ten minutes, in microseconds).
const MAX_TIME_US: u64 = 600_000_000;

/// Times from 1 µs to ten minutes, two significant digits (about 12 KiB each).
fn times() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_TIME_US, 2).expect("valid histogram bounds")
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

/// The latest entry of `kept` for the period of `now` (`period` long), made when it is new;
/// entries older than `keep` periods are dropped. A clock stepped back counts into the latest.
fn current<T: Default>(
    kept: &mut VecDeque<T>,
    at_of: fn(&T) -> i64,
    new: fn(i64) -> T,
    now: i64,
    period: i64,
    keep: i64,
) -> &mut T {
    let at = now - now.rem_euclid(period);
    if kept.back().is_none_or(|latest| at_of(latest) < at) {
        kept.push_back(new(at));
    }
    while kept
        .front()
        .is_some_and(|oldest| at_of(oldest) <= at - keep * period)
    {
        kept.pop_front();
    }
    kept.back_mut().expect("just made")
}

impl Kept {
    fn minute(&mut self, now: i64) -> &mut Minute {
        current(
            &mut self.minutes,
            |m| m.at,
            |at| Minute {
                at,
                ..Minute::default()
            },
            now,
            MINUTE_MS,
            MINUTES as i64,
        )
    }

    fn slot(&mut self, now: i64) -> &mut Slot {
        current(
            &mut self.slots,
            |s| s.at,
            |at| Slot {
                at,
                ..Slot::default()
            },
            now,
            SLOT_MS,
            MINUTES as i64 * MINUTE_MS / SLOT_MS,
        )
    }
}

impl Recent {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `n` events accepted at `now` (Unix ms).
    pub fn accepted(&self, now: i64, n: u64) {
        self.kept().minute(now).totals.accepted += n;
    }

    /// A plugin run of `plugin` that took `elapsed` and failed or not.
    pub fn plugin_run(&self, now: i64, plugin: &str, failed: bool, elapsed: Duration) {
        let mut kept = self.kept();
        let minute = kept.minute(now);
        let runs = entry(&mut minute.plugins, plugin, Runs::default);
        runs.runs += 1;
        if failed {
            runs.failed += 1;
            minute.totals.failed += 1;
        }
        let _ = entry(&mut kept.slot(now).runs, plugin, times).record(micros(elapsed));
    }

    /// A delivery attempt to `target` that took `elapsed`.
    pub fn attempt(&self, now: i64, target: &str, outcome: AttemptOutcome, elapsed: Duration) {
        let mut kept = self.kept();
        let minute = kept.minute(now);
        let deliveries = entry(&mut minute.destinations, target, Deliveries::default);
        match outcome {
            AttemptOutcome::Delivered => {
                deliveries.delivered += 1;
                minute.totals.delivered += 1;
            }
            AttemptOutcome::Retry => deliveries.retried += 1,
            AttemptOutcome::Dead => {
                deliveries.dead += 1;
                minute.totals.failed += 1;
            }
        }
        let _ = entry(&mut kept.slot(now).attempts, target, times).record(micros(elapsed));
    }

    /// `n` deliveries to `target` superseded.
    pub fn superseded(&self, now: i64, target: &str, n: u64) {
        let mut kept = self.kept();
        let minute = kept.minute(now);
        entry(&mut minute.destinations, target, Deliveries::default).superseded += n;
        minute.totals.superseded += n;
    }

    /// The hour that ends at `now`.
    pub fn hour(&self, now: i64) -> Hour {
        let current = now - now.rem_euclid(MINUTE_MS);
        let first = current - (MINUTES as i64 - 1) * MINUTE_MS;
        let kept = self.kept();
        let mut hour = Hour {
            minutes: (0..MINUTES as i64)
                .map(|i| (first + i * MINUTE_MS, Totals::default()))
                .collect(),
            ..Hour::default()
        };
        for minute in kept
            .minutes
            .iter()
            .filter(|m| m.at >= first && m.at <= current)
        {
            let slot = usize::try_from((minute.at - first) / MINUTE_MS).unwrap_or(0);
            hour.minutes[slot].1 = minute.totals;
            for (name, d) in &minute.destinations {
                let target = hour.targets.entry(name.clone()).or_default();
                target.delivered += d.delivered;
                target.retried += d.retried;
                target.dead += d.dead;
                target.superseded += d.superseded;
            }
            for (name, r) in &minute.plugins {
                let plugin = hour.plugins.entry(name.clone()).or_default();
                plugin.runs += r.runs;
                plugin.failed += r.failed;
            }
        }
        // The times of the ten-minute slots that end inside the hour.
        let mut attempts: BTreeMap<&str, Histogram<u32>> = BTreeMap::new();
        let mut runs: BTreeMap<&str, Histogram<u32>> = BTreeMap::new();
        for slot in kept
            .slots
            .iter()
            .filter(|s| s.at + SLOT_MS > first && s.at <= current)
        {
            for (name, h) in &slot.attempts {
                let _ = attempts.entry(name).or_insert_with(times).add(h);
            }
            for (name, h) in &slot.runs {
                let _ = runs.entry(name).or_insert_with(times).add(h);
            }
        }
        let ms = |h: &Histogram<u32>, q: f64| {
            (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
        };
        for (name, h) in attempts {
            if let Some(target) = hour.targets.get_mut(name) {
                target.p50_ms = ms(&h, 0.5);
                target.p99_ms = ms(&h, 0.99);
            }
        }
        for (name, h) in runs {
            if let Some(plugin) = hour.plugins.get_mut(name) {
                plugin.p99_ms = ms(&h, 0.99);
            }
        }
        hour
    }
}

/// The entry of `name`, made by `new` on first use (the name is copied only then).
fn entry<'a, T>(map: &'a mut BTreeMap<String, T>, name: &str, new: fn() -> T) -> &'a mut T {
    if !map.contains_key(name) {
        map.insert(name.to_owned(), new());
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

    #[test]
    fn times_are_kept_per_ten_minutes_for_an_hour_only() {
        let recent = Recent::default();
        for k in 0..20 {
            let at = T0 + k * SLOT_MS;
            recent.attempt(
                at,
                "api",
                AttemptOutcome::Delivered,
                Duration::from_millis(5),
            );
            recent.plugin_run(at, "p", false, Duration::from_millis(1));
        }
        let kept = recent.kept();
        assert_eq!(kept.slots.len(), 6, "an hour of ten-minute slots");
        assert_eq!(kept.minutes.len(), 6, "one minute counted in each ten");
        drop(kept);
        let now = T0 + 19 * SLOT_MS;
        let hour = recent.hour(now);
        assert_eq!(hour.targets["api"].delivered, 6);
        assert!((4.9..5.1).contains(&hour.targets["api"].p99_ms.unwrap()));
        // An hour after the last attempt nothing is left to time.
        let later = recent.hour(now + MINUTES as i64 * MINUTE_MS);
        assert!(later.targets.is_empty() && later.plugins.is_empty());
    }
}
