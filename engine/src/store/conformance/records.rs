//! The plugin-store, records and retention cases.

use super::*;

pub(super) async fn plugin_store_keeps_versions_and_their_activations(backend: &Backend) {
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
    for (hash, reason, replaces) in [("h1", "config", None), ("h2", "upload", Some("h1"))] {
        plugins
            .write(PluginWrite::Add {
                version: version(hash, None),
                activate: Some(activation(reason)),
                replaces: replaces.map(str::to_owned),
            })
            .await
            .unwrap();
    }
    // A swap checked against h1 while h2 became active loses, and keeps nothing.
    let stale = plugins
        .write(PluginWrite::Add {
            version: version("h3", None),
            activate: Some(activation("upload")),
            replaces: Some("h1".into()),
        })
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict(_)), "{stale:?}");
    assert!(plugins.version("p", "h3").await.unwrap().is_none());
    // Kept again with fixtures: it gains them, and stays inactive.
    plugins
        .write(PluginWrite::Add {
            version: version("h1", Some("[]")),
            activate: None,
            replaces: None,
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

pub(super) async fn records_replay_a_dead_letter_once(backend: &Backend) {
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

pub(super) async fn retention_removes_only_finished_work_and_forgets_old_dedupe_keys(
    backend: &Backend,
) {
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

pub(super) async fn records_find_events_and_count_each_lanes_backlog(backend: &Backend) {
    for (id, key, accepted_at) in [("e1", "k1", 100), ("e2", "k2", 200), ("e3", "k1", 300)] {
        let mut event = new_event(id, Some(key), None);
        event.accepted_at = accepted_at;
        backend.intake.accept(event).await.unwrap();
    }
    let find = |query: EventQuery| async move {
        let found = backend
            .records
            .find_events(EventQuery { limit: 10, ..query })
            .await
            .unwrap();
        found
            .into_iter()
            .map(|f| (f.event.event.id, f.delivering, f.dead))
            .collect::<Vec<_>>()
    };
    let ids = |found: Vec<(String, bool, bool)>| found.into_iter().map(|f| f.0).collect::<Vec<_>>();
    // Newest first; by key, type, origin, time and page.
    let k1 = EventQuery {
        key: Some("k1".into()),
        ..EventQuery::default()
    };
    assert_eq!(ids(find(k1.clone()).await), ["e3", "e1"]);
    let all = ids(find(EventQuery::default()).await);
    assert_eq!(all, ["e3", "e2", "e1"]);
    let by_type = EventQuery {
        event_type: Some("tax.rate.updated".into()),
        origin: Some("hms".into()),
        ..EventQuery::default()
    };
    assert_eq!(ids(find(by_type).await), ["e3", "e2", "e1"]);
    let by_route = |routes: &[&str]| EventQuery {
        routes: routes.iter().map(|r| (*r).to_owned()).collect(),
        ..EventQuery::default()
    };
    assert_eq!(
        ids(find(by_route(&["webhook:/x", "bus:tax.rate.updated"])).await),
        ["e3", "e2", "e1"]
    );
    assert!(find(by_route(&["webhook:/x"])).await.is_empty());
    let elsewhere = EventQuery {
        origin: Some("nobody".into()),
        ..EventQuery::default()
    };
    assert!(find(elsewhere).await.is_empty());
    let window = EventQuery {
        since: Some(200),
        until: Some(300),
        ..EventQuery::default()
    };
    assert_eq!(ids(find(window).await), ["e2"]);
    let first_page = backend
        .records
        .find_events(EventQuery {
            limit: 1,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first_page.len(), 1);
    assert!(first_page[0].event.event.payload.is_empty(), "no payloads");
    let next_page = EventQuery {
        before: Some(first_page[0].event.seq),
        ..EventQuery::default()
    };
    assert_eq!(ids(find(next_page).await), ["e2", "e1"]);
    let by_id = EventQuery {
        id: Some("e2".into()),
        ..EventQuery::default()
    };
    assert_eq!(ids(find(by_id).await), ["e2"]);
    assert!(backend.records.lanes().await.unwrap().is_empty());

    // Each event delivered to `state-api`: one retries, one dies, one waits.
    for pending in backend.queue.pending(0, 100).await.unwrap() {
        let actions = vec![delivery(
            &pending.stored.event.id,
            pending.stored.event.key.as_deref(),
            None,
            Strategy::None,
        )];
        backend
            .queue
            .complete(processed(&pending, actions))
            .await
            .unwrap();
    }
    let rows = pending_rows(backend).await;
    backend
        .outbox
        .record_attempt(attempt(&rows[0], Next::RetryAt(5_000), 503))
        .await
        .unwrap();
    backend
        .outbox
        .record_attempt(attempt(&rows[1], Next::Dead, 410))
        .await
        .unwrap();
    let lanes = backend.records.lanes().await.unwrap();
    assert_eq!(
        lanes,
        [LaneBacklog {
            lane: "state-api".into(),
            pending: 2,
            retrying: 1,
            next_retry_at: Some(5_000),
        }]
    );
    assert_eq!(
        find(EventQuery::default()).await,
        [
            ("e3".into(), true, false),
            ("e2".into(), false, true),
            ("e1".into(), true, false)
        ]
    );
}
