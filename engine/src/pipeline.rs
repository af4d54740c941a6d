//! The pipeline: every accepted event runs through the handlers of its route, each in a fresh
//! sandboxed instance, and what they return becomes outbox rows, committed in the same
//! transaction that marks the event processed.
//!
//! The processor reads pending events in acceptance order. After a crash, events that were
//! accepted but not processed are still pending and run on the next start; an event whose
//! result was committed is never run again.

use crate::config::{Config, Problem};
use crate::conflict::Conflict;
use crate::metrics::{EventLabels, Metrics, PluginLabels, source_of};
use crate::registry::Registry;
use crate::sandbox::event::{Action, Delivery, Emission, Event, HMS_ORIGIN};
use crate::sandbox::{Output, Plugin, PluginSetup, Sandbox, World};
use crate::store::{OutboxAction, OutboxKind, PendingEvent, Processed, RunRecord, Store, now_ms};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// How many pending events the processor reads at a time.
const BATCH: usize = 256;

/// Where a transformer's result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Deliver it to this destination (an HMS event route).
    Deliver(String),
    /// Emit it as an HMS event of this type (a webhook route).
    Emit(String),
    /// The plugin is a handler: its actions say.
    Actions,
}

/// A plugin, by name, with the setup it runs under; its active version comes from the
/// [`Registry`] each time it runs.
#[derive(Debug, Clone)]
pub struct Configured {
    /// The plugin's name.
    pub name: String,
    /// Its settings and limits.
    pub setup: PluginSetup,
}

impl Configured {
    fn new(config: &Config, name: &str) -> Configured {
        Configured {
            name: name.to_owned(),
            setup: config.plugin_setup(name),
        }
    }
}

/// One handler of a route: a plugin, its settings, where a transformer's result goes, and how
/// conflicts are settled for its actions.
#[derive(Debug, Clone)]
pub struct RouteHandler {
    /// The plugin and its settings.
    pub handler: Configured,
    /// Where its result goes.
    pub target: Target,
    /// The route's conflict settings.
    pub conflict: Conflict,
}

/// The route key of events from the HMS bus of a type.
pub fn bus_route(event_type: &str) -> String {
    format!("bus:{event_type}")
}

/// The route key of events from a webhook path.
pub fn webhook_route(path: &str) -> String {
    format!("webhook:{path}")
}

/// What a destination is to the pipeline.
#[derive(Debug, Clone)]
struct DestinationInfo {
    /// The media type of bodies that do not set one.
    content_type: String,
    /// The external system it belongs to.
    system: String,
    /// The headers its configuration sets, which a plugin may not set.
    headers: Vec<String>,
}

/// Every route's handlers, the resolvers, and what the pipeline needs to know about
/// destinations and cycles.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    handlers: HashMap<String, Vec<RouteHandler>>,
    destinations: BTreeMap<String, DestinationInfo>,
    resolvers: HashMap<String, Configured>,
    max_hops: u32,
}

impl Routes {
    /// The handlers of a route, in configuration order.
    pub fn handlers(&self, route: &str) -> &[RouteHandler] {
        self.handlers.get(route).map_or(&[], Vec::as_slice)
    }

    /// Whether events of this type from the HMS bus have a route.
    pub fn has_bus_route(&self, event_type: &str) -> bool {
        self.handlers.contains_key(&bus_route(event_type))
    }

    /// The resolver plugin called `name`, with its settings.
    pub fn resolver(&self, name: &str) -> Option<&Configured> {
        self.resolvers.get(name)
    }

