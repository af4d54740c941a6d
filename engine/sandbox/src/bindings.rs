//! Host bindings generated from `../wit`: the one place the engine calls `bindgen!`.
//!
//! The transformer world reuses the handler world's types and imports, so the host implements
//! the `log` and `config` imports once.
#![allow(missing_docs, unreachable_pub, clippy::all)]

/// The `hms:sync/handler` world, with the shared types and imports.
pub mod handler {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "hms:sync/handler",
    });
}

/// The `hms:sync/transformer` world.
pub mod transformer {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "hms:sync/transformer",
        with: {
            "hms:sync/types": crate::bindings::handler::hms::sync::types,
            "hms:sync/log": crate::bindings::handler::hms::sync::log,
            "hms:sync/config": crate::bindings::handler::hms::sync::config,
        },
    });
}

/// The `hms:sync/resolver` world.
pub mod resolver {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "hms:sync/resolver",
        with: {
            "hms:sync/types": crate::bindings::handler::hms::sync::types,
            "hms:sync/log": crate::bindings::handler::hms::sync::log,
            "hms:sync/config": crate::bindings::handler::hms::sync::config,
        },
    });
}

pub use handler::hms::sync::types as wit;
pub use handler::hms::sync::{config, log};
pub use resolver::exports::hms::sync::resolve as wit_resolve;
