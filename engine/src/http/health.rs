//! `GET /healthz` (the process answers), `GET /readyz` (the processor and the dispatcher run
//! and the store takes writes) and `GET /metrics` (Prometheus, with the backlog counted for
//! each scrape, but at most 1% of the time however often it is scraped; behind a bearer token
//! when `admin.metricsToken` is set).

use super::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{Backlog, Intake, Records, now_ms};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the health endpoints read.
pub struct Health {
    /// Probed by `/readyz`.
    pub intake: Arc<dyn Intake>,
    /// The backlog, for `/metrics`.
    pub records: Arc<dyn Records>,
    /// The counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Every check of a presented credential goes through it.
    pub auth: Arc<super::auth::AuthThrottle>,
    /// The engine's background stages; `/readyz` fails while one is not running.
    pub stages: Vec<Stage>,
    /// The backlog last read, and when (shared with the admin API's overview).
    pub backlog: Arc<BacklogCache>,
    /// The last write probe's answer, and when.
    pub probe: ProbeCache,
}

/// How long a write probe's answer is reused by `/readyz`: however often it is asked, the store
/// takes at most one probe write in this time.
pub const PROBE_MAX_AGE: Duration = Duration::from_secs(1);

/// The last write probe for `/readyz`: when it ended, and what was wrong (`None`: nothing).
/// Requests that arrive together share one probe.
pub struct ProbeCache {
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Option<String>)>>,
    max_age: Duration,
}

impl Default for ProbeCache {
    fn default() -> Self {
        ProbeCache {
            last: tokio::sync::Mutex::default(),
            max_age: PROBE_MAX_AGE,
        }
    }
}

impl ProbeCache {
    /// What is wrong with writing to the store (`None`: nothing), probed again when the last
    /// answer is older than [`PROBE_MAX_AGE`].
    async fn problem(&self, intake: &dyn Intake) -> Option<String> {
        let mut last = self.last.lock().await;
        if let Some((at, problem)) = &*last
            && at.elapsed() < self.max_age
        {
            return problem.clone();
        }
        let probe = tokio::time::timeout(Duration::from_secs(2), intake.probe()).await;
        let problem = match probe {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                // The store's own error is for the log, not for whoever asks.
                tracing::error!(error = %e, "readiness: the store does not take writes");
                Some("the store does not take writes".to_owned())
            }
            Err(_) => Some("the store did not take a write within 2 seconds".to_owned()),
        };
        *last = Some((tokio::time::Instant::now(), problem.clone()));
        problem
    }
}

/// How much time `/metrics` may spend counting the backlog: after a count that took `t`, the
/// next starts `t * COUNT_SPACING` later at the soonest (never more than [`MAX_COUNT_WAIT`]).
/// A small backlog is counted in microseconds, so a scrape hardly waits; a backlog of millions
/// is counted at most 1% of the time however often `/metrics` is scraped, and a scrape always
/// shows a count that started after it arrived.
pub const COUNT_SPACING: u32 = 100;

/// The longest a scrape waits for its turn to count.
pub const MAX_COUNT_WAIT: Duration = Duration::from_secs(1);

/// The backlog last counted for `/metrics`: when the count started, and how long it took.
/// Scrapes count one at a time; a scrape that waited while another counted uses that count.
#[derive(Default)]
pub struct BacklogCache {
    last: tokio::sync::Mutex<Option<Counted>>,
    /// Counts started so far.
    started: AtomicU64,
}

struct Counted {
    /// Which count it was (1 for the first).
    number: u64,
    at: tokio::time::Instant,
    took: Duration,
    backlog: Backlog,
}

