//! Running one event: a fresh store and instance, limits, host imports, output checks.

use super::bindings::{self, config, log, wit, wit_resolve};
use super::guest_output::GuestOutput;
use super::plugin::{Inner, Pre};
use super::{GuestErrorKind, Limits, Plugin, RunError, Shared};
use crate::event::{self, Action, Delivery, Emission, Event, Header};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// A route's plugin configuration: the string settings a plugin reads through the `config`
/// import. Shared, read-only.
pub type PluginConfig = Arc<BTreeMap<String, String>>;

/// What a plugin returned for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A transformer's payload.
    Payload(Vec<u8>),
    /// A handler's actions, checked.
    Actions(Vec<Action>),
}

/// What the guest returned, before it is checked.
enum Raw {
    Payload(Vec<u8>),
    Actions(Vec<wit::Action>),
    /// The plugin is a resolver: it has no event export.
    NotCallable,
}

/// The longest single log line a plugin may write; longer ones are cut.
const MAX_LOG_LINE: usize = 4096;
/// How many log lines a plugin may write per event; later ones are dropped.
const MAX_LOG_LINES: usize = 256;
/// The longest entity key, destination name or drop reason a plugin may return.
const MAX_NAME_LEN: usize = 1024;
/// Headers the engine sets itself, which a plugin may not set.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "cookie",
    "idempotency-key",
];

/// The state of one store: one event's run.
pub(crate) struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    config: PluginConfig,
    plugin: Arc<str>,
    version: Arc<str>,
    event_id: String,
    log_lines: usize,
}

/// The linker every plugin is instantiated against: WASI 0.2 (with an empty context per store)
/// and the `hms:sync` imports.
pub(super) fn linker(engine: &Engine) -> anyhow::Result<Linker<RunState>> {
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
        let message = truncate(message, MAX_LOG_LINE);
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
        self.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Caps each linear memory and table of one instance, and remembers a refused growth so a
/// trap that follows it is reported as the memory limit, not as a crash.
struct MemoryLimiter {
    memory: usize,
    refused: Option<usize>,
}

/// Elements any one table may hold: far above what compiled Rust needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.refused = Some(desired);
            return Ok(false);
        }
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

/// Where a wasmtime error came from.
#[derive(Clone, Copy)]
enum Stage {
    Instantiate,
    Call,
}

/// One version of an entity, for a resolver: the one a destination holds or the incoming one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The entity key.
    pub key: String,
    /// The entity's version, when known.
    pub version: Option<u64>,
    /// When this version was made, in Unix milliseconds.
    pub timestamp: i64,
    /// The id of the event that carried it.
    pub event_id: String,
    /// The media type of the payload.
    pub content_type: String,
    /// The body as delivered, or as it would be delivered.
    pub payload: Vec<u8>,
}

/// A resolver's decision about an incoming version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Keep the current version: the incoming one is superseded.
    Keep,
    /// Deliver the incoming version as it is.
    Replace,
    /// Deliver this payload instead.
    Merged(Vec<u8>),
}

/// A wasmtime failure, and where it happened.
type Failure = (Stage, wasmtime::Error);

impl Plugin {
    /// Runs the plugin on one event in a fresh instance, under `limits` (the memory limit is
    /// capped at the sandbox's [`max_memory`](super::SandboxConfig::max_memory)), with `config`
    /// as the route's plugin configuration.
    ///
    /// Blocks the calling thread for at most about `limits.timeout` plus one epoch tick; call
    /// it from a thread that may block.
    pub fn run(
        &self,
        event: &Event,
        config: &PluginConfig,
        limits: &Limits,
    ) -> Result<Output, RunError> {
        let input = to_wit_event(event);
        let raw = self.invoke(&event.id, config, limits, |store, pre| {
            let Some(instance) = EventInstance::new(pre, store) else {
                return Ok(Ok(Raw::NotCallable));
            };
            let instance = instance.map_err(instantiating)?;
            instance.call(store, &input).map_err(calling)
        })?;
        if matches!(raw, Raw::NotCallable) {
            return Err(self.wrong_world("run on events"));
        }
        checked_output(raw, limits.output)
    }

