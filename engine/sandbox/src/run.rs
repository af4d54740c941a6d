//! Running one call: a fresh store and instance, its deadline and limits, and every failure
//! turned into a [`RunError`] for that call alone.

use super::bindings::{self, wit, wit_resolve};
use super::host::{Caller, GuestStreams, RunState, deadline_ticks, new_store};
use super::keep::Kept;
use super::output::{Raw, checked_output};
use super::plugin::{Inner, Pre};
use super::{GuestErrorKind, Limits, Plugin, PluginSetup, RunError};
use crate::event::Event;
use wasmtime::{Store, Trap};

/// What a plugin returned for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A transformer's payload.
    Payload(Vec<u8>),
    /// A handler's actions, checked.
    Actions(Vec<crate::event::Action>),
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

/// Where a wasmtime error came from.
#[derive(Clone, Copy)]
pub(crate) enum Stage {
    Instantiate,
    Call,
}

/// A wasmtime failure, and where it happened.
pub(crate) type Failure = (Stage, wasmtime::Error);

impl Plugin {
    /// Runs the plugin on one event in a fresh instance, under `setup` (the memory limit is
    /// capped at the sandbox's [`max_memory`](super::SandboxOptions::max_memory)), or on a kept
    /// instance when the setup's [`Isolation`](super::Isolation) allows reuse.
    ///
    /// Blocks the calling thread for at most about `setup.limits.timeout` plus one epoch tick;
    /// call it from a thread that may block.
    pub fn run(&self, event: &Event, setup: &PluginSetup) -> Result<Output, RunError> {
        if let Pre::Resolver(_) = &self.inner.pre {
            return Err(self.wrong_world("run on events"));
        }
        let input = to_wit_event(event);
        if setup.isolation.reuses() {
            return self.run_kept(&event.id, setup, &input);
        }
        let raw = self.invoke(&event.id, setup, |store, pre| {
            let instance = EventInstance::new(pre, store)
                .expect("checked above: not a resolver")
                .map_err(instantiating)?;
            instance.call(store, &input).map_err(calling)
        })?;
        checked_output(raw, &setup.limits)
    }

    /// Runs one event on an idle kept instance, or a new one; keeps it for later events only
    /// when the event succeeded ([`keep`](super::keep) says what else discards it).
    fn run_kept(
        &self,
        event_id: &str,
        setup: &PluginSetup,
        input: &wit::Event,
    ) -> Result<Output, RunError> {
        let inner: &Inner = &self.inner;
        let caller = Caller {
            plugin: &inner.name,
            version: &inner.version,
            event_id,
        };
        let mut kept = match inner.idle.take(setup) {
            Some(kept) => kept,
            None => {
                let (mut store, streams) = new_store(&inner.shared, &caller, setup);
                match EventInstance::new(&inner.pre, &mut store).expect("checked by run") {
                    Ok(instance) => Kept::new(store, streams, instance, setup),
                    Err(error) => {
                        return conclude(
                            store,
                            &streams,
                            &caller,
                            Err(instantiating(error)),
                            setup,
                        );
                    }
                }
            }
        };
        kept.store.data_mut().begin(event_id);
        kept.store
            .set_epoch_deadline(deadline_ticks(&inner.shared, &setup.limits));
        let result = kept.instance.call(&mut kept.store, input).map_err(calling);
        let ending = Ending::take(&mut kept.store);
        let stderr = kept.streams.flush(&caller);
        let output = finish(result, &ending, &stderr, &setup.limits)
            .and_then(|raw| checked_output(raw, &setup.limits));
        if output.is_ok() {
            inner.idle.give_back(kept);
        }
        output
    }

    /// Runs a resolver plugin on two versions of an entity, in a fresh instance, under
    /// `setup`. Blocks like [`Plugin::run`].
    pub fn resolve(
        &self,
        current: &Entity,
        incoming: &Entity,
        setup: &PluginSetup,
    ) -> Result<Resolution, RunError> {
        let Pre::Resolver(_) = &self.inner.pre else {
            return Err(self.wrong_world("resolve conflicts"));
        };
        let (current, incoming) = (to_wit_entity(current), to_wit_entity(incoming));
        let resolution = self.invoke(&incoming.event_id, setup, |store, pre| {
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
                hms_sync_rules::check_size(payload.len(), setup.limits.output)?;
                Resolution::Merged(payload)
            }
        })
    }

    pub(crate) fn wrong_world(&self, what: &str) -> RunError {
        RunError::WrongWorld(format!(
            "`{}` implements the {} world, which cannot {what}",
            self.inner.name, self.inner.world
        ))
    }

    /// Makes a fresh store for one call, runs `call` in it, writes the plugin's output to
    /// `tracing`, and turns every failure into a [`RunError`].
    pub(crate) fn invoke<T>(
        &self,
        event_id: &str,
        setup: &PluginSetup,
        call: impl FnOnce(&mut Store<RunState>, &Pre) -> Result<Result<T, wit::Error>, Failure>,
    ) -> Result<T, RunError> {
        let inner: &Inner = &self.inner;
        let caller = Caller {
            plugin: &inner.name,
            version: &inner.version,
            event_id,
        };
        let (mut store, output) = new_store(&inner.shared, &caller, setup);
        let result = call(&mut store, &inner.pre);
        conclude(store, &output, &caller, result, setup)
    }
}

