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

/// Runs the `sync-engine` command against `engine`'s admin API; answers what it printed, and
/// panics when it fails.
fn cli(engine: &TestEngine, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sync-engine-e2e"))
        .args(args)
        .args(["--url", &engine.url(""), "--token", ADMIN])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    printed
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

    // A handler is tried alike: its actions compared in order (here, the version itself).
    let (status, _) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.07, "taxYear": 2031}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    core.wait_for(1, Duration::from_secs(30)).await;
    let (status, handler) = try_candidate(
        &engine,
        "tax-rate-inbound",
        component("tax-rate-inbound"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{handler}");
    assert_eq!(
        (
            handler["summary"]["events"].as_u64(),
            handler["summary"]["same"].as_u64()
        ),
        (Some(1), Some(1)),
        "{handler:#}"
    );

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
    let file = test_components::component_path("tax-rate-rounded");
    let printed = cli(
        &engine,
        &["plugin", "try", "tax-rate-outbound", file.to_str().unwrap()],
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

/// The rate of the `i`th event of the shadow test, and whether the rounding version changes it:
/// every fourth has four decimals.
fn rate(i: usize) -> (String, bool) {
    if i.is_multiple_of(4) {
        (format!("0.{:04}", 1001 + i), true)
    } else {
        (format!("0.{:02}", 1 + i % 90), false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_under_load_agrees_on_unchanged_fields_and_reports_the_changed_ones() {
    let (state_api, core) = (Receiver::start().await, Receiver::start().await);
    let engine = engine(&state_api, &core).await;
    let shadow = "/admin/plugins/tax-rate-outbound/shadow";
    let (status, started) = send_component(
        &engine,
        ADMIN,
        reqwest::Method::PUT,
        shadow,
        component("tax-rate-rounded"),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["runs"], 0);
    let active = started["active"].as_str().unwrap().to_owned();
    assert_ne!(started["shadow"], active.as_str());

    // Load: 200 events from 8 senders at once.
    const EVENTS: usize = 200;
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let url = engine.url("/events/tax.rate.updated");
        senders.spawn(async move {
            let mut ids = Vec::new();
            for i in (sender..EVENTS).step_by(8) {
                let body = format!(r#"{{"rate": {}, "year": {}}}"#, rate(i).0, 2000 + i);
                let (status, answer) = post_json(&url, &body, &[]).await;
                assert_eq!(status, 202, "{answer}");
                ids.push((i, answer["id"].as_str().unwrap().to_owned()));
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(sent) = senders.join_next().await {
        ids.extend(sent.unwrap());
    }
    // Every event delivered once, as the active version maps it: the shadow delivered nothing.
    let received = state_api.wait_for(EVENTS, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_api.received().len(), EVENTS, "nothing more");
    let rates: BTreeSet<String> = received
        .iter()
        .map(|r| r.json()["newRates"].to_string())
        .collect();
    assert_eq!(
        rates.len(),
        (0..EVENTS)
            .map(|i| rate(i).0)
            .collect::<BTreeSet<_>>()
            .len()
    );
    assert!(
        rates.contains("0.1001"),
        "the active version's mapping was delivered"
    );

    // The shadow ran on each event (or counted it skipped), differing exactly where the rate
    // has more than two decimals, and only in `newRates`.
    let report = admin_until(&engine, ADMIN, shadow, Duration::from_secs(60), |r| {
        r["runs"].as_u64().unwrap() + r["skipped"].as_u64().unwrap() == EVENTS as u64
    })
    .await;
    assert_eq!(report["failed"], 0, "{report:#}");
    assert!(report["runs"].as_u64().unwrap() > 0, "{report:#}");
    for difference in report["latest"].as_array().unwrap() {
        assert_eq!(difference["verdict"], "different");
        let changes = difference["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "{difference:#}");
        assert_eq!(changes[0]["path"], "/0/body/newRates");
    }
    let (mut shadowed, mut differed) = (0, None);
    for (i, id) in &ids {
        let (_, answer) =
            admin_call(&engine, ADMIN, "GET", &format!("/admin/events/{id}"), None).await;
        let runs = answer["event"]["shadowRuns"].as_array().unwrap();
        let Some(run) = runs.first() else {
            continue; // skipped under load
        };
        shadowed += 1;
        let expected = if rate(*i).1 { "different" } else { "same" };
        assert_eq!(run["verdict"], expected, "event {i}: {run:#}");
        if rate(*i).1 {
            differed.get_or_insert_with(|| id.clone());
        }
        assert_eq!(run["activeHash"], active.as_str());
    }
    assert_eq!(shadowed, report["runs"].as_u64().unwrap());
    // `sync-engine events show` prints what the shadow made of a changed event.
    let id = differed.expect("the shadow ran on some changed event");
    let shown = cli(&engine, &["events", "show", &id]);
    assert!(
        shown.contains("  shadow tax-rate-outbound@") && shown.contains(": different\n"),
        "{shown}"
    );
    assert!(shown.contains("  ~ /0/body/newRates "), "{shown}");
    let agreement = report["agreementRate"].as_f64().unwrap();
    let same = report["same"].as_f64().unwrap();
    assert!((agreement - same / shadowed as f64).abs() < 1e-9);
    let metrics = sync_engine_tests::scrape(&engine).await;
    assert_eq!(
        sync_engine_tests::sample(
            &metrics,
            r#"sync_shadow_runs_total{plugin="tax-rate-outbound",verdict="different"}"#
        ),
        report["different"].as_f64().unwrap()
    );

    let printed = cli(&engine, &["plugin", "shadow-report", "tax-rate-outbound"]);
    assert!(
        printed.contains(&format!(
            "{} same, {} different, 0 failed",
            report["same"], report["different"]
        )),
        "{printed}"
    );
    assert!(printed.contains("  ~ /0/body/newRates "), "{printed}");

    // Promoted in one call, through the upload's checks: it is active, the shadow is gone,
    // and the next event is delivered rounded.
    let (status, promoted) =
        admin_call(&engine, ADMIN, "POST", &format!("{shadow}/promote"), None).await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["plugin"]["hash"], started["shadow"]);
    assert_eq!(promoted["plugin"]["replaced"], active.as_str());
    let (status, _) = admin_call(&engine, ADMIN, "GET", shadow, None).await;
    assert_eq!(status, 404);
    let (status, _) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 0.0725, "year": 2300}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let last = state_api
        .wait_for(EVENTS + 1, Duration::from_secs(30))
        .await;
    assert_eq!(last[EVENTS].json()["newRates"], json!(0.07));

    // Stopped in one call, answering what it did; then there is none to stop.
    let (status, _) = send_component(
        &engine,
        ADMIN,
        reqwest::Method::PUT,
        shadow,
        component("tax-rate-outbound"),
    )
    .await;
    assert_eq!(status, 200);
    let stopped = cli(&engine, &["plugin", "shadow-stop", "tax-rate-outbound"]);
    assert!(
        stopped.starts_with("stopped\ntax-rate-outbound: shadow "),
        "{stopped}"
    );
    let (status, missing) = admin_call(&engine, ADMIN, "DELETE", shadow, None).await;
    assert_eq!(status, 404, "{missing}");
    engine.stop().await;
}

/// Posts bus events `range` from 8 senders at once, each about the key `k{i % keys}` in the
/// year `2000 + i`; answers their ids by index.
async fn load(
    engine: &TestEngine,
    range: std::ops::Range<usize>,
    keys: usize,
) -> Vec<(usize, String)> {
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let url = engine.url("/events/tax.rate.updated");
        let range = range.clone();
        senders.spawn(async move {
            let mut ids = Vec::new();
            for i in range.skip(sender).step_by(8) {
                let body = format!(r#"{{"rate": 0.05, "year": {}}}"#, 2000 + i);
                let key = format!("k{}", i % keys);
                let (status, answer) = post_json(&url, &body, &[("hms-key", &key)]).await;
                assert_eq!(status, 202, "{answer}");
                ids.push((i, answer["id"].as_str().unwrap().to_owned()));
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(sent) = senders.join_next().await {
        ids.extend(sent.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_fails_a_tenth_of_its_events_is_rolled_back_and_nothing_is_lost() {
    let (state_api, core) = (Receiver::start().await, Receiver::start().await);
    let engine = engine(&state_api, &core).await;
    let canary = "/admin/plugins/tax-rate-outbound/canary";
    let (status, started) = send_component(
        &engine,
        ADMIN,
        reqwest::Method::PUT,
        &format!("{canary}?percent=50&minRuns=10&window=10m&failureMargin=0.05&p99Ratio=1000"),
        component("tax-rate-flaky"),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["state"], "running");
    assert_eq!(started["percent"], 50);
    let (flaky, active) = (
        started["canary"].as_str().unwrap().to_owned(),
        started["active"].as_str().unwrap().to_owned(),
    );
    // Kept in the store (so events can name it), not active.
    let (_, plugin) = admin_call(
        &engine,
        ADMIN,
        "GET",
        "/admin/plugins/tax-rate-outbound",
        None,
    )
    .await;
    assert_eq!(plugin["versions"].as_array().unwrap().len(), 2, "{plugin}");
    assert_eq!(plugin["active"], active.as_str());

    // Under load the canary fails one of its events in ten, the active version none: it is
    // rolled back on its own, saying why (for its failures: its run times, cold at first, are
    // let be here).
    const KEYS: usize = 40;
    let mut ids = load(&engine, 0..400, KEYS).await;
    let report = admin_until(&engine, ADMIN, canary, Duration::from_secs(60), |r| {
        r["state"] == "rolled-back"
    })
    .await;
    let why = report["why"].as_str().unwrap();
    assert!(why.starts_with("its failure rate was "), "{why}");
    assert!(
        report["canaryWindow"]["failed"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert_eq!(report["activeWindow"]["failed"], 0);
    let rolled_back_at = report["endedAt"].as_i64().unwrap();
    let printed = cli(&engine, &["plugin", "canary-report", "tax-rate-outbound"]);
    assert!(printed.contains("on 50% of keys"), "{printed}");
    assert!(printed.contains(", rolled-back since "), "{printed}");
    assert!(printed.contains(&format!(": {why}\n")), "{printed}");
    let metrics = sync_engine_tests::scrape(&engine).await;
    assert_eq!(
        sync_engine_tests::sample(
            &metrics,
            r#"sync_canary_rollbacks_total{plugin="tax-rate-outbound"}"#
        ),
        1.0
    );

    // The active version keeps delivering, every key again.
    ids.extend(load(&engine, 400..480, KEYS).await);

    // Nothing lost: what the canary failed is a dead letter; replayed, it runs on the active
    // version and is delivered. Nothing twice: one delivery per event.
    let failed = admin_until(
        &engine,
        ADMIN,
        "/admin/dead-letters",
        Duration::from_secs(30),
        |a| !a["deadLetters"].as_array().unwrap().is_empty(),
    )
    .await;
    for dead in failed["deadLetters"].as_array().unwrap() {
        assert_eq!(dead["kind"], "plugin");
        assert_eq!(dead["pluginHash"], flaky.as_str());
    }
    let (status, replayed) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/dead-letters/replay",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    let received = state_api.wait_for(ids.len(), Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        state_api.received().len(),
        ids.len(),
        "one delivery per event"
    );
    let keys: BTreeSet<String> = received
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), ids.len(), "no event delivered twice");

    // Each key stayed on one version while the canary ran; every run names its version.
    let mut versions: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let (mut on_canary, mut after) = (0, 0);
    for (i, id) in &ids {
        let (_, answer) =
            admin_call(&engine, ADMIN, "GET", &format!("/admin/events/{id}"), None).await;
        let first = &answer["event"]["runs"][0];
        let hash = first["pluginHash"].as_str().unwrap().to_owned();
        assert!(hash == flaky || hash == active, "{first}");
        if first["ranAt"].as_i64().unwrap() < rolled_back_at {
            on_canary += usize::from(hash == flaky);
            versions
                .entry(format!("k{}", i % KEYS))
                .or_default()
                .insert(hash);
        } else if *i >= 400 {
            after += 1;
            assert_eq!(hash, active, "after the rollback, the active version");
        }
    }
    assert!(on_canary > 0);
    assert_eq!(after, 80);
    for (key, hashes) in &versions {
        assert_eq!(hashes.len(), 1, "{key} ran on {hashes:?}");
    }

    // The active version itself is refused as a canary, and not stored again.
    let (_, before) = admin_call(
        &engine,
        ADMIN,
        "GET",
        "/admin/plugins/tax-rate-outbound",
        None,
    )
    .await;
    let (status, _) = send_component(
        &engine,
        ADMIN,
        reqwest::Method::PUT,
        canary,
        component("tax-rate-outbound"),
    )
    .await;
    assert_eq!(status, 409);
    let (_, after_refusal) = admin_call(
        &engine,
        ADMIN,
        "GET",
        "/admin/plugins/tax-rate-outbound",
        None,
    )
    .await;
    assert_eq!(before["versions"], after_refusal["versions"]);

    // A canary can be resized, stopped and promoted in one call each.
    let (status, _) = admin_call(
        &engine,
        ADMIN,
        "PATCH",
        canary,
        Some(json!({"percent": 20})),
    )
    .await;
    assert_eq!(status, 404, "none runs now");
    let (status, _) = send_component(
        &engine,
        ADMIN,
        reqwest::Method::PUT,
        canary,
        component("tax-rate-rounded"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, resized) = admin_call(
        &engine,
        ADMIN,
        "PATCH",
        canary,
        Some(json!({"percent": 90})),
    )
    .await;
    assert_eq!(
        (status, resized["percent"].as_u64()),
        (200, Some(90)),
        "{resized}"
    );
    let (status, _) = admin_call(
        &engine,
        ADMIN,
        "PATCH",
        canary,
        Some(json!({"percent": 100})),
    )
    .await;
    assert_eq!(status, 400, "every key is a promotion");
    // Its stored version cannot be deleted while it runs.
    let rounded = resized["canary"].as_str().unwrap();
    let (status, _) = admin_call(
        &engine,
        ADMIN,
        "DELETE",
        &format!("/admin/plugins/tax-rate-outbound/versions/{rounded}"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) =
        admin_call(&engine, ADMIN, "PATCH", canary, Some(json!({"percent": 0}))).await;
    assert_eq!(status, 400);
    let (status, promoted) =
        admin_call(&engine, ADMIN, "POST", &format!("{canary}/promote"), None).await;
    assert_eq!(status, 200, "{promoted}");
    let (_, report) = admin_call(&engine, ADMIN, "GET", canary, None).await;
    assert_eq!(report["state"], "promoted");
    assert_eq!(report["active"], report["canary"]);
    let (status, _) = admin_call(&engine, ADMIN, "DELETE", canary, None).await;
    assert_eq!(status, 404);
    engine.stop().await;
}

/// Entity keys `k0`, `k1`, ... whose bucket is below `percent` (a canary's) or not (the active
/// version's), `n` of them.
fn keys_on(canary: bool, percent: u8, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| (sync_engine::pipeline::canary::bucket(k) < percent) == canary)
        .take(n)
        .collect()
}

/// Posts one bus event per key, each in `year`, from 8 senders at once.
async fn post_keys(engine: &TestEngine, keys: Vec<String>, year: u32) {
    let mut senders = tokio::task::JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(8)) {
        let (url, chunk) = (engine.url("/events/tax.rate.updated"), chunk.to_vec());
        senders.spawn(async move {
            for key in chunk {
                let body = format!(r#"{{"rate": 0.05, "year": {year}}}"#);
                let (status, answer) = post_json(&url, &body, &[("hms-key", &key)]).await;
                assert_eq!(status, 202, "{answer}");
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_under_a_burst_fails_no_more_than_its_min_runs_and_those_in_flight() {
    const MIN_RUNS: usize = 20;
    const WORKERS: usize = 2;
    let (state_api, core) = (Receiver::start().await, Receiver::start().await);
    let yaml = format!(
        "{}admin:\n  token: {ADMIN}\nsandbox:\n  workers: {WORKERS}\n",
        seed_config(&state_api.url("/rates"), &core.url("/hms"))
    );
    let engine = TestEngine::start(&yaml).await;
    let canary = "/admin/plugins/tax-rate-outbound/canary";
    let (status, started) = send_component(
        &engine,
        ADMIN,
        reqwest::Method::PUT,
        &format!("{canary}?percent=50&minRuns={MIN_RUNS}&window=10m&p99Ratio=1000"),
        component("tax-rate-flaky"),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let flaky = started["canary"].as_str().unwrap().to_owned();

    // The active version runs first, enough to be judged against (its keys' years end in 7
    // too: it maps them).
    post_keys(&engine, keys_on(false, 50, 30), 2027).await;
    state_api.wait_for(30, Duration::from_secs(30)).await;
    // Then a burst on the canary's keys, every one in a year it fails: rolled back at its
    // MIN_RUNS-th failure, the runs already in flight aside.
    post_keys(&engine, keys_on(true, 50, 300), 2027).await;
    let report = admin_until(&engine, ADMIN, canary, Duration::from_secs(60), |r| {
        r["state"] == "rolled-back"
    })
    .await;
    assert!(
        report["why"]
            .as_str()
            .unwrap()
            .starts_with("its failure rate was 100.0% against 0.0%"),
        "{report:#}"
    );
    // Every event ends: the canary's failures are dead letters, the rest delivered.
    let dead = admin_until(
        &engine,
        ADMIN,
        "/admin/dead-letters?limit=1000",
        Duration::from_secs(30),
        |a| a["deadLetters"].as_array().unwrap().len() + state_api.received().len() >= 330,
    )
    .await;
    let failed = dead["deadLetters"].as_array().unwrap();
    assert!(
        failed.iter().all(|d| d["pluginHash"] == flaky.as_str()),
        "{failed:?}"
    );
    assert!(
        (MIN_RUNS..=MIN_RUNS + WORKERS).contains(&failed.len()),
        "the canary failed {} events; at most {MIN_RUNS} and {WORKERS} in flight",
        failed.len()
    );
    engine.stop().await;
}

/// A metric's value on the engine's metrics page.
async fn metric(engine: &TestEngine, series: &str) -> f64 {
    sync_engine_tests::sample(&sync_engine_tests::scrape(engine).await, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_ends_with_its_client_holds_its_lock_until_then_and_keeps_to_its_budget() {
    const EVENTS: usize = 40;
    let (state_api, core) = (Receiver::start().await, Receiver::start().await);
    // The candidate never ends on these events: each takes the plugin's deadline.
    let yaml = format!(
        "{}admin:\n  token: {ADMIN}\nsandbox:\n  limits:\n    timeout: 250ms\n",
        seed_config(&state_api.url("/rates"), &core.url("/hms"))
    );
    let engine = TestEngine::start(&yaml).await;
    for i in 0..EVENTS {
        let body = format!(r#"{{"rate": 0.05, "year": {}, "stuck": true}}"#, 2000 + i);
        let (status, _) = post_json(&engine.url("/events/tax.rate.updated"), &body, &[]).await;
        assert_eq!(status, 202);
    }
    state_api.wait_for(EVENTS, Duration::from_secs(30)).await;
    let path = format!("/admin/plugins/tax-rate-outbound/try?limit={EVENTS}");

    // A dry run of 10 s whose client leaves after one.
    let abandoned = tokio::spawn({
        let url = engine.url(&path);
        async move {
            sync_engine_tests::http()
                .post(url)
                .bearer_auth(ADMIN)
                .header("content-type", "application/wasm")
                .timeout(Duration::from_secs(1))
                .body(component("tax-rate-flaky"))
                .send()
                .await
        }
    });
    sync_engine_tests::metric_until(
        &engine,
        "sync_dry_runs_running",
        Duration::from_secs(10),
        |running| running == 1.0,
    )
    .await;
    // Another is refused while it works.
    let (status, refused) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-flaky"),
        "",
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "dry-run-running");
    let gone = abandoned.await.unwrap().expect_err("the client gave up");
    assert!(gone.is_timeout(), "{gone}");
    // Its work ends at the event in hand (within the plugin's 250 ms deadline), and no event
    // is tried after it.
    sync_engine_tests::metric_until(
        &engine,
        "sync_dry_runs_running",
        Duration::from_secs(2),
        |running| running == 0.0,
    )
    .await;
    let tried = metric(&engine, "sync_dry_run_events_total").await;
    assert!(tried < 10.0, "{tried} events tried in the client's second");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(metric(&engine, "sync_dry_run_events_total").await, tried);

    // Then the next one runs.
    let (status, one) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-flaky"),
        "limit=1",
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["summary"]["events"], 1);
    assert_eq!(one["summary"]["failed"], 1, "{one}");
    assert!(one.get("stopped").is_none(), "{one}");

    // Past its budget it stops, and reports what it tried.
    let (status, partial) = try_candidate(
        &engine,
        "tax-rate-outbound",
        component("tax-rate-flaky"),
        &format!("limit={EVENTS}&budget=1s"),
    )
    .await;
    assert_eq!(status, 200, "{partial}");
    let stopped = partial["stopped"].as_str().unwrap();
    assert!(
        stopped.starts_with("its time budget of 1s ran out after "),
        "{stopped}"
    );
    assert!(
        stopped.ends_with(&format!(" of {EVENTS} events")),
        "{stopped}"
    );
    assert_eq!(partial["summary"]["selected"], EVENTS);
    let events = partial["summary"]["events"].as_u64().unwrap();
    assert!((1..EVENTS as u64).contains(&events), "{partial}");
    assert_eq!(partial["events"].as_array().unwrap().len() as u64, events);
    let printed = cli(
        &engine,
        &[
            "plugin",
            "try",
            "tax-rate-outbound",
            test_components::component_path("tax-rate-flaky")
                .to_str()
                .unwrap(),
            "--budget",
            "1s",
        ],
    );
    assert!(
        printed.contains("stopped early: its time budget of 1s ran out"),
        "{printed}"
    );
    for budget in ["0s", "11m", "soon"] {
        let (status, answer) = try_candidate(
            &engine,
            "tax-rate-outbound",
            component("tax-rate-flaky"),
            &format!("budget={budget}"),
        )
        .await;
        assert_eq!(status, 400, "{budget}: {answer}");
    }
    engine.stop().await;
}
