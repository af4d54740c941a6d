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
    AttemptRecord, CORE_TARGET, DeadLetterKind, EntityHolds, EntityRef, EntityState, Next,
    OutboxAction, OutboxKind, OutboxRow, OutboxState, Processed, StoreError, SupersedeRecord,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Inserts the row for one action of a processed event's run. A drop action, or an action
/// with a reason not to send it, is stored as dropped. Returns the row when it is pending.
pub(super) fn insert(
    conn: &Connection,
    p: &Processed,
    run_id: i64,
    action: &OutboxAction,
) -> Result<Option<OutboxRow>, StoreError> {
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
    Ok((state == OutboxState::Pending).then(|| OutboxRow {
        id: conn.last_insert_rowid(),
        event_id: p.event_id.clone(),
        event_seq: p.event_seq,
        action: action.clone(),
        state,
        attempts: 0,
        round_attempts: 0,
        round_started_at: p.processed_at,
        next_attempt_at: p.processed_at,
        last_error: None,
        created_at: p.processed_at,
        finished_at: None,
        superseded_by: None,
    }))
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

/// A row's lane, as SQL: the expression of the `outbox_lane` index.
pub(super) const LANE: &str = "(CASE kind WHEN 'emit' THEN 'hms-core' ELSE target END)";

/// The lanes with pending rows.
pub(super) fn lanes(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT {LANE} AS lane FROM outbox WHERE state = 'pending'"
    ))?;
    read_all(stmt.query([])?, |row| Ok(row.get("lane")?))
}

/// Up to `limit` pending rows of `lane` after `after` in (event_seq, id) order.
pub(super) fn pending(
    conn: &Connection,
    lane: &str,
    after: Option<(i64, i64)>,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let (seq, id) = after.unwrap_or((i64::MIN, i64::MIN));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox
         WHERE state = 'pending' AND {LANE} = ?1 AND (event_seq, id) > (?2, ?3)
         ORDER BY event_seq, id LIMIT ?4"
    ))?;
    read_all(stmt.query(params![lane, seq, id, from_usize(limit)])?, row)
}

/// Records an attempt and moves its outbox row on; a row that gives up becomes a dead letter.
/// Returns the pending rows a delivered version superseded.
pub(super) fn record_attempt(conn: &Connection, a: &AttemptRecord) -> Result<Vec<i64>, StoreError> {
    let attempt = &a.attempt;
    // An attempt already recorded (its record sent again after the answer was lost, or applied
    // again from a log) is not counted twice.
    let recorded: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM attempts WHERE outbox_id = ?1 AND attempt = ?2)",
        )?
        .query_row(params![a.outbox_id, attempt.number], |row| row.get(0))?;
    if recorded {
        return Ok(Vec::new());
    }
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
    // Whether the row was still pending.
    let updated =
        conn.prepare_cached(
            "UPDATE outbox SET state = ?2, attempts = attempts + 1,
                 round_attempts = round_attempts + 1, next_attempt_at = ?3, last_error = ?4,
                 finished_at = ?5
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![
            a.outbox_id,
            state.as_str(),
            next_at,
            attempt.error,
            finished_at
        ])? == 1;
    let mut superseded = Vec::new();
    if updated
        && a.next == Next::Delivered
        && let Some(holds) = &a.holds
    {
        superseded = record_entity_state(conn, holds, finished)?;
    }
    if updated && a.next == Next::Dead {
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
/// Returns them. The conditions are [`crate::conflict`]'s, kept in agreement with its
/// `decide`.
fn record_entity_state(
    conn: &Connection,
    holds: &EntityHolds,
    at: i64,
) -> Result<Vec<i64>, StoreError> {
    let (entity, state) = (&holds.entity, &holds.state);
    let newer = conflict_sql::state_is_newer(holds.strategy);
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
        entity.kind.as_str(),
        entity.target,
        entity.key,
        from_u64(state.version),
        state.timestamp,
        state.event_id,
        state.outbox_id,
        state.content_type,
        state.body,
        at,
    ])?;
    let Some(stale) = conflict_sql::row_is_stale(holds.strategy, state.version.is_some()) else {
        return Ok(Vec::new());
    };
    let mut update = conn.prepare_cached(&format!(
        "UPDATE outbox SET state = 'superseded', superseded_by = ?6, finished_at = ?8,
             reason = 'the destination already holds a newer version'
         WHERE state = 'pending' AND kind = ?1 AND target = ?2 AND entity_key = ?3
           AND id != ?4 AND {stale}
         RETURNING id"
    ))?;
    let superseded = update
        .query_map(
            params![
                entity.kind.as_str(),
                entity.target,
                entity.key,
                state.outbox_id,
                state.timestamp,
                state.event_id,
                from_u64(state.version),
                at,
            ],
            |row| row.get::<_, i64>("id"),
        )?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(superseded)
}

/// Marks a pending row superseded; returns whether it was still pending.
pub(super) fn supersede(conn: &Connection, s: &SupersedeRecord) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE outbox SET state = 'superseded', superseded_by = ?2, reason = ?3,
                 finished_at = ?4
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![s.outbox_id, s.winner, s.reason, s.at])?;
    Ok(changed == 1)
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

/// Forgets what the target holds for an entity, so the next update of it is sent whatever its
/// version or timestamp; answers what was held.
pub(super) fn reset_entity_state(
    conn: &Connection,
    entity: &EntityRef,
) -> Result<Option<EntityState>, StoreError> {
    let held = entity_state(conn, entity)?;
    conn.prepare_cached(
        "DELETE FROM entity_state WHERE kind = ?1 AND target = ?2 AND entity_key = ?3",
    )?
    .execute(params![entity.kind.as_str(), entity.target, entity.key])?;
    Ok(held)
}