    /// Builds the routes of a checked configuration from its loaded plugins. A transformer must
    /// say where its result goes and a handler must not; a resolver only settles conflicts.
    pub fn build(
        config: &Config,
        plugins: &BTreeMap<String, Plugin>,
    ) -> Result<Routes, Vec<Problem>> {
        let mut routes = Routes {
            handlers: HashMap::new(),
            destinations: config
                .destinations
                .iter()
                .map(|(name, d)| {
                    let info = DestinationInfo {
                        content_type: d.content_type.clone(),
                        system: d.system.clone().unwrap_or_else(|| name.clone()),
                        headers: d.headers.keys().cloned().collect(),
                    };
                    (name.clone(), info)
                })
                .collect(),
            resolvers: HashMap::new(),
            max_hops: config.max_hops,
        };
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem { key, message });
        let mut built: Vec<(String, RouteHandler)> = Vec::new();
        let routes_in_config = config
            .hms_events
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("hmsEvents[{i}]"),
                    bus_route(&r.event),
                    &r.handler,
                    r.destination.clone().map(Target::Deliver),
                    "destination",
                    &r.conflict,
                )
            })
            .chain(config.external_webhooks.iter().enumerate().map(|(i, r)| {
                (
                    format!("externalWebhooks[{i}]"),
                    webhook_route(&r.path),
                    &r.handler,
                    r.emit.clone().map(Target::Emit),
                    "emit",
                    &r.conflict,
                )
            }));
        for (key, route, name, transformer_target, needs, conflict) in routes_in_config {
            if let Some(resolver) = &conflict.resolver
                && let Some(plugin) = plugins.get(resolver)
            {
                if plugin.world() == World::Resolver {
                    routes
                        .resolvers
                        .insert(resolver.clone(), Configured::new(config, resolver));
                } else {
                    problem(
                        format!("{key}.conflict.resolver"),
                        format!(
                            "`{resolver}` is a {} plugin, not a resolver",
                            plugin.world()
                        ),
                    );
                }
            }
            let Some(plugin) = plugins.get(name.as_str()) else {
                continue;
            };
            let target = match (plugin.world(), transformer_target) {
                (World::Transformer, Some(target)) => target,
                (World::Handler, None) => Target::Actions,
                (World::Transformer, None) => {
                    problem(
                        key,
                        format!(
                            "`{name}` is a transformer, so the route must set `{needs}` to say where its result goes"
                        ),
                    );
                    continue;
                }
                (World::Resolver, _) => {
                    problem(
                        key,
                        format!(
                            "`{name}` is a resolver: it settles conflicts (`conflict.resolver`) and cannot handle events"
                        ),
                    );
                    continue;
                }
                (World::Handler, Some(_)) => {
                    problem(
                        key,
                        format!(
                            "`{name}` is a handler and chooses where its actions go itself; remove `{needs}`"
                        ),
                    );
                    continue;
                }
            };
            built.push((
                route,
                RouteHandler {
                    handler: Configured::new(config, name),
                    target,
                    conflict: Conflict::new(conflict),
                },
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (route, h) in built {
            routes.handlers.entry(route).or_default().push(h);
        }
        Ok(routes)
    }
}

/// Loads every configured plugin into the sandbox. Each failure is a problem naming its key.
pub fn load_plugins(
    config: &Config,
    sandbox: &Sandbox,
) -> Result<BTreeMap<String, Plugin>, Vec<Problem>> {
    let mut plugins = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, settings) in &config.plugins {
        let key = format!("plugins.{name}.path");
        let bytes = match std::fs::read(&settings.path.0) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(Problem {
                    key,
                    message: format!("cannot read {}: {e}", settings.path.0.display()),
                });
                continue;
            }
        };
        match sandbox.load(name, &bytes) {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %name,
                    version = %plugin.version_tag(),
                    world = %plugin.world(),
                    "plugin loaded"
                );
                plugins.insert(name.clone(), plugin);
            }
            Err(e) => problems.push(Problem {
                key,
                message: format!("{} cannot be loaded: {e}", settings.path.0.display()),
            }),
        }
    }
    if problems.is_empty() {
        Ok(plugins)
    } else {
        Err(problems)
    }
}

