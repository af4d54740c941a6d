//! The HMS bus on NATS (`bus.kind: nats`): HMS events of type `t` are messages on the subject
//! `<subjectPrefix>.t`, their `hms-*` metadata in the message's headers, their JSON payload in
//! its body, exactly as `POST /events/{t}` takes them.
//!
//! With a stream, the engine reads it through a durable pull consumer whose filter is the
//! subjects of the routed event types, and acknowledges a message only once its event is
//! committed to the store: a message whose event could not be stored is sent again later
//! (`Nak` with a delay), one the engine did not acknowledge in `ackWait` (it stopped, or died)
//! is sent again by the servers, so nothing between the bus and the store is lost. A message
//! sent again is the same event: its dedupe key is the sender's `idempotency-key` (or
//! `webhook-id`), as over HTTP, else its place in the stream, so it is stored once (a
//! publisher's repeat with the same `Nats-Msg-Id` is the stream's to drop). A message that is
//! not a valid event is never sent again (`Term`); it stays in the stream, and its place is
//! logged. One of a type this engine has no route for (another engine sharing the consumer
//! widened its filter) is handed back (`Nak`), for an engine that has the route.
//!
//! Without a stream, the engine subscribes to the plain subjects in a queue group (engines with
//! the same `consumer` share the messages): at most once, since a message published while no
//! engine is connected, or whose event could not be stored, is gone.

