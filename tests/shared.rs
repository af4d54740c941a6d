//! Several engines on one NATS JetStream log (`store.kind: nats`), against real nats-servers:
//! an idempotency key posted at two engines is one event, every engine tells the same story,
//! a swap or rollback on one reaches the others, a refused upload changes none, concurrent
//! replays deliver once, shuffled versions end at the highest, the work moves to another engine
//! when its holder stops or is killed under load, and a 3-node cluster loses nothing when its
//! stream leader is killed.

use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use sync_engine_tests::{
    EngineProcess, NatsServer, Receiver, TestEngine, admin_call, admin_until, component,
    component_path, post_json, scrape, spawn_engine, upload_component, wait_healthy,
};

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-secret-for-tests";
const ENGINE: &str = env!("CARGO_BIN_EXE_sync-engine-e2e");

/// The `store` section of an engine on the log `prefix` at `servers`.
fn store(servers: &[String], prefix: &str, replicas: usize) -> String {
    format!(
        r#"
store:
  kind: nats
  nats:
    servers: [{}]
    prefix: {prefix}
    replicas: {replicas}
    lease: 2s
"#,
        servers.join(", ")
    )
}

/// The plugin `rates` (first `swap-one`) on `tax.rate.updated`, delivered to `url`, with the
/// `version` conflict strategy (key and version from the `hms-key` and `hms-version` headers).
fn config(url: &str, store: &str) -> String {
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
    timeout: 2s
retry:
  initialDelay: 50ms
  maxDelay: 500ms
  maxAttempts: 50
hmsEvents:
  - event: tax.rate.updated
    handler: rates
    destination: state-api
    conflict:
      strategy: version
{store}"#,
        one = component_path("swap-one").display(),
    )
}

/// Two engines on one log, on `server`.
async fn two_engines(server: &NatsServer, url: &str) -> (TestEngine, TestEngine) {
    let yaml = config(url, &store(&[server.url()], "two", 1));
    let a = TestEngine::start(&yaml).await;
    let b = TestEngine::start(&yaml).await;
    (a, b)
}

