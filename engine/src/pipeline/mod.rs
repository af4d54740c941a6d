//! The pipeline: every accepted event runs through the handlers of its route, each in a fresh
//! sandboxed instance, and what they return becomes outbox rows, committed in the same
//! transaction that marks the event processed.
//!
//! The processor reads pending events in acceptance order. After a crash, events that were
//! accepted but not processed are still pending and run on the next start; an event whose
//! result was committed is never run again.
//!
//! # Layout
//!
//! - [`routes`]: which plugins run on which route, and where a transformer's result goes;
//! - `process`: one event through its route's handlers;
//! - `outbox_rows`: actions to outbox rows, with keys, versions and the loop rules;
//! - `processor`: the loop that reads pending events and commits results in batches;
//! - [`handoff`]: committed rows handed to the dispatcher in memory.

pub mod canary;
pub mod handoff;
mod outbox_rows;
mod process;
mod processor;
pub mod routes;
pub mod shadow;
pub mod trial;

pub use processor::{EventFilter, run_processor};
pub use routes::{Configured, Forward, RouteHandler, Routes, load_plugins};
