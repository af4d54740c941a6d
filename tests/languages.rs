//! The seed's two plugins written in JavaScript and in Python (`plugins/*-js`, `plugins/*-py`),
//! built from source by the test build: the tax-rate story runs with each language's plugins as
//! it does with Rust's, and a Rust version is swapped for a JavaScript one under load. And the
//! opt-in instance reuse those languages want, as the engine's configuration sets it.

use serde_json::json;
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use sync_engine::store::Records;
use sync_engine_tests::{
    Receiver, TestEngine, admin_until, component, open_store, post_json, seed_config_with,
    upload_with_fixtures,
};

/// Loading a JavaScript or Python component compiles megabytes of code.
const WAIT: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-secret-for-tests";

/// Runs the seed's story both ways on the plugins built from `outbound` and `inbound`, and checks
/// that bad input fails as `invalid-input` naming the field.
async fn tax_rate_story(outbound: &str, inbound: &str) {
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    let yaml = seed_config_with(
        &state_api.url("/rates"),
        &core.url("/hms"),
        outbound,
        inbound,
    ) + &format!("admin:\n  token: {ADMIN}\n");
    let engine = TestEngine::start(&yaml).await;

    // HMS → state: the outbound transformer's exact body.
    let (status, answer) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 0.0725, "year": 2025}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let received = state_api.wait_for(1, WAIT).await;
    assert_eq!(
        String::from_utf8_lossy(&received[0].body),
        r#"{"newRates":0.0725,"effectiveYear":2025}"#,
        "{outbound}"
    );
    assert_eq!(received[0].header("content-type"), Some("application/json"));

    // State → HMS: the inbound handler's emission, keyed by the year.
    let (status, answer) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.0725, "taxYear": 2025}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let received = core.wait_for(1, WAIT).await;
    assert_eq!(received[0].path, "/hms/events/tax.rate.updated");
    assert_eq!(
        String::from_utf8_lossy(&received[0].body),
        r#"{"rate":0.0725,"year":2025}"#,
        "{inbound}"
    );
    assert_eq!(received[0].header("hms-key"), Some("tax-rate/2025"));
    assert_eq!(received[0].header("hms-origin"), Some("state-api"));

    // Bad input: the plugin's own `invalid-input`, naming the field, and nothing delivered.
    let (status, answer) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"year": 2026}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let bad = answer["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/events/{bad}");
    let history = admin_until(&engine, ADMIN, &path, WAIT, |h| {
        h["event"]["runs"].get(0).is_some()
    })
    .await;
    let run = &history["event"]["runs"][0];
    assert_eq!(run["outcome"], "invalid-input", "{outbound}: {run}");
    assert!(run.to_string().contains("`rate`"), "{outbound}: {run}");
    engine.stop().await;
    assert_eq!(
        state_api.received().len(),
        1,
        "{outbound}: nothing more delivered"
    );
}

#[tokio::test]
async fn the_tax_rate_story_runs_with_the_javascript_plugins() {
    tax_rate_story("tax-rate-outbound-js", "tax-rate-inbound-js").await;
}

#[tokio::test]
async fn the_tax_rate_story_runs_with_the_python_plugins() {
    tax_rate_story("tax-rate-outbound-py", "tax-rate-inbound-py").await;
}

