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
//!
//! The same rules, written as SQL for the embedded store ([`sql`]), keep the stored state moving
//! only forward and supersede the pending rows a delivery makes stale; a test holds them in
//! agreement with [`decide`].

use crate::config::{ConflictConfig, Strategy};
use crate::store::{EntityState, OutboxRow};
use serde_json::Value;

/// A route's conflict settings, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The strategy.
    pub strategy: Strategy,
    /// The resolver plugin's name, for the `plugin` strategy.
    pub resolver: Option<String>,
    key: Option<String>,
    version: Option<String>,
    timestamp: Option<String>,
    /// How deep a payload may nest (`maxJsonDepth`), as acceptance checks it.
    max_depth: usize,
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
    /// The settings of a route's `conflict` section, for payloads nested at most `max_depth`
    /// levels (`maxJsonDepth`).
    pub fn new(config: &ConflictConfig, max_depth: usize) -> Self {
        Conflict {
            strategy: config.strategy,
            resolver: config.resolver.clone(),
            key: config.key.clone(),
            version: config.version.clone(),
            timestamp: config.timestamp.clone(),
            max_depth,
        }
    }

    /// Whether the route reads its entity keys from payloads (`conflict.key`): then a
    /// delivery or emission that ends up with no key is never sent unkeyed.
    pub fn keyed(&self) -> bool {
        self.key.is_some()
    }

    /// Reads the key, version and timestamp the route's pointers point at in a JSON payload,
    /// read by the rules acceptance checks it with ([`crate::json`]). A pointer that finds
    /// nothing, or a value of the wrong kind, gives nothing (the event's own metadata is used
    /// instead); so does a payload those rules refuse (one stored before they applied).
    pub fn extract(&self, payload: &[u8]) -> Extracted {
        if self.key.is_none() && self.version.is_none() && self.timestamp.is_none() {
            return Extracted::default();
        }
        let Ok(document) = crate::json::parse(payload, self.max_depth) else {
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

/// The rules of [`decide`] as SQL conditions, for a store that keeps conflict state in SQL.
pub mod sql {
    use crate::config::Strategy;

    /// When a delivered version replaces the state held for its entity: the condition of an
    /// upsert's `DO UPDATE ... WHERE`, over `excluded` (the delivered version: `version`,
    /// `timestamp`, `event_id`, `outbox_id`) and `entity_state` (the held one). True exactly
    /// when [`super::decide`] would deliver the version against that state, so the state only
    /// moves forward, whatever order deliveries are recorded in.
    pub fn state_is_newer(strategy: Strategy) -> &'static str {
        match strategy {
            Strategy::Version => {
                "excluded.version > entity_state.version OR entity_state.version IS NULL"
            }
            Strategy::LastWriteWins => {
                "(excluded.timestamp, excluded.event_id, excluded.outbox_id)
                     > (entity_state.timestamp, entity_state.event_id, entity_state.outbox_id)"
            }
            // A resolver's choice is final; `none` keeps no state.
            Strategy::Plugin | Strategy::None => "1",
        }
    }

    /// Which pending rows of the same entity a delivered version makes stale, over the pending
    /// row's columns (`conflict`, `timestamp`, `event_id`, `id`, `version`) and the delivered
    /// row's values as parameters `?4` (its id), `?5` (timestamp), `?6` (event id) and `?7`
    /// (version). True exactly when [`super::decide`] would supersede the pending row once the
    /// delivered version is held. `None` when a strategy supersedes nothing ahead of time.
    pub fn row_is_stale(strategy: Strategy, has_version: bool) -> Option<&'static str> {
        match strategy {
            Strategy::LastWriteWins => {
                Some("conflict = 'last-write-wins' AND (timestamp, event_id, id) < (?5, ?6, ?4)")
            }
            Strategy::Version if has_version => {
                Some("conflict = 'version' AND version IS NOT NULL AND version <= ?7")
            }
            _ => None,
        }
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

    fn row(strategy: Strategy, version: Option<u64>, timestamp: i64, event: &str) -> OutboxRow {
        row_with_id(1, strategy, version, timestamp, event)
    }

    fn row_with_id(
        id: i64,
        strategy: Strategy,
        version: Option<u64>,
        timestamp: i64,
        event: &str,
    ) -> OutboxRow {
        let mut row = crate::store::samples::row(id, event, "d", Some("k"));
        row.action.conflict = strategy;
        row.action.version = version;
        row.action.timestamp = timestamp;
        row
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
        let conflict = Conflict::new(
            &ConflictConfig {
                strategy: Strategy::Version,
                resolver: None,
                key: Some("/taxYear".into()),
                version: Some("/meta/version".into()),
                timestamp: Some("/updatedAt".into()),
            },
            crate::json::DEFAULT_MAX_DEPTH,
        );
        let found = conflict.extract(
            br#"{"taxYear": 2025, "meta": {"version": "7"}, "updatedAt": "2026-01-01T00:00:00Z"}"#,
        );
        assert_eq!(found.key.as_deref(), Some("2025"));
        assert_eq!(found.version, Some(7));
        assert_eq!(found.timestamp, Some(1_767_225_600_000));
        assert_eq!(conflict.extract(b"not json"), Extracted::default());
        // What acceptance refuses, the pointers do not read either (a lone surrogate).
        assert_eq!(
            conflict.extract(br#"{"taxYear": 2025, "note": "\ud800"}"#),
            Extracted::default()
        );
        assert_eq!(
            conflict.extract(br#"{"meta": {"version": true}}"#).version,
            None
        );
    }

    /// Versions of one entity: every combination of two timestamps, two event ids, two rows
    /// and three versions (none among them).
    fn versions_of_one_entity(strategy: Strategy) -> Vec<OutboxRow> {
        let mut rows = Vec::new();
        for timestamp in [100, 200] {
            for event in ["e-a", "e-b"] {
                for id in [1, 2] {
                    for version in [None, Some(3), Some(4)] {
                        rows.push(row_with_id(id, strategy, version, timestamp, event));
                    }
                }
            }
        }
        rows
    }

    fn held_after(row: &OutboxRow) -> EntityState {
        EntityState {
            version: row.action.version,
            timestamp: row.action.timestamp,
            event_id: row.event_id.clone(),
            outbox_id: row.id,
            content_type: "application/json".into(),
            body: None,
        }
    }

    fn version_param(row: &OutboxRow) -> Option<i64> {
        row.action.version.map(|v| i64::try_from(v).unwrap())
    }

    #[test]
    fn the_sql_conditions_agree_with_decide() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("agree.db")).unwrap();
        for strategy in [Strategy::LastWriteWins, Strategy::Version] {
            let rows = versions_of_one_entity(strategy);
            let newer = format!(
                "SELECT {} FROM
                   (SELECT ?1 AS version, ?2 AS timestamp, ?3 AS event_id, ?4 AS outbox_id)
                     AS excluded,
                   (SELECT ?5 AS version, ?6 AS timestamp, ?7 AS event_id, ?8 AS outbox_id)
                     AS entity_state",
                sql::state_is_newer(strategy)
            );
            for incoming in &rows {
                for delivered in &rows {
                    let held = held_after(delivered);
                    let decision = decide(incoming, Some(&held));
                    // The state moves to `incoming` exactly when `decide` delivers it (a version
                    // that cannot be checked is never delivered, so never reaches the store).
                    if !matches!(decision, Decision::Fail(_)) {
                        let moves: bool = conn
                            .query_row(
                                &newer,
                                rusqlite::params![
                                    version_param(incoming),
                                    incoming.action.timestamp,
                                    incoming.event_id,
                                    incoming.id,
                                    version_param(delivered),
                                    delivered.action.timestamp,
                                    delivered.event_id,
                                    delivered.id,
                                ],
                                |r| r.get::<_, Option<bool>>(0),
                            )
                            .unwrap()
                            .unwrap_or(false);
                        assert_eq!(
                            moves,
                            decision == Decision::Deliver,
                            "{strategy:?}: {incoming:?} over {held:?}"
                        );
                    }
                    // A pending row is superseded early exactly when `decide` would supersede
                    // it on its turn.
                    if incoming.id == delivered.id {
                        continue;
                    }
                    let Some(stale) =
                        sql::row_is_stale(strategy, delivered.action.version.is_some())
                    else {
                        continue;
                    };
                    let query = format!(
                        "SELECT {stale} FROM (SELECT ?1 AS conflict, ?2 AS timestamp,
                             ?3 AS event_id, ?8 AS id, ?9 AS version)"
                    );
                    let superseded: bool = conn
                        .query_row(
                            &query,
                            rusqlite::params![
                                strategy.as_str(),
                                incoming.action.timestamp,
                                incoming.event_id,
                                delivered.id,
                                delivered.action.timestamp,
                                delivered.event_id,
                                version_param(delivered),
                                incoming.id,
                                version_param(incoming),
                            ],
                            |r| r.get::<_, Option<bool>>(0),
                        )
                        .unwrap()
                        .unwrap_or(false);
                    assert_eq!(
                        superseded,
                        matches!(decision, Decision::Supersede { .. }),
                        "{strategy:?}: pending {incoming:?} after {held:?}"
                    );
                }
            }
        }
    }
}
