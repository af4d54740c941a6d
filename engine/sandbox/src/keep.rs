//! Opt-in instance reuse. By default every event runs in a fresh instance; a plugin whose
//! [`Isolation`] allows it runs up to `reuse_for` events on one instance instead, which saves
//! what a fresh instance costs (for a JavaScript or Python plugin, most of its per-event time).
//!
//! What it gives up: an event can see what an earlier event on the same instance left in its
//! memory (globals, caches, a half-built structure after a bug), so a plugin is no longer a pure
//! function of its event. To bound that, an instance is discarded after `reuse_for` events,
//! after any failure (a plugin error, a trap, a timeout, output refused), when its memories
//! have grown past `max_growth` since it was made, and when the plugin's settings change; a new
//! version of a plugin never sees its predecessor's instances. Resolvers always run fresh.

use super::PluginSetup;
use super::host::{GuestStreams, RunState};
use super::run::EventInstance;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use wasmtime::Store;

/// How a plugin's instances serve events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isolation {
    /// How many events one instance may run: 1 (the default) is a fresh instance per event.
    pub reuse_for: NonZeroU32,
    /// Bytes an instance's memories may grow by, from when it was made, before it is discarded
    /// rather than kept for another event.
    pub max_growth: usize,
}

impl Isolation {
    /// A fresh instance for every event.
    pub const FRESH: Isolation = Isolation {
        reuse_for: NonZeroU32::MIN,
        max_growth: 16 << 20,
    };

    /// Whether instances are kept across events.
    pub fn reuses(&self) -> bool {
        self.reuse_for.get() > 1
    }
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::FRESH
    }
}

/// Idle instances one plugin keeps at most: enough for the engine's workers to each find one,
/// few enough that idle plugins do not hold the pool's slots.
pub const MAX_IDLE: usize = 8;

/// One instance kept for later events, with its store.
pub(crate) struct Kept {
    pub(crate) store: Store<RunState>,
    pub(crate) streams: GuestStreams,
    pub(crate) instance: EventInstance,
    /// Events it has run.
    runs: u32,
    /// Bytes its memories held when it was made.
    baseline: usize,
    /// The setup it was made under: another setup gets another instance.
    setup: PluginSetup,
}

/// A plugin's idle instances.
#[derive(Default)]
pub(crate) struct Idle(Mutex<Vec<Kept>>);

impl Idle {
    /// An idle instance made under `setup`, if there is one.
    pub(crate) fn take(&self, setup: &PluginSetup) -> Option<Kept> {
        let (kept, stale) = {
            let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Instances of another setup (the route's settings or limits changed) are dropped,
            // outside the lock: dropping one resets its slot of the pool.
            let stale: Vec<Kept> = idle.extract_if(.., |kept| kept.setup != *setup).collect();
            (idle.pop(), stale)
        };
        drop(stale);
        kept
    }

    /// Keeps `kept` for a later event, unless it has run its share of events, grew past its
    /// bound, or enough are idle already.
    pub(crate) fn give_back(&self, mut kept: Kept) {
        kept.runs += 1;
        let isolation = kept.setup.isolation;
        let growth = kept.store.data().limiter.used.saturating_sub(kept.baseline);
        if kept.runs >= isolation.reuse_for.get() || growth > isolation.max_growth {
            return;
        }
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(kept);
        }
    }
}

impl Kept {
    /// Keeps a new instance, made in `store` under `setup`, for events.
    pub(crate) fn new(
        store: Store<RunState>,
        streams: GuestStreams,
        instance: EventInstance,
        setup: &PluginSetup,
    ) -> Kept {
        let baseline = store.data().limiter.used;
        Kept {
            store,
            streams,
            instance,
            runs: 0,
            baseline,
            setup: setup.clone(),
        }
    }
}
