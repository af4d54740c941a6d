//! The plugin registry: the active version of every plugin, swapped atomically while events
//! flow.
//!
//! A new version (from the admin API, the watched directory, or a changed configuration) is
//! compiled and checked against its world off the hot path, must keep the world of the version
//! it replaces, and must pass its fixtures (those it came with, else those of the version it
//! replaces). Only then is it stored and made active, by swapping one pointer: a plugin run
//! takes the version active when it starts and finishes on it, and records its hash. A refused
//! version changes nothing. After a restart the active versions are what they were.

use crate::config::Config;
use crate::fixtures::Fixtures;
use crate::sandbox::{Limits, Plugin, PluginConfig, Sandbox};
use crate::store::{Activation, PluginVersion, PluginVersionInfo, PluginWrite, Store, now_ms};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a version was not activated: every reason found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the version was refused: {}", .failures.join("; "))]
pub struct Refused {
    /// Each failure, as a sentence.
    pub failures: Vec<String>,
    /// Whether the refusal is about the request (an unknown plugin or version) rather than
    /// the component.
    pub not_found: bool,
}

impl Refused {
    fn one(failure: impl Into<String>) -> Refused {
        Refused {
            failures: vec![failure.into()],
            not_found: false,
        }
    }

    fn missing(failure: impl Into<String>) -> Refused {
        Refused {
            failures: vec![failure.into()],
            not_found: true,
        }
    }
}

/// A version made active.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Swap {
    /// The plugin.
    pub name: String,
    /// The version now active.
    pub hash: String,
    /// Its world.
    pub world: String,
    /// The component's size in bytes.
    pub size: usize,
    /// The version it replaced, if any.
    pub replaced: Option<String>,
    /// How many fixture cases it passed.
    pub fixtures_passed: usize,
    /// How long validating and activating took, in milliseconds.
    pub took_ms: u64,
    /// Whether it was already the active version (nothing changed).
    pub unchanged: bool,
}

/// How a configured plugin runs when it is checked: its route settings.
#[derive(Debug, Clone)]
struct Settings {
    config: PluginConfig,
    limits: Limits,
}

/// The active plugins, and how to change them.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    store: Store,
    settings: BTreeMap<String, Settings>,
    active: ArcSwap<HashMap<String, Plugin>>,
    /// One change at a time: a check and its swap are not interleaved with another's.
    changing: tokio::sync::Mutex<()>,
}

