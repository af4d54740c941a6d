//! Delivery: sends due outbox rows over HTTP, to named destinations and to the HMS core, and
//! records every attempt.
//!
//! Delivery is at least once: a row is marked delivered only after a 2xx answer is recorded, so
//! a crash between the answer and the record sends it again after a restart, with the same
//! `idempotency-key` (and `webhook-id`) header, which receivers use to drop the repeat. The time
//! of each next attempt is stored, so a restart resumes the schedule where it was.

pub mod retry;

use crate::config::{Config, CoreConfig, DestinationConfig, Strategy};
use crate::conflict::{self, Decision};
use crate::metrics::{DeliveryLabels, DestinationLabels, Metrics};
use crate::pipeline::Routes;
use crate::registry::Registry;
use crate::sandbox::{Entity, Resolution};
use crate::signing::Signer;
use crate::store::{
    AttemptRecord, CORE_TARGET, Next, OutboxAction, OutboxKind, OutboxRow, Store, StoreError,
    SupersedeRecord, now_ms,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use retry::{Schedule, Verdict};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long the dispatcher sleeps at most before looking for due rows again.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// The longest a free delivery slot waits to be refilled while others are being freed, so that
/// under load one store query refills several slots.
const REFILL_PAUSE: Duration = Duration::from_millis(2);
/// How long shutdown waits for requests in flight before leaving them to the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a row whose attempt could not be recorded waits before it is sent again (the store
/// is failing; hammering the receiver would not help).
const RECORD_COOLDOWN: Duration = Duration::from_secs(5);
/// How much of a failed response's body is kept in the attempt's error.
const ERROR_BODY: usize = 512;

/// Where an outbox row goes: a destination or the core.
struct Target {
    url: reqwest::Url,
    method: http::Method,
    headers: HeaderMap,
    timeout: Duration,
    schedule: Schedule,
    concurrency: usize,
    signer: Option<Signer>,
}

impl Target {
    fn destination(config: &Config, d: &DestinationConfig) -> anyhow::Result<Target> {
        let mut headers = HeaderMap::new();
        for (name, value) in &d.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        let secrets: Vec<&str> = d.secrets.iter().map(|s| &**s).collect();
        Ok(Target {
            url: reqwest::Url::parse(&d.url)?,
            method: d.method.as_http(),
            headers,
            timeout: d.timeout,
            schedule: Schedule::new(&d.retry.apply(&config.retry)),
            concurrency: d.concurrency.get(),
            signer: Signer::new(&secrets).map_err(anyhow::Error::msg)?,
        })
    }

    fn core(config: &Config, core: &CoreConfig) -> anyhow::Result<Target> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &core.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", &**token))?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        Ok(Target {
            url: reqwest::Url::parse(&core.url)?,
            method: http::Method::POST,
            headers,
            timeout: core.timeout,
            schedule: Schedule::new(&core.retry.apply(&config.retry)),
            concurrency: config.delivery_concurrency.get(),
            signer: None,
        })
    }
}

/// Sends due outbox rows and records their attempts.
pub struct Dispatcher {
    store: Store,
    routes: Arc<Routes>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    destinations: HashMap<String, Target>,
    core: Option<Target>,
    concurrency: usize,
}

