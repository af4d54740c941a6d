//! Plugin lifecycle and hot swap over the admin API: swaps under load lose nothing, broken
//! versions are refused and the active one keeps serving, rollback, restart, and the watched
//! directory.

use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_engine::store::Records;
use sync_engine_tests::{
    Receiver, TestEngine, admin_call, component, component_path, open_store, post_json,
    upload_component, upload_with_fixtures,
};

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-secret-for-tests";

/// The plugin `rates` (first `swap-one`) routed to the receiver at `url`, with `extra` appended.
fn config(url: &str, extra: &str) -> String {
    format!(
        r#"
admin:
  token: {ADMIN}
plugins:
  rates:
    path: {one}
destinations:
  state-api:
    url: {url}
retry:
  initialDelay: 50ms
hmsEvents:
  - event: tax.rate.updated
    handler: rates
    destination: state-api
{extra}"#,
        one = component_path("swap-one").display(),
    )
}

fn hash(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Uploads a component (and fixtures) as a new version of `rates`.
async fn upload(engine: &TestEngine, bytes: Vec<u8>, fixtures: Option<Value>) -> (u16, Value) {
    match fixtures {
        Some(fixtures) => {
            upload_with_fixtures(engine, ADMIN, "rates", bytes, &fixtures.to_string()).await
        }
        None => upload_component(engine, ADMIN, "rates", bytes).await,
    }
}

async fn active(engine: &TestEngine) -> String {
    let (status, plugin) = admin_call(engine, ADMIN, "GET", "/admin/plugins/rates", None).await;
    assert_eq!(status, 200, "{plugin}");
    plugin["active"].as_str().unwrap().to_owned()
}

/// Posts one rate and returns the version that the destination says made it.
async fn version_serving(engine: &TestEngine, receiver: &Receiver, year: u16) -> String {
    let before = receiver.received().len();
    let body = json!({"rate": 1, "year": year}).to_string();
    let (status, answer) = post_json(&engine.url("/events/tax.rate.updated"), &body, &[]).await;
    assert_eq!(status, 202, "{answer}");
    let received = receiver.wait_for(before + 1, WAIT).await;
    received[before].json()["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

// The report on stderr is part of this test's output: `cargo test --test lifecycle -- --nocapture`.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_under_load_lose_nothing_and_every_body_matches_its_recorded_version() {
    const EVENTS: u32 = 2000;
    let receiver = Receiver::start().await;
    let engine = Arc::new(TestEngine::start(&config(&receiver.url("/rates"), "")).await);
    let versions = HashMap::from([
        (hash(&component("swap-one")), "one"),
        (hash(&component("swap-two")), "two"),
    ]);

    let sender = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut ids = Vec::new();
            for seq in 0..EVENTS {
                let body = json!({"rate": seq, "year": 2025}).to_string();
                let (status, answer) =
                    post_json(&engine.url("/events/tax.rate.updated"), &body, &[]).await;
                assert_eq!(status, 202, "{answer}");
                ids.push(answer["id"].as_str().unwrap().to_owned());
            }
            ids
        }
    });
    let mut swap_times = Vec::new();
    for swap in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let next = if swap % 2 == 0 {
            "swap-two"
        } else {
            "swap-one"
        };
        let (status, answer) = upload_component(&engine, ADMIN, "rates", component(next)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["plugin"]["unchanged"], false, "{answer}");
        swap_times.push(answer["plugin"]["tookMs"].as_u64().unwrap());
    }
    let ids = sender.await.unwrap();
    let received = receiver
        .wait_until(WAIT, |r| r.len() >= EVENTS as usize)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = if received.len() < receiver.received().len() {
        receiver.received()
    } else {
        received
    };
    let engine = Arc::into_inner(engine).unwrap();
    let dir = engine.stop().await;

    // Exactly once each, and processing went on through the swaps.
    assert_eq!(
        received.len(),
        EVENTS as usize,
        "no event lost or delivered twice"
    );
    let keys: HashSet<&str> = received
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(keys.len(), EVENTS as usize);
    let longest_gap = received
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .max()
        .unwrap();
    assert!(
        longest_gap < Duration::from_secs(5),
        "processing stopped for {longest_gap:?}"
    );

    // Every body was made by the version its event's run records.
    let store = open_store(dir.path());
    let bodies: HashMap<String, String> = received
        .iter()
        .map(|r| {
            let id = r
                .header("idempotency-key")
                .unwrap()
                .trim_end_matches(".0.0")
                .to_owned();
            (id, r.json()["version"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut made_by = HashMap::<&str, u32>::new();
    for id in &ids {
        let history = store.event_history(id).await.unwrap().unwrap();
        assert_eq!(history.runs.len(), 1, "{id} ran once");
        let recorded = versions[&history.runs[0].plugin_hash];
        assert_eq!(bodies[id], recorded, "{id}");
        *made_by.entry(recorded).or_default() += 1;
    }
    assert!(made_by.len() == 2, "both versions served: {made_by:?}");
    swap_times.sort_unstable();
    eprintln!(
        "hot swap: {EVENTS} events, 10 swaps (median {} ms, slowest {} ms), versions served {made_by:?}, longest gap between deliveries {longest_gap:?}",
        swap_times[swap_times.len() / 2],
        swap_times[swap_times.len() - 1],
    );
}

#[tokio::test]
async fn broken_versions_are_refused_with_every_reason_and_the_active_one_keeps_serving() {
    let receiver = Receiver::start().await;
    let engine = TestEngine::start(&config(&receiver.url("/rates"), "")).await;
    let one = hash(&component("swap-one"));
    let expects_one = json!([{
        "name": "version one",
        "event": {"type": "tax.rate.updated", "payload": {"rate": 1, "year": 2025}},
        "expect": {"payload": {"version": "one", "rate": 1, "year": 2025}}
    }]);

    // Not a component; another world; a failing fixture; a trap on a fixture.
    let (status, answer) = upload_component(&engine, ADMIN, "rates", b"not wasm".to_vec()).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["failures"][0]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly component")
    );
    let (status, answer) =
        upload_component(&engine, ADMIN, "rates", component("tax-rate-inbound")).await;
    assert_eq!(status, 422, "{answer}");
    let failure = answer["error"]["failures"][0].as_str().unwrap();
    assert!(
        failure.contains("is a transformer plugin") && failure.contains("handler"),
        "{failure}"
    );
    // Built against a WIT version the engine does not load: refused, naming both.
    let (status, answer) = upload_component(&engine, ADMIN, "rates", component("wit-next")).await;
    assert_eq!(status, 422, "{answer}");
    let refused = answer.to_string();
    assert!(
        refused.contains("built against `hms:sync@0.2.0`")
            && refused.contains("this engine loads `hms:sync@0.1.0`"),
        "{refused}"
    );
    let (status, answer) = upload(&engine, component("swap-two"), Some(expects_one.clone())).await;
    assert_eq!(status, 422, "{answer}");
    let failure = answer["error"]["failures"][0].as_str().unwrap();
    assert!(
        failure.starts_with("version one: expected the payload"),
        "{failure}"
    );
    let traps = json!([{
        "name": "traps",
        "event": {"type": "tax.rate.updated", "payload": {"rate": 1, "year": 2025, "panic": true}},
        "expect": {"payload": {}}
    }]);
    let (status, answer) = upload(&engine, component("swap-two"), Some(traps)).await;
    assert_eq!(status, 422, "{answer}");
    let failure = answer["error"]["failures"][0].as_str().unwrap();
    assert!(
        failure.contains("crashed") && failure.contains("asked to panic"),
        "{failure}"
    );
    let (status, answer) = upload(&engine, component("swap-two"), Some(json!({"cases": 1}))).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["failures"][0]
            .as_str()
            .unwrap()
            .contains("fixtures are not valid")
    );
    assert_eq!(active(&engine).await, one);
    assert_eq!(version_serving(&engine, &receiver, 2025).await, "one");

    // Version one takes fixtures; a version without its own must pass them too.
    let (status, answer) = upload(&engine, component("swap-one"), Some(expects_one)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["plugin"]["fixturesPassed"], 1);
    let (status, answer) = upload_component(&engine, ADMIN, "rates", component("swap-two")).await;
    assert_eq!(status, 422, "the inherited fixtures refuse it: {answer}");
    assert_eq!(active(&engine).await, one);
    assert_eq!(version_serving(&engine, &receiver, 2026).await, "one");
    let (status, answer) = admin_call(&engine, ADMIN, "PUT", "/admin/plugins/ghost", None).await;
    assert_eq!(status, 400, "an empty upload: {answer}");
    engine.stop().await;
}

#[tokio::test]
async fn the_watched_directory_rollback_activation_restart_and_deletion() {
    let receiver = Receiver::start().await;
    let watched = tempfile::tempdir().unwrap();
    let extra = format!("pluginDir: {}\n", watched.path().display());
    let yaml = config(&receiver.url("/rates"), &extra);
    let engine = TestEngine::start(&yaml).await;
    let (one, two) = (hash(&component("swap-one")), hash(&component("swap-two")));
    assert_eq!(active(&engine).await, one);

    // A new version dropped into the watched directory becomes the active one.
    std::fs::copy(
        component_path("swap-two"),
        watched.path().join("rates.wasm"),
    )
    .unwrap();
    let started = Instant::now();
    while active(&engine).await != two {
        assert!(
            started.elapsed() < WAIT,
            "the watched file was not activated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(version_serving(&engine, &receiver, 2030).await, "two");

    // Roll back, then forward again by hash, then back.
    let (status, answer) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/plugins/rates/rollback",
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["plugin"]["hash"], one.as_str());
    assert_eq!(answer["plugin"]["replaced"], two.as_str());
    assert_eq!(version_serving(&engine, &receiver, 2031).await, "one");
    let activate = Some(json!({"hash": two}));
    let (status, answer) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/plugins/rates/activate",
        activate,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/plugins/rates/rollback",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, shown) = admin_call(&engine, ADMIN, "GET", "/admin/plugins/rates", None).await;
    let reasons: Vec<&str> = shown["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["config", "watch", "rollback", "activate", "rollback"]
    );
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);
    assert!(
        shown["activations"][3]["activatedBy"]
            .as_str()
            .unwrap()
            .starts_with("admin:")
    );

    // A restart keeps version one: neither the watched file (two) nor the configuration's
    // file undoes the rollback.
    let dir = engine.stop().await;
    let engine = TestEngine::start_in(&yaml, dir).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(active(&engine).await, one);
    assert_eq!(version_serving(&engine, &receiver, 2032).await, "one");
    let (_, shown) = admin_call(&engine, ADMIN, "GET", "/admin/plugins/rates", None).await;
    assert_eq!(
        shown["activations"].as_array().unwrap().len(),
        5,
        "no activation at restart"
    );

    // The active version cannot be deleted; another can.
    let path = format!("/admin/plugins/rates/versions/{one}");
    let (status, answer) = admin_call(&engine, ADMIN, "DELETE", &path, None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("active-version"))
    );
    let path = format!("/admin/plugins/rates/versions/{two}");
    let (status, _) = admin_call(&engine, ADMIN, "DELETE", &path, None).await;
    assert_eq!(status, 200);
    let (_, shown) = admin_call(&engine, ADMIN, "GET", "/admin/plugins/rates", None).await;
    assert_eq!(shown["versions"].as_array().unwrap().len(), 1);
    // With the only other version deleted, there is nothing to roll back to.
    let (status, answer) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/plugins/rates/rollback",
        None,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    engine.stop().await;
}

