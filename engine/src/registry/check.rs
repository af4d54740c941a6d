//! Checking a new version: compiling it (in a compile slot, within the deadline), its world,
//! its fixtures, then keeping it in the store and, unless it is staged for a canary, making it
//! active; and compiling a candidate that is kept nowhere (a dry run, a shadow).

use super::{Refused, Registry, Swap, detached};
use crate::sandbox::fixtures::Fixtures;
use crate::sandbox::{Plugin, World};
use crate::store::{ActivationRecord, PluginVersion, PluginWrite, now_ms};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a checked version is kept: whose fixtures it must pass, who gave it and why, and
/// whether it becomes active.
struct Keep<'a> {
    /// Without fixtures of its own, it must pass the active version's.
    inherit: bool,
    by: &'a str,
    reason: &'a str,
    activate: bool,
}

impl Registry {
    /// Compiles `component` as a candidate version of `name`, checked as an upload is (size,
    /// compile deadline, world) but neither stored nor activated: for a dry run.
    pub async fn candidate(&self, name: &str, component: Vec<u8>) -> Result<Plugin, Refused> {
        if !self.settings.contains_key(name) {
            return Err(Refused::missing(format!(
                "no plugin is named `{name}` in the configuration (`plugins`)"
            )));
        }
        let (plugin, _, ()) = self.compile_checked(name, component, |_| Ok(())).await?;
        Ok(plugin)
    }

