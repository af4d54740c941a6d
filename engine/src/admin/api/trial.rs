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
    /// Each event, newest first.
    pub events: Vec<TrialEvent>,
}

/// A dry run's counts and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialSummary {
    /// Events tried.
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
    /// The candidate's error (`failed`), or why nothing was compared (`skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One difference: an RFC 6902 operation on the list of actions made then (each action as
/// `{kind, target, contentType, headers, key, version, timestamp, reason, body}`, a JSON body
/// parsed), with the value it replaces or removes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `add`, `remove` or `replace`.
    pub op: String,
    /// A JSON Pointer into the actions, such as `/0/body/newRates`; empty for the whole result.
    pub path: String,
    /// The value then (`remove`, `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The candidate's value (`add`, `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}
