//! Shipping a new transformer version without fear: a dry run of a candidate over the stored
//! history of its plugin's routes, against what the active version made then. It reports
//! exactly the events the changed mapping affects, with the difference, and changes nothing:
//! no delivery, no stored version, no activation.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use sync_engine_tests::{
    Receiver, TestEngine, admin_call, admin_until, post_json, seed_config, send_component,
};
use test_components::component;

const ADMIN: &str = "rollout-admin-token-0123456789";

async fn engine(state_api: &Receiver, core: &Receiver) -> TestEngine {
    let yaml = format!(
        "{}admin:\n  token: {ADMIN}\n",
        seed_config(&state_api.url("/rates"), &core.url("/hms"))
    );
    TestEngine::start(&yaml).await
}

/// `POST /admin/plugins/{name}/try?{query}` with `bytes` as the candidate.
async fn try_candidate(
    engine: &TestEngine,
    name: &str,
    bytes: Vec<u8>,
    query: &str,
) -> (u16, Value) {
    let path = format!("/admin/plugins/{name}/try?{query}");
    send_component(engine, ADMIN, reqwest::Method::POST, &path, bytes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_exactly_the_events_a_changed_mapping_affects() {
    let (state_api, core) = (Receiver::start().await, Receiver::start().await);
    let engine = engine(&state_api, &core).await;
    // Rates with two decimals or fewer map the same in the rounding candidate; the others not.
    let rates = [
        ("0.07", false),
        ("0.0725", true),
        ("5", false),
        ("0.1", false),
        ("0.0615", true),
        ("0.05", false),
        ("0.333", true),
    ];
    let mut changed = BTreeSet::new();
    let mut all = Vec::new();
    for (i, (rate, differs)) in rates.iter().enumerate() {
        let (status, answer) = post_json(
            &engine.url("/events/tax.rate.updated"),
            &format!(r#"{{"rate": {rate}, "year": {}}}"#, 2030 + i),
            &[],
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().unwrap().to_owned();
        if *differs {
            changed.insert(id.clone());
        }
        all.push(id);
    }
    // One the active version refused (no rate): the candidate refuses it alike.
    let (status, _) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"year": 2040}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    state_api
        .wait_for(rates.len(), Duration::from_secs(30))
        .await;
    admin_until(
        &engine,
        ADMIN,
        "/admin/dead-letters",
        Duration::from_secs(30),
        |a| a["deadLetters"].as_array().is_some_and(|d| d.len() == 1),
    )
    .await;

    let (status, trial) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-rounded"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{trial}");
    let summary = &trial["summary"];
    assert_eq!(
        (
            summary["events"].as_u64(),
            summary["same"].as_u64(),
            summary["different"].as_u64(),
            summary["failed"].as_u64(),
            summary["skipped"].as_u64()
        ),
        (Some(8), Some(5), Some(3), Some(0), Some(0)),
        "{trial:#}"
    );
    assert!(summary["candidateP99Ms"].as_f64().unwrap() > 0.0);
    assert!(summary["thenP50Ms"].as_f64().unwrap() > 0.0);
    let events = trial["events"].as_array().unwrap();
    let different: BTreeSet<String> = events
        .iter()
        .filter(|e| e["verdict"] == "different")
        .map(|e| e["eventId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        different, changed,
        "exactly the events whose rate is rounded"
    );
    let active = trial["active"].as_str().unwrap();
    assert_ne!(trial["candidate"], active);
    for event in events.iter().filter(|e| e["verdict"] == "different") {
        assert_eq!(event["thenVersion"], active);
        let changes = event["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "{event:#}");
        assert_eq!(changes[0]["op"], "replace");
        assert_eq!(changes[0]["path"], "/0/body/newRates");
    }
    let rounded = events
        .iter()
        .find(|e| e["eventId"] == all[1].as_str())
        .unwrap();
    assert_eq!(rounded["changes"][0]["before"], json!(0.0725));
    assert_eq!(rounded["changes"][0]["after"], json!(0.07));

    // Newest first, as many as asked, within the times asked.
    let (_, newest) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-rounded"),
        "limit=2",
    )
    .await;
    let newest: Vec<&str> = newest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[1], all[rates.len() - 1].as_str());
    let (_, later) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-rounded"),
        "since=4102444800000",
    )
    .await;
    assert_eq!(later["summary"]["events"], 0);

    // The same version tried: nothing differs.
    let (_, itself) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-outbound"),
        "",
    )
    .await;
    assert_eq!(itself["summary"]["same"], 8, "{itself:#}");

    // What is not a version of this plugin is refused, saying why.
    let (status, refused) =
        try_candidate(&engine, "tax-rate-outbound", b"not wasm".to_vec(), "").await;
    assert_eq!(status, 422, "{refused}");
    let (status, _) = try_candidate(
        &engine,
        "tax-rate-inbound",
        component("tax-rate-rounded"),
        "",
    )
    .await;
    assert_eq!(status, 422, "a transformer is not a version of a handler");
    let (status, _) =
        try_candidate(&engine, "no-such-plugin", component("tax-rate-rounded"), "").await;
    assert_eq!(status, 404);
    let (status, _) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-rounded"),
        "limit=0",
    )
    .await;
    assert_eq!(status, 400);

    // The command line says the same, one line per change.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sync-engine-e2e"))
        .args(["plugin", "try", "tax-rate-outbound"])
        .arg(test_components::component_path("tax-rate-rounded"))
        .args(["--url", &engine.url(""), "--token", ADMIN])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains(&format!("different {} (tax.rate.updated)", all[1])),
        "{printed}"
    );
    assert!(
        printed.contains("  ~ /0/body/newRates 0.0725 -> 0.07\n"),
        "{printed}"
    );
    assert!(
        printed.contains("on 8 event(s): 5 same, 3 different, 0 failed, 0 skipped"),
        "{printed}"
    );

    // Nothing was delivered, stored or activated by the dry runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_api.received().len(), rates.len());
    let (_, plugin) = admin_call(
        &engine,
        ADMIN,
        "GET",
        "/admin/plugins/tax-rate-outbound",
        None,
    )
    .await;
    assert_eq!(plugin["versions"].as_array().unwrap().len(), 1, "{plugin}");
    assert_eq!(plugin["active"], active);
    engine.stop().await;
}
