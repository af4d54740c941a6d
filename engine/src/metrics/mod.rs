//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Counters and histograms are updated where things happen; the backlog gauges (queue depth,
//! oldest pending age, dead letters) are counted by the store for each scrape (at most 1% of
//! the time), so they are right even just after a restart; the store's size and free space are
//! read by housekeeping every few seconds.
//!
//! Beside them, [`recent`] keeps the last hour minute by minute in memory, for the admin
//! API's overview.

pub mod recent;

use crate::store::Backlog;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The labels of event counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `bus` or `webhook`.
    pub source: String,
    /// The event type.
    pub event_type: String,
}

impl EventLabels {
    /// The labels of an event of `event_type` on `route`.
    pub fn new(route: &crate::store::Route, event_type: &str) -> Self {
        EventLabels {
            source: route.source().as_str().to_owned(),
            event_type: event_type.to_owned(),
        }
    }
}

/// The labels of plugin run metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin version's hash, shortened to 12 digits.
    pub version: String,
}

impl PluginLabels {
    /// The labels of a plugin version.
    pub fn new(plugin: &crate::sandbox::Plugin) -> Self {
        PluginLabels {
            plugin: plugin.name().to_owned(),
            version: plugin.hash()[..12].to_owned(),
        }
    }
}

/// The labels of delivery counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The destination (`hms-core` for emitted events).
    pub destination: String,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

/// The labels of per-destination metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    /// The destination (`hms-core` for emitted events).
    pub destination: String,
}

/// The labels of per-plugin counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginNameLabels {
    /// The plugin.
    pub plugin: String,
}

/// The labels of the shadow counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// The plugin.
    pub plugin: String,
    /// `same`, `different`, `failed` or `skipped`.
    pub verdict: String,
}

/// The labels of the NATS bus counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusLabels {
    /// `accepted`, `duplicate`, `refused` (bad input, never retried), `not-stored` (sent
    /// again later, or lost on plain subjects) or `no-route` (handed back to the consumer).
    pub outcome: String,
}

/// The labels of the pruning counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrunedLabels {
    /// `events` (removed with everything recorded about them) or `dedupe-keys` (forgotten).
    pub what: String,
}

/// The labels of the credential counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// `bus` (the bus token), `admin` (the admin token or a console session), `metrics` (the
    /// metrics token) or `console` (the console's login).
    pub credential: String,
}

/// The labels of the queue depth gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `events` (accepted, not processed) or `deliveries` (waiting to be sent).
    pub queue: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the engine keeps.
pub struct Metrics {
    registry: Registry,
    /// Events accepted, by source and type.
    pub events_accepted: Family<EventLabels, Counter>,
    /// Events whose every handler ran without error, by source and type.
    pub events_processed: Family<EventLabels, Counter>,
    /// Events one of whose handlers failed (each failure is a dead letter), by source and type.
    pub events_failed: Family<EventLabels, Counter>,
    /// How long plugin runs take, in seconds, by plugin and version.
    pub plugin_run_seconds: HistogramFamily<PluginLabels>,
    /// Delivery attempts, by destination and outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// How long delivery attempts take, in seconds, by destination.
    pub attempt_seconds: HistogramFamily<DestinationLabels>,
    /// What retention removed.
    pub pruned: Family<PrunedLabels, Counter>,
    /// Bytes of the store's files.
    pub store_bytes: Gauge,
    /// Bytes free on the store's file system.
    pub store_free_bytes: Gauge,
    /// Requests in flight, by destination (`hms-core` for emitted events).
    pub in_flight: Family<DestinationLabels, Gauge>,
    /// Shadow versions' runs, by plugin and verdict.
    pub shadow_runs: Family<ShadowLabels, Counter>,
    /// Canaries rolled back on their own, by plugin.
    pub canary_rollbacks: Family<PluginNameLabels, Counter>,
    /// Wrong credentials presented, by credential (`bus`, `admin`, `metrics`, `console`).
    pub auth_failures: Family<CredentialLabels, Counter>,
    /// Credential checks held back or refused (429) because their address, or every address,
    /// presented too many wrong ones.
    pub auth_throttled: Family<CredentialLabels, Counter>,
    /// Dry runs running now (at most one).
    pub dry_runs_running: Gauge,
    /// Stored events dry runs have tried a candidate on.
    pub dry_run_events: Counter,
    /// Messages read from the NATS bus, by outcome.
    pub bus_messages: Family<BusLabels, Counter>,
    /// 1 while the engine reads the NATS bus (its consumer or subscriptions are open).
    pub bus_reading: Gauge,
    /// The last hour, minute by minute.
    pub recent: recent::Recent,
    /// 1 while this engine does the work (processing, delivery, housekeeping): always with the
    /// embedded store; with a shared one, while it holds the work lease.
    pub work_lease_held: Gauge,
    queue_depth: Family<QueueLabels, Gauge>,
    oldest_pending_age: Gauge<f64, AtomicU64>,
    dead_letters: Gauge,
}

