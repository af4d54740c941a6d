//! The engine service over real HTTP on loopback: the seed's tax-rate story both ways, retries,
//! and every kind of bad input. Engines run in this process; receivers are real servers.

use serde_json::json;
use std::time::Duration;
use sync_engine::store::{OutboxKind, OutboxState, Records, now_ms};
use sync_engine_tests::{
    Receiver, TestEngine, component_path, http, open_store, post_json, seed_config,
};

const WAIT: Duration = Duration::from_secs(20);

/// A fake state API (at `/rates`), a fake core (at `/hms`), and an engine on the seed's
/// configuration pointing at them, with `extra` appended to it.
async fn seed_engine(extra: &str) -> (Receiver, Receiver, TestEngine) {
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    let yaml = seed_config(&state_api.url("/rates"), &core.url("/hms")) + extra;
    let engine = TestEngine::start(&yaml).await;
    (state_api, core, engine)
}

#[tokio::test]
async fn an_hms_event_reaches_the_state_api_as_the_seeds_outbound_body() {
    let (state_api, core, engine) = seed_engine("").await;

    let (status, answer) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 0.0725, "year": 2025}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let id = answer["id"].as_str().expect("an event id").to_owned();

    let received = state_api.wait_for(1, WAIT).await;
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/rates");
    assert_eq!(request.body, br#"{"newRates":0.0725,"effectiveYear":2025}"#);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("idempotency-key"),
        Some(format!("{id}.0.0").as_str())
    );
    assert_eq!(
        request.header("webhook-id"),
        request.header("idempotency-key")
    );
    assert!(
        core.received().is_empty(),
        "nothing is emitted for an outbound event"
    );

    let dir = engine.stop().await;
    let history = open_store(dir.path())
        .event_history(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history.event.event.event_type, "tax.rate.updated");
    assert_eq!(history.event.event.origin, "hms");
    assert_eq!(history.runs.len(), 1);
    assert_eq!(history.runs[0].plugin, "tax-rate-outbound");
    assert_eq!(history.runs[0].outcome.as_str(), "ok");
    assert_eq!(history.runs[0].plugin_hash.len(), 64);
    let (row, attempts) = &history.outbox[0];
    assert_eq!(row.action.kind, OutboxKind::Deliver);
    assert_eq!(row.action.target, "state-api");
    assert_eq!(row.state, OutboxState::Delivered);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, Some(200));
}

