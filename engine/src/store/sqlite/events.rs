//! Events: accepting them (deduplicated), the pending ones in acceptance order, and what
//! processing made of them (runs, outbox rows, dead letters), committed together.

use super::columns::{
    from_u64, from_usize, headers_from_json, headers_json, path_from_text, path_text, to_u64,
    to_usize,
};
use super::{dead_letters, outbox};
use crate::sandbox::event::Event;
use crate::store::{
    Accepted, DeadLetterKind, NewEvent, OutboxRow, PendingEvent, Processed, Route, StoreError,
    StoredEvent,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Inserts an event unless its dedupe key was seen; returns the answer.
pub(super) fn insert(conn: &Connection, new: &NewEvent) -> Result<Accepted, StoreError> {
    let e = &new.event;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (id, route, dedupe_key, event_type, origin, entity_key, version,
                 timestamp, content_type, headers, accepted_at, hops, path)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )?
        .execute(params![
            e.id,
            new.route.to_string(),
            new.dedupe_key,
            e.event_type,
            e.origin,
            e.key,
            from_u64(e.version),
            e.timestamp,
            e.content_type,
            headers_json(&e.headers),
            new.accepted_at,
            e.hops,
            path_text(&e.path),
        ])?;
    if inserted == 1 {
        conn.prepare_cached("INSERT INTO payloads (event_seq, payload) VALUES (?1, ?2)")?
            .execute(params![conn.last_insert_rowid(), e.payload])?;
        return Ok(Accepted {
            id: e.id.clone(),
            duplicate: false,
        });
    }
    let first: String = conn
        .prepare_cached("SELECT id FROM events WHERE dedupe_key = ?1")?
        .query_row([&new.dedupe_key], |row| row.get(0))?;
    Ok(Accepted {
        id: first,
        duplicate: true,
    })
}

/// Rewrites the probe row: proof that the store takes writes.
pub(super) fn probe(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)")?
        .execute([now])?;
    Ok(())
}

/// The columns [`stored_event`] reads, from [`EVENTS`].
pub(super) const EVENT_COLUMNS: &str = "e.seq AS seq, e.route AS route, e.id AS id,
    e.event_type AS event_type, e.origin AS origin, e.entity_key AS entity_key,
    e.version AS version, e.timestamp AS timestamp, e.content_type AS content_type,
    e.headers AS headers, p.payload AS payload, e.accepted_at AS accepted_at,
    e.processed_at AS processed_at, e.hops AS hops, e.path AS path,
    e.generation AS generation";

/// Events with their payloads.
pub(super) const EVENTS: &str = "events e JOIN payloads p ON p.event_seq = e.seq";

/// An event row, read by column name.
pub(super) fn stored_event(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let route: String = row.get("route")?;
    Ok(StoredEvent {
        seq: row.get("seq")?,
        route: Route::parse(&route)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown route `{route}`")))?,
        event: Event {
            id: row.get("id")?,
            event_type: row.get("event_type")?,
            origin: row.get("origin")?,
            key: row.get("entity_key")?,
            version: to_u64(row.get("version")?),
            timestamp: row.get("timestamp")?,
            content_type: row.get("content_type")?,
            payload: row.get("payload")?,
            headers: headers_from_json(&row.get::<_, String>("headers")?)?,
            hops: row.get("hops")?,
            path: path_from_text(&row.get::<_, String>("path")?),
        },
        accepted_at: row.get("accepted_at")?,
        processed_at: row.get("processed_at")?,
    })
}

/// The routes with unprocessed events.
pub(super) fn pending_routes(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT route FROM events WHERE processed_at IS NULL")?;
    let routes = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(routes)
}

/// The payload bytes after which a batch of pending events stops (it always holds at least one).
const PENDING_BATCH_BYTES: usize = 16 << 20;

