//! The plugin host of the HMS Synchronization Engine: loads agency plugins (WebAssembly
//! components built against `wit/`) and runs each event in a fresh instance.
//!
//! A [`Sandbox`] owns one wasmtime [`Engine`] with the pooling allocator, the linker that
//! defines what plugins may import, and a thread that advances the engine's epoch for
//! deadlines. [`Sandbox::load`] compiles a component, checks it against the `transformer`,
//! `handler` and `resolver` worlds and pre-instantiates it into a [`Plugin`]. [`Plugin::run`]
//! then makes a fresh store and instance for one event (or, when its [`Isolation`] allows,
//! reuses one for several), under that plugin's [`PluginSetup`]:
//! its settings (the `config` import) and its [`Limits`]:
//!
//! - **time**: a wall-clock deadline, enforced by epoch interruption;
//! - **memory**: a cap on each linear memory, enforced by a resource limiter;
//! - **output**: a cap on the bytes the plugin returns, and the output rules every action must
//!   follow, both from `hms-sync-rules`, which the SDK's test harness applies too.
//!
//! Plugins get no ambient capabilities: no preopened directories, no environment, no
//! arguments, no stdin, no sockets or name lookups. What they print to stdout and stderr, and
//! what they log through the `log` import, goes to `tracing` with the plugin's name and version
//! and the event's id. Every failure is a [`RunError`] for that event; the sandbox and the next
//! event are unaffected.
//!
//! # Layout
//!
//! - [`event`]: what flows in and out: the [`Event`] a plugin receives and the [`Action`]s it
//!   returns, in the engine's own types.
//! - `plugin`: loading a component: compile, check the world, pre-instantiate.
//! - `host`: what a plugin may import (`log`, `config`, WASI without capabilities) and the
//!   per-run state (memory limiter, captured output).
//! - `run`: one fresh store and instance per call, deadlines, errors.
//! - `keep`: the opt-in reuse of an instance for several events ([`Isolation`]).
//! - `output`: a plugin's result checked against the output rules and converted.
//! - [`fixtures`]: example events and what a plugin must make of them, checked before a
//!   version goes live.
//! - `bindings`: the one place the host calls `bindgen!`.

#[cfg(feature = "bench")]
mod bench;
mod bindings;
mod capture;
mod error;
pub mod event;
pub mod fixtures;
mod host;
mod keep;
mod output;
mod plugin;
mod run;

pub use error::{GuestErrorKind, LoadError, RunError};
pub use event::{Action, Delivery, Emission, Event, Header};
pub use host::MAX_RANDOM_BYTES;
pub use keep::{Isolation, MAX_IDLE};
pub use plugin::{Plugin, World};
pub use run::{Entity, Output, Resolution};

/// The WIT package plugins are built against (`wit/sync.wit`).
pub const WIT_PACKAGE: &str = "hms:sync";

/// The version of [`WIT_PACKAGE`] this engine is built with: the SDK packages carry the same.
pub const WIT_VERSION: &str = "0.1.0";

/// The versions of [`WIT_PACKAGE`] this engine loads: its own, and the earlier `0.1.x` (within
/// `0.1` a new version only adds to the one before). A component built against any other is
/// refused at load, naming both versions.
pub const WIT_VERSIONS: &[&str] = &[WIT_VERSION];

use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The string settings a plugin reads through the `config` import: its route configuration.
/// Shared, read-only.
pub type Settings = Arc<std::collections::BTreeMap<String, String>>;

/// How one configured plugin runs: its settings and its limits. The engine builds one per
/// plugin from its configuration; fixtures and the benchmarks run plugins under one too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSetup {
    /// What the plugin reads through the `config` import.
    pub settings: Settings,
    /// The limits each call runs under.
    pub limits: Limits,
    /// Whether instances are fresh per event (the default) or kept for several.
    pub isolation: Isolation,
}

/// The limits one event runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time the plugin may run for one event.
    pub timeout: Duration,
    /// Bytes each of the plugin's linear memories may grow to. At most
    /// [`SandboxOptions::max_memory`].
    pub memory: usize,
    /// Bytes of output the plugin may return: the payload, or the sum of the actions' bodies,
    /// payloads, headers and strings, plus [`hms_sync_rules::ACTION_OVERHEAD`] per action.
    pub output: usize,
    /// Actions a handler may return for one event.
    pub actions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory: 32 << 20,
            output: hms_sync_rules::DEFAULT_OUTPUT_LIMIT,
            actions: hms_sync_rules::DEFAULT_ACTION_LIMIT,
        }
    }
}