use super::Sources;
use super::bus::hms_event;
use crate::bus::Bus;
use crate::http::health::BacklogCache;
use crate::metrics::BusLabels;
use crate::store::Records;
use crate::store::{Route, StoreError, now_ms};
use crate::throttle::Throttle;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use jetstream::consumer::FromConsumer;
use jetstream::context::ConsumerInfoErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many messages are handled at once (each waits for the store's group commit).
const IN_FLIGHT: usize = 256;
/// How long a message whose event could not be stored waits before the servers send it again.
const NOT_STORED_DELAY: Duration = Duration::from_secs(1);
/// How long a message this engine has no route for waits before the servers offer it again
/// (to any engine of the consumer).
const NO_ROUTE_DELAY: Duration = Duration::from_secs(5);
/// How often `sync_bus_reading` follows the connection's state, and a held read looks again
/// whether there is room.
const WATCH: Duration = Duration::from_millis(200);
/// How often the backlog is counted (at most: the count is shared with `/metrics`, which
/// spaces counts so that they take at most 1% of the time).
const COUNT_EVERY: Duration = Duration::from_millis(200);
/// The first pause before the stream or subscriptions are opened again after they failed.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest such pause.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Reads HMS events from the NATS bus into the store.
pub struct BusSource {
    sources: Arc<Sources>,
    bus: Arc<Bus>,
    /// The routed event types: the subjects read.
    types: Vec<String>,
    room: Room,
    throttle: Throttle,
}

/// Whether the engine takes more messages: not while the accepted events waiting to be
/// processed (as the store last counted them, plus the messages taken since that count began)
/// reach `maxBacklog`. The rest wait in the stream, where any engine of the consumer can take
/// them, instead of in this engine's store.
struct Room {
    counted: AtomicU64,
    taken: AtomicU64,
    max: u64,
}

impl Room {
    fn full(&self) -> bool {
        self.counted.load(Ordering::Relaxed) + self.taken.load(Ordering::Relaxed) >= self.max
    }

    fn take(&self) {
        self.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the backlog again and again until `shutdown`.
    async fn follow(
        &self,
        records: &dyn Records,
        cache: &BacklogCache,
        shutdown: &CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            let before = self.taken.load(Ordering::Relaxed);
            let counted = tokio::select! {
                () = shutdown.cancelled() => return,
                counted = cache.get(records) => counted,
            };
            if let Ok(backlog) = counted {
                // What was taken before the count began is in it (or processed already).
                self.counted
                    .store(backlog.pending_events, Ordering::Relaxed);
                self.taken.fetch_sub(before, Ordering::Relaxed);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(COUNT_EVERY) => {}
            }
        }
    }
}

/// What became of one message.
enum Outcome {
    /// Its event is stored (or was already: a duplicate).
    Stored,
    /// It is not a valid event: never sent again.
    Refused,
    /// Its event could not be stored now.
    NotStored,
    /// This engine has no route for its type (another engine sharing the consumer may).
    NoRoute,
}

impl BusSource {
    /// A source for the routed HMS event types of `sources` on `bus`.
    pub fn new(sources: Arc<Sources>, bus: Arc<Bus>) -> BusSource {
        let types = sources.routes.bus_types();
        let max_backlog = bus.config.max_backlog.get();
        BusSource {
            sources,
            bus,
            types,
            room: Room {
                counted: AtomicU64::new(0),
                taken: AtomicU64::new(0),
                max: u64::try_from(max_backlog).unwrap_or(u64::MAX),
            },
            throttle: Throttle::default(),
        }
    }

    /// Reads until `shutdown`, opening the stream (or the subscriptions) again whenever they
    /// fail or end, and taking messages from a stream only while the backlog `records` counts
    /// (through `cache`, shared with `/metrics`) leaves room; on shutdown, the messages in hand
    /// are stored and acknowledged first.
    pub async fn run(
        self,
        records: Arc<dyn Records>,
        cache: Arc<BacklogCache>,
        shutdown: CancellationToken,
    ) {
        tokio::join!(
            self.room.follow(&*records, &cache, &shutdown),
            self.read(&shutdown)
        );
    }

    async fn read(&self, shutdown: &CancellationToken) {
        let mut pause = FIRST_PAUSE;
        while !shutdown.is_cancelled() {
            let read = match (self.types.is_empty(), &self.bus.config.stream) {
                // No route takes HMS events: the bus only carries what handlers emit, into the
                // stream, which must exist.
                (true, _) => match self.bus.stream().await {
                    Ok(_) => return,
                    Err(e) => Err(e),
                },
                (false, Some(_)) => self.read_stream(shutdown).await,
                (false, None) => self.read_subjects(shutdown).await,
            };
            match read {
                Ok(()) => pause = FIRST_PAUSE,
                Err(e) => {
                    if let Some(left_out) = self.throttle.check("open", Instant::now()) {
                        tracing::warn!(error = %e, left_out, "cannot read the NATS bus; trying again");
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        // Acknowledgements are published like any message: send what is buffered, unless the
        // servers cannot be reached (then the messages are sent again, and found duplicates).
        let _ = tokio::time::timeout(self.bus.config.timeout, self.bus.client.flush()).await;
    }

    /// Reads the stream through the durable consumer until it fails, ends or `shutdown`.
    async fn read_stream(&self, shutdown: &CancellationToken) -> Result<(), String> {
        let Some(stream) = self.bus.stream().await? else {
            return Ok(());
        };
        let config = &self.bus.config;
        // An existing consumer keeps what cannot change (where it starts, its acknowledgement
        // policy); its filter (the routes) and limits follow the configuration.
        let mut consumer = match stream.consumer_info(&config.consumer).await {
            Ok(existing) => {
                pull::Config::try_from_consumer_config(existing.config).map_err(|e| {
                    format!(
                        "the consumer {} is not a pull consumer: {e}",
                        config.consumer
                    )
                })?
            }
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                deliver_policy: match config.deliver {
                    crate::config::DeliverFrom::New => jetstream::consumer::DeliverPolicy::New,
                    crate::config::DeliverFrom::All => jetstream::consumer::DeliverPolicy::All,
                },
                ..Default::default()
            },
            Err(e) => return Err(format!("cannot read the consumer {}: {e}", config.consumer)),
        };
        consumer.description = Some("the sync engine's HMS event routes".into());
        consumer.filter_subject = String::new();
        consumer.filter_subjects = self.types.iter().map(|t| self.bus.subject(t)).collect();
        consumer.ack_wait = config.ack_wait;
        consumer.max_ack_pending = i64::try_from(config.max_ack_pending.get()).unwrap_or(i64::MAX);
        let consumer = stream
            .create_consumer(consumer)
            .await
            .map_err(|e| format!("cannot make the consumer {}: {e}", config.consumer))?;
        // The stream's identity keeps a sequence from meaning another message once the stream
        // is deleted and made again.
        let created = stream.cached_info().created.unix_timestamp_nanos();
        let stream_name = stream.cached_info().config.name.clone();
        let mut messages = consumer
            .stream()
            .heartbeat(Duration::from_secs(4))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| format!("cannot read the consumer {}: {e}", config.consumer))?;
        tracing::info!(
            stream = %stream_name,
            consumer = %config.consumer,
            subjects = ?self.types.iter().map(|t| self.bus.subject(t)).collect::<Vec<_>>(),
            "reading HMS events from the NATS bus"
        );
        let reading = Reading::new(self);
        let mut watch = tokio::time::interval(WATCH);
        let mut handling = FuturesUnordered::new();
        let ended = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                _ = watch.tick() => reading.watch(),
                Some(()) = handling.next(), if !handling.is_empty() => {}
                next = messages.next(), if handling.len() < IN_FLIGHT && !self.held() => match next {
                    Some(Ok(message)) => {
                        self.room.take();
                        let place = message
                            .info()
                            .map(|i| format!("{stream_name}@{created}:{}", i.stream_sequence))
                            .ok();
                        handling.push(async move {
                            let outcome = self
                                .handle(&message.subject, message.headers.as_ref(), &message.payload, place)
                                .await;
                            let ack = match outcome {
                                Outcome::Stored => AckKind::Ack,
                                Outcome::Refused => AckKind::Term,
                                Outcome::NotStored => AckKind::Nak(Some(NOT_STORED_DELAY)),
                                Outcome::NoRoute => AckKind::Nak(Some(NO_ROUTE_DELAY)),
                            };
                            if let Err(e) = message.ack_with(ack).await
                                && let Some(left_out) = self.throttle.check("ack", Instant::now())
                            {
                                // Not acknowledged: the servers send it again, and it is found a duplicate.
                                tracing::warn!(error = %e, left_out, "cannot acknowledge a NATS bus message");
                            }
                        });
                    }
                    // The servers out of reach for a while: the stream pulls again once they
                    // are back.
                    Some(Err(e)) if e.kind() == pull::MessagesErrorKind::MissingHeartbeat => {
                        if let Some(left_out) = self.throttle.check("heartbeat", Instant::now()) {
                            tracing::warn!(error = %e, left_out, "the NATS bus is not answering; waiting for it");
                        }
                    }
                    Some(Err(e)) => break Err(format!("reading the consumer {} failed: {e}", config.consumer)),
                    None => break Ok(()),
                },
            }
        };
        while handling.next().await.is_some() {}
        ended
    }

    /// Whether the backlog leaves no room for another message (logged when that begins).
    fn held(&self) -> bool {
        let full = self.room.full();
        if full && let Some(left_out) = self.throttle.check("held", Instant::now()) {
            tracing::info!(
                max_backlog = self.room.max,
                left_out,
                "the engine's backlog is full: NATS bus messages wait in the stream"
            );
        }
        full
    }

    /// Reads the plain subjects in the queue group `consumer` until they end or `shutdown`.
    async fn read_subjects(&self, shutdown: &CancellationToken) -> Result<(), String> {
        let mut subscriptions = Vec::new();
        for event_type in &self.types {
            let subject = self.bus.subject(event_type);
            subscriptions.push(
                self.bus
                    .client
                    .queue_subscribe(subject.clone(), self.bus.config.consumer.clone())
                    .await
                    .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?,
            );
        }
        tracing::info!(
            queue_group = %self.bus.config.consumer,
            subjects = ?self.types.iter().map(|t| self.bus.subject(t)).collect::<Vec<_>>(),
            "reading HMS events from plain NATS subjects (at most once)"
        );
        let mut messages = futures_util::stream::select_all(subscriptions);
        let reading = Reading::new(self);
        let mut watch = tokio::time::interval(WATCH);
        let mut handling = FuturesUnordered::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = watch.tick() => reading.watch(),
                Some(()) = handling.next(), if !handling.is_empty() => {}
                next = messages.next(), if handling.len() < IN_FLIGHT => match next {
                    Some(message) => handling.push(async move {
                        if let Outcome::NotStored | Outcome::NoRoute = self
                            .handle(&message.subject, message.headers.as_ref(), &message.payload, None)
                            .await
                        {
                            tracing::error!(subject = %message.subject, "an HMS event from a plain NATS subject was not stored and is lost (plain subjects are at most once; use a stream)");
                        }
                    }),
                    None => break,
                },
            }
        }
        while handling.next().await.is_some() {}
        Ok(())
    }

    /// Stores the event one message carries. `place` is the message's place in the stream
    /// (`<stream>@<created>:<sequence>`), when it came from one.
    async fn handle(
        &self,
        subject: &str,
        nats_headers: Option<&async_nats::HeaderMap>,
        payload: &Bytes,
        place: Option<String>,
    ) -> Outcome {
        let outcome = self
            .store(subject, nats_headers, payload, place.clone())
            .await;
        let label = match &outcome {
            Ok(false) => "accepted",
            Ok(true) => "duplicate",
            Err(Problem::Refused(why)) => {
                if let Some(left_out) = self.throttle.check("refused", Instant::now()) {
                    tracing::warn!(%subject, place = ?place, reason = %why, left_out, "an HMS bus message is not a valid event and is not taken (in a stream, it stays there: `<stream>@<created>:<sequence>`)");
                }
                "refused"
            }
            Err(Problem::NotStored(e)) => {
                if let Some(left_out) = self.throttle.check("not-stored", Instant::now()) {
                    tracing::warn!(%subject, error = %e, left_out, "cannot store an HMS event from the NATS bus; it will be taken again");
                }
                "not-stored"
            }
            Err(Problem::NoRoute) => {
                if let Some(left_out) = self.throttle.check("no-route", Instant::now()) {
                    tracing::warn!(%subject, left_out, "this engine has no route for an HMS event its consumer was given (engines that share a consumer need the same `hmsEvents`); it goes back to the bus");
                }
                "no-route"
            }
        };
        self.sources
            .metrics
            .bus_messages
            .get_or_create(&BusLabels {
                outcome: label.to_owned(),
            })
            .inc();
        match outcome {
            Ok(_) => Outcome::Stored,
            Err(Problem::Refused(_)) => Outcome::Refused,
            Err(Problem::NotStored(_)) => Outcome::NotStored,
            Err(Problem::NoRoute) => Outcome::NoRoute,
        }
    }

    /// Stores the event (`place`: the message's place in the stream, its dedupe key when the
    /// sender gave none); whether it was a duplicate.
    async fn store(
        &self,
        subject: &str,
        nats_headers: Option<&async_nats::HeaderMap>,
        payload: &Bytes,
        place: Option<String>,
    ) -> Result<bool, Problem> {
        let event_type = subject
            .strip_prefix(&self.bus.config.subject_prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(subject)
            .to_owned();
        if payload.len() > self.sources.max_body {
            return Err(Problem::Refused(
                "the body is larger than the engine accepts (`maxBodySize`)".into(),
            ));
        }
        if !self.sources.routes.has_bus_route(&event_type) {
            return Err(Problem::NoRoute);
        }
        let headers = http_headers(nats_headers);
        let now = now_ms();
        let event = hms_event(
            &self.sources,
            event_type,
            &headers,
            Ok(payload.clone()),
            now,
        )
        .map_err(|e| refused(&e))?;
        let route = Route::Bus(event.event_type.clone());
        // The sender's idempotency key (as over HTTP), else the message's place in the stream:
        // the same for every delivery of one message.
        let dedupe_key = match super::headers::dedupe_key(&headers, &route.to_string(), false)
            .map_err(|e| refused(&e))?
        {
            Some(key) => Some(key),
            None => place.map(|place| format!("{route}\n{place}")),
        };
        self.sources
            .commit(event, route, dedupe_key, now)
            .await
            .map(|accepted| accepted.duplicate)
            .map_err(Problem::NotStored)
    }
}

