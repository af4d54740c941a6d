//! The suite every backend must pass, one group of cases per seam. Each case takes a fresh,
//! empty backend from `open`; [`sqlite`](super::sqlite) runs the whole suite against SQLite on
//! disk, and a second backend gets the same suite by calling [`run_all`] with its own `open`.

use super::*;
use crate::config::Strategy;
use crate::sandbox::event::{Event, Header};

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
fn processed(pending: &PendingEvent, actions: Vec<OutboxAction>) -> Processed {
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

async fn intake_deduplicates_per_route_and_answers_the_first_id(backend: &Backend) {
    let first = backend
        .intake
        .accept(new_event("event-1", None, Some("k")))
        .await
        .unwrap();
    let second = backend
        .intake
        .accept(new_event("event-2", None, Some("k")))
        .await
        .unwrap();
    assert_eq!(
        (first.id.as_str(), first.duplicate),
        ("event-1", false),
        "{first:?}"
    );
    assert_eq!(
        (second.id.as_str(), second.duplicate),
        ("event-1", true),
        "{second:?}"
    );
    backend.intake.probe().await.unwrap();
    assert_eq!(backend.records.event_count().await.unwrap(), 1);
}

async fn work_queue_hands_out_events_in_acceptance_order_once(backend: &Backend) {
    for n in 0..5 {
        backend
            .intake
            .accept(new_event(&format!("event-{n}"), None, None))
            .await
            .unwrap();
    }
    let pending = backend.queue.pending(0, 3).await.unwrap();
    let ids: Vec<&str> = pending.iter().map(|p| p.stored.event.id.as_str()).collect();
    assert_eq!(ids, ["event-0", "event-1", "event-2"]);
    assert_eq!(
        pending[0].stored.event,
        new_event("event-0", None, None).event
    );
    let rest = backend
        .queue
        .pending(pending[2].stored.seq, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    // Completing twice keeps the first result.
    let done = processed(&pending[0], Vec::new());
    backend.queue.complete(done.clone()).await.unwrap();
    backend.queue.complete(done).await.unwrap();
    let left = backend.queue.pending(0, 10).await.unwrap();
    assert_eq!(left.len(), 4);
    let history = backend
        .records
        .event_history("event-0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history.runs.len(), 1);
    assert!(history.event.processed_at.is_some());
}

async fn work_queue_keeps_a_replay_that_lands_while_the_event_runs_again(backend: &Backend) {
    backend
        .intake
        .accept(new_event("event-1", None, None))
        .await
        .unwrap();
    let first = backend.queue.pending(0, 10).await.unwrap().remove(0);
    let failed = |handler: usize| RunRecord {
        run: Run {
            handler,
            ..run(RunOutcome::Failed("internal".into()), Some("boom"))
        },
        actions: Vec::new(),
    };
    backend
        .queue
        .complete(Processed {
            runs: vec![failed(0), failed(1)],
            ..processed(&first, Vec::new())
        })
        .await
        .unwrap();
    let dead = backend
        .records
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    let only = |id| DeadLetterFilter {
        ids: vec![id],
        ..DeadLetterFilter::default()
    };
    // Replay handler 0's failure; while it runs again, handler 1's is replayed too.
    backend.records.replay(only(dead[0].id)).await.unwrap();
    let again = backend.queue.pending(0, 10).await.unwrap().remove(0);
    assert_eq!(again.done_handlers, [1]);
    backend.records.replay(only(dead[1].id)).await.unwrap();
    backend
        .queue
        .complete(processed(&again, Vec::new()))
        .await
        .unwrap();
    // The event stays pending, and only handler 1 is left to run.
    let last = backend.queue.pending(0, 10).await.unwrap();
    assert_eq!(last.len(), 1, "the second replay was not swallowed");
    assert_eq!(last[0].done_handlers, [0]);
}

async fn work_queue_answers_the_rows_it_queued(backend: &Backend) {
    backend
        .intake
        .accept(new_event("e1", Some("k"), None))
        .await
        .unwrap();
    let pending = backend.queue.pending(0, 10).await.unwrap().remove(0);
    let mut dropped = delivery("e1", None, None, Strategy::None);
    dropped.reason = Some("echo: not sent".into());
    dropped.idempotency_key = "e1.0.1".into();
    let queued = backend
        .queue
        .complete(processed(
            &pending,
            vec![
                delivery("e1", Some("k"), Some(3), Strategy::Version),
                dropped,
            ],
        ))
        .await
        .unwrap();
    // Only the row to send comes back, as the store holds it.
    assert_eq!(queued.len(), 1);
    assert_eq!(queued, pending_rows(backend).await);
    assert_eq!(queued[0].event_seq, pending.stored.seq);
    assert_eq!(queued[0].action.version, Some(3));
    // A result that comes twice queues nothing more.
    let again = backend
        .queue
        .complete(processed(
            &pending,
            vec![delivery("e1", None, None, Strategy::None)],
        ))
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(pending_rows(backend).await.len(), 1);
}

async fn outbox_lists_pending_rows_in_event_order_page_by_page(backend: &Backend) {
    let events = [
        ("a1", Some("a")),
        ("b1", Some("b")),
        ("a2", Some("a")),
        ("n1", None),
        ("n2", None),
    ];
    accept_and_process(backend, &events, |id| {
        let key = &id[..1];
        vec![delivery(
            id,
            (key != "n").then_some(key),
            None,
            Strategy::None,
        )]
    })
    .await;
    let ids =
        |rows: &[OutboxRow]| -> Vec<String> { rows.iter().map(|r| r.event_id.clone()).collect() };
    assert_eq!(
        ids(&pending_rows(backend).await),
        ["a1", "b1", "a2", "n1", "n2"]
    );
    let first = backend.outbox.load("state-api", None, 2).await.unwrap();
    assert_eq!(ids(&first), ["a1", "b1"]);
    let last = first.last().map(|r| (r.event_seq, r.id));
    let next = backend.outbox.load("state-api", last, 2).await.unwrap();
    assert_eq!(ids(&next), ["a2", "n1"]);
    // Lanes: each destination, and the core for every emitted event type.
    assert_eq!(backend.outbox.lanes().await.unwrap(), ["state-api"]);
    assert!(
        backend
            .outbox
            .load("hms-core", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A delivered row is no longer pending.
    backend
        .outbox
        .record_attempt(attempt(&first[0], Next::Delivered, 200))
        .await
        .unwrap();
    assert_eq!(ids(&pending_rows(backend).await), ["b1", "a2", "n1", "n2"]);
}

async fn outbox_puts_every_emitted_event_type_in_the_cores_lane(backend: &Backend) {
    accept_and_process(backend, &[("e1", None), ("e2", None)], |id| {
        let mut emit = delivery(id, None, None, Strategy::None);
        emit.kind = OutboxKind::Emit;
        emit.target = format!("type.{id}");
        emit.idempotency_key = format!("{id}.0.1");
        vec![emit, delivery(id, None, None, Strategy::None)]
    })
    .await;
    let mut lanes = backend.outbox.lanes().await.unwrap();
    lanes.sort();
    assert_eq!(lanes, [CORE_TARGET, "state-api"]);
    let core = backend.outbox.load(CORE_TARGET, None, 10).await.unwrap();
    let targets: Vec<&str> = core.iter().map(|r| r.action.target.as_str()).collect();
    assert_eq!(targets, ["type.e1", "type.e2"]);
}

async fn outbox_keeps_the_retry_schedule_and_dead_letters_once(backend: &Backend) {
    accept_and_process(backend, &[("e1", Some("k"))], |id| {
        vec![delivery(id, Some("k"), None, Strategy::None)]
    })
    .await;
    let row = pending_rows(backend).await.remove(0);
    backend
        .outbox
        .record_attempt(attempt(&row, Next::RetryAt(5_000), 503))
        .await
        .unwrap();
    // Still pending, with its next attempt's time and its error kept across a restart.
    let again = pending_rows(backend).await.remove(0);
    assert_eq!((again.attempts, again.round_attempts), (1, 1));
    assert_eq!(again.next_attempt_at, 5_000);
    assert_eq!(again.last_error.as_deref(), Some("HTTP 503"));
    backend
        .outbox
        .record_attempt(attempt(&again, Next::Dead, 400))
        .await
        .unwrap();
    assert!(pending_rows(backend).await.is_empty());
    let dead = backend
        .records
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, DeadLetterKind::Delivery);
    assert_eq!(dead[0].target, "state-api");
    assert_eq!(dead[0].error, "HTTP 400");
    let history = backend.records.event_history("e1").await.unwrap().unwrap();
    let (row, attempts) = &history.outbox[0];
    assert_eq!(row.state, OutboxState::Dead);
    let outcomes: Vec<AttemptOutcome> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Retry, AttemptOutcome::Dead]);
}

/// Delivers the first pending row, which must be `event_id`'s.
async fn deliver_first_pending(backend: &Backend, event_id: &str) {
    let row = pending_rows(backend).await.remove(0);
    assert_eq!(row.event_id, event_id);
    backend
        .outbox
        .record_attempt(attempt(&row, Next::Delivered, 200))
        .await
        .unwrap();
}

async fn outbox_entity_state_only_moves_forward(backend: &Backend) {
    let events = [("v2", Some("k")), ("v1", Some("k")), ("v3", Some("k"))];
    let version = |id: &str| id[1..].parse::<u64>().unwrap();
    accept_and_process(backend, &events, |id| {
        vec![delivery(
            id,
            Some("k"),
            Some(version(id)),
            Strategy::Version,
        )]
    })
    .await;
    let entity = EntityRef {
        kind: OutboxKind::Deliver,
        target: "state-api".into(),
        key: "k".into(),
    };
    // What the destination holds for the entity now.
    let held = || async { backend.outbox.entity_state(entity.clone()).await.unwrap() };
    assert_eq!(held().await, None);
    // v2 goes first (per-key order); delivering it supersedes the stale v1 still pending.
    let v2 = pending_rows(backend).await.remove(0);
    assert_eq!(v2.event_id, "v2");
    let v1 = pending_rows(backend).await.remove(1);
    assert_eq!(v1.event_id, "v1");
    let superseded = backend
        .outbox
        .record_attempt(attempt(&v2, Next::Delivered, 200))
        .await
        .unwrap();
    assert_eq!(superseded, [v1.id]);
    let state = held().await.unwrap();
    assert_eq!((state.version, state.event_id.as_str()), (Some(2), "v2"));
    deliver_first_pending(backend, "v3").await;
    // A version older than the one held never replaces it, whatever order it is recorded in.
    let history = backend.records.event_history("v1").await.unwrap().unwrap();
    let v1 = &history.outbox[0].0;
    assert_eq!(v1.state, OutboxState::Superseded);
    assert_eq!(v1.superseded_by.as_deref(), Some("v2"));
    assert_eq!(held().await.unwrap().version, Some(3));
    // Superseding a row that is no longer pending changes nothing, and says so.
    let again = SupersedeRecord {
        outbox_id: v1.id,
        winner: "v3".into(),
        reason: "late".into(),
        at: 2,
    };
    assert!(!backend.outbox.supersede(again).await.unwrap());
    let history = backend.records.event_history("v1").await.unwrap().unwrap();
    assert_eq!(history.outbox[0].0.superseded_by.as_deref(), Some("v2"));
    // A pending row is superseded, once.
    accept_and_process(backend, &[("v0", Some("k"))], |id| {
        vec![delivery(id, Some("k"), Some(0), Strategy::Version)]
    })
    .await;
    let v0 = pending_rows(backend).await.remove(0);
    let record = |at| SupersedeRecord {
        outbox_id: v0.id,
        winner: "v3".into(),
        reason: "older than the version held".into(),
        at,
    };
    assert!(backend.outbox.supersede(record(3)).await.unwrap());
    assert!(!backend.outbox.supersede(record(4)).await.unwrap());
    let history = backend.records.event_history("v0").await.unwrap().unwrap();
    let v0 = &history.outbox[0].0;
    assert_eq!(
        (v0.state, v0.superseded_by.as_deref()),
        (OutboxState::Superseded, Some("v3"))
    );
    // An operator's reset forgets the state held (answering it); the next version delivered,
    // however old, is held from then on.
    let held = backend.records.entity(entity.clone()).await.unwrap();
    assert_eq!(held.as_ref().and_then(|s| s.version), Some(3));
    assert_eq!(
        backend.records.reset_entity(entity.clone()).await.unwrap(),
        held
    );
    assert_eq!(backend.records.entity(entity.clone()).await.unwrap(), None);
    assert_eq!(
        backend.records.reset_entity(entity.clone()).await.unwrap(),
        None
    );
    accept_and_process(backend, &[("v1b", Some("k"))], |id| {
        vec![delivery(id, Some("k"), Some(1), Strategy::Version)]
    })
    .await;
    deliver_first_pending(backend, "v1b").await;
    let state = backend.records.entity(entity).await.unwrap().unwrap();
    assert_eq!((state.version, state.event_id.as_str()), (Some(1), "v1b"));
}

async fn plugin_store_keeps_versions_and_their_activations(backend: &Backend) {
    let version = |hash: &str, fixtures: Option<&str>| PluginVersion {
        name: "p".into(),
        hash: hash.into(),
        world: "transformer".into(),
        component: vec![0, 1, 2],
        fixtures: fixtures.map(str::to_owned),
        uploaded_at: 1,
        uploaded_by: "config".into(),
    };
    let activation = |reason: &str| ActivationRecord {
        at: 2,
        by: "admin:abc".into(),
        reason: reason.into(),
    };
    let plugins = &backend.plugins;
    assert_eq!(plugins.active("p").await.unwrap(), None);
    for (hash, reason) in [("h1", "config"), ("h2", "upload")] {
        plugins
            .write(PluginWrite::Add {
                version: version(hash, None),
                activate: Some(activation(reason)),
            })
            .await
            .unwrap();
    }
    // Kept again with fixtures: it gains them, and stays inactive.
    plugins
        .write(PluginWrite::Add {
            version: version("h1", Some("[]")),
            activate: None,
        })
        .await
        .unwrap();
    assert_eq!(plugins.active("p").await.unwrap().as_deref(), Some("h2"));
    let h1 = plugins.version("p", "h1").await.unwrap().unwrap();
    assert_eq!(h1.fixtures.as_deref(), Some("[]"));
    let listed: Vec<(String, bool)> = plugins
        .versions("p")
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.hash, v.active))
        .collect();
    assert_eq!(listed, [("h1".into(), false), ("h2".into(), true)]);
    let reasons: Vec<String> = plugins
        .activations("p")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.record.reason)
        .collect();
    assert_eq!(reasons, ["config", "upload"]);
    let active_delete = plugins
        .write(PluginWrite::Delete {
            name: "p".into(),
            hash: "h2".into(),
        })
        .await;
    assert!(matches!(active_delete, Err(StoreError::Conflict(_))));
    plugins
        .write(PluginWrite::Delete {
            name: "p".into(),
            hash: "h1".into(),
        })
        .await
        .unwrap();
    let unknown = plugins
        .write(PluginWrite::Delete {
            name: "p".into(),
            hash: "h1".into(),
        })
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound(_))));
}

