//! A dry run: what a candidate version would have made of stored events, against what the
//! version that ran on them made then (`POST /admin/plugins/{name}/try`).

use serde::{Deserialize, Serialize};

/// Which stored events a dry run takes (the query string). Empty fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrialQuery {
    /// Events accepted at or after this time (RFC 3339 or Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Events accepted before this time (RFC 3339 or Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// At most this many events, the newest (default 1,000, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// How long it may run, such as `30s` (default 2 minutes, at most 10): past it, it stops
    /// and reports what it tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

/// The answer of a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    /// The plugin.
    pub plugin: String,
    /// The candidate's hash (it is not stored).
    pub candidate: String,
    /// The version active now.
    pub active: Option<String>,
    /// The counts and times.
    pub summary: TrialSummary,
    /// Why it stopped before trying every event it selected (its time budget ran out, the
    /// engine is stopping); `None` when it tried them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Each event tried, newest first.
    pub events: Vec<TrialEvent>,
}

/// A dry run's counts and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialSummary {
    /// Events the query selected.
    #[serde(default)]
    pub selected: usize,
    /// Events tried (fewer than `selected` when it stopped early).
    pub events: usize,
    /// Of those, where the candidate made what was made then.
    pub same: usize,
    /// Where it made something else.
    pub different: usize,
    /// Where it failed (and the version then did not, or failed otherwise).
    pub failed: usize,
    /// Events with nothing to compare: not processed yet, or handled by another plugin then.
    pub skipped: usize,
    /// The candidate's run time, median, in milliseconds (fresh instance included).
    pub candidate_p50_ms: Option<f64>,
    /// The candidate's run time, 99th percentile, in milliseconds.
    pub candidate_p99_ms: Option<f64>,
    /// The run time of the versions that ran then, median, in milliseconds (as recorded).
    pub then_p50_ms: Option<f64>,
    /// The run time of the versions that ran then, 99th percentile, in milliseconds.
    pub then_p99_ms: Option<f64>,
    /// How long the dry run took, in milliseconds.
    pub took_ms: u64,
}

/// One event of a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialEvent {
    /// The event.
    pub event_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its entity key.
    pub key: Option<String>,
    /// When it was accepted.
    pub accepted_at: i64,
    /// The plugin's place among its route's handlers.
    pub handler: usize,
    /// `same`, `different`, `failed` or `skipped`.
    pub verdict: String,
    /// The version that ran on it then.
    pub then_version: Option<String>,
    /// What differs (`different`), as JSON Patch operations from what was made then to what
    /// the candidate makes, each with the value it replaces or removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Whether its changes were left out: the report already carried as many bytes of changes
    /// as one report carries (8 MiB).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changes_omitted: bool,
    /// The candidate's error (`failed`), or why nothing was compared (`skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One difference between what was made then and what the candidate makes.
pub use crate::pipeline::trial::Change;

/// A shadow version and what it has done (`GET`, `PUT`, `DELETE /admin/plugins/{name}/shadow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReport {
    /// The plugin.
    pub plugin: String,
    /// The shadow version's hash.
    pub shadow: String,
    /// The version active now.
    pub active: Option<String>,
    /// When the shadow started (Unix ms).
    pub started_at: i64,
    /// Who started it.
    pub started_by: String,
    /// Events it ran on.
    pub runs: u64,
    /// Of those, where it made what the active version made.
    pub same: u64,
    /// Where it made something else.
    pub different: u64,
    /// Where it failed (and the active version did not, or failed otherwise).
    pub failed: u64,
    /// Events it did not run on: its queue was full, or no sandbox slot was free.
    pub skipped: u64,
    /// `same` over `runs`, when it ran.
    pub agreement_rate: Option<f64>,
    /// The shadow's run time, median, in milliseconds.
    pub shadow_p50_ms: Option<f64>,
    /// The shadow's run time, 99th percentile, in milliseconds.
    pub shadow_p99_ms: Option<f64>,
    /// The active version's run time on the same events, median, in milliseconds.
    pub active_p50_ms: Option<f64>,
    /// The active version's run time on the same events, 99th percentile, in milliseconds.
    pub active_p99_ms: Option<f64>,
    /// The latest differences and failures, newest first (at most 20).
    pub latest: Vec<ShadowDifference>,
}

/// One event where a shadow made something else than the active version, or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowDifference {
    /// The event.
    pub event_id: String,
    /// `different` or `failed`.
    pub verdict: String,
    /// What differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The shadow's error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it ran (Unix ms).
    pub ran_at: i64,
}

/// How a canary is started (`PUT /admin/plugins/{name}/canary`, the query string): its share
/// and when it is rolled back on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CanaryQuery {
    /// The share of entity keys it takes, in percent (1 to 99; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// How far back runs count, such as `5m` (default 5 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Runs of each version in the window before anything is decided (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_runs: Option<usize>,
    /// How much higher its failure rate may be than the active version's (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_margin: Option<f64>,
    /// How many times the active version's p99 run time its own may be (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ratio: Option<f64>,
}

/// `PATCH /admin/plugins/{name}/canary`: a new share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryShare {
    /// The share of entity keys it takes, in percent (1 to 99).
    pub percent: u8,
}

/// A canary and how it fares (`GET`, `PUT`, `PATCH`, `DELETE /admin/plugins/{name}/canary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryReport {
    /// The plugin.
    pub plugin: String,
    /// The canary's version.
    pub canary: String,
    /// The version active now.
    pub active: Option<String>,
    /// The share of entity keys it takes, in percent.
    pub percent: u8,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Who started it.
    pub started_by: String,
    /// `running`, `rolled-back` (on its own), `stopped` or `promoted`.
    pub state: String,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// Why it ended.
    pub why: Option<String>,
    /// How far back runs count, in milliseconds.
    pub window_ms: u64,
    /// Runs of each version in the window before anything is decided.
    pub min_runs: usize,
    /// How much higher its failure rate may be than the active version's.
    pub failure_margin: f64,
    /// How many times the active version's p99 run time its own may be.
    pub p99_ratio: f64,
    /// The canary's runs in the window.
    pub canary_window: RunWindow,
    /// The active version's runs in the window.
    pub active_window: RunWindow,
}

/// A version's runs over a canary's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunWindow {
    /// Runs.
    pub runs: usize,
    /// Of those, failed.
    pub failed: usize,
    /// `failed` over `runs`.
    pub failure_rate: Option<f64>,
    /// The 99th percentile run time, in milliseconds.
    pub p99_ms: Option<f64>,
}