/// Up to `limit` unprocessed events (of `route` only, when given) accepted after `after_seq`,
/// oldest first, fewer when their payloads reach [`PENDING_BATCH_BYTES`].
pub(super) fn pending(
    conn: &Connection,
    route: Option<&str>,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<PendingEvent>, StoreError> {
    // Two statements, so each reads its own index range: (route, seq) for a route's events.
    let of_route = if route.is_some() {
        "AND e.route = ?3"
    } else {
        "AND ?3 IS NULL"
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM {EVENTS}
         WHERE e.processed_at IS NULL {of_route} AND e.seq > ?1 ORDER BY e.seq LIMIT ?2"
    ))?;
    let mut rows = stmt.query(params![after_seq, from_usize(limit), route])?;
    let mut events = Vec::new();
    let mut bytes = 0;
    // Large payloads make a short batch, so a batch never holds much more than the budget.
    while bytes < PENDING_BATCH_BYTES
        && let Some(row) = rows.next()?
    {
        let event = stored_event(row)?;
        let generation: i64 = row.get("generation")?;
        bytes += event.event.payload.len();
        events.push((event, generation));
    }
    let mut done = conn.prepare_cached(
        "SELECT handler FROM runs WHERE event_id = ?1 AND replayed_at IS NULL ORDER BY handler",
    )?;
    events
        .into_iter()
        .map(|(stored, generation)| {
            let done_handlers = done
                .query_map([&stored.event.id], |row| row.get::<_, i64>("handler"))?
                .map(|h| Ok(to_usize(h?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(PendingEvent {
                stored,
                done_handlers,
                generation,
            })
        })
        .collect()
}

/// Records a processed event's runs and outbox rows and marks it processed. A failed run also
/// leaves a dead letter. Returns the rows queued for delivery.
pub(super) fn complete(conn: &Connection, p: &Processed) -> Result<Vec<OutboxRow>, StoreError> {
    let (processed_at, generation): (Option<i64>, i64) = conn
        .prepare_cached("SELECT processed_at, generation FROM events WHERE id = ?1")?
        .query_row([&p.event_id], |row| {
            Ok((row.get("processed_at")?, row.get("generation")?))
        })?;
    if processed_at.is_some() {
        // Already processed (this result came twice): keep the first, so an event is never
        // processed twice.
        return Ok(Vec::new());
    }
    if generation == p.generation {
        conn.prepare_cached("UPDATE events SET processed_at = ?2 WHERE id = ?1")?
            .execute(params![p.event_id, p.processed_at])?;
    }
    let mut queued = Vec::new();
    for record in &p.runs {
        let run = &record.run;
        conn.prepare_cached(
            "INSERT INTO runs (event_id, handler, plugin, plugin_hash, outcome, error,
                 duration_us, ran_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            p.event_id,
            from_usize(run.handler),
            run.plugin,
            run.plugin_hash,
            run.outcome.as_str(),
            run.error,
            run.duration_us,
            run.ran_at,
        ])?;
        let run_id = conn.last_insert_rowid();
        if let Some(error) = &run.error {
            dead_letters::insert(
                conn,
                &dead_letters::NewDeadLetter {
                    kind: DeadLetterKind::Plugin,
                    event_id: &p.event_id,
                    run_id,
                    outbox_id: None,
                    target: &run.plugin,
                    error,
                    at: p.processed_at,
                },
            )?;
        }
        for action in &record.actions {
            queued.extend(outbox::insert(conn, p, run_id, action)?);
        }
    }
    Ok(queued)
}

/// The route of the event at `seq`, and the oldest event of that route not yet processed
/// (every event of the route accepted before it has been processed): where the route's
/// watermark stands once the event is processed. `None` when no event has this `seq`.
pub(super) fn route_floor(
    conn: &Connection,
    seq: i64,
) -> Result<Option<(String, Option<i64>)>, StoreError> {
    let route: Option<String> = conn
        .prepare_cached("SELECT route FROM events WHERE seq = ?1")?
        .query_row([seq], |row| row.get(0))
        .optional()?;
    let Some(route) = route else {
        return Ok(None);
    };
    let floor = floor(conn, &route)?;
    Ok(Some((route, floor)))
}

/// The acceptance order of the oldest unprocessed event of `route`, if it has one (by the
/// `events_pending` index).
pub(super) fn floor(conn: &Connection, route: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT min(seq) FROM events WHERE route = ?1 AND processed_at IS NULL")?
        .query_row([route], |row| row.get(0))?)
}
