//! The outbox: rows made from plugins' actions, which of them are due (in order per entity),
//! attempts and what follows them, and the conflict state each delivery leaves.

use super::columns::{
    from_u64, from_usize, headers_from_json, headers_json, named, path_from_text, path_text,
    read_all, to_u64,
};
use super::dead_letters;
use crate::config::Strategy;
use crate::conflict::sql as conflict_sql;
use crate::store::{
    AttemptRecord, CORE_TARGET, DeadLetterKind, DueQuery, EntityRef, EntityState, Next,
    OutboxAction, OutboxKind, OutboxRow, OutboxState, Processed, StoreError, SupersedeRecord,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Inserts the row for one action of a processed event's run. A drop action, or an action
/// with a reason not to send it, is stored as dropped.
pub(super) fn insert(
    conn: &Connection,
    p: &Processed,
    run_id: i64,
    action: &OutboxAction,
) -> Result<(), StoreError> {
    let state = match (action.kind, &action.reason) {
        (OutboxKind::Drop, _) | (_, Some(_)) => OutboxState::Dropped,
        (OutboxKind::Deliver | OutboxKind::Emit, None) => OutboxState::Pending,
    };
    let finished_at = (state == OutboxState::Dropped).then_some(p.processed_at);
    conn.prepare_cached(
        "INSERT INTO outbox (event_id, event_seq, run_id, kind, target, idempotency_key,
             origin, content_type, headers, body, entity_key, version, timestamp, state,
             round_started_at, next_attempt_at, created_at, finished_at, hops, conflict,
             resolver, reason, path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15,
             ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?
    .execute(params![
        p.event_id,
        p.event_seq,
        run_id,
        action.kind.as_str(),
        action.target,
        action.idempotency_key,
        action.origin,
        action.content_type,
        headers_json(&action.headers),
        action.body,
        action.key,
        from_u64(action.version),
        action.timestamp,
        state.as_str(),
        p.processed_at,
        finished_at,
        action.hops,
        action.conflict.as_str(),
        action.resolver,
        action.reason,
        path_text(&action.path),
    ])?;
    Ok(())
}

/// The columns [`row`] reads.
pub(super) const OUTBOX_COLUMNS: &str = "id, event_id, event_seq, kind, target, reason,
    idempotency_key, origin, content_type, headers, body, entity_key, version, timestamp, state,
    attempts, round_attempts, round_started_at, next_attempt_at, last_error, created_at,
    finished_at, hops, conflict, resolver, superseded_by, path";

/// An outbox row, read by column name.
pub(super) fn row(row: &Row<'_>) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: row.get("id")?,
        event_id: row.get("event_id")?,
        event_seq: row.get("event_seq")?,
        action: OutboxAction {
            kind: named(row, "kind", OutboxKind::parse)?,
            target: row.get("target")?,
            reason: row.get("reason")?,
            idempotency_key: row.get("idempotency_key")?,
            origin: row.get("origin")?,
            content_type: row.get("content_type")?,
            headers: headers_from_json(&row.get::<_, String>("headers")?)?,
            body: row.get("body")?,
            key: row.get("entity_key")?,
            version: to_u64(row.get("version")?),
            timestamp: row.get("timestamp")?,
            hops: row.get("hops")?,
            path: path_from_text(&row.get::<_, String>("path")?),
            conflict: named(row, "conflict", Strategy::parse)?,
            resolver: row.get("resolver")?,
        },
        state: named(row, "state", OutboxState::parse)?,
        attempts: row.get("attempts")?,
        round_attempts: row.get("round_attempts")?,
        round_started_at: row.get("round_started_at")?,
        next_attempt_at: row.get("next_attempt_at")?,
        last_error: row.get("last_error")?,
        created_at: row.get("created_at")?,
        finished_at: row.get("finished_at")?,
        superseded_by: row.get("superseded_by")?,
    })
}

