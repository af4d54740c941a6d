//! The HMS bus on NATS (`bus.kind: nats`) against a real nats-server: both directions of the
//! seed's story over the bus, an echo from the bus back to its origin dropped, bad messages
//! refused, redeliveries stored once, and nothing lost across an engine restart, a server
//! restart or an engine slower than the bus; plain subjects too.

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use sync_engine_tests::{
    NatsServer, Receiver, TestEngine, admin_call, admin_until, component_path, metric_until,
    post_json, sample, scrape,
};

const WAIT: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-secret-for-tests";
const STREAM: &str = "HMS";
const CONSUMER: &str = "sync-engine";

/// The seed's routes with the engine on the NATS bus at `server` (`bus_extra`: more keys of
/// `bus.nats`, indented four spaces) and the state API at `state_api`.
fn config(server: &str, state_api: &str, bus_extra: &str) -> String {
    format!(
        r#"
admin:
  token: {ADMIN}
bus:
  kind: nats
  nats:
    servers: [{server}]
    subjectPrefix: hms
    timeout: 2s
{bus_extra}
plugins:
  tax-rate-outbound:
    path: {outbound}
  tax-rate-inbound:
    path: {inbound}
destinations:
  state-api:
    url: {state_api}
    timeout: 2s
retry:
  initialDelay: 50ms
  factor: 2
  maxDelay: 1s
  maxAttempts: 100
hmsEvents:
  - event: tax.rate.updated
    handler: tax-rate-outbound
    destination: state-api
externalWebhooks:
  - path: /webhook/tax-rate
    handler: tax-rate-inbound
    system: state-api
"#,
        outbound = component_path("tax-rate-outbound").display(),
        inbound = component_path("tax-rate-inbound").display(),
    )
}

/// `bus.nats` keys for the stream and consumer.
fn on_stream(extra: &str) -> String {
    format!("    stream: {STREAM}\n    consumer: {CONSUMER}\n{extra}")
}

async fn client(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("a connection to the test server")
}

/// Waits until the engine has made its durable consumer (and the stream), and returns the
/// stream.
async fn consumer_made(js: &jetstream::Context) -> jetstream::stream::Stream {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(stream) = js.get_stream(STREAM).await
            && stream.consumer_info(CONSUMER).await.is_ok()
        {
            return stream;
        }
        assert!(Instant::now() < deadline, "the engine made no consumer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes the HMS event `tax.rate.updated` for `year` onto the stream, with the message id
/// `id`, and waits for the stream's acknowledgement.
async fn publish_rate(js: &jetstream::Context, year: u32, id: &str) {
    publish_rate_with(js, year, id, &[]).await;
}

/// [`publish_rate`] with more headers.
async fn publish_rate_with(js: &jetstream::Context, year: u32, id: &str, more: &[(&str, &str)]) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("hms-key", format!("tax-rate/{year}").as_str());
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    for (name, value) in more {
        headers.insert(*name, *value);
    }
    js.publish_with_headers(
        "hms.tax.rate.updated",
        headers,
        json!({"rate": 0.0725, "year": year}).to_string().into(),
    )
    .await
    .expect("published")
    .await
    .expect("the stream acknowledged");
}

/// Waits until `sync_bus_reading` is `value`.
async fn reading(engine: &TestEngine, value: f64) {
    metric_until(engine, "sync_bus_reading ", WAIT, |v| v == value).await;
}

/// The `year` of every message the stream holds, in order.
async fn stored_years(js: &jetstream::Context) -> Vec<u64> {
    let Ok(mut stream) = js.get_stream(STREAM).await else {
        return Vec::new();
    };
    let Ok(info) = stream.info().await else {
        return Vec::new();
    };
    let mut years = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await
            && let Ok(value) = serde_json::from_slice::<Value>(&message.payload)
            && let Some(year) = value["year"].as_u64()
        {
            years.push(year);
        }
    }
    years
}

