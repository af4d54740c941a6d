//! Conflict handling: stale data never overwrites fresh.
//!
//! For every (destination, entity key) the store keeps what was last delivered: its version,
//! timestamp and event ([`EntityState`]), written in the transaction that records the delivery.
//! Before a delivery with a key is sent, its route's strategy compares it with that state:
//!
//! - `last-write-wins`: it goes if its timestamp is later (ties: the later event id, then the
//!   later action);
//! - `version`: it goes if its version is strictly greater; without a version it cannot be
//!   checked, and fails;
//! - `plugin`: a resolver plugin decides: keep the current version, replace it, or deliver a
//!   merged payload;
//! - `none`: everything goes.
//!
//! What does not go is *superseded*, with the id of the event whose version won. Keys, versions
//! and timestamps come from the action, else from the route's JSON pointers into the event's
//! payload, else from the event.

use crate::config::{ConflictConfig, Strategy};
use crate::store::{EntityState, OutboxRow};
use serde_json::Value;

/// A route's conflict settings, ready to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conflict {
    /// The strategy.
    pub strategy: Strategy,
    /// The resolver plugin's name, for the `plugin` strategy.
    pub resolver: Option<String>,
    key: Option<String>,
    version: Option<String>,
    timestamp: Option<String>,
}

/// What a route's pointers found in a payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The entity key.
    pub key: Option<String>,
    /// The entity version.
    pub version: Option<u64>,
    /// When the change happened (Unix ms).
    pub timestamp: Option<i64>,
}

impl Conflict {
    /// The settings of a route's `conflict` section.
    pub fn new(config: &ConflictConfig) -> Self {
        Conflict {
            strategy: config.strategy,
            resolver: config.resolver.clone(),
            key: config.key.clone(),
            version: config.version.clone(),
            timestamp: config.timestamp.clone(),
        }
    }

    /// Reads the key, version and timestamp the route's pointers point at in a JSON payload.
    /// A pointer that finds nothing, or a value of the wrong kind, gives nothing (the event's own
    /// metadata is used instead).
    pub fn extract(&self, payload: &[u8]) -> Extracted {
        if self.key.is_none() && self.version.is_none() && self.timestamp.is_none() {
            return Extracted::default();
        }
        let Ok(document) = serde_json::from_slice::<Value>(payload) else {
            return Extracted::default();
        };
        let at = |pointer: &Option<String>| pointer.as_deref().and_then(|p| document.pointer(p));
        Extracted {
            key: at(&self.key).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            version: at(&self.version)
                .and_then(|v| match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                })
                .filter(|v| i64::try_from(*v).is_ok()),
            timestamp: at(&self.timestamp).and_then(|v| match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => rfc3339_ms(s),
                _ => None,
            }),
        }
    }
}

/// An RFC 3339 time as Unix milliseconds.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// What to do with a delivery, given what its destination holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it.
    Deliver,
    /// Send this body instead (a resolver merged the versions).
    DeliverBody(Vec<u8>),
    /// Do not send it: the destination holds a newer version, carried by `winner`.
    Supersede {
        /// The event whose version won.
        winner: String,
        /// Why, for the record.
        reason: String,
    },
    /// It cannot be checked: a dead letter with this error.
    Fail(String),
    /// It cannot be checked now (the resolver found the sandbox busy): try again later, by the
    /// retry schedule, with this error recorded.
    Later(String),
}

/// Decides for the `last-write-wins` and `version` strategies (the `plugin` strategy asks its
/// resolver; `none` always delivers).
pub fn decide(row: &OutboxRow, current: Option<&EntityState>) -> Decision {
    let action = &row.action;
    let Some(current) = current else {
        return match (action.conflict, action.version) {
            (Strategy::Version, None) => Decision::Fail(needs_version()),
            _ => Decision::Deliver,
        };
    };
    match action.conflict {
        Strategy::None | Strategy::Plugin => Decision::Deliver,
        Strategy::LastWriteWins => {
            let incoming = (action.timestamp, &row.event_id, row.id);
            let held = (current.timestamp, &current.event_id, current.outbox_id);
            if incoming > held {
                Decision::Deliver
            } else {
                Decision::Supersede {
                    winner: current.event_id.clone(),
                    reason: format!(
                        "the destination holds a version written at {} ms, not before this one's {} ms",
                        current.timestamp, action.timestamp
                    ),
                }
            }
        }
        Strategy::Version => match (action.version, current.version) {
            (None, _) => Decision::Fail(needs_version()),
            (Some(_), None) => Decision::Deliver,
            (Some(incoming), Some(held)) if incoming > held => Decision::Deliver,
            (Some(incoming), Some(held)) => Decision::Supersede {
                winner: current.event_id.clone(),
                reason: format!(
                    "the destination holds version {held}; version {incoming} is not newer"
                ),
            },
        },
    }
}

