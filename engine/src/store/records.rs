//! What the store keeps, and the SQL that reads and writes it.

use super::StoreError;
use crate::event::{Event, Header};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// An event to commit.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event, with the id the listener gave it.
    pub event: Event,
    /// The route it arrived on: `bus:<type>` or `webhook:<path>`.
    pub route: String,
    /// The sender's idempotency key, when it sent one: a second event with the same key on the
    /// same route is not stored again.
    pub dedupe_key: Option<String>,
    /// When it was accepted (Unix ms).
    pub accepted_at: i64,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The event's id: the new one, or the first event's when this was a duplicate.
    pub id: String,
    /// Whether an event with the same dedupe key was already stored.
    pub duplicate: bool,
}

/// An accepted event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Acceptance order.
    pub seq: i64,
    /// The route it arrived on.
    pub route: String,
    /// The event.
    pub event: Event,
    /// When it was accepted (Unix ms).
    pub accepted_at: i64,
    /// When it was processed (Unix ms), if it was.
    pub processed_at: Option<i64>,
}

/// What one handler's run on an event produced.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The handler's index among its route's handlers.
    pub handler: usize,
    /// The plugin's name.
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// `ok`, or the error's code.
    pub outcome: String,
    /// The error's message, when it failed.
    pub error: Option<String>,
    /// How long the run took, in microseconds.
    pub duration_us: i64,
    /// When it ran (Unix ms).
    pub ran_at: i64,
    /// The actions it produced, in order.
    pub actions: Vec<OutboxAction>,
}

/// A processed event: its runs and their actions.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The event's id.
    pub event_id: String,
    /// The event's acceptance order.
    pub event_seq: i64,
    /// One record per handler of the route.
    pub runs: Vec<RunRecord>,
    /// When processing finished (Unix ms).
    pub processed_at: i64,
}

/// What an outbox row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// Deliver the body to a named destination.
    Deliver,
    /// Emit an event on the HMS bus (through the core).
    Emit,
    /// Nothing: the plugin dropped the event, for the reason in `target`.
    Drop,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Deliver => "deliver",
            OutboxKind::Emit => "emit",
            OutboxKind::Drop => "drop",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "deliver" => OutboxKind::Deliver,
            "emit" => OutboxKind::Emit,
            "drop" => OutboxKind::Drop,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown outbox kind `{other}`"
                )));
            }
        })
    }
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for its next attempt.
    Pending,
    /// A receiver accepted it.
    Delivered,
    /// It will not be delivered: a permanent error, or its attempts ran out.
    Failed,
    /// A drop action: nothing to deliver.
    Dropped,
}

impl OutboxState {
    /// The state's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Failed => "failed",
            OutboxState::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => OutboxState::Pending,
            "delivered" => OutboxState::Delivered,
            "failed" => OutboxState::Failed,
            "dropped" => OutboxState::Dropped,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown outbox state `{other}`"
                )));
            }
        })
    }
}

/// What an outbox row asks for: one action of a plugin, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxAction {
    /// What it asks for.
    pub kind: OutboxKind,
    /// The destination's name, the emitted event's type, or the drop reason.
    pub target: String,
    /// The key sent with every attempt; the same for every retry.
    pub idempotency_key: String,
    /// The origin of the event that caused it.
    pub origin: String,
    /// The body's media type.
    pub content_type: String,
    /// Extra request headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
    /// The entity key.
    pub key: Option<String>,
    /// The entity version.
    pub version: Option<u64>,
    /// When this version was made (Unix ms).
    pub timestamp: i64,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The row's id.
    pub id: i64,
    /// The event that caused it.
    pub event_id: String,
    /// That event's acceptance order.
    pub event_seq: i64,
    /// What it asks for.
    pub action: OutboxAction,
    /// Where it stands.
    pub state: OutboxState,
    /// How many attempts were made.
    pub attempts: u32,
    /// When the next attempt is due (Unix ms).
    pub next_attempt_at: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it reached a final state (Unix ms).
    pub finished_at: Option<i64>,
}

/// What follows a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The receiver accepted it.
    Delivered,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// Give up.
    Failed,
}

/// One delivery attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The outbox row.
    pub outbox_id: i64,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// What follows.
    pub next: Next,
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The handler's index among its route's handlers.
    pub handler: usize,
    /// The plugin's name.
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// `ok`, or the error's code.
    pub outcome: String,
    /// The error's message.
    pub error: Option<String>,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// When it ran (Unix ms).
    pub ran_at: i64,
}

