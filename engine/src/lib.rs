//! The HMS Synchronization Engine: a host that runs agency-supplied transformer plugins,
//! compiled to WebAssembly components, in a sandbox, one fresh instance per event, and delivers
//! their results both ways with durability and retries.
//!
//! # Layout
//!
//! The modules follow one event through the engine (`docs/architecture.md` walks it hop by
//! hop):
//!
//! - [`sources`]: where events come in: the HMS bus (the embedded `POST /events/{type}`, or a
//!   NATS subscription, over [`bus`]) and the configured webhooks. An event is answered (or its
//!   bus message acknowledged) only once it is committed.
//! - [`store`]: the durable store behind five seams (intake, work queue, outbox, plugin store,
//!   records); [`store::sqlite`] is the embedded backend, with group commit.
//! - [`pipeline`]: runs each accepted event through its route's plugins and turns what they
//!   return into outbox rows, dropping echoes and updates past the hop limit.
//! - [`sandbox`] (its own crate): loads plugins (components built against `wit/`), checks them
//!   against the `transformer`, `handler` and `resolver` worlds, and runs each event in a fresh,
//!   limited instance; the event model and fixtures live there too. [`registry`] holds the
//!   active version of each plugin and swaps in new ones while events flow.
//! - [`delivery`]: sends outbox rows to destinations and to the HMS core (over HTTP, or onto
//!   the NATS bus), in order per entity key, signed ([`signing`]), with retries; what gives up
//!   becomes a dead letter.
//!   [`conflict`] decides whether a delivery is newer than what its destination holds.
//! - [`http`]: the router, JSON errors, bearer tokens, health and metrics endpoints;
//!   [`admin`]: the admin API and its wire types; [`console`]: the operator console, pages
//!   over the admin API's methods; [`metrics`]: the Prometheus registry and the last hour in
//!   memory.
//! - [`json`]: what the engine takes as a JSON payload, one definition for acceptance and for
//!   the routes' pointers.
//! - [`config`]: the YAML configuration; [`engine`] builds the running engine from it;
//!   [`cli`] is the `sync-engine` command; [`sink`] is a receiver for trying the engine out;
//!   [`throttle`] keeps repeated failures from flooding the logs.

pub mod admin;
pub mod bus;
pub mod cli;
pub mod config;
pub mod conflict;
pub mod console;
pub mod delivery;
pub mod engine;
pub mod http;
pub mod json;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod signing;
pub mod sink;
pub mod sources;
pub mod store;
pub mod throttle;

/// The plugin host (the `sync-engine-sandbox` crate): loading components, running one event in
/// a fresh instance, the event model and fixtures.
pub use sync_engine_sandbox as sandbox;
