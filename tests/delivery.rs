//! Delivery guarantees over real HTTP on loopback: Retry-After, redirects, timeouts, dead
//! letters and replay, per-key ordering, per-destination concurrency, Standard Webhooks
//! signatures both ways, metrics, readiness and the admin API.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime};
use sync_engine::store::Records;
use sync_engine_tests::{
    Received, Receiver, Reply, TestEngine, admin_call, component_path, http, open_store, post_json,
    sample, scrape,
};

const WAIT: Duration = Duration::from_secs(20);
const ADMIN: &str = "admin-secret-for-tests";
/// A Standard Webhooks secret for the tests.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_dGhlIG90aGVyIHNlY3JldA==";

/// The outbound route to the destination `state-api`, configured by `destination` (YAML lines
/// indented four spaces), with fast retries (50 ms doubling, `attempts` attempts), the admin
/// token `admin-secret`, and `extra` appended.
fn config(destination: &str, attempts: u32, extra: &str) -> String {
    format!(
        r#"
admin:
  token: {ADMIN}
plugins:
  tax-rate-outbound:
    path: {outbound}
  tax-rate-inbound:
    path: {inbound}
destinations:
  state-api:
{destination}
retry:
  initialDelay: 50ms
  factor: 2
  maxDelay: 1s
  maxAttempts: {attempts}
hmsEvents:
  - event: tax.rate.updated
    handler: tax-rate-outbound
    destination: state-api
{extra}"#,
        outbound = component_path("tax-rate-outbound").display(),
        inbound = component_path("tax-rate-inbound").display(),
    )
}

/// Posts `{"rate": rate, "year": year}` as `tax.rate.updated`, with an entity key when given.
async fn post_rate(engine: &TestEngine, rate: u32, year: u32, key: Option<&str>) -> String {
    let body = json!({"rate": rate, "year": year}).to_string();
    let headers: Vec<(&str, &str)> = key.map(|k| ("hms-key", k)).into_iter().collect();
    let (status, answer) =
        post_json(&engine.url("/events/tax.rate.updated"), &body, &headers).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// Calls the admin API.
async fn admin(engine: &TestEngine, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin_call(engine, ADMIN, method, path, body).await
}

fn gap(received: &[Received], i: usize) -> Duration {
    received[i].at - received[i - 1].at
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_an_http_date_is_honoured() {
    let state_api = Receiver::start().await;
    // The date asks for a pause until four seconds from now, in whole seconds as HTTP dates
    // are; the promise is that no attempt comes before it, however long the steps before take.
    let (anchor, anchor_wall) = (std::time::Instant::now(), SystemTime::now());
    let later = httpdate::fmt_http_date(anchor_wall + Duration::from_secs(4));
    let not_before = anchor
        + httpdate::parse_http_date(&later)
            .unwrap()
            .duration_since(anchor_wall)
            .unwrap_or_default();
    state_api.script([
        Reply::from(429).header("retry-after", "1"),
        Reply::from(503).header("retry-after", &later),
        Reply::from(200),
    ]);
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        5,
        "",
    ))
    .await;
    post_rate(&engine, 1, 2025, None).await;
    let received = state_api.wait_for(3, WAIT).await;
    // Without Retry-After the backoff would be 50 ms, then 100 ms. The pause is counted from
    // the answer, which comes after the request arrived; the store keeps times in whole
    // milliseconds.
    assert!(
        gap(&received, 1) >= Duration::from_millis(999),
        "{:?}",
        gap(&received, 1)
    );
    assert!(
        received[2].at + Duration::from_millis(1) >= not_before,
        "the third attempt came {:?} before the date the second answer asked for",
        not_before - received[2].at
    );
    assert_eq!(received[2].status, 200);
    engine.stop().await;
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_never_followed() {
    let state_api = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    state_api.set_default(Reply::from(302).header("location", &elsewhere.url("/moved")));
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        3,
        "",
    ))
    .await;
    let id = post_rate(&engine, 1, 2025, None).await;
    let dead = wait_dead_letters(&engine, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_api.received().len(), 3, "three attempts, no more");
    assert!(
        elsewhere.received().is_empty(),
        "the redirect was not followed"
    );
    let letter = &dead["deadLetters"][0];
    assert_eq!(letter["eventId"], id.as_str());
    assert_eq!(letter["kind"], "delivery");
    assert_eq!(letter["target"], "state-api");
    assert!(
        letter["error"].as_str().unwrap().contains("HTTP 302"),
        "{letter}"
    );
    engine.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_page_by_page() {
    let state_api = Receiver::start().await;
    state_api.set_default_status(400);
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        3,
        "",
    ))
    .await;
    for year in 2020..2023 {
        post_rate(&engine, 1, year, None).await;
    }
    let all = wait_dead_letters(&engine, 3).await;
    assert_eq!(
        all["next"],
        Value::Null,
        "one default page holds them: {all}"
    );
    let ids = |page: &Value| -> Vec<i64> {
        page["deadLetters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect()
    };
    let (status, first) = admin(&engine, "GET", "/admin/dead-letters?limit=2", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first).len(), 2);
    let next = first["next"]
        .as_i64()
        .expect("a full page says where the next starts");
    let path = format!("/admin/dead-letters?limit=2&after={next}");
    let (_, second) = admin(&engine, "GET", &path, None).await;
    assert_eq!([ids(&first), ids(&second)].concat(), ids(&all));
    assert_eq!(second["next"], Value::Null);
    for limit in ["0", "1001"] {
        let path = format!("/admin/dead-letters?limit={limit}");
        let (status, answer) = admin(&engine, "GET", &path, None).await;
        assert_eq!(status, 400, "{answer}");
    }
    engine.stop().await;
}

