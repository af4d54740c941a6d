//! The HMS bus on NATS (`bus.kind: nats`): HMS events of type `t` are messages on the subject
//! `<subjectPrefix>.t`, their `hms-*` metadata in the message's headers, their JSON payload in
//! its body, exactly as `POST /events/{t}` takes them.
//!
//! With a stream, the engine reads it through a durable pull consumer whose filter is the
//! subjects of the routed event types, and acknowledges a message only once its event is
//! committed to the store: a message whose event could not be stored is sent again later
//! (`Nak` with a delay), one the engine did not acknowledge in `ackWait` (it stopped, or died)
//! is sent again by the servers, so nothing between the bus and the store is lost. A message
//! sent again is the same event: its dedupe key is the sender's `idempotency-key`, else its
//! `Nats-Msg-Id`, else its place in the stream, so it is stored once. A message that is not a
//! valid event is never sent again (`Term`); it stays in the stream, and its sequence is logged.
//!
//! Without a stream, the engine subscribes to the plain subjects in a queue group (engines with
//! the same `consumer` share the messages): at most once, since a message published while no
//! engine is connected, or whose event could not be stored, is gone.

use super::Sources;
use super::bus::hms_event;
use crate::bus::Bus;
use crate::metrics::BusLabels;
use crate::store::{Route, StoreError, now_ms};
use crate::throttle::Throttle;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many messages are handled at once (each waits for the store's group commit).
const IN_FLIGHT: usize = 256;
/// How long a message whose event could not be stored waits before the servers send it again.
const NOT_STORED_DELAY: Duration = Duration::from_secs(1);
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
    throttle: Throttle,
}

/// What became of one message.
enum Outcome {
    /// Its event is stored (or was already: a duplicate).
    Stored,
    /// It is not a valid event: never sent again.
    Refused,
    /// Its event could not be stored now.
    NotStored,
}

impl BusSource {
    /// A source for the routed HMS event types of `sources` on `bus`.
    pub fn new(sources: Arc<Sources>, bus: Arc<Bus>) -> BusSource {
        let types = sources.routes.bus_types();
        BusSource {
            sources,
            bus,
            types,
            throttle: Throttle::default(),
        }
    }