#[tokio::test]
async fn a_rollback_is_checked_against_the_old_versions_own_fixtures_only() {
    let receiver = Receiver::start().await;
    let engine = TestEngine::start(&config(&receiver.url("/rates"), "")).await;
    // Version two comes with fixtures that version one would fail.
    let expects_two = json!([{
        "event": {"type": "tax.rate.updated", "payload": {"rate": 2, "year": 2025}},
        "expect": {"payload": {"version": "two", "rate": 2, "year": 2025}}
    }]);
    let (status, answer) = upload(&engine, component("swap-two"), Some(expects_two)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/plugins/rates/rollback",
        None,
    )
    .await;
    assert_eq!(status, 200, "the emergency lever works: {answer}");
    assert_eq!(version_serving(&engine, &receiver, 2040).await, "one");
    // Version one did not take version two's fixtures as its own.
    let (_, shown) = admin_call(&engine, ADMIN, "GET", "/admin/plugins/rates", None).await;
    let with_fixtures: Vec<bool> = shown["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["fixtures"].as_bool().unwrap())
        .collect();
    assert_eq!(with_fixtures, [false, true]);
    engine.stop().await;
}

#[tokio::test]
async fn a_version_whose_check_runs_past_its_deadline_or_is_too_large_is_refused() {
    let receiver = Receiver::start().await;
    // A deadline no compilation meets, and a small size cap.
    let engine = TestEngine::start(&config(
        &receiver.url("/rates"),
        "sandbox:\n  compileTimeout: 1ms\n",
    ))
    .await;
    let before = active(&engine).await;
    let (status, answer) = upload(&engine, component("swap-two"), None).await;
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"]["failures"][0].as_str().unwrap_or_default();
    assert!(message.contains("sandbox.compileTimeout"), "{answer}");
    // Nothing changed: the active version serves.
    assert_eq!(active(&engine).await, before);
    assert_eq!(version_serving(&engine, &receiver, 2031).await, "one");
    engine.stop().await;

    let watched = tempfile::tempdir().unwrap();
    let small = config(
        &receiver.url("/rates"),
        &format!("pluginDir: {}\n", watched.path().display()),
    )
    .replace(
        &format!("admin:\n  token: {ADMIN}\n"),
        &format!("admin:\n  token: {ADMIN}\n  maxUploadSize: 200KiB\n"),
    );
    let engine = TestEngine::start(&small).await;
    let before = active(&engine).await;
    let mut big = component("swap-two");
    big.resize(300 << 10, 0);
    let (status, answer) = upload_component(&engine, ADMIN, "rates", big.clone()).await;
    assert_eq!(status, 413, "{answer}");
    // Too large in the watched directory: ignored (its size is checked before it is read) for
    // as long as the watcher looks at it...
    std::fs::write(watched.path().join("rates.wasm"), &big).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(active(&engine).await, before);
    // ...while a component that fits is taken.
    std::fs::write(watched.path().join("rates.wasm"), component("swap-two")).unwrap();
    let started = Instant::now();
    while active(&engine).await != hash(&component("swap-two")) {
        assert!(
            started.elapsed() < WAIT,
            "the watched file was not activated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.stop().await;
}
