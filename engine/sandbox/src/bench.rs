//! What the plugin-stage benchmark measures beside a fresh run: one instance kept for many
//! events, and the parts of a fresh run that come before the plugin's own code. The engine
//! itself never reuses an instance: state left by one event would be seen by the next.

use super::host::{Caller, RunState, deadline_ticks, new_store};
use super::output::checked_output;
use super::plugin::{Inner, Pre};
use super::run::{EventInstance, Output, guest_error, instantiating, to_wit_event};
use super::{Limits, Plugin, PluginSetup, RunError};
use crate::event::Event;
use wasmtime::Store;

/// One instance kept for many events (see the module's documentation).
pub struct Reused {
    store: Store<RunState>,
    instance: EventInstance,
    limits: Limits,
    deadline: u64,
}

impl Plugin {
    /// Instantiates the plugin once, to run many events on the same instance.
    pub fn reused(&self, setup: &PluginSetup) -> Result<Reused, RunError> {
        let inner: &Inner = &self.inner;
        let caller = Caller {
            plugin: &inner.name,
            version: &inner.version,
            event_id: "reused",
        };
        let (mut store, _output) = new_store(&inner.shared, &caller, setup);
        let instance = EventInstance::new(&inner.pre, &mut store)
            .ok_or_else(|| self.wrong_world("run on events"))?
            .map_err(|e| RunError::Instantiate {
                reason: format!("{e:#}"),
                capacity: false,
            })?;
        Ok(Reused {
            store,
            instance,
            limits: setup.limits,
            deadline: deadline_ticks(&inner.shared, &setup.limits),
        })
    }

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

impl Reused {
    /// Runs one event on the kept instance, with the deadline reset for it.
    pub fn run(&mut self, event: &Event) -> Result<Output, RunError> {
        self.store.set_epoch_deadline(self.deadline);
        let raw = self
            .instance
            .call(&mut self.store, &to_wit_event(event))
            .map_err(|e| RunError::Trap {
                reason: format!("{e:#}"),
            })?
            .map_err(guest_error)?;
        checked_output(raw, &self.limits)
    }
}