/// Waits until the engine lists `n` dead letters.
async fn wait_dead_letters(engine: &TestEngine, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, answer) = admin(engine, "GET", "/admin/dead-letters", None).await;
        assert_eq!(status, 200, "{answer}");
        if answer["deadLetters"].as_array().unwrap().len() >= n {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {n} dead letters: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_destination_that_does_not_answer_in_time_is_retried_then_dead_lettered() {
    let state_api = Receiver::start().await;
    state_api.set_default(Reply::from(200).after(Duration::from_secs(2)));
    let engine = TestEngine::start(&config(
        &format!("    url: {}\n    timeout: 200ms", state_api.url("/rates")),
        3,
        "",
    ))
    .await;
    post_rate(&engine, 1, 2025, None).await;
    let dead = wait_dead_letters(&engine, 1).await;
    let error = dead["deadLetters"][0]["error"].as_str().unwrap();
    assert_eq!(error, "no answer within 200ms");
    // Every attempt reached the receiver; none waited for its answer.
    state_api.wait_for(3, WAIT).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_dead_letter_replayed_after_the_destination_recovers_is_delivered_once() {
    let state_api = Receiver::start().await;
    state_api.set_default_status(503);
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        2,
        "",
    ))
    .await;
    let id = post_rate(&engine, 7, 2027, None).await;
    let dead = wait_dead_letters(&engine, 1).await;
    let letter_id = dead["deadLetters"][0]["id"].as_i64().unwrap();
    assert_eq!(dead["deadLetters"][0]["plugin"], "tax-rate-outbound");
    assert_eq!(
        dead["deadLetters"][0]["pluginHash"].as_str().unwrap().len(),
        64
    );

    state_api.set_default_status(200);
    let (status, replayed) = admin(
        &engine,
        "POST",
        "/admin/dead-letters/replay",
        Some(json!({"destination": "state-api"})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], json!([letter_id]));
    let received = state_api
        .wait_until(WAIT, |r| r.iter().any(|r| r.status == 200))
        .await;
    assert_eq!(received.len(), 3);

    // A second replay finds nothing dead: nothing is sent twice.
    let (_, again) = admin(
        &engine,
        "POST",
        "/admin/dead-letters/replay",
        Some(json!({"ids": [letter_id]})),
    )
    .await;
    assert_eq!(again["replayed"], json!([]));
    assert_eq!(again["skipped"][0]["reason"], "already replayed");
    let (_, none) = admin(
        &engine,
        "POST",
        "/admin/dead-letters/replay",
        Some(json!({})),
    )
    .await;
    assert_eq!(none["error"]["code"], "empty-selection");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        state_api
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .count(),
        1
    );

    let (_, history) = admin(&engine, "GET", &format!("/admin/events/{id}"), None).await;
    let row = &history["event"]["actions"][0];
    let attempts = &row["attempts"];
    assert_eq!(row["state"], "delivered");
    let outcomes: Vec<&str> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "dead", "delivered"]);
    assert_eq!(history["event"]["deadLetters"][0]["replayed"], true);
    engine.stop().await;
}

