//! Canaries: a checked, stored version of a plugin that takes a share of its live events, by
//! entity key, beside the active version; what it makes is delivered. The share is a
//! percentage of key buckets (a key's SHA-256 modulo 100): a key stays on one version while the
//! share holds, and a raised share only moves more keys to the canary.
//!
//! Every run of either version is counted with its time, over a sliding window. Once both have
//! run at least `min_runs` times in it, a canary whose failure rate exceeds the active
//! version's by more than `failure_margin` is rolled back on its own, judged on every result:
//! the run that crosses the bound is the last one it is given, so what it fails is bounded by
//! the configured numbers (and the runs already in flight then, at most `sandbox.workers` per
//! route), not by a timer. Its p99 run time (once both have run [`P99_MIN_RUNS`] times) is
//! judged at most four times a second, since that sorts the window: past the active version's
//! times `p99_ratio`, it is rolled back too. Rolled back, its events go to the active version
//! again, and why is logged, counted and kept in its report.

use crate::metrics::Metrics;
use crate::sandbox::Plugin;
use crate::store::now_ms;
use arc_swap::ArcSwap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The most runs of each version kept in a canary's window.
pub const MAX_SAMPLES: usize = 10_000;

/// Runs of each version in the window before their p99 run times are compared: with fewer, a
/// p99 is only the slowest run (a version's first, cold runs).
pub const P99_MIN_RUNS: usize = 100;

/// How often the p99 run times are judged, at most (the window is sorted each time).
const JUDGE_EVERY_MS: i64 = 250;

/// When a canary is rolled back on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// How far back runs count.
    pub window: Duration,
    /// Runs of each version in the window before anything is decided.
    pub min_runs: usize,
    /// How much higher the canary's failure rate may be (0.05: five points).
    pub failure_margin: f64,
    /// How many times the active version's p99 run time the canary's may be.
    pub p99_ratio: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(300),
            min_runs: 20,
            failure_margin: 0.05,
            p99_ratio: 3.0,
        }
    }
}

/// One run: when it ended (Unix ms), how long it took (µs), whether it failed.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: i64,
    micros: u64,
    failed: bool,
}

/// A version's runs in the window, and how many of them failed.
#[derive(Debug, Default)]
struct Runs {
    samples: VecDeque<Sample>,
    failed: usize,
}

/// What the window says of one version.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    /// Runs in the window.
    pub runs: usize,
    /// Of those, failed.
    pub failed: usize,
    /// `failed` over `runs`.
    pub failure_rate: Option<f64>,
    /// The 99th percentile run time, in milliseconds.
    pub p99_ms: Option<f64>,
}

impl Runs {
    fn push(&mut self, sample: Sample, window_ms: i64) {
        self.samples.push_back(sample);
        self.failed += usize::from(sample.failed);
        self.expire(sample.at - window_ms);
    }

    /// Drops the runs before `since` (and beyond the most kept).
    fn expire(&mut self, since: i64) {
        while self.samples.len() > MAX_SAMPLES || self.samples.front().is_some_and(|s| s.at < since)
        {
            if let Some(dropped) = self.samples.pop_front() {
                self.failed -= usize::from(dropped.failed);
            }
        }
    }

    /// The runs and failures in the window, without the p99 (which needs a sort): what is
    /// judged on every result. Call [`Runs::expire`] first.
    fn counts(&self) -> Window {
        let runs = self.samples.len();
        Window {
            runs,
            failed: self.failed,
            failure_rate: (runs > 0).then(|| self.failed as f64 / runs as f64),
            p99_ms: None,
        }
    }

    fn window(&self, since: i64) -> Window {
        let mut micros: Vec<u64> = Vec::new();
        let mut failed = 0;
        for s in self.samples.iter().filter(|s| s.at >= since) {
            micros.push(s.micros);
            failed += usize::from(s.failed);
        }
        let runs = micros.len();
        micros.sort_unstable();
        let rank = ((runs as f64 * 0.99).ceil() as usize).clamp(1, runs.max(1));
        Window {
            runs,
            failed,
            failure_rate: (runs > 0).then(|| failed as f64 / runs as f64),
            p99_ms: micros.get(rank - 1).map(|us| *us as f64 / 1000.0),
        }
    }
}

/// How a canary ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// When (Unix ms).
    pub at: i64,
    /// `rolled-back` (on its own), `stopped` or `promoted`.
    pub how: String,
    /// Why, as a sentence.
    pub why: String,
}