/// Runs every handler of the event's route (but those that already ran on it) and turns the
/// results into outbox rows. `None` when a plugin could not get an instance because the sandbox
/// is busy: the event stays pending and runs again later.
///
/// Blocks while plugins run: call it on a thread that may block.
pub fn process(
    pending: &PendingEvent,
    routes: &Routes,
    registry: &Registry,
    metrics: &Metrics,
) -> Option<Processed> {
    let stored = &pending.stored;
    let event = &stored.event;
    let handlers = routes.handlers(&stored.route);
    let mut runs = Vec::with_capacity(handlers.len().max(1));
    if handlers.is_empty() {
        tracing::warn!(event_id = %event.id, route = %stored.route, "no route for the event any more; it is recorded as failed");
        runs.push(RunRecord {
            handler: 0,
            plugin: String::new(),
            plugin_hash: String::new(),
            outcome: "no-route".into(),
            error: Some(format!(
                "the route `{}` is no longer configured",
                stored.route
            )),
            duration_us: 0,
            ran_at: now_ms(),
            actions: Vec::new(),
        });
    }
    for (i, handler) in handlers.iter().enumerate() {
        if pending.done_handlers.contains(&i) {
            continue;
        }
        // The version active now: this run finishes on it, whatever is swapped in meanwhile.
        let Some(plugin) = registry.get(&handler.handler.name) else {
            tracing::error!(plugin = %handler.handler.name, "no version of the plugin is loaded");
            return None;
        };
        let plugin = &plugin;
        let _span = tracing::info_span!(
            "run",
            event_id = %event.id,
            plugin = %plugin.name(),
            version = %plugin.version_tag()
        )
        .entered();
        let ran_at = now_ms();
        let started = Instant::now();
        let result = plugin.run(event, &handler.handler.setup);
        if let Err(e) = &result
            && e.is_capacity()
        {
            tracing::warn!(error = %e, "the sandbox is busy; the event will run again");
            return None;
        }
        let elapsed = started.elapsed();
        metrics
            .plugin_run_seconds
            .get_or_create(&PluginLabels {
                plugin: plugin.name().to_owned(),
                version: plugin.hash()[..12].to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        let duration_us = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
        let outcome = result
            .map_err(|e| (e.code().to_owned(), e.to_string()))
            .and_then(|output| actions(event, handler, output, routes))
            .map(|actions| outbox_rows(event, i, handler, actions, routes));
        let record =
            |outcome: String, error: Option<String>, actions: Vec<OutboxAction>| RunRecord {
                handler: i,
                plugin: plugin.name().to_owned(),
                plugin_hash: plugin.hash().to_owned(),
                outcome,
                error,
                duration_us,
                ran_at,
                actions,
            };
        runs.push(match outcome {
            Ok(rows) => {
                tracing::debug!(actions = rows.len(), "plugin ran");
                record("ok".into(), None, rows)
            }
            Err((code, message)) => {
                tracing::warn!(error = %message, code = %code, "plugin failed the event");
                record(code, Some(message), Vec::new())
            }
        });
    }
    let labels = EventLabels {
        source: source_of(&stored.route).to_owned(),
        event_type: event.event_type.clone(),
    };
    if runs.iter().all(|r| r.error.is_none()) {
        metrics.events_processed.get_or_create(&labels).inc();
    } else {
        metrics.events_failed.get_or_create(&labels).inc();
    }
    Some(Processed {
        event_id: event.id.clone(),
        event_seq: stored.seq,
        runs,
        processed_at: now_ms(),
        generation: pending.generation,
    })
}

/// The record of an event the engine could not process (a panic in the engine, or a result
/// the store refused again and again): one failed run, so the event ends as a dead letter
/// instead of blocking the events after it.
fn failed_processing(pending: &PendingEvent, error: String) -> Processed {
    let now = now_ms();
    Processed {
        event_id: pending.stored.event.id.clone(),
        event_seq: pending.stored.seq,
        // Recorded against the first handler: replaying this dead letter runs every handler
        // again, since none of their results was kept.
        runs: vec![RunRecord {
            handler: 0,
            plugin: String::new(),
            plugin_hash: String::new(),
            outcome: "engine-error".into(),
            error: Some(error),
            duration_us: 0,
            ran_at: now,
            actions: Vec::new(),
        }],
        processed_at: now,
        generation: pending.generation,
    }
}

/// A run's actions: a handler's own, or a transformer's payload sent where its route says.
fn actions(
    event: &Event,
    handler: &RouteHandler,
    output: Output,
    routes: &Routes,
) -> Result<Vec<Action>, (String, String)> {
    let actions = match (output, &handler.target) {
        (Output::Actions(actions), _) => actions,
        (Output::Payload(body), Target::Deliver(destination)) => {
            vec![Action::Deliver(Delivery {
                destination: destination.clone(),
                body,
                content_type: None,
                headers: Vec::new(),
                key: None,
                version: None,
                timestamp: None,
            })]
        }
        (Output::Payload(payload), Target::Emit(event_type)) => {
            vec![Action::Emit(Emission {
                event_type: event_type.clone(),
                payload,
                content_type: Some(event.content_type.clone()),
                key: None,
                version: None,
                timestamp: None,
            })]
        }
        (Output::Payload(_), Target::Actions) => {
            return Err((
                "malformed-output".into(),
                "a transformer's result has no route target".into(),
            ));
        }
    };
    for (i, action) in actions.iter().enumerate() {
        let Action::Deliver(d) = action else {
            continue;
        };
        let Some(destination) = routes.destinations.get(&d.destination) else {
            let known: Vec<&str> = routes.destinations.keys().map(String::as_str).collect();
            return Err((
                "malformed-output".into(),
                format!(
                    "the plugin delivers to `{}`, which is not a configured destination (configured: {})",
                    d.destination,
                    known.join(", ")
                ),
            ));
        };
        for header in &d.headers {
            hms_sync_rules::check_destination_header(&header.name, &destination.headers).map_err(
                |reason| {
                    (
                        "malformed-output".to_owned(),
                        format!("the plugin returned a malformed result: action {i}: {reason}"),
                    )
                },
            )?;
        }
    }
    Ok(actions)
}

/// Outbox rows for a run's actions. Each gets an idempotency key made of the event id, the
/// handler's index and the action's index: the same for every retry, and the same again if the
/// event is processed again after a crash. Each carries its entity key, version and timestamp
/// (the action's, else the route's pointers', else the event's), the route's conflict strategy,
/// and the hop count it will arrive with. An action that would send an update back to the
/// system it came from, or past the hop limit, is recorded as dropped with the reason.
fn outbox_rows(
    event: &Event,
    handler_index: usize,
    handler: &RouteHandler,
    actions: Vec<Action>,
    routes: &Routes,
) -> Vec<OutboxAction> {
    let extracted = handler.conflict.extract(&event.payload);
    let key = |own: Option<String>| {
        own.or_else(|| extracted.key.clone())
            .or_else(|| event.key.clone())
    };
    let version = |own: Option<u64>| own.or(extracted.version).or(event.version);
    let timestamp = |own: Option<i64>| own.or(extracted.timestamp).unwrap_or(event.timestamp);
    let over_hop_limit = (event.hops >= routes.max_hops).then(|| {
        format!(
            "hop limit: the update already crossed {} systems (maxHops is {})",
            event.hops, routes.max_hops
        )
    });
    actions
        .into_iter()
        .enumerate()
        .map(|(j, action)| {
            let mut row = OutboxAction {
                path: event.path.clone(),
                kind: OutboxKind::Drop,
                target: String::new(),
                idempotency_key: format!("{}.{handler_index}.{j}", event.id),
                origin: event.origin.clone(),
                content_type: String::new(),
                headers: Vec::new(),
                body: Vec::new(),
                key: event.key.clone(),
                version: event.version,
                timestamp: event.timestamp,
                hops: event.hops.saturating_add(1),
                conflict: handler.conflict.strategy,
                resolver: handler.conflict.resolver.clone(),
                skip: None,
            };
            match action {
                Action::Deliver(d) => {
                    let destination = &routes.destinations[&d.destination];
                    let system = &destination.system;
                    row.skip = over_hop_limit.clone().or_else(|| {
                        (*system == event.origin || event.path.contains(system)).then(|| {
                            format!(
                                "echo: `{}` belongs to `{system}`, which this update came from \
                                 (origin `{}`, path {})",
                                d.destination,
                                event.origin,
                                event.path.join(" > ")
                            )
                        })
                    });
                    row.kind = OutboxKind::Deliver;
                    row.content_type = d
                        .content_type
                        .unwrap_or_else(|| destination.content_type.clone());
                    row.target = d.destination;
                    row.headers = d.headers;
                    row.body = d.body;
                    row.key = key(d.key);
                    row.version = version(d.version);
                    row.timestamp = timestamp(d.timestamp);
                }
                Action::Emit(e) => {
                    // The same event type back onto the bus it came from is an echo; a bus
                    // event's handler may still emit other types.
                    let came_from_bus = event.path.last().is_some_and(|s| s == HMS_ORIGIN);
                    row.skip = over_hop_limit.clone().or_else(|| {
                        (came_from_bus && e.event_type == event.event_type).then(|| {
                            format!(
                                "echo: `{}` came from the HMS bus; it is not emitted back to it",
                                e.event_type
                            )
                        })
                    });
                    row.kind = OutboxKind::Emit;
                    row.target = e.event_type;
                    row.content_type = e.content_type.unwrap_or_else(|| "application/json".into());
                    row.body = e.payload;
                    row.key = key(e.key);
                    row.version = version(e.version);
                    row.timestamp = timestamp(e.timestamp);
                }
                Action::Drop(reason) => row.target = reason,
            }
            if let Some(reason) = &row.skip {
                tracing::info!(event_id = %event.id, target = %row.target, reason = %reason, "not sent");
            }
            row
        })
        .collect()
}

/// Reads pending events and processes them on `workers` threads until `shutdown`; the batch in
/// hand when it is cancelled is finished and committed first.
pub async fn run_processor(
    store: Store,
    routes: Arc<Routes>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    workers: usize,
    shutdown: CancellationToken,
) {
    let accepted = store.events_accepted();
    let requeued = store.events_requeued();
    let mut cursor = 0;
    // Events whose result the store refused, and how often.
    let mut refused: HashMap<String, u32> = HashMap::new();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        // Replayed events can be older than the cursor: read from the start again.
        if take_permit(&requeued) {
            cursor = 0;
        }
        let batch = match store.pending_events(cursor, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending events; retrying in a second");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        let Some(last) = batch.last() else {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = accepted.notified() => continue,
                () = requeued.notified() => {
                    cursor = 0;
                    continue;
                }
            }
        };
        let last_seq = last.stored.seq;
        let first_seq = batch[0].stored.seq;
        let (results, mut incomplete) =
            process_batch(batch, &routes, &registry, &metrics, workers).await;
        // Queue every result before waiting, so they share one commit.
        let writes: Vec<_> = results
            .into_iter()
            .map(|(pending, result)| {
                let processed = match result {
                    Some(processed)
                        if refused.get(&pending.stored.event.id) < Some(&MAX_REFUSALS) =>
                    {
                        processed
                    }
                    Some(_) => failed_processing(
                        &pending,
                        format!("the store refused this event's result {MAX_REFUSALS} times"),
                    ),
                    None => {
                        incomplete = true;
                        return None;
                    }
                };
                Some((pending, store.complete(processed)))
            })
            .collect();
        for (pending, write) in writes.into_iter().flatten() {
            match write.await {
                Ok(()) => {
                    refused.remove(&pending.stored.event.id);
                }
                Err(e) => {
                    incomplete = true;
                    *refused.entry(pending.stored.event.id.clone()).or_default() += 1;
                    tracing::error!(event_id = %pending.stored.event.id, error = %e, "cannot record a processed event; it will run again");
                }
            }
        }
        if incomplete {
            // Start again from this batch after a pause: committed events are skipped, the
            // rest run again.
            cursor = first_seq - 1;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        } else {
            cursor = last_seq;
        }
    }
}