/// The Rust outbound plugin serves under load; its JavaScript port is uploaded (passing the
/// shared fixtures) while events keep coming, until 300 more after the swap. Nothing is lost or
/// delivered twice, both versions served, and every body is the same: the port maps exactly as
/// the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_from_rust_to_javascript_under_load_loses_nothing() {
    const AFTER_SWAP: u32 = 300;
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    let yaml = seed_config_with(
        &state_api.url("/rates"),
        &core.url("/hms"),
        "tax-rate-outbound",
        "tax-rate-inbound",
    ) + &format!("admin:\n  token: {ADMIN}\n");
    let engine = Arc::new(TestEngine::start(&yaml).await);
    let rust = hex::encode(sha2::Sha256::digest(component("tax-rate-outbound")));
    let js = hex::encode(sha2::Sha256::digest(component("tax-rate-outbound-js")));

    let swapped = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let engine = engine.clone();
        let swapped = swapped.clone();
        async move {
            let mut ids = Vec::new();
            let mut after_swap = 0;
            for seq in 0.. {
                if swapped.load(Ordering::SeqCst) {
                    after_swap += 1;
                    if after_swap > AFTER_SWAP {
                        break;
                    }
                }
                let body = json!({"rate": seq, "year": 2025}).to_string();
                let (status, answer) =
                    post_json(&engine.url("/events/tax.rate.updated"), &body, &[]).await;
                assert_eq!(status, 202, "{answer}");
                ids.push(answer["id"].as_str().unwrap().to_owned());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ids
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fixtures = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/tax-rate-outbound.fixtures.json"
    ))
    .unwrap();
    let (status, answer) = upload_with_fixtures(
        &engine,
        ADMIN,
        "tax-rate-outbound",
        component("tax-rate-outbound-js"),
        &fixtures,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    swapped.store(true, Ordering::SeqCst);

    let ids = sender.await.unwrap();
    let events = ids.len();
    let received = state_api.wait_until(WAIT, |r| r.len() >= events).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = if received.len() < state_api.received().len() {
        state_api.received()
    } else {
        received
    };
    let engine = Arc::into_inner(engine).unwrap();
    let dir = engine.stop().await;

    assert_eq!(received.len(), events, "no event lost or delivered twice");
    let keys: HashSet<&str> = received
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(keys.len(), events);
    let bodies: HashMap<String, Vec<u8>> = received
        .iter()
        .map(|r| {
            let id = r
                .header("idempotency-key")
                .unwrap()
                .trim_end_matches(".0.0");
            (id.to_owned(), r.body.clone())
        })
        .collect();
    let store = open_store(dir.path());
    let mut served = HashMap::<&str, u32>::new();
    for (seq, id) in ids.iter().enumerate() {
        let history = store.event_history(id).await.unwrap().unwrap();
        assert_eq!(history.runs.len(), 1, "{id} ran once");
        let hash = &history.runs[0].plugin_hash;
        let language = if *hash == rust {
            "rust"
        } else if *hash == js {
            "javascript"
        } else {
            panic!("{id} ran on an unknown version {hash}")
        };
        *served.entry(language).or_default() += 1;
        assert_eq!(
            String::from_utf8_lossy(&bodies[id]),
            format!(r#"{{"newRates":{seq},"effectiveYear":2025}}"#),
            "{id} ({language})"
        );
    }
    assert_eq!(served.len(), 2, "both versions served: {served:?}");
}

/// The drop reason the plugin gave for `id`, once it ran.
async fn drop_reason(engine: &TestEngine, id: &str) -> String {
    let history = admin_until(engine, ADMIN, &format!("/admin/events/{id}"), WAIT, |h| {
        h["event"]["actions"][0]["reason"].is_string()
    })
    .await;
    history["event"]["actions"][0]["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `isolation.reuseFor: 3` in the configuration: a plugin's global counter climbs over three
/// events on one instance, then starts again on a new one; an event that fails discards its
/// instance. (Without the key every event sees a fresh instance: the sandbox's own tests.)
#[tokio::test]
async fn a_plugin_configured_for_reuse_keeps_state_for_its_share_of_events_only() {
    let yaml = format!(
        r#"
admin:
  token: {ADMIN}
sandbox:
  workers: 1
plugins:
  counting:
    path: {misbehave}
    isolation:
      reuseFor: 3
hmsEvents:
  - event: count
    handler: counting
  - event: reject
    handler: counting
"#,
        misbehave = sync_engine_tests::component_path("misbehave").display(),
    );
    let engine = TestEngine::start(&yaml).await;
    let mut reasons = Vec::new();
    for event in ["count", "count", "count", "count", "reject", "count"] {
        let (status, answer) = post_json(&engine.url(&format!("/events/{event}")), "{}", &[]).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().unwrap().to_owned();
        if event == "count" {
            reasons.push(drop_reason(&engine, &id).await);
        } else {
            // The rejected event's run is recorded before the next event is sent.
            admin_until(&engine, ADMIN, &format!("/admin/events/{id}"), WAIT, |h| {
                h["event"]["runs"][0]["outcome"] == "rejected"
            })
            .await;
        }
    }
    // Three on the first instance, then a new one, which the rejected event discarded.
    assert_eq!(
        reasons,
        ["count=1", "count=2", "count=3", "count=1", "count=1"]
    );
    engine.stop().await;
}

/// The seed's plugins in every language pass the one fixtures file each shares, in the engine's
/// own sandbox (the JavaScript and Python plugins run the same files under their harnesses too).
#[test]
fn every_languages_seed_plugins_pass_the_shared_fixtures_in_the_engines_sandbox() {
    // No store is involved: the suite's second pass, on NATS, has nothing new to show here.
    if sync_engine_tests::on_nats() {
        return;
    }
    use sync_engine::sandbox::fixtures::Fixtures;
    use sync_engine::sandbox::{PluginSetup, Sandbox, SandboxOptions};

    let sandbox = Sandbox::new(SandboxOptions::default()).unwrap();
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    for plugin in ["tax-rate-outbound", "tax-rate-inbound"] {
        let text =
            std::fs::read_to_string(plugins.join(format!("{plugin}.fixtures.json"))).unwrap();
        let fixtures = Fixtures::parse(&text).unwrap();
        for package in [
            plugin.to_owned(),
            format!("{plugin}-js"),
            format!("{plugin}-py"),
        ] {
            let loaded = sandbox.load(&package, &component(&package)).unwrap();
            let results = fixtures.run(&loaded, &PluginSetup::default());
            assert!(results.len() >= 3, "{package}: {results:?}");
            let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
            assert!(failed.is_empty(), "{package}: {failed:?}");
        }
    }
}
