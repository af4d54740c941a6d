//! One event's whole story (the event, its runs, its outbox rows and their attempts, its dead
//! letters), and the backlog figures.

use super::columns::{named, read_all, to_usize};
use super::dead_letters::{self, DEAD_LETTER_COLUMNS};
use super::events::{EVENT_COLUMNS, EVENTS, stored_event};
use super::outbox::{self, OUTBOX_COLUMNS};
use crate::store::{
    Attempt, AttemptOutcome, Backlog, EventHistory, EventQuery, FoundEvent, LaneBacklog, Run,
    RunOutcome, ShadowRun, StoreError,
};
use rusqlite::{Connection, OptionalExtension};

/// Everything recorded about the event `id`; `None` when there is no such event.
pub(super) fn event_history(
    conn: &Connection,
    id: &str,
) -> Result<Option<EventHistory>, StoreError> {
    let event = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE e.id = ?1"
        ))?
        .query_row([id], |row| Ok(stored_event(row)))
        .optional()?
        .transpose()?;
    let Some(event) = event else {
        return Ok(None);
    };
    let runs = conn
        .prepare_cached(
            "SELECT handler, plugin, plugin_hash, outcome, error, duration_us, ran_at, replayed_at
             FROM runs WHERE event_id = ?1 ORDER BY id",
        )?
        .query_map([id], |row| {
            Ok(Run {
                handler: to_usize(row.get("handler")?),
                plugin: row.get("plugin")?,
                plugin_hash: row.get("plugin_hash")?,
                outcome: RunOutcome::parse(&row.get::<_, String>("outcome")?),
                error: row.get("error")?,
                duration_us: row.get("duration_us")?,
                ran_at: row.get("ran_at")?,
                replayed_at: row.get("replayed_at")?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let outbox = read_all(
        conn.prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE event_id = ?1 ORDER BY id"
        ))?
        .query([id])?,
        outbox::row,
    )?;
    let mut attempts_stmt = conn.prepare_cached(
        "SELECT attempt, started_at, duration_ms, status, error, outcome
         FROM attempts WHERE outbox_id = ?1 ORDER BY id",
    )?;
    let outbox = outbox
        .into_iter()
        .map(|row| {
            let attempts = read_all(attempts_stmt.query([row.id])?, |a| {
                Ok(Attempt {
                    number: a.get("attempt")?,
                    started_at: a.get("started_at")?,
                    duration_ms: a.get("duration_ms")?,
                    status: a.get("status")?,
                    error: a.get("error")?,
                    outcome: named(a, "outcome", AttemptOutcome::parse)?,
                })
            })?;
            Ok((row, attempts))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let dead = read_all(
        conn.prepare_cached(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters d
             JOIN events e ON e.id = d.event_id JOIN runs r ON r.id = d.run_id
             WHERE d.event_id = ?1 ORDER BY d.id"
        ))?
        .query([id])?,
        dead_letters::row,
    )?;
    let shadow_runs = read_all(
        conn.prepare_cached(
            "SELECT event_id, handler, plugin, shadow_hash, active_hash, verdict, changes, error,
                 duration_us, ran_at
             FROM shadow_runs WHERE event_id = ?1 ORDER BY id",
        )?
        .query([id])?,
        |row| {
            Ok(ShadowRun {
                event_id: row.get("event_id")?,
                handler: to_usize(row.get("handler")?),
                plugin: row.get("plugin")?,
                shadow_hash: row.get("shadow_hash")?,
                active_hash: row.get("active_hash")?,
                verdict: row.get("verdict")?,
                changes: row.get("changes")?,
                error: row.get("error")?,
                duration_us: row.get("duration_us")?,
                ran_at: row.get("ran_at")?,
            })
        },
    )?;
    Ok(Some(EventHistory {
        event,
        runs,
        outbox,
        dead_letters: dead,
        shadow_runs,
    }))
}

/// How much work is waiting.
pub(super) fn backlog(conn: &Connection) -> Result<Backlog, StoreError> {
    let (pending_events, oldest_event): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*) AS n, MIN(accepted_at) AS oldest FROM events
             WHERE processed_at IS NULL",
        )?
        .query_row([], |row| Ok((row.get("n")?, row.get("oldest")?)))?;
    let (pending_deliveries, oldest_delivery): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*) AS n, MIN(round_started_at) AS oldest FROM outbox
             WHERE state = 'pending'",
        )?
        .query_row([], |row| Ok((row.get("n")?, row.get("oldest")?)))?;
    let dead_letters: i64 = conn
        .prepare_cached("SELECT COUNT(*) AS n FROM dead_letters WHERE state = 'dead'")?
        .query_row([], |row| row.get("n"))?;
    let oldest_pending_at = match (oldest_event, oldest_delivery) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Backlog {
        pending_events: u64::try_from(pending_events).unwrap_or(0),
        pending_deliveries: u64::try_from(pending_deliveries).unwrap_or(0),
        oldest_pending_at,
        dead_letters: u64::try_from(dead_letters).unwrap_or(0),
    })
}

