//! Appending writes to the log, and applying the log to the replica.
//!
//! A write is published with a fresh id as its `Nats-Msg-Id` (a publish the client retries is
//! stored once) and the caller waits for two things: the stream's acknowledgement (or its
//! error, answered at once: the servers have no leader, the log is unreachable) and this
//! engine's replica applying the entry, whose answer is the write's. The follower reads the
//! log from the entry after the replica's position with an ordered consumer and sends each
//! entry to the replica's writer in log order without waiting (entries share commits); a task
//! behind it collects the answers in the same order and hands each to the caller that waits
//! for it (when it was this engine's write).

use super::{Connection, unavailable};
use crate::store::{PluginWrite, SqliteStore, StoreError, StoreFuture, Write, WriteLog, Written};
use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot, watch};

/// The header naming the object that holds a write too large for one message.
const OBJECT_HEADER: &str = "Sync-Write-Object";
/// Room left in a message for its headers.
const HEADER_ROOM: usize = 4096;

/// Who waits for which write's answer, by the write's id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Written, StoreError>>>>>;

/// A log entry ready to publish.
pub(super) struct Entry {
    payload: Bytes,
    object: Option<String>,
}

/// The entry of a write that fits in one message.
pub(super) fn entry(write: &Write) -> Result<Entry, StoreError> {
    Ok(Entry {
        payload: write.encode()?.into(),
        object: None,
    })
}

/// Publishes an entry and waits for the stream's acknowledgement; answers its position.
pub(super) async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    entry: Entry,
) -> Result<u64, StoreError> {
    start_publish(js, subject, id, entry)
        .await?
        .await
        .map(|ack| ack.sequence)
        .map_err(|e| unavailable("the log did not acknowledge a write", e))
}

async fn start_publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    entry: Entry,
) -> Result<jetstream::context::PublishAckFuture, StoreError> {
    let mut message = jetstream::message::PublishMessage::build()
        .payload(entry.payload)
        .message_id(id);
    if let Some(object) = entry.object {
        message = message.header(OBJECT_HEADER, object.as_str());
    }
    js.send_publish(subject.to_owned(), message)
        .await
        .map_err(|e| unavailable("cannot publish to the log", e))
}

/// The log, as the replica's writes see it.
pub(super) struct Log {
    conn: Connection,
    waiting: Waiting,
    /// Rows queued by applied writes, for a dispatcher when engines share processing.
    pub(super) feed: super::feed::Feed,
    outgoing: mpsc::UnboundedSender<(String, Entry)>,
}

impl Log {
    /// Starts the task that publishes entries in the order they are handed to it.
    pub(super) fn new(conn: Connection) -> Log {
        let waiting = Waiting::default();
        let (outgoing, mut entries) = mpsc::unbounded_channel::<(String, Entry)>();
        let (js, subject) = (conn.js.clone(), conn.names.subject.clone());
        let publisher_waiting = waiting.clone();
        tokio::spawn(async move {
            while let Some((id, entry)) = entries.recv().await {
                let waiting = publisher_waiting.clone();
                match start_publish(&js, &subject, &id, entry).await {
                    Ok(ack) => {
                        tokio::spawn(async move {
                            if let Err(e) = ack.await {
                                fail(
                                    &waiting,
                                    &id,
                                    unavailable("the log did not acknowledge a write", e),
                                );
                            }
                        });
                    }
                    Err(e) => fail(&waiting, &id, e),
                }
            }
        });
        Log {
            conn,
            waiting,
            feed: super::feed::Feed::default(),
            outgoing,
        }
    }

    /// Keeps a new version's component in the plugins' object store (once per hash), and
    /// answers the write without it: the log entry names the object.
    async fn keep_component(conn: &Connection, mut write: Write) -> Result<Write, StoreError> {
        if let Write::Plugin(PluginWrite::Add { version, .. }) = &mut write {
            let name = component_object(&version.name, &version.hash);
            if conn.plugins.info(&name).await.is_err() {
                conn.plugins
                    .put(name.as_str(), &mut version.component.as_slice())
                    .await
                    .map_err(|e| unavailable("cannot keep a plugin component", e))?;
            }
            version.component = Vec::new();
        }
        Ok(write)
    }

    /// Keeps an entry too large for one message in the writes' object store, under the
    /// write's id; answers the entry that names it.
    async fn keep_large(conn: &Connection, id: &str, entry: Entry) -> Result<Entry, StoreError> {
        conn.writes
            .put(id, &mut entry.payload.as_ref())
            .await
            .map_err(|e| unavailable("cannot keep a large write", e))?;
        Ok(Entry {
            payload: Bytes::new(),
            object: Some(id.to_owned()),
        })
    }
}