    /// Compiles `component` as a version of `name` (in a compile slot, within
    /// `sandbox.compileTimeout` once the engine has started), checks that it keeps the world of
    /// the active version, then runs `check` on it; all on a thread that may block.
    async fn compile_checked<T: Send + 'static>(
        &self,
        name: &str,
        component: Vec<u8>,
        check: impl FnOnce(&Plugin) -> Result<T, Refused> + Send + 'static,
    ) -> Result<(Plugin, Vec<u8>, T), Refused> {
        if component.len() > self.max_component_size {
            return Err(Refused::one(format!(
                "the component is {} bytes; at most {} are taken (admin.maxUploadSize)",
                component.len(),
                self.max_component_size
            )));
        }
        let timeout = if self.started.load(std::sync::atomic::Ordering::Acquire) {
            self.check_timeout
        } else {
            // At start: the configuration's own files, without a deadline.
            Duration::from_secs(365 * 24 * 3600)
        };
        let late = || {
            Refused::one(format!(
                "checking the component (compiling it, running its fixtures) took longer than \
                 {} (sandbox.compileTimeout); the active version stays",
                humantime::format_duration(timeout)
            ))
        };
        let deadline = tokio::time::Instant::now() + timeout;
        // A slot to compile in; one whose check ran late is held until that check ends.
        let slot = tokio::time::timeout_at(deadline, self.compiling.clone().acquire_owned())
            .await
            .map_err(|_| late())?
            .map_err(|_| Refused::one("the engine is stopping"))?;
        let sandbox = self.sandbox.clone();
        let plugin_name = name.to_owned();
        let current_world = self.get(name).as_ref().map(Plugin::world);
        let checked = tokio::task::spawn_blocking(move || {
            let _slot = slot;
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
            let checked = check(&plugin)?;
            Ok((plugin, component, checked))
        });
        tokio::time::timeout_at(deadline, checked)
            .await
            .map_err(|_| late())?
            .map_err(|e| Refused::one(format!("the check failed: {e}")))?
    }

    /// The check, the store's record and the swap, under the `changing` lock. `inherit`: a
    /// version without fixtures must pass the active version's.
    pub(super) async fn check_and_swap(
        &self,
        name: &str,
        component: Vec<u8>,
        own_fixtures: Option<String>,
        inherit: bool,
        by: &str,
        reason: &str,
    ) -> Result<Swap, Refused> {
        let keep = Keep {
            inherit,
            by,
            reason,
            activate: true,
        };
        let (swap, _) = self
            .check_and_keep(name, component, own_fixtures, keep)
            .await?;
        Ok(swap)
    }

    /// Checks a new version of `name` with the checks of an upload and keeps it in the store
    /// without activating it (a canary's version): answers it, compiled.
    pub async fn stage(
        self: &Arc<Self>,
        name: &str,
        component: Vec<u8>,
        fixtures: Option<String>,
        by: &str,
    ) -> Result<Plugin, Refused> {
        let (this, name, by) = (self.clone(), name.to_owned(), by.to_owned());
        detached(async move {
            let _changing = this.lock_for(&name).await?;
            let keep = Keep {
                inherit: true,
                by: &by,
                reason: "canary",
                activate: false,
            };
            let (_, plugin) = this
                .check_and_keep(&name, component, fixtures, keep)
                .await?;
            Ok(plugin)
        })
        .await
    }

    /// The check and the store's record, and, when `keep.activate`, the swap: under the
    /// `changing` lock.
    async fn check_and_keep(
        &self,
        name: &str,
        component: Vec<u8>,
        own_fixtures: Option<String>,
        keep: Keep<'_>,
    ) -> Result<(Swap, Plugin), Refused> {
        let Keep {
            inherit,
            by,
            reason,
            activate,
        } = keep;
        let started = Instant::now();
        let settings = self.settings.get(name).ok_or_else(|| {
            Refused::missing(format!(
                "no plugin is named `{name}` in the configuration (`plugins`)"
            ))
        })?;
        let current = self.get(name);
        let checked_with = match (&own_fixtures, &current) {
            (Some(own), _) => Some(own.clone()),
            (None, Some(current)) if inherit => self
                .store
                .version(name, current.hash())
                .await
                .map_err(|e| Refused::one(format!("cannot read the active version: {e}")))?
                .and_then(|v| v.fixtures),
            (None, _) => None,
        };
        let parsed = checked_with
            .as_deref()
            .map(Fixtures::parse)
            .transpose()
            .map_err(Refused::one)?;
        let settings = settings.clone();
        let (plugin, component, passed) = self
            .compile_checked(name, component, move |plugin| {
                let Some(fixtures) = &parsed else {
                    return Ok(Vec::new());
                };
                if plugin.world() == World::Resolver {
                    return Err(Refused::one(
                        "fixtures test transformers and handlers; a resolver cannot be given any",
                    ));
                }
                let (mut passed, mut failures) = (Vec::new(), Vec::new());
                for (name, result) in fixtures.run(plugin, &settings) {
                    match result {
                        Ok(()) => passed.push(name),
                        Err(e) => failures.push(format!("{name}: {e}")),
                    }
                }
                if failures.is_empty() {
                    Ok(passed)
                } else {
                    Err(Refused {
                        failures,
                        not_found: false,
                        passed,
                    })
                }
            })
            .await?;
        let replaced = current
            .as_ref()
            .filter(|_| activate)
            .map(|c| c.hash().to_owned());
        let unchanged = current.as_ref().map(Plugin::hash) == Some(plugin.hash());
        let now = now_ms();
        // The version and its activation are one write: the store never names an active
        // version it does not hold.
        self.store
            .write(PluginWrite::Add {
                version: PluginVersion {
                    name: name.to_owned(),
                    hash: plugin.hash().to_owned(),
                    world: plugin.world().to_string(),
                    component,
                    fixtures: own_fixtures,
                    uploaded_at: now,
                    uploaded_by: by.to_owned(),
                },
                activate: (activate && !unchanged).then(|| ActivationRecord {
                    at: now,
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                }),
                replaces: replaced.clone(),
            })
            .await
            .map_err(|e| Refused::one(format!("cannot store the version: {e}")))?;
        let swap = Swap {
            name: name.to_owned(),
            hash: plugin.hash().to_owned(),
            world: plugin.world().to_string(),
            size: plugin.size(),
            replaced,
            fixtures_passed: passed.len(),
            fixture_cases: passed,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            unchanged,
        };
        if activate && !unchanged {
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
        Ok((swap, plugin))
    }
}
