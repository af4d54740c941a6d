//! Processing one event: every handler of its route runs in a fresh instance of the plugin's
//! active version, and what each returns becomes outbox rows (or a failed run, which becomes a
//! dead letter).

use super::outbox_rows::outbox_rows;
use super::routes::{Forward, RouteHandler, Routes};
use crate::metrics::{EventLabels, Metrics, PluginLabels};
use crate::registry::Registry;
use crate::sandbox::Output;
use crate::sandbox::event::{Action, Delivery, Emission, Event};
use crate::store::{PendingEvent, Processed, Run, RunOutcome, RunRecord, now_ms};
use crate::throttle::Throttle;
use std::sync::LazyLock;
use std::time::Instant;

/// Plugin failures' log lines, per plugin.
static FAILURES: LazyLock<Throttle> = LazyLock::new(Throttle::default);

/// Runs every handler of the event's route (but those that already ran on it) and turns the
/// results into outbox rows. `None` when a plugin could not get an instance because the sandbox
/// is busy: the event stays pending and runs again later.
///
/// Blocks while plugins run: call it on a thread that may block.
pub(super) fn process(
    pending: &PendingEvent,
    routes: &Routes,
    registry: &Registry,
    metrics: &Metrics,
) -> Option<Processed> {
    let stored = &pending.stored;
    let event = &stored.event;
    let _span =
        tracing::debug_span!("process", event_id = %event.id, route = %stored.route).entered();
    let handlers = routes.handlers(&stored.route);
    let mut runs = Vec::with_capacity(handlers.len().max(1));
    if handlers.is_empty() {
        tracing::warn!("no route for the event any more; it is recorded as failed");
        runs.push(failed_run(
            RunOutcome::NoRoute,
            format!("the route `{}` is no longer configured", stored.route),
        ));
    }
    for (i, handler) in handlers.iter().enumerate() {
        if pending.done_handlers.contains(&i) {
            continue;
        }
        runs.push(run_handler(event, i, handler, routes, registry, metrics)?);
    }
    let labels = EventLabels::new(&stored.route, &event.event_type);
    if runs.iter().all(|r| r.run.error.is_none()) {
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

/// Runs one handler on the event: the plugin-run stage. `None` when the sandbox is busy.
fn run_handler(
    event: &Event,
    index: usize,
    handler: &RouteHandler,
    routes: &Routes,
    registry: &Registry,
    metrics: &Metrics,
) -> Option<RunRecord> {
    // The version active now (or the plugin's canary, for its share of keys): this run
    // finishes on it, whatever is swapped in meanwhile.
    let Some(active) = registry.get(&handler.handler.name) else {
        tracing::error!(plugin = %handler.handler.name, "no version of the plugin is loaded");
        return None;
    };
    let (plugin, on_canary) =
        registry
            .canaries()
            .pick(&handler.handler.name, || canary_key(event, handler), active);
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
        .get_or_create(&PluginLabels::new(&plugin))
        .observe(elapsed.as_secs_f64());
    let outcome = rows_of(event, index, handler, result, routes);
    // A shadow is compared with the active version only, never with a canary.
    if !on_canary {
        registry
            .shadows()
            .offer(event, index, handler, &outcome, &plugin, elapsed);
    }
    registry
        .canaries()
        .observe(plugin.name(), plugin.hash(), outcome.is_err(), elapsed);
    metrics
        .recent
        .plugin_run(ran_at, plugin.name(), outcome.is_err(), elapsed);
    let run = |outcome: RunOutcome, error: Option<String>| Run {
        handler: index,
        plugin: plugin.name().to_owned(),
        plugin_hash: plugin.hash().to_owned(),
        outcome,
        error,
        duration_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        ran_at,
        replayed_at: None,
    };
    Some(match outcome {
        Ok(actions) => {
            tracing::debug!(actions = actions.len(), "plugin ran");
            RunRecord {
                run: run(RunOutcome::Ok, None),
                actions,
            }
        }
        Err((code, message)) => {
            // A plugin failing every event is logged once a second, with the count left out.
            if let Some(left_out) = FAILURES.check(plugin.name(), Instant::now()) {
                tracing::warn!(error = %message, code = %code, left_out, "plugin failed the event");
            }
            RunRecord {
                run: run(RunOutcome::Failed(code), Some(message)),
                actions: Vec::new(),
            }
        }
    })
}

/// What decides an event's version under a canary: its entity key (the event's, else the one
/// the route's conflict pointer finds in the payload), else its id.
fn canary_key(event: &Event, handler: &RouteHandler) -> String {
    event
        .key
        .clone()
        .or_else(|| handler.conflict.extract(&event.payload).key)
        .unwrap_or_else(|| event.id.clone())
}

/// A run that never reached a plugin, recorded against the first handler with `error`.
fn failed_run(outcome: RunOutcome, error: String) -> RunRecord {
    RunRecord {
        run: Run {
            handler: 0,
            plugin: String::new(),
            plugin_hash: String::new(),
            outcome,
            error: Some(error),
            duration_us: 0,
            ran_at: now_ms(),
            replayed_at: None,
        },
        actions: Vec::new(),
    }
}

/// The record of an event the engine could not process (a panic in the engine, or a result
/// the store refused again and again): one failed run, so the event ends as a dead letter
/// instead of blocking the events after it. Replaying it runs every handler again, since none
/// of their results was kept.
pub(super) fn failed_processing(pending: &PendingEvent, error: String) -> Processed {
    let run = failed_run(RunOutcome::EngineError, error);
    Processed {
        event_id: pending.stored.event.id.clone(),
        event_seq: pending.stored.seq,
        processed_at: run.run.ran_at,
        runs: vec![run],
        generation: pending.generation,
    }
}

/// What a run of handler `index` on `event` becomes: its outbox rows, or the code and message
/// of its failure (the plugin's, or its output's against the rules).
pub(super) fn rows_of(
    event: &Event,
    index: usize,
    handler: &RouteHandler,
    result: Result<Output, crate::sandbox::RunError>,
    routes: &Routes,
) -> Result<Vec<crate::store::OutboxAction>, (String, String)> {
    result
        .map_err(|e| (e.code().to_owned(), e.to_string()))
        .and_then(|output| actions(event, handler, output, routes))
        .and_then(|actions| outbox_rows(event, index, handler, actions, routes))
}

/// A run's actions: a handler's own, or a transformer's payload sent where its route says.
/// Deliveries must name a configured destination and may not set its configured headers.
fn actions(
    event: &Event,
    handler: &RouteHandler,
    output: Output,
    routes: &Routes,
) -> Result<Vec<Action>, (String, String)> {
    let malformed = |message: String| ("malformed-output".to_owned(), message);
    let actions = match (output, &handler.forward) {
        (Output::Actions(actions), _) => actions,
        (Output::Payload(body), Forward::Deliver(destination)) => {
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
        (Output::Payload(payload), Forward::Emit(event_type)) => {
            vec![Action::Emit(Emission {
                event_type: event_type.clone(),
                payload,
                content_type: Some(event.content_type.clone()),
                key: None,
                version: None,
                timestamp: None,
            })]
        }
        (Output::Payload(_), Forward::Actions) => {
            return Err(malformed(
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
            return Err(malformed(format!(
                "the plugin delivers to `{}`, which is not a configured destination (configured: {})",
                d.destination,
                known.join(", ")
            )));
        };
        for header in &d.headers {
            hms_sync_rules::check_destination_header(&header.name, &destination.headers).map_err(
                |reason| {
                    malformed(format!(
                        "the plugin returned a malformed result: action {i}: {reason}"
                    ))
                },
            )?;
        }
    }
    Ok(actions)
}
