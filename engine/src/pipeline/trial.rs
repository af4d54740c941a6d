//! Trying a candidate version on a stored event: the candidate runs as the event's handler
//! would (same sandbox, limits and settings), its result becomes outbox rows by the same rules,
//! and those are compared with the rows the version that ran then made. Nothing is stored or
//! delivered.

use super::process::rows_of;
use super::routes::{RouteHandler, Routes};
use crate::sandbox::Plugin;
use crate::sandbox::event::Event;
use crate::store::OutboxAction;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What the version that ran on the event made then, as its handler.
#[derive(Debug, Clone, Copy)]
pub enum Then<'a> {
    /// These rows, in order.
    Made(&'a [OutboxAction]),
    /// Nothing: it failed with this code and error.
    Failed {
        /// The error's code.
        code: &'a str,
        /// The error.
        error: &'a str,
    },
}

/// How the candidate's result compares with what was made then.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The same rows, or the same failure.
    Same,
    /// Other rows: `before` and `after` as the JSON views of the rows (or of a failure), and the
    /// JSON Patch from one to the other.
    Different {
        /// What was made then.
        before: Value,
        /// What the candidate makes.
        after: Value,
        /// From `before` to `after`.
        patch: json_patch::Patch,
    },
    /// The candidate failed (and the version then did not, or failed otherwise).
    Failed(String),
    /// No sandbox slot came free in the time the caller would wait: it did not run.
    Busy,
}

/// One difference: an RFC 6902 operation on the list of rows made then (each row as `{kind,
/// target, contentType, headers, key, version, timestamp, reason, body}`, a JSON body parsed),
/// with the value it replaces or removes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `add`, `remove` or `replace`.
    pub op: String,
    /// A JSON Pointer into the rows, such as `/0/body/newRates`; empty for the whole result.
    pub path: String,
    /// The value then (`remove`, `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The candidate's value (`add`, `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The patch's operations, each with the value it replaces or removes in `before`.
pub fn changes(before: &Value, patch: &json_patch::Patch) -> Vec<Change> {
    use json_patch::PatchOperation;
    patch
        .iter()
        .filter_map(|op| {
            let (name, path, after) = match op {
                PatchOperation::Add(add) => ("add", add.path.to_string(), Some(add.value.clone())),
                PatchOperation::Remove(remove) => ("remove", remove.path.to_string(), None),
                PatchOperation::Replace(replace) => (
                    "replace",
                    replace.path.to_string(),
                    Some(replace.value.clone()),
                ),
                // A diff makes only the three above.
                _ => return None,
            };
            let before = (name != "add")
                .then(|| before.pointer(&path).cloned())
                .flatten();
            Some(Change {
                op: name.into(),
                path,
                before,
                after,
            })
        })
        .collect()
}

/// A candidate's run on one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    /// How it compares.
    pub verdict: Verdict,
    /// How long the run took, fresh instance included.
    pub took: Duration,
}

/// Runs `candidate` as handler `index` (`handler`) on `event` and compares its rows with
/// `then`. When the sandbox has no free slot it waits for one while `keep_waiting` (given how
/// long it has waited) says so, then gives up ([`Verdict::Busy`]). Blocks while the plugin
/// runs: call it on a thread that may block.
pub fn try_on(
    event: &Event,
    index: usize,
    handler: &RouteHandler,
    routes: &Routes,
    candidate: &Plugin,
    then: Then<'_>,
    keep_waiting: &dyn Fn(Duration) -> bool,
) -> Tried {
    let waited = Instant::now();
    let (result, took) = loop {
        let started = Instant::now();
        let result = candidate.run(event, &handler.handler.setup);
        match &result {
            Err(e) if e.is_capacity() && keep_waiting(waited.elapsed()) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.is_capacity() => {
                return Tried {
                    verdict: Verdict::Busy,
                    took: started.elapsed(),
                };
            }
            _ => break (result, started.elapsed()),
        }
    };
    let verdict = match (rows_of(event, index, handler, result, routes), then) {
        (
            Err((code, _)),
            Then::Failed {
                code: then_code, ..
            },
        ) if code == then_code => Verdict::Same,
        (Err((_, error)), _) => Verdict::Failed(error),
        (Ok(rows), then) => {
            let before = match then {
                Then::Made(made) => views(made.iter()),
                Then::Failed { code, error } => json!({"failed": {"code": code, "error": error}}),
            };
            let after = views(rows.iter());
            if before == after {
                Verdict::Same
            } else {
                let patch = json_patch::diff(&before, &after);
                Verdict::Different {
                    before,
                    after,
                    patch,
                }
            }
        }
    };
    Tried { verdict, took }
}

/// Rows as the JSON a dry run compares: every field a receiver would see, a JSON body parsed.
fn views<'a>(rows: impl Iterator<Item = &'a OutboxAction>) -> Value {
    rows.map(|row| {
        let body = serde_json::from_slice::<Value>(&row.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&row.body).into_owned()));
        json!({
            "kind": row.kind.as_str(),
            "target": row.target,
            "contentType": row.content_type,
            "headers": row.headers.iter().map(|h| [&h.name, &h.value]).collect::<Vec<_>>(),
            "key": row.key,
            "version": row.version,
            "timestamp": row.timestamp,
            "reason": row.reason,
            "body": body,
        })
    })
    .collect()
}