    /// Runs a resolver plugin on two versions of an entity, in a fresh instance, under
    /// `limits`. Blocks like [`Plugin::run`].
    pub fn resolve(
        &self,
        current: &Entity,
        incoming: &Entity,
        config: &PluginConfig,
        limits: &Limits,
    ) -> Result<Resolution, RunError> {
        let Pre::Resolver(_) = &self.inner.pre else {
            return Err(self.wrong_world("resolve conflicts"));
        };
        let (current, incoming) = (to_wit_entity(current), to_wit_entity(incoming));
        let resolution = self.invoke(&incoming.event_id, config, limits, |store, pre| {
            let Pre::Resolver(pre) = pre else {
                unreachable!("checked above")
            };
            let instance = pre.instantiate(&mut *store).map_err(instantiating)?;
            instance
                .hms_sync_resolve()
                .call_resolve(store, &current, &incoming)
                .map_err(calling)
        })?;
        Ok(match resolution {
            wit_resolve::Resolution::Keep => Resolution::Keep,
            wit_resolve::Resolution::Replace => Resolution::Replace,
            wit_resolve::Resolution::Merged(payload) => {
                if payload.len() > limits.output {
                    return Err(RunError::OutputTooLarge {
                        size: payload.len(),
                        limit: limits.output,
                    });
                }
                Resolution::Merged(payload)
            }
        })
    }

    fn wrong_world(&self, what: &str) -> RunError {
        RunError::WrongWorld(format!(
            "`{}` implements the {} world, which cannot {what}",
            self.inner.name, self.inner.world
        ))
    }

    /// Makes a fresh store for one call, runs `call` in it, writes the plugin's output to
    /// `tracing`, and turns every failure into a [`RunError`].
    fn invoke<T>(
        &self,
        event_id: &str,
        config: &PluginConfig,
        limits: &Limits,
        call: impl FnOnce(&mut Store<RunState>, &Pre) -> Result<Result<T, wit::Error>, Failure>,
    ) -> Result<T, RunError> {
        let inner: &Inner = &self.inner;
        let (mut store, output) = new_store(
            &inner.shared,
            &inner.name,
            &inner.version,
            event_id,
            config,
            limits,
        );
        let result = call(&mut store, &inner.pre);
        let refused = store.data().limiter.refused;
        let memory = store.data().limiter.memory;
        drop(store);

        let stderr_text = output.flush(&inner.name, &inner.version, event_id);
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(guest_error(error)),
            Err((stage, error)) => Err(classify(
                stage,
                &error,
                refused,
                memory,
                limits,
                &stderr_text,
            )),
        }
    }
}

/// An instance of a plugin that runs on events: a transformer or a handler.
enum EventInstance {
    Transformer(bindings::transformer::Transformer),
    Handler(bindings::handler::Handler),
}

impl EventInstance {
    /// Instantiates `pre` in `store`; `None` for a resolver, which does not run on events.
    fn new(pre: &Pre, store: &mut Store<RunState>) -> Option<wasmtime::Result<EventInstance>> {
        Some(match pre {
            Pre::Transformer(pre) => pre.instantiate(store).map(EventInstance::Transformer),
            Pre::Handler(pre) => pre.instantiate(store).map(EventInstance::Handler),
            Pre::Resolver(_) => return None,
        })
    }

    /// Calls the instance's export on one event.
    fn call(
        &self,
        store: &mut Store<RunState>,
        input: &wit::Event,
    ) -> wasmtime::Result<Result<Raw, wit::Error>> {
        match self {
            EventInstance::Transformer(t) => t
                .hms_sync_transform()
                .call_transform(store, input)
                .map(|r| r.map(Raw::Payload)),
            EventInstance::Handler(h) => h
                .hms_sync_handle()
                .call_handle(store, input)
                .map(|r| r.map(Raw::Actions)),
        }
    }
}

/// One instance kept for many events, for measuring what a fresh instance per event costs
/// against reusing one (the benchmarks). The engine itself never reuses an instance: state left
/// by one event would be seen by the next.
pub struct Reused {
    store: Store<RunState>,
    instance: EventInstance,
    limits: Limits,
    deadline: u64,
}

impl Plugin {
    /// Instantiates the plugin once, to run many events on the same instance (see [`Reused`]).
    pub fn reused(&self, config: &PluginConfig, limits: &Limits) -> Result<Reused, RunError> {
        let inner: &Inner = &self.inner;
        let (mut store, _output) = new_store(
            &inner.shared,
            &inner.name,
            &inner.version,
            "reused",
            config,
            limits,
        );
        let instance = EventInstance::new(&inner.pre, &mut store)
            .ok_or_else(|| self.wrong_world("run on events"))?
            .map_err(|e| RunError::Instantiate {
                reason: format!("{e:#}"),
                capacity: false,
            })?;
        Ok(Reused {
            store,
            instance,
            limits: *limits,
            deadline: deadline_ticks(&inner.shared, limits),
        })
    }

