//! Loading a component: compile, check against the worlds, pre-instantiate.

use super::bindings::handler::{HandlerIndices, HandlerPre};
use super::bindings::resolver::{ResolverIndices, ResolverPre};
use super::bindings::transformer::{TransformerIndices, TransformerPre};
use super::host::{Caller, RunState, new_store};
use super::keep::Idle;
use super::{LoadError, PluginSetup, Shared};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use wasmtime::component::{Component, InstancePre};

/// The interface a transformer exports.
const TRANSFORM_EXPORT: &str = "hms:sync/transform@0.1.0";
/// The interface a handler exports.
const HANDLE_EXPORT: &str = "hms:sync/handle@0.1.0";
/// The interface a resolver exports.
const RESOLVE_EXPORT: &str = "hms:sync/resolve@0.1.0";

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `hms:sync/transformer`: one payload in, one payload out.
    Transformer,
    /// `hms:sync/handler`: one event in, a list of actions out.
    Handler,
    /// `hms:sync/resolver`: two versions of an entity in, which to deliver out.
    Resolver,
}

impl World {
    /// The world's name in the WIT package.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Transformer => "transformer",
            World::Handler => "handler",
            World::Resolver => "resolver",
        }
    }

    fn export(self) -> &'static str {
        match self {
            World::Transformer => TRANSFORM_EXPORT,
            World::Handler => HANDLE_EXPORT,
            World::Resolver => RESOLVE_EXPORT,
        }
    }

    /// The one function the world's export interface holds, as the WIT declares it.
    fn function(self) -> (&'static str, &'static str) {
        match self {
            World::Transformer => (
                "transform",
                "transform: func(event: event) -> result<list<u8>, error>",
            ),
            World::Handler => (
                "handle",
                "handle: func(event: event) -> result<list<action>, error>",
            ),
            World::Resolver => (
                "resolve",
                "resolve: func(current: entity, incoming: entity) -> result<resolution, error>",
            ),
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pre-instantiated component, typed by its world.
#[derive(Clone)]
pub(crate) enum Pre {
    Transformer(TransformerPre<RunState>),
    Handler(HandlerPre<RunState>),
    Resolver(ResolverPre<RunState>),
}

/// A loaded, checked plugin, ready to run events. Cheap to clone; clones share the compiled code.
///
/// A plugin version is its content hash: loading the same bytes gives the same
/// [`Plugin::hash`], whatever the name.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: Arc<str>,
    pub(crate) hash: String,
    /// The hash shortened to 12 digits, as logs show it.
    pub(crate) version: Arc<str>,
    pub(crate) world: World,
    pub(crate) imports: Vec<String>,
    pub(crate) size: usize,
    pub(crate) pre: Pre,
    /// Instances kept for later events, when the plugin's setup allows reuse.
    pub(crate) idle: Idle,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("hash", &self.inner.hash)
            .field("world", &self.inner.world)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The name the plugin was loaded under.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SHA-256 of the component's bytes, in lower-case hex: the plugin's version.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// `name@hash`, with the hash shortened to 12 digits, as logs and records show it.
    pub fn version_tag(&self) -> String {
        format!("{}@{}", self.inner.name, self.inner.version)
    }

    /// The world the plugin implements.
    pub fn world(&self) -> World {
        self.inner.world
    }

    /// The names of everything the component imports (WASI interfaces and `hms:sync` ones).
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// The component's size in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    pub(crate) fn load(shared: Arc<Shared>, name: &str, bytes: &[u8]) -> Result<Self, LoadError> {
        let component = as_component(bytes)?;
        let component = Component::new(&shared.engine, &component)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&shared.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let imports: Vec<String> = ty
            .imports(&shared.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        check_wit_version(exports.iter().chain(&imports))?;
        let world = world_of(&exports)?;
        let instance_pre = shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| unsupported_import(&e))?;
        let name: Arc<str> = name.into();
        let hash = hex::encode(Sha256::digest(bytes));
        let version: Arc<str> = hash[..12].into();
        check_exports(&shared, world, &instance_pre, &name, &version)?;
        let pre = match world {
            World::Transformer => TransformerPre::new(instance_pre).map(Pre::Transformer),
            World::Handler => HandlerPre::new(instance_pre).map(Pre::Handler),
            World::Resolver => ResolverPre::new(instance_pre).map(Pre::Resolver),
        }
        .map_err(|e| wrong_shape(world, &e))?;
        Ok(Plugin {
            inner: Arc::new(Inner {
                shared,
                name,
                hash,
                version,
                world,
                imports,
                size: bytes.len(),
                pre,
                idle: Idle::default(),
            }),
        })
    }
}

