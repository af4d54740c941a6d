//! What the store keeps: the records each stage hands the store and reads back from it. Every
//! backend stores and returns these types; none of them is sent over the wire as it is (the admin
//! API converts them to its own types).
//!
//! - `events`: accepted events, and what processing made of them (runs);
//! - `outbox`: actions ready to send, attempts, conflict state;
//! - `records`: dead letters, histories and the backlog, for operators;
//! - `plugins`: plugin versions and activations.

mod events;
mod outbox;
mod plugins;
mod records;
#[cfg(test)]
pub(crate) mod samples;

pub use events::*;
pub use outbox::*;
pub use plugins::*;
pub use records::*;

/// The name dead letters, metrics and the admin API give the HMS core as a delivery target.
pub const CORE_TARGET: &str = "hms-core";
