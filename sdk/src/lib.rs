//! Write plugins for the HMS Synchronization Engine in plain Rust.
//!
//! A plugin is a WebAssembly component built against the engine's WIT package `hms:sync`: build
//! it for `wasm32-unknown-unknown` (a module carrying its world, which the engine makes a
//! component at load; it imports nothing but `hms:sync`) or for `wasm32-wasip2` (a component
//! that also imports WASI). This crate hides the component model: you implement one trait with
//! ordinary Rust and serde types, call one macro, and test the logic with `cargo test` on your
//! own machine, without WebAssembly and without the engine.
//!
//! There are two kinds of plugin:
//! - a [`Transformer`] maps one payload to one payload; the engine's configuration says where
//!   the result goes (a destination, or an HMS event type);
//! - a [`Handler`] turns one event into a list of [`Action`]s: deliveries to named destinations,
//!   events emitted on the HMS bus, or a drop with a reason. One handler can fan out, route and
//!   filter;
//! - a [`Resolver`] settles a conflict between the version of an entity a destination holds and
//!   an incoming one (keep, replace, or a merged payload), for routes whose conflict strategy is
//!   `plugin`.
//!
//! ```
//! use hms_sync_sdk::{Event, Result, Transformer};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct HmsRate { rate: f64, year: u16 }
//!
//! #[derive(Serialize)]
//! #[serde(rename_all = "camelCase")]
//! struct StateRate { new_rates: f64, effective_year: u16 }
//!
//! struct Outbound;
//!
//! impl Transformer for Outbound {
//!     fn transform(event: Event) -> Result<Vec<u8>> {
//!         let HmsRate { rate, year } = event.json()?;
//!         hms_sync_sdk::to_json(&StateRate { new_rates: rate, effective_year: year })
//!     }
//! }
//!
//! hms_sync_sdk::export_transformer!(Outbound);
//! # fn main() {
//! #     let event = hms_sync_sdk::testing::json_event("tax.rate.updated", &serde_json::json!({"rate": 7.25, "year": 2025}));
//! #     let body = hms_sync_sdk::testing::TestHost::new().transform::<Outbound>(event).result.unwrap();
//! #     assert_eq!(body, br#"{"newRates":7.25,"effectiveYear":2025}"#);
//! # }
//! ```
//!
//! A plugin has no files, no network and no environment. It can log ([`log`]) and read the
//! string settings its route gives it in the engine's YAML ([`config`]), nothing else. It runs in
//! a fresh instance for every event, so globals never carry over from one event to the next.

mod action;
#[cfg(all(
    target_arch = "wasm32",
    target_os = "unknown",
    not(target_feature = "atomics")
))]
mod arena;
#[doc(hidden)]
pub mod bindings;
pub mod config;
mod error;
mod event;
mod export;
mod host;
pub mod log;
mod resolver;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use action::{Action, Delivery, Emission};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, Header};
pub use resolver::{Entity, Resolution, Resolver};

/// A plugin that maps one payload to one payload (the `hms:sync/transformer` world).
///
/// Export it with [`export_transformer!`].
pub trait Transformer {
    /// Maps the event's payload to the payload to send on. Return an [`Error`] to fail the
    /// event; the engine records it with its kind and message.
    fn transform(event: Event) -> Result<Vec<u8>>;
}

/// A plugin that turns one event into actions (the `hms:sync/handler` world).
///
/// Export it with [`export_handler!`].
pub trait Handler {
    /// Decides what the event causes. An empty list means the event needs nothing; an
    /// [`Action::drop`] records why it was ignored.
    fn handle(event: Event) -> Result<Vec<Action>>;
}

/// Serialises a value as a JSON payload.
///
/// A value serde cannot write as JSON (a map with non-string keys, say) is an
/// [`ErrorKind::Internal`] error.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::internal(format!("cannot serialise the output as JSON: {e}")))
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{HandleAdapter, ResolveAdapter, TransformAdapter};
}