/// `(effectiveYear, newRates)` of every delivery the state API accepted, in arrival order.
fn delivered_rates(received: &[Received]) -> Vec<(u64, u64)> {
    received
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let body = r.json();
            (
                body["effectiveYear"].as_u64().unwrap(),
                body["newRates"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The rates delivered for one year, in arrival order.
fn rates_of(delivered: &[(u64, u64)], year: u64) -> Vec<u64> {
    delivered
        .iter()
        .filter(|(y, _)| *y == year)
        .map(|(_, r)| *r)
        .collect()
}

#[tokio::test]
async fn deliveries_for_one_key_keep_their_order_through_a_retry() {
    let state_api = Receiver::start().await;
    // The first delivery of key a fails and asks for a second's pause.
    state_api.script([Reply::from(503).header("retry-after", "1")]);
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        5,
        "",
    ))
    .await;
    post_rate(&engine, 1, 2001, Some("a")).await;
    state_api.wait_for(1, WAIT).await;
    post_rate(&engine, 2, 2001, Some("a")).await;
    post_rate(&engine, 3, 2001, Some("a")).await;
    post_rate(&engine, 1, 2002, Some("b")).await;
    post_rate(&engine, 2, 2002, Some("b")).await;
    let received = state_api
        .wait_until(WAIT, |r| r.iter().filter(|r| r.status == 200).count() == 5)
        .await;
    let delivered = delivered_rates(&received);
    assert_eq!(rates_of(&delivered, 2001), [1, 2, 3], "{delivered:?}");
    assert_eq!(rates_of(&delivered, 2002), [1, 2], "{delivered:?}");
    engine.stop().await;
}

#[tokio::test]
async fn a_retrying_key_holds_up_only_itself_while_many_keys_flow() {
    let state_api = Receiver::start().await;
    // The first delivery of the key `stuck` fails and asks for ten minutes' pause: far longer
    // than this test may take, so any other delivery that waited for it would never come.
    state_api.script([Reply::from(503).header("retry-after", "600")]);
    // Every other delivery takes a moment, so deliveries keep finishing (and being recorded)
    // while the dispatcher looks for due rows.
    state_api.set_default(Reply::from(200).after(Duration::from_millis(2)));
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        5,
        "",
    ))
    .await;
    const STUCK: u32 = 1999;
    post_rate(&engine, 1, STUCK, Some("stuck")).await;
    state_api.wait_for(1, WAIT).await;
    // Twenty keys, four versions each, posted by twenty concurrent senders; the stuck key's
    // later versions go in among them.
    let (keys, versions) = (20u32, 4u32);
    let url = engine.url("/events/tax.rate.updated");
    let mut senders = tokio::task::JoinSet::new();
    for k in 0..keys {
        let url = url.clone();
        senders.spawn(async move {
            for rate in 1..=versions {
                let body = json!({"rate": rate, "year": 3000 + k}).to_string();
                let key = format!("k{k}");
                let (status, answer) = post_json(&url, &body, &[("hms-key", &key)]).await;
                assert_eq!(status, 202, "{answer}");
            }
        });
    }
    post_rate(&engine, 2, STUCK, Some("stuck")).await;
    post_rate(&engine, 3, STUCK, Some("stuck")).await;
    senders.join_all().await;
    let total = (keys * versions) as usize;
    let received = state_api
        .wait_until(WAIT, |r| {
            r.iter().filter(|r| r.status == 200).count() >= total
        })
        .await;
    let delivered = delivered_rates(&received);
    for k in 0..keys {
        let year = u64::from(3000 + k);
        assert_eq!(
            rates_of(&delivered, year),
            (1..=u64::from(versions)).collect::<Vec<_>>(),
            "key k{k}: {delivered:?}"
        );
    }
    // The stuck key's later versions wait behind its retry: only its first attempt was made.
    let stuck: Vec<&Received> = received
        .iter()
        .filter(|r| r.json()["effectiveYear"] == STUCK)
        .collect();
    assert_eq!(stuck.len(), 1, "{delivered:?}");
    assert_eq!(stuck[0].status, 503);
    engine.stop().await;
}