impl BacklogCache {
    /// The backlog as counted by `records` after this call began.
    pub(crate) async fn get(
        &self,
        records: &dyn Records,
    ) -> Result<Backlog, crate::store::StoreError> {
        let seen = self.started.load(Ordering::Acquire);
        let mut last = self.last.lock().await;
        if let Some(counted) = &*last {
            if counted.number > seen {
                return Ok(counted.backlog);
            }
            let spacing = (counted.took * COUNT_SPACING).min(MAX_COUNT_WAIT);
            tokio::time::sleep_until(counted.at + counted.took + spacing).await;
        }
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let at = tokio::time::Instant::now();
        let backlog = records.backlog().await?;
        *last = Some(Counted {
            number,
            at,
            took: at.elapsed(),
            backlog,
        });
        Ok(backlog)
    }
}

/// One of the engine's background tasks (the processor, the dispatcher), and whether it runs.
#[derive(Clone)]
pub struct Stage {
    name: &'static str,
    running: Arc<AtomicBool>,
}

impl Stage {
    /// A stage that has not started.
    pub fn new(name: &'static str) -> Self {
        Stage {
            name,
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the stage runs.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Runs `task` as this stage. When it ends before `shutdown` (a panic, or a bug that lets
    /// it return), the engine cannot do its work: that is logged and the whole engine shuts
    /// down (what was accepted stays in the store), so a supervisor can start it again.
    pub fn spawn<F>(&self, task: F, shutdown: CancellationToken) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.running.store(true, Ordering::Relaxed);
        let ended = Ended {
            stage: self.clone(),
            shutdown,
        };
        tokio::spawn(async move {
            let _ended = ended;
            task.await;
        })
    }
}

/// Marks its stage stopped when dropped: when the task returns, and when it panics.
struct Ended {
    stage: Stage,
    shutdown: CancellationToken,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.stage.running.store(false, Ordering::Relaxed);
        if !self.shutdown.is_cancelled() {
            tracing::error!(
                stage = self.stage.name,
                "the {} stopped unexpectedly; the engine shuts down",
                self.stage.name
            );
            self.shutdown.cancel();
        }
    }
}

impl Health {
    /// `/healthz` and `/readyz`, served on every listener.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self)
    }

    /// `/metrics`, served with the admin API.
    pub fn metrics_router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .with_state(self)
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the stages run and the store takes a write within two seconds (probed at most
/// once a second); every plugin was loaded and checked before the listeners started.
async fn readyz(State(health): State<Arc<Health>>) -> Response {
    if let Some(stopped) = health.stages.iter().find(|stage| !stage.running()) {
        return not_ready(&format!("the {} is not running", stopped.name));
    }
    match health.probe.problem(&*health.intake).await {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => not_ready(&reason),
    }
}

fn not_ready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::RETRY_AFTER, super::error::RETRY_AFTER_SECONDS)],
        Json(json!({"status": "not-ready", "reason": reason})),
    )
        .into_response()
}

