//! The glue between a plugin's trait implementation and the generated WIT exports.
//!
//! [`export_transformer!`](crate::export_transformer) and [`export_handler!`](crate::export_handler)
//! wrap the plugin type in an adapter that implements the generated `Guest` trait, converting
//! between the WIT types and this crate's types.

use crate::bindings::{handler, resolver, transformer, wit, wit_resolve};
use crate::{
    Action, Entity, Error, ErrorKind, Event, Handler, Header, Resolution, Resolver, Transformer,
};
use std::marker::PhantomData;

/// On `wasm32-unknown-unknown` a panic message has nowhere to go (there is no stderr): this
/// sends it to the engine as an error log line, which the engine puts in the crash's reason.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
fn report_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::host::log(crate::log::Level::Error, &info.to_string());
        }));
    });
}

/// Elsewhere the standard hook prints panics to stderr, which the engine captures.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn report_panics() {}

/// Implements the generated transformer export for a [`Transformer`].
pub struct TransformAdapter<T>(PhantomData<T>);

impl<T: Transformer> transformer::exports::hms::sync::transform::Guest for TransformAdapter<T> {
    fn transform(event: wit::Event) -> Result<Vec<u8>, wit::Error> {
        report_panics();
        T::transform(event.into()).map_err(Into::into)
    }
}

/// Implements the generated handler export for a [`Handler`].
pub struct HandleAdapter<T>(PhantomData<T>);

impl<T: Handler> handler::exports::hms::sync::handle::Guest for HandleAdapter<T> {
    fn handle(event: wit::Event) -> Result<Vec<wit::Action>, wit::Error> {
        report_panics();
        T::handle(event.into())
            .map(|actions| actions.into_iter().map(Into::into).collect())
            .map_err(Into::into)
    }
}

/// Implements the generated resolver export for a [`Resolver`].
pub struct ResolveAdapter<T>(PhantomData<T>);

impl<T: Resolver> resolver::exports::hms::sync::resolve::Guest for ResolveAdapter<T> {
    fn resolve(
        current: wit_resolve::Entity,
        incoming: wit_resolve::Entity,
    ) -> Result<wit_resolve::Resolution, wit::Error> {
        report_panics();
        T::resolve(current.into(), incoming.into())
            .map(|resolution| match resolution {
                Resolution::Keep => wit_resolve::Resolution::Keep,
                Resolution::Replace => wit_resolve::Resolution::Replace,
                Resolution::Merged(payload) => wit_resolve::Resolution::Merged(payload),
            })
            .map_err(Into::into)
    }
}

/// Exports a [`Resolver`] as the component's `hms:sync/resolve` interface.
///
/// Call it once, at the crate root of a `cdylib` crate built for WebAssembly. On other
/// targets (your `cargo test`) it only checks that the type implements [`Resolver`].
#[macro_export]
macro_rules! export_resolver {
    ($plugin:ty) => {
        $crate::__export_plugin!($plugin, Resolver, ResolveAdapter, resolver);
    };
}

/// Exports a [`Transformer`] as the component's `hms:sync/transform` interface.
///
/// Call it once, at the crate root of a `cdylib` crate built for WebAssembly. On other
/// targets (your `cargo test`) it only checks that the type implements [`Transformer`].
#[macro_export]
macro_rules! export_transformer {
    ($plugin:ty) => {
        $crate::__export_plugin!($plugin, Transformer, TransformAdapter, transformer);
    };
}

/// Exports a [`Handler`] as the component's `hms:sync/handle` interface.
///
/// Call it once, at the crate root of a `cdylib` crate built for WebAssembly. On other
/// targets (your `cargo test`) it only checks that the type implements [`Handler`].
#[macro_export]
macro_rules! export_handler {
    ($plugin:ty) => {
        $crate::__export_plugin!($plugin, Handler, HandleAdapter, handler);
    };
}

/// What both export macros expand to: on wasm, the world's generated `export!` for the adapter;
/// elsewhere, a check that the plugin implements the trait.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($plugin:ty, $trait:ident, $adapter:ident, $world:ident) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __HmsSyncAdapter = $crate::__private::$adapter<$plugin>;
            $crate::bindings::$world::export!(
                __HmsSyncAdapter with_types_in $crate::bindings::$world
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::$trait>() {}
            implements::<$plugin>();
        };
    };
}

impl From<wit::Header> for Header {
    fn from(h: wit::Header) -> Self {
        Header {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<Header> for wit::Header {
    fn from(h: Header) -> Self {
        wit::Header {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            id: e.id,
            event_type: e.event_type,
            origin: e.origin,
            key: e.key,
            version: e.version,
            timestamp: e.timestamp,
            content_type: e.content_type,
            payload: e.payload,
            headers: e.headers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit_resolve::Entity> for Entity {
    fn from(e: wit_resolve::Entity) -> Self {
        Entity {
            key: e.key,
            version: e.version,
            timestamp: e.timestamp,
            event_id: e.event_id,
            content_type: e.content_type,
            payload: e.payload,
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
            ErrorKind::Rejected => wit::ErrorKind::Rejected,
            ErrorKind::Internal => wit::ErrorKind::Internal,
        };
        wit::Error {
            kind,
            message: e.message().to_owned(),
        }
    }
}

impl From<Action> for wit::Action {
    fn from(a: Action) -> Self {
        match a {
            Action::Deliver(d) => wit::Action::Deliver(wit::Delivery {
                destination: d.destination,
                body: d.body,
                content_type: d.content_type,
                headers: d.headers.into_iter().map(Into::into).collect(),
                key: d.key,
                version: d.version,
                timestamp: d.timestamp,
            }),
            Action::Emit(e) => wit::Action::Emit(wit::Emission {
                event_type: e.event_type,
                payload: e.payload,
                content_type: e.content_type,
                key: e.key,
                version: e.version,
                timestamp: e.timestamp,
            }),
            Action::Drop(reason) => wit::Action::Drop(reason),
        }
    }
}
