//! Emitted events onto the HMS bus on NATS: an event of type `t` is published on
//! `<subjectPrefix>.t` with the headers an HTTP delivery carries (provenance for loop
//! prevention, entity metadata, the idempotency key) and `Nats-Msg-Id` equal to the idempotency
//! key.
//!
//! With a stream, an attempt is delivered when the stream acknowledges the message: it is
//! stored there. A row sent again (its attempt was not recorded before a crash, say) carries
//! the same message id, which the stream drops as a duplicate within its duplicate window (two
//! minutes unless the stream says otherwise); no acknowledgement within `timeout`, or no stream
//! for the subject, is retried by the schedule. Without a stream, an attempt is delivered once
//! the message is flushed to a server: subscribers that are not connected never see it.

use super::request::{self, Sent};
use super::retry::Verdict;
use crate::bus::Bus;
use crate::store::OutboxAction;
use async_nats::jetstream::context::PublishErrorKind;
use std::time::Duration;

/// Publishes `body` for `action` of `event_id` and waits up to `timeout` for the stream's
/// acknowledgement (or the flush, on plain subjects).
pub(super) async fn publish(
    bus: &Bus,
    timeout: Duration,
    event_id: &str,
    action: &OutboxAction,
    body: &[u8],
) -> Sent {
    let headers = match request::headers(&http::HeaderMap::new(), None, event_id, action, body) {
        Ok(headers) => headers,
        Err(e) => return Sent::failed(Verdict::Permanent, e),
    };
    let mut message_headers = async_nats::HeaderMap::new();
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            message_headers.append(name.as_str(), value);
        }
    }
    message_headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        action.idempotency_key.as_str(),
    );
    let subject = bus.subject(&action.target);
    let payload = bytes::Bytes::copy_from_slice(body);
    let published = tokio::time::timeout(timeout, async {
        if bus.config.stream.is_some() {
            let ack = bus
                .jetstream
                .publish_with_headers(subject.clone(), message_headers, payload)
                .await
                .map_err(|e| (e.kind(), e.to_string()))?;
            ack.await.map(drop).map_err(|e| (e.kind(), e.to_string()))
        } else {
            bus.client
                .publish_with_headers(subject.clone(), message_headers, payload)
                .await
                .map_err(|e| {
                    let kind = match e.kind() {
                        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                            PublishErrorKind::MaxPayloadExceeded
                        }
                        _ => PublishErrorKind::Other,
                    };
                    (kind, e.to_string())
                })?;
            bus.client
                .flush()
                .await
                .map_err(|e| (PublishErrorKind::Other, e.to_string()))
        }
    })
    .await;
    match published {
        Ok(Ok(())) => Sent {
            verdict: Verdict::Delivered,
            status: None,
            error: None,
            retry_after: None,
        },
        // Too large for the servers, as they said when the client connected (before that, the
        // client only knows a default, and the attempt is retried).
        Ok(Err((PublishErrorKind::MaxPayloadExceeded, e)))
            if bus.client.connection_state() == async_nats::connection::State::Connected =>
        {
            Sent::failed(
                Verdict::Permanent,
                format!("cannot publish on {subject}: {e}"),
            )
        }
        Ok(Err((_, e))) => {
            Sent::failed(Verdict::Retry, format!("cannot publish on {subject}: {e}"))
        }
        Err(_) => Sent::failed(
            Verdict::Retry,
            format!(
                "the NATS bus did not acknowledge the message on {subject} within {}ms",
                timeout.as_millis()
            ),
        ),
    }
}