#[tokio::test]
async fn a_destination_gets_no_more_requests_at_once_than_its_concurrency() {
    let state_api = Receiver::start().await;
    state_api.set_default(Reply::from(200).after(Duration::from_millis(200)));
    let engine = TestEngine::start(&config(
        &format!("    url: {}\n    concurrency: 2", state_api.url("/rates")),
        5,
        "",
    ))
    .await;
    for rate in 0..8 {
        post_rate(&engine, rate, 2025, None).await;
    }
    state_api.wait_for(8, WAIT).await;
    assert_eq!(state_api.max_in_flight(), 2);
    engine.stop().await;
}

#[tokio::test]
async fn a_saturated_destination_does_not_hold_up_another() {
    let slow = Receiver::start().await;
    slow.set_default(Reply::from(200).after(Duration::from_millis(500)));
    let fast = Receiver::start().await;
    let extra = format!(
        r#"  slow-api:
    url: {}
    concurrency: 1
  fast-api:
    url: {}
"#,
        slow.url("/rates"),
        fast.url("/rates")
    );
    let yaml = config(&format!("    url: {}", slow.url("/unused")), 5, "")
        .replace("destinations:\n", &format!("destinations:\n{extra}"))
        .replace(
            "hmsEvents:\n",
            "hmsEvents:\n  - event: tax.rate.slow\n    handler: tax-rate-outbound\n    destination: slow-api\n  - event: tax.rate.fast\n    handler: tax-rate-outbound\n    destination: fast-api\n",
        );
    let engine = TestEngine::start(&yaml).await;
    let body = r#"{"rate": 1, "year": 2025}"#;
    // A backlog far larger than what one fetch of due rows holds (ten senders at once, so
    // their commits are shared even on a slow disk).
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let url = engine.url("/events/tax.rate.slow");
        senders.spawn(async move {
            for _ in 0..30 {
                let (status, _) = post_json(&url, body, &[]).await;
                assert_eq!(status, 202);
            }
        });
    }
    senders.join_all().await;
    slow.wait_for(1, WAIT).await;
    let sent = std::time::Instant::now();
    let (status, _) = post_json(&engine.url("/events/tax.rate.fast"), body, &[]).await;
    assert_eq!(status, 202);
    fast.wait_for(1, WAIT).await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    // One at a time, half a second each: most of the slow backlog is still waiting.
    assert!(
        slow.received().len() < 300,
        "the slow backlog was gone before the fast event came"
    );
    engine.stop().await;
}

/// The headers of a received request, as an `http::HeaderMap`.
fn header_map(received: &Received) -> http::HeaderMap {
    received
        .headers
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn outbound_requests_carry_standard_webhooks_signatures_for_every_secret() {
    let state_api = Receiver::start().await;
    let engine = TestEngine::start(&config(
        &format!(
            "    url: {}\n    secrets: [\"{SECRET}\", \"{OTHER_SECRET}\"]",
            state_api.url("/rates")
        ),
        5,
        "",
    ))
    .await;
    let id = post_rate(&engine, 3, 2025, None).await;
    let received = state_api.wait_for(1, WAIT).await;
    let request = &received[0];
    assert_eq!(
        request.header("webhook-id"),
        Some(format!("{id}.0.0").as_str())
    );
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - timestamp).abs() < 60, "{timestamp} vs {now}");
    assert_eq!(
        request
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    // The reference library verifies it with either secret, and not with a third.
    let headers = header_map(request);
    for secret in [SECRET, OTHER_SECRET] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &headers)
            .unwrap_or_else(|e| panic!("{secret}: {e}"));
    }
    let stranger = standardwebhooks::Webhook::new("whsec_c3RyYW5nZXI=").unwrap();
    assert!(stranger.verify(&request.body, &headers).is_err());
    engine.stop().await;
}

