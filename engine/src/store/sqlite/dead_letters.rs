//! Dead letters: a delivery that gave up or a plugin run that failed, kept until replayed.

use super::columns::{named, read_all};
use crate::store::{DeadLetter, DeadLetterFilter, DeadLetterKind, ReplayOutcome, StoreError};
use rusqlite::{Connection, Row, params};

/// A dead letter to insert.
pub(super) struct NewDeadLetter<'a> {
    pub(super) kind: DeadLetterKind,
    pub(super) event_id: &'a str,
    pub(super) run_id: i64,
    pub(super) outbox_id: Option<i64>,
    /// The destination (`hms-core` for emits) or the plugin.
    pub(super) target: &'a str,
    pub(super) error: &'a str,
    pub(super) at: i64,
}

pub(super) fn insert(conn: &Connection, d: &NewDeadLetter<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (kind, event_id, run_id, outbox_id, target, error, created_at,
             state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'dead')",
    )?
    .execute(params![
        d.kind.as_str(),
        d.event_id,
        d.run_id,
        d.outbox_id,
        d.target,
        d.error,
        d.at
    ])?;
    Ok(())
}

/// The columns [`row`] reads (from `dead_letters d`, `events e` and `runs r`).
pub(super) const DEAD_LETTER_COLUMNS: &str = "d.id AS id, d.kind AS kind, d.event_id AS event_id,
    e.event_type AS event_type, d.target AS target, r.plugin AS plugin,
    r.plugin_hash AS plugin_hash, d.outbox_id AS outbox_id, d.error AS error,
    d.created_at AS created_at, d.replayed_at AS replayed_at";

/// A dead letter, read by column name.
pub(super) fn row(row: &Row<'_>) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: row.get("id")?,
        kind: named(row, "kind", DeadLetterKind::parse)?,
        event_id: row.get("event_id")?,
        event_type: row.get("event_type")?,
        target: row.get("target")?,
        plugin: row.get("plugin")?,
        plugin_hash: row.get("plugin_hash")?,
        outbox_id: row.get("outbox_id")?,
        error: row.get("error")?,
        created_at: row.get("created_at")?,
        replayed_at: row.get("replayed_at")?,
    })
}

/// The dead letters `filter` selects, oldest first.
pub(super) fn list(
    conn: &Connection,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut sql = format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters d
         JOIN events e ON e.id = d.event_id JOIN runs r ON r.id = d.run_id WHERE 1 = 1"
    );
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if !filter.include_replayed {
        sql.push_str(" AND d.state = 'dead'");
    }
    if !filter.ids.is_empty() {
        // One parameter however many ids (SQLite takes at most 32,766 parameters).
        sql.push_str(" AND d.id IN (SELECT value FROM json_each(?))");
        values.push(super::columns::json_ints(&filter.ids).into());
    }
    if let Some(target) = &filter.target {
        sql.push_str(" AND d.target = ?");
        values.push(target.clone().into());
    }
    if let Some(since) = filter.since {
        sql.push_str(" AND d.created_at >= ?");
        values.push(since.into());
    }
    if let Some(until) = filter.until {
        sql.push_str(" AND d.created_at < ?");
        values.push(until.into());
    }
    if let Some(after) = filter.after {
        sql.push_str(" AND d.id > ?");
        values.push(after.into());
    }
    sql.push_str(" ORDER BY d.id");
    if filter.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", filter.limit));
    }
    let mut stmt = conn.prepare(&sql)?;
    read_all(stmt.query(rusqlite::params_from_iter(values))?, row)
}

/// Queues selected dead letters again: a delivery goes back to pending with a fresh retry
/// schedule; a plugin failure makes its event pending again, so that handler runs again (and
/// only that handler). Only dead letters not yet replayed are taken, so a replay never
/// duplicates what is already pending.
pub(super) fn replay(
    conn: &Connection,
    filter: &DeadLetterFilter,
    now: i64,
) -> Result<ReplayOutcome, StoreError> {
    let selection = DeadLetterFilter {
        include_replayed: true,
        limit: 0,
        after: None,
        ..filter.clone()
    };
    let selected = list(conn, &selection)?;
    let mut outcome = ReplayOutcome::default();
    let found: std::collections::HashSet<i64> = selected.iter().map(|d| d.id).collect();
    for id in &filter.ids {
        if !found.contains(id) {
            outcome
                .skipped
                .push((*id, "no dead letter has this id".into()));
        }
    }
    for dead in selected {
        if dead.replayed_at.is_some() {
            outcome.skipped.push((dead.id, "already replayed".into()));
            continue;
        }
        match dead.kind {
            DeadLetterKind::Delivery => {
                let requeued = conn
                    .prepare_cached(
                        "UPDATE outbox SET state = 'pending', round_attempts = 0,
                             round_started_at = ?2, next_attempt_at = ?2, finished_at = NULL
                         WHERE id = ?1 AND state = 'dead'",
                    )?
                    .execute(params![dead.outbox_id, now])?;
                if requeued == 0 {
                    outcome
                        .skipped
                        .push((dead.id, "its delivery is no longer dead".into()));
                    continue;
                }
            }
            DeadLetterKind::Plugin => {
                let run_id: i64 = conn
                    .prepare_cached("SELECT run_id FROM dead_letters WHERE id = ?1")?
                    .query_row([dead.id], |row| row.get("run_id"))?;
                conn.prepare_cached("UPDATE runs SET replayed_at = ?2 WHERE id = ?1")?
                    .execute(params![run_id, now])?;
                conn.prepare_cached(
                    "UPDATE events SET processed_at = NULL, generation = generation + 1
                     WHERE id = ?1",
                )?
                .execute([&dead.event_id])?;
            }
        }
        conn.prepare_cached(
            "UPDATE dead_letters SET state = 'replayed', replayed_at = ?2 WHERE id = ?1",
        )?
        .execute(params![dead.id, now])?;
        outcome.replayed.push(dead.id);
    }
    Ok(outcome)
}
