//! The HMS Synchronization Engine: a host that runs agency-supplied transformer plugins,
//! compiled to WebAssembly components, in a sandbox, one fresh instance per event.
//!
//! # Layout
//!
//! The modules follow the data flow (see `DESIGN.md`):
//!
//! - [`event`]: the records that flow through: an accepted [`event::Event`] and the
//!   [`event::Action`]s a plugin turns it into.
//! - [`sandbox`]: loads plugins (components built against `wit/`), checks them against the
//!   `transformer` and `handler` worlds, and runs each event in a fresh, limited instance.

pub mod event;
pub mod sandbox;
