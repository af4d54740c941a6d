//! Delivery: sends due outbox rows over HTTP, to named destinations and to the HMS core (or,
//! on a NATS bus, publishes emitted events onto it), and records every attempt.
//!
//! Delivery is at least once: a row is marked delivered only after a 2xx answer is recorded, so
//! a crash between the answer and the record sends it again after a restart, with the same
//! `idempotency-key` (and `webhook-id`) header, which receivers use to drop the repeat. The time
//! of each next attempt is stored, so a restart resumes the schedule where it was.
//!
//! # Layout
//!
//! - `dispatcher`: the loop that starts a delivery whenever a row is ready and a slot is free;
//! - `queue`: what waits, in memory, and which rows are ready (order per entity, retry times,
//!   the watermark);
//! - `slots`: what is in flight, per target;
//! - `attempt`: one attempt in typed stages (conflict check, send, record);
//! - `request`: the HTTP request and what its answer means;
//! - `endpoint`: where rows go (destinations and the core);
//! - `nats`: emitted events published onto the HMS bus on NATS;
//! - [`retry`]: whether to try again, and when;
//! - `events`: the log lines and metrics of delivery, together.

mod attempt;
mod dispatcher;
mod endpoint;
mod events;
mod nats;
mod queue;
mod request;
pub mod retry;
mod slots;

use crate::bus::Bus;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Routes;
use crate::registry::Registry;
use crate::store::{CORE_TARGET, Outbox, OutboxKind};
use endpoint::Endpoint;
use std::collections::HashMap;
use std::sync::Arc;

/// Sends due outbox rows and records their attempts.
pub struct Dispatcher {
    outbox: Arc<dyn Outbox>,
    routes: Arc<Routes>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    throttle: crate::throttle::Throttle,
    destinations: HashMap<String, Endpoint>,
    core: Option<Endpoint>,
    concurrency: usize,
}

impl Dispatcher {
    /// A dispatcher for the destinations and core of a checked configuration.
    pub fn new(
        config: &Config,
        outbox: Arc<dyn Outbox>,
        routes: Arc<Routes>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        bus: Option<Arc<Bus>>,
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
            .map(|(name, d)| Ok((name.clone(), Endpoint::destination(config, d)?)))
            .collect::<anyhow::Result<_>>()?;
        let core = match (config.bus.nats(), bus) {
            (Some(nats), Some(bus)) => Some(Endpoint::bus(config, nats, bus)),
            _ => config
                .core
                .as_ref()
                .map(|core| Endpoint::core(config, core))
                .transpose()?,
        };
        Ok(Dispatcher {
            outbox,
            routes,
            registry,
            metrics,
            client,
            throttle: crate::throttle::Throttle::default(),
            destinations,
            core,
            concurrency: config.delivery_concurrency.get(),
        })
    }

    /// The endpoint rows of `kind` for `target` go to: a destination, or the core for emitted
    /// events.
    fn endpoint_of(&self, kind: OutboxKind, target: &str) -> Option<&Endpoint> {
        match kind {
            OutboxKind::Deliver => self.destinations.get(target),
            OutboxKind::Emit => self.core.as_ref(),
            OutboxKind::Drop => None,
        }
    }

    /// How many requests a target (a destination, or `hms-core`) may have in flight.
    fn limit_of(&self, name: &str) -> usize {
        let endpoint = if name == CORE_TARGET {
            self.core.as_ref()
        } else {
            self.destinations.get(name)
        };
        endpoint.map_or(1, |e| e.concurrency)
    }
}
