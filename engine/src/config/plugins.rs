//! The `sandbox` and `plugins` sections: the plugin host's pool and threads, and each plugin's
//! file, settings, limits and isolation.

use super::values::{self, Expanded, ExpandedPath};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// The plugin sandbox.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxConfig {
    /// How many plugin instances may exist at once.
    #[serde(default = "default_max_instances")]
    pub max_instances: NonZeroU32,
    /// How many events run plugins at the same time (threads).
    #[serde(default = "default_workers")]
    pub workers: NonZeroUsize,
    /// The largest memory limit any plugin may be given.
    #[serde(default = "default_max_memory", deserialize_with = "values::size")]
    pub max_memory: usize,
    /// Core instances (and tables) one plugin instance may hold; a component with more is
    /// refused at load.
    #[serde(default = "default_max_core_instances_per_plugin")]
    pub max_core_instances_per_plugin: NonZeroU32,
    /// Linear memories one plugin instance may hold; a component with more is refused at load.
    #[serde(default = "default_max_memories_per_plugin")]
    pub max_memories_per_plugin: NonZeroU32,
    /// How much of each instance slot's memory stays resident between instances, so the pages
    /// a plugin dirtied there are reset by copying instead of faulted in again.
    #[serde(default = "default_keep_resident", deserialize_with = "values::size")]
    pub keep_resident: usize,
    /// How long checking a new version (compiling it, running its fixtures) may take before it
    /// is refused.
    #[serde(
        default = "default_compile_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub compile_timeout: Duration,
    /// The default limits of every plugin.
    #[serde(default)]
    pub limits: LimitsConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_instances: default_max_instances(),
            workers: default_workers(),
            max_memory: default_max_memory(),
            max_core_instances_per_plugin: default_max_core_instances_per_plugin(),
            max_memories_per_plugin: default_max_memories_per_plugin(),
            keep_resident: default_keep_resident(),
            compile_timeout: default_compile_timeout(),
            limits: LimitsConfig::default(),
        }
    }
}

/// Per-event limits of a plugin; unset fields take the sandbox's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Wall-clock time per event.
    #[serde(default, deserialize_with = "values::opt_duration::deserialize")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub timeout: Option<Duration>,
    /// Bytes each linear memory may grow to.
    #[serde(default, deserialize_with = "values::opt_size")]
    pub memory: Option<usize>,
    /// Bytes of output per event.
    #[serde(default, deserialize_with = "values::opt_size")]
    pub output: Option<usize>,
    /// Actions a handler may return per event.
    pub actions: Option<NonZeroUsize>,
}

impl LimitsConfig {
    /// These limits, with unset ones taken from `defaults`, then from the sandbox's built-in
    /// defaults.
    pub fn resolve(&self, defaults: &LimitsConfig) -> crate::sandbox::Limits {
        let builtin = crate::sandbox::Limits::default();
        crate::sandbox::Limits {
            timeout: self.timeout.or(defaults.timeout).unwrap_or(builtin.timeout),
            memory: self.memory.or(defaults.memory).unwrap_or(builtin.memory),
            output: self.output.or(defaults.output).unwrap_or(builtin.output),
            actions: self
                .actions
                .or(defaults.actions)
                .map_or(builtin.actions, NonZeroUsize::get),
        }
    }
}

/// One plugin.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginConfig {
    /// The component file (`.wasm`).
    pub path: ExpandedPath,
    /// A fixtures file (JSON, see the README) the plugin must pass when it is loaded from the
    /// configuration; later versions must pass it too unless they bring their own.
    pub fixtures: Option<ExpandedPath>,
    /// String settings the plugin reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, Expanded>,
    /// Overrides of the sandbox's default limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Whether the plugin runs each event in a fresh instance (the default) or reuses one.
    #[serde(default)]
    pub isolation: IsolationConfig,
}

/// How a plugin's instances serve events (see the operations reference: what reuse gives up).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IsolationConfig {
    /// How many events one instance may run; 1 (the default) is a fresh instance per event.
    #[serde(default = "default_reuse_for")]
    pub reuse_for: NonZeroU32,
    /// How much an instance's memory may grow, from when it was made, before it is discarded
    /// rather than kept for another event.
    #[serde(default = "default_max_growth", deserialize_with = "values::size")]
    pub max_growth: usize,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            reuse_for: default_reuse_for(),
            max_growth: default_max_growth(),
        }
    }
}

impl IsolationConfig {
    /// The sandbox's form of it.
    pub fn resolve(&self) -> crate::sandbox::Isolation {
        crate::sandbox::Isolation {
            reuse_for: self.reuse_for,
            max_growth: self.max_growth,
        }
    }
}

fn default_reuse_for() -> NonZeroU32 {
    crate::sandbox::Isolation::FRESH.reuse_for
}

fn default_max_growth() -> usize {
    crate::sandbox::Isolation::FRESH.max_growth
}

fn default_max_core_instances_per_plugin() -> NonZeroU32 {
    NonZeroU32::new(32).expect("non-zero")
}

fn default_compile_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_memories_per_plugin() -> NonZeroU32 {
    NonZeroU32::new(2).expect("non-zero")
}

fn default_keep_resident() -> usize {
    crate::sandbox::SandboxOptions::default().keep_resident
}

fn default_max_instances() -> NonZeroU32 {
    NonZeroU32::new(256).expect("non-zero")
}

fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn default_max_memory() -> usize {
    256 << 20
}