fn needs_version() -> String {
    "the `version` strategy needs a version: set one in the event (`hms-version`), the \
     plugin's action, or the route's `conflict.version` pointer"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OutboxAction, OutboxKind, OutboxState};

    fn row(strategy: Strategy, version: Option<u64>, timestamp: i64, event: &str) -> OutboxRow {
        OutboxRow {
            id: 1,
            event_id: event.into(),
            event_seq: 1,
            action: OutboxAction {
                kind: OutboxKind::Deliver,
                target: "d".into(),
                idempotency_key: format!("{event}.0.0"),
                origin: "hms".into(),
                content_type: "application/json".into(),
                headers: Vec::new(),
                body: Vec::new(),
                key: Some("k".into()),
                version,
                timestamp,
                hops: 1,
                path: vec!["hms".into()],
                conflict: strategy,
                resolver: None,
                skip: None,
            },
            state: OutboxState::Pending,
            attempts: 0,
            round_attempts: 0,
            round_started_at: 0,
            next_attempt_at: 0,
            last_error: None,
            created_at: 0,
            finished_at: None,
            superseded_by: None,
        }
    }

    fn held(version: Option<u64>, timestamp: i64, event: &str) -> EntityState {
        EntityState {
            version,
            timestamp,
            event_id: event.into(),
            outbox_id: 1,
            content_type: "application/json".into(),
            body: None,
        }
    }

    #[test]
    fn version_needs_a_strictly_greater_version() {
        let current = held(Some(3), 0, "e3");
        assert_eq!(
            decide(&row(Strategy::Version, Some(4), 0, "e4"), Some(&current)),
            Decision::Deliver
        );
        let stale = decide(&row(Strategy::Version, Some(3), 0, "e5"), Some(&current));
        assert!(
            matches!(stale, Decision::Supersede { ref winner, .. } if winner == "e3"),
            "{stale:?}"
        );
        assert!(matches!(
            decide(&row(Strategy::Version, None, 0, "e6"), Some(&current)),
            Decision::Fail(_)
        ));
        assert!(matches!(
            decide(&row(Strategy::Version, None, 0, "e6"), None),
            Decision::Fail(_)
        ));
        assert_eq!(
            decide(&row(Strategy::Version, Some(1), 0, "e1"), None),
            Decision::Deliver
        );
    }

    #[test]
    fn last_write_wins_breaks_ties_by_event_id() {
        let current = held(None, 100, "e-b");
        assert_eq!(
            decide(
                &row(Strategy::LastWriteWins, None, 101, "e-a"),
                Some(&current)
            ),
            Decision::Deliver
        );
        assert!(matches!(
            decide(
                &row(Strategy::LastWriteWins, None, 99, "e-z"),
                Some(&current)
            ),
            Decision::Supersede { .. }
        ));
        assert_eq!(
            decide(
                &row(Strategy::LastWriteWins, None, 100, "e-c"),
                Some(&current)
            ),
            Decision::Deliver
        );
        assert!(matches!(
            decide(
                &row(Strategy::LastWriteWins, None, 100, "e-a"),
                Some(&current)
            ),
            Decision::Supersede { .. }
        ));
    }

    #[test]
    fn none_and_plugin_deliver_here() {
        let current = held(Some(9), 9, "e9");
        assert_eq!(
            decide(&row(Strategy::None, Some(1), 1, "e1"), Some(&current)),
            Decision::Deliver
        );
        assert_eq!(
            decide(&row(Strategy::Plugin, Some(1), 1, "e1"), Some(&current)),
            Decision::Deliver
        );
    }

    #[test]
    fn pointers_read_the_payload() {
        let conflict = Conflict::new(&ConflictConfig {
            strategy: Strategy::Version,
            resolver: None,
            key: Some("/taxYear".into()),
            version: Some("/meta/version".into()),
            timestamp: Some("/updatedAt".into()),
        });
        let found = conflict.extract(
            br#"{"taxYear": 2025, "meta": {"version": "7"}, "updatedAt": "2026-01-01T00:00:00Z"}"#,
        );
        assert_eq!(found.key.as_deref(), Some("2025"));
        assert_eq!(found.version, Some(7));
        assert_eq!(found.timestamp, Some(1_767_225_600_000));
        assert_eq!(conflict.extract(b"not json"), Extracted::default());
        assert_eq!(
            conflict.extract(br#"{"meta": {"version": true}}"#).version,
            None
        );
    }
}
