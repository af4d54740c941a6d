//! The writer thread: group commit of everything the engine writes.

use super::StoreError;
use super::records::{
    self, Accepted, AttemptRecord, DeadLetterFilter, NewEvent, Processed, ReplayOutcome,
    SupersedeRecord,
};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, mpsc, oneshot};

/// At most this many commands share one transaction.
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, with where to send its result.
pub(super) enum Command {
    Accept(NewEvent, Reply<Accepted>),
    Processed(Processed, Reply<()>),
    Attempt(AttemptRecord, Reply<usize>),
    Replay(DeadLetterFilter, Reply<ReplayOutcome>),
    Supersede(SupersedeRecord, Reply<()>),
    Plugin(super::plugins::PluginWrite, Reply<()>),
    /// Rewrites the probe row, proving writes reach the disk.
    Probe(Reply<()>),
    /// Commit what came before, then stop.
    Close,
}

/// A command's result, held until the transaction commits.
enum Done {
    Accept(Reply<Accepted>, Result<Accepted, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
    Replay(Reply<ReplayOutcome>, Result<ReplayOutcome, StoreError>),
    Count(Reply<usize>, Result<usize, StoreError>),
}

impl Done {
    fn send(self) {
        // A sender that stopped waiting is not an error.
        match self {
            Done::Accept(reply, result) => drop(reply.send(result)),
            Done::Unit(reply, result) => drop(reply.send(result)),
            Done::Replay(reply, result) => drop(reply.send(result)),
            Done::Count(reply, result) => drop(reply.send(result)),
        }
    }

    fn fail(&mut self, message: &str) {
        let error = || StoreError::Io(message.to_owned());
        match self {
            Done::Accept(_, result) => *result = Err(error()),
            Done::Unit(_, result) => *result = Err(error()),
            Done::Replay(_, result) => *result = Err(error()),
            Done::Count(_, result) => *result = Err(error()),
        }
    }
}

/// What a committed batch changed, for the writer to signal.
#[derive(Default)]
struct Changes {
    accepted: bool,
    outbox: bool,
    requeued: bool,
}

/// Who the writer tells about what it committed.
pub(super) struct Signals {
    pub(super) events_accepted: Arc<Notify>,
    pub(super) events_requeued: Arc<Notify>,
    pub(super) outbox_changed: Arc<Notify>,
    pub(super) commits: Arc<AtomicU64>,
}

pub(super) fn spawn(
    conn: Connection,
    commands: mpsc::UnboundedReceiver<Command>,
    signals: Signals,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, commands, &signals))
}

fn run(mut conn: Connection, mut commands: mpsc::UnboundedReceiver<Command>, signals: &Signals) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    while !closing {
        let Some(first) = commands.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let (done, changes, close) = commit(&mut conn, batch.drain(..));
        signals.commits.fetch_add(1, Ordering::Relaxed);
        closing = close;
        // Answer only now: every result in `done` is on disk, or every one failed.
        for d in done {
            d.send();
        }
        if changes.accepted {
            signals.events_accepted.notify_one();
        }
        if changes.requeued {
            signals.events_requeued.notify_one();
        }
        if changes.outbox {
            signals.outbox_changed.notify_one();
        }
    }
}

/// Applies a batch in one transaction, each command in its own savepoint. Returns the results,
/// what changed, and whether to close.
fn commit(
    conn: &mut Connection,
    batch: impl Iterator<Item = Command>,
) -> (Vec<Done>, Changes, bool) {
    let mut done = Vec::new();
    let mut changes = Changes::default();
    let mut close = false;
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let message = format!("cannot begin a transaction: {e}");
            for command in batch {
                close |= fail(command, &message, &mut done);
            }
            return (done, Changes::default(), close);
        }
    };
    let now = super::now_ms();
    let mut batch = batch;
    while let Some(command) = batch.next() {
        // SQLite rolls a whole transaction back on some errors (a full disk, an I/O error):
        // then every write of this batch is lost, those before too, and the rest cannot run.
        if tx.is_autocommit() {
            let message = "the transaction was rolled back by an earlier error in its batch";
            for d in &mut done {
                d.fail(message);
            }
            close |= fail(command, message, &mut done);
            for command in batch.by_ref() {
                close |= fail(command, message, &mut done);
            }
            return (done, Changes::default(), close);
        }
        match command {
            Command::Accept(event, reply) => {
                let result = in_savepoint(&tx, |c| records::insert_event(c, &event));
                changes.accepted |= matches!(
                    result,
                    Ok(Accepted {
                        duplicate: false,
                        ..
                    })
                );
                done.push(Done::Accept(reply, result));
            }
            Command::Processed(processed, reply) => {
                let result = in_savepoint(&tx, |c| records::insert_processed(c, &processed));
                changes.outbox |= result.is_ok();
                done.push(Done::Unit(reply, result));
            }
            Command::Attempt(attempt, reply) => {
                let result = in_savepoint(&tx, |c| records::insert_attempt(c, &attempt));
                changes.outbox |= result.is_ok();
                done.push(Done::Count(reply, result));
            }
            Command::Replay(filter, reply) => {
                let result = in_savepoint(&tx, |c| records::replay(c, &filter, now));
                if let Ok(outcome) = &result
                    && !outcome.replayed.is_empty()
                {
                    changes.outbox = true;
                    changes.requeued = true;
                }
                done.push(Done::Replay(reply, result));
            }
            Command::Supersede(record, reply) => {
                let result = in_savepoint(&tx, |c| records::supersede(c, &record));
                changes.outbox |= result.is_ok();
                done.push(Done::Unit(reply, result));
            }
            Command::Plugin(write, reply) => {
                let result = in_savepoint(&tx, |c| super::plugins::write(c, &write));
                done.push(Done::Unit(reply, result));
            }
            Command::Probe(reply) => {
                let result = in_savepoint(&tx, |c| records::probe(c, now));
                done.push(Done::Unit(reply, result));
            }
            Command::Close => close = true,
        }
    }
    if let Err(e) = tx.commit() {
        tracing::error!(error = %e, "the store could not commit a transaction; its writes are lost and their senders told");
        let message = format!("commit failed: {e}");
        for d in &mut done {
            d.fail(&message);
        }
        return (done, Changes::default(), close);
    }
    (done, changes, close)
}

fn in_savepoint<T>(
    tx: &rusqlite::Transaction<'_>,
    write: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    tx.execute_batch("SAVEPOINT command")?;
    match write(tx) {
        Ok(value) => {
            tx.execute_batch("RELEASE command")?;
            Ok(value)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO command; RELEASE command")?;
            Err(e)
        }
    }
}

/// Answers a command that could not run because no transaction could begin. Returns whether
/// the command was `Close`.
fn fail(command: Command, message: &str, done: &mut Vec<Done>) -> bool {
    let mut d = match command {
        Command::Accept(_, reply) => Done::Accept(reply, Ok(Accepted::default())),
        Command::Processed(_, reply)
        | Command::Probe(reply)
        | Command::Supersede(_, reply)
        | Command::Plugin(_, reply) => Done::Unit(reply, Ok(())),
        Command::Attempt(_, reply) => Done::Count(reply, Ok(0)),
        Command::Replay(_, reply) => Done::Replay(reply, Ok(ReplayOutcome::default())),
        Command::Close => return true,
    };
    d.fail(message);
    done.push(d);
    false
}