/// Ends a store used for one call: reads what it says of the call, drops it (its instance goes
/// back to the pool), writes what the plugin printed, and turns the result into one for the
/// caller.
fn conclude<T>(
    mut store: Store<RunState>,
    streams: &GuestStreams,
    caller: &Caller<'_>,
    result: Result<Result<T, wit::Error>, Failure>,
    setup: &PluginSetup,
) -> Result<T, RunError> {
    let ending = Ending::take(&mut store);
    drop(store);
    let stderr = streams.flush(caller);
    finish(result, &ending, &stderr, &setup.limits)
}

/// What a store says about a call that just ended, read before the store is dropped or kept.
struct Ending {
    /// The memory the instance asked for when the limiter refused it.
    refused: Option<usize>,
    /// The memory limit it ran under.
    memory: usize,
    /// Its last error log line.
    last_error: Option<String>,
}

impl Ending {
    fn take(store: &mut Store<RunState>) -> Ending {
        let state = store.data_mut();
        Ending {
            refused: state.limiter.refused,
            memory: state.limiter.memory,
            last_error: state.last_error.take(),
        }
    }
}

/// A call's result, with every failure turned into a [`RunError`].
fn finish<T>(
    result: Result<Result<T, wit::Error>, Failure>,
    ending: &Ending,
    stderr: &str,
    limits: &Limits,
) -> Result<T, RunError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(guest_error(error)),
        Err((stage, error)) => Err(classify(
            stage,
            &error,
            ending.refused,
            ending.memory,
            limits,
            &Said {
                stderr,
                last_error: ending.last_error.as_deref(),
            },
        )),
    }
}

/// An instance of a plugin that runs on events: a transformer or a handler.
pub(crate) enum EventInstance {
    Transformer(bindings::transformer::Transformer),
    Handler(bindings::handler::Handler),
}

impl EventInstance {
    /// Instantiates `pre` in `store`; `None` for a resolver, which does not run on events.
    pub(crate) fn new(
        pre: &Pre,
        store: &mut Store<RunState>,
    ) -> Option<wasmtime::Result<EventInstance>> {
        Some(match pre {
            Pre::Transformer(pre) => pre.instantiate(store).map(EventInstance::Transformer),
            Pre::Handler(pre) => pre.instantiate(store).map(EventInstance::Handler),
            Pre::Resolver(_) => return None,
        })
    }

    /// Calls the instance's export on one event.
    pub(crate) fn call(
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

pub(crate) fn instantiating(e: wasmtime::Error) -> Failure {
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

pub(crate) fn to_wit_event(event: &Event) -> wit::Event {
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

pub(crate) fn guest_error(error: wit::Error) -> RunError {
    let kind = match error.kind {
        wit::ErrorKind::InvalidInput => GuestErrorKind::InvalidInput,
        wit::ErrorKind::Rejected => GuestErrorKind::Rejected,
        wit::ErrorKind::Internal => GuestErrorKind::Internal,
    };
    RunError::Plugin {
        kind,
        message: hms_sync_rules::truncate_log_line(error.message),
    }
}

fn classify(
    stage: Stage,
    error: &wasmtime::Error,
    refused: Option<usize>,
    memory: usize,
    limits: &Limits,
    said: &Said<'_>,
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
            reason: said.explain(trap.to_string()),
        },
        None => match stage {
            Stage::Instantiate => RunError::Instantiate {
                reason: format!("{error:#}"),
                capacity: error
                    .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some(),
            },
            Stage::Call => RunError::Trap {
                reason: said.explain(format!("{error:#}")),
            },
        },
    }
}

/// What a plugin said before it failed: where a Rust panic message goes.
struct Said<'a> {
    /// Everything it wrote to stderr (a `wasm32-wasip2` build's panics).
    stderr: &'a str,
    /// Its last error log line (a `wasm32-unknown-unknown` build's panics, through the SDK).
    last_error: Option<&'a str>,
}

impl Said<'_> {
    /// `reason`, followed by the tail of stderr, or else the last error log line.
    fn explain(&self, reason: String) -> String {
        const TAIL: usize = 1024;
        let tail = |text: &str| {
            let start = text.len().saturating_sub(TAIL);
            let start = (start..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            text[start..].to_owned()
        };
        let stderr = self.stderr.trim();
        if !stderr.is_empty() {
            format!("{reason}; the plugin's stderr ends with: {}", tail(stderr))
        } else if let Some(line) = self.last_error.map(str::trim).filter(|l| !l.is_empty()) {
            format!("{reason}; the plugin's last error log line: {}", tail(line))
        } else {
            reason
        }
    }
}
