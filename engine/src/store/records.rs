//! What the store keeps, and the SQL that reads and writes it.

use super::StoreError;
use crate::config::Strategy;
use crate::sandbox::event::{Event, Header};
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The event's id: the new one, or the first event's when this was a duplicate.
    pub id: String,
    /// Whether an event with the same dedupe key was already stored.
    pub duplicate: bool,
}

/// An accepted event, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// An event waiting to be processed, with the handlers that already ran on it (whose runs
/// stand: only a replayed failed run makes its handler run again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// The event.
    pub stored: StoredEvent,
    /// The indexes of the handlers not to run again.
    pub done_handlers: Vec<usize>,
    /// The event's replay generation when it was read (see [`Processed::generation`]).
    pub generation: i64,
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
    /// The replay generation the event had when it was read. When a replay came in meanwhile,
    /// the runs are recorded but the event stays pending, so the replayed handler runs too.
    pub generation: i64,
}

/// What an outbox row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxKind {
    /// Deliver the body to a named destination.
    Deliver,
    /// Emit an event on the HMS bus (through the core).
    Emit,
    /// Nothing: the plugin dropped the event, for the reason in `target`.
    Drop,
}

impl OutboxKind {
    /// The kind's name in the store.
    pub fn as_str(self) -> &'static str {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxState {
    /// Waiting for its next attempt.
    Pending,
    /// A receiver accepted it.
    Delivered,
    /// A dead letter: a permanent error, or its attempts or time ran out. It can be replayed.
    Dead,
    /// Not sent: a drop action, an echo back to the system the update came from, or an update
    /// past the hop limit. The reason is in `last_error` (or, for a drop action, `target`).
    Dropped,
    /// Not sent: the destination already holds a newer version of the entity.
    Superseded,
}

impl OutboxState {
    /// The state's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
            OutboxState::Dropped => "dropped",
            OutboxState::Superseded => "superseded",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => OutboxState::Pending,
            "delivered" => OutboxState::Delivered,
            "dead" => OutboxState::Dead,
            "dropped" => OutboxState::Dropped,
            "superseded" => OutboxState::Superseded,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown outbox state `{other}`"
                )));
            }
        })
    }
}

/// What an outbox row asks for: one action of a plugin, ready to send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    #[serde(serialize_with = "crate::sandbox::event::bytes_as_text")]
    pub body: Vec<u8>,
    /// The entity key.
    pub key: Option<String>,
    /// The entity version.
    pub version: Option<u64>,
    /// When this version was made (Unix ms).
    pub timestamp: i64,
    /// The systems the update will have crossed when it arrives (sent as `hms-hops`).
    pub hops: u32,
    /// The systems the update passed through, oldest first (sent as `hms-path`).
    pub path: Vec<String>,
    /// The route's conflict strategy.
    #[serde(serialize_with = "strategy_name")]
    pub conflict: Strategy,
    /// The resolver plugin, for the `plugin` strategy.
    pub resolver: Option<String>,
    /// Why it is not sent at all (an echo, the hop limit), when it is not.
    pub skip: Option<String>,
}

fn strategy_name<S: serde::Serializer>(s: &Strategy, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(s.as_str())
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// How many attempts were made, over the row's whole life.
    pub attempts: u32,
    /// How many attempts were made since it was queued or last replayed.
    pub round_attempts: u32,
    /// When it was queued or last replayed (Unix ms): the start of its retry schedule.
    pub round_started_at: i64,
    /// When the next attempt is due (Unix ms).
    pub next_attempt_at: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// When it reached a final state (Unix ms).
    pub finished_at: Option<i64>,
    /// The event whose version won, when it was superseded.
    pub superseded_by: Option<String>,
}

/// What follows a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The receiver accepted it.
    Delivered,
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// Give up: the row becomes a dead letter.
    Dead,
}

/// One delivery attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The outbox row.
    pub outbox_id: i64,
    /// The attempt's number over the row's whole life, from 1.
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
    /// The body actually delivered, when a resolver merged it (kept as the entity's state).
    pub merged_body: Option<Vec<u8>>,
}

/// Marks an outbox row superseded: the destination holds a newer version of its entity.
#[derive(Debug, Clone)]
pub struct SupersedeRecord {
    /// The outbox row.
    pub outbox_id: i64,
    /// The event whose version won.
    pub winner: String,
    /// Why, for the record.
    pub reason: String,
    /// When (Unix ms).
    pub at: i64,
}

