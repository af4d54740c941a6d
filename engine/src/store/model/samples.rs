//! Records for unit tests elsewhere in the engine.

use super::{OutboxAction, OutboxKind, OutboxRow, OutboxState};
use crate::config::Strategy;

/// A pending delivery of event `event` to `target`, for the entity `key` when given: no
/// conflict strategy, version or timestamp (set them on the result).
pub(crate) fn row(id: i64, event: &str, target: &str, key: Option<&str>) -> OutboxRow {
    OutboxRow {
        id,
        event_id: event.into(),
        event_seq: id,
        action: OutboxAction {
            kind: OutboxKind::Deliver,
            target: target.into(),
            reason: None,
            idempotency_key: format!("{event}.0.0"),
            origin: "hms".into(),
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: b"{}".to_vec(),
            key: key.map(str::to_owned),
            version: None,
            timestamp: 0,
            hops: 1,
            path: vec!["hms".into()],
            conflict: Strategy::None,
            resolver: None,
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