/// Pending rows due by `q.now`, soonest first, skipping `q.skip` and the targets in `q.busy`
/// (destination names; `hms-core` for emitted events). A row with an entity key is due only
/// when it is the oldest pending row of its (kind, target, key) by event acceptance order,
/// and when every event accepted before its own has been processed (so no older row for its
/// key can still appear).
pub(super) fn due(conn: &Connection, q: &DueQuery) -> Result<Vec<OutboxRow>, StoreError> {
    // The busy targets are few (at most one per destination); they go into the query so one
    // saturated destination's backlog cannot hide every other destination's due rows.
    let marks = vec!["?"; q.busy.len()].join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o
         WHERE o.state = 'pending' AND o.next_attempt_at <= ?
           AND o.id NOT IN (SELECT value FROM json_each(?))
           AND (CASE o.kind WHEN 'emit' THEN '{CORE_TARGET}' ELSE o.target END) NOT IN ({marks})
           AND (o.entity_key IS NULL OR (
                o.event_seq < (SELECT COALESCE(MIN(seq), 9223372036854775807)
                               FROM events WHERE processed_at IS NULL)
                AND NOT EXISTS (
                    SELECT 1 FROM outbox p
                    WHERE p.state = 'pending' AND p.kind = o.kind AND p.target = o.target
                      AND p.entity_key = o.entity_key
                      AND (p.event_seq < o.event_seq OR (p.event_seq = o.event_seq AND p.id < o.id)))))
         ORDER BY o.next_attempt_at, o.id LIMIT ?"
    ))?;
    let skip = serde_json::to_string(&q.skip).unwrap_or_else(|_| "[]".to_owned());
    let mut values: Vec<rusqlite::types::Value> = vec![q.now.into(), skip.into()];
    values.extend(q.busy.iter().map(|b| b.clone().into()));
    values.push(from_usize(q.limit).into());
    read_all(stmt.query(rusqlite::params_from_iter(values))?, row)
}

/// When the first pending row due after `after` (Unix ms) is due, if any is.
pub(super) fn next_due(conn: &Connection, after: i64) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(next_attempt_at) AS next FROM outbox
             WHERE state = 'pending' AND next_attempt_at > ?1",
        )?
        .query_row([after], |row| row.get::<_, Option<i64>>("next"))
        .optional()?
        .flatten())
}

/// Records an attempt and moves its outbox row on; a row that gives up becomes a dead letter.
/// Returns how many pending rows a delivered version superseded.
pub(super) fn record_attempt(conn: &Connection, a: &AttemptRecord) -> Result<usize, StoreError> {
    let attempt = &a.attempt;
    conn.prepare_cached(
        "INSERT INTO attempts (outbox_id, attempt, started_at, duration_ms, status, error, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        a.outbox_id,
        attempt.number,
        attempt.started_at,
        attempt.duration_ms,
        attempt.status,
        attempt.error,
        a.next.outcome().as_str(),
    ])?;
    let finished = attempt.started_at + attempt.duration_ms;
    let (state, next_at, finished_at) = match a.next {
        Next::Delivered => (OutboxState::Delivered, finished, Some(finished)),
        Next::RetryAt(at) => (OutboxState::Pending, at, None),
        Next::Dead => (OutboxState::Dead, finished, Some(finished)),
    };
    // Whether the row was still pending, and whether it has conflict state to keep.
    let updated: Option<bool> = conn
        .prepare_cached(
            "UPDATE outbox SET state = ?2, attempts = attempts + 1,
                 round_attempts = round_attempts + 1, next_attempt_at = ?3, last_error = ?4,
                 finished_at = ?5
             WHERE id = ?1 AND state = 'pending'
             RETURNING entity_key IS NOT NULL AND conflict != 'none' AS keeps_state",
        )?
        .query_row(
            params![
                a.outbox_id,
                state.as_str(),
                next_at,
                attempt.error,
                finished_at
            ],
            |row| row.get("keeps_state"),
        )
        .optional()?;
    let mut superseded = 0;
    if updated == Some(true) && a.next == Next::Delivered {
        superseded = record_entity_state(conn, a, finished)?;
    }
    if updated.is_some() && a.next == Next::Dead {
        let (event_id, run_id, kind, target): (String, i64, String, String) = conn
            .prepare_cached("SELECT event_id, run_id, kind, target FROM outbox WHERE id = ?1")?
            .query_row([a.outbox_id], |row| {
                Ok((
                    row.get("event_id")?,
                    row.get("run_id")?,
                    row.get("kind")?,
                    row.get("target")?,
                ))
            })?;
        let target = if kind == OutboxKind::Emit.as_str() {
            CORE_TARGET
        } else {
            &target
        };
        dead_letters::insert(
            conn,
            &dead_letters::NewDeadLetter {
                kind: DeadLetterKind::Delivery,
                event_id: &event_id,
                run_id,
                outbox_id: Some(a.outbox_id),
                target,
                error: attempt.error.as_deref().unwrap_or("gave up"),
                at: finished,
            },
        )?;
    }
    Ok(superseded)
}