/// What a destination last got for one entity: the conflict state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityState {
    /// The version delivered.
    pub version: Option<u64>,
    /// Its timestamp (Unix ms).
    pub timestamp: i64,
    /// The event that carried it.
    pub event_id: String,
    /// The outbox row delivered (the last tie-breaker of last-write-wins: later rows win).
    pub outbox_id: i64,
    /// The body's media type.
    pub content_type: String,
    /// The body delivered (kept for the `plugin` strategy).
    pub body: Option<Vec<u8>>,
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// When the failed run was replayed (Unix ms), if it was.
    pub replayed_at: Option<i64>,
}

/// A recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

/// Everything recorded about one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventHistory {
    /// The event.
    pub event: StoredEvent,
    /// Its runs.
    pub runs: Vec<RunRow>,
    /// Its outbox rows, each with its attempts.
    pub outbox: Vec<(OutboxRow, Vec<AttemptRow>)>,
    /// Its dead letters, replayed or not.
    pub dead_letters: Vec<DeadLetterRow>,
}

/// What a dead letter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterKind {
    /// A delivery that failed for good.
    Delivery,
    /// A plugin run that failed.
    Plugin,
}

impl DeadLetterKind {
    /// The kind's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Delivery => "delivery",
            DeadLetterKind::Plugin => "plugin",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "delivery" => DeadLetterKind::Delivery,
            "plugin" => DeadLetterKind::Plugin,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown dead letter kind `{other}`"
                )));
            }
        })
    }
}

/// A dead letter, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetterRow {
    /// Its id.
    pub id: i64,
    /// What it is about.
    pub kind: DeadLetterKind,
    /// The event.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The destination (`hms-core` for emitted events) or, for a plugin failure, the plugin.
    pub target: String,
    /// The plugin that ran on the event, and its version's hash.
    pub plugin: String,
    /// The plugin version's hash.
    pub plugin_hash: String,
    /// The outbox row, for a delivery.
    pub outbox_id: Option<i64>,
    /// The last error.
    pub error: String,
    /// When it died (Unix ms).
    pub created_at: i64,
    /// Whether it was replayed.
    pub replayed: bool,
    /// When it was replayed (Unix ms).
    pub replayed_at: Option<i64>,
}

/// Which dead letters to list or replay. Set fields narrow the selection (all must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only these ids.
    pub ids: Vec<i64>,
    /// Only those for this destination (or plugin).
    pub target: Option<String>,
    /// Only those that died at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only those that died before this time (Unix ms).
    pub until: Option<i64>,
    /// Replayed ones too (listing only; replay takes only dead ones).
    pub include_replayed: bool,
    /// At most this many (listing only); 0 means no limit.
    pub limit: usize,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The dead letters queued again.
    pub replayed: Vec<i64>,
    /// Dead letters selected but not replayed, with why (already replayed, unknown id).
    pub skipped: Vec<(i64, String)>,
}

/// How much work is waiting, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events accepted and not yet processed.
    pub pending_events: u64,
    /// Outbox rows waiting for delivery.
    pub pending_deliveries: u64,
    /// When the oldest waiting work was queued (Unix ms): the oldest pending event's acceptance
    /// or the oldest pending delivery's queueing, whichever is older.
    pub oldest_pending_at: Option<i64>,
    /// Dead letters not replayed.
    pub dead_letters: u64,
}

/// A stored comma-separated path as its systems.
fn split_path(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
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
                 timestamp, content_type, headers, payload, accepted_at, hops, path)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
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
            e.hops,
            e.path.join(","),
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