    /// Makes a fresh store and instance as [`Plugin::run`] does and drops them without calling
    /// the plugin, or only the store when `instantiate` is false: the parts of a fresh run that
    /// come before the plugin's own code, for the benchmarks' breakdown.
    pub fn prepare_only(
        &self,
        config: &PluginConfig,
        limits: &Limits,
        instantiate: bool,
    ) -> Result<(), RunError> {
        self.invoke("prepare-only", config, limits, |store, pre| {
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
        checked_output(raw, self.limits.output)
    }
}

fn instantiating(e: wasmtime::Error) -> Failure {
    (Stage::Instantiate, e)
}

fn calling(e: wasmtime::Error) -> Failure {
    (Stage::Call, e)
}

fn to_wit_entity(entity: &Entity) -> wit_resolve::Entity {
    wit_resolve::Entity {
        key: entity.key.clone(),
        version: entity.version,
        timestamp: entity.timestamp,
        event_id: entity.event_id.clone(),
        content_type: entity.content_type.clone(),
        payload: entity.payload.clone(),
    }
}

/// A plugin's stdout and stderr for one store.
pub(super) struct GuestStreams {
    stdout: GuestOutput,
    stderr: GuestOutput,
}

/// A fresh store for one run: an empty WASI context whose stdout and stderr are captured, the
/// memory limiter and the epoch deadline for `limits` (memory capped at the sandbox's maximum).
pub(super) fn new_store(
    shared: &Shared,
    plugin: &Arc<str>,
    version: &Arc<str>,
    event_id: &str,
    config: &PluginConfig,
    limits: &Limits,
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
        .build();
    let mut store = Store::new(
        &shared.engine,
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                memory: limits.memory.min(shared.config.max_memory),
                refused: None,
            },
            config: config.clone(),
            plugin: plugin.clone(),
            version: version.clone(),
            event_id: event_id.to_owned(),
            log_lines: 0,
        },
    );
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(deadline_ticks(shared, limits));
    store.epoch_deadline_trap();
    (store, streams)
}

/// The epoch deadline, in ticks from now, for `limits.timeout`: rounded up, plus one tick
/// since the current tick may be about to end.
fn deadline_ticks(shared: &Shared, limits: &Limits) -> u64 {
    let tick = shared.config.epoch_tick.as_nanos().max(1);
    let ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX);
    ticks.saturating_add(1)
}

