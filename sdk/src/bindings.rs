//! Bindings generated from `wit/` (this package's own copy of the engine's WIT, so that the
//! package builds wherever it is unpacked), the one place this crate calls
//! `wit_bindgen::generate!`.
//!
//! Both worlds are generated with `pub_export_macro`, so the world's exports are only described
//! to the component linker by the `export!` macro a plugin actually calls: a crate that exports
//! a transformer does not claim to export a handler too. The transformer bindings reuse the
//! handler's types and imports, so there is one `Event` type and one set of imports.
#![allow(missing_docs, unsafe_code, unreachable_pub, clippy::all)]

/// Bindings for the `hms:sync/handler` world, plus the shared types and imports.
pub mod handler {
    wit_bindgen::generate!({
        path: "wit",
        world: "hms:sync/handler",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "hms_sync_sdk::bindings::handler",
    });
}

/// Bindings for the `hms:sync/transformer` world.
pub mod transformer {
    wit_bindgen::generate!({
        path: "wit",
        world: "hms:sync/transformer",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "hms_sync_sdk::bindings::transformer",
        with: {
            "hms:sync/types@0.1.0": crate::bindings::handler::hms::sync::types,
            "hms:sync/log@0.1.0": crate::bindings::handler::hms::sync::log,
            "hms:sync/config@0.1.0": crate::bindings::handler::hms::sync::config,
        },
    });
}

/// Bindings for the `hms:sync/resolver` world.
pub mod resolver {
    wit_bindgen::generate!({
        path: "wit",
        world: "hms:sync/resolver",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "hms_sync_sdk::bindings::resolver",
        with: {
            "hms:sync/types@0.1.0": crate::bindings::handler::hms::sync::types,
            "hms:sync/log@0.1.0": crate::bindings::handler::hms::sync::log,
            "hms:sync/config@0.1.0": crate::bindings::handler::hms::sync::config,
        },
    });
}

pub use handler::hms::sync::types as wit;
pub use resolver::exports::hms::sync::resolve as wit_resolve;