/// Records a processed event's runs and outbox rows and marks it processed. A failed run also
/// leaves a dead letter.
pub(super) fn insert_processed(conn: &Connection, p: &Processed) -> Result<(), StoreError> {
    let (processed_at, generation): (Option<i64>, i64) = conn
        .prepare_cached("SELECT processed_at, generation FROM events WHERE id = ?1")?
        .query_row([&p.event_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if processed_at.is_some() {
        // Already processed (this result came twice): keep the first, so an event is never
        // processed twice.
        return Ok(());
    }
    if generation == p.generation {
        conn.prepare_cached("UPDATE events SET processed_at = ?2 WHERE id = ?1")?
            .execute(params![p.event_id, p.processed_at])?;
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
        if let Some(error) = &run.error {
            insert_dead_letter(
                conn,
                DeadLetterKind::Plugin,
                &p.event_id,
                run_id,
                None,
                &run.plugin,
                error,
                p.processed_at,
            )?;
        }
        for action in &run.actions {
            let state = match (action.kind, &action.skip) {
                (OutboxKind::Drop, _) | (_, Some(_)) => OutboxState::Dropped,
                (OutboxKind::Deliver | OutboxKind::Emit, None) => OutboxState::Pending,
            };
            let finished_at = (state == OutboxState::Dropped).then_some(p.processed_at);
            conn.prepare_cached(
                "INSERT INTO outbox (event_id, event_seq, run_id, kind, target, idempotency_key,
                     origin, content_type, headers, body, entity_key, version, timestamp, state,
                     round_started_at, next_attempt_at, created_at, finished_at, hops, conflict,
                     resolver, last_error, path)
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
                action.skip,
                action.path.join(","),
            ])?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_dead_letter(
    conn: &Connection,
    kind: DeadLetterKind,
    event_id: &str,
    run_id: i64,
    outbox_id: Option<i64>,
    target: &str,
    error: &str,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (kind, event_id, run_id, outbox_id, target, error, created_at,
             state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'dead')",
    )?
    .execute(params![
        kind.as_str(),
        event_id,
        run_id,
        outbox_id,
        target,
        error,
        at
    ])?;
    Ok(())
}

/// Records an attempt and moves its outbox row on; a row that gives up becomes a dead letter.
/// Returns how many pending rows a delivered version superseded.
pub(super) fn insert_attempt(conn: &Connection, a: &AttemptRecord) -> Result<usize, StoreError> {
    let outcome = match a.next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Dead => "dead",
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
        Next::Dead => (OutboxState::Dead, finished, Some(finished)),
    };
    // Whether the row was still pending, and whether it has conflict state to keep.
    let updated: Option<bool> = conn
        .prepare_cached(
            "UPDATE outbox SET state = ?2, attempts = attempts + 1,
                 round_attempts = round_attempts + 1, next_attempt_at = ?3, last_error = ?4,
                 finished_at = ?5
             WHERE id = ?1 AND state = 'pending'
             RETURNING entity_key IS NOT NULL AND conflict != 'none'",
        )?
        .query_row(
            params![a.outbox_id, state.as_str(), next_at, a.error, finished_at],
            |row| row.get(0),
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
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
        let target = if OutboxKind::parse(&kind)? == OutboxKind::Emit {
            CORE_TARGET.to_owned()
        } else {
            target
        };
        let error = a.error.as_deref().unwrap_or("gave up");
        insert_dead_letter(
            conn,
            DeadLetterKind::Delivery,
            &event_id,
            run_id,
            Some(a.outbox_id),
            &target,
            error,
            finished,
        )?;
    }
    Ok(superseded)
}

/// After a delivery with a conflict strategy and an entity key succeeds: remembers what the
/// destination now holds, and supersedes the pending rows for the same entity that this
/// version makes stale (they would only be refused when their turn came). Returns how many.
fn record_entity_state(conn: &Connection, a: &AttemptRecord, at: i64) -> Result<usize, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1"
        ))?
        .query_row([a.outbox_id], |row| Ok(read_outbox(row)))??;
    let action = &row.action;
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
    // Only ever forward: a version older than the one held (which per-key ordering should make
    // impossible) never replaces it.
    let newer = match action.conflict {
        Strategy::Version => {
            "excluded.version > entity_state.version OR entity_state.version IS NULL"
        }
        Strategy::LastWriteWins => {
            "(excluded.timestamp, excluded.event_id, excluded.outbox_id)
                 > (entity_state.timestamp, entity_state.event_id, entity_state.outbox_id)"
        }
        Strategy::Plugin | Strategy::None => "1",
    };
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
        row.event_id,
        a.outbox_id,
        action.content_type,
        body,
        at,
    ])?;
    let stale = match action.conflict {
        Strategy::LastWriteWins => {
            "conflict = 'last-write-wins' AND (timestamp, event_id, id) < (?5, ?6, ?4)"
        }
        Strategy::Version if action.version.is_some() => {
            "conflict = 'version' AND version IS NOT NULL AND version <= ?7"
        }
        _ => return Ok(0),
    };
    let superseded = conn
        .prepare_cached(&format!(
            "UPDATE outbox SET state = 'superseded', superseded_by = ?6, finished_at = ?8,
                 last_error = 'the destination already holds a newer version'
             WHERE state = 'pending' AND kind = ?1 AND target = ?2 AND entity_key = ?3
               AND id != ?4 AND {stale}"
        ))?
        .execute(params![
            action.kind.as_str(),
            action.target,
            key,
            a.outbox_id,
            action.timestamp,
            row.event_id,
            from_u64(action.version),
            at,
        ])?;
    Ok(superseded)
}

