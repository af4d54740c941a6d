//! The plugin registry: the active version of every plugin, swapped atomically while events
//! flow.
//!
//! A new version (from the admin API, the watched directory, or a changed configuration) is
//! compiled and checked against its world off the hot path, must keep the world of the version
//! it replaces, and must pass its fixtures (those it came with, else those of the version it
//! replaces). Only then is it stored and made active, by swapping one pointer: a plugin run
//! takes the version active when it starts and finishes on it, and records its hash. A refused
//! version changes nothing. After a restart the active versions are what they were.

mod check;
mod watch;

pub use watch::{WATCH_INTERVAL, watch};

use crate::config::Config;
use crate::sandbox::{Plugin, PluginSetup, Sandbox};
use crate::store::{Activation, PluginStore, PluginVersionInfo, PluginWrite};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Why a version was not activated: every reason found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the version was refused: {}", .failures.join("; "))]
pub struct Refused {
    /// Each failure, as a sentence.
    pub failures: Vec<String>,
    /// Whether the refusal is about the request (an unknown plugin or version) rather than
    /// the component.
    pub not_found: bool,
    /// The fixture cases that passed, by name, when others failed.
    pub passed: Vec<String>,
}

impl Refused {
    fn one(failure: impl Into<String>) -> Refused {
        Refused {
            failures: vec![failure.into()],
            not_found: false,
            passed: Vec::new(),
        }
    }

    fn missing(failure: impl Into<String>) -> Refused {
        Refused {
            failures: vec![failure.into()],
            not_found: true,
            passed: Vec::new(),
        }
    }
}

/// A version made active: what the admin API answers for an upload, activation or rollback.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
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
    /// The fixture cases it passed, by name.
    #[serde(default)]
    pub fixture_cases: Vec<String>,
    /// How long validating and activating took, in milliseconds.
    pub took_ms: u64,
    /// Whether it was already the active version (nothing changed).
    pub unchanged: bool,
}

/// The active plugins, and how to change them.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    store: Arc<dyn PluginStore>,
    settings: BTreeMap<String, PluginSetup>,
    active: ArcSwap<HashMap<String, Plugin>>,
    /// One change at a time per plugin: a check and its swap are not interleaved with another
    /// of the same plugin's; different plugins change independently.
    changing: HashMap<String, tokio::sync::Mutex<()>>,
    /// Components being compiled and checked at once (a check that ran past its deadline holds
    /// its slot until it ends), so uploads cannot take every core or unbounded memory.
    compiling: Arc<tokio::sync::Semaphore>,
    /// How long a new version's check (compiling it, running its fixtures) may take, once the
    /// engine has started: the configuration's own files are checked at start without one (the
    /// engine cannot start without them).
    check_timeout: Duration,
    /// Whether [`Registry::bootstrap`] is done.
    started: std::sync::atomic::AtomicBool,
    /// The largest component accepted, from any source.
    max_component_size: usize,
    /// The shadow versions.
    shadows: Arc<crate::pipeline::shadow::Shadows>,
    /// The canaries.
    canaries: crate::pipeline::canary::Canaries,
}

/// Components compiled and checked at once.
const COMPILE_SLOTS: usize = 2;

impl Registry {
    /// A registry for the configured plugins, with no version active yet:
    /// [`Registry::bootstrap`] activates them.
    pub fn new(
        sandbox: Arc<Sandbox>,
        store: Arc<dyn PluginStore>,
        config: &Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Registry {
        let settings = config
            .plugins
            .keys()
            .map(|name| (name.clone(), config.plugin_setup(name)))
            .collect();
        let changing = config
            .plugins
            .keys()
            .map(|name| (name.clone(), tokio::sync::Mutex::new(())))
            .collect();
        Registry {
            sandbox,
            store,
            settings,
            active: ArcSwap::from_pointee(HashMap::new()),
            changing,
            compiling: Arc::new(tokio::sync::Semaphore::new(COMPILE_SLOTS)),
            check_timeout: config.sandbox.compile_timeout,
            started: std::sync::atomic::AtomicBool::new(false),
            max_component_size: config.admin.max_upload_size,
            shadows: Arc::new(crate::pipeline::shadow::Shadows::new(metrics.clone())),
            canaries: crate::pipeline::canary::Canaries::new(metrics),
        }
    }

    /// The canaries: stored versions that take a share of live events by key.
    pub fn canaries(&self) -> &crate::pipeline::canary::Canaries {
        &self.canaries
    }

    /// The shadow versions: candidates that run beside the active ones on live events.
    pub fn shadows(&self) -> &Arc<crate::pipeline::shadow::Shadows> {
        &self.shadows
    }

    /// The largest component taken as a new version (`admin.maxUploadSize`), uploaded or
    /// watched.
    pub fn max_component_size(&self) -> usize {
        self.max_component_size
    }

    /// Waits for the right to change `name` (one change at a time per plugin).
    async fn lock_for(&self, name: &str) -> Result<tokio::sync::MutexGuard<'_, ()>, Refused> {
        match self.changing.get(name) {
            Some(lock) => Ok(lock.lock().await),
            None => Err(Refused::missing(format!(
                "no plugin is named `{name}` in the configuration (`plugins`)"
            ))),
        }
    }