/// Instantiates the component once, under the default limits and without calling it, and
/// type-checks its exports against the world: wasmtime checks export types when an instance's
/// exports are loaded, not when a component is pre-instantiated.
fn check_exports(
    shared: &Shared,
    world: World,
    instance_pre: &InstancePre<RunState>,
    name: &Arc<str>,
    version: &Arc<str>,
) -> Result<(), LoadError> {
    let caller = Caller {
        plugin: name,
        version,
        event_id: "load-check",
    };
    let (mut store, streams) = new_store(shared, &caller, &PluginSetup::default());
    let instance = instance_pre.instantiate(&mut store);
    streams.flush(&caller);
    let instance = instance.map_err(|e| {
        LoadError::Instantiate(format!(
            "the component cannot be instantiated under the default limits: {e:#}"
        ))
    })?;
    let typed = match world {
        World::Transformer => TransformerIndices::new(instance_pre)
            .and_then(|indices| indices.load(&mut store, &instance))
            .map(drop),
        World::Handler => HandlerIndices::new(instance_pre)
            .and_then(|indices| indices.load(&mut store, &instance))
            .map(drop),
        World::Resolver => ResolverIndices::new(instance_pre)
            .and_then(|indices| indices.load(&mut store, &instance))
            .map(drop),
    };
    typed.map_err(|e| wrong_shape(world, &e))
}

fn wrong_shape(world: World, err: &wasmtime::Error) -> LoadError {
    let (function, signature) = world.function();
    LoadError::WrongShape(format!(
        "the component exports `{}`, but its `{function}` function does not match the {world} \
         world's `{signature}`: {err:#}",
        world.export()
    ))
}

/// The component in `bytes`: the bytes themselves, or, for a core module that carries its
/// world (what `wit-bindgen` embeds when a plugin is built for `wasm32-unknown-unknown`), that
/// module wrapped into a component. Such a plugin imports nothing but `hms:sync`, which makes
/// its instances cheaper to create than those of a `wasm32-wasip2` build (docs/performance.md).
fn as_component(bytes: &[u8]) -> Result<Cow<'_, [u8]>, LoadError> {
    use wasmtime::wasmparser::{Encoding, Parser, Payload};
    match Parser::new(0).parse(bytes, true) {
        Ok(wasmtime::wasmparser::Chunk::Parsed {
            payload: Payload::Version { encoding, .. },
            ..
        }) => match encoding {
            Encoding::Component => Ok(Cow::Borrowed(bytes)),
            Encoding::Module if !carries_world(bytes) => Err(LoadError::CoreModule(
                "it carries no plugin world: no `component-type` custom section".into(),
            )),
            Encoding::Module => wit_component::ComponentEncoder::default()
                .module(bytes)
                .and_then(|encoder| encoder.validate(true).encode())
                .map(Cow::Owned)
                .map_err(|e| LoadError::CoreModule(format!("{e:#}"))),
        },
        Ok(_) => Err(LoadError::NotWasm("the file is too short".into())),
        Err(e) => Err(LoadError::NotWasm(e.message().to_owned())),
    }
}

/// Whether a core module carries the world it implements: the `component-type` custom section
/// `wit-bindgen` embeds.
fn carries_world(module: &[u8]) -> bool {
    use wasmtime::wasmparser::{Parser, Payload};
    Parser::new(0).parse_all(module).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(section))
            if section.name().starts_with("component-type"))
    })
}

