//! The writer thread: group commit of everything the engine writes.

use super::replica;
use super::{dead_letters, events, outbox, plugins, retention};
use crate::store::{PluginWrite, StoreError, Write, Written};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// At most this many commands share one transaction.
const MAX_BATCH: usize = 1024;
/// How long a batch nobody waits on for durability (processing results, attempts) waits for
/// more commands before it commits: a commit costs about the same for one command as for a
/// hundred, and under load these arrive one by one. A command that must be durable ends the
/// wait at once.
const LINGER: Duration = Duration::from_millis(1);

/// Where a command's result goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, with where to send its result.
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every command is a write; boxing each would cost an allocation per write"
)]
pub(super) enum Command {
    /// A write. `logged` says which log entry it came from, when the store is a replica of a
    /// log.
    Write {
        write: Write,
        logged: Option<Logged>,
        reply: Reply<Written>,
    },
    /// Commit what came before, then stop.
    Close,
}

/// A write that came from a log.
#[derive(Debug, Clone, Copy)]
pub(super) struct Logged {
    /// The entry's position, recorded in the same transaction, so the replica knows where to
    /// go on.
    pub(super) position: u64,
    /// Whether a `Complete` is answered with its route's floor (`Written::QueuedOn`): only
    /// where a dispatcher is fed from the log (engines sharing the work by partition), since it
    /// costs two reads per processed event.
    pub(super) floors: bool,
}

/// What a committed batch changed, for the writer to signal.
#[derive(Default)]
struct Changes {
    /// The routes of the events accepted (not duplicates).
    accepted: std::collections::HashSet<crate::store::Route>,
    requeued: bool,
    /// The plugins whose active version changed.
    activated: std::collections::HashSet<String>,
}

/// Who the writer tells about what it committed.
#[derive(Clone, Default)]
pub(super) struct Signals {
    pub(super) events_accepted: Arc<Notify>,
    /// The routes of the events accepted since the processor last asked.
    pub(super) accepted_routes: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pub(super) events_requeued: Arc<Notify>,
    pub(super) outbox_requeued: Arc<Notify>,
    /// The plugins whose active version changed since the registry last asked.
    pub(super) activated: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pub(super) plugins_activated: Arc<Notify>,
    pub(super) commits: Arc<AtomicU64>,
}

pub(super) fn spawn(
    conn: Connection,
    commands: Receiver<Command>,
    signals: Signals,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, &commands, &signals))
}

/// A command's result, held until the transaction commits.
enum Outcome {
    Write(Result<Written, StoreError>),
    Close,
}

impl Outcome {
    fn failed(&self) -> bool {
        matches!(self, Outcome::Write(Err(_)))
    }

    /// Whether this is a logged write that failed for a reason of this instance's (its disk):
    /// on another instance the same write may pass, so the batch must not commit without it.
    fn transient_in_log(&self, command: &Command) -> bool {
        matches!(
            command,
            Command::Write {
                logged: Some(_),
                ..
            }
        ) && matches!(self, Outcome::Write(Err(e)) if e.is_transient())
    }

    /// The failure `message`, as the outcome of `command`.
    fn error(command: &Command, message: &str) -> Outcome {
        match command {
            Command::Write { .. } => Outcome::Write(Err(StoreError::Io(message.to_owned()))),
            Command::Close => Outcome::Close,
        }
    }
}

fn run(mut conn: Connection, commands: &Receiver<Command>, signals: &Signals) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    let mut sync = Sync::Full;
    while !closing {
        let Ok(first) = commands.recv() else {
            break;
        };
        batch.push(first);
        let wanted = gather(commands, &mut batch);
        if wanted != sync {
            match conn.execute_batch(wanted.pragma()) {
                Ok(()) => sync = wanted,
                Err(e) => tracing::error!(error = %e, "cannot set the store's sync level"),
            }
        }
        let outcomes = commit(&mut conn, &batch);
        signals.commits.fetch_add(1, Ordering::Relaxed);
        let mut changes = Changes::default();
        // Answer only now: every result is on disk, or failed.
        for (command, outcome) in batch.drain(..).zip(outcomes) {
            closing |= answer(command, outcome, &mut changes);
        }
        if !changes.accepted.is_empty() {
            signals
                .accepted_routes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(changes.accepted.iter().map(ToString::to_string));
            signals.events_accepted.notify_one();
        }
        if changes.requeued {
            signals.events_requeued.notify_one();
            signals.outbox_requeued.notify_one();
        }
        if !changes.activated.is_empty() {
            signals
                .activated
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(changes.activated);
            signals.plugins_activated.notify_one();
        }
    }
}