    /// Reads until `shutdown`, opening the stream (or the subscriptions) again whenever they
    /// fail or end; on shutdown, the messages in hand are stored and acknowledged first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pause = FIRST_PAUSE;
        while !shutdown.is_cancelled() {
            let read = match (self.types.is_empty(), &self.bus.config.stream) {
                // No route takes HMS events: the bus only carries what handlers emit, into the
                // stream, which must exist.
                (true, _) => match self.bus.stream().await {
                    Ok(_) => return,
                    Err(e) => Err(e),
                },
                (false, Some(_)) => self.read_stream(&shutdown).await,
                (false, None) => self.read_subjects(&shutdown).await,
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
        // Acknowledgements are published like any message: send what is buffered.
        let _ = self.bus.client.flush().await;
    }

    /// Reads the stream through the durable consumer until it fails, ends or `shutdown`.
    async fn read_stream(&self, shutdown: &CancellationToken) -> Result<(), String> {
        let Some(stream) = self.bus.stream().await? else {
            return Ok(());
        };
        let config = &self.bus.config;
        let mut consumer = pull::Config {
            durable_name: Some(config.consumer.clone()),
            description: Some("the sync engine's HMS event routes".into()),
            filter_subjects: self.types.iter().map(|t| self.bus.subject(t)).collect(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_ack_pending: i64::try_from(config.max_ack_pending.get()).unwrap_or(i64::MAX),
            deliver_policy: match config.deliver {
                crate::config::DeliverFrom::New => jetstream::consumer::DeliverPolicy::New,
                crate::config::DeliverFrom::All => jetstream::consumer::DeliverPolicy::All,
            },
            ..Default::default()
        };
        // Where a consumer starts cannot change once it exists; its filter (the routes) can.
        if let Ok(existing) = stream.get_consumer::<pull::Config>(&config.consumer).await {
            consumer.deliver_policy = existing.cached_info().config.deliver_policy;
        }
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
        let _reading = Reading::new(&self.sources.metrics);
        let mut handling = FuturesUnordered::new();
        let ended = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                Some(()) = handling.next(), if !handling.is_empty() => {}
                next = messages.next(), if handling.len() < IN_FLIGHT => match next {
                    Some(Ok(message)) => {
                        let place = message.info().map(|i| i.stream_sequence).ok();
                        let fallback = place.map(|seq| format!("{stream_name}@{created}:{seq}"));
                        handling.push(async move {
                            let outcome = self
                                .handle(&message.subject, message.headers.as_ref(), &message.payload, fallback, place)
                                .await;
                            let ack = match outcome {
                                Outcome::Stored => AckKind::Ack,
                                Outcome::Refused => AckKind::Term,
                                Outcome::NotStored => AckKind::Nak(Some(NOT_STORED_DELAY)),
                            };
                            if let Err(e) = message.ack_with(ack).await
                                && let Some(left_out) = self.throttle.check("ack", Instant::now())
                            {
                                // Not acknowledged: the servers send it again, and it is found a duplicate.
                                tracing::warn!(error = %e, left_out, "cannot acknowledge a NATS bus message");
                            }
                        });
                    }
                    Some(Err(e)) => break Err(format!("reading the consumer {} failed: {e}", config.consumer)),
                    None => break Ok(()),
                },
            }
        };
        while handling.next().await.is_some() {}
        ended
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
        let _reading = Reading::new(&self.sources.metrics);
        let mut handling = FuturesUnordered::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(()) = handling.next(), if !handling.is_empty() => {}
                next = messages.next(), if handling.len() < IN_FLIGHT => match next {
                    Some(message) => handling.push(async move {
                        if let Outcome::NotStored = self
                            .handle(&message.subject, message.headers.as_ref(), &message.payload, None, None)
                            .await
                        {
                            tracing::error!(subject = %message.subject, "an HMS event from a plain NATS subject could not be stored and is lost (plain subjects are at most once; use a stream)");
                        }
                    }),
                    None => break,
                },
            }
        }
        while handling.next().await.is_some() {}
        Ok(())
    }

    /// Stores the event one message carries. `fallback` is its dedupe key when the sender gave
    /// none; `place` its stream sequence, for the log.
    async fn handle(
        &self,
        subject: &str,
        nats_headers: Option<&async_nats::HeaderMap>,
        payload: &Bytes,
        fallback: Option<String>,
        place: Option<u64>,
    ) -> Outcome {
        let outcome = self.store(subject, nats_headers, payload, fallback).await;
        let label = match &outcome {
            Ok(false) => "accepted",
            Ok(true) => "duplicate",
            Err(Problem::Refused(why)) => {
                if let Some(left_out) = self.throttle.check("refused", Instant::now()) {
                    tracing::warn!(%subject, sequence = ?place, reason = %why, left_out, "an HMS bus message is not a valid event and is not taken (in a stream, it stays there at `sequence`)");
                }
                "refused"
            }
            Err(Problem::NotStored(e)) => {
                if let Some(left_out) = self.throttle.check("not-stored", Instant::now()) {
                    tracing::warn!(%subject, error = %e, left_out, "cannot store an HMS event from the NATS bus; it will be taken again");
                }
                "not-stored"
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
        }
    }

    /// Stores the event; whether it was a duplicate.
    async fn store(
        &self,
        subject: &str,
        nats_headers: Option<&async_nats::HeaderMap>,
        payload: &Bytes,
        fallback: Option<String>,
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
        let mut headers = http_headers(nats_headers);
        // The sender's idempotency key, else the message's id, else its place in the stream.
        if headers.get("idempotency-key").is_none()
            && let Some(id) = nats_headers
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_owned())
                .or(fallback)
            && let Ok(id) = HeaderValue::from_str(&id)
        {
            headers.insert("idempotency-key", id);
        }
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
        let dedupe_key = super::headers::dedupe_key(&headers, &route.to_string(), false)
            .map_err(|e| refused(&e))?;
        self.sources
            .commit(event, route, dedupe_key, now)
            .await
            .map(|accepted| accepted.duplicate)
            .map_err(Problem::NotStored)
    }
}

/// `sync_bus_reading` is 1 while one of these lives.
struct Reading<'a>(&'a crate::metrics::Metrics);

impl<'a> Reading<'a> {
    fn new(metrics: &'a crate::metrics::Metrics) -> Reading<'a> {
        metrics.bus_reading.set(1);
        Reading(metrics)
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.bus_reading.set(0);
    }
}

/// Why a message's event was not stored.
enum Problem {
    Refused(String),
    NotStored(StoreError),
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