fn to_wit_event(event: &Event) -> wit::Event {
    wit::Event {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        origin: event.origin.clone(),
        key: event.key.clone(),
        version: event.version,
        timestamp: event.timestamp,
        content_type: event.content_type.clone(),
        payload: event.payload.clone(),
        headers: event
            .headers
            .iter()
            .map(|h| wit::Header {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect(),
    }
}

fn guest_error(error: wit::Error) -> RunError {
    let kind = match error.kind {
        wit::ErrorKind::InvalidInput => GuestErrorKind::InvalidInput,
        wit::ErrorKind::Rejected => GuestErrorKind::Rejected,
        wit::ErrorKind::Internal => GuestErrorKind::Internal,
    };
    RunError::Plugin {
        kind,
        message: truncate(error.message, MAX_LOG_LINE),
    }
}

fn classify(
    stage: Stage,
    error: &wasmtime::Error,
    refused: Option<usize>,
    memory: usize,
    limits: &Limits,
    stderr: &str,
) -> RunError {
    if let Some(requested) = refused {
        return RunError::MemoryLimit {
            requested,
            limit: memory,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RunError::Timeout {
            limit: limits.timeout,
        },
        Some(trap) => RunError::Trap {
            reason: with_stderr(trap.to_string(), stderr),
        },
        None => match stage {
            Stage::Instantiate => RunError::Instantiate {
                reason: format!("{error:#}"),
                capacity: error
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some(),
            },
            Stage::Call => RunError::Trap {
                reason: with_stderr(format!("{error:#}"), stderr),
            },
        },
    }
}

/// Appends the tail of what the plugin wrote to stderr (where a Rust panic message goes).
fn with_stderr(reason: String, stderr: &str) -> String {
    const TAIL: usize = 1024;
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return reason;
    }
    let start = stderr.len().saturating_sub(TAIL);
    let start = (start..=stderr.len())
        .find(|&i| stderr.is_char_boundary(i))
        .unwrap_or(stderr.len());
    format!(
        "{reason}; the plugin's stderr ends with: {}",
        &stderr[start..]
    )
}

impl GuestStreams {
    /// Writes what the plugin printed to `tracing`, line by line, and returns stderr's text.
    pub(super) fn flush(&self, plugin: &str, version: &str, event_id: &str) -> String {
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

/// Checks the size of what the plugin returned, then converts it, refusing any action the
/// engine could not act on.
fn checked_output(raw: Raw, limit: usize) -> Result<Output, RunError> {
    let size = match &raw {
        Raw::Payload(payload) => payload.len(),
        Raw::Actions(actions) => actions.iter().map(action_size).sum(),
        Raw::NotCallable => 0,
    };
    if size > limit {
        return Err(RunError::OutputTooLarge { size, limit });
    }
    match raw {
        Raw::NotCallable => Err(RunError::Malformed("no output".into())),
        Raw::Payload(payload) => Ok(Output::Payload(payload)),
        Raw::Actions(actions) => actions
            .into_iter()
            .enumerate()
            .map(|(i, action)| {
                check_action(action)
                    .map_err(|reason| RunError::Malformed(format!("action {i}: {reason}")))
            })
            .collect::<Result<_, _>>()
            .map(Output::Actions),
    }
}

fn action_size(action: &wit::Action) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    match action {
        wit::Action::Deliver(d) => {
            d.destination.len()
                + d.body.len()
                + opt(&d.content_type)
                + opt(&d.key)
                + d.headers
                    .iter()
                    .map(|h| h.name.len() + h.value.len())
                    .sum::<usize>()
        }
        wit::Action::Emit(e) => {
            e.event_type.len() + e.payload.len() + opt(&e.content_type) + opt(&e.key)
        }
        wit::Action::Drop(reason) => reason.len(),
    }
}

/// Versions are stored as SQLite integers: at most `i64::MAX`.
fn check_version(version: Option<u64>) -> Result<(), String> {
    match version {
        Some(v) if i64::try_from(v).is_err() => Err(format!(
            "the version {v} is over the largest the engine keeps (2^63 - 1)"
        )),
        _ => Ok(()),
    }
}

fn check_action(action: wit::Action) -> Result<Action, String> {
    Ok(match action {
        wit::Action::Deliver(d) => {
            check_name("destination", &d.destination)?;
            check_version(d.version)?;
            if let Some(key) = &d.key {
                check_name("key", key)?;
            }
            if let Some(content_type) = &d.content_type {
                check_content_type(content_type)?;
            }
            let headers = d
                .headers
                .into_iter()
                .map(check_header)
                .collect::<Result<Vec<_>, _>>()?;
            Action::Deliver(Delivery {
                destination: d.destination,
                body: d.body,
                content_type: d.content_type,
                headers,
                key: d.key,
                version: d.version,
                timestamp: d.timestamp,
            })
        }
        wit::Action::Emit(e) => {
            event::check_event_type(&e.event_type)?;
            check_version(e.version)?;
            if let Some(key) = &e.key {
                check_name("key", key)?;
            }
            if let Some(content_type) = &e.content_type {
                check_content_type(content_type)?;
            }
            Action::Emit(Emission {
                event_type: e.event_type,
                payload: e.payload,
                content_type: e.content_type,
                key: e.key,
                version: e.version,
                timestamp: e.timestamp,
            })
        }
        wit::Action::Drop(reason) => {
            if reason.len() > MAX_NAME_LEN {
                return Err(format!(
                    "the drop reason is {} bytes long; the limit is {MAX_NAME_LEN}",
                    reason.len()
                ));
            }
            Action::Drop(reason)
        }
    })
}

fn check_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!(
            "the {what} is {} bytes long; the limit is {MAX_NAME_LEN}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "the {what} `{}` contains a control character",
            value.escape_debug()
        ));
    }
    Ok(())
}

fn check_content_type(value: &str) -> Result<(), String> {
    let valid = http::HeaderValue::from_str(value).is_ok()
        && value.split(';').next().is_some_and(|essence| {
            essence
                .trim()
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the content type `{}` is not a media type such as `application/json`",
            value.escape_debug()
        ))
    }
}

fn check_header(header: wit::Header) -> Result<Header, String> {
    let name = http::HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
        format!(
            "the header name `{}` is not a valid HTTP header name",
            header.name.escape_debug()
        )
    })?;
    if RESERVED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("webhook-") {
        return Err(format!(
            "the header `{name}` is set by the engine and cannot be set by a plugin"
        ));
    }
    http::HeaderValue::from_str(&header.value).map_err(|_| {
        format!(
            "the value of header `{name}` is not a valid HTTP header value: `{}`",
            header.value.escape_debug()
        )
    })?;
    Ok(Header::new(name.as_str(), header.value))
}

/// Cuts `s` to at most `max` bytes (on a character boundary), saying how much was cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("… ({cut} bytes cut)"));
    s
}