fn hash(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Posts a rate for `key` at `version` (its body says the version too).
async fn post(engine: &TestEngine, key: &str, version: u64, extra: &[(&str, &str)]) -> Value {
    let body = json!({"rate": version, "year": 2025}).to_string();
    let version_text = version.to_string();
    let mut headers = vec![("hms-key", key), ("hms-version", version_text.as_str())];
    headers.extend_from_slice(extra);
    let (status, answer) =
        post_json(&engine.url("/events/tax.rate.updated"), &body, &headers).await;
    assert_eq!(status, 202, "{answer}");
    answer
}

async fn admin(engine: &TestEngine, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin_call(engine, ADMIN, method, path, body).await
}

/// Waits until `check` holds for the engine's answer to `GET path`.
async fn until(engine: &TestEngine, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    admin_until(engine, ADMIN, path, WAIT, check).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_at_two_engines_is_one_event_and_both_tell_its_story_alike() {
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let (a, b) = two_engines(&server, &receiver.url("/rates")).await;
    let first = post(&a, "rates/2025", 1, &[("idempotency-key", "once")]).await;
    let second = post(&b, "rates/2025", 1, &[("idempotency-key", "once")]).await;
    assert_eq!(first["status"], "accepted");
    assert_eq!(second["status"], "duplicate");
    assert_eq!(first["id"], second["id"]);
    let id = first["id"].as_str().unwrap();
    receiver.wait_for(1, WAIT).await;
    let path = format!("/admin/events/{id}");
    let delivered = |h: &Value| h["event"]["actions"][0]["state"] == "delivered";
    let (story_a, story_b) = (
        until(&a, &path, delivered).await,
        until(&b, &path, delivered).await,
    );
    assert_eq!(story_a, story_b);
    assert_eq!(receiver.received().len(), 1, "delivered once");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_at_one_engine_serves_at_the_other_and_a_rollback_there_comes_back() {
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let (a, b) = two_engines(&server, &receiver.url("/rates")).await;
    let (one, two) = (hash(&component("swap-one")), hash(&component("swap-two")));
    let active = |hash: String| move |p: &Value| p["active"] == hash.as_str();

    let (status, swap) = upload_component(&a, ADMIN, "rates", component("swap-two")).await;
    assert_eq!(status, 200, "{swap}");
    until(&b, "/admin/plugins/rates", active(two.clone())).await;
    // Events taken at either engine run on the new version, and say so.
    post(&b, "k1", 1, &[]).await;
    post(&a, "k2", 1, &[]).await;
    let received = receiver.wait_for(2, WAIT).await;
    assert!(received.iter().all(|r| r.json()["version"] == "two"));
    let id = post(&b, "k3", 1, &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let story = until(&a, &format!("/admin/events/{id}"), |h| {
        h["event"]["runs"][0]["pluginHash"].is_string()
    })
    .await;
    assert_eq!(
        story["event"]["runs"][0]["pluginHash"],
        two.as_str(),
        "{story}"
    );

    let (status, back) = admin(&b, "POST", "/admin/plugins/rates/rollback", None).await;
    assert_eq!(status, 200, "{back}");
    until(&a, "/admin/plugins/rates", active(one.clone())).await;

    // A refused upload changes neither engine.
    let (status, refused) = upload_component(&b, ADMIN, "rates", component("wrong-shape")).await;
    assert!((400..500).contains(&status), "{status}: {refused}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for engine in [&a, &b] {
        let (_, plugin) = admin(engine, "GET", "/admin/plugins/rates", None).await;
        assert_eq!(plugin["active"], one.as_str(), "{plugin}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_swaps_at_two_engines_at_once_cannot_both_win() {
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let (a, b) = two_engines(&server, &receiver.url("/rates")).await;
    let (two, other) = (
        hash(&component("swap-two")),
        hash(&component("tax-rate-outbound")),
    );
    // Both checked against `swap-one`, the active version, at once.
    let ((status_a, swap_a), (status_b, swap_b)) = tokio::join!(
        upload_component(&a, ADMIN, "rates", component("swap-two")),
        upload_component(&b, ADMIN, "rates", component("tax-rate-outbound"))
    );
    let winner = match (status_a, status_b) {
        // One after the other: the second replaced the first, not the version both began from.
        (200, 200) => {
            let (first, second) = if swap_b["plugin"]["replaced"] == two.as_str() {
                (&swap_a, &swap_b)
            } else {
                (&swap_b, &swap_a)
            };
            assert_eq!(
                second["plugin"]["replaced"], first["plugin"]["hash"],
                "{swap_a} {swap_b}"
            );
            second["plugin"]["hash"].as_str().unwrap().to_owned()
        }
        (200, 422) | (422, 200) => {
            let (won, lost) = if status_a == 200 {
                (&swap_a, &swap_b)
            } else {
                (&swap_b, &swap_a)
            };
            assert!(
                lost.to_string()
                    .contains("changed while this one was checked"),
                "{lost}"
            );
            won["plugin"]["hash"].as_str().unwrap().to_owned()
        }
        other => panic!("{other:?}: {swap_a} {swap_b}"),
    };
    assert!(winner == two || winner == other);
    for engine in [&a, &b] {
        until(engine, "/admin/plugins/rates", |p| {
            p["active"] == winner.as_str()
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_versions_of_one_key_at_two_engines_end_at_the_highest_and_never_go_back() {
    const VERSIONS: u64 = 40;
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let (a, b) = two_engines(&server, &receiver.url("/rates")).await;
    let mut versions: Vec<u64> = (1..=VERSIONS).collect();
    // A fixed shuffle: each version goes to one engine or the other, out of order.
    versions.sort_by_key(|v| (v * 7919) % 41);
    let (at_a, at_b): (Vec<u64>, Vec<u64>) = versions.iter().partition(|v| *v % 2 == 0);
    let (a_ref, b_ref) = (&a, &b);
    tokio::join!(
        async move {
            for v in at_a {
                post(a_ref, "rates/2025", v, &[]).await;
            }
        },
        async move {
            for v in at_b {
                post(b_ref, "rates/2025", v, &[]).await;
            }
        }
    );
    let received = receiver
        .wait_until(WAIT, |r| {
            r.last()
                .is_some_and(|last| last.json()["rate"] == json!(VERSIONS))
        })
        .await;
    let delivered: Vec<u64> = received
        .iter()
        .map(|r| r.json()["rate"].as_u64().unwrap())
        .collect();
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "a delivered version never goes back: {delivered:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_from_two_engines_at_once_deliver_once() {
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    receiver.set_default_status(400);
    let (a, b) = two_engines(&server, &receiver.url("/rates")).await;
    post(&a, "k", 1, &[]).await;
    until(&b, "/admin/dead-letters", |d| {
        d["deadLetters"].as_array().is_some_and(|l| l.len() == 1)
    })
    .await;
    receiver.set_default_status(200);
    let replay = Some(json!({"destination": "state-api"}));
    let ((_, at_a), (_, at_b)) = tokio::join!(
        admin(&a, "POST", "/admin/dead-letters/replay", replay.clone()),
        admin(&b, "POST", "/admin/dead-letters/replay", replay)
    );
    let replayed =
        at_a["replayed"].as_array().unwrap().len() + at_b["replayed"].as_array().unwrap().len();
    assert_eq!(replayed, 1, "{at_a} {at_b}");
    receiver
        .wait_until(WAIT, |r| r.iter().any(|r| r.status == 200))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ok = receiver
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .count();
    assert_eq!(ok, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_moves_to_the_other_engine_when_its_holder_stops() {
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let (a, b) = two_engines(&server, &receiver.url("/rates")).await;
    post(&b, "k", 1, &[]).await;
    receiver.wait_for(1, WAIT).await;
    // `a` started first and holds the work lease; it gives it back as it stops.
    let held = |page: &str| sync_engine_tests::sample(page, "sync_work_lease_held");
    assert_eq!(held(&scrape(&a).await), 1.0);
    assert_eq!(held(&scrape(&b).await), 0.0);
    let stopped = Instant::now();
    a.stop().await;
    post(&b, "k", 2, &[]).await;
    receiver.wait_for(2, WAIT).await;
    assert_eq!(held(&scrape(&b).await), 1.0);
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "the other engine delivered {:?} after the holder began to stop",
            stopped.elapsed()
        );
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_trimmed_behind_a_snapshot_and_a_new_engine_starts_from_it() {
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let yaml = config(
        &receiver.url("/rates"),
        &format!(
            "{}    snapshotInterval: 1s\n",
            store(&[server.url()], "trim", 1)
        ),
    );
    let a = TestEngine::start(&yaml).await;
    let b = TestEngine::start(&yaml).await;
    let first = post(&a, "k", 1, &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for version in 2..=20 {
        post(&b, "k", version, &[]).await;
    }
    receiver
        .wait_until(WAIT, |r| {
            r.last().is_some_and(|l| l.json()["rate"] == json!(20))
        })
        .await;
    // Both engines report their positions every 5 s; the holder trims every second.
    let connection = sync_engine::store::nats::Connection::open(&sync_engine_tests::nats_config(
        &[server.url()],
        "trim",
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while connection.log_first().await.unwrap() <= 1 {
        assert!(Instant::now() < deadline, "the log was never trimmed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = TestEngine::start(&yaml).await;
    let path = format!("/admin/events/{first}");
    let (status, at_a) = admin(&a, "GET", &path, None).await;
    assert_eq!(status, 200, "{at_a}");
    let at_c = until(&c, &path, |h| h == &at_a).await;
    assert_eq!(at_c["event"]["actions"][0]["state"], "delivered");
    for engine in [a, b, c] {
        engine.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_partitions_every_engine_processes_and_delivers_and_each_key_stays_in_order() {
    const KEYS: u64 = 16;
    const VERSIONS: u64 = 15;
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    receiver.set_failure_rate(0.2);
    let yaml = config(
        &receiver.url("/rates"),
        &format!("{}    partitions: 8\n", store(&[server.url()], "parts", 1)),
    );
    let a = TestEngine::start(&yaml).await;
    let b = TestEngine::start(&yaml).await;
    // Both engines take their share of the partitions.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut accepted = Vec::new();
    for version in 1..=VERSIONS {
        for key in 0..KEYS {
            let engine = if key % 2 == 0 { &a } else { &b };
            let key = format!("rates/{key}");
            let id = post(engine, &key, version, &[]).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
            accepted.push((id, key, version));
        }
    }
    let expected = KEYS as usize;
    receiver
        .wait_until(WAIT, |r| {
            r.iter()
                .filter(|r| r.status == 200 && r.json()["rate"] == json!(VERSIONS))
                .count()
                >= expected
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_deliveries(&receiver, &accepted);
    let processed = |page: &str| {
        page.lines()
            .filter(|l| l.starts_with("sync_events_processed_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let delivered = |page: &str| {
        page.lines()
            .filter(|l| {
                l.starts_with("sync_deliveries_total") && l.contains("outcome=\"delivered\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let (page_a, page_b) = (scrape(&a).await, scrape(&b).await);
    let (at_a, at_b) = (processed(&page_a), processed(&page_b));
    assert!(
        at_a > 0.0 && at_b > 0.0,
        "processed at a: {at_a}, at b: {at_b}"
    );
    assert_eq!(at_a + at_b, accepted.len() as f64);
    let (sent_a, sent_b) = (delivered(&page_a), delivered(&page_b));
    assert!(
        sent_a > 0.0 && sent_b > 0.0,
        "delivered by a: {sent_a}, by b: {sent_b}"
    );
    a.stop().await;
    b.stop().await;
}

/// An engine process on the log at `servers`, listening on a free port; answers it and its URL.
fn engine_process(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    store: &str,
) -> (EngineProcess, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{port}\n{}\n  path: {}\n",
            config(url, store),
            dir.join(name).display()
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    (
        spawn_engine(ENGINE, &path, &log, "info"),
        format!("http://127.0.0.1:{port}"),
    )
}

/// Posts `version` of `key` at `url` until it is accepted (503 while the store is unavailable
/// is answered by sending again, with the same idempotency key); answers the event id.
async fn post_until_accepted(url: &str, key: &str, version: u64) -> String {
    let body = json!({"rate": version, "year": 2025}).to_string();
    let idempotency = format!("{key}-{version}");
    let version = version.to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, answer) = post_json(
            &format!("{url}/events/tax.rate.updated"),
            &body,
            &[
                ("hms-key", key),
                ("hms-version", &version),
                ("idempotency-key", &idempotency),
            ],
        )
        .await;
        if status == 202 {
            return answer["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{status}: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every accepted event was delivered (by its idempotency key, which starts with the event's
/// id), and each key's versions arrived in the order they were posted; answers how many
/// requests were repeats.
fn check_deliveries(receiver: &Receiver, accepted: &[(String, String, u64)]) -> usize {
    let received = receiver.received();
    let delivered: Vec<(String, u64)> = received
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let key = r.header("idempotency-key").unwrap().to_owned();
            (key, r.json()["rate"].as_u64().unwrap())
        })
        .collect();
    let ids: HashSet<&str> = delivered
        .iter()
        .map(|(key, _)| key.split('.').next().unwrap())
        .collect();
    for (id, key, version) in accepted {
        assert!(
            ids.contains(id.as_str()),
            "{key} v{version} ({id}) was never delivered"
        );
    }
    // Per key, the first delivery of each version in posting order.
    let mut first: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let key_of: HashMap<&str, &str> = accepted
        .iter()
        .map(|(id, key, _)| (id.as_str(), key.as_str()))
        .collect();
    for (idempotency, version) in &delivered {
        let id = idempotency.split('.').next().unwrap();
        if seen.insert(idempotency.clone()) {
            first
                .entry(key_of[id].to_owned())
                .or_default()
                .push(*version);
        }
    }
    for (key, versions) in &first {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{key}: delivered out of order: {versions:?}"
        );
    }
    delivered.len() - seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_engines_killed_under_load_with_a_flapping_destination_loses_nothing() {
    const KEYS: u64 = 8;
    const VERSIONS: u64 = 30;
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    receiver.set_failure_rate(0.3);
    let dir = tempfile::tempdir().unwrap();
    // Processing shared over 4 partitions: the killed engine held the work lease and some of
    // them; the other takes over both.
    let store = format!("{}    partitions: 4\n", store(&[server.url()], "killed", 1));
    let (mut a, url_a) = engine_process(dir.path(), "a", &receiver.url("/rates"), &store);
    wait_healthy(&url_a, WAIT).await;
    let (_b, url_b) = engine_process(dir.path(), "b", &receiver.url("/rates"), &store);
    wait_healthy(&url_b, WAIT).await;
    let mut accepted = Vec::new();
    for version in 1..=VERSIONS {
        if version == VERSIONS / 2 {
            // `a` holds the work lease (it started first): killed mid-stream, with requests
            // in flight and retries scheduled.
            a.kill().unwrap();
            a.wait().unwrap();
        }
        for key in 0..KEYS {
            let key = format!("rates/{key}");
            let url = if version < VERSIONS / 2 && key.ends_with(['0', '2', '4', '6']) {
                &url_a
            } else {
                &url_b
            };
            let id = post_until_accepted(url, &key, version).await;
            accepted.push((id, key, version));
        }
    }
    let last_versions = KEYS as usize;
    receiver
        .wait_until(Duration::from_secs(60), |r| {
            r.iter()
                .filter(|r| r.status == 200 && r.json()["rate"] == json!(VERSIONS))
                .count()
                >= last_versions
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repeats = check_deliveries(&receiver, &accepted);
    // The killed engine, started again on its replica, catches up and tells the same story.
    let (_a, url_a) = engine_process(dir.path(), "a", &receiver.url("/rates"), &store);
    wait_healthy(&url_a, WAIT).await;
    let (last, _, _) = accepted.last().unwrap();
    let story = |url: String| {
        let path = format!("{url}/admin/events/{last}");
        async move {
            let response = sync_engine_tests::http()
                .get(path)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let (at_a, at_b) = (story(url_a.clone()).await, story(url_b.clone()).await);
        if at_a == at_b && at_b["event"]["actions"][0]["state"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "{at_a}\n{at_b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{} events accepted, all delivered in order per key; {repeats} repeated deliveries after the kill",
            accepted.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_of_a_three_node_cluster_killed_loses_nothing() {
    const EVENTS: u64 = 60;
    let mut cluster = NatsServer::cluster();
    let servers: Vec<String> = cluster.iter().map(NatsServer::url).collect();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store_yaml = store(&servers, "ha", 3);
    // The cluster elects its leaders first: the log (3 replicas) can be made once it has.
    let config = sync_engine_tests::nats_config(&servers, "ha");
    let config = sync_engine::config::NatsConfig {
        replicas: 3,
        ..config
    };
    let deadline = Instant::now() + WAIT;
    let connection = loop {
        match sync_engine::store::nats::Connection::open(&config).await {
            Ok(connection) => break connection,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the cluster never took the log: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_engine, url) = engine_process(dir.path(), "e", &receiver.url("/rates"), &store_yaml);
    wait_healthy(&url, WAIT).await;
    let mut accepted = Vec::new();
    for version in 1..=EVENTS {
        if version == EVENTS / 3 {
            let leader = connection.log_leader().await.unwrap().expect("a leader");
            let server = cluster.iter_mut().find(|s| s.name == leader).unwrap();
            server.kill();
        }
        let key = format!("rates/{}", version % 4);
        accepted.push((post_until_accepted(&url, &key, version).await, key, version));
    }
    receiver
        .wait_until(Duration::from_secs(60), |r| {
            let ids: HashSet<&str> = r
                .iter()
                .filter(|r| r.status == 200)
                .filter_map(|r| r.header("idempotency-key")?.split('.').next())
                .collect();
            accepted.iter().all(|(id, _, _)| ids.contains(id.as_str()))
        })
        .await;
    check_deliveries(&receiver, &accepted);
}