/// A recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
}

/// Everything recorded about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHistory {
    /// The event.
    pub event: StoredEvent,
    /// Its runs.
    pub runs: Vec<RunRow>,
    /// Its outbox rows, each with its attempts.
    pub outbox: Vec<(OutboxRow, Vec<AttemptRow>)>,
}

fn headers_json(headers: &[Header]) -> String {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    serde_json::to_string(&pairs).expect("string pairs serialise")
}

fn headers_from_json(raw: &str) -> Result<Vec<Header>, StoreError> {
    let pairs: Vec<(String, String)> = serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("headers `{raw}`: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect())
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn from_u64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Inserts an event unless its dedupe key was seen; returns the answer.
pub(super) fn insert_event(conn: &Connection, new: &NewEvent) -> Result<Accepted, StoreError> {
    let e = &new.event;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (id, route, dedupe_key, event_type, origin, entity_key, version,
                 timestamp, content_type, headers, payload, accepted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )?
        .execute(params![
            e.id,
            new.route,
            new.dedupe_key,
            e.event_type,
            e.origin,
            e.key,
            from_u64(e.version),
            e.timestamp,
            e.content_type,
            headers_json(&e.headers),
            e.payload,
            new.accepted_at,
        ])?;
    if inserted == 1 {
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

/// Records a processed event's runs and outbox rows and marks it processed.
pub(super) fn insert_processed(conn: &Connection, p: &Processed) -> Result<(), StoreError> {
    let updated = conn
        .prepare_cached(
            "UPDATE events SET processed_at = ?2 WHERE id = ?1 AND processed_at IS NULL",
        )?
        .execute(params![p.event_id, p.processed_at])?;
    if updated == 0 {
        // Already processed (a second processor, or a replay of the same result): keep the
        // first result, so an event is never processed twice.
        return Ok(());
    }
    for run in &p.runs {
        conn.prepare_cached(
            "INSERT INTO runs (event_id, handler, plugin, plugin_hash, outcome, error,
                 duration_us, ran_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            p.event_id,
            i64::try_from(run.handler).unwrap_or(i64::MAX),
            run.plugin,
            run.plugin_hash,
            run.outcome,
            run.error,
            run.duration_us,
            run.ran_at,
        ])?;
        let run_id = conn.last_insert_rowid();
        for action in &run.actions {
            let state = match action.kind {
                OutboxKind::Drop => OutboxState::Dropped,
                OutboxKind::Deliver | OutboxKind::Emit => OutboxState::Pending,
            };
            let finished_at = (state == OutboxState::Dropped).then_some(p.processed_at);
            conn.prepare_cached(
                "INSERT INTO outbox (event_id, event_seq, run_id, kind, target, idempotency_key,
                     origin, content_type, headers, body, entity_key, version, timestamp, state,
                     next_attempt_at, created_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16)",
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
            ])?;
        }
    }
    Ok(())
}

/// Records an attempt and moves its outbox row on.
pub(super) fn insert_attempt(conn: &Connection, a: &AttemptRecord) -> Result<(), StoreError> {
    let outcome = match a.next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Failed => "failed",
    };
    conn.prepare_cached(
        "INSERT INTO attempts (outbox_id, attempt, started_at, duration_ms, status, error, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        a.outbox_id,
        a.attempt,
        a.started_at,
        a.duration_ms,
        a.status,
        a.error,
        outcome,
    ])?;
    let finished = a.started_at + a.duration_ms;
    let (state, next_at, finished_at) = match a.next {
        Next::Delivered => (OutboxState::Delivered, finished, Some(finished)),
        Next::RetryAt(at) => (OutboxState::Pending, at, None),
        Next::Failed => (OutboxState::Failed, finished, Some(finished)),
    };
    conn.prepare_cached(
        "UPDATE outbox SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5,
             finished_at = ?6
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![
        a.outbox_id,
        state.as_str(),
        a.attempt,
        next_at,
        a.error,
        finished_at,
    ])?;
    Ok(())
}

