//! The intake and work-queue cases: deduplication, acceptance order, replays, routes.

use super::*;

pub(super) async fn intake_deduplicates_per_route_and_answers_the_first_id(backend: &Backend) {
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

pub(super) async fn work_queue_hands_out_events_in_acceptance_order_once(backend: &Backend) {
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

pub(super) async fn work_queue_keeps_a_replay_that_lands_while_the_event_runs_again(
    backend: &Backend,
) {
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

pub(super) async fn work_queue_answers_the_rows_it_queued(backend: &Backend) {
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

pub(super) async fn work_queue_reads_each_routes_events_apart(backend: &Backend) {
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
