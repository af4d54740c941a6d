//! What the plugin-stage benchmark measures beside a whole run: the parts of a fresh run that
//! come before the plugin's own code.

use super::plugin::Pre;
use super::run::instantiating;
use super::{Plugin, PluginSetup, RunError};

impl Plugin {
    /// Makes a fresh store and instance as [`Plugin::run`] does and drops them without calling
    /// the plugin, or only the store when `instantiate` is false: the parts of a fresh run that
    /// come before the plugin's own code, for the benchmark's breakdown.
    pub fn prepare_only(&self, setup: &PluginSetup, instantiate: bool) -> Result<(), RunError> {
        self.invoke("prepare-only", setup, |store, pre| {
            if instantiate {
                match pre {
                    Pre::Transformer(pre) => pre.instantiate(store).map(|_| ()),
                    Pre::Handler(pre) => pre.instantiate(store).map(|_| ()),
                    Pre::Resolver(pre) => pre.instantiate(store).map(|_| ()),
                }
                .map_err(instantiating)?;
            }
            Ok(Ok(()))
        })
    }
}