/// What a write needs before its entry can be published.
enum Prepare {
    /// Its component kept in the object store (a new plugin version; rare, so boxed).
    Component(Box<Write>),
    /// Its encoding kept in the object store (too large for one message).
    Large(Entry),
}

/// Whether an entry fits in one message of servers that take `max_payload` bytes.
fn fits(entry: &Entry, max_payload: usize) -> bool {
    entry.payload.len() + HEADER_ROOM <= max_payload
}

fn fail(waiting: &Waiting, id: &str, error: StoreError) {
    let waiter = waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id);
    if let Some(waiter) = waiter {
        drop(waiter.send(Err(error)));
    }
}

fn component_object(name: &str, hash: &str) -> String {
    format!("{name}/{hash}")
}

impl WriteLog for Log {
    fn submit(&self, write: Write) -> StoreFuture<Written> {
        let id = uuid::Uuid::now_v7().to_string();
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), tx);
        let answer: StoreFuture<Written> =
            Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? });
        let prepare = match write {
            write @ Write::Plugin(PluginWrite::Add { .. }) => Prepare::Component(Box::new(write)),
            write => match entry(&write) {
                // The common case, handed over now, in the caller's order.
                Ok(entry) if fits(&entry, self.conn.max_payload) => {
                    if self.outgoing.send((id.clone(), entry)).is_err() {
                        fail(&self.waiting, &id, StoreError::Closed);
                    }
                    return answer;
                }
                Ok(entry) => Prepare::Large(entry),
                Err(e) => {
                    fail(&self.waiting, &id, e);
                    return answer;
                }
            },
        };
        let (conn, outgoing, waiting) = (
            self.conn.clone(),
            self.outgoing.clone(),
            self.waiting.clone(),
        );
        let max_payload = self.conn.max_payload;
        tokio::spawn(async move {
            let prepared = async {
                match prepare {
                    Prepare::Component(write) => {
                        let entry = entry(&Log::keep_component(&conn, *write).await?)?;
                        if fits(&entry, max_payload) {
                            Ok(entry)
                        } else {
                            Log::keep_large(&conn, &id, entry).await
                        }
                    }
                    Prepare::Large(entry) => Log::keep_large(&conn, &id, entry).await,
                }
            };
            match prepared.await {
                Ok(entry) => {
                    if outgoing.send((id.clone(), entry)).is_err() {
                        fail(&waiting, &id, StoreError::Closed);
                    }
                }
                Err(e) => fail(&waiting, &id, e),
            }
        });
        answer
    }
}