/// How many deliveries the state API got per `effectiveYear`.
fn deliveries_per_year(state: &Receiver) -> BTreeMap<u64, usize> {
    let mut years = BTreeMap::new();
    for received in state.received() {
        let year = received.json()["effectiveYear"].as_u64().expect("a year");
        *years.entry(year).or_default() += 1;
    }
    years
}

/// Waits until every year of `years` was delivered, and checks each was delivered once.
async fn delivered_once(state: &Receiver, years: impl IntoIterator<Item = u32>) {
    let years: Vec<u64> = years.into_iter().map(u64::from).collect();
    state
        .wait_until(WAIT, |received| {
            let got: std::collections::BTreeSet<u64> = received
                .iter()
                .filter_map(|r| r.json()["effectiveYear"].as_u64())
                .collect();
            years.iter().all(|y| got.contains(y))
        })
        .await;
    for (year, count) in deliveries_per_year(state) {
        assert_eq!(count, 1, "the year {year} was delivered {count} times");
    }
}

/// The events of origin `state-api` from the bus, once their actions are settled, with them.
async fn echoes(engine: &TestEngine, n: usize) -> Vec<Value> {
    let found = admin_until(
        engine,
        ADMIN,
        "/admin/events?origin=state-api&type=tax.rate.updated",
        WAIT,
        |answer| {
            answer["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .filter(|e| e["route"] == "bus:tax.rate.updated")
                    .count()
                    >= n
            })
        },
    )
    .await;
    let mut histories = Vec::new();
    for event in found["events"].as_array().unwrap() {
        if event["route"] != "bus:tax.rate.updated" {
            continue;
        }
        let id = event["id"].as_str().unwrap();
        let history = admin_until(engine, ADMIN, &format!("/admin/events/{id}"), WAIT, |h| {
            h["event"]["actions"]
                .as_array()
                .is_some_and(|actions| !actions.is_empty())
        })
        .await;
        histories.push(history);
    }
    histories
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_of_the_seed_story_go_over_the_bus_and_an_echo_is_dropped() {
    let server = NatsServer::start();
    let nats = client(&server).await;
    let js = jetstream::new(nats.clone());
    // The operator made the stream, with a short duplicate window: past it, a message published
    // again is stored again, and only its `idempotency-key` tells the engine it is a repeat.
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["hms.>".into()],
        duplicate_window: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let state = Receiver::start().await;
    // The engine's server address carries a user and password (the test server takes any):
    // they must never be shown.
    let engine = TestEngine::start(&config(
        &server.url().replace("nats://", "nats://engine:bus-secret@"),
        &state.url("/api/rates"),
        &on_stream(""),
    ))
    .await;
    consumer_made(&js).await;

    // The configuration says where the bus is, its credentials masked, in the admin API and
    // on the console's page.
    let (status, shown) = admin_call(&engine, ADMIN, "GET", "/admin/config", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        shown["bus"],
        json!({"kind": "nats", "servers": [server.url().replace("nats://", "nats://***:***@")],
               "subjectPrefix": "hms", "stream": STREAM, "consumer": CONSUMER}),
        "{shown}"
    );
    assert_eq!(shown["core"], Value::Null);
    let page = sync_engine_tests::console_page(&engine.url(""), ADMIN, "/console/config").await;
    assert!(
        page.contains("read from the stream <code>HMS</code>"),
        "{page}"
    );
    assert!(!page.contains("bus-secret"), "{page}");

    // HMS -> state: an event published on the bus reaches the state API, mapped.
    publish_rate_with(&js, 2025, "m-1", &[("idempotency-key", "rate-2025")]).await;
    let received = state.wait_for(1, WAIT).await;
    assert_eq!(
        received[0].json(),
        json!({"newRates": 0.0725, "effectiveYear": 2025})
    );
    assert_eq!(received[0].header("hms-origin"), Some("hms"));
    assert_eq!(received[0].header("hms-key"), Some("tax-rate/2025"));

    // The sender's repeat, after the stream's duplicate window and with another message id:
    // the same idempotency key, stored once, delivered once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_rate_with(&js, 2025, "m-1-again", &[("idempotency-key", "rate-2025")]).await;
    // A message that is not an event is refused, never sent again (terminated), and what
    // follows it still flows.
    let mut terminated = nats
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>")
        .await
        .unwrap();
    nats.flush().await.unwrap();
    js.publish("hms.tax.rate.updated", "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    publish_rate(&js, 2026, "m-2").await;
    delivered_once(&state, [2025, 2026]).await;
    let advisory = tokio::time::timeout(WAIT, terminated.next())
        .await
        .expect("the refused message was terminated")
        .expect("the subscription is open");
    let advisory: Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(advisory["stream_seq"], 3, "{advisory}");
    let metrics = scrape(&engine).await;
    assert_eq!(
        sample(&metrics, r#"sync_bus_messages_total{outcome="refused"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"sync_bus_messages_total{outcome="duplicate"}"#),
        1.0
    );
    let mut consumer = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_pending, 0, "every message was taken: {info:?}");
    assert_eq!(info.num_ack_pending, 0, "and settled: {info:?}");
    assert_eq!(info.num_redelivered, 0, "none was sent again: {info:?}");

    // State -> HMS: a state webhook ends as a message on the bus, with the idempotency key as
    // its message id and the metadata in its headers.
    let mut emitted = nats.subscribe("hms.tax.rate.updated").await.unwrap();
    nats.flush().await.unwrap();
    let (status, _) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.08, "taxYear": 2027}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let message = tokio::time::timeout(WAIT, emitted.next())
        .await
        .expect("the emitted event is published")
        .expect("the subscription is open");
    let payload: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(payload, json!({"rate": 0.08, "year": 2027}));
    let headers = message.headers.expect("headers");
    assert_eq!(headers.get("hms-origin").unwrap().as_str(), "state-api");
    assert_eq!(headers.get("hms-hops").unwrap().as_str(), "1");
    let id = headers.get(async_nats::header::NATS_MESSAGE_ID).unwrap();
    assert_eq!(Some(id), headers.get("idempotency-key"));
    // ... stored by the stream ...
    let stored = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject("hms.tax.rate.updated")
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&stored.payload).unwrap(),
        payload
    );

    // ... and, read back from the bus, never delivered to the state it came from.
    let histories = echoes(&engine, 1).await;
    assert_eq!(histories.len(), 1);
    for row in histories[0]["event"]["actions"].as_array().unwrap() {
        assert_eq!(row["state"], "dropped", "{row}");
        assert!(
            row["reason"].as_str().unwrap().starts_with("echo: "),
            "{row}"
        );
    }
    assert!(
        !deliveries_per_year(&state).contains_key(&2027),
        "the state got its own update back"
    );

    // Another engine sharing the consumer, with a route this one lacks, made the consumer
    // take `other.type` too: this engine hands such a message back (never terminates it), for
    // an engine that has the route.
    let mut shared = consumer.info().await.unwrap().config.clone();
    shared.filter_subjects.push("hms.other.type".into());
    js.update_consumer_on_stream(
        jetstream::consumer::pull::Config {
            durable_name: shared.durable_name.clone(),
            filter_subjects: shared.filter_subjects.clone(),
            deliver_policy: shared.deliver_policy,
            ack_policy: shared.ack_policy,
            ack_wait: shared.ack_wait,
            max_ack_pending: shared.max_ack_pending,
            description: shared.description.clone(),
            ..Default::default()
        },
        STREAM,
    )
    .await
    .unwrap();
    js.publish("hms.other.type", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Offered, handed back, offered again.
    metric_until(
        &engine,
        r#"sync_bus_messages_total{outcome="no-route"}"#,
        WAIT,
        |n| n >= 2.0,
    )
    .await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_and_a_server_restart_lose_nothing() {
    let mut server = NatsServer::start();
    let state = Receiver::start().await;
    let yaml = config(&server.url(), &state.url("/api/rates"), &on_stream(""));
    let engine = TestEngine::start(&yaml).await;
    let nats = client(&server).await;
    let js = jetstream::new(nats.clone());
    consumer_made(&js).await;
    reading(&engine, 1.0).await;

    for year in 3000..3020 {
        publish_rate(&js, year, &format!("r-{year}")).await;
    }
    delivered_once(&state, 3000..3020).await;

    // Published while the engine is down: the durable consumer keeps its place.
    let dir = engine.stop().await;
    for year in 3020..3040 {
        publish_rate(&js, year, &format!("r-{year}")).await;
    }
    let engine = TestEngine::start_in(&yaml, dir).await;
    delivered_once(&state, 3000..3040).await;

    // The server restarts (its storage kept); a state webhook posted while it is down is
    // published once it is back, and events published after it flow again.
    server.kill();
    let (status, _) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.09, "taxYear": 3100}"#,
        &[],
    )
    .await;
    assert_eq!(
        status, 202,
        "the engine accepts webhooks while the bus is down"
    );
    // Its metrics say it is not reading the bus.
    reading(&engine, 0.0).await;
    server.restart();
    let nats = client(&server).await;
    let js = jetstream::new(nats.clone());
    for year in 3040..3060 {
        let deadline = Instant::now() + WAIT;
        // The stream may take a moment to be back after the restart.
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("r-{year}").as_str(),
            );
            let published = async {
                js.publish_with_headers(
                    "hms.tax.rate.updated",
                    headers,
                    json!({"rate": 0.0725, "year": year}).to_string().into(),
                )
                .await?
                .await
                .map_err(async_nats::Error::from)
            };
            match published.await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot publish after the restart: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    delivered_once(&state, 3000..3060).await;
    reading(&engine, 1.0).await;
    // The emission retried until the bus was back, and is in the stream, once.
    let deadline = Instant::now() + WAIT;
    loop {
        let years = stored_years(&js).await;
        if years.contains(&3100) {
            assert_eq!(years.iter().filter(|y| **y == 3100).count(), 1, "{years:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the emission never reached the bus"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_stops_while_the_bus_is_down() {
    let mut server = NatsServer::start();
    let state = Receiver::start().await;
    let engine = TestEngine::start(&config(
        &server.url(),
        &state.url("/api/rates"),
        &on_stream(""),
    ))
    .await;
    let js = jetstream::new(client(&server).await);
    consumer_made(&js).await;
    reading(&engine, 1.0).await;
    server.kill();
    reading(&engine, 0.0).await;
    // A webhook whose emission waits for the bus, too.
    let (status, _) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.09, "taxYear": 6000}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::timeout(WAIT, engine.stop())
        .await
        .expect("the engine stops while the bus is unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_engine_does_not_make_the_bus_drop_messages() {
    let server = NatsServer::start();
    let state = Receiver::start().await;
    // At most 4 messages in the engine's hands at a time, sent again after 1 s unacknowledged.
    let mut engine = TestEngine::start(&config(
        &server.url(),
        &state.url("/api/rates"),
        &on_stream("    maxAckPending: 4\n    ackWait: 1s\n"),
    ))
    .await;
    let nats = client(&server).await;
    let js = jetstream::new(nats.clone());
    consumer_made(&js).await;
    // Much more than the engine takes at once, published while its store is unavailable for a
    // while (so it cannot take any): the stream holds them, the engine takes them later.
    let publishing = tokio::spawn({
        let js = js.clone();
        async move {
            for year in 4000..4300 {
                publish_rate(&js, year, &format!("s-{year}")).await;
            }
        }
    });
    engine.store_outage(Duration::from_secs(3)).await;
    publishing.await.unwrap();
    delivered_once(&state, 4000..4300).await;
    let metrics = scrape(&engine).await;
    assert_eq!(
        sample(&metrics, r#"sync_bus_messages_total{outcome="accepted"}"#),
        300.0,
        "{metrics}"
    );
    // The engine held messages past `ackWait` (they were sent again and found duplicates) or
    // could not store them (they were sent again later).
    let again = sample(&metrics, r#"sync_bus_messages_total{outcome="duplicate"}"#)
        + sample(&metrics, r#"sync_bus_messages_total{outcome="not-stored"}"#);
    assert!(again > 0.0, "{metrics}");
    let mut consumer = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            assert_eq!(info.ack_floor.stream_sequence, 300, "{info:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_takes_no_more_messages_than_its_backlog_allows() {
    let server = NatsServer::start();
    // Each event takes its plugin 100 ms (it loops until its time limit and fails), one at a
    // time: far slower than the bus brings them.
    let engine = TestEngine::start(&format!(
        r#"
bus:
  kind: nats
  nats:
    servers: [{server}]
    stream: {STREAM}
    consumer: {CONSUMER}
    maxAckPending: 4
    maxBacklog: 10
sandbox:
  workers: 1
plugins:
  misbehave:
    path: {misbehave}
    limits:
      timeout: 100ms
hmsEvents:
  - event: loop
    handler: misbehave
"#,
        server = server.url(),
        misbehave = component_path("misbehave").display(),
    ))
    .await;
    let js = jetstream::new(client(&server).await);
    consumer_made(&js).await;
    for _ in 0..60 {
        js.publish("hms.loop", "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // The engine's backlog never passes maxBacklog plus what it had in hand (maxAckPending);
    // the rest waits in the stream.
    let mut consumer = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER)
        .await
        .unwrap();
    let (mut most_waiting_here, mut most_waiting_there) = (0.0f64, 0u64);
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = scrape(&engine).await;
        let here = sample(&metrics, r#"sync_queue_depth{queue="events"}"#);
        most_waiting_here = most_waiting_here.max(here);
        let there = consumer.info().await.unwrap().num_pending;
        most_waiting_there = most_waiting_there.max(there);
        let failed = sample(
            &metrics,
            r#"sync_events_failed_total{source="bus",event_type="loop"}"#,
        );
        if failed == 60.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{failed} of 60 processed: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most_waiting_here <= 14.0,
        "the engine held {most_waiting_here} events"
    );
    assert!(
        most_waiting_there >= 30,
        "the stream held at most {most_waiting_there} for the engine"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_stream_the_engine_reads_and_publishes_plain_subjects() {
    let server = NatsServer::start();
    let state = Receiver::start().await;
    let engine = TestEngine::start(&config(
        &server.url(),
        &state.url("/api/rates"),
        "    consumer: engines\n",
    ))
    .await;
    let nats = client(&server).await;
    // The engine subscribes in the background: publish until it has taken one.
    let mut emitted = nats.subscribe("hms.tax.rate.updated").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while state.received().is_empty() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("idempotency-key", "p-1");
        nats.publish_with_headers(
            "hms.tax.rate.updated",
            headers,
            json!({"rate": 0.06, "year": 5000}).to_string().into(),
        )
        .await
        .unwrap();
        assert!(
            Instant::now() < deadline,
            "the engine never read the subject"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    delivered_once(&state, [5000]).await;
    // The test's own publishes come back on its subscription; skip them.
    let (status, _) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.05, "taxYear": 5001}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, emitted.next())
            .await
            .expect("the emitted event is published")
            .expect("the subscription is open");
        let payload: Value = serde_json::from_slice(&message.payload).unwrap();
        if payload["year"] == 5001 {
            assert_eq!(
                message.headers.unwrap().get("hms-origin").unwrap().as_str(),
                "state-api"
            );
            break;
        }
    }
    engine.stop().await;
}