impl Registry {
    /// A registry for the configured plugins, with no version active yet:
    /// [`Registry::bootstrap`] activates them.
    pub fn new(sandbox: Arc<Sandbox>, store: Store, config: &Config) -> Registry {
        let settings = config
            .plugins
            .iter()
            .map(|(name, s)| {
                let settings = Settings {
                    config: Arc::new(
                        s.config
                            .iter()
                            .map(|(k, v)| (k.clone(), v.0.clone()))
                            .collect(),
                    ),
                    limits: s.limits.resolve(&config.sandbox.limits),
                };
                (name.clone(), settings)
            })
            .collect();
        Registry {
            sandbox,
            store,
            settings,
            active: ArcSwap::from_pointee(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The active version of a plugin.
    pub fn get(&self, name: &str) -> Option<Plugin> {
        self.active.load().get(name).cloned()
    }

    /// The names of the configured plugins.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.settings.keys().map(String::as_str)
    }

    /// Brings back the active versions the store holds. A plugin whose configured file is a
    /// version the store has never seen gets it as a new version (with the fixtures file the
    /// configuration names, which it must pass); otherwise the version last activated stays.
    pub async fn bootstrap(
        &self,
        config: &Config,
        from_config: &BTreeMap<String, Plugin>,
    ) -> anyhow::Result<()> {
        for (name, plugin) in from_config {
            let fixtures = match &config.plugins[name].fixtures {
                Some(path) => Some(std::fs::read_to_string(&path.0).map_err(|e| {
                    anyhow::anyhow!(
                        "plugins.{name}.fixtures: cannot read {}: {e}",
                        path.0.display()
                    )
                })?),
                None => None,
            };
            let known = self.store.plugin_version(name, plugin.hash()).await?;
            let active = self.store.active_plugin(name).await?;
            match (known, active) {
                (None, _) | (Some(_), None) => {
                    let bytes = std::fs::read(&config.plugins[name].path.0)?;
                    self.submit(name, bytes, fixtures, "config", "config")
                        .await
                        .map_err(|refused| anyhow::anyhow!("plugins.{name}: {refused}"))?;
                }
                (Some(_), Some(hash)) if hash == plugin.hash() => self.install(name, plugin),
                (Some(_), Some(hash)) => {
                    let version = self.store.plugin_version(name, &hash).await?.ok_or_else(|| {
                        anyhow::anyhow!("plugins.{name}: the active version {hash} is missing from the store")
                    })?;
                    let sandbox = self.sandbox.clone();
                    let loaded = tokio::task::spawn_blocking(move || {
                        sandbox.load(&version.name, &version.component)
                    })
                    .await??;
                    tracing::info!(plugin = %name, version = %loaded.version_tag(), "the active version from the store, not the configuration's file");
                    self.install(name, &loaded);
                }
            }
        }
        Ok(())
    }

    /// Checks a new version of a plugin and, when it passes, keeps it and makes it active.
    /// `fixtures` are JSON (see [`crate::fixtures`]); without them the active version's apply.
    pub async fn submit(
        &self,
        name: &str,
        component: Vec<u8>,
        fixtures: Option<String>,
        by: &str,
        reason: &str,
    ) -> Result<Swap, Refused> {
        let _changing = self.changing.lock().await;
        let started = Instant::now();
        let settings = self.settings.get(name).ok_or_else(|| {
            Refused::missing(format!(
                "no plugin is named `{name}` in the configuration (`plugins`)"
            ))
        })?;
        let current = self.get(name);
        let fixtures = match fixtures {
            Some(json) => Some(json),
            None => match &current {
                Some(current) => self
                    .store
                    .plugin_version(name, current.hash())
                    .await
                    .map_err(|e| Refused::one(format!("cannot read the active version: {e}")))?
                    .and_then(|v| v.fixtures),
                None => None,
            },
        };
        let parsed = fixtures
            .as_deref()
            .map(Fixtures::parse)
            .transpose()
            .map_err(Refused::one)?;
        let sandbox = self.sandbox.clone();
        let (plugin_name, settings) = (name.to_owned(), settings.clone());
        let current_world = current.as_ref().map(Plugin::world);
        let checked = tokio::task::spawn_blocking(move || {
            let plugin = sandbox
                .load(&plugin_name, &component)
                .map_err(|e| Refused::one(e.to_string()))?;
            if let Some(world) = current_world
                && world != plugin.world()
            {
                return Err(Refused::one(format!(
                    "`{plugin_name}` is a {world} plugin and this component implements the {} \
                     world; a new version must keep the world its routes use",
                    plugin.world()
                )));
            }
            let passed = match &parsed {
                Some(fixtures) => {
                    let failures = fixtures.check(&plugin, &settings.config, &settings.limits);
                    if !failures.is_empty() {
                        return Err(Refused {
                            failures,
                            not_found: false,
                        });
                    }
                    fixtures.len()
                }
                None => 0,
            };
            Ok((plugin, component, passed))
        })
        .await
        .map_err(|e| Refused::one(format!("the check failed: {e}")))??;
        let (plugin, component, passed) = checked;
        let replaced = current.as_ref().map(|c| c.hash().to_owned());
        let unchanged = replaced.as_deref() == Some(plugin.hash());
        let now = now_ms();
        let put = self.store.plugin_write(PluginWrite::Put(PluginVersion {
            name: name.to_owned(),
            hash: plugin.hash().to_owned(),
            world: plugin.world().to_string(),
            component,
            fixtures,
            uploaded_at: now,
            uploaded_by: by.to_owned(),
        }));
        let activated = (!unchanged).then(|| {
            self.store.plugin_write(PluginWrite::Activate {
                name: name.to_owned(),
                hash: plugin.hash().to_owned(),
                at: now,
                by: by.to_owned(),
                reason: reason.to_owned(),
            })
        });
        put.await
            .map_err(|e| Refused::one(format!("cannot store the version: {e}")))?;
        if let Some(activated) = activated {
            activated
                .await
                .map_err(|e| Refused::one(format!("cannot record the activation: {e}")))?;
        }
        let swap = Swap {
            name: name.to_owned(),
            hash: plugin.hash().to_owned(),
            world: plugin.world().to_string(),
            size: plugin.size(),
            replaced,
            fixtures_passed: passed,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            unchanged,
        };
        if !unchanged {
            tracing::info!(
                plugin = %name,
                version = %plugin.version_tag(),
                replaced = swap.replaced.as_deref().unwrap_or("-"),
                reason,
                by,
                took_ms = swap.took_ms,
                "plugin version activated"
            );
            self.install(name, &plugin);
        }
        Ok(swap)
    }

    /// Makes a version the store already holds active again, after the same checks.
    pub async fn activate(
        &self,
        name: &str,
        hash: &str,
        by: &str,
        reason: &str,
    ) -> Result<Swap, Refused> {
        let version = self
            .store
            .plugin_version(name, hash)
            .await
            .map_err(|e| Refused::one(format!("cannot read the version: {e}")))?
            .ok_or_else(|| Refused::missing(format!("`{name}` has no version {hash}")))?;
        self.submit(name, version.component, version.fixtures, by, reason)
            .await
    }

    /// Makes the version that was active before the current one active again.
    pub async fn rollback(&self, name: &str, by: &str) -> Result<Swap, Refused> {
        let current = self
            .get(name)
            .ok_or_else(|| Refused::missing(format!("no plugin is named `{name}`")))?;
        let history = self
            .store
            .plugin_activations(name)
            .await
            .map_err(|e| Refused::one(format!("cannot read the activations: {e}")))?;
        let previous = history
            .iter()
            .rev()
            .map(|a| &a.hash)
            .find(|hash| hash.as_str() != current.hash())
            .ok_or_else(|| {
                Refused::missing(format!("`{name}` has had no other version to roll back to"))
            })?
            .clone();
        self.activate(name, &previous, by, "rollback").await
    }

    /// Every version of a plugin and its activations.
    pub async fn describe(
        &self,
        name: &str,
    ) -> Result<(Vec<PluginVersionInfo>, Vec<Activation>), crate::store::StoreError> {
        Ok((
            self.store.plugin_versions(name).await?,
            self.store.plugin_activations(name).await?,
        ))
    }

    fn install(&self, name: &str, plugin: &Plugin) {
        self.active.rcu(|active| {
            let mut next = HashMap::clone(active);
            next.insert(name.to_owned(), plugin.clone());
            next
        });
    }
}

/// How often the watched plugin directory is read.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Watches a directory: a `<name>.wasm` file there, for a configured plugin `<name>`, becomes a
/// new version of it when it changes (with `<name>.fixtures.json` beside it, if there is one).
/// Runs until `shutdown`.
pub async fn watch(
    registry: Arc<Registry>,
    dir: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut seen: HashMap<std::path::PathBuf, (std::time::SystemTime, u64)> = HashMap::new();
    // Files already there at start are versions like any other: check them too.
    loop {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path
                    .extension()
                    .is_some_and(|e| e == "wasm")
                    .then(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .flatten()
                else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
                if seen.get(&path) == Some(&stamp) {
                    continue;
                }
                seen.insert(path.clone(), stamp);
                if !registry.settings.contains_key(&name) {
                    tracing::warn!(file = %path.display(), "a plugin file for no configured plugin; ignored");
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let fixtures =
                    std::fs::read_to_string(dir.join(format!("{name}.fixtures.json"))).ok();
                match registry
                    .submit(&name, bytes, fixtures, "watch", "watch")
                    .await
                {
                    Ok(swap) if swap.unchanged => {}
                    Ok(_) => {}
                    Err(refused) => tracing::error!(
                        file = %path.display(),
                        plugin = %name,
                        reason = %refused,
                        "a new version in the watched directory was refused; the active version stays"
                    ),
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
}