async fn records_replay_a_dead_letter_once(backend: &Backend) {
    accept_and_process(backend, &[("e1", None)], |id| {
        vec![delivery(id, None, None, Strategy::None)]
    })
    .await;
    let row = pending_rows(backend).await.remove(0);
    backend
        .outbox
        .record_attempt(attempt(&row, Next::Dead, 410))
        .await
        .unwrap();
    let backlog = backend.records.backlog().await.unwrap();
    assert_eq!(
        (
            backlog.pending_events,
            backlog.pending_deliveries,
            backlog.dead_letters
        ),
        (0, 0, 1)
    );
    let dead = backend
        .records
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    let only = DeadLetterFilter {
        ids: vec![dead[0].id, 999],
        ..DeadLetterFilter::default()
    };
    let first = backend.records.replay(only.clone()).await.unwrap();
    assert_eq!(first.replayed, [dead[0].id]);
    assert_eq!(
        first.skipped,
        [(999, "no dead letter has this id".to_owned())]
    );
    let again = backend.records.replay(only).await.unwrap();
    assert!(again.replayed.is_empty());
    assert!(
        again
            .skipped
            .contains(&(dead[0].id, "already replayed".to_owned())),
        "{again:?}"
    );
    // Pending again, with a fresh round.
    let row = pending_rows(backend).await.remove(0);
    assert_eq!((row.attempts, row.round_attempts), (1, 0));
    // More ids than SQLite takes parameters: each one is answered.
    let many = DeadLetterFilter {
        ids: (1..=40_000).collect(),
        ..DeadLetterFilter::default()
    };
    let outcome = backend.records.replay(many).await.unwrap();
    assert!(outcome.replayed.is_empty());
    assert_eq!(outcome.skipped.len(), 40_000);
    let listed = backend
        .records
        .dead_letters(DeadLetterFilter {
            include_replayed: true,
            ..DeadLetterFilter::default()
        })
        .await
        .unwrap();
    assert!(listed[0].replayed_at.is_some());
}