#[tokio::test]
async fn inbound_webhooks_must_carry_a_valid_recent_signature() {
    let core = Receiver::start().await;
    let extra = format!(
        r#"core:
  url: {}
externalWebhooks:
  - path: /webhook/tax-rate
    handler: tax-rate-inbound
    system: state-api
    secrets: ["{SECRET}"]
"#,
        core.url("/hms")
    );
    let engine = TestEngine::start(&config("    url: http://127.0.0.1:9/", 5, &extra)).await;
    let body = r#"{"currentRate": 0.07, "taxYear": 2025}"#;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign = |secret: &str, id: &str, at: i64, signed: &str| {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(id, at, signed.as_bytes())
            .unwrap()
    };
    let send = |id: &'static str, at: i64, signature: String, sent: &'static str| {
        let url = engine.url("/webhook/tax-rate");
        async move {
            let at = at.to_string();
            post_json(
                &url,
                sent,
                &[
                    ("webhook-id", id),
                    ("webhook-timestamp", at.as_str()),
                    ("webhook-signature", signature.as_str()),
                ],
            )
            .await
        }
    };
    let tampered = r#"{"currentRate": 0.99, "taxYear": 2025}"#;
    for (what, id, at, signature, sent) in [
        (
            "tampered body",
            "msg_1",
            now,
            sign(SECRET, "msg_1", now, body),
            tampered,
        ),
        (
            "wrong secret",
            "msg_2",
            now,
            sign(OTHER_SECRET, "msg_2", now, body),
            body,
        ),
        (
            "old timestamp",
            "msg_3",
            now - 600,
            sign(SECRET, "msg_3", now - 600, body),
            body,
        ),
        ("no signature", "msg_4", now, String::new(), body),
    ] {
        let (status, answer) = send(id, at, signature, sent).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "bad-signature", "{what}");
    }
    let signature = sign(SECRET, "msg_ok", now, body);
    let (status, answer) = send("msg_ok", now, signature.clone(), body).await;
    assert_eq!(status, 202, "{answer}");
    // The same signed request captured and sent again with an unsigned idempotency key of the
    // replayer's choosing: the signed `webhook-id` decides, so it is a duplicate.
    let (status, again) = post_json(
        &engine.url("/webhook/tax-rate"),
        body,
        &[
            ("webhook-id", "msg_ok"),
            ("webhook-timestamp", now.to_string().as_str()),
            ("webhook-signature", signature.as_str()),
            ("idempotency-key", "a-fresh-key"),
        ],
    )
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["status"], "duplicate", "{again}");
    assert_eq!(again["id"], answer["id"]);
    let received = core.wait_for(1, WAIT).await;
    assert_eq!(received[0].body, br#"{"rate":0.07,"year":2025}"#);
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 1);
}

