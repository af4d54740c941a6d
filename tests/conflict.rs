//! Conflict handling and loop prevention over real HTTP: stale versions never overwrite newer
//! ones, under each strategy and under load; a resolver plugin merges versions; an update never
//! goes back to the system it came from; and a cycle through several systems stops at the hop
//! limit.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_engine_tests::{
    Received, Receiver, TestEngine, admin_call, component_path, http, post_json, scrape,
};

const WAIT: Duration = Duration::from_secs(20);
const ADMIN: &str = "admin-secret-for-tests";

/// The outbound route to `state-api` at `url` with a conflict section (YAML lines indented six
/// spaces), the test resolver as `resolver` (mode `resolver_mode`), and the misbehaving
/// handler on `echo` events (it delivers the payload as it is to the destination `echo`).
fn config(url: &str, conflict: &str, resolver_mode: &str) -> String {
    format!(
        r#"
admin:
  token: {ADMIN}
plugins:
  tax-rate-outbound:
    path: {outbound}
  misbehave:
    path: {misbehave}
  resolver:
    path: {resolver}
    config:
      mode: {resolver_mode}
destinations:
  state-api:
    url: {url}
  echo:
    url: {url}
retry:
  initialDelay: 50ms
  maxAttempts: 5
hmsEvents:
  - event: tax.rate.updated
    handler: tax-rate-outbound
    destination: state-api
    conflict:
{conflict}
  - event: echo
    handler: misbehave
    conflict:
{conflict}
"#,
        outbound = component_path("tax-rate-outbound").display(),
        misbehave = component_path("misbehave").display(),
        resolver = component_path("test-resolver").display(),
    )
}