async fn metrics(
    State(health): State<Arc<Health>>,
    peer: Option<axum::Extension<super::auth::Peer>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &health.metrics_token {
        let peer = peer.map(|axum::Extension(peer)| peer);
        health
            .auth
            .check(peer, "metrics", super::auth::bearer(&headers, token))
            .await?;
    }
    let backlog = health
        .backlog
        .get(&*health.records)
        .await
        .map_err(|e| ApiError::store_unavailable(&e))?;
    let body = health.metrics.render(&backlog, now_ms());
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, SqliteStore};

    async fn ready(stages: Vec<Stage>) -> (StatusCode, serde_json::Value) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let backend = Backend::sqlite(&store);
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health {
            intake: backend.intake,
            records: backend.records,
            auth: Arc::new(crate::http::auth::AuthThrottle::new(metrics.clone())),
            metrics,
            metrics_token: None,
            stages,
            backlog: Arc::default(),
            probe: ProbeCache::default(),
        });
        let response = readyz(State(health)).await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        store.close().await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_stage_that_panics_stops_the_engine_and_readiness_names_it() {
        let shutdown = CancellationToken::new();
        let (processor, dispatcher) = (Stage::new("processor"), Stage::new("dispatcher"));
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let running = processor.spawn(
            async move {
                let _ = wait.await;
                panic!("a bug in the processor");
            },
            shutdown.clone(),
        );
        let idle = shutdown.clone();
        let waiting = dispatcher.spawn(async move { idle.cancelled().await }, shutdown.clone());
        assert!(processor.running() && dispatcher.running());
        let (status, body) = ready(vec![processor.clone(), dispatcher.clone()]).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        release.send(()).unwrap();
        assert!(running.await.unwrap_err().is_panic());
        assert!(!processor.running());
        // The engine is told to stop; the other stage ends with it, as in a shutdown.
        assert!(shutdown.is_cancelled());
        waiting.await.unwrap();
        assert!(!dispatcher.running());
        let (status, body) = ready(vec![processor, dispatcher]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "the processor is not running");
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_count_the_backlog_fresh_but_at_most_one_percent_of_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let backend = Backend::sqlite(&store);
        let cache = BacklogCache::default();
        let accept = |id: &str| {
            backend
                .intake
                .accept(crate::store::conformance::new_event(id, None, None))
        };
        let pending = || async { cache.get(&*backend.records).await.unwrap().pending_events };
        accept("e1").await.unwrap();
        // The clock stands still here, so a count takes no time and the next one may start
        // at once: every scrape sees what is stored.
        assert_eq!(pending().await, 1);
        accept("e2").await.unwrap();
        assert_eq!(pending().await, 2);
        // After a count that took 5 ms, the next starts 500 ms after it ended, and is fresh.
        cache.last.lock().await.as_mut().unwrap().took = Duration::from_millis(5);
        accept("e3").await.unwrap();
        let started = tokio::time::Instant::now();
        // Two scrapes at once: the second uses the count the first waited for.
        let (first, second) = tokio::join!(pending(), pending());
        assert_eq!((first, second), (3, 3));
        assert_eq!(started.elapsed(), Duration::from_millis(505));
        // However long a count took, a scrape waits at most a second.
        {
            // As if the last count had run for a minute, ending now.
            let mut last = cache.last.lock().await;
            let counted = last.as_mut().unwrap();
            counted.took = Duration::from_secs(60);
            counted.at = tokio::time::Instant::now() - counted.took;
        }
        let started = tokio::time::Instant::now();
        assert_eq!(pending().await, 3);
        assert!(
            started.elapsed() <= MAX_COUNT_WAIT,
            "{:?}",
            started.elapsed()
        );
        store.close().await;
    }

    #[tokio::test]
    async fn readiness_reuses_a_recent_probe_and_shares_one_among_requests_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let backend = Backend::sqlite(&store);
        let asks = |cache: ProbeCache| {
            let (intake, store) = (backend.intake.clone(), store.clone());
            async move {
                let before = store.commits();
                let (a, b) = tokio::join!(cache.problem(&*intake), cache.problem(&*intake));
                let c = cache.problem(&*intake).await;
                assert_eq!((a, b, c), (None, None, None));
                store.commits() - before
            }
        };
        let long = ProbeCache {
            max_age: Duration::from_secs(3600),
            ..ProbeCache::default()
        };
        assert_eq!(asks(long).await, 1, "three asks, one probe");
        let none = ProbeCache {
            max_age: Duration::ZERO,
            ..ProbeCache::default()
        };
        // Without reuse, every ask probes.
        assert_eq!(asks(none).await, 3);
        store.close().await;
    }

    #[tokio::test]
    async fn a_stage_that_ends_with_the_shutdown_is_marked_stopped() {
        let shutdown = CancellationToken::new();
        let stage = Stage::new("dispatcher");
        let token = shutdown.clone();
        let task = stage.spawn(async move { token.cancelled().await }, shutdown.clone());
        shutdown.cancel();
        task.await.unwrap();
        assert!(!stage.running());
    }
}