    /// The active version of a plugin.
    pub fn get(&self, name: &str) -> Option<Plugin> {
        self.active.load().get(name).cloned()
    }

    /// Whether `name` is a configured plugin.
    pub fn is_configured(&self, name: &str) -> bool {
        self.settings.contains_key(name)
    }

    /// The names of the configured plugins.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.settings.keys().map(String::as_str)
    }

    /// Brings back the active versions the store holds (when one keeps the world the
    /// configuration's routes were built for), then takes the configuration's file as a new
    /// version when the store has never seen it: checked like an upload, with the fixtures
    /// file the configuration names. When that check fails, the stored version keeps serving
    /// (with an error logged); with no stored version, the engine does not start.
    pub async fn bootstrap(
        self: &Arc<Self>,
        config: &Config,
        from_config: &BTreeMap<String, Plugin>,
    ) -> anyhow::Result<()> {
        for (name, configured) in from_config {
            if let Some(stored) = self.stored_active(name).await? {
                if stored.world() == configured.world() {
                    if stored.hash() != configured.hash() {
                        tracing::info!(plugin = %name, version = %stored.version_tag(), "the active version comes from the store, not the configuration's file");
                    }
                    self.install(name, &stored);
                } else {
                    tracing::warn!(plugin = %name, "the stored active version implements the {} world, but the routes use the configuration's {}; the configuration's file is used", stored.world(), configured.world());
                }
            }
            let known = self.store.version(name, configured.hash()).await?.is_some();
            if known && self.get(name).is_some() {
                continue;
            }
            let fixtures = match &config.plugins[name].fixtures {
                Some(path) => Some(std::fs::read_to_string(&path.0).map_err(|e| {
                    anyhow::anyhow!(
                        "plugins.{name}.fixtures: cannot read {}: {e}",
                        path.0.display()
                    )
                })?),
                None => None,
            };
            let bytes = std::fs::read(&config.plugins[name].path.0)?;
            match self.submit(name, bytes, fixtures, "config", "config").await {
                Ok(_) => {}
                Err(refused) if self.get(name).is_some() => tracing::error!(
                    plugin = %name,
                    reason = %refused,
                    "the configuration's new version was refused; the stored active version keeps serving"
                ),
                Err(refused) => anyhow::bail!("plugins.{name}: {refused}"),
            }
        }
        self.started
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The store's active version of a plugin, compiled; `None` when there is none (or it is
    /// missing, which is logged).
    async fn stored_active(&self, name: &str) -> anyhow::Result<Option<Plugin>> {
        let Some(hash) = self.store.active(name).await? else {
            return Ok(None);
        };
        let Some(version) = self.store.version(name, &hash).await? else {
            tracing::error!(plugin = %name, %hash, "the active version is missing from the store");
            return Ok(None);
        };
        let sandbox = self.sandbox.clone();
        let loaded =
            tokio::task::spawn_blocking(move || sandbox.load(&version.name, &version.component))
                .await??;
        Ok(Some(loaded))
    }

    /// Whether the store holds this version of a plugin.
    pub async fn knows(&self, name: &str, hash: &str) -> bool {
        matches!(self.store.version(name, hash).await, Ok(Some(_)))
    }

    /// Checks a new version of a plugin and, when it passes, keeps it and makes it active.
    /// `fixtures` (JSON, see [`crate::sandbox::fixtures`]) are the version's own; without them it must
    /// pass the active version's. The work goes on even if the caller stops waiting, so the
    /// store and the running engine never disagree.
    pub async fn submit(
        self: &Arc<Self>,
        name: &str,
        component: Vec<u8>,
        fixtures: Option<String>,
        by: &str,
        reason: &str,
    ) -> Result<Swap, Refused> {
        let (this, name, by, reason) = (
            self.clone(),
            name.to_owned(),
            by.to_owned(),
            reason.to_owned(),
        );
        detached(async move {
            let _changing = this.lock_for(&name).await?;
            this.check_and_swap(&name, component, fixtures, true, &by, &reason)
                .await
        })
        .await
    }

    /// Makes a version the store holds active again, after the checks of an upload against its
    /// own fixtures (never those of the version it replaces).
    pub async fn activate(
        self: &Arc<Self>,
        name: &str,
        hash: &str,
        by: &str,
        reason: &str,
    ) -> Result<Swap, Refused> {
        let (this, name, hash, by, reason) = (
            self.clone(),
            name.to_owned(),
            hash.to_owned(),
            by.to_owned(),
            reason.to_owned(),
        );
        detached(async move {
            let _changing = this.lock_for(&name).await?;
            this.activate_stored(&name, &hash, &by, &reason).await
        })
        .await
    }

    /// Makes the version that was active before the current one active again (the most recent
    /// other version in the activation history that the store still holds). Rolling back twice
    /// returns to where it started.
    pub async fn rollback(self: &Arc<Self>, name: &str, by: &str) -> Result<Swap, Refused> {
        let (this, name, by) = (self.clone(), name.to_owned(), by.to_owned());
        detached(async move {
            let _changing = this.lock_for(&name).await?;
            let current = this
                .get(&name)
                .ok_or_else(|| Refused::missing(format!("no plugin is named `{name}`")))?;
            let history = this
                .store
                .activations(&name)
                .await
                .map_err(|e| Refused::one(format!("cannot read the activations: {e}")))?;
            let mut tried = std::collections::HashSet::new();
            for activation in history.iter().rev() {
                let hash = &activation.hash;
                if hash == current.hash() || !tried.insert(hash.clone()) {
                    continue;
                }
                if this.knows(&name, hash).await {
                    return this.activate_stored(&name, hash, &by, "rollback").await;
                }
            }
            Err(Refused::missing(format!(
                "`{name}` has no other version to roll back to"
            )))
        })
        .await
    }

    /// Deletes a version that is not active.
    pub async fn delete(
        self: &Arc<Self>,
        name: &str,
        hash: &str,
    ) -> Result<(), crate::store::StoreError> {
        let (this, name, hash) = (self.clone(), name.to_owned(), hash.to_owned());
        detached(async move {
            // Not configured: nothing can be swapping it; the store says what it holds.
            let _changing = this.lock_for(&name).await.ok();
            this.store.write(PluginWrite::Delete { name, hash }).await
        })
        .await
    }

    async fn activate_stored(
        &self,
        name: &str,
        hash: &str,
        by: &str,
        reason: &str,
    ) -> Result<Swap, Refused> {
        let version = self
            .store
            .version(name, hash)
            .await
            .map_err(|e| Refused::one(format!("cannot read the version: {e}")))?
            .ok_or_else(|| Refused::missing(format!("`{name}` has no version {hash}")))?;
        self.check_and_swap(name, version.component, version.fixtures, false, by, reason)
            .await
    }

    /// Every version of a plugin and its activations.
    pub async fn describe(
        &self,
        name: &str,
    ) -> Result<(Vec<PluginVersionInfo>, Vec<Activation>), crate::store::StoreError> {
        Ok((
            self.store.versions(name).await?,
            self.store.activations(name).await?,
        ))
    }

    /// Follows the store's activations until `shutdown`: a version another engine sharing the
    /// store activated (an upload, an activation, a rollback there) is loaded from the store
    /// and made active here too, moments after its write is applied. Versions this engine
    /// activated itself are already active and left as they are.
    pub async fn follow(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let (names, changed) = self.store.activated();
            for name in names {
                if !self.settings.contains_key(&name) {
                    continue;
                }
                if let Err(e) = self.adopt(&name).await {
                    tracing::error!(plugin = %name, error = %e, "cannot load the version activated by another engine; the current one keeps serving here");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = changed.notified() => {}
            }
        }
    }

    /// Makes the store's active version of `name` active here, if it is not already.
    async fn adopt(&self, name: &str) -> anyhow::Result<()> {
        let _changing = self.lock_for(name).await?;
        let Some(hash) = self.store.active(name).await? else {
            return Ok(());
        };
        let current = self.get(name);
        if current.as_ref().is_some_and(|c| c.hash() == hash) {
            return Ok(());
        }
        let Some(plugin) = self.stored_active(name).await? else {
            return Ok(());
        };
        if let Some(current) = &current
            && current.world() != plugin.world()
        {
            anyhow::bail!(
                "the version implements the {} world, but the routes here use {}",
                plugin.world(),
                current.world()
            );
        }
        tracing::info!(plugin = %name, version = %plugin.version_tag(), replaced = current.as_ref().map_or("-", |c| c.hash()), "plugin version activated by another engine");
        self.install(name, &plugin);
        Ok(())
    }

    fn install(&self, name: &str, plugin: &Plugin) {
        self.active.rcu(|active| {
            let mut next = HashMap::clone(active);
            next.insert(name.to_owned(), plugin.clone());
            next
        });
    }
}

/// Runs `work` on its own task and waits for it: if the caller stops waiting (a client
/// disconnects), the work still finishes, so a swap is never half done.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    match tokio::spawn(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