/// A canary of one plugin.
pub struct Canary {
    /// Its version.
    pub plugin: Plugin,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Who started it.
    pub by: String,
    /// When it is rolled back on its own.
    pub limits: Limits,
    percent: AtomicU8,
    /// When the window was last judged (Unix ms).
    judged_at: AtomicI64,
    runs: Mutex<(Runs, Runs)>,
    ended: Mutex<Option<Ended>>,
}

impl Canary {
    /// A canary of `plugin` taking `percent` of the keys, under `limits`, started now by `by`.
    pub fn new(plugin: Plugin, percent: u8, limits: Limits, by: &str) -> Canary {
        Canary {
            plugin,
            started_at: now_ms(),
            by: by.to_owned(),
            limits,
            percent: AtomicU8::new(percent.min(100)),
            judged_at: AtomicI64::new(0),
            runs: Mutex::default(),
            ended: Mutex::default(),
        }
    }

    /// The share of keys it takes, in percent.
    pub fn percent(&self) -> u8 {
        self.percent.load(Ordering::Acquire)
    }

    /// Sets the share of keys it takes.
    pub fn set_percent(&self, percent: u8) {
        self.percent.store(percent.min(100), Ordering::Release);
    }

    /// The window of the canary's runs and of the active version's, as of now.
    pub fn windows(&self) -> (Window, Window) {
        let since = now_ms() - window_ms(self.limits.window);
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        (runs.0.window(since), runs.1.window(since))
    }

    /// How it ended, if it has.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why it should be rolled back now, if it should.
    fn verdict(&self) -> Option<String> {
        let (canary, active) = self.windows();
        judge(&self.limits, canary, active)
    }
}

/// Whether a canary whose window is `canary` should be rolled back, beside an active version
/// whose window is `active`: why, if it should. Its failures, then its p99 run time.
fn judge(limits: &Limits, canary: Window, active: Window) -> Option<String> {
    judge_failures(limits, canary, active).or_else(|| judge_p99(limits, canary, active))
}

/// Whether the canary fails too often beside the active version: why, if it does.
fn judge_failures(limits: &Limits, canary: Window, active: Window) -> Option<String> {
    if canary.runs < limits.min_runs || active.runs < limits.min_runs {
        return None;
    }
    let window = humantime::format_duration(limits.window);
    let (fc, fa) = (canary.failure_rate?, active.failure_rate?);
    (fc > fa + limits.failure_margin).then(|| {
        format!(
            "its failure rate was {:.1}% against {:.1}% for the active version over the last \
             {window} ({} and {} runs; the margin is {:.1} points)",
            fc * 100.0,
            fa * 100.0,
            canary.runs,
            active.runs,
            limits.failure_margin * 100.0
        )
    })
}

/// Whether the canary is too slow beside the active version: why, if it is.
fn judge_p99(limits: &Limits, canary: Window, active: Window) -> Option<String> {
    let window = humantime::format_duration(limits.window);
    let enough = P99_MIN_RUNS.max(limits.min_runs);
    if canary.runs < enough || active.runs < enough {
        return None;
    }
    let (pc, pa) = (canary.p99_ms?, active.p99_ms?);
    (pc > pa * limits.p99_ratio).then(|| {
        format!(
            "its p99 run time was {pc:.2} ms against {pa:.2} ms for the active version over the \
             last {window} (at most {}× is taken)",
            limits.p99_ratio
        )
    })
}

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}

/// The bucket of a key: its SHA-256 modulo 100.
pub fn bucket(key: &str) -> u8 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("eight bytes"));
    u8::try_from(n % 100).expect("below 100")
}

/// What a canary was or is, without its version's code (an ended canary keeps no instances).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The plugin.
    pub plugin: String,
    /// The canary's version.
    pub hash: String,
    /// Its share of keys, in percent.
    pub percent: u8,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Who started it.
    pub by: String,
    /// When it is rolled back on its own.
    pub limits: Limits,
    /// Its runs in the window.
    pub canary: Window,
    /// The active version's runs in the window.
    pub active: Window,
    /// How it ended, if it has.
    pub ended: Option<Ended>,
}

