//! The outbox cases: pending rows by lane and page, the retry schedule and dead letters, entity state.

use super::*;

pub(super) async fn outbox_lists_pending_rows_in_event_order_page_by_page(backend: &Backend) {
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

pub(super) async fn outbox_puts_every_emitted_event_type_in_the_cores_lane(backend: &Backend) {
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

pub(super) async fn outbox_keeps_the_retry_schedule_and_dead_letters_once(backend: &Backend) {
    accept_and_process(backend, &[("e1", Some("k"))], |id| {
        vec![delivery(id, Some("k"), None, Strategy::None)]
    })
    .await;
    let row = pending_rows(backend).await.remove(0);
    // Recorded twice (a record sent again after its answer was lost): it counts once.
    for _ in 0..2 {
        backend
            .outbox
            .record_attempt(attempt(&row, Next::RetryAt(5_000), 503))
            .await
            .unwrap();
    }
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

pub(super) async fn outbox_entity_state_only_moves_forward(backend: &Backend) {
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
