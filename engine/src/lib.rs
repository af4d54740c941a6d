//! The HMS Synchronization Engine: a host that runs agency-supplied transformer plugins,
//! compiled to WebAssembly components, in a sandbox, one fresh instance per event, and delivers
//! their results both ways with durability and retries.
//!
//! # Layout
//!
//! The modules follow the data flow (see `DESIGN.md`):
//!
//! - [`sources`]: the HTTP listeners: the embedded HMS bus (`POST /events/{type}`) and the
//!   configured webhooks. An event is answered only once it is committed.
//! - [`store`]: the durable store (SQLite in WAL mode) with group commit.
//! - [`pipeline`]: runs each accepted event through its route's plugins and turns what they
//!   return into outbox rows.
//! - [`sandbox`]: loads plugins (components built against `wit/`), checks them against the
//!   `transformer`, `handler` and `resolver` worlds, and runs each event in a fresh, limited
//!   instance. [`registry`] holds the active version of each plugin and swaps in new ones
//!   (checked against their [`fixtures`]) while events flow.
//! - [`delivery`]: sends outbox rows to destinations and to the HMS core, in order per entity
//!   key, signed ([`signing`]), with retries; what gives up becomes a dead letter.
//!   [`conflict`] decides whether a delivery is newer than what its destination holds.
//! - [`admin`]: the admin API (dead letters, event history); [`metrics`]: Prometheus metrics.
//! - [`event`]: the records that flow through: [`event::Event`] and [`event::Action`].
//! - [`config`]: the YAML configuration; [`engine`] builds the running engine from it;
//!   [`cli`] is the `sync-engine` command; [`sink`] is a receiver for trying the engine out.

pub mod admin;
pub mod cli;
pub mod config;
pub mod conflict;
pub mod delivery;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod signing;
pub mod sink;
pub mod sources;
pub mod store;

/// The plugin host (the `sync-engine-sandbox` crate): loading components, running one event in
/// a fresh instance, the event model and fixtures.
pub use sync_engine_sandbox as sandbox;