async fn retention_removes_only_finished_work_and_forgets_old_dedupe_keys(backend: &Backend) {
    accept_and_process(
        backend,
        &[("done", None), ("waiting", None), ("dead", None)],
        |id| vec![delivery(id, None, None, Strategy::None)],
    )
    .await;
    let rows = pending_rows(backend).await;
    for (row, next, status) in [
        (&rows[0], Next::Delivered, 200),
        (&rows[2], Next::Dead, 410),
    ] {
        backend
            .outbox
            .record_attempt(attempt(row, next, status))
            .await
            .unwrap();
    }
    // Accepted, not processed yet, with a sender's idempotency key.
    backend
        .intake
        .accept(new_event("unprocessed", None, Some("key-1")))
        .await
        .unwrap();
    let history = |id: &'static str| async move {
        backend.records.event_history(id).await.unwrap().is_some()
    };
    // Every event was accepted at 1 (Unix ms); dead letters are kept for now.
    let keep_dead = Cutoffs {
        finished: 2,
        dead_letters: 0,
        dedupe: 2,
    };
    let round = |cutoffs, after, limit| {
        backend.retention.prune(Prune {
            cutoffs,
            after,
            limit,
        })
    };
    let pruned = round(keep_dead, 0, 500).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            events: 1,
            dedupe_keys: 1,
            next: None
        }
    );
    assert!(!history("done").await, "finished work is removed");
    for kept in ["waiting", "dead", "unprocessed"] {
        assert!(history(kept).await, "{kept} is kept");
    }
    // The forgotten key is new again.
    let again = backend
        .intake
        .accept(new_event("again", None, Some("key-1")))
        .await
        .unwrap();
    assert!(!again.duplicate);
    // Once its dead letter is old enough, the dead event goes too, dead letter and all.
    let forget_dead = Cutoffs {
        dead_letters: i64::MAX,
        ..keep_dead
    };
    let pruned = round(forget_dead, 0, 500).await.unwrap();
    assert_eq!((pruned.events, pruned.dedupe_keys), (1, 1));
    assert!(!history("dead").await);
    let dead = backend
        .records
        .dead_letters(DeadLetterFilter::default())
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    // A round stops at its limit and says where to go on. (Processing these two processes
    // every pending event: now only `waiting`, with its pending delivery, is not finished.)
    accept_and_process(backend, &[("a", None), ("b", None)], |_| Vec::new()).await;
    let (mut after, mut removed, mut rounds) = (0, 0, 0);
    loop {
        let pruned = round(forget_dead, after, 1).await.unwrap();
        assert!(pruned.events <= 1);
        removed += pruned.events;
        rounds += 1;
        match pruned.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!((removed, rounds), (4, 5));
    assert!(history("waiting").await);
    assert_eq!(backend.records.event_count().await.unwrap(), 1);
    let footprint = backend.retention.footprint().unwrap();
    assert!(
        footprint.bytes > 0 && footprint.free_bytes > 0,
        "{footprint:?}"
    );
}