/// After a delivery with a conflict strategy and an entity key succeeds: remembers what the
/// destination now holds (only ever forward), and supersedes the pending rows for the same
/// entity that this version makes stale (they would only be refused when their turn came).
/// Returns how many. The conditions are [`crate::conflict`]'s, kept in agreement with its
/// `decide`.
fn record_entity_state(conn: &Connection, a: &AttemptRecord, at: i64) -> Result<usize, StoreError> {
    let delivered = conn
        .prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1"
        ))?
        .query_row([a.outbox_id], |r| Ok(row(r)))??;
    let action = &delivered.action;
    let Some(key) = &action.key else {
        return Ok(0);
    };
    if action.conflict == Strategy::None {
        return Ok(0);
    }
    let body = match action.conflict {
        Strategy::Plugin => Some(a.merged_body.as_ref().unwrap_or(&action.body)),
        _ => None,
    };
    let newer = conflict_sql::state_is_newer(action.conflict);
    conn.prepare_cached(&format!(
        "INSERT INTO entity_state (kind, target, entity_key, version, timestamp, event_id,
             outbox_id, content_type, body, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (kind, target, entity_key) DO UPDATE SET
             version = excluded.version, timestamp = excluded.timestamp,
             event_id = excluded.event_id, outbox_id = excluded.outbox_id,
             content_type = excluded.content_type, body = excluded.body,
             updated_at = excluded.updated_at
         WHERE {newer}"
    ))?
    .execute(params![
        action.kind.as_str(),
        action.target,
        key,
        from_u64(action.version),
        action.timestamp,
        delivered.event_id,
        a.outbox_id,
        action.content_type,
        body,
        at,
    ])?;
    let Some(stale) = conflict_sql::row_is_stale(action.conflict, action.version.is_some()) else {
        return Ok(0);
    };
    let superseded = conn
        .prepare_cached(&format!(
            "UPDATE outbox SET state = 'superseded', superseded_by = ?6, finished_at = ?8,
                 reason = 'the destination already holds a newer version'
             WHERE state = 'pending' AND kind = ?1 AND target = ?2 AND entity_key = ?3
               AND id != ?4 AND {stale}"
        ))?
        .execute(params![
            action.kind.as_str(),
            action.target,
            key,
            a.outbox_id,
            action.timestamp,
            delivered.event_id,
            from_u64(action.version),
            at,
        ])?;
    Ok(superseded)
}

/// Marks a pending row superseded.
pub(super) fn supersede(conn: &Connection, s: &SupersedeRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'superseded', superseded_by = ?2, reason = ?3,
             finished_at = ?4
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![s.outbox_id, s.winner, s.reason, s.at])?;
    Ok(())
}

/// What a target last got for an entity.
pub(super) fn entity_state(
    conn: &Connection,
    entity: &EntityRef,
) -> Result<Option<EntityState>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT version, timestamp, event_id, outbox_id, content_type, body
             FROM entity_state WHERE kind = ?1 AND target = ?2 AND entity_key = ?3",
        )?
        .query_row(
            params![entity.kind.as_str(), entity.target, entity.key],
            |row| {
                Ok(EntityState {
                    version: to_u64(row.get("version")?),
                    timestamp: row.get("timestamp")?,
                    event_id: row.get("event_id")?,
                    outbox_id: row.get("outbox_id")?,
                    content_type: row.get("content_type")?,
                    body: row.get("body")?,
                })
            },
        )
        .optional()?)
}
