//! The store stays bounded: finished work is pruned while an event with a dead letter still
//! kept stays, and acceptance stops before the disk is full. (That work not finished is never
//! pruned is in the store's conformance suite.)

use serde_json::json;
use std::time::Duration;
use sync_engine::store::Records;
use sync_engine_tests::{
    Receiver, TestEngine, admin_call, open_store, post_json, sample, scrape, seed_config,
};

const WAIT: Duration = Duration::from_secs(20);
const ADMIN: &str = "admin-secret-for-tests";

#[tokio::test]
async fn finished_work_is_pruned_and_an_event_with_a_dead_letter_is_kept() {
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    let yaml = seed_config(&state_api.url("/rates"), &core.url("/hms"))
        + &format!(
            "admin:\n  token: {ADMIN}\nstore:\n  retention:\n    finished: 1s\n    \
             deadLetters: 1h\n    dedupe: 1s\n    interval: 200ms\n"
        );
    let engine = TestEngine::start(&yaml).await;
    let post = |body: serde_json::Value, key: &'static str| {
        let url = engine.url("/events/tax.rate.updated");
        async move {
            let (status, answer) =
                post_json(&url, &body.to_string(), &[("idempotency-key", key)]).await;
            assert_eq!(status, 202, "{answer}");
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let delivered = post(json!({"rate": 1, "year": 2024}), "k-1").await;
    // A payload the plugin refuses: a dead letter, kept for an hour.
    let dead = post(json!({"rate": 1}), "k-2").await;
    state_api.wait_for(1, WAIT).await;
    let event = |id: String| {
        let engine = &engine;
        async move {
            admin_call(engine, ADMIN, "GET", &format!("/admin/events/{id}"), None)
                .await
                .0
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while event(delivered.clone()).await != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivered event was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        event(dead.clone()).await,
        200,
        "a dead letter keeps its event"
    );
    let page = scrape(&engine).await;
    assert!(
        sample(&page, r#"sync_pruned_total{what="events"}"#) >= 1.0,
        "{page}"
    );
    assert!(sample(&page, "sync_store_bytes") > 0.0, "{page}");
    assert!(sample(&page, "sync_store_free_bytes") > 0.0, "{page}");
    // The idempotency key went with its event: the same key is a new event now.
    let (status, again) = post_json(
        &engine.url("/events/tax.rate.updated"),
        &json!({"rate": 2, "year": 2024}).to_string(),
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!((status, again["status"].as_str()), (202, Some("accepted")));
    let dir = engine.stop().await;
    let store = open_store(dir.path());
    let dead_letters = store.dead_letters(Default::default()).await.unwrap();
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].event_id, dead);
}

#[tokio::test]
async fn below_the_free_space_threshold_events_are_refused_and_nothing_is_stored() {
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    // More free space than any disk has.
    let yaml = seed_config(&state_api.url("/rates"), &core.url("/hms"))
        + "store:\n  minFreeSpace: 100000000GiB\n";
    let engine = TestEngine::start(&yaml).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        let (status, answer) = post_json(
            &engine.url("/events/tax.rate.updated"),
            r#"{"rate": 1, "year": 2024}"#,
            &[("idempotency-key", "only-once")],
        )
        .await;
        if status == 503 {
            break answer;
        }
        // Before the first check, the event may be taken (once: the key is the same).
        assert_eq!(status, 202, "{answer}");
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["error"]["code"], "disk-low", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store.minFreeSpace"),
        "{answer}"
    );
    let dir = engine.stop().await;
    assert!(open_store(dir.path()).event_count().await.unwrap() <= 1);
}