async fn work_queue_reads_each_routes_events_apart(backend: &Backend) {
    let webhook = |id: &str| NewEvent {
        route: Route::Webhook("/webhook/x".into()),
        ..new_event(id, None, None)
    };
    for event in [
        new_event("b1", None, None),
        webhook("w1"),
        new_event("b2", None, None),
    ] {
        backend.intake.accept(event).await.unwrap();
    }
    let mut routes = backend.queue.pending_routes().await.unwrap();
    routes.sort();
    assert_eq!(routes, ["bus:tax.rate.updated", "webhook:/webhook/x"]);
    // Which routes got new events, once.
    let mut fresh = backend.queue.accepted_routes();
    fresh.sort();
    assert_eq!(fresh, routes);
    assert!(backend.queue.accepted_routes().is_empty());
    let ids = |events: &[PendingEvent]| -> Vec<String> {
        events.iter().map(|p| p.stored.event.id.clone()).collect()
    };
    let of = |route: &'static str, after: i64| backend.queue.pending_of(route, after, 10);
    let bus = of("bus:tax.rate.updated", 0).await.unwrap();
    assert_eq!(ids(&bus), ["b1", "b2"]);
    let after = of("bus:tax.rate.updated", bus[0].stored.seq).await.unwrap();
    assert_eq!(ids(&after), ["b2"]);
    let mut hooks = of("webhook:/webhook/x", 0).await.unwrap();
    assert_eq!(ids(&hooks), ["w1"]);
    // Processed, a route has nothing pending and is no longer listed.
    let w1 = hooks.remove(0);
    backend
        .queue
        .complete(processed(&w1, Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        backend.queue.pending_routes().await.unwrap(),
        ["bus:tax.rate.updated"]
    );
}