/// The value of one sample in a Prometheus text page, 0 when absent.
#[tokio::test]
async fn metrics_count_what_happens_and_readiness_checks_the_store() {
    let state_api = Receiver::start().await;
    let engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        1,
        "",
    ))
    .await;
    let ready = http().get(engine.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let accepted = r#"sync_events_accepted_total{source="bus",event_type="tax.rate.updated"}"#;
    let processed = r#"sync_events_processed_total{source="bus",event_type="tax.rate.updated"}"#;
    let failed = r#"sync_events_failed_total{source="bus",event_type="tax.rate.updated"}"#;
    let delivered = r#"sync_deliveries_total{destination="state-api",outcome="delivered"}"#;
    let dead = r#"sync_deliveries_total{destination="state-api",outcome="dead"}"#;
    let before = scrape(&engine).await;
    assert_eq!(sample(&before, accepted), 0.0);

    for rate in 0..3 {
        post_rate(&engine, rate, 2025, None).await;
    }
    state_api.wait_for(3, WAIT).await;
    state_api.set_default_status(500);
    post_rate(&engine, 9, 2025, None).await;
    // A payload the plugin refuses: a failed event and a dead letter.
    let (status, _) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 1}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    wait_dead_letters(&engine, 2).await;

    let after = scrape(&engine).await;
    assert_eq!(sample(&after, accepted), 5.0, "{after}");
    assert_eq!(sample(&after, processed), 4.0, "{after}");
    assert_eq!(sample(&after, failed), 1.0, "{after}");
    assert_eq!(sample(&after, delivered), 3.0, "{after}");
    assert_eq!(sample(&after, dead), 1.0, "{after}");
    let version = &after
        .lines()
        .find(|l| l.starts_with("sync_plugin_run_seconds_count{plugin=\"tax-rate-outbound\""))
        .expect("a plugin run histogram")
        .to_owned();
    assert!(version.trim_end().ends_with(" 5"), "{version}");
    assert_eq!(sample(&after, "sync_dead_letters"), 2.0, "{after}");
    assert_eq!(
        sample(&after, r#"sync_queue_depth{queue="deliveries"}"#),
        0.0
    );
    assert!(
        after.contains("sync_delivery_attempt_seconds_count{destination=\"state-api\"} 4"),
        "{after}"
    );
    assert!(after.contains("sync_oldest_pending_age_seconds"));
    engine.stop().await;
}

