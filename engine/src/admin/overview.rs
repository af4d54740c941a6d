//! `GET /admin/overview` (the last hour, what waits, each destination's and plugin's health)
//! and `GET /admin/config` (the running routes and destinations, secrets masked).

use super::Admin;
use super::api::{
    BacklogView, BusView, Configuration, DestinationHealth, DestinationView, MinuteCounts,
    Overview, PluginHealth, RouteView,
};
use crate::config::{Config, StoreKind};
use crate::http::ApiError;
use crate::http::redact::{masked_server, masked_url};
use crate::metrics::DestinationLabels;
use crate::metrics::recent::MINUTES;
use crate::store::{CORE_TARGET, LaneBacklog, now_ms};
use axum::Json;
use axum::extract::State;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long the per-destination backlog read for an overview is reused: however many consoles
/// refresh, the store counts it at most once in this time.
const LANES_MAX_AGE: Duration = Duration::from_secs(2);

pub(super) async fn overview(State(admin): State<Arc<Admin>>) -> Result<Json<Overview>, ApiError> {
    admin.overview().await.map(Json)
}

pub(super) async fn configuration(State(admin): State<Arc<Admin>>) -> Json<Configuration> {
    Json(admin.configuration.clone())
}

/// The per-destination backlog last read, and when.
#[derive(Default)]
pub(super) struct LanesCache(tokio::sync::Mutex<Option<(tokio::time::Instant, Vec<LaneBacklog>)>>);

impl Admin {
    /// The last hour of this engine, what waits, and how each destination and plugin fares.
    pub async fn overview(&self) -> Result<Overview, ApiError> {
        let now = now_ms();
        let backlog = self
            .backlog
            .get(&*self.records)
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        let lanes = self.lanes().await?;
        let hour = self.metrics.recent.hour(now);
        let minutes = hour
            .minutes
            .iter()
            .map(|(at, t)| MinuteCounts {
                at: *at,
                accepted: t.accepted,
                delivered: t.delivered,
                failed: t.failed,
                superseded: t.superseded,
            })
            .collect();
        let concurrency = |name: &str| {
            if name == CORE_TARGET {
                self.core_concurrency
            } else {
                self.configuration
                    .destinations
                    .iter()
                    .find(|d| d.name == name)
                    .map_or(1, |d| d.concurrency)
            }
        };
        let names: BTreeSet<&str> = self
            .configuration
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .chain(self.configuration.core.as_ref().map(|_| CORE_TARGET))
            .chain(hour.targets.keys().map(String::as_str))
            .chain(lanes.iter().map(|l| l.lane.as_str()))
            .collect();
        let destinations = names
            .into_iter()
            .map(|name| {
                let hour = hour.targets.get(name).cloned().unwrap_or_default();
                let lane = lanes.iter().find(|l| l.lane == name);
                let attempts = hour.delivered + hour.retried + hour.dead;
                DestinationHealth {
                    name: name.to_owned(),
                    delivered: hour.delivered,
                    retried: hour.retried,
                    dead: hour.dead,
                    superseded: hour.superseded,
                    success_rate: (attempts > 0).then(|| hour.delivered as f64 / attempts as f64),
                    p50_ms: hour.p50_ms,
                    p99_ms: hour.p99_ms,
                    in_flight: self
                        .metrics
                        .in_flight
                        .get_or_create(&DestinationLabels {
                            destination: name.to_owned(),
                        })
                        .get(),
                    concurrency: concurrency(name),
                    pending: lane.map_or(0, |l| l.pending),
                    retrying: lane.map_or(0, |l| l.retrying),
                    next_retry_at: lane.and_then(|l| l.next_retry_at),
                }
            })
            .collect();
        let plugins = self
            .registry
            .names()
            .map(|name| {
                let hour = hour.plugins.get(name).cloned().unwrap_or_default();
                PluginHealth {
                    name: name.to_owned(),
                    active: self.registry.get(name).map(|p| p.hash().to_owned()),
                    runs: hour.runs,
                    runs_per_minute: hour.runs as f64 / MINUTES as f64,
                    error_rate: (hour.runs > 0).then(|| hour.failed as f64 / hour.runs as f64),
                    p99_ms: hour.p99_ms,
                }
            })
            .collect();
        Ok(Overview {
            now,
            minutes,
            backlog: BacklogView {
                pending_events: backlog.pending_events,
                pending_deliveries: backlog.pending_deliveries,
                oldest_pending_ms: backlog.oldest_pending_at.map(|at| (now - at).max(0)),
                dead_letters: backlog.dead_letters,
            },
            destinations,
            plugins,
        })
    }

    /// The deliveries waiting per lane, read again when the last read is older than
    /// [`LANES_MAX_AGE`].
    async fn lanes(&self) -> Result<Vec<LaneBacklog>, ApiError> {
        let mut last = self.lanes.0.lock().await;
        if let Some((at, lanes)) = &*last
            && at.elapsed() < LANES_MAX_AGE
        {
            return Ok(lanes.clone());
        }
        let lanes = self
            .records
            .lanes()
            .await
            .map_err(|e| ApiError::store_unavailable(&e))?;
        *last = Some((tokio::time::Instant::now(), lanes.clone()));
        Ok(lanes)
    }
}

impl Configuration {
    /// What `config` runs, with every secret masked: URLs lose their user, password and query
    /// values, headers their values, secrets are only counted.
    pub fn of(config: &Config) -> Configuration {
        let bus = config.hms_events.iter().map(|r| RouteView {
            source: "bus".into(),
            on: r.event.clone(),
            system: None,
            secrets: 0,
            plugin: r.handler.clone(),
            output: if r.destination.is_some() {
                "deliver"
            } else {
                "actions"
            }
            .into(),
            target: r.destination.clone(),
            conflict: r.conflict.strategy.as_str().into(),
        });
        let webhooks = config.external_webhooks.iter().map(|r| RouteView {
            source: "webhook".into(),
            on: r.path.clone(),
            system: Some(r.system().to_owned()),
            secrets: r.secrets.len(),
            plugin: r.handler.clone(),
            output: if r.emit.is_some() { "emit" } else { "actions" }.into(),
            target: r.emit.clone(),
            conflict: r.conflict.strategy.as_str().into(),
        });
        Configuration {
            routes: bus.chain(webhooks).collect(),
            destinations: config
                .destinations
                .iter()
                .map(|(name, d)| DestinationView {
                    name: name.clone(),
                    method: d.method.as_http().to_string(),
                    url: masked_url(&d.url),
                    headers: d.headers.keys().cloned().collect(),
                    secrets: d.secrets.len(),
                    concurrency: d.concurrency.get(),
                    timeout_ms: u64::try_from(d.timeout.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
            core: config.core.as_ref().map(|c| masked_url(&c.url)),
            bus: match config.bus.nats() {
                None => BusView {
                    kind: "http".into(),
                    servers: Vec::new(),
                    subject_prefix: None,
                    stream: None,
                    consumer: None,
                },
                Some(nats) => BusView {
                    kind: "nats".into(),
                    // An address may leave out its scheme (`host:4222`).
                    servers: nats.servers.iter().map(|s| masked_server(s)).collect(),
                    subject_prefix: Some(nats.subject_prefix.clone()),
                    stream: nats.stream.clone(),
                    consumer: Some(nats.consumer.clone()),
                },
            },
            store: match config.store.kind {
                StoreKind::Sqlite => "sqlite",
                StoreKind::Nats => "nats",
            }
            .to_owned(),
        }
    }
}
