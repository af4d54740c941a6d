//! What a plugin may import, and the state of one call: the `hms:sync` imports (`log` and
//! `config`), WASI 0.2 with no capabilities and no timers, a memory limiter, and the plugin's
//! captured stdout and stderr.

use super::bindings::{self, config, log, wit};
use super::capture::GuestOutput;
use super::{Limits, PluginSetup, Settings, Shared};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The state of one store: one call of a plugin.
pub(crate) struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    settings: Settings,
    plugin: Arc<str>,
    version: Arc<str>,
    event_id: String,
    log_lines: usize,
    /// The last line logged at error level (where the SDK reports a panic on a target without
    /// stderr).
    pub(crate) last_error: Option<String>,
}

/// The linker every plugin is instantiated against: WASI 0.2 (with an empty context per store)
/// and the `hms:sync` imports.
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| anyhow::anyhow!("cannot link WASI: {e:#}"))?;
    refuse_waiting(&mut linker)?;
    bindings::handler::Handler::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
        .map_err(|e| anyhow::anyhow!("cannot link the hms:sync imports: {e:#}"))?;
    Ok(linker)
}

/// The WASI version whose clock interface the sandbox replaces (that of wasmtime-wasi's WIT).
const WASI_CLOCKS: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A plugin may not wait: a WASI clock subscription (what `sleep` and timed polls are made of)
/// traps. Epoch interruption stops wasm code at its deadline, but not a host call blocked on a
/// timer, so waiting is the one way a plugin could outlast its deadline. A plugin is a function
/// of its event; the engine does any waiting (retries, backoff) itself.
fn refuse_waiting(linker: &mut Linker<RunState>) -> anyhow::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut clock = linker
        .instance(WASI_CLOCKS)
        .map_err(|e| anyhow::anyhow!("cannot replace {WASI_CLOCKS}: {e:#}"))?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock
            .func_wrap(
                name,
                move |_store, (_when,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
                    Err(wasmtime::format_err!(
                        "the plugin tried to wait (`{name}`): plugins may not sleep or wait on \
                         timers; the engine does any waiting"
                    ))
                },
            )
            .map_err(|e| anyhow::anyhow!("cannot replace {WASI_CLOCKS}.{name}: {e:#}"))?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

impl RunState {
    /// Makes the state ready for another event on a kept instance: who it runs for, and
    /// nothing left from the previous event.
    pub(crate) fn begin(&mut self, event_id: &str) {
        event_id.clone_into(&mut self.event_id);
        self.log_lines = 0;
        self.last_error = None;
        self.limiter.refused = None;
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for RunState {}

impl log::Host for RunState {
    fn log(&mut self, level: log::Level, message: String) {
        use hms_sync_rules::MAX_LOG_LINES;
        if matches!(level, log::Level::Error) {
            // Kept even past the line limit: a crash's reason ends with it.
            self.last_error = Some(hms_sync_rules::truncate_log_line(message.clone()));
        }
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(
                    target: "plugin",
                    plugin = %self.plugin,
                    version = %self.version,
                    event_id = %self.event_id,
                    "plugin logged more than {MAX_LOG_LINES} lines for one event; dropping the rest"
                );
            }
            return;
        }
        let message = hms_sync_rules::truncate_log_line(message);
        let (plugin, version, event_id) = (&*self.plugin, &*self.version, &*self.event_id);
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "plugin", $level, plugin, version, event_id, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(tracing::Level::TRACE),
            log::Level::Debug => emit!(tracing::Level::DEBUG),
            log::Level::Info => emit!(tracing::Level::INFO),
            log::Level::Warn => emit!(tracing::Level::WARN),
            log::Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

impl config::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Caps each linear memory and table of one instance, and remembers a refused growth so a
/// trap that follows it is reported as the memory limit, not as a crash.
pub(crate) struct MemoryLimiter {
    /// The limit, for all of the instance's memories together.
    pub(crate) memory: usize,
    /// Bytes the instance's memories hold.
    pub(crate) used: usize,
    /// What the instance asked for in all when it was refused.
    pub(crate) refused: Option<usize>,
}

/// Elements any one table may hold: far above what compiled Rust needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    /// Called for each memory as it is created (from 0) and as it grows: the limit holds for
    /// the sum, however many memories the component has.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.memory {
            self.refused = Some(total);
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Who a store runs for, for the plugin's log lines.
pub(crate) struct Caller<'a> {
    pub(crate) plugin: &'a Arc<str>,
    pub(crate) version: &'a Arc<str>,
    pub(crate) event_id: &'a str,
}

/// The most random bytes one WASI call may ask for. The host fills them before the plugin's
/// memory (and its limit) sees them, so without a cap one call could make the engine allocate
/// 64 MiB; runtimes ask for a few dozen bytes to seed themselves.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// A fresh store for one call: an empty WASI context whose stdout and stderr are captured, the
/// memory limiter and the epoch deadline for the setup's limits (memory capped at the sandbox's
/// maximum).
pub(crate) fn new_store(
    shared: &Shared,
    caller: &Caller<'_>,
    setup: &PluginSetup,
) -> (Store<RunState>, GuestStreams) {
    let streams = GuestStreams {
        stdout: GuestOutput::default(),
        stderr: GuestOutput::default(),
    };
    let wasi = WasiCtxBuilder::new()
        .stdout(streams.stdout.clone())
        .stderr(streams.stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES)
        .build();
    let mut store = Store::new(
        &shared.engine,
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                memory: setup.limits.memory.min(shared.options.max_memory),
                used: 0,
                refused: None,
            },
            settings: setup.settings.clone(),
            plugin: caller.plugin.clone(),
            version: caller.version.clone(),
            event_id: caller.event_id.to_owned(),
            log_lines: 0,
            last_error: None,
        },
    );
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(deadline_ticks(shared, &setup.limits));
    store.epoch_deadline_trap();
    (store, streams)
}