fn plugin_buckets() -> Histogram {
    // 10 µs to about 5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

fn attempt_buckets() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sync");
        let metrics = Metrics {
            events_accepted: Family::default(),
            events_processed: Family::default(),
            events_failed: Family::default(),
            plugin_run_seconds: Family::new_with_constructor(plugin_buckets),
            deliveries: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_buckets),
            pruned: Family::default(),
            store_bytes: Gauge::default(),
            store_free_bytes: Gauge::default(),
            work_lease_held: Gauge::default(),
            in_flight: Family::default(),
            shadow_runs: Family::default(),
            canary_rollbacks: Family::default(),
            auth_failures: Family::default(),
            auth_throttled: Family::default(),
            dry_runs_running: Gauge::default(),
            dry_run_events: Counter::default(),
            bus_messages: Family::default(),
            bus_reading: Gauge::default(),
            recent: recent::Recent::default(),
            queue_depth: Family::default(),
            oldest_pending_age: Gauge::default(),
            dead_letters: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_accepted",
            "Events accepted and committed, by source and type",
            metrics.events_accepted.clone(),
        );
        registry.register(
            "events_processed",
            "Events whose every handler ran without error",
            metrics.events_processed.clone(),
        );
        registry.register(
            "events_failed",
            "Events a handler failed (each failure is a dead letter)",
            metrics.events_failed.clone(),
        );
        registry.register(
            "plugin_run_seconds",
            "Time plugin runs take, instantiation included",
            metrics.plugin_run_seconds.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts by destination and outcome (delivered, retry, dead)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "delivery_attempt_seconds",
            "Time delivery attempts take",
            metrics.attempt_seconds.clone(),
        );
        registry.register(
            "pruned",
            "What retention removed: events (with everything recorded about them), dedupe keys",
            metrics.pruned.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes of the store's files (database and write-ahead log)",
            metrics.store_bytes.clone(),
        );
        registry.register(
            "store_free_bytes",
            "Bytes free on the store's file system",
            metrics.store_free_bytes.clone(),
        );
        registry.register(
            "work_lease_held",
            "1 while this engine processes and delivers (with a shared store: holds the work lease)",
            metrics.work_lease_held.clone(),
        );
        registry.register(
            "delivery_in_flight",
            "Delivery requests in flight, by destination",
            metrics.in_flight.clone(),
        );
        registry.register(
            "shadow_runs",
            "Shadow versions' runs by plugin and verdict (same, different, failed, skipped)",
            metrics.shadow_runs.clone(),
        );
        registry.register(
            "canary_rollbacks",
            "Canaries rolled back on their own (failure rate or p99 past their margin), by plugin",
            metrics.canary_rollbacks.clone(),
        );
        registry.register(
            "auth_failures",
            "Wrong credentials presented, by credential (bus, admin, metrics, console)",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "auth_throttled",
            "Credential checks held back or refused (429) after too many wrong credentials",
            metrics.auth_throttled.clone(),
        );
        registry.register(
            "dry_runs_running",
            "Dry runs of candidate versions running now (one at a time)",
            metrics.dry_runs_running.clone(),
        );
        registry.register(
            "dry_run_events",
            "Stored events dry runs have tried a candidate version on",
            metrics.dry_run_events.clone(),
        );
        registry.register(
            "bus_messages",
            "Messages read from the NATS bus, by outcome (accepted, duplicate, refused, not-stored, no-route)",
            metrics.bus_messages.clone(),
        );
        registry.register(
            "bus_reading",
            "1 while the engine reads the NATS bus (its consumer or subscriptions are open)",
            metrics.bus_reading.clone(),
        );
        registry.register(
            "queue_depth",
            "Work waiting: events to process, deliveries to send",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest waiting event or delivery",
            metrics.oldest_pending_age.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters not replayed",
            metrics.dead_letters.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts a shadow run of `plugin` that ended `verdict`.
    pub fn count_shadow(&self, plugin: &str, verdict: &str) {
        self.shadow_runs
            .get_or_create(&ShadowLabels {
                plugin: plugin.to_owned(),
                verdict: verdict.to_owned(),
            })
            .inc();
    }

    /// Counts a wrong credential presented for `credential`.
    pub fn count_auth_failure(&self, credential: &str) {
        self.auth_failures
            .get_or_create(&CredentialLabels {
                credential: credential.to_owned(),
            })
            .inc();
    }

    /// Counts a check of `credential` held back or refused by the throttle.
    pub fn count_auth_throttled(&self, credential: &str) {
        self.auth_throttled
            .get_or_create(&CredentialLabels {
                credential: credential.to_owned(),
            })
            .inc();
    }

    /// Counts a canary of `plugin` rolled back on its own.
    pub fn count_canary_rollback(&self, plugin: &str) {
        self.canary_rollbacks
            .get_or_create(&PluginNameLabels {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// Renders every metric, with the backlog gauges set from `backlog` as of `now` (Unix ms).
    pub fn render(&self, backlog: &Backlog, now: i64) -> String {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (queue, depth) in [
            ("events", backlog.pending_events),
            ("deliveries", backlog.pending_deliveries),
        ] {
            self.queue_depth
                .get_or_create(&QueueLabels {
                    queue: queue.into(),
                })
                .set(gauge(depth));
        }
        let age = backlog
            .oldest_pending_at
            .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
        self.oldest_pending_age.set(age);
        self.dead_letters.set(gauge(backlog.dead_letters));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_backlog() {
        let metrics = Metrics::default();
        metrics
            .events_accepted
            .get_or_create(&EventLabels::new(
                &crate::store::Route::Bus("tax.rate.updated".into()),
                "tax.rate.updated",
            ))
            .inc();
        metrics
            .plugin_run_seconds
            .get_or_create(&PluginLabels {
                plugin: "p".into(),
                version: "abc".into(),
            })
            .observe(0.002);
        let backlog = Backlog {
            pending_events: 2,
            pending_deliveries: 5,
            oldest_pending_at: Some(1_000),
            dead_letters: 3,
        };
        let text = metrics.render(&backlog, 31_000);
        assert!(
            text.contains(
                r#"sync_events_accepted_total{source="bus",event_type="tax.rate.updated"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"sync_plugin_run_seconds_count{plugin="p",version="abc"} 1"#));
        assert!(text.contains(r#"sync_queue_depth{queue="deliveries"} 5"#));
        assert!(
            text.contains("sync_oldest_pending_age_seconds 30.0"),
            "{text}"
        );
        assert!(text.contains("sync_dead_letters 3"));
    }
}