/// Marks a pending row superseded.
pub(super) fn supersede(conn: &Connection, s: &SupersedeRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'superseded', superseded_by = ?2, last_error = ?3,
             finished_at = ?4
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![s.outbox_id, s.winner, s.reason, s.at])?;
    Ok(())
}

/// What the destination of a row last got for the row's entity.
pub(super) fn entity_state(
    conn: &Connection,
    kind: OutboxKind,
    target: &str,
    key: &str,
) -> Result<Option<EntityState>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT version, timestamp, event_id, outbox_id, content_type, body
             FROM entity_state WHERE kind = ?1 AND target = ?2 AND entity_key = ?3",
        )?
        .query_row(params![kind.as_str(), target, key], |row| {
            Ok(EntityState {
                version: to_u64(row.get(0)?),
                timestamp: row.get(1)?,
                event_id: row.get(2)?,
                outbox_id: row.get(3)?,
                content_type: row.get(4)?,
                body: row.get(5)?,
            })
        })
        .optional()?)
}

/// The name dead letters and metrics give the HMS core as a destination.
pub const CORE_TARGET: &str = "hms-core";

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
        ..filter.clone()
    };
    let selected = list_dead_letters(conn, &selection)?;
    let mut outcome = ReplayOutcome::default();
    for id in &filter.ids {
        if !selected.iter().any(|d| d.id == *id) {
            outcome
                .skipped
                .push((*id, "no dead letter has this id".into()));
        }
    }
    for dead in selected {
        if dead.replayed {
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
                    .query_row([dead.id], |row| row.get(0))?;
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

const DEAD_LETTER_COLUMNS: &str = "d.id, d.kind, d.event_id, e.event_type, d.target, r.plugin,
    r.plugin_hash, d.outbox_id, d.error, d.created_at, d.state, d.replayed_at";

fn read_dead_letter(row: &Row<'_>) -> Result<DeadLetterRow, StoreError> {
    let kind: String = row.get(1)?;
    let state: String = row.get(10)?;
    Ok(DeadLetterRow {
        id: row.get(0)?,
        kind: DeadLetterKind::parse(&kind)?,
        event_id: row.get(2)?,
        event_type: row.get(3)?,
        target: row.get(4)?,
        plugin: row.get(5)?,
        plugin_hash: row.get(6)?,
        outbox_id: row.get(7)?,
        error: row.get(8)?,
        created_at: row.get(9)?,
        replayed: state == "replayed",
        replayed_at: row.get(11)?,
    })
}

pub(super) fn list_dead_letters(
    conn: &Connection,
    filter: &DeadLetterFilter,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    let mut sql = format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters d
         JOIN events e ON e.id = d.event_id JOIN runs r ON r.id = d.run_id WHERE 1 = 1"
    );
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if !filter.include_replayed {
        sql.push_str(" AND d.state = 'dead'");
    }
    if !filter.ids.is_empty() {
        let marks = vec!["?"; filter.ids.len()].join(", ");
        sql.push_str(&format!(" AND d.id IN ({marks})"));
        values.extend(filter.ids.iter().map(|id| (*id).into()));
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
    sql.push_str(" ORDER BY d.id");
    if filter.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", filter.limit));
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read_dead_letter(row)?);
    }
    Ok(out)
}

pub(super) fn backlog(conn: &Connection) -> Result<Backlog, StoreError> {
    let (pending_events, oldest_event): (i64, Option<i64>) = conn
        .prepare_cached("SELECT COUNT(*), MIN(accepted_at) FROM events WHERE processed_at IS NULL")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let (pending_deliveries, oldest_delivery): (i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT COUNT(*), MIN(round_started_at) FROM outbox WHERE state = 'pending'",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let dead_letters: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE state = 'dead'")?
        .query_row([], |row| row.get(0))?;
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

/// Rewrites the probe row: proof that the store takes writes.
pub(super) fn probe(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?1)")?
        .execute([now])?;
    Ok(())
}

