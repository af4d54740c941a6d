//! What delivery reports: each struct writes its log line and updates its metrics together, so
//! a log and a counter never disagree about what happened.

use crate::metrics::{DeliveryLabels, DestinationLabels, Metrics};
use crate::store::{Next, now_ms};
use crate::throttle::Throttle;
use std::time::{Duration, Instant};

/// An attempt ended: counted by destination and outcome, timed, and logged: a success at
/// debug (thousands a second are normal), a retry at warn and a dead letter at error, each at
/// most once a second per destination, with how many were left out.
pub(super) struct AttemptEnded<'a> {
    pub(super) event_id: &'a str,
    pub(super) destination: &'a str,
    pub(super) attempt: u32,
    pub(super) status: Option<u16>,
    pub(super) error: Option<&'a str>,
    pub(super) next: Next,
    pub(super) elapsed: Duration,
}

impl AttemptEnded<'_> {
    pub(super) fn emit(&self, metrics: &Metrics, throttle: &Throttle) {
        let (destination, event_id, attempt, status) =
            (self.destination, self.event_id, self.attempt, self.status);
        metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                destination: destination.to_owned(),
                outcome: self.next.outcome().as_str().to_owned(),
            })
            .inc();
        metrics
            .attempt_seconds
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .observe(self.elapsed.as_secs_f64());
        metrics
            .recent
            .attempt(now_ms(), destination, self.next.outcome(), self.elapsed);
        let error = self.error.unwrap_or("");
        let duration_ms = self.elapsed.as_millis();
        let left_out =
            |kind: &str| throttle.check(&format!("{kind} {destination}"), Instant::now());
        match self.next {
            Next::Delivered => {
                tracing::debug!(
                    event_id,
                    destination,
                    attempt,
                    status,
                    duration_ms,
                    "delivered"
                );
            }
            Next::RetryAt(at) => {
                if let Some(left_out) = left_out("retry") {
                    tracing::warn!(
                        event_id,
                        destination,
                        attempt,
                        status,
                        error,
                        retry_in_ms = at - now_ms(),
                        left_out,
                        "delivery failed; will retry"
                    );
                }
            }
            Next::Dead => {
                if let Some(left_out) = left_out("dead") {
                    tracing::error!(
                        event_id,
                        destination,
                        attempt,
                        status,
                        error,
                        left_out,
                        "delivery failed for good; it is a dead letter now"
                    );
                }
            }
        }
    }
}

/// Deliveries not sent because the destination holds a newer version: one decided before a
/// send (with its winner and reason, logged), or pending ones a delivered version made stale.
pub(super) struct Superseded<'a> {
    pub(super) destination: &'a str,
    pub(super) count: usize,
    /// The decision, when one row was superseded before it was sent: its event, the winner
    /// and why.
    pub(super) decided: Option<(&'a str, &'a str, &'a str)>,
}

impl Superseded<'_> {
    pub(super) fn emit(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        if let Some((event_id, winner, reason)) = self.decided {
            tracing::debug!(
                event_id,
                destination = self.destination,
                winner,
                reason,
                "superseded: not delivered"
            );
        } else {
            tracing::debug!(
                destination = self.destination,
                count = self.count,
                "pending deliveries superseded by a newer version"
            );
        }
        metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                destination: self.destination.to_owned(),
                outcome: "superseded".to_owned(),
            })
            .inc_by(self.count as u64);
        metrics
            .recent
            .superseded(now_ms(), self.destination, self.count as u64);
    }
}