#[tokio::test]
async fn a_state_webhook_reaches_the_hms_core_as_tax_rate_updated() {
    let (state_api, core, engine) = seed_engine("").await;

    let (status, answer) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 0.0725, "taxYear": 2025}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");

    let received = core.wait_for(1, WAIT).await;
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hms/events/tax.rate.updated");
    assert_eq!(request.body, br#"{"rate":0.0725,"year":2025}"#);
    assert_eq!(request.header("authorization"), Some("Bearer core-token"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("hms-origin"), Some("state-api"));
    assert_eq!(request.header("hms-key"), Some("tax-rate/2025"));
    assert_eq!(request.header("hms-source-event"), answer["id"].as_str());
    assert!(
        state_api.received().is_empty(),
        "the webhook's update does not go back to the state"
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_destination_that_fails_twice_gets_the_event_on_the_third_attempt_with_one_key() {
    let (state_api, _core, engine) = seed_engine("").await;
    state_api.script([503, 503]);

    let (status, answer) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 0.05, "year": 2026}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_owned();

    let received = state_api.wait_for(3, WAIT).await;
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    let keys: Vec<_> = received
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert!(
        keys.iter()
            .all(|k| *k == Some(format!("{id}.0.0").as_str())),
        "{keys:?}"
    );
    for r in &received {
        assert_eq!(r.body, br#"{"newRates":0.05,"effectiveYear":2026}"#);
    }
    // The delays grow: 50 ms then 100 ms (within 20% jitter).
    let first_gap = received[1].at - received[0].at;
    let second_gap = received[2].at - received[1].at;
    assert!(first_gap >= Duration::from_millis(40), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(80), "{second_gap:?}");

    let dir = engine.stop().await;
    let history = open_store(dir.path())
        .event_history(&id)
        .await
        .unwrap()
        .unwrap();
    let (row, attempts) = &history.outbox[0];
    assert_eq!(row.state, OutboxState::Delivered);
    assert_eq!(row.attempts, 3);
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| (a.number, a.status, a.outcome.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some(503), "retry"),
            (2, Some(503), "retry"),
            (3, Some(200), "delivered")
        ]
    );
    assert!(attempts[0].error.as_deref().unwrap().contains("503"));
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried_and_attempts_run_out() {
    let (state_api, core, engine) = seed_engine("").await;
    state_api.script([422]);
    core.set_default_status(503);

    let (_, refused) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 1, "year": 2020}"#,
        &[],
    )
    .await;
    let (_, exhausted) = post_json(
        &engine.url("/webhook/tax-rate"),
        r#"{"currentRate": 1, "taxYear": 2020}"#,
        &[],
    )
    .await;
    // The core answers 503 five times: every attempt the policy allows.
    core.wait_for(5, WAIT).await;
    state_api.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state_api.received().len(), 1, "a 422 is not retried");
    assert_eq!(core.received().len(), 5, "no attempt after the last");

    let dir = engine.stop().await;
    let store = open_store(dir.path());
    for (answer, attempts) in [(refused, 1), (exhausted, 5)] {
        let id = answer["id"].as_str().unwrap();
        let history = store.event_history(id).await.unwrap().unwrap();
        let (row, recorded) = &history.outbox[0];
        assert_eq!(row.state, OutboxState::Dead, "{id}");
        assert_eq!(recorded.len(), attempts);
        assert_eq!(recorded.last().unwrap().outcome.as_str(), "dead");
    }
}

#[tokio::test]
async fn bad_input_gets_its_status_and_a_json_error_and_nothing_is_stored() {
    let (state_api, core, engine) = seed_engine("maxBodySize: 1KiB\n").await;
    let client = sync_engine_tests::http();
    let big = format!(
        r#"{{"rate": 1, "year": 2020, "pad": "{}"}}"#,
        "x".repeat(2000)
    );

    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            client
                .post(engine.url("/events/tax.rate.updated"))
                .header("content-type", "application/json")
                .body("{\"rate\": "),
            400,
            "invalid-json",
            "not valid JSON",
        ),
        (
            client
                .post(engine.url("/webhook/tax-rate"))
                .header("content-type", "application/json")
                .body("not json"),
            400,
            "invalid-json",
            "not valid JSON",
        ),
        (
            client
                .post(engine.url("/webhook/tax-rate"))
                .header("content-type", "application/json")
                .body(""),
            400,
            "invalid-json",
            "not valid JSON",
        ),
        (
            client
                .post(engine.url("/webhook/unknown"))
                .header("content-type", "application/json")
                .body("{}"),
            404,
            "not-found",
            "/webhook/unknown",
        ),
        (
            client
                .post(engine.url("/events/policy.updated"))
                .header("content-type", "application/json")
                .body("{}"),
            404,
            "unknown-event-type",
            "policy.updated",
        ),
        (
            client
                .post(engine.url("/events/tax.rate.updated"))
                .header("content-type", "application/json")
                .body(big),
            413,
            "body-too-large",
            "maxBodySize",
        ),
        (
            client
                .post(engine.url("/events/tax.rate.updated"))
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "unsupported-media-type",
            "text/plain",
        ),
        (
            client
                .post(engine.url("/events/tax.rate.updated"))
                .header("content-type", "application/json")
                .header("hms-version", "three")
                .body("{}"),
            400,
            "invalid-header",
            "hms-version",
        ),
        (
            // An hour ahead: past the default `maxClockSkew` of five minutes.
            client
                .post(engine.url("/events/tax.rate.updated"))
                .header("content-type", "application/json")
                .header("hms-timestamp", (now_ms() + 3_600_000).to_string())
                .body("{}"),
            400,
            "invalid-header",
            "`hms-timestamp",
        ),
        (
            client.get(engine.url("/webhook/tax-rate")),
            405,
            "method-not-allowed",
            "does not accept GET",
        ),
    ];
    for (request, status, code, message) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{code}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{code}"
        );
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        let text = body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{code}: {text}");
    }
    // The 405 names what the path does accept.
    let response = client
        .get(engine.url("/webhook/tax-rate"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 0);
    assert!(state_api.received().is_empty());
    assert!(core.received().is_empty());
}