/// The epoch deadline, in ticks from now, for `limits.timeout`: rounded up, plus one tick
/// since the current tick may be about to end.
pub(crate) fn deadline_ticks(shared: &Shared, limits: &Limits) -> u64 {
    let tick = shared.options.epoch_tick.as_nanos().max(1);
    let ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX);
    ticks.saturating_add(1)
}

/// A plugin's stdout and stderr for one store.
pub(crate) struct GuestStreams {
    stdout: GuestOutput,
    stderr: GuestOutput,
}

impl GuestStreams {
    /// Writes what the plugin printed to `tracing`, line by line, and returns stderr's text.
    pub(crate) fn flush(&self, caller: &Caller<'_>) -> String {
        let (plugin, version, event_id) = (&**caller.plugin, &**caller.version, caller.event_id);
        let (out, out_dropped) = self.stdout.take();
        let (err, err_dropped) = self.stderr.take();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "plugin", plugin, version, event_id, stream = "stdout", "{line}");
        }
        for line in err.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!(target: "plugin", plugin, version, event_id, stream = "stderr", "{line}");
        }
        if out_dropped + err_dropped > 0 {
            tracing::warn!(
                target: "plugin",
                plugin,
                version,
                event_id,
                dropped_bytes = out_dropped + err_dropped,
                "plugin printed more than the per-event capture limit; the rest was dropped"
            );
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_holds_for_all_of_an_instances_memories_together() {
        let mib = 1 << 20;
        let mut limiter = MemoryLimiter {
            memory: 16 * mib,
            used: 0,
            refused: None,
        };
        // Two memories created at 6 MiB each, then each grown by 2 MiB: 16 MiB in all.
        assert!(limiter.memory_growing(0, 6 * mib, None).unwrap());
        assert!(limiter.memory_growing(0, 6 * mib, None).unwrap());
        assert!(limiter.memory_growing(6 * mib, 8 * mib, None).unwrap());
        assert!(limiter.memory_growing(6 * mib, 8 * mib, None).unwrap());
        // One more page of either is past the limit, though each memory is half of it.
        assert!(
            !limiter
                .memory_growing(8 * mib, 8 * mib + 65536, None)
                .unwrap()
        );
        assert_eq!(limiter.refused, Some(16 * mib + 65536));
        assert_eq!(limiter.used, 16 * mib);
    }
}