const EVENT_COLUMNS: &str = "seq, route, id, event_type, origin, entity_key, version, timestamp,
    content_type, headers, payload, accepted_at, processed_at";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<(StoredEvent, String)> {
    Ok((
        StoredEvent {
            seq: row.get(0)?,
            route: row.get(1)?,
            event: Event {
                id: row.get(2)?,
                event_type: row.get(3)?,
                origin: row.get(4)?,
                key: row.get(5)?,
                version: to_u64(row.get(6)?),
                timestamp: row.get(7)?,
                content_type: row.get(8)?,
                payload: row.get(10)?,
                headers: Vec::new(),
            },
            accepted_at: row.get(11)?,
            processed_at: row.get(12)?,
        },
        row.get(9)?,
    ))
}

fn with_headers((mut event, headers): (StoredEvent, String)) -> Result<StoredEvent, StoreError> {
    event.event.headers = headers_from_json(&headers)?;
    Ok(event)
}

pub(super) fn pending_events(
    conn: &Connection,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE processed_at IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![after_seq, i64::try_from(limit).unwrap_or(i64::MAX)],
        event_from_row,
    )?;
    rows.map(|r| with_headers(r?)).collect()
}

const OUTBOX_COLUMNS: &str = "id, event_id, event_seq, kind, target, idempotency_key, origin,
    content_type, headers, body, entity_key, version, timestamp, state, attempts, next_attempt_at,
    last_error, created_at, finished_at";

fn read_outbox(row: &Row<'_>) -> Result<OutboxRow, StoreError> {
    let kind: String = row.get(3)?;
    let headers: String = row.get(8)?;
    let state: String = row.get(13)?;
    Ok(OutboxRow {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_seq: row.get(2)?,
        action: OutboxAction {
            kind: OutboxKind::parse(&kind)?,
            target: row.get(4)?,
            idempotency_key: row.get(5)?,
            origin: row.get(6)?,
            content_type: row.get(7)?,
            headers: headers_from_json(&headers)?,
            body: row.get(9)?,
            key: row.get(10)?,
            version: to_u64(row.get(11)?),
            timestamp: row.get(12)?,
        },
        state: OutboxState::parse(&state)?,
        attempts: row.get(14)?,
        next_attempt_at: row.get(15)?,
        last_error: row.get(16)?,
        created_at: row.get(17)?,
        finished_at: row.get(18)?,
    })
}

pub(super) fn due_outbox(
    conn: &Connection,
    now: i64,
    limit: usize,
    skip: &[i64],
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox
         WHERE state = 'pending' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at, id LIMIT ?2"
    ))?;
    let fetch = limit.saturating_add(skip.len());
    let mut rows = stmt.query(params![now, i64::try_from(fetch).unwrap_or(i64::MAX)])?;
    let mut due = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if skip.contains(&id) {
            continue;
        }
        due.push(read_outbox(row)?);
        if due.len() == limit {
            break;
        }
    }
    Ok(due)
}

pub(super) fn event_history(
    conn: &Connection,
    id: &str,
) -> Result<Option<EventHistory>, StoreError> {
    let event = conn
        .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?
        .query_row([id], event_from_row)
        .optional()?;
    let Some(event) = event else {
        return Ok(None);
    };
    let event = with_headers(event)?;
    let runs = conn
        .prepare_cached(
            "SELECT handler, plugin, plugin_hash, outcome, error, duration_us, ran_at
             FROM runs WHERE event_id = ?1 ORDER BY id",
        )?
        .query_map([id], |row| {
            Ok(RunRow {
                handler: usize::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                plugin: row.get(1)?,
                plugin_hash: row.get(2)?,
                outcome: row.get(3)?,
                error: row.get(4)?,
                duration_us: row.get(5)?,
                ran_at: row.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE event_id = ?1 ORDER BY id"
    ))?;
    let mut rows = stmt.query([id])?;
    let mut outbox = Vec::new();
    while let Some(row) = rows.next()? {
        outbox.push(read_outbox(row)?);
    }
    let mut attempts_stmt = conn.prepare_cached(
        "SELECT attempt, started_at, duration_ms, status, error, outcome
         FROM attempts WHERE outbox_id = ?1 ORDER BY id",
    )?;
    let outbox = outbox
        .into_iter()
        .map(|row| {
            let attempts = attempts_stmt
                .query_map([row.id], |a| {
                    Ok(AttemptRow {
                        attempt: a.get(0)?,
                        started_at: a.get(1)?,
                        duration_ms: a.get(2)?,
                        status: a.get(3)?,
                        error: a.get(4)?,
                        outcome: a.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((row, attempts))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(EventHistory {
        event,
        runs,
        outbox,
    }))
}