/// While the consumer (or the subscriptions) are open: `sync_bus_reading` is 1 while the
/// connection is up, and 0 again once they close.
struct Reading<'a>(&'a BusSource);

impl<'a> Reading<'a> {
    fn new(source: &'a BusSource) -> Reading<'a> {
        let reading = Reading(source);
        reading.watch();
        reading
    }

    /// Follows the connection's state.
    fn watch(&self) {
        let connected =
            self.0.bus.client.connection_state() == async_nats::connection::State::Connected;
        self.0.sources.metrics.bus_reading.set(i64::from(connected));
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.sources.metrics.bus_reading.set(0);
    }
}

/// Why a message's event was not stored.
enum Problem {
    Refused(String),
    NotStored(StoreError),
    NoRoute,
}

/// What a refusal says: its code and message, as an HTTP answer would carry them.
fn refused(error: &crate::http::ApiError) -> Problem {
    let detail = error.detail();
    Problem::Refused(format!("{}: {}", detail.code, detail.message))
}

/// A message's headers as HTTP headers (names in lower case); those HTTP cannot carry are left
/// out, and the checks that follow say what is missing.
fn http_headers(nats: Option<&async_nats::HeaderMap>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in nats.into_iter().flat_map(async_nats::HeaderMap::iter) {
        let Ok(name) = HeaderName::from_bytes(name.as_ref()) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value.as_str()) {
                headers.append(name.clone(), value);
            }
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_headers_become_http_headers_in_lower_case() {
        let mut nats = async_nats::HeaderMap::new();
        nats.insert("hms-origin", "state-api");
        nats.insert("Hms-Key", "tax-rate/2025");
        nats.insert("Nats-Msg-Id", "m-1");
        let headers = http_headers(Some(&nats));
        assert_eq!(headers.get("hms-origin").unwrap(), "state-api");
        assert_eq!(headers.get("hms-key").unwrap(), "tax-rate/2025");
        assert_eq!(headers.get("nats-msg-id").unwrap(), "m-1");
        assert!(http_headers(None).is_empty());
    }
}
