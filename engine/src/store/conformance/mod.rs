//! The suite every backend must pass, one group of cases per seam. Each case takes a fresh,
//! empty backend from `open`; [`sqlite`](super::sqlite) runs the whole suite against SQLite on
//! disk, and a second backend gets the same suite by calling [`run_all`] with its own `open`.
//! The records the cases build are here; the cases are in `queue` (intake and work queue),
//! `outbox`, and `records` (plugin store, records, retention).

mod outbox;
mod queue;
mod records;

use super::*;
use crate::config::Strategy;
use crate::sandbox::event::{Event, Header};
use outbox::*;
use queue::*;
use records::*;

/// Every case, each on a fresh backend.
pub(super) async fn run_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Backend>,
{
    intake_deduplicates_per_route_and_answers_the_first_id(&open().await).await;
    work_queue_hands_out_events_in_acceptance_order_once(&open().await).await;
    work_queue_reads_each_routes_events_apart(&open().await).await;
    work_queue_keeps_a_replay_that_lands_while_the_event_runs_again(&open().await).await;
    work_queue_answers_the_rows_it_queued(&open().await).await;
    outbox_lists_pending_rows_in_event_order_page_by_page(&open().await).await;
    outbox_puts_every_emitted_event_type_in_the_cores_lane(&open().await).await;
    outbox_keeps_the_retry_schedule_and_dead_letters_once(&open().await).await;
    outbox_entity_state_only_moves_forward(&open().await).await;
    plugin_store_keeps_versions_and_their_activations(&open().await).await;
    records_replay_a_dead_letter_once(&open().await).await;
    records_find_events_and_count_each_lanes_backlog(&open().await).await;
    retention_removes_only_finished_work_and_forgets_old_dedupe_keys(&open().await).await;
}

/// An event of type `tax.rate.updated` with the entity key `key`.
pub(crate) fn new_event(id: &str, key: Option<&str>, dedupe: Option<&str>) -> NewEvent {
    NewEvent {
        event: Event {
            id: id.to_owned(),
            event_type: "tax.rate.updated".into(),
            origin: "hms".into(),
            key: key.map(str::to_owned),
            version: Some(7),
            timestamp: 1_700_000_000_000,
            content_type: "application/json".into(),
            payload: br#"{"rate": 1}"#.to_vec(),
            headers: vec![Header::new("x-agency", "irs")],
            hops: 2,
            path: vec!["irs".into(), "hms".into()],
        },
        route: Route::Bus("tax.rate.updated".into()),
        dedupe_key: dedupe.map(str::to_owned),
        accepted_at: 1,
    }
}

/// A delivery to `state-api` of the entity `key` at `version`.
pub(super) fn delivery(
    event: &str,
    key: Option<&str>,
    version: Option<u64>,
    conflict: Strategy,
) -> OutboxAction {
    OutboxAction {
        kind: OutboxKind::Deliver,
        target: "state-api".into(),
        reason: None,
        idempotency_key: format!("{event}.0.0"),
        origin: "hms".into(),
        content_type: "application/json".into(),
        headers: vec![Header::new("x-run", "1")],
        body: format!("{{\"version\": {version:?}}}").into_bytes(),
        key: key.map(str::to_owned),
        version,
        timestamp: 1_700_000_000_000 + i64::try_from(version.unwrap_or(0)).unwrap(),
        hops: 3,
        path: vec!["irs".into(), "hms".into()],
        conflict,
        resolver: None,
    }
}

fn run(outcome: RunOutcome, error: Option<&str>) -> Run {
    Run {
        handler: 0,
        plugin: "tax-rate-outbound".into(),
        plugin_hash: "0".repeat(64),
        outcome,
        error: error.map(str::to_owned),
        duration_us: 10,
        ran_at: 2,
        replayed_at: None,
    }
}

/// The record of `pending` processed by one handler that made `actions`.
pub(super) fn processed(pending: &PendingEvent, actions: Vec<OutboxAction>) -> Processed {
    Processed {
        event_id: pending.stored.event.id.clone(),
        event_seq: pending.stored.seq,
        runs: vec![RunRecord {
            run: run(RunOutcome::Ok, None),
            actions,
        }],
        processed_at: 3,
        generation: pending.generation,
    }
}

/// Accepts the events, processes each with `actions_of(event id)`, and returns them in order.
pub(super) async fn accept_and_process(
    backend: &Backend,
    events: &[(&str, Option<&str>)],
    actions_of: impl Fn(&str) -> Vec<OutboxAction>,
) {
    for (id, key) in events {
        backend
            .intake
            .accept(new_event(id, *key, None))
            .await
            .unwrap();
    }
    for pending in backend.queue.pending(0, 100).await.unwrap() {
        let actions = actions_of(&pending.stored.event.id);
        backend
            .queue
            .complete(processed(&pending, actions))
            .await
            .unwrap();
    }
}

pub(super) async fn pending_rows(backend: &Backend) -> Vec<OutboxRow> {
    backend.outbox.load("state-api", None, 100).await.unwrap()
}

pub(super) fn attempt(row: &OutboxRow, next: Next, status: u16) -> AttemptRecord {
    AttemptRecord {
        outbox_id: row.id,
        attempt: Attempt {
            number: row.attempts + 1,
            started_at: 10,
            duration_ms: 1,
            status: Some(status),
            error: (next != Next::Delivered).then(|| format!("HTTP {status}")),
            outcome: next.outcome(),
        },
        next,
        holds: (next == Next::Delivered).then(|| row.holds(None)).flatten(),
    }
}