impl Dispatcher {
    /// A dispatcher for the destinations and core of a checked configuration.
    pub fn new(
        config: &Config,
        store: Store,
        routes: Arc<Routes>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Dispatcher> {
        // reqwest is built without a default TLS provider; use ring's. Installing it a second
        // time (a second engine in one process) is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hms-sync-engine/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let destinations = config
            .destinations
            .iter()
            .map(|(name, d)| Ok((name.clone(), Target::destination(config, d)?)))
            .collect::<anyhow::Result<_>>()?;
        let core = config
            .core
            .as_ref()
            .map(|core| Target::core(config, core))
            .transpose()?;
        Ok(Dispatcher {
            store,
            routes,
            registry,
            metrics,
            client,
            destinations,
            core,
            concurrency: config.delivery_concurrency.get(),
        })
    }

    /// The target of an outbox row: its destination, or the core for an emitted event.
    fn target_of(&self, action: &OutboxAction) -> Option<&Target> {
        match action.kind {
            OutboxKind::Deliver => self.destinations.get(&action.target),
            OutboxKind::Emit => self.core.as_ref(),
            OutboxKind::Drop => None,
        }
    }

    /// The name of a row's target, whether or not it is configured.
    fn target_name(action: &OutboxAction) -> &str {
        match action.kind {
            OutboxKind::Emit => CORE_TARGET,
            _ => &action.target,
        }
    }

    /// Sends due rows until `shutdown`, within the overall and per-destination concurrency
    /// limits. Requests in flight then get a grace period to finish and be recorded; those that
    /// do not stay pending.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let changed = self.store.outbox_changed();
        let mut inflight: JoinSet<bool> = JoinSet::new();
        let mut state = Slots::default();
        // When the store was last asked for due rows: under load a refill waits for a few
        // slots to free (or a moment to pass), so one query starts many deliveries.
        let mut last_query: Option<Instant> = None;
        let refill_batch = (self.concurrency / 8).max(1);
        loop {
            // Take back every finished task first: one query then refills all their slots.
            while let Some(done) = inflight.try_join_next_with_id() {
                state.finish(done);
            }
            let free = self.concurrency.saturating_sub(inflight.len());
            let since_query = last_query.map_or(Duration::MAX, |at| at.elapsed());
            let mut sleep = IDLE_POLL;
            if free > 0 && (free >= refill_batch || since_query >= REFILL_PAUSE) {
                last_query = Some(Instant::now());
                let now = now_ms();
                let (skip, saturated) = state.exclusions(|name| self.limit_of(name));
                let mut started = 0;
                match self.store.due_outbox(now, free, skip, saturated).await {
                    Ok(rows) => {
                        for row in rows {
                            if inflight.len() >= self.concurrency {
                                break;
                            }
                            let Some(claim) = state.claim(&row, |name| self.limit_of(name)) else {
                                continue;
                            };
                            let this = self.clone();
                            let task = inflight.spawn(async move { this.deliver(row).await });
                            state.tasks.insert(task.id(), claim);
                            started += 1;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read due deliveries"),
                }
                // Every free slot filled: finishing tasks wake the loop. Otherwise sleep
                // until the next row is due (a retry), or a new row is queued.
                if started < free
                    && let Ok(Some(at)) = self.store.next_due(now).await
                {
                    let wait = u64::try_from(at - now_ms()).unwrap_or(0);
                    sleep = Duration::from_millis(wait).min(IDLE_POLL);
                }
            } else if free > 0 {
                sleep = REFILL_PAUSE.saturating_sub(since_query);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    state.finish(done);
                }
                () = changed.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while inflight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = inflight.len(),
                "deliveries still in flight at shutdown; they stay pending and are sent again on the next start"
            );
        }
    }

    /// How many requests a target may have in flight.
    fn limit_of(&self, name: &str) -> usize {
        if name == CORE_TARGET {
            self.core.as_ref().map_or(1, |t| t.concurrency)
        } else {
            self.destinations.get(name).map_or(1, |t| t.concurrency)
        }
    }

    /// Makes one attempt at a row and records it. Returns whether the attempt was recorded.
    async fn deliver(&self, row: OutboxRow) -> bool {
        let attempt = row.attempts + 1;
        let action = &row.action;
        let target = self.target_of(action);
        let destination = Self::target_name(action);
        let started_at = now_ms();
        let started = Instant::now();
        let mut merged = None;
        let mut refused = None;
        let mut later = None;
        if action.conflict != Strategy::None && action.key.is_some() && target.is_some() {
            match self.check_conflict(&row).await {
                Ok(Decision::Deliver) => {}
                Ok(Decision::DeliverBody(body)) => merged = Some(body),
                Ok(Decision::Supersede { winner, reason }) => {
                    return self.supersede(&row, destination, winner, reason).await;
                }
                Ok(Decision::Fail(error)) => refused = Some(error),
                Ok(Decision::Later(error)) => later = Some(error),
                Err(e) => {
                    tracing::error!(event_id = %row.event_id, destination, error = %e, "cannot read the conflict state; the delivery waits");
                    return false;
                }
            }
        }
        let (status, error, next) = match target {
            _ if refused.is_some() => (None, refused, Next::Dead),
            Some(target) if later.is_some() => {
                let next = self.retry_after_failure(&row, target, None);
                (None, later, next)
            }
            None => (
                None,
                Some(match action.kind {
                    OutboxKind::Emit => "the HMS core is not configured (`core.url`), so emitted events cannot be delivered".to_owned(),
                    _ => format!("the destination `{}` is not configured", action.target),
                }),
                Next::Dead,
            ),
            Some(target) => {
                let body = merged.as_deref().unwrap_or(&action.body);
                let sent = self.send(target, &row.event_id, action, body).await;
                let next = match sent.verdict {
                    Verdict::Delivered => Next::Delivered,
                    Verdict::Permanent => Next::Dead,
                    Verdict::Retry => self.retry_after_failure(&row, target, sent.retry_after),
                };
                (sent.status, sent.error, next)
            }
        };
        let elapsed = started.elapsed();
        let duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        let outcome = match next {
            Next::Delivered => "delivered",
            Next::RetryAt(_) => "retry",
            Next::Dead => "dead",
        };
        self.metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                destination: destination.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.metrics
            .attempt_seconds
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        let error_text = error.as_deref().unwrap_or("");
        match next {
            Next::Delivered => tracing::info!(
                event_id = %row.event_id, destination, attempt, status, duration_ms, "delivered"
            ),
            Next::RetryAt(at) => tracing::warn!(
                event_id = %row.event_id, destination, attempt, status, error = error_text,
                retry_in_ms = at - now_ms(), "delivery failed; will retry"
            ),
            Next::Dead => tracing::error!(
                event_id = %row.event_id, destination, attempt, status, error = error_text,
                "delivery failed for good; it is a dead letter now"
            ),
        }
        let record = AttemptRecord {
            outbox_id: row.id,
            attempt,
            started_at,
            duration_ms,
            status,
            error,
            next,
            merged_body: merged,
        };
        match self.store.record_attempt(record).await {
            Ok(superseded) => {
                if superseded > 0 {
                    self.metrics
                        .deliveries
                        .get_or_create(&DeliveryLabels {
                            destination: destination.to_owned(),
                            outcome: "superseded".to_owned(),
                        })
                        .inc_by(superseded as u64);
                }
                true
            }
            Err(e) => {
                tracing::error!(event_id = %row.event_id, destination, error = %e, "cannot record a delivery attempt; it will be made again");
                false
            }
        }
    }

    /// When to try a row again after a failed attempt, or `Next::Dead` when its round is over.
    fn retry_after_failure(
        &self,
        row: &OutboxRow,
        target: &Target,
        retry_after: Option<Duration>,
    ) -> Next {
        let age =
            Duration::from_millis(u64::try_from(now_ms() - row.round_started_at).unwrap_or(0));
        match target
            .schedule
            .next(row.round_attempts + 1, age, retry_after)
        {
            Some(delay) => {
                Next::RetryAt(now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
            }
            None => Next::Dead,
        }
    }

    /// Decides, by the row's conflict strategy, whether it is newer than what its destination
    /// holds. The `plugin` strategy runs its resolver on a blocking thread.
    async fn check_conflict(&self, row: &OutboxRow) -> Result<Decision, StoreError> {
        let action = &row.action;
        let key = action.key.clone().unwrap_or_default();
        let current = self
            .store
            .entity_state(action.kind, action.target.clone(), key.clone())
            .await?;
        if action.conflict != Strategy::Plugin {
            return Ok(conflict::decide(row, current.as_ref()));
        }
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

    /// Records a row as superseded; returns whether that was recorded.
    async fn supersede(
        &self,
        row: &OutboxRow,
        destination: &str,
        winner: String,
        reason: String,
    ) -> bool {
        tracing::info!(event_id = %row.event_id, destination, winner = %winner, reason = %reason, "superseded: not delivered");
        let record = SupersedeRecord {
            outbox_id: row.id,
            winner,
            reason,
            at: now_ms(),
        };
        match self.store.supersede(record).await {
            Ok(()) => {
                self.metrics
                    .deliveries
                    .get_or_create(&DeliveryLabels {
                        destination: destination.to_owned(),
                        outcome: "superseded".to_owned(),
                    })
                    .inc();
                true
            }
            Err(e) => {
                tracing::error!(event_id = %row.event_id, destination, error = %e, "cannot record a superseded delivery");
                false
            }
        }
    }

    /// Sends one request for the action of an event, with `body`. Returns the verdict, the
    /// status, and an error message.
    async fn send(
        &self,
        target: &Target,
        event_id: &str,
        action: &OutboxAction,
        body: &[u8],
    ) -> Sent {
        let mut url = target.url.clone();
        let mut headers = target.headers.clone();
        if action.kind == OutboxKind::Emit {
            // `{core.url}/events/{type}`, however the core's URL ends.
            let path = format!(
                "{}/events/{}",
                url.path().trim_end_matches('/'),
                action.target
            );
            url.set_path(&path);
        }
        // Where the update comes from and what it is about, on every request: the bus endpoint
        // reads the same headers, and systems that relay updates pass `hms-origin` and
        // `hms-hops` on, so cycles end.
        for (name, value) in [
            ("hms-origin", Some(action.origin.clone())),
            ("hms-hops", Some(action.hops.to_string())),
            ("hms-path", Some(action.path.join(","))),
            ("hms-source-event", Some(event_id.to_owned())),
            ("hms-key", action.key.clone()),
            ("hms-version", action.version.map(|v| v.to_string())),
            ("hms-timestamp", Some(action.timestamp.to_string())),
        ] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        for header in &action.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(header.name.as_bytes()),
                HeaderValue::from_str(&header.value),
            ) {
                headers.append(name, value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&action.content_type) {
            headers.insert(http::header::CONTENT_TYPE, value);
        }
        // Standard Webhooks headers: the id is the idempotency key, stable across retries; the
        // timestamp and signature are made for each attempt.
        let timestamp = now_ms() / 1000;
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set("idempotency-key", &action.idempotency_key);
        set("webhook-id", &action.idempotency_key);
        set("webhook-timestamp", &timestamp.to_string());
        if let Some(signer) = &target.signer {
            match signer.sign(&action.idempotency_key, timestamp, body) {
                Ok(signature) => set("webhook-signature", &signature),
                Err(e) => {
                    return Sent {
                        verdict: Verdict::Permanent,
                        status: None,
                        error: Some(e),
                        retry_after: None,
                    };
                }
            }
        }
        let request = self
            .client
            .request(target.method.clone(), url)
            .headers(headers)
            .timeout(target.timeout)
            .body(body.to_vec());
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let verdict = retry::classify_status(status);
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
                let error = if verdict == Verdict::Delivered {
                    None
                } else {
                    Some(with_body_excerpt(format!("HTTP {status}"), response).await)
                };
                Sent {
                    verdict,
                    status: Some(status.as_u16()),
                    error,
                    retry_after,
                }
            }
            Err(e) => {
                let message = if e.is_timeout() {
                    format!("no answer within {}ms", target.timeout.as_millis())
                } else {
                    error_chain(&e)
                };
                Sent {
                    verdict: retry::classify_error(&e),
                    status: None,
                    error: Some(message),
                    retry_after: None,
                }
            }
        }
    }
}

/// An entity: (outbox kind, target, key).
type EntityRef = (&'static str, String, String);

/// What a delivery task is sending.
struct InFlight {
    row: i64,
    target: String,
    entity: Option<EntityRef>,
}

/// The dispatcher's view of what is in flight.
#[derive(Default)]
struct Slots {
    /// What each task is sending: its row, its target and its entity, so a finished (or
    /// panicked) task gives them back.
    tasks: HashMap<tokio::task::Id, InFlight>,
    /// The entities with a delivery in flight: one at a time each, whatever the order rows
    /// became due in (a replayed dead letter can be older than the row in flight).
    entities: HashSet<EntityRef>,
    /// Requests in flight per target.
    per_target: HashMap<String, usize>,
    /// Rows whose attempt could not be recorded: not sent again before the time given.
    cooling: HashMap<i64, Instant>,
}

impl Slots {
    /// The rows not to fetch (in flight or cooling) and the targets at their limit.
    fn exclusions(&mut self, limit_of: impl Fn(&str) -> usize) -> (Vec<i64>, Vec<String>) {
        let now = Instant::now();
        self.cooling.retain(|_, until| *until > now);
        let skip = self
            .tasks
            .values()
            .map(|t| t.row)
            .chain(self.cooling.keys().copied())
            .collect();
        let saturated = self
            .per_target
            .iter()
            .filter(|(name, busy)| **busy >= limit_of(name))
            .map(|(name, _)| name.clone())
            .collect();
        (skip, saturated)
    }

    /// Takes a slot of the row's target and its entity, unless either is taken.
    fn claim(&mut self, row: &OutboxRow, limit_of: impl Fn(&str) -> usize) -> Option<InFlight> {
        let name = Dispatcher::target_name(&row.action).to_owned();
        let entity = row
            .action
            .key
            .clone()
            .map(|key| (row.action.kind.as_str(), row.action.target.clone(), key));
        if entity.as_ref().is_some_and(|e| self.entities.contains(e)) {
            return None;
        }
        let busy = self.per_target.entry(name.clone()).or_default();
        if *busy >= limit_of(&name) {
            return None;
        }
        *busy += 1;
        if let Some(entity) = &entity {
            self.entities.insert(entity.clone());
        }
        Some(InFlight {
            row: row.id,
            target: name,
            entity,
        })
    }

    /// Gives back what a finished task held.
    fn finish(&mut self, done: Result<(tokio::task::Id, bool), tokio::task::JoinError>) {
        let (task, recorded) = match done {
            Ok((task, recorded)) => (task, recorded),
            Err(e) => {
                tracing::error!(error = %e, "a delivery task failed; its row stays pending");
                (e.id(), false)
            }
        };
        let Some(done) = self.tasks.remove(&task) else {
            return;
        };
        if let Some(busy) = self.per_target.get_mut(&done.target) {
            *busy = busy.saturating_sub(1);
        }
        if let Some(entity) = &done.entity {
            self.entities.remove(entity);
        }
        if !recorded {
            self.cooling
                .insert(done.row, Instant::now() + RECORD_COOLDOWN);
        }
    }
}

/// What one request got.
struct Sent {
    verdict: Verdict,
    status: Option<u16>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

/// `prefix: <the start of the response body>`, when the body has text.
async fn with_body_excerpt(prefix: String, mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY);
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        prefix
    } else {
        format!("{prefix}: {text}")
    }
}

/// An error and its causes, `: `-separated (reqwest's own message hides the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