#[tokio::test]
async fn the_bus_can_require_a_token() {
    let (_state_api, _core, engine) = seed_engine("bus:\n  token: bus-secret-for-tests\n").await;
    let url = engine.url("/events/tax.rate.updated");
    let body = r#"{"rate": 1, "year": 2020}"#;
    let (status, answer) = post_json(&url, body, &[]).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // The scheme is case-insensitive; the token is not.
    for (authorization, expected) in [
        ("Bearer wrong", 401),
        ("Bearer bus-secret-for-tests", 202),
        ("bearer bus-secret-for-tests", 202),
        ("Bearer BUS-SECRET-FOR-TESTS", 401),
    ] {
        let (status, _) = post_json(&url, body, &[("authorization", authorization)]).await;
        assert_eq!(status, expected, "{authorization}");
    }
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 2);
}

/// Sends only the head of a POST announcing a large body, and returns the first line of the
/// answer, which must come before any of the body is sent.
async fn answer_to_headers_alone(engine: &TestEngine, path: &str, extra: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect(engine).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: engine\r\ncontent-type: application/json\r\n\
         content-length: 50000000\r\n{extra}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = answer_within(&mut stream, WAIT)
        .await
        .expect("an answer before the body");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_request_without_its_token_is_refused_before_its_body_is_read() {
    let (_state_api, _core, engine) = seed_engine(
        "bus:\n  token: bus-secret-for-tests\nadmin:\n  token: admin-secret-for-tests\n",
    )
    .await;
    for path in [
        "/events/tax.rate.updated",
        "/admin/dead-letters/replay",
        "/admin/plugins/tax-rate-outbound/activate",
    ] {
        let status = answer_to_headers_alone(&engine, path, "").await;
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{path}");
        let status =
            answer_to_headers_alone(&engine, path, "authorization: Bearer wrong-token-value\r\n")
                .await;
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{path}");
    }
    // With the token, an admin JSON body is limited to 256 KiB: a larger one is refused.
    let too_large = format!(r#"{{"ids": [{}]}}"#, vec!["1"; 150_000].join(","));
    let response = http()
        .post(engine.url("/admin/dead-letters/replay"))
        .bearer_auth("admin-secret-for-tests")
        .header("content-type", "application/json")
        .body(too_large)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_repeated_request_with_the_same_idempotency_key_is_stored_once() {
    let (state_api, _core, engine) = seed_engine("").await;
    let url = engine.url("/events/tax.rate.updated");
    let body = r#"{"rate": 2, "year": 2021}"#;
    let (first_status, first) = post_json(&url, body, &[("idempotency-key", "hms-42")]).await;
    let (second_status, second) = post_json(&url, body, &[("idempotency-key", "hms-42")]).await;
    let (_, other) = post_json(&url, body, &[("idempotency-key", "hms-43")]).await;
    assert_eq!((first_status, second_status), (202, 202));
    assert_eq!(first["status"], "accepted");
    assert_eq!(second["status"], "duplicate");
    assert_eq!(first["id"], second["id"]);
    assert_ne!(first["id"], other["id"]);
    state_api.wait_for(2, WAIT).await;
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 2);
    assert_eq!(state_api.received().len(), 2);
}

#[tokio::test]
async fn bus_headers_describe_the_event_to_the_plugin_and_its_deliveries() {
    let (state_api, _core, engine) = seed_engine("").await;
    let (status, answer) = post_json(
        &engine.url("/events/tax.rate.updated"),
        &json!({"rate": 3, "year": 2022}).to_string(),
        &[
            ("hms-origin", "irs-policy"),
            ("hms-key", "tax-rate/2022"),
            ("hms-version", "7"),
            ("hms-timestamp", "1700000000000"),
        ],
    )
    .await;
    assert_eq!(status, 202);
    state_api.wait_for(1, WAIT).await;
    let dir = engine.stop().await;
    let history = open_store(dir.path())
        .event_history(answer["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let event = &history.event.event;
    assert_eq!(event.origin, "irs-policy");
    assert_eq!(event.key.as_deref(), Some("tax-rate/2022"));
    assert_eq!(event.version, Some(7));
    assert_eq!(event.timestamp, 1_700_000_000_000);
    let (row, _) = &history.outbox[0];
    assert_eq!(row.action.key.as_deref(), Some("tax-rate/2022"));
    assert_eq!(row.action.version, Some(7));
    assert_eq!(row.action.origin, "irs-policy");
}

#[tokio::test]
async fn the_admin_api_and_metrics_can_have_their_own_listener_and_metrics_a_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_state_api, _core, engine) = seed_engine(&format!(
        "admin:\n  token: admin-secret-for-tests\n  listen: 127.0.0.1:{port}\n  \
         metricsToken: metrics-secret-for-tests\n"
    ))
    .await;
    let admin = format!("http://127.0.0.1:{port}");
    let get = |url: String, token: Option<&'static str>| async move {
        let mut request = http().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    };
    let admin_token = Some("admin-secret-for-tests");
    let metrics_token = Some("metrics-secret-for-tests");
    // The public listener: events and health, no admin API, no metrics.
    assert_eq!(get(engine.url("/admin/plugins"), admin_token).await, 404);
    assert_eq!(get(engine.url("/metrics"), metrics_token).await, 404);
    assert_eq!(get(engine.url("/healthz"), None).await, 200);
    let body = r#"{"rate": 1, "year": 2020}"#;
    let (status, _) = post_json(&engine.url("/events/tax.rate.updated"), body, &[]).await;
    assert_eq!(status, 202);
    // The admin listener: the admin API and metrics, each behind its token, and health.
    assert_eq!(
        get(format!("{admin}/admin/plugins"), admin_token).await,
        200
    );
    assert_eq!(get(format!("{admin}/admin/plugins"), None).await, 401);
    assert_eq!(get(format!("{admin}/metrics"), None).await, 401);
    assert_eq!(get(format!("{admin}/metrics"), admin_token).await, 401);
    assert_eq!(get(format!("{admin}/metrics"), metrics_token).await, 200);
    assert_eq!(get(format!("{admin}/healthz"), None).await, 200);
    let (status, _) = post_json(&format!("{admin}/events/tax.rate.updated"), body, &[]).await;
    assert_eq!(status, 404);
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 1);
}