const EVENT_COLUMNS: &str = "seq, route, id, event_type, origin, entity_key, version, timestamp,
    content_type, headers, payload, accepted_at, processed_at, hops, path";

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
                hops: row.get(13)?,
                path: split_path(&row.get::<_, String>(14)?),
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

/// The payload bytes after which a batch of pending events stops (it always holds at least one).
const PENDING_BATCH_BYTES: usize = 16 << 20;

/// Up to `limit` unprocessed events accepted after `after_seq`, oldest first, fewer when their
/// payloads reach [`PENDING_BATCH_BYTES`].
pub(super) fn pending_events(
    conn: &Connection,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<PendingEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS}, generation FROM events
         WHERE processed_at IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let mut rows = stmt.query(params![after_seq, i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut events = Vec::new();
    let mut bytes = 0;
    // Large payloads make a short batch, so a batch never holds much more than the budget.
    while bytes < PENDING_BATCH_BYTES
        && let Some(row) = rows.next()?
    {
        let (event, generation) = (event_from_row(row)?, row.get::<_, i64>(15)?);
        let event = with_headers(event)?;
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
                .query_map([&stored.event.id], |row| row.get::<_, i64>(0))?
                .map(|h| Ok(usize::try_from(h?).unwrap_or(usize::MAX)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(PendingEvent {
                stored,
                done_handlers,
                generation,
            })
        })
        .collect()
}

const OUTBOX_COLUMNS: &str = "id, event_id, event_seq, kind, target, idempotency_key, origin,
    content_type, headers, body, entity_key, version, timestamp, state, attempts, round_attempts,
    round_started_at, next_attempt_at, last_error, created_at, finished_at, hops, conflict,
    resolver, superseded_by, path";

fn read_outbox(row: &Row<'_>) -> Result<OutboxRow, StoreError> {
    let kind: String = row.get(3)?;
    let headers: String = row.get(8)?;
    let state: String = row.get(13)?;
    let conflict: String = row.get(22)?;
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
            hops: row.get(21)?,
            conflict: Strategy::parse(&conflict).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown conflict strategy `{conflict}`"))
            })?,
            resolver: row.get(23)?,
            skip: None,
            path: split_path(&row.get::<_, String>(25)?),
        },
        state: OutboxState::parse(&state)?,
        attempts: row.get(14)?,
        round_attempts: row.get(15)?,
        round_started_at: row.get(16)?,
        next_attempt_at: row.get(17)?,
        last_error: row.get(18)?,
        created_at: row.get(19)?,
        finished_at: row.get(20)?,
        superseded_by: row.get(24)?,
    })
}

/// Pending rows due at `now`, soonest first, skipping the ids in `skip` and the targets in
/// `busy` (destination names; `hms-core` for emitted events). A row with an entity
/// key is due only when it is the oldest pending row of its (kind, target, key) by event
/// acceptance order, and when every event accepted before its own has been processed (so no
/// older row for its key can still appear).
pub(super) fn due_outbox(
    conn: &Connection,
    now: i64,
    limit: usize,
    skip: &[i64],
    busy: &[String],
) -> Result<Vec<OutboxRow>, StoreError> {
    // The busy targets are few (at most one per destination); they go into the query so one
    // saturated destination's backlog cannot hide every other destination's due rows.
    let marks = vec!["?"; busy.len()].join(", ");
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
    let skip = serde_json::to_string(skip).unwrap_or_else(|_| "[]".to_owned());
    let mut values: Vec<rusqlite::types::Value> = vec![now.into(), skip.into()];
    values.extend(busy.iter().map(|b| b.clone().into()));
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    let mut due = Vec::new();
    while let Some(row) = rows.next()? {
        due.push(read_outbox(row)?);
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
            "SELECT handler, plugin, plugin_hash, outcome, error, duration_us, ran_at, replayed_at
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
                replayed_at: row.get(7)?,
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
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters d
         JOIN events e ON e.id = d.event_id JOIN runs r ON r.id = d.run_id
         WHERE d.event_id = ?1 ORDER BY d.id"
    ))?;
    let mut rows = stmt.query([id])?;
    let mut dead_letters = Vec::new();
    while let Some(row) = rows.next()? {
        dead_letters.push(read_dead_letter(row)?);
    }
    Ok(Some(EventHistory {
        event,
        runs,
        outbox,
        dead_letters,
    }))
}