/// How often the store may refuse an event's result before the event is recorded as failed.
const MAX_REFUSALS: u32 = 3;

/// Takes the permit a `notify_one` left, if there is one, without waiting.
fn take_permit(notify: &tokio::sync::Notify) -> bool {
    let mut notified = std::pin::pin!(notify.notified());
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    std::future::Future::poll(notified.as_mut(), &mut context).is_ready()
}

/// Processes a batch on up to `workers` blocking threads, keeping the batch's order. Each
/// event comes back with its result: `None` when it must run again later (the sandbox was
/// busy). A panic while processing an event fails that event alone. The flag says whether a
/// thread failed outright (its events stay pending).
async fn process_batch(
    batch: Vec<PendingEvent>,
    routes: &Arc<Routes>,
    registry: &Arc<Registry>,
    metrics: &Arc<Metrics>,
    workers: usize,
) -> (Vec<(PendingEvent, Option<Processed>)>, bool) {
    let chunk = batch.len().div_ceil(workers.max(1));
    let mut tasks = Vec::new();
    let mut batch = batch;
    while !batch.is_empty() {
        let rest = batch.split_off(chunk.min(batch.len()));
        let part = std::mem::replace(&mut batch, rest);
        let routes = routes.clone();
        let registry = registry.clone();
        let metrics = metrics.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|pending| {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        process(&pending, &routes, &registry, &metrics)
                    }));
                    let processed = match result {
                        Ok(processed) => processed,
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "no message".into());
                            tracing::error!(event_id = %pending.stored.event.id, panic = %message, "processing the event panicked; it is a dead letter");
                            Some(failed_processing(
                                &pending,
                                format!("the engine panicked processing this event: {message}"),
                            ))
                        }
                    };
                    (pending, processed)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut processed = Vec::new();
    let mut failed = false;
    for task in tasks {
        match task.await {
            Ok(part) => processed.extend(part),
            Err(e) => {
                failed = true;
                tracing::error!(error = %e, "a processing thread failed; its events stay pending");
            }
        }
    }
    (processed, failed)
}