/// A raw connection to an engine.
async fn connect(engine: &TestEngine) -> tokio::net::TcpStream {
    let address = engine.url("").trim_start_matches("http://").to_owned();
    tokio::net::TcpStream::connect(address).await.unwrap()
}

/// What the engine answers on `stream` within `wait`: the bytes read (empty when it closed
/// the connection), or `None` when it said nothing.
async fn answer_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut answer = vec![0; 1024];
    match tokio::time::timeout(wait, stream.read(&mut answer)).await {
        Ok(Ok(n)) => Some(answer[..n].to_vec()),
        Ok(Err(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: engine\r\n\r\n";

/// A regular (not spare) connection, kept alive after one health check. The engine may still
/// hold a connection that is closing (the test client's health check at start): until it is
/// gone, connections beyond the cap are spare ones, which say they close; those are retried.
async fn regular(engine: &TestEngine) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    loop {
        let mut stream = connect(engine).await;
        stream.write_all(HEALTH).await.unwrap();
        let answer = answer_within(&mut stream, WAIT).await.unwrap();
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        if !text.contains("connection: close") {
            return stream;
        }
        assert!(started.elapsed() < WAIT, "no regular connection came free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_drips_its_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let (_state_api, _core, engine) = seed_engine("http:\n  headerTimeout: 500ms\n").await;
    let mut slow = connect(&engine).await;
    slow.write_all(b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n")
        .await
        .unwrap();
    // The rest of the headers never comes: the engine closes the connection (with a 408 or
    // without a word), well before the test gives up.
    let answer = answer_within(&mut slow, WAIT)
        .await
        .expect("the connection is closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Others are served as ever.
    let mut other = connect(&engine).await;
    other.write_all(HEALTH).await.unwrap();
    let answer = answer_within(&mut other, WAIT).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    engine.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let (_state_api, _core, engine) = seed_engine("http:\n  headerTimeout: 500ms\n").await;
    let mut idle = connect(&engine).await;
    idle.write_all(HEALTH).await.unwrap();
    let answer = answer_within(&mut idle, WAIT).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    // Kept alive, then silent: the wait for a next request counts as its header time.
    let answer = answer_within(&mut idle, WAIT)
        .await
        .expect("the idle connection is closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_client_that_drips_its_body_gets_408_and_nothing_is_accepted() {
    use tokio::io::AsyncWriteExt;
    let (_state_api, _core, engine) = seed_engine("http:\n  bodyTimeout: 1s\n").await;
    let mut slow = connect(&engine).await;
    slow.write_all(
        b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n\
          content-type: application/json\r\ncontent-length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    // A byte every 100 ms: each read is quick, the body as a whole is not.
    let started = std::time::Instant::now();
    let answer = loop {
        if slow.write_all(b" ").await.is_err() {
            break answer_within(&mut slow, WAIT).await.unwrap_or_default();
        }
        if let Some(answer) = answer_within(&mut slow, Duration::from_millis(100)).await {
            break answer;
        }
        assert!(
            started.elapsed() < WAIT,
            "the dripping body was never cut off"
        );
    };
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body-timeout"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // A whole body on a new connection is accepted as ever.
    let (status, _) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 1, "year": 2020}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 1);
}

#[tokio::test]
async fn beyond_the_cap_health_still_answers_others_get_503_and_then_connections_wait() {
    use tokio::io::AsyncWriteExt;
    let (_state_api, _core, engine) = seed_engine("http:\n  maxConnections: 2\n").await;
    // Both regular connections held (kept alive): the next one is a spare one, served one
    // request by the health router: health answers, and the connection is closed after it.
    let (first, second) = (regular(&engine).await, regular(&engine).await);
    let mut third = connect(&engine).await;
    third.write_all(HEALTH).await.unwrap();
    let answer = answer_within(&mut third, WAIT).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert_eq!(
        answer_within(&mut third, WAIT).await,
        Some(Vec::new()),
        "the spare connection is closed after one answer"
    );
    // An event on a spare connection is refused with a time to come back, and not accepted.
    let mut fourth = connect(&engine).await;
    fourth
        .write_all(
            b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n\
              content-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let answer = answer_within(&mut fourth, WAIT).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("too-many-connections"), "{text}");
    drop((third, fourth));
    // Two spare connections held open (as many as the cap): the next one waits, unanswered,
    // until a connection closes.
    let spares = (connect(&engine).await, connect(&engine).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = connect(&engine).await;
    waiting.write_all(HEALTH).await.unwrap();
    assert_eq!(
        answer_within(&mut waiting, Duration::from_millis(500)).await,
        None,
        "a connection was served beyond the cap and the spares"
    );
    drop(first);
    let answer = answer_within(&mut waiting, WAIT).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    drop((second, spares));
    let dir = engine.stop().await;
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_does_not_hold_up_shutdown() {
    use tokio::io::AsyncWriteExt;
    let (_state_api, _core, engine) = seed_engine("http:\n  shutdownTimeout: 500ms\n").await;
    let mut stuck = connect(&engine).await;
    stuck
        .write_all(
            b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"rate\":",
        )
        .await
        .unwrap();
    // The request is in flight (headers in, body unfinished) when the engine is told to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dir = tokio::time::timeout(WAIT, engine.stop())
        .await
        .expect("the engine stops despite the unfinished request");
    assert_eq!(open_store(dir.path()).event_count().await.unwrap(), 0);
    // And its connection was closed, not left open behind the stopped engine.
    let closed = answer_within(&mut stuck, WAIT).await;
    assert!(closed.is_some(), "the connection is still open");
}

#[tokio::test]
async fn on_shutdown_the_processor_finishes_the_events_running_and_leaves_the_rest_pending() {
    // Twenty events for a plugin that burns its whole second, on one worker: the batch would
    // take twenty seconds.
    let yaml = format!(
        "plugins:\n  misbehave:\n    path: {}\n    limits:\n      timeout: 1s\n\
         sandbox:\n  workers: 1\n\
         hmsEvents:\n  - event: loop\n    handler: misbehave\n",
        component_path("misbehave").display()
    );
    let engine = TestEngine::start(&yaml).await;
    for _ in 0..20 {
        let (status, answer) = post_json(&engine.url("/events/loop"), "{}", &[]).await;
        assert_eq!(status, 202, "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let dir = engine.stop().await;
    let stopping = started.elapsed();
    // The running event ends at its deadline; the events not started are not run first.
    assert!(stopping < Duration::from_secs(10), "{stopping:?}");
    let store = open_store(dir.path());
    let backlog = store.backlog().await.unwrap();
    assert_eq!(store.event_count().await.unwrap(), 20);
    assert!(backlog.pending_events >= 15, "{backlog:?}");
    // Each event either ran (a dead letter: it timed out) or is still pending: none is lost.
    assert_eq!(
        backlog.pending_events + backlog.dead_letters,
        20,
        "{backlog:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_plugin_burns_its_deadline_does_not_hold_up_another_route() {
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    // The seed's route keyed by year (its deliveries wait for their route's watermark), and a
    // route whose plugin loops until its deadline on every event.
    let yaml = seed_config(&state_api.url("/rates"), &core.url("/hms"))
        .replace(
            "    destination: state-api\n",
            "    destination: state-api\n    conflict:\n      strategy: last-write-wins\n      key: /year\n",
        )
        .replace(
            "plugins:\n",
            &format!(
                "plugins:\n  misbehave:\n    path: {}\n    limits:\n      timeout: 200ms\n",
                component_path("misbehave").display()
            ),
        )
        .replace("hmsEvents:\n", "hmsEvents:\n  - event: loop\n    handler: misbehave\n")
        + "sandbox:\n  workers: 2\n";
    let engine = TestEngine::start(&yaml).await;
    // 2,000 events that take 200 ms each: minutes of work for that route.
    let url = engine.url("/events/loop");
    let mut posts = tokio::task::JoinSet::new();
    for chunk in 0..16 {
        let url = url.clone();
        posts.spawn(async move {
            for _ in 0..125 {
                let (status, answer) = post_json(&url, "{}", &[]).await;
                assert_eq!(status, 202, "{chunk}: {answer}");
            }
        });
    }
    while let Some(done) = posts.join_next().await {
        done.unwrap();
    }
    // The other route's event is delivered in seconds, not after the backlog.
    let started = std::time::Instant::now();
    let (status, _) = post_json(
        &engine.url("/events/tax.rate.updated"),
        r#"{"rate": 0.05, "year": 2024}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let received = state_api.wait_for(1, WAIT).await;
    assert_eq!(received[0].json()["effectiveYear"], 2024);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let dir = engine.stop().await;
    // The slow route's events are still there, processed or pending: none lost.
    let store = open_store(dir.path());
    assert_eq!(store.event_count().await.unwrap(), 2_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_tokens_are_slowed_while_the_owner_elsewhere_gets_in_at_once() {
    const ADMIN: &str = "admin-token-for-the-throttle-test";
    const BUS: &str = "bus-token-for-the-throttle-test";
    let (_state_api, _core, engine) =
        seed_engine(&format!("admin:\n  token: {ADMIN}\nbus:\n  token: {BUS}\n")).await;
    let attacker = sync_engine_tests::client_from([127, 0, 0, 2]);
    let owner = sync_engine_tests::client_from([127, 0, 0, 3]);

    // 30 wrong admin tokens sent at once from one address: the first five are answered at
    // once, the next ten one a second, and the rest at once with 429 and when to come back.
    let started = std::time::Instant::now();
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..30 {
        let (attacker, url) = (attacker.clone(), engine.url("/admin/overview"));
        guesses.spawn(async move {
            let response = attacker
                .get(url)
                .bearer_auth(format!("guess-number-{n}-of-the-admin-token"))
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), retry_after)
        });
    }
    // Meanwhile the owner, from another address, gets in at once, every time.
    for _ in 0..3 {
        let response = owner
            .get(engine.url("/admin/overview"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let owner_took = started.elapsed();
    sync_engine_tests::metric_until(
        &engine,
        r#"sync_auth_failures_total{credential="admin"}"#,
        WAIT,
        |failures| failures >= 30.0,
    )
    .await;
    // While the guessing address's queue is full, even the right token from it is told to
    // come back: how soon an answer comes tells nothing. The console's login and the bus token
    // go through the same throttle.
    let right = attacker
        .get(engine.url("/admin/overview"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429);
    let login = attacker
        .post(engine.url("/console/login"))
        .form(&[("token", "another-guess-at-the-token"), ("next", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    assert!(
        login
            .text()
            .await
            .unwrap()
            .contains("Too many wrong tokens")
    );
    let bus = attacker
        .post(engine.url("/events/tax.rate.updated"))
        .bearer_auth("a-guess-at-the-bus-token")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bus.status(), 429);

    let mut answers = Vec::new();
    while let Some(answer) = guesses.join_next().await {
        answers.push(answer.unwrap());
    }
    let slowest = started.elapsed();
    let wrong = answers.iter().filter(|(s, _)| *s == 401).count();
    let too_many: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(wrong + too_many.len(), 30, "{answers:?}");
    assert_eq!(
        wrong, 16,
        "5 free, then 11 spaced a second apart: {answers:?}"
    );
    for (_, retry_after) in &too_many {
        let seconds: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=12).contains(&seconds), "{retry_after:?}");
    }
    assert!(
        slowest >= Duration::from_secs(9),
        "the last wrong token waited its turn: {slowest:?}"
    );
    assert!(
        owner_took < Duration::from_secs(3),
        "the owner's calls never waited a turn: {owner_took:?}"
    );

    // A request with no token at all is refused at once and not counted.
    let bare = attacker
        .get(engine.url("/admin/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);

    let metrics = sync_engine_tests::scrape(&engine).await;
    let sample = |series: &str| sync_engine_tests::sample(&metrics, series);
    assert_eq!(
        sample(r#"sync_auth_failures_total{credential="admin"}"#),
        30.0
    );
    assert_eq!(
        sample(r#"sync_auth_failures_total{credential="console"}"#),
        1.0
    );
    assert_eq!(sample(r#"sync_auth_failures_total{credential="bus"}"#), 1.0);
    assert_eq!(
        sample(r#"sync_auth_throttled_total{credential="admin"}"#),
        25.0
    );
    engine.stop().await;
}