#[tokio::test]
async fn the_admin_api_refuses_requests_without_its_token() {
    let engine = TestEngine::start(&config("    url: http://127.0.0.1:9/", 1, "")).await;
    for path in [
        "/admin/dead-letters",
        "/admin/events/x",
        "/admin/dead-letters/1",
    ] {
        let none = http().get(engine.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let wrong = http()
            .get(engine.url(path))
            .bearer_auth("guess")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    for (method, path) in [
        ("POST", "/admin/dead-letters/replay"),
        ("GET", "/admin/plugins"),
        ("GET", "/admin/plugins/tax-rate-outbound"),
        ("PUT", "/admin/plugins/tax-rate-outbound"),
        ("POST", "/admin/plugins/tax-rate-outbound/activate"),
        ("POST", "/admin/plugins/tax-rate-outbound/rollback"),
        ("DELETE", "/admin/plugins/tax-rate-outbound/versions/abc"),
    ] {
        let refused = http()
            .request(method.parse().unwrap(), engine.url(path))
            .json(&json!({"all": true, "hash": "abc"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{method} {path}");
    }
    engine.stop().await;

    // Without a configured token the admin API is off.
    let yaml = config("    url: http://127.0.0.1:9/", 1, "")
        .replace(&format!("admin:\n  token: {ADMIN}\n"), "");
    let engine = TestEngine::start(&yaml).await;
    let (status, answer) = admin(&engine, "GET", "/admin/dead-letters", None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("admin-disabled"))
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_failed_plugin_run_is_a_dead_letter_and_its_replay_runs_the_handler_again() {
    let core = Receiver::start().await;
    let webhook = || {
        format!(
            r#"core:
  url: {}
externalWebhooks:
  - path: /webhook/tax-rate
    handler: tax-rate-inbound
    system: state-api
"#,
            core.url("/hms")
        )
    };
    // The handler is told to emit an event type the engine refuses: its run fails.
    let fixed = config("    url: http://127.0.0.1:9/", 1, &webhook());
    let broken = fixed.replace(
        "  tax-rate-inbound:\n",
        "  tax-rate-inbound:\n    config:\n      event-type: \"not a type\"\n",
    );
    assert_ne!(broken, fixed);
    let engine = TestEngine::start(&broken).await;
    let (status, answer) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.05, "taxYear": 2026}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_owned();
    let dead = wait_dead_letters(&engine, 1).await;
    let letter = &dead["deadLetters"][0];
    assert_eq!(letter["kind"], "plugin");
    assert_eq!(letter["target"], "tax-rate-inbound");
    assert!(
        letter["error"].as_str().unwrap().contains("not a type"),
        "{letter}"
    );
    let dir = engine.stop().await;

    // Fixed configuration, same store: the replay runs the handler again.
    let engine = TestEngine::start_in(&fixed, dir).await;
    let (status, replayed) = admin(
        &engine,
        "POST",
        "/admin/dead-letters/replay",
        Some(json!({"destination": "tax-rate-inbound"})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"].as_array().unwrap().len(), 1);
    let received = core.wait_for(1, WAIT).await;
    assert_eq!(received[0].path, "/hms/events/tax.rate.updated");
    assert_eq!(received[0].header("hms-source-event"), Some(id.as_str()));

    let (_, history) = admin(&engine, "GET", &format!("/admin/events/{id}"), None).await;
    let runs = history["event"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{history}");
    assert_eq!(runs[0]["outcome"], "malformed-output");
    assert!(runs[0]["replayedAt"].is_i64());
    assert_eq!(runs[1]["outcome"], "ok");
    engine.stop().await;
}

#[tokio::test]
async fn a_plugin_may_not_set_headers_the_engine_or_the_destination_sets() {
    let echo = Receiver::start().await;
    let misbehave = component_path("misbehave");
    let yaml = config(&format!("    url: {}", echo.url("/unused")), 1, "")
        .replace(
            "plugins:\n",
            &format!("plugins:\n  misbehave:\n    path: {}\n", misbehave.display()),
        )
        .replace(
            "destinations:\n",
            &format!(
                "destinations:\n  echo:\n    url: {}\n    headers:\n      X-Api-Key: secret\n",
                echo.url("/echo")
            ),
        )
        .replace(
            "hmsEvents:\n",
            "hmsEvents:\n  - event: engine-header\n    handler: misbehave\n  - event: destination-header\n    handler: misbehave\n",
        );
    let engine = TestEngine::start(&yaml).await;
    for event_type in ["engine-header", "destination-header"] {
        let (status, answer) =
            post_json(&engine.url(&format!("/events/{event_type}")), "{}", &[]).await;
        assert_eq!(status, 202, "{answer}");
    }
    let dead = wait_dead_letters(&engine, 2).await;
    let errors: Vec<&str> = dead["deadLetters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["error"].as_str().unwrap())
        .collect();
    // The two events run on two routes, each in its own lane: they die in either order.
    assert_eq!(errors.len(), 2, "{errors:?}");
    for expected in [
        "`hms-hops` is set by the engine",
        "`x-api-key` is set by the destination's configuration",
    ] {
        assert_eq!(
            errors.iter().filter(|e| e.contains(expected)).count(),
            1,
            "{expected}: {errors:?}"
        );
    }
    assert!(echo.received().is_empty(), "nothing was sent");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_the_store_cannot_record_during_an_outage_is_recorded_later_not_sent_again() {
    let state_api = Receiver::start().await;
    state_api.set_default(Reply::from(200).after(Duration::from_millis(300)));
    let mut engine = TestEngine::start(&config(
        &format!("    url: {}", state_api.url("/rates")),
        5,
        "",
    ))
    .await;
    let id = post_rate(&engine, 1, 2025, None).await;
    state_api.wait_for(1, WAIT).await;
    // While the request is in flight, the store is out for 7 s (another process holds the
    // database's write lock, or the NATS server is down): the engine records the attempt once
    // the store is back.
    engine.store_outage(Duration::from_secs(7)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, history) = admin(&engine, "GET", &format!("/admin/events/{id}"), None).await;
        if history["event"]["actions"][0]["state"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{history}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = state_api.received();
    if sync_engine_tests::on_nats() {
        // The outage outlasted the work lease (2 s here): the engine stopped its work, took the
        // lease again once the server was back, and sent the row again, as an engine taking
        // over from a dead one would: the same request, with the same idempotency key.
        assert_eq!(received.len(), 2);
        assert_eq!(
            received[0].header("idempotency-key"),
            received[1].header("idempotency-key")
        );
    } else {
        // Sent once: the attempt was recorded late, not made again.
        assert_eq!(received.len(), 1);
    }
    // Nothing became a dead letter.
    let (_, dead) = admin(&engine, "GET", "/admin/dead-letters", None).await;
    assert_eq!(dead["deadLetters"], json!([]), "{dead}");
    engine.stop().await;
}
