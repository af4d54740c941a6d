//! The abuse suite: one engine under attack from every side at once (slow clients, oversized and
//! malformed bodies, payloads the conflict rules could not read, forged and replayed
//! signatures, hostile plugins, uploads whose compilation runs past its deadline, a burst of
//! guessed admin tokens, a destination whose URL carries a secret) while real traffic flows.
//! Every attack gets its refusal or its dead letter; every real event is delivered; health
//! answers throughout; the secret never reaches the record.

use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};
use sync_engine::store::Records;
use sync_engine_tests::{Receiver, TestEngine, component_path, open_store, post_json, seed_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN: &str = "admin-secret-for-abuse";
/// The query value of the `echo` destination's URL, which nothing may record.
const URL_SECRET: &str = "ABUSE-URL-SECRET-77";
/// Events of real traffic.
const REAL: u64 = 300;
/// The hostile plugin's modes, each an event type routed to it, and the error each run ends with.
const HOSTILE: [(&str, &str); 4] = [
    ("alloc", "memory-limit"),
    ("loop", "timeout"),
    ("huge", "output-too-large"),
    ("flood", "output-too-large"),
];

/// The seed's configuration, with the misbehaving handler on the hostile event types and on
/// `echo` (delivered to a destination nobody listens at, whose URL holds a secret), a signed
/// webhook route, and short deadlines for slow clients.
fn config(state_api: &str, core: &str) -> String {
    let hostile: String = HOSTILE
        .iter()
        .map(|(mode, _)| mode)
        .chain(&["echo"])
        .map(|mode| format!("  - event: {mode}\n    handler: misbehave\n"))
        .collect();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    seed_config(state_api, core)
        .replace(
            "destinations:\n",
            &format!(
                "destinations:\n  echo:\n    url: http://{nobody}/in?api_key={URL_SECRET}\n"
            ),
        )
        .replace(
            "plugins:\n",
            &format!(
                "plugins:\n  misbehave:\n    path: {}\n    limits:\n      timeout: 300ms\n",
                component_path("misbehave").display()
            ),
        )
        .replace("hmsEvents:\n", &format!("hmsEvents:\n{hostile}"))
        .replace(
            "externalWebhooks:\n",
            &format!(
                "externalWebhooks:\n  - path: /webhook/signed\n    handler: tax-rate-inbound\n    \
                 system: state-api\n    secrets: [\"{SECRET}\"]\n"
            ),
        )
        + "http:\n  headerTimeout: 1s\n  bodyTimeout: 1s\n"
        + &format!("admin:\n  token: {ADMIN}\n")
        // A deadline no compilation meets: every upload is a compile bomb.
        + "sandbox:\n  compileTimeout: 1ms\n"
}

/// The outbound plugin's active version.
async fn active(engine: &TestEngine) -> serde_json::Value {
    let (status, plugin) = sync_engine_tests::admin_call(
        engine,
        ADMIN,
        "GET",
        "/admin/plugins/tax-rate-outbound",
        None,
    )
    .await;
    assert_eq!(status, 200, "{plugin}");
    plugin["active"].clone()
}

/// A raw connection that sends `first`, then one more byte every 200 ms until the engine
/// closes it; answers what the engine said (empty when it closed without a word).
async fn drip(address: String, first: &'static [u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(first).await.unwrap();
    let mut answer = vec![0; 512];
    loop {
        tokio::select! {
            read = stream.read(&mut answer) => return answer[..read.unwrap_or(0)].to_vec(),
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b"x").await.is_err() {
                    let n = stream.read(&mut answer).await.unwrap_or(0);
                    return answer[..n].to_vec();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacks_from_every_side_while_real_traffic_flows_lose_nothing_accepted() {
    let state_api = Receiver::start().await;
    let core = Receiver::start().await;
    let engine = TestEngine::start(&config(&state_api.url("/rates"), &core.url("/hms"))).await;
    let address = engine.url("").trim_start_matches("http://").to_owned();
    let events = engine.url("/events/tax.rate.updated");

    // Slow clients: headers, then bodies, a byte at a time.
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(tokio::spawn(drip(
            address.clone(),
            b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n",
        )));
    }
    for _ in 0..20 {
        slow.push(tokio::spawn(drip(
            address.clone(),
            b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n\
              content-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        )));
    }
    // Oversized and malformed bodies.
    let mut refused = Vec::new();
    for n in 0..10 {
        let events = events.clone();
        refused.push(tokio::spawn(async move {
            let body = if n % 2 == 0 {
                format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20))
            } else {
                "{\"rate\": ".to_owned()
            };
            post_json(&events, &body, &[]).await.0
        }));
    }
    // Payloads the routes' pointers could not read, each beside a key: refused at the door.
    let mut unreadable = Vec::new();
    for body in [
        br#"{"rate": 1, "year": 2061, "note": "\ud800"}"#.to_vec(),
        b"{\"rate\": 1, \"year\": 2061, \"note\": \"\xff\"}".to_vec(),
        format!(
            r#"{{"rate": 1, "year": 2061, "deep": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        )
        .into_bytes(),
        br#"{"rate": 1, "year": 2061, "year": 1999}"#.to_vec(),
    ] {
        let response = sync_engine_tests::http()
            .post(&events)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        unreadable.push(response.status().as_u16());
    }
    // A burst of guessed admin tokens from another address: slowed, then refused, while the
    // owner's calls from here go on.
    let guesser = sync_engine_tests::client_from([127, 0, 0, 2]);
    let mut guesses = Vec::new();
    for n in 0..20 {
        let (guesser, url) = (guesser.clone(), engine.url("/admin/plugins"));
        guesses.push(tokio::spawn(async move {
            let response = guesser
                .get(url)
                .bearer_auth(format!("a-guessed-admin-token-{n}"))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
    }
    // A delivery to a URL that carries a secret, where nobody listens: a dead letter.
    let (status, leak) = post_json(&engine.url("/events/echo"), r#"{"x": 1}"#, &[]).await;
    assert_eq!(status, 202, "{leak}");
    let leak = leak["id"].as_str().unwrap().to_owned();
    // Forged signatures, and one signed webhook sent again with new unsigned keys.
    let signed = engine.url("/webhook/signed");
    let body = r#"{"currentRate": 0.05, "taxYear": 2030}"#;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signature = standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .sign("msg_abuse", now, body.as_bytes())
        .unwrap();
    let forged = standardwebhooks::Webhook::new("whsec_c3RyYW5nZXJzIHNlY3JldCBrZXk=")
        .unwrap()
        .sign("msg_abuse", now, body.as_bytes())
        .unwrap();
    let now = now.to_string();
    let mut webhook_answers = Vec::new();
    for (n, signature) in [
        (0, &forged),
        (1, &signature),
        (2, &signature),
        (3, &signature),
    ] {
        let key = format!("new-key-{n}");
        let (status, answer) = post_json(
            &signed,
            body,
            &[
                ("webhook-id", "msg_abuse"),
                ("webhook-timestamp", now.as_str()),
                ("webhook-signature", signature.as_str()),
                ("idempotency-key", key.as_str()),
            ],
        )
        .await;
        webhook_answers.push((status, answer["status"].as_str().map(str::to_owned)));
    }
    // Hostile plugins: each event is accepted and ends as a dead letter.
    let mut hostile = Vec::new();
    for (mode, code) in HOSTILE {
        let payload = if mode == "flood" { "100000" } else { "{}" };
        let (status, answer) =
            post_json(&engine.url(&format!("/events/{mode}")), payload, &[]).await;
        assert_eq!(status, 202, "{mode}: {answer}");
        hostile.push((answer["id"].as_str().unwrap().to_owned(), code));
    }
    // Compile bombs: uploads whose check runs past its deadline are refused; the active
    // version stays.
    let before = active(&engine).await;
    assert!(before.is_string(), "{before}");
    for _ in 0..3 {
        let (status, answer) = sync_engine_tests::upload_component(
            &engine,
            ADMIN,
            "tax-rate-outbound",
            sync_engine_tests::component("swap-two"),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer.to_string().contains("sandbox.compileTimeout"),
            "{answer}"
        );
    }
    // Real traffic, and health, throughout.
    for n in 0..REAL {
        let body = json!({"rate": n, "year": 3000 + n}).to_string();
        let (status, answer) = post_json(&events, &body, &[]).await;
        assert_eq!(status, 202, "{answer}");
        if n % 50 == 0 {
            let health = sync_engine_tests::http()
                .get(engine.url("/healthz"))
                .send()
                .await
                .unwrap();
            assert_eq!(health.status(), 200);
        }
    }

    // Every real event is delivered once.
    let received = state_api.wait_for(REAL as usize, WAIT).await;
    let years: BTreeSet<u64> = received
        .iter()
        .map(|r| r.json()["effectiveYear"].as_u64().unwrap())
        .collect();
    assert_eq!(years, (3000..3000 + REAL).collect::<BTreeSet<_>>());
    // Each attack got its answer.
    for answer in futures_join(slow).await {
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    let statuses = futures_join(refused).await;
    assert_eq!(
        statuses,
        [413, 400, 413, 400, 413, 400, 413, 400, 413, 400],
        "oversized bodies get 413, malformed ones 400"
    );
    assert_eq!(
        unreadable,
        [400, 400, 400, 400],
        "unreadable payloads get 400"
    );
    let guessed = futures_join(guesses).await;
    assert_eq!(
        guessed.iter().filter(|s| **s == 401).count(),
        16,
        "five answered at once, eleven a second apart: {guessed:?}"
    );
    assert_eq!(
        guessed.iter().filter(|s| **s == 429).count(),
        4,
        "the rest refused at once: {guessed:?}"
    );
    assert_eq!(webhook_answers[0].0, 401, "a forged signature");
    assert_eq!(
        webhook_answers[1..],
        [
            (202, Some("accepted".to_owned())),
            (202, Some("duplicate".to_owned())),
            (202, Some("duplicate".to_owned()))
        ],
        "a signed webhook sent again is a duplicate, whatever its unsigned key"
    );
    core.wait_for(1, WAIT).await;
    sync_engine_tests::admin_until(&engine, ADMIN, "/admin/dead-letters", WAIT, |a| {
        a["deadLetters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["eventId"] == leak.as_str())
    })
    .await;
    let after = active(&engine).await;
    assert_eq!(after, before, "the active version stayed");
    let dir = engine.stop().await;
    let store = open_store(dir.path());
    // Nothing else was stored: the real events, the webhook once, the hostile events, the leak.
    assert_eq!(
        store.event_count().await.unwrap(),
        REAL + 1 + HOSTILE.len() as u64 + 1
    );
    // The secret in the destination's URL is in none of its attempts, masked in each.
    let history = store.event_history(&leak).await.unwrap().unwrap();
    let (_, attempts) = &history.outbox[0];
    assert!(!attempts.is_empty());
    for attempt in attempts {
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(error.contains("api_key=***"), "{error}");
        assert!(!error.contains(URL_SECRET), "{error}");
    }
    // Each hostile run failed with its own error, and is a dead letter; nothing else is.
    for (id, code) in &hostile {
        let history = store.event_history(id).await.unwrap().unwrap();
        assert_eq!(history.runs[0].outcome.as_str(), *code, "{id}");
        assert_eq!(history.dead_letters.len(), 1, "{id}");
    }
    let dead = store.dead_letters(Default::default()).await.unwrap();
    assert_eq!(dead.len(), HOSTILE.len() + 1, "{dead:?}");
    assert!(
        dead.iter().all(|d| !d.error.contains(URL_SECRET)),
        "{dead:?}"
    );
    assert_eq!(core.received().len(), 1);
}

async fn futures_join<T: std::fmt::Debug>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}