/// Adds the commands already waiting to `batch`, up to [`MAX_BATCH`]; a batch nobody waits on
/// for durability waits up to [`LINGER`] for more. Returns the level the batch commits at.
fn gather(commands: &Receiver<Command>, batch: &mut Vec<Command>) -> Sync {
    let mut sync = Sync::for_batch(batch);
    let deadline = Instant::now() + LINGER;
    while batch.len() < MAX_BATCH {
        let next = match commands.try_recv() {
            Ok(command) => Ok(command),
            Err(_) if sync == Sync::Full => break,
            Err(_) => commands.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok(command) => {
                if Sync::of(&command) == Sync::Full {
                    sync = Sync::Full;
                }
                let close = matches!(command, Command::Close);
                batch.push(command);
                if close {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    sync
}

/// How a batch's commit reaches the disk. Every commit is in the write-ahead log before it is
/// answered, and the log is written in order, so a commit that waits for the disk (`fsync`)
/// takes every earlier one with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// The commit waits for the disk: what was accepted, replayed or uploaded survives a power
    /// loss the moment it is answered.
    Full,
    /// The commit is in the log but may not be on the disk yet (it gets there with the next
    /// `Full` commit or checkpoint): for what the engine can redo after a power loss from what
    /// is on the disk. Losing a processing result runs the event again; losing an attempt's
    /// record sends the row again (deliveries are at least once, with the same idempotency
    /// key).
    Normal,
}

impl Sync {
    /// The level a batch needs: `Full` when any of its commands must be durable when answered.
    fn for_batch(batch: &[Command]) -> Sync {
        if batch.iter().any(|command| Sync::of(command) == Sync::Full) {
            Sync::Full
        } else {
            Sync::Normal
        }
    }

    /// The level one command needs. A logged write is durable in its log already: the
    /// replica can apply it again after a power loss.
    fn of(command: &Command) -> Sync {
        match command {
            Command::Write {
                logged: Some(_), ..
            }
            | Command::Close => Sync::Normal,
            Command::Write { write, .. } => match write {
                Write::Accept(..)
                | Write::Replay { .. }
                | Write::ResetEntity(..)
                | Write::Plugin(..)
                | Write::Probe { .. } => Sync::Full,
                Write::Complete(..)
                | Write::Prune(..)
                | Write::Attempt(..)
                | Write::Supersede(..)
                | Write::Shadowed(..) => Sync::Normal,
            },
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Sync::Full => "PRAGMA synchronous = FULL",
            Sync::Normal => "PRAGMA synchronous = NORMAL",
        }
    }
}

/// Applies a batch in one transaction and returns each command's outcome. The whole batch runs
/// as it is first; if a command fails, that transaction is rolled back and the batch runs again
/// with each command in its own savepoint, so the failing one does not undo the others.
/// (A savepoint copies every page its command touches: only the rare failing batch pays that.)
fn commit(conn: &mut Connection, batch: &[Command]) -> Vec<Outcome> {
    match run_batch(conn, batch, false) {
        Some(outcomes) => outcomes,
        None => run_batch(conn, batch, true).unwrap_or_else(|| {
            unreachable!("a batch with savepoints never gives up");
        }),
    }
}

/// Runs a batch in one transaction. Without `isolated`, gives up at the first failing command
/// (rolling the transaction back) and returns `None`.
fn run_batch(conn: &mut Connection, batch: &[Command], isolated: bool) -> Option<Vec<Outcome>> {
    let fail_all = |message: &str| -> Vec<Outcome> {
        batch.iter().map(|c| Outcome::error(c, message)).collect()
    };
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Some(fail_all(&format!("cannot begin a transaction: {e}"))),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for command in batch {
        // SQLite rolls a whole transaction back on some errors (a full disk, an I/O error):
        // then every write of this batch is lost, those before too, and the rest cannot run.
        if tx.is_autocommit() {
            return Some(fail_all(
                "the transaction was rolled back by an earlier error in its batch",
            ));
        }
        let outcome = if isolated {
            in_savepoint(&tx, command)
        } else {
            apply(&tx, command)
        };
        if outcome.failed() && !isolated {
            // Dropping the transaction rolls it back.
            return None;
        }
        if outcome.transient_in_log(command) {
            // A replica applies its log in order or not at all: nothing of this batch commits.
            return Some(fail_all(&format!(
                "a logged write failed on this instance: {}",
                match &outcome {
                    Outcome::Write(Err(e)) => e.to_string(),
                    _ => String::new(),
                }
            )));
        }
        outcomes.push(outcome);
    }
    if let Err(e) = tx.commit() {
        tracing::error!(error = %e, "the store could not commit a transaction; its writes are lost and their senders told");
        return Some(fail_all(&format!("commit failed: {e}")));
    }
    Some(outcomes)
}

/// Runs one command.
fn apply(c: &Connection, command: &Command) -> Outcome {
    match command {
        Command::Write { write, logged, .. } => {
            let written = apply_write(c, write);
            let written = match (written, logged) {
                (Ok(written), Some(logged)) => {
                    let written = if logged.floors {
                        with_floor(c, write, written)
                    } else {
                        Ok(written)
                    };
                    written
                        .and_then(|written| replica::advance(c, logged.position).map(|()| written))
                }
                (written, _) => written,
            };
            Outcome::Write(written)
        }
        Command::Close => Outcome::Close,
    }
}

/// A logged `Complete`'s answer with its route and that route's floor as of this point of the
/// log (for a dispatcher fed from the log: see `store::nats`).
fn with_floor(c: &Connection, write: &Write, written: Written) -> Result<Written, StoreError> {
    match (write, written) {
        (Write::Complete(processed), Written::Queued(rows)) if !rows.is_empty() => {
            match events::route_floor(c, processed.event_seq)? {
                Some((route, floor)) => Ok(Written::QueuedOn { rows, route, floor }),
                None => Ok(Written::Queued(rows)),
            }
        }
        (_, written) => Ok(written),
    }
}

/// Applies one write. Its answer depends only on the write and what is stored (never on the
/// clock), so a log applied in order gives the same answers on every instance.
fn apply_write(c: &Connection, write: &Write) -> Result<Written, StoreError> {
    Ok(match write {
        Write::Accept(event) => Written::Accepted(events::insert(c, event)?),
        Write::Complete(processed) => Written::Queued(events::complete(c, processed)?),
        Write::Attempt(attempt) => Written::Superseded(outbox::record_attempt(c, attempt)?),
        Write::Replay { filter, at } => Written::Replayed(dead_letters::replay(c, filter, *at)?),
        Write::Supersede(record) => Written::WasPending(outbox::supersede(c, record)?),
        Write::ResetEntity(entity) => Written::Held(outbox::reset_entity_state(c, entity)?),
        Write::Prune(prune) => Written::Pruned(retention::prune(c, prune)?),
        Write::Plugin(write) => {
            plugins::write(c, write)?;
            Written::Done
        }
        Write::Probe { at } => {
            events::probe(c, *at)?;
            Written::Done
        }
        Write::Shadowed(runs) => {
            super::history::insert_shadow_runs(c, runs)?;
            Written::Done
        }
    })
}

/// Runs one command in a savepoint, rolled back when it fails.
fn in_savepoint(tx: &rusqlite::Transaction<'_>, command: &Command) -> Outcome {
    let statement = |sql: &str| -> Result<(), StoreError> {
        tx.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    if let Err(e) = statement("SAVEPOINT command") {
        return Outcome::error(command, &e.to_string());
    }
    let outcome = apply(tx, command);
    let end = if outcome.failed() {
        statement("ROLLBACK TO command").and_then(|()| statement("RELEASE command"))
    } else {
        statement("RELEASE command")
    };
    match end {
        Ok(()) => outcome,
        Err(e) => Outcome::error(command, &e.to_string()),
    }
}

/// Sends a committed outcome to whoever sent the command (one that stopped waiting is not an
/// error) and notes what it changed. Returns whether the command was `Close`.
fn answer(command: Command, outcome: Outcome, changes: &mut Changes) -> bool {
    let (write, reply, result) = match (command, outcome) {
        (Command::Write { write, reply, .. }, Outcome::Write(result)) => (write, reply, result),
        (Command::Close, _) => return true,
        (Command::Write { reply, .. }, Outcome::Close) => {
            // Outcomes are made from their own commands; never reached.
            tracing::error!(
                "the store's writer mismatched an outcome; the sender is told it failed"
            );
            drop(reply.send(Err(StoreError::Closed)));
            return false;
        }
    };
    match (&write, &result) {
        (Write::Accept(event), Ok(Written::Accepted(accepted))) if !accepted.duplicate => {
            changes.accepted.insert(event.route.clone());
        }
        (Write::Replay { .. }, Ok(Written::Replayed(outcome))) if !outcome.replayed.is_empty() => {
            changes.requeued = true;
        }
        (
            Write::Plugin(PluginWrite::Add {
                version,
                activate: Some(_),
                ..
            }),
            Ok(_),
        ) => {
            changes.activated.insert(version.name.clone());
        }
        _ => {}
    }
    drop(reply.send(result));
    false
}