/// Posts a rate whose value is its version, for the entity `key`, with extra headers.
async fn post_version(
    engine: &TestEngine,
    key: &str,
    version: u64,
    extra: &[(&str, &str)],
) -> String {
    let body = json!({"rate": version, "year": 2025}).to_string();
    let mut headers = vec![("hms-key", key)];
    headers.extend_from_slice(extra);
    let (status, answer) =
        post_json(&engine.url("/events/tax.rate.updated"), &body, &headers).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// Waits until the engine has nothing left to process or send.
async fn settle(engine: &TestEngine) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = scrape(engine).await;
        let idle = [
            r#"sync_queue_depth{queue="events"} 0"#,
            r#"sync_queue_depth{queue="deliveries"} 0"#,
        ]
        .iter()
        .all(|line| page.lines().any(|l| l == *line));
        if idle {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine did not settle:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the metrics page shows `line`.
async fn metric_reaches(engine: &TestEngine, line: &str, context: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = scrape(engine).await;
        if page.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{context}: no `{line}` in\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first outbox row of an event, from its history.
async fn first_row(engine: &TestEngine, id: &str) -> Value {
    let (status, history) =
        admin_call(engine, ADMIN, "GET", &format!("/admin/events/{id}"), None).await;
    assert_eq!(status, 200, "{history}");
    history["event"]["actions"][0].clone()
}

fn delivered(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["newRates"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn out_of_order_versions_leave_the_newest_under_each_strategy() {
    for (name, conflict, mode, header) in [
        (
            "version",
            "      strategy: version",
            "newest",
            "hms-version",
        ),
        (
            "last-write-wins",
            "      strategy: last-write-wins",
            "newest",
            "hms-timestamp",
        ),
        (
            "plugin",
            "      strategy: plugin\n      resolver: resolver",
            "newest",
            "hms-version",
        ),
    ] {
        let state_api = Receiver::start().await;
        let engine = TestEngine::start(&config(&state_api.url("/rates"), conflict, mode)).await;
        let mut ids = HashMap::new();
        for version in [3u64, 1, 2] {
            let value = (version * 1000).to_string();
            let value = if header == "hms-version" {
                version.to_string()
            } else {
                value
            };
            ids.insert(
                version,
                post_version(&engine, "tax-rate/2025", version, &[(header, &value)]).await,
            );
        }
        settle(&engine).await;
        assert_eq!(
            delivered(&state_api.received()),
            [3],
            "{name}: the destination holds 3"
        );
        for version in [1, 2] {
            let row = first_row(&engine, &ids[&version]).await;
            assert_eq!(row["state"], "superseded", "{name} v{version}: {row}");
            assert_eq!(row["supersededBy"], ids[&3].as_str(), "{name} v{version}");
        }
        assert_eq!(first_row(&engine, &ids[&3]).await["state"], "delivered");
        // Counted by the delivery task once the store has recorded it, so maybe just after
        // the store shows the engine idle.
        metric_reaches(
            &engine,
            r#"sync_deliveries_total{destination="state-api",outcome="superseded"} 2"#,
            name,
        )
        .await;
        engine.stop().await;
    }
}

#[tokio::test]
async fn without_a_strategy_every_version_is_delivered() {
    let state_api = Receiver::start().await;
    let engine = TestEngine::start(&config(
        &state_api.url("/rates"),
        "      strategy: none",
        "newest",
    ))
    .await;
    for version in [3, 1, 2] {
        post_version(
            &engine,
            "tax-rate/2025",
            version,
            &[("hms-version", &version.to_string())],
        )
        .await;
    }
    settle(&engine).await;
    assert_eq!(delivered(&state_api.received()), [3, 1, 2]);
    engine.stop().await;
}

#[tokio::test]
async fn versions_can_come_from_the_payload_by_json_pointer() {
    let state_api = Receiver::start().await;
    let conflict = "      strategy: version\n      key: /year\n      version: /rate";
    let engine = TestEngine::start(&config(&state_api.url("/rates"), conflict, "newest")).await;
    for version in [5u64, 4, 6] {
        // No `hms-key` or `hms-version`: the route reads both from the payload.
        let body = json!({"rate": version, "year": 2030}).to_string();
        let (status, _) = post_json(&engine.url("/events/tax.rate.updated"), &body, &[]).await;
        assert_eq!(status, 202);
    }
    settle(&engine).await;
    assert_eq!(delivered(&state_api.received()), [5, 6]);
    engine.stop().await;
}

#[tokio::test]
async fn a_timestamp_far_ahead_of_the_clock_cannot_pin_an_entity() {
    let state_api = Receiver::start().await;
    // Last-write-wins with the time read from the payload's `rate` (Unix ms here).
    let conflict = "      strategy: last-write-wins\n      key: /year\n      timestamp: /rate";
    let engine = TestEngine::start(&config(&state_api.url("/rates"), conflict, "newest")).await;
    let now = sync_engine::store::now_ms();
    let post = |at: i64| {
        let url = engine.url("/events/tax.rate.updated");
        async move {
            let body = json!({"rate": at, "year": 2031}).to_string();
            post_json(&url, &body, &[]).await
        }
    };
    // A day ahead: the run fails (a dead letter naming the reason) instead of pinning 2031.
    let (status, pinned) = post(now + 86_400_000).await;
    assert_eq!(status, 202);
    let (status, _) = post(now).await;
    assert_eq!(status, 202);
    state_api.wait_for(1, WAIT).await;
    assert_eq!(delivered(&state_api.received()), [now as u64]);
    let (_, dead) = admin_call(&engine, ADMIN, "GET", "/admin/dead-letters", None).await;
    let dead = dead["deadLetters"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["eventId"], pinned["id"], "{dead:?}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("ahead of the engine's clock"),
        "{dead:?}"
    );
    engine.stop().await;
}

#[tokio::test]
async fn an_operator_resets_an_entity_pinned_by_a_far_future_version() {
    let state_api = Receiver::start().await;
    let engine = TestEngine::start(&config(
        &state_api.url("/rates"),
        "      strategy: version",
        "newest",
    ))
    .await;
    let key = "tax-rate/2025";
    // A sender's bug: a version far ahead pins the entity; every later update loses to it.
    let pinned = post_version(
        &engine,
        key,
        9_000_000_000,
        &[("hms-version", "9000000000")],
    )
    .await;
    settle(&engine).await;
    let stuck = post_version(&engine, key, 7, &[("hms-version", "7")]).await;
    settle(&engine).await;
    assert_eq!(first_row(&engine, &stuck).await["state"], "superseded");

    let entity = |method: &'static str, query: &str| {
        let path = format!("/admin/entities?{query}");
        let engine = &engine;
        async move { admin_call(engine, ADMIN, method, &path, None).await }
    };
    let (status, held) = entity("GET", "destination=state-api&key=tax-rate%2F2025").await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["entity"]["version"], 9_000_000_000u64, "{held}");
    assert_eq!(held["entity"]["eventId"], pinned.as_str(), "{held}");
    // Asking badly is a 400 that says what to send; an entity nothing holds is a 404.
    let (status, answer) = entity("DELETE", "destination=state-api&emit=x&key=k").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not both")
    );
    let (status, _) = entity("DELETE", "destination=state-api&key=tax-rate%2F1999").await;
    assert_eq!(status, 404);
    // Without the admin token, nothing changes.
    let (status, _) = admin_call(
        &engine,
        "not-the-admin-token-at-all",
        "DELETE",
        "/admin/entities?destination=state-api&key=tax-rate%2F2025",
        None,
    )
    .await;
    assert_eq!(status, 401);

    let (status, reset) = entity("DELETE", "destination=state-api&key=tax-rate%2F2025").await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["reset"]["version"], 9_000_000_000u64, "{reset}");
    assert!(
        reset["by"].as_str().unwrap().starts_with("admin:"),
        "{reset}"
    );
    let (status, _) = entity("GET", "destination=state-api&key=tax-rate%2F2025").await;
    assert_eq!(status, 404);
    // The next update goes through, and is held from then on.
    post_version(&engine, key, 8, &[("hms-version", "8")]).await;
    settle(&engine).await;
    assert_eq!(delivered(&state_api.received()), [9_000_000_000, 8]);
    let (_, held) = entity("GET", "destination=state-api&key=tax-rate%2F2025").await;
    assert_eq!(held["entity"]["version"], 8, "{held}");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_for_many_keys_end_at_each_keys_highest_version() {
    const KEYS: u64 = 20;
    const VERSIONS: u64 = 10;
    let state_api = Receiver::start().await;
    let engine = Arc::new(
        TestEngine::start(&config(
            &state_api.url("/rates"),
            "      strategy: version",
            "newest",
        ))
        .await,
    );
    // Every (key, version), in a scrambled order, sent by eight concurrent senders.
    let mut updates: Vec<(u64, u64)> = (0..KEYS)
        .flat_map(|k| (1..=VERSIONS).map(move |v| (k, v)))
        .collect();
    updates.sort_by_key(|(k, v)| (k * 7919 + v * 104_729) % 997);
    let chunks: Vec<Vec<(u64, u64)>> = updates
        .chunks(updates.len() / 8)
        .map(<[_]>::to_vec)
        .collect();
    let senders: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for (key, version) in chunk {
                    let body = json!({"rate": version, "year": 2000 + key}).to_string();
                    let key = format!("k{key}");
                    let version = version.to_string();
                    let (status, _) = post_json(
                        &engine.url("/events/tax.rate.updated"),
                        &body,
                        &[("hms-key", &key), ("hms-version", &version)],
                    )
                    .await;
                    assert_eq!(status, 202);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    settle(&engine).await;
    // The destination's state: per key, the last body it accepted.
    let mut held: HashMap<u64, u64> = HashMap::new();
    for request in state_api.received().iter().filter(|r| r.status == 200) {
        let body = request.json();
        let (year, rate) = (
            body["effectiveYear"].as_u64().unwrap(),
            body["newRates"].as_u64().unwrap(),
        );
        let previous = held.insert(year, rate);
        assert!(
            previous.is_none_or(|p| p < rate),
            "key {year}: {rate} arrived after {previous:?}"
        );
    }
    assert_eq!(held.len(), KEYS as usize);
    assert!(held.values().all(|v| *v == VERSIONS), "{held:?}");
    Arc::into_inner(engine).unwrap().stop().await;
}

#[tokio::test]
async fn a_resolver_plugin_merges_two_versions_end_to_end() {
    let state_api = Receiver::start().await;
    let conflict = "      strategy: plugin\n      resolver: resolver";
    let engine = TestEngine::start(&config(&state_api.url("/rates"), conflict, "merge")).await;
    let first = json!({"rates": {"food": 1, "fuel": 2}, "region": "north"});
    let second = json!({"rates": {"fuel": 3}, "note": "fuel corrected"});
    for (body, version) in [(&first, "1"), (&second, "2")] {
        let (status, _) = post_json(
            &engine.url("/events/echo"),
            &body.to_string(),
            &[("hms-key", "rates/2025"), ("hms-version", version)],
        )
        .await;
        assert_eq!(status, 202);
    }
    let received = state_api.wait_for(2, WAIT).await;
    assert_eq!(received[0].json(), first);
    assert_eq!(
        received[1].json(),
        json!({"rates": {"food": 1, "fuel": 3}, "region": "north", "note": "fuel corrected"})
    );
    // The merged body is what the destination holds now: a third version merges into it.
    let (status, _) = post_json(
        &engine.url("/events/echo"),
        &json!({"region": "south"}).to_string(),
        &[("hms-key", "rates/2025"), ("hms-version", "3")],
    )
    .await;
    assert_eq!(status, 202);
    let received = state_api.wait_for(3, WAIT).await;
    assert_eq!(
        received[2].json(),
        json!({"rates": {"food": 1, "fuel": 3}, "region": "south", "note": "fuel corrected"})
    );
    engine.stop().await;
}

/// A system that passes what it receives on, as a real one would: the HMS core relaying
/// emitted events to its subscribers, or a partner calling its webhook on the engine after an
/// update. It keeps the provenance headers it is told to keep, and relays at most `LIMIT`
/// requests so a cycle the engine failed to stop ends the test instead of running forever.
struct Relay {
    received: Arc<Mutex<Vec<Received>>>,
    /// The engine's answers to what this relay passed on.
    answers: Arc<Mutex<Vec<Value>>>,
    url: String,
}

const LIMIT: usize = 20;

type Map = fn(&Uri, &Value) -> (String, Value);

#[derive(Clone)]
struct RelayState {
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<Vec<Value>>>,
    engine: String,
    map: Map,
    keep: &'static [&'static str],
}

/// Headers a relay that keeps the whole provenance passes on.
const KEEP_ALL: &[&str] = &["hms-origin", "hms-path", "hms-hops", "hms-key"];
/// Headers a relay that only counts hops passes on.
const KEEP_HOPS: &[&str] = &["hms-hops", "hms-key"];

impl Relay {
    async fn start(engine: &str, map: Map, keep: &'static [&'static str]) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let state = RelayState {
            received: received.clone(),
            answers: answers.clone(),
            engine: engine.to_owned(),
            map,
            keep,
        };
        let app = Router::new().fallback(relay).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Relay {
            received,
            answers,
            url,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The ids of the events the engine accepted from this relay, in order.
    fn accepted(&self) -> Vec<String> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn relay(
    State(state): State<RelayState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let count = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            method: "POST".into(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: body.to_vec(),
            at: std::time::Instant::now(),
            status: 200,
        });
        received.len()
    };
    if count <= LIMIT {
        let (path, payload) = (state.map)(&uri, &serde_json::from_slice(&body).unwrap());
        let mut request = http()
            .post(format!("{}{path}", state.engine))
            .header("content-type", "application/json")
            .body(payload.to_string());
        for &name in state.keep {
            if let Some(value) = header(name) {
                request = request.header(name, value);
            }
        }
        // Relayed in the background: the sender gets its answer at once.
        let answers = state.answers;
        tokio::spawn(async move {
            if let Ok(response) = request.send().await
                && let Ok(answer) = response.json::<Value>().await
            {
                answers.lock().unwrap().push(answer);
            }
        });
    }
    StatusCode::OK
}

/// The core: an event emitted to `/hms/events/{type}` goes to the engine's bus as it is.
fn core_map(uri: &Uri, body: &Value) -> (String, Value) {
    (
        uri.path().trim_start_matches("/hms").to_owned(),
        body.clone(),
    )
}

/// A partner's state API that calls its own webhook on the engine with the update.
fn partner_map(uri: &Uri, body: &Value) -> (String, Value) {
    let webhook = format!("/webhook{}", uri.path().trim_end_matches("/rates"));
    let update = json!({"currentRate": body["newRates"], "taxYear": body["effectiveYear"]});
    (webhook, update)
}

/// Both directions for each partner in `partners`: its webhook emits on the HMS bus through the
/// core, and HMS events go to its state API.
async fn two_way_engine(
    partners: &[&str],
    keep: &'static [&'static str],
) -> (TestEngine, Relay, Vec<Relay>) {
    // The engine's address is needed by the relays and theirs by the engine: bind first, and
    // keep the socket (a port let go of here may be taken by a parallel test before the engine).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let engine_url = format!("http://127.0.0.1:{port}");
    let core = Relay::start(&engine_url, core_map, keep).await;
    let mut relays = Vec::new();
    let mut destinations = String::new();
    let mut routes = String::new();
    let mut webhooks = String::new();
    for partner in partners {
        let relay = Relay::start(&engine_url, partner_map, keep).await;
        destinations.push_str(&format!(
            "  {partner}-api:\n    url: {}/{partner}/rates\n",
            relay.url
        ));
        routes.push_str(&format!(
            "  - event: tax.rate.updated\n    handler: tax-rate-outbound\n    destination: {partner}-api\n"
        ));
        webhooks.push_str(&format!(
            "  - path: /webhook/{partner}\n    handler: tax-rate-inbound\n    system: {partner}-api\n"
        ));
        relays.push(relay);
    }
    let yaml = format!(
        r#"
listen: 127.0.0.1:{port}
maxHops: 4
admin:
  token: {ADMIN}
core:
  url: {core}/hms
plugins:
  tax-rate-outbound:
    path: {outbound}
  tax-rate-inbound:
    path: {inbound}
destinations:
{destinations}
hmsEvents:
{routes}
externalWebhooks:
{webhooks}
"#,
        core = core.url,
        outbound = component_path("tax-rate-outbound").display(),
        inbound = component_path("tax-rate-inbound").display(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = sync_engine::config::Config::parse(&yaml, dir.path()).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let engine = TestEngine::serve(config, listener, dir).await;
    (engine, core, relays)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_update_reaches_hms_and_never_comes_back_to_it() {
    let (engine, core, relays) = two_way_engine(&["a"], KEEP_ALL).await;
    let state_a = &relays[0];
    let (status, answer) = post_json(
        &engine.url("/webhook/a"),
        r#"{"currentRate": 0.07, "taxYear": 2030}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&engine).await;
    // The update reached the core, came back on the bus, and stopped there.
    let at_core = core.received();
    assert_eq!(at_core.len(), 1);
    assert_eq!(at_core[0].header("hms-origin"), Some("a-api"));
    assert!(
        state_a.received().is_empty(),
        "the update went back to its sender"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_through_three_systems_ends_when_the_update_reaches_a_system_it_passed() {
    // Systems that pass `hms-path` on: A -> HMS -> B -> HMS, and there it stops, since A and B
    // are both on the update's path.
    let (engine, core, relays) = two_way_engine(&["a", "b"], KEEP_ALL).await;
    let (state_a, state_b) = (&relays[0], &relays[1]);
    let (status, _) = post_json(
        &engine.url("/webhook/a"),
        r#"{"currentRate": 0.07, "taxYear": 2032}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    settle(&engine).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&engine).await;
    assert_eq!(core.received().len(), 2, "A's update, then B's relay of it");
    assert_eq!(state_b.received().len(), 1, "B got A's update once");
    assert!(
        state_a.received().is_empty(),
        "A never got its own update back"
    );
    let paths: Vec<String> = core
        .received()
        .iter()
        .map(|r| r.header("hms-path").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(paths, ["a-api", "a-api,hms,b-api"]);
    // On the bus, B's relay of the update was not sent to A (nor back to B).
    let last = core.accepted().pop().expect("the core relayed B's update");
    let (_, history) = admin_call(
        &engine,
        ADMIN,
        "GET",
        &format!("/admin/events/{last}"),
        None,
    )
    .await;
    for row in history["event"]["actions"].as_array().unwrap() {
        assert_eq!(row["state"], "dropped", "{row}");
        assert!(
            row["reason"].as_str().unwrap().starts_with("echo: "),
            "{row}"
        );
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_through_systems_that_keep_only_the_hop_count_stops_at_the_hop_limit() {
    // Systems that pass only `hms-hops` on: the engine cannot tell where a relayed update came
    // from, so it goes round A -> HMS -> A and B, and so on, until the hop limit (4) ends it.
    let (engine, core, relays) = two_way_engine(&["a", "b"], KEEP_HOPS).await;
    let (state_a, state_b) = (&relays[0], &relays[1]);
    let (status, _) = post_json(
        &engine.url("/webhook/a"),
        r#"{"currentRate": 0.07, "taxYear": 2031}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    settle(&engine).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    settle(&engine).await;
    let hops = |relay: &Relay| -> Vec<String> {
        let mut hops: Vec<String> = relay
            .received()
            .iter()
            .map(|r| r.header("hms-hops").unwrap_or("-").to_owned())
            .collect();
        hops.sort();
        hops
    };
    assert_eq!(
        hops(&core),
        ["1", "3", "3"],
        "A's update, then A's and B's relays of it"
    );
    assert_eq!(hops(state_a), ["2", "4", "4"]);
    assert_eq!(hops(state_b), ["2", "4", "4"]);
    // The partners' last calls came with 4 hops: their emissions were dropped, not failed.
    for relay in [state_a, state_b] {
        let accepted = relay.accepted();
        assert_eq!(accepted.len(), 3);
        for id in &accepted {
            let row = first_row(&engine, id).await;
            let hops4 = row["hops"] == 5;
            if hops4 {
                assert_eq!(row["state"], "dropped", "{row}");
                assert!(
                    row["reason"].as_str().unwrap().starts_with("hop limit"),
                    "{row}"
                );
            }
        }
        assert_eq!(
            accepted.len(),
            relay.received().len(),
            "every call was answered"
        );
    }
    let (_, dead) = admin_call(&engine, ADMIN, "GET", "/admin/dead-letters", None).await;
    assert_eq!(dead["deadLetters"], json!([]));
    engine.stop().await;
}

/// Posts `body` (any bytes) as an HMS event of the outbound route's type, sent at `at`.
async fn post_raw(engine: &TestEngine, body: Vec<u8>, at: i64) -> (u16, Value) {
    post_raw_as(engine, "tax.rate.updated", body, at).await
}

/// Posts `body` (any bytes) as an HMS event of type `event_type`, sent at `at`.
async fn post_raw_as(
    engine: &TestEngine,
    event_type: &str,
    body: Vec<u8>,
    at: i64,
) -> (u16, Value) {
    let response = http()
        .post(engine.url(&format!("/events/{event_type}")))
        .header("content-type", "application/json")
        .header("hms-timestamp", at.to_string())
        .body(body)
        .send()
        .await
        .expect("the engine answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Payloads that once got past acceptance but not past the pointers: an unrelated field
/// holding a lone surrogate, a byte that is not UTF-8, or arrays nested 200 deep, each beside
/// the entity key (`/year`) of a stale update.
fn unreadable_stale_updates() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    vec![
        (
            "a lone surrogate",
            br#"{"rate": 1, "year": 2061, "note": "\ud800"}"#.to_vec(),
        ),
        (
            "a byte that is not UTF-8",
            b"{\"rate\": 1, \"year\": 2061, \"note\": \"\xff\"}".to_vec(),
        ),
        (
            "arrays nested 200 deep",
            format!(r#"{{"rate": 1, "year": 2061, "deep": {deep}}}"#).into_bytes(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_update_never_slips_past_last_write_wins_in_a_payload_the_pointers_cannot_read() {
    let state_api = Receiver::start().await;
    let conflict = "      strategy: last-write-wins\n      key: /year";
    let engine = TestEngine::start(&config(&state_api.url("/rates"), conflict, "newest")).await;
    let now = sync_engine::store::now_ms();
    let (status, fresh) = post_raw(&engine, br#"{"rate": 9, "year": 2061}"#.to_vec(), now).await;
    assert_eq!(status, 202, "{fresh}");
    let fresh = fresh["id"].as_str().unwrap().to_owned();
    settle(&engine).await;

    // The same update an hour stale, with something the pointers could not read beside the
    // key: refused at the door, saying why; nothing stored, nothing sent.
    for ((what, body), why) in unreadable_stale_updates().into_iter().zip([
        "hex escape",
        "not UTF-8 from the byte at offset 35",
        "nests deeper than 128 levels (`maxJsonDepth`)",
    ]) {
        let (status, answer) = post_raw(&engine, body, now - 3_600_000).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid-json", "{what}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{what}: {message}");
    }
    // The same name twice is refused too: the pointer and a plugin could read different ones.
    let (status, answer) = post_raw(
        &engine,
        br#"{"rate": 1, "year": 2061, "year": 1999}"#.to_vec(),
        now - 3_600_000,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names `year` twice"),
        "{answer}"
    );
    settle(&engine).await;
    assert_eq!(delivered(&state_api.received()), [9]);
    let (_, found) = admin_call(&engine, ADMIN, "GET", "/admin/events", None).await;
    assert_eq!(found["events"].as_array().unwrap().len(), 1, "{found}");
    let (status, entity) = admin_call(
        &engine,
        ADMIN,
        "GET",
        "/admin/entities?destination=state-api&key=2061",
        None,
    )
    .await;
    assert_eq!(status, 200, "{entity}");
    assert_eq!(entity["entity"]["eventId"], fresh.as_str(), "{entity}");

    // A keyed route whose key is not in an accepted payload never delivers unkeyed: the run
    // fails `key-missing`, a dead letter that can be replayed (and fails the same way again).
    // (The `echo` route's handler delivers any payload as it is.)
    let (status, keyless) = post_raw_as(&engine, "echo", br#"{"rate": 2}"#.to_vec(), now).await;
    assert_eq!(status, 202, "{keyless}");
    let keyless = keyless["id"].as_str().unwrap().to_owned();
    settle(&engine).await;
    let (_, history) = admin_call(
        &engine,
        ADMIN,
        "GET",
        &format!("/admin/events/{keyless}"),
        None,
    )
    .await;
    let run = &history["event"]["runs"][0];
    assert_eq!(run["outcome"], "key-missing", "{history}");
    assert!(
        run["error"].as_str().unwrap().contains("no entity key"),
        "{run}"
    );
    let (_, dead) = admin_call(&engine, ADMIN, "GET", "/admin/dead-letters", None).await;
    let dead = dead["deadLetters"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["eventId"], keyless.as_str());
    let (status, replayed) = admin_call(
        &engine,
        ADMIN,
        "POST",
        "/admin/dead-letters/replay",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        replayed["replayed"].as_array().map(Vec::len),
        Some(1),
        "{replayed}"
    );
    settle(&engine).await;
    assert_eq!(delivered(&state_api.received()), [9], "never sent unkeyed");
    engine.stop().await;

    // With `maxJsonDepth` raised, the deep payload is taken, and its key read as deep: the
    // stale update is superseded, never delivered.
    let state_api = Receiver::start().await;
    let engine = TestEngine::start(
        &(config(&state_api.url("/rates"), conflict, "newest") + "maxJsonDepth: 256\n"),
    )
    .await;
    post_raw(&engine, br#"{"rate": 9, "year": 2061}"#.to_vec(), now).await;
    settle(&engine).await;
    let (_, deep) = unreadable_stale_updates().pop().unwrap();
    let (status, stale) = post_raw(&engine, deep, now - 3_600_000).await;
    assert_eq!(status, 202, "{stale}");
    settle(&engine).await;
    assert_eq!(delivered(&state_api.received()), [9]);
    let row = first_row(&engine, stale["id"].as_str().unwrap()).await;
    assert_eq!(row["state"], "superseded", "{row}");
    assert_eq!(row["key"], "2061", "{row}");
    engine.stop().await;
}
