//! What the store keeps: the records each stage hands the store and reads back from it. Every
//! backend stores and returns these types; the admin API converts them to its own types. The writes
//! also have a binary form ([`Write::encode`]), which the NATS backend's log carries.
//!
//! - `events`: accepted events, and what processing made of them (runs);
//! - `outbox`: actions ready to send, attempts, conflict state;
//! - `records`: dead letters, histories and the backlog, for operators;
//! - `plugins`: plugin versions and activations;
//! - `writes`: every write as one value ([`Write`]), which a replicated backend logs and
//!   applies in the same order on every instance.

mod events;
mod outbox;
mod plugins;
mod records;
#[cfg(test)]
pub(crate) mod samples;
mod writes;

pub use events::*;
pub use outbox::*;
pub use plugins::*;
pub use records::*;
pub use writes::*;

/// The name dead letters, metrics and the admin API give the HMS core as a delivery target.
pub const CORE_TARGET: &str = "hms-core";