impl Canary {
    /// What it is now.
    pub fn snapshot(&self) -> Snapshot {
        let (canary, active) = self.windows();
        Snapshot {
            plugin: self.plugin.name().to_owned(),
            hash: self.plugin.hash().to_owned(),
            percent: self.percent(),
            started_at: self.started_at,
            by: self.by.clone(),
            limits: self.limits,
            canary,
            active,
            ended: self.ended(),
        }
    }
}

/// The canaries of every plugin: the running ones, and how the last one that ended was.
pub struct Canaries {
    running: ArcSwap<HashMap<String, Arc<Canary>>>,
    last: Mutex<HashMap<String, Snapshot>>,
    metrics: Arc<Metrics>,
}

impl Canaries {
    /// No canaries yet.
    pub fn new(metrics: Arc<Metrics>) -> Canaries {
        Canaries {
            running: ArcSwap::from_pointee(HashMap::new()),
            last: Mutex::default(),
            metrics,
        }
    }

    /// The running canary of `plugin`, if any.
    pub fn of(&self, plugin: &str) -> Option<Arc<Canary>> {
        self.running.load().get(plugin).cloned()
    }

    /// The running canary of `plugin`, else the last one that ended, as they are now.
    pub fn latest(&self, plugin: &str) -> Option<Snapshot> {
        self.of(plugin).map(|c| c.snapshot()).or_else(|| {
            self.last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(plugin)
                .cloned()
        })
    }

    /// Starts `canary` (replacing the plugin's running one, which is stopped).
    pub fn start(&self, canary: Canary) -> Arc<Canary> {
        let name = canary.plugin.name().to_owned();
        let canary = Arc::new(canary);
        let mut replaced = None;
        self.running.rcu(|current| {
            let mut next = HashMap::clone(current);
            replaced = next.insert(name.clone(), canary.clone());
            next
        });
        if let Some(replaced) = replaced {
            self.ended(&replaced, "stopped", "another canary replaced it".into());
        }
        canary
    }

    /// Ends the running canary of `plugin` (`how`: `stopped`, `promoted`, `rolled-back`);
    /// answers how it ended.
    pub fn end(&self, plugin: &str, how: &str, why: String) -> Option<Snapshot> {
        let running = self.of(plugin)?;
        self.end_if(&running, how, why)
    }

    /// Ends `canary` if it is still its plugin's running canary (not one started since);
    /// answers how it ended.
    pub fn end_if(&self, canary: &Arc<Canary>, how: &str, why: String) -> Option<Snapshot> {
        let name = canary.plugin.name();
        let mut ended = false;
        self.running.rcu(|current| {
            let mut next = HashMap::clone(current);
            ended = next
                .get(name)
                .is_some_and(|running| Arc::ptr_eq(running, canary));
            if ended {
                next.remove(name);
            }
            next
        });
        ended.then(|| self.ended(canary, how, why))
    }

    fn ended(&self, canary: &Arc<Canary>, how: &str, why: String) -> Snapshot {
        *canary.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(Ended {
            at: now_ms(),
            how: how.to_owned(),
            why,
        });
        let snapshot = canary.snapshot();
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(snapshot.plugin.clone(), snapshot.clone());
        snapshot
    }

    /// The version that runs `plugin` on an event, and whether it is the canary: the
    /// canary's when the bucket of the event's key (`key`, asked only when there is a canary)
    /// is within its share, else `active`. A canary whose version has become the active one
    /// (activated another way) ends here.
    pub fn pick(
        &self,
        plugin: &str,
        key: impl FnOnce() -> String,
        active: Plugin,
    ) -> (Plugin, bool) {
        let Some(canary) = self.running.load().get(plugin).cloned() else {
            return (active, false);
        };
        if canary.plugin.hash() == active.hash() {
            self.end_if(
                &canary,
                "promoted",
                "its version became the active one".into(),
            );
            return (active, false);
        }
        if bucket(&key()) < canary.percent() {
            (canary.plugin.clone(), true)
        } else {
            (active, false)
        }
    }

