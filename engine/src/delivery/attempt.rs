//! One attempt at one outbox row, in typed stages: the conflict check decides a [`Plan`]; the
//! plan is carried out (a request, or a decision not to send) and [`Ended`]; the end is
//! reported and recorded, and the dispatcher learns what became of the row ([`Finished`]).

use super::Dispatcher;
use super::events::{AttemptEnded, Superseded};
use super::retry::Verdict;
use super::slots::SlotRelease;
use crate::config::Strategy;
use crate::conflict::{self, Decision};
use crate::sandbox::{Entity, Resolution};
use crate::store::{
    Attempt, AttemptRecord, Next, OutboxKind, OutboxRow, StoreError, SupersedeRecord, now_ms,
};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How long a row whose attempt could not be recorded (for a reason other than an outage, or
/// while its conflict state could not be read) waits before it is sent again.
const RECORD_COOLDOWN: Duration = Duration::from_secs(5);
/// The first pause before recording an attempt again while the store is unavailable.
const RECORD_PAUSE: Duration = Duration::from_millis(100);
/// The longest such pause.
const MAX_RECORD_PAUSE: Duration = Duration::from_secs(5);

/// What became of a row after one attempt, for the dispatcher's queue.
#[derive(Debug, Default)]
pub(super) struct Finished {
    /// The row, when it must be tried again, with its next attempt time.
    pub(super) again: Option<OutboxRow>,
    /// Pending rows a delivered version superseded.
    pub(super) superseded: Vec<i64>,
}

impl Finished {
    /// The row leaves the queue.
    fn done(superseded: Vec<i64>) -> Finished {
        Finished {
            again: None,
            superseded,
        }
    }

    /// Nothing about the row could be recorded: it is sent again after a pause.
    fn cool_down(mut row: OutboxRow) -> Finished {
        row.next_attempt_at =
            now_ms() + i64::try_from(RECORD_COOLDOWN.as_millis()).unwrap_or(i64::MAX);
        Finished {
            again: Some(row),
            superseded: Vec::new(),
        }
    }
}

/// What the conflict check decided for a row, before anything is sent.
enum Plan {
    /// Send it, with this body instead of its own when a resolver merged the versions.
    Send(Option<Vec<u8>>),
    /// Do not send it: the destination holds a newer version, carried by `winner`.
    Supersede { winner: String, reason: String },
    /// It cannot be checked: a dead letter with this error.
    Fail(String),
    /// It cannot be checked yet (the resolver found the sandbox busy): retry by the schedule.
    Later(String),
}

/// How an attempt ended, ready to report and record.
struct Ended {
    status: Option<u16>,
    error: Option<String>,
    next: Next,
    /// The body sent, when a resolver merged it (kept as the entity's state).
    merged: Option<Vec<u8>>,
}

impl Ended {
    fn dead(error: String) -> Ended {
        Ended {
            status: None,
            error: Some(error),
            next: Next::Dead,
            merged: None,
        }
    }
}

impl Dispatcher {
    /// Records an attempt. While the store is unavailable (a full or failing disk, a lock held
    /// elsewhere) the same record is tried again, after pauses that double up to
    /// [`MAX_RECORD_PAUSE`]: the request is not made again, and the row, still in flight, keeps
    /// its entity's later rows waiting. Other failures are answered at once.
    async fn record(&self, record: AttemptRecord) -> Result<Vec<i64>, StoreError> {
        let mut pause = RECORD_PAUSE;
        loop {
            match self.outbox.record_attempt(record.clone()).await {
                Err(e) if e.is_transient() => {
                    if let Some(left_out) = self.throttle.check("record-attempt", Instant::now()) {
                        tracing::error!(error = %e, left_out, "cannot record a delivery attempt; trying again until the store takes it");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RECORD_PAUSE);
                }
                answer => return answer,
            }
        }
    }

    /// Makes one attempt at a row and records it: the delivery stage. `slot` is given back as
    /// soon as the request has ended (or none is made), before the attempt is recorded.
    pub(super) async fn deliver(&self, row: OutboxRow, slot: SlotRelease) -> Finished {
        let destination = row.action.target_name().to_owned();
        let number = row.attempts + 1;
        let span = tracing::debug_span!(
            "deliver", event_id = %row.event_id, destination = %destination, attempt = number
        );
        async move {
            let started_at = now_ms();
            let started = Instant::now();
            let plan = match self.plan(&row).await {
                Ok(plan) => plan,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the conflict state; the delivery waits");
                    return Finished::cool_down(row);
                }
            };
            let ended = match (plan, self.endpoint_of(row.action.kind, &row.action.target)) {
                (Plan::Supersede { winner, reason }, _) => {
                    drop(slot);
                    return if self.supersede(&row, &destination, winner, reason).await {
                        Finished::done(Vec::new())
                    } else {
                        Finished::cool_down(row)
                    };
                }
                (Plan::Fail(error), _) => Ended::dead(error),
                (_, None) => Ended::dead(match row.action.kind {
                    OutboxKind::Emit => "the HMS core is not configured (`core.url`), so emitted events cannot be delivered".to_owned(),
                    _ => format!("the destination `{}` is not configured", row.action.target),
                }),
                (Plan::Later(error), Some(endpoint)) => Ended {
                    status: None,
                    error: Some(error),
                    next: endpoint.schedule.after_failure(
                        row.round_attempts,
                        row.round_started_at,
                        None,
                        now_ms(),
                    ),
                    merged: None,
                },
                (Plan::Send(merged), Some(endpoint)) => {
                    let body = merged.as_deref().unwrap_or(&row.action.body);
                    let sent = endpoint
                        .send(&self.client, &row.event_id, &row.action, body)
                        .await;
                    let next = match sent.verdict {
                        Verdict::Delivered => Next::Delivered,
                        Verdict::Permanent => Next::Dead,
                        Verdict::Retry => endpoint.schedule.after_failure(
                            row.round_attempts,
                            row.round_started_at,
                            sent.retry_after,
                            now_ms(),
                        ),
                    };
                    Ended {
                        status: sent.status,
                        error: sent.error,
                        next,
                        merged,
                    }
                }
            };
            let elapsed = started.elapsed();
            drop(slot);
            AttemptEnded {
                event_id: &row.event_id,
                destination: &destination,
                attempt: number,
                status: ended.status,
                error: ended.error.as_deref(),
                next: ended.next,
                elapsed,
            }
            .emit(&self.metrics, &self.throttle);
            let record = AttemptRecord {
                outbox_id: row.id,
                attempt: Attempt {
                    number,
                    started_at,
                    duration_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
                    status: ended.status,
                    error: ended.error.clone(),
                    outcome: ended.next.outcome(),
                },
                next: ended.next,
                holds: if ended.next == Next::Delivered {
                    row.holds(ended.merged)
                } else {
                    None
                },
            };
            match self.record(record).await {
                Ok(superseded) => {
                    Superseded {
                        destination: &destination,
                        count: superseded.len(),
                        decided: None,
                    }
                    .emit(&self.metrics);
                    match ended.next {
                        Next::RetryAt(at) => {
                            let mut again = row;
                            again.attempts += 1;
                            again.round_attempts += 1;
                            again.next_attempt_at = at;
                            again.last_error = ended.error;
                            Finished {
                                again: Some(again),
                                superseded,
                            }
                        }
                        Next::Delivered | Next::Dead => Finished::done(superseded),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record a delivery attempt; it will be made again");
                    Finished::cool_down(row)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Decides, by the row's conflict strategy, whether it is newer than what its destination
    /// holds. Rows without a key or a strategy, or whose target is not configured, are sent as
    /// they are. The `plugin` strategy runs its resolver on a blocking thread.
    async fn plan(&self, row: &OutboxRow) -> Result<Plan, StoreError> {
        let action = &row.action;
        let Some(entity) = action.entity() else {
            return Ok(Plan::Send(None));
        };
        if action.conflict == Strategy::None
            || self.endpoint_of(action.kind, &action.target).is_none()
        {
            return Ok(Plan::Send(None));
        }
        let current = self.outbox.entity_state(entity.clone()).await?;
        let decision = if action.conflict == Strategy::Plugin {
            self.resolve(row, entity.key, current).await?
        } else {
            conflict::decide(row, current.as_ref())
        };
        Ok(match decision {
            Decision::Deliver => Plan::Send(None),
            Decision::DeliverBody(body) => Plan::Send(Some(body)),
            Decision::Supersede { winner, reason } => Plan::Supersede { winner, reason },
            Decision::Fail(error) => Plan::Fail(error),
            Decision::Later(error) => Plan::Later(error),
        })
    }

    /// Asks the route's resolver plugin to settle between what the destination holds and the
    /// row.
    async fn resolve(
        &self,
        row: &OutboxRow,
        key: String,
        current: Option<crate::store::EntityState>,
    ) -> Result<Decision, StoreError> {
        let action = &row.action;
        let (Some(current), Some(name)) = (current, action.resolver.as_deref()) else {
            return Ok(Decision::Deliver);
        };
        let Some(body) = current.body.clone() else {
            // Delivered under another strategy, whose state keeps no body: nothing to merge.
            return Ok(Decision::Deliver);
        };
        let (Some(resolver), Some(plugin)) =
            (self.routes.resolver(name).cloned(), self.registry.get(name))
        else {
            return Ok(Decision::Fail(format!(
                "the resolver `{name}` is no longer configured"
            )));
        };
        let held = Entity {
            key: key.clone(),
            version: current.version,
            timestamp: current.timestamp,
            event_id: current.event_id.clone(),
            content_type: current.content_type.clone(),
            payload: body,
        };
        let incoming = Entity {
            key,
            version: action.version,
            timestamp: action.timestamp,
            event_id: row.event_id.clone(),
            content_type: action.content_type.clone(),
            payload: action.body.clone(),
        };
        let resolved =
            tokio::task::spawn_blocking(move || plugin.resolve(&held, &incoming, &resolver.setup))
                .await
                .map_err(|e| StoreError::Io(format!("the resolver's thread failed: {e}")))?;
        Ok(match resolved {
            Ok(Resolution::Keep) => Decision::Supersede {
                winner: current.event_id,
                reason: format!("the resolver `{name}` kept the version the destination holds"),
            },
            Ok(Resolution::Replace) => Decision::Deliver,
            Ok(Resolution::Merged(body)) => Decision::DeliverBody(body),
            Err(e) if e.is_capacity() => {
                Decision::Later(format!("the resolver `{name}` could not run yet: {e}"))
            }
            Err(e) => Decision::Fail(format!("the resolver `{name}` failed: {e}")),
        })
    }

    /// Records a row as superseded; returns whether that was recorded. A row a delivered
    /// version superseded already (it reached the queue after that delivery) is not counted
    /// twice.
    async fn supersede(
        &self,
        row: &OutboxRow,
        destination: &str,
        winner: String,
        reason: String,
    ) -> bool {
        let record = SupersedeRecord {
            outbox_id: row.id,
            winner,
            reason,
            at: now_ms(),
        };
        let (winner, reason) = (record.winner.clone(), record.reason.clone());
        match self.outbox.supersede(record).await {
            Ok(changed) => {
                Superseded {
                    destination,
                    count: usize::from(changed),
                    decided: Some((&row.event_id, &winner, &reason)),
                }
                .emit(&self.metrics);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record a superseded delivery");
                false
            }
        }
    }
}