/// How many events the store holds.
pub(super) fn event_count(conn: &Connection) -> Result<u64, StoreError> {
    let count: i64 = conn.query_row("SELECT COUNT(*) AS n FROM events", [], |row| row.get("n"))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The events `query` selects, newest first, without their payloads.
pub(super) fn find_events(
    conn: &Connection,
    query: &EventQuery,
) -> Result<Vec<FoundEvent>, StoreError> {
    let columns = EVENT_COLUMNS.replace("p.payload AS payload", "x'' AS payload");
    let mut sql = format!(
        "SELECT {columns},
             EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id AND o.state = 'pending')
                 AS delivering,
             EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = e.id AND d.state = 'dead')
                 AS dead
         FROM events e WHERE 1 = 1"
    );
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    let mut narrow = |clause: &str, value: rusqlite::types::Value| {
        sql.push_str(clause);
        values.push(value);
    };
    if let Some(id) = &query.id {
        narrow(" AND e.id = ?", id.clone().into());
    }
    if let Some(key) = &query.key {
        narrow(" AND e.entity_key = ?", key.clone().into());
    }
    if let Some(event_type) = &query.event_type {
        narrow(" AND e.event_type = ?", event_type.clone().into());
    }
    if let Some(origin) = &query.origin {
        narrow(" AND e.origin = ?", origin.clone().into());
    }
    if !query.routes.is_empty() {
        // One parameter however many routes.
        let routes = serde_json::to_string(&query.routes).unwrap_or_default();
        narrow(
            " AND e.route IN (SELECT value FROM json_each(?))",
            routes.into(),
        );
    }
    if let Some(since) = query.since {
        narrow(" AND e.accepted_at >= ?", since.into());
    }
    if let Some(until) = query.until {
        narrow(" AND e.accepted_at < ?", until.into());
    }
    if let Some(before) = query.before {
        narrow(" AND e.seq < ?", before.into());
    }
    sql.push_str(&format!(
        " ORDER BY e.seq DESC LIMIT {}",
        query.limit.max(1)
    ));
    let mut stmt = conn.prepare(&sql)?;
    read_all(stmt.query(rusqlite::params_from_iter(values))?, |row| {
        Ok(FoundEvent {
            event: stored_event(row)?,
            delivering: row.get("delivering")?,
            dead: row.get("dead")?,
        })
    })
}

/// The deliveries waiting for each lane that has some, by lane name.
pub(super) fn lanes(conn: &Connection) -> Result<Vec<LaneBacklog>, StoreError> {
    read_all(
        conn.prepare_cached(
            "SELECT CASE kind WHEN 'emit' THEN 'hms-core' ELSE target END AS lane,
                 COUNT(*) AS pending, SUM(round_attempts > 0) AS retrying,
                 MIN(CASE WHEN round_attempts > 0 THEN next_attempt_at END) AS next_retry_at
             FROM outbox WHERE state = 'pending' GROUP BY lane ORDER BY lane",
        )?
        .query([])?,
        |row| {
            Ok(LaneBacklog {
                lane: row.get("lane")?,
                pending: u64::try_from(row.get::<_, i64>("pending")?).unwrap_or(0),
                retrying: u64::try_from(row.get::<_, i64>("retrying")?).unwrap_or(0),
                next_retry_at: row.get("next_retry_at")?,
            })
        },
    )
}

/// Records shadow versions' runs. A run of an event pruned meanwhile is left out.
pub(super) fn insert_shadow_runs(conn: &Connection, runs: &[ShadowRun]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO shadow_runs (event_id, handler, plugin, shadow_hash, active_hash, verdict,
             changes, error, duration_us, ran_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS
             (SELECT 1 FROM events WHERE id = ?1)",
    )?;
    for run in runs {
        insert.execute(rusqlite::params![
            run.event_id,
            super::columns::from_usize(run.handler),
            run.plugin,
            run.shadow_hash,
            run.active_hash,
            run.verdict,
            run.changes,
            run.error,
            run.duration_us,
            run.ran_at,
        ])?;
    }
    Ok(())
}