    /// Counts a run of `plugin` by the version `hash`, and rolls its canary back when the
    /// window says so.
    pub fn observe(&self, plugin: &str, hash: &str, failed: bool, took: Duration) {
        let Some(canary) = self.of(plugin) else {
            return;
        };
        let sample = Sample {
            at: now_ms(),
            micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            failed,
        };
        let window = window_ms(canary.limits.window);
        // Its failures, on every result: counted, not sorted.
        let failing = {
            let mut runs = canary.runs.lock().unwrap_or_else(PoisonError::into_inner);
            if hash == canary.plugin.hash() {
                runs.0.push(sample, window);
            } else {
                runs.1.push(sample, window);
            }
            runs.0.expire(sample.at - window);
            runs.1.expire(sample.at - window);
            judge_failures(&canary.limits, runs.0.counts(), runs.1.counts())
        };
        // Everything (the p99 sorts the window) at most every JUDGE_EVERY_MS, by one run at a
        // time.
        let judged = canary.judged_at.load(Ordering::Acquire);
        let why = failing.or_else(|| {
            let due = sample.at - judged >= JUDGE_EVERY_MS
                && canary
                    .judged_at
                    .compare_exchange(judged, sample.at, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            due.then(|| canary.verdict()).flatten()
        });
        if let Some(why) = why {
            let version = canary.plugin.version_tag();
            if self.end_if(&canary, "rolled-back", why.clone()).is_some() {
                tracing::warn!(
                    plugin,
                    canary = %version,
                    why = %why,
                    "canary rolled back: its events go to the active version again"
                );
                self.metrics.count_canary_rollback(plugin);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(runs: usize, failed: usize, p99_ms: f64) -> Window {
        Window {
            runs,
            failed,
            failure_rate: Some(failed as f64 / runs as f64),
            p99_ms: Some(p99_ms),
        }
    }

    #[test]
    fn a_canary_is_judged_on_failures_then_on_its_p99_once_each_ran_enough() {
        let limits = Limits::default();
        // Too few runs: nothing decided, however bad.
        assert_eq!(
            judge(&limits, window(19, 19, 9.0), window(50, 0, 1.0)),
            None
        );
        // Failing 10% against none: past the five-point margin.
        let why = judge(&limits, window(20, 2, 1.0), window(20, 0, 1.0)).unwrap();
        assert!(
            why.starts_with("its failure rate was 10.0% against 0.0%"),
            "{why}"
        );
        // Within the margin.
        assert_eq!(
            judge(&limits, window(100, 4, 1.0), window(100, 0, 1.0)),
            None
        );
        // Slow, but a p99 of fewer than 100 runs is only the slowest one: let be.
        assert_eq!(
            judge(&limits, window(99, 0, 9.0), window(500, 0, 1.0)),
            None
        );
        let why = judge(&limits, window(100, 0, 3.1), window(100, 0, 1.0)).unwrap();
        assert!(
            why.starts_with("its p99 run time was 3.10 ms against 1.00 ms"),
            "{why}"
        );
        assert_eq!(
            judge(&limits, window(100, 0, 2.9), window(100, 0, 1.0)),
            None
        );
    }

    #[test]
    fn buckets_spread_keys_and_stay_put() {
        let buckets: Vec<u8> = (0..10_000).map(|i| bucket(&format!("key-{i}"))).collect();
        assert!(buckets.iter().all(|b| *b < 100));
        let under_ten = buckets.iter().filter(|b| **b < 10).count();
        assert!(
            (800..1200).contains(&under_ten),
            "{under_ten} of 10,000 under 10%"
        );
        assert_eq!(bucket("key-42"), bucket("key-42"));
    }

    #[test]
    fn the_window_counts_failures_and_the_p99() {
        let mut runs = Runs::default();
        for i in 0..100 {
            runs.push(
                Sample {
                    at: 1_000 + i,
                    micros: u64::try_from(i + 1).unwrap() * 10,
                    failed: i % 10 == 0,
                },
                60_000,
            );
        }
        let window = runs.window(0);
        assert_eq!((window.runs, window.failed), (100, 10));
        let counted = runs.counts();
        assert_eq!((counted.runs, counted.failed), (100, 10));
        assert_eq!(counted.failure_rate, Some(0.1));
        assert_eq!(window.failure_rate, Some(0.1));
        assert_eq!(window.p99_ms, Some(0.99));
        assert_eq!(runs.window(1_050).runs, 50, "only those since");
        // Older than the window: dropped as new ones come.
        runs.push(
            Sample {
                at: 100_000,
                micros: 1,
                failed: false,
            },
            60_000,
        );
        assert_eq!(runs.window(0).runs, 1);
        assert_eq!((runs.counts().runs, runs.counts().failed), (1, 0));
        runs.expire(200_000);
        assert_eq!(runs.counts().runs, 0);
    }
}
