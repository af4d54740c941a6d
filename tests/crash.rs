//! Nothing lost under crashes: thousands of events flow to a destination that fails a third of
//! its requests, while the engine process is SIGKILLed at random moments and restarted. At the
//! end every accepted event has been delivered, in order for each entity key; the number of
//! deliveries the receiver saw twice (at least once delivery after a crash) is reported.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use sync_engine_tests::{
    EngineProcess, Receiver, component_path, http, spawn_engine, wait_healthy,
};

const ENGINE: &str = env!("CARGO_BIN_EXE_sync-engine-e2e");
const EVENTS: u32 = 3000;
const KEYS: u32 = 30;
/// At least this many kills.
const KILLS: usize = 4;

fn spawn(config: &Path, log: &Path) -> EngineProcess {
    spawn_engine(ENGINE, config, log, "warn")
}

/// A number in [lo, hi) from the clock: the kill moments need only be unpredictable.
fn jitter(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    lo + u64::from(nanos) % (hi - lo)
}

// The report on stderr is this test's output: `cargo test --test crash -- --nocapture`.
#[allow(clippy::print_stderr)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_is_delivered_in_key_order_across_sigkills() {
    let state_api = Receiver::start().await;
    state_api.set_failure_rate(0.33);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // On the NATS pass the engine's store is a log on a server the test keeps running across
    // the kills; the engine restarted after a SIGKILL waits for its dead self's work lease.
    let nats = sync_engine_tests::on_nats().then(sync_engine_tests::NatsServer::start);
    let store = match &nats {
        Some(server) => format!(
            "  kind: nats\n  nats: {{servers: [{}], lease: 1s}}\n",
            server.url()
        ),
        None => String::new(),
    };
    let config = dir.path().join("engine.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: 127.0.0.1:{port}
store:
  path: data
{store}plugins:
  tax-rate-outbound:
    path: {outbound}
destinations:
  state-api:
    url: {url}
    concurrency: 64
    timeout: 2s
retry:
  initialDelay: 20ms
  factor: 2
  maxDelay: 200ms
  maxAttempts: 1000
  maxAge: 1h
hmsEvents:
  - event: tax.rate.updated
    handler: tax-rate-outbound
    destination: state-api
"#,
            outbound = component_path("tax-rate-outbound").display(),
            url = state_api.url("/rates"),
        ),
    )
    .unwrap();
    let log = dir.path().join("engine.log");
    let base = format!("http://127.0.0.1:{port}");
    let mut engine = spawn(&config, &log);
    wait_healthy(&base, Duration::from_secs(30)).await;

    // The sender: one event at a time, each sent until it is accepted (the same idempotency key
    // every time, as an HMS module retrying a request would), so acceptance order is known.
    let sender = tokio::spawn({
        let url = format!("{base}/events/tax.rate.updated");
        async move {
            let client = http();
            let mut retries = 0u32;
            for seq in 0..EVENTS {
                let key = seq % KEYS;
                let body = format!(r#"{{"rate": {seq}, "year": {}}}"#, 3000 + key);
                loop {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("hms-key", format!("k{key}"))
                        .header("idempotency-key", format!("event-{seq}"))
                        .body(body.clone())
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().as_u16() == 202 => break,
                        _ => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            retries
        }
    });

    // The killer: SIGKILL at random moments while events are still being sent (and at least
    // KILLS times), restarting the engine at once.
    let mut kills = 0;
    while kills < KILLS || !sender.is_finished() {
        tokio::time::sleep(Duration::from_millis(jitter(200, 900))).await;
        engine.kill().unwrap();
        engine.wait().unwrap();
        kills += 1;
        engine = spawn(&config, &log);
        wait_healthy(&base, Duration::from_secs(30)).await;
    }
    let sender_retries = sender.await.unwrap();

    let started = Instant::now();
    let received = state_api
        .wait_until(Duration::from_secs(240), |received| {
            received
                .iter()
                .filter(|r| r.status == 200)
                .filter_map(|r| r.header("idempotency-key"))
                .collect::<HashSet<_>>()
                .len()
                >= EVENTS as usize
        })
        .await;
    engine.kill().unwrap();
    engine.wait().unwrap();

    // Every event arrived, in order for its key; count the repeats.
    let mut seen = HashSet::new();
    let mut last_per_key: HashMap<u64, u64> = HashMap::new();
    let mut duplicates = 0;
    for request in received.iter().filter(|r| r.status == 200) {
        let body = request.json();
        let (seq, year) = (
            body["newRates"].as_u64().unwrap(),
            body["effectiveYear"].as_u64().unwrap(),
        );
        if !seen.insert(seq) {
            duplicates += 1;
            continue;
        }
        if let Some(previous) = last_per_key.insert(year, seq) {
            assert!(
                previous < seq,
                "key {year}: event {seq} arrived after event {previous}"
            );
        }
    }
    let missing: Vec<u32> = (0..EVENTS)
        .filter(|seq| !seen.contains(&u64::from(*seq)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events lost: {missing:?}",
        missing.len()
    );
    let failures = received.iter().filter(|r| r.status != 200).count();
    eprintln!(
        "crash test: {EVENTS} events over {KEYS} keys, {kills} SIGKILLs, {sender_retries} sender \
         retries while the engine was down, {failures} failed attempts at the destination, \
         0 lost, {duplicates} delivered twice, drained {:?} after the last event was accepted",
        started.elapsed()
    );
}