/// How the sandbox is set up; fixed for its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOptions {
    /// How many plugin instances may exist at once (instances in flight, across all plugins).
    pub max_instances: u32,
    /// The largest memory limit any plugin may be given, in bytes. Each instance slot of the
    /// pool is sized for it.
    pub max_memory: usize,
    /// How often the epoch advances: the resolution of deadlines.
    pub epoch_tick: Duration,
    /// Where compiled components are cached (an absolute path), so a restart or a reload of
    /// the same component does not compile it again. No cache when `None`.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Core instances (and tables) one plugin instance may hold; a component with more is
    /// refused at load. The pool holds this many for every one of `max_instances`, so no
    /// plugin can take another's.
    pub max_core_instances_per_plugin: u32,
    /// Linear memories one plugin instance may hold; a component with more is refused at load.
    /// Its memory limit counts all of them together.
    pub max_memories_per_plugin: u32,
    /// Bytes at the start of each instance slot's memory kept resident between instances: the
    /// pages a plugin dirtied there are reset by copying rather than released and faulted in
    /// again, which makes a fresh instance of a plugin with a large memory image (JavaScript,
    /// Python) much cheaper. Only pages an instance dirtied are reset, so a small plugin pays
    /// little for a large value.
    pub keep_resident: usize,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            max_instances: 256,
            max_memory: 256 << 20,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
            max_core_instances_per_plugin: 32,
            max_memories_per_plugin: 2,
            keep_resident: 2 << 20,
        }
    }
}

/// The plugin host: one wasmtime engine, its instance pool, and the linker plugins run against.
pub struct Sandbox {
    shared: Arc<Shared>,
}

/// What every [`Plugin`] loaded by a sandbox needs to run.
struct Shared {
    engine: Engine,
    linker: Linker<host::RunState>,
    options: SandboxOptions,
}

impl Sandbox {
    /// Creates the engine, its instance pool and the linker, and starts the epoch thread.
    pub fn new(options: SandboxOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            options.max_instances > 0,
            "max_instances must be at least 1"
        );
        anyhow::ensure!(
            !options.epoch_tick.is_zero(),
            "the epoch tick must be longer than zero"
        );
        let mut wasmtime_config = engine_config(&options);
        if let Some(dir) = &options.cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache = wasmtime::Cache::new(cache).map_err(|e| {
                anyhow::anyhow!(
                    "cannot use {} as the compiled-code cache: {e:#}",
                    dir.display()
                )
            })?;
            wasmtime_config.cache(Some(cache));
        }
        let engine = Engine::new(&wasmtime_config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e:#}"))?;
        let linker = host::linker(&engine)?;
        start_epoch_ticker(&engine, options.epoch_tick)?;
        Ok(Sandbox {
            shared: Arc::new(Shared {
                engine,
                linker,
                options,
            }),
        })
    }

    /// How the sandbox was set up.
    pub fn options(&self) -> &SandboxOptions {
        &self.shared.options
    }

    /// Loads a plugin: compiles the component, checks it implements the `transformer` or the
    /// `handler` world and imports nothing the sandbox does not provide, and pre-instantiates it.
    /// `name` is used in logs and errors.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        Plugin::load(self.shared.clone(), name, bytes)
    }
}

fn engine_config(sandbox: &SandboxOptions) -> Config {
    let n = sandbox.max_instances;
    let (cores, memories) = (
        sandbox.max_core_instances_per_plugin,
        sandbox.max_memories_per_plugin,
    );
    let mut pool = PoolingAllocationConfig::new();
    // Every plugin instance may hold its caps whatever the others hold: the totals are the caps
    // times the instances, so a plugin that uses many slots cannot leave another without.
    pool.total_component_instances(n)
        .max_core_instances_per_component(cores)
        .max_tables_per_component(cores)
        .max_memories_per_component(memories)
        .total_core_instances(n.saturating_mul(cores))
        .total_tables(n.saturating_mul(cores))
        .total_memories(n.saturating_mul(memories))
        .max_memory_size(sandbox.max_memory)
        // Measured on this project's machines (docs/performance.md): keeping the first pages of a
        // slot resident, with the kernel reporting which pages were dirtied, makes a fresh
        // instance's first call much cheaper.
        .linear_memory_keep_resident(sandbox.keep_resident)
        .table_keep_resident(16 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(32);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .memory_init_cow(true);
    config
}

/// Advances the engine's epoch on a fixed tick, so stores with an epoch deadline are
/// interrupted when it passes. The thread holds the engine weakly and ends within a tick of the
/// last sandbox and plugin being dropped.
fn start_epoch_ticker(engine: &Engine, tick: Duration) -> anyhow::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("sandbox-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}