/// Refuses a component that uses [`WIT_PACKAGE`](crate::WIT_PACKAGE) at a version this engine
/// does not load (one of `names`, its imports and exports, says which it was built against).
fn check_wit_version<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), LoadError> {
    use crate::{WIT_PACKAGE, WIT_VERSION, WIT_VERSIONS};
    for name in names {
        let Some(interface) = name
            .strip_prefix(WIT_PACKAGE)
            .and_then(|n| n.strip_prefix('/'))
        else {
            continue;
        };
        let version = interface.split_once('@').map(|(_, v)| v);
        if version.is_some_and(|v| WIT_VERSIONS.contains(&v)) {
            continue;
        }
        let built = version.map_or_else(
            || format!("an unversioned `{WIT_PACKAGE}`"),
            |v| format!("`{WIT_PACKAGE}@{v}`"),
        );
        let loads = WIT_VERSIONS
            .iter()
            .map(|v| format!("`{WIT_PACKAGE}@{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(LoadError::WitVersion(format!(
            "the component was built against {built} (it uses `{name}`), and this engine loads \
             {loads}: build it with the SDK of `{WIT_PACKAGE}@{WIT_VERSION}` (any 0.1.x SDK), or \
             run an engine that loads its version"
        )));
    }
    Ok(())
}

fn world_of(exports: &[String]) -> Result<World, LoadError> {
    let worlds: Vec<World> = [World::Transformer, World::Handler, World::Resolver]
        .into_iter()
        .filter(|w| exports.iter().any(|e| e == w.export()))
        .collect();
    match worlds.as_slice() {
        [world] => Ok(*world),
        [] => {
            let found = if exports.is_empty() {
                "it exports nothing".to_owned()
            } else {
                format!("it exports {}", quoted_list(exports))
            };
            Err(LoadError::WrongWorld(format!(
                "the component implements no plugin world: the `hms:sync/transformer` world \
                 exports `{TRANSFORM_EXPORT}`, the `hms:sync/handler` world exports \
                 `{HANDLE_EXPORT}` and the `hms:sync/resolver` world exports `{RESOLVE_EXPORT}`, \
                 but {found}"
            )))
        }
        several => Err(LoadError::WrongWorld(format!(
            "the component exports {}; a plugin implements one world, `transformer`, `handler` \
             or `resolver`",
            several
                .iter()
                .map(|w| format!("`{}`", w.export()))
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

fn unsupported_import(err: &wasmtime::Error) -> LoadError {
    LoadError::UnsupportedImport(format!(
        "the component imports something the sandbox does not provide (plugins may import \
         `hms:sync/log`, `hms:sync/config` and WASI 0.2, which has no files, sockets or \
         environment here): {err:#}"
    ))
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_component_of_another_wit_version_is_refused_naming_both() {
        let ours = names(&[
            "hms:sync/transform@0.1.0",
            "hms:sync/log@0.1.0",
            "wasi:io/streams@0.2.3",
        ]);
        assert!(check_wit_version(ours.iter()).is_ok());
        let newer = names(&["wasi:cli/stdout@0.2.3", "hms:sync/transform@0.2.0"]);
        let refused = check_wit_version(newer.iter()).unwrap_err().to_string();
        assert!(
            refused.starts_with(
                "the component was built against `hms:sync@0.2.0` (it uses \
                 `hms:sync/transform@0.2.0`), and this engine loads `hms:sync@0.1.0`"
            ),
            "{refused}"
        );
        let unversioned = names(&["hms:sync/transform"]);
        assert!(check_wit_version(unversioned.iter()).is_err());
    }

    #[test]
    fn the_version_loaded_is_the_one_wit_sync_wit_declares() {
        let wit = include_str!("../../../wit/sync.wit");
        let declared = format!("package {}@{};", crate::WIT_PACKAGE, crate::WIT_VERSION);
        assert!(
            wit.lines().any(|l| l == declared),
            "wit/sync.wit: {declared}"
        );
        for export in [TRANSFORM_EXPORT, HANDLE_EXPORT, RESOLVE_EXPORT] {
            assert!(
                export.ends_with(&format!("@{}", crate::WIT_VERSION)),
                "{export}"
            );
        }
    }
}