/// Applies the log to the replica, in order.
pub(super) struct Follower {
    log: Arc<Log>,
    store: SqliteStore,
    /// The position of the last entry handed to the replica.
    sent: u64,
    /// The position of the last entry the replica applied.
    applied: watch::Receiver<u64>,
    /// Entries handed to the replica, in order, for the task that collects their answers.
    answers: mpsc::UnboundedSender<(u64, Option<String>, StoreFuture<Written>)>,
    /// How that task ended, when it did (an entry the replica could not apply).
    collector: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl Follower {
    /// Starts following the log after `position`, and applies everything the log holds now
    /// before answering.
    pub(super) async fn start(
        log: Arc<Log>,
        store: SqliteStore,
        position: u64,
    ) -> Result<Follower, StoreError> {
        let (answers, pending) = mpsc::unbounded_channel();
        let (applied_tx, applied) = watch::channel(position);
        let collector = tokio::spawn(collect(
            pending,
            log.waiting.clone(),
            applied_tx,
            store.clone(),
            log.feed.clone(),
        ));
        let mut follower = Follower {
            log,
            store,
            sent: position,
            applied,
            answers,
            collector,
        };
        let last = follower.log.conn.log_info().await?.state.last_sequence;
        if last > position {
            tracing::info!(
                from = position,
                to = last,
                "bringing the replica up to date with the log"
            );
            let never = tokio_util::sync::CancellationToken::new();
            follower.follow(Some(last), &never).await?;
        }
        Ok(follower)
    }

    pub(super) async fn run(
        mut self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<(), StoreError> {
        self.follow(None, &shutdown).await
    }

    /// Applies entries until `until` is applied (or, with `None`, until `shutdown`). A
    /// consumer that ends (the servers restarted, the connection dropped for long) is made
    /// again after the last entry sent.
    async fn follow(
        &mut self,
        until: Option<u64>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), StoreError> {
        let mut retry = std::time::Duration::from_millis(100);
        loop {
            if let Some(until) = until
                && self.sent >= until
            {
                return self.wait_applied(until).await;
            }
            let messages = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                messages = self.consume() => messages,
            };
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log; trying again");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(std::time::Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    next = messages.next() => next,
                    ended = &mut self.collector => return Err(collector_ended(ended)),
                };
                match next {
                    Some(Ok(message)) => {
                        retry = std::time::Duration::from_millis(100);
                        self.apply(message).await?;
                        if let Some(until) = until
                            && self.sent >= until
                        {
                            return self.wait_applied(until).await;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading the log failed; reading it again");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    async fn consume(&self) -> Result<jetstream::consumer::pull::Ordered, StoreError> {
        let deliver_policy = match self.sent {
            0 => jetstream::consumer::DeliverPolicy::All,
            sent => jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sent + 1,
            },
        };
        self.log
            .conn
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("cannot follow the log", e))?
            .messages()
            .await
            .map_err(|e| unavailable("cannot follow the log", e))
    }

    /// Hands one entry to the replica.
    async fn apply(&mut self, message: jetstream::Message) -> Result<(), StoreError> {
        let position = message
            .info()
            .map_err(|e| StoreError::Corrupt(format!("a log entry without its position: {e}")))?
            .stream_sequence;
        if position <= self.sent {
            return Ok(());
        }
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let id = header("Nats-Msg-Id");
        let bytes = match header(OBJECT_HEADER) {
            Some(object) => read_object(&self.log.conn.writes, &object).await?,
            None => message.payload.to_vec(),
        };
        let mut write = Write::decode(&bytes).map_err(|e| {
            StoreError::Corrupt(format!(
                "the log entry at {position} cannot be read ({e}): was it written by a newer engine?"
            ))
        })?;
        if let Write::Plugin(PluginWrite::Add { version, .. }) = &mut write
            && version.component.is_empty()
        {
            version.component = read_object(
                &self.log.conn.plugins,
                &component_object(&version.name, &version.hash),
            )
            .await?;
        }
        // The dispatchers here are fed from the log only when the work is shared by partition.
        let floors = self.log.conn.config.partitions > 1;
        let answer = self.store.apply_logged(position, write, floors);
        self.sent = position;
        self.answers
            .send((position, id, answer))
            .map_err(|_| StoreError::Closed)
    }

    async fn wait_applied(&mut self, until: u64) -> Result<(), StoreError> {
        tokio::select! {
            applied = self.applied.wait_for(|applied| *applied >= until) => {
                applied.map(drop).map_err(|_| StoreError::Closed)
            }
            ended = &mut self.collector => Err(collector_ended(ended)),
        }
    }
}

/// Why the collector ended: an entry the replica could not apply, or a panic.
fn collector_ended(ended: Result<Result<(), StoreError>, tokio::task::JoinError>) -> StoreError {
    match ended {
        Ok(Err(e)) => e,
        Ok(Ok(())) => StoreError::Closed,
        Err(e) => StoreError::Io(format!("the replica's collector panicked: {e}")),
    }
}

/// Reads an object whole; one that is missing is an error (the log refers to it).
async fn read_object(
    bucket: &jetstream::object_store::ObjectStore,
    name: &str,
) -> Result<Vec<u8>, StoreError> {
    let mut object = bucket.get(name).await.map_err(|e| {
        unavailable(
            &format!("cannot read the object {name} the log refers to"),
            e,
        )
    })?;
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| unavailable(&format!("cannot read the object {name}"), e))?;
    Ok(bytes)
}

/// Collects the replica's answers in log order and hands each to the caller waiting for it.
/// Deliveries queued by a write nobody here waits for (another engine's, or one whose caller
/// gave up before the log acknowledged it) are announced to the dispatcher, which reads them
/// from the replica. An entry the replica could not apply for a reason of its own (its disk)
/// ends the task with the error: the replica must not go on past it.
async fn collect(
    mut pending: mpsc::UnboundedReceiver<(u64, Option<String>, StoreFuture<Written>)>,
    waiting: Waiting,
    applied: watch::Sender<u64>,
    store: SqliteStore,
    feed: super::feed::Feed,
) -> Result<(), StoreError> {
    while let Some((position, id, answer)) = pending.recv().await {
        let answer = answer.await;
        match &answer {
            Ok(Written::QueuedOn { rows, route, floor }) => feed.offer(route, *floor, rows),
            Ok(Written::Replayed(outcome)) if !outcome.replayed.is_empty() => {
                feed.requeued(&store);
            }
            _ => {}
        }
        if let Err(e) = &answer
            && (e.is_transient() || matches!(e, StoreError::Closed))
        {
            return Err(StoreError::Io(format!(
                "the replica could not apply the log entry at {position}: {e}"
            )));
        }
        let waiter = id.and_then(|id| {
            waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id)
        });
        let unanswered = match waiter {
            Some(waiter) => waiter.send(answer).err(),
            None => Some(answer),
        };
        if matches!(&unanswered,
            Some(Ok(Written::Queued(rows) | Written::QueuedOn { rows, .. })) if !rows.is_empty())
        {
            store.deliveries_written_elsewhere();
        }
        applied.send_replace(position);
    }
    Ok(())
}
