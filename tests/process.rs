//! The `sync-engine` command as a process: crash safety under SIGKILL, graceful shutdown on
//! SIGTERM, and `validate` on broken configurations.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use sync_engine_tests::{
    ARTIFACTS, EngineProcess, Receiver, post_json, seed_config, spawn_engine, wait_healthy,
};

/// The engine's `main`, built by this package (see `Cargo.toml`).
const ENGINE: &str = env!("CARGO_BIN_EXE_sync-engine-e2e");

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `sync-engine run` on a config file, logging to `log`, and waits until `url` answers.
async fn start_engine(config: &Path, log: &Path, url: &str) -> EngineProcess {
    let child = spawn_engine(ENGINE, config, log, "info");
    wait_healthy(url, Duration::from_secs(30)).await;
    child
}

/// Kills an engine with SIGKILL and reaps it.
fn kill(mut engine: EngineProcess) {
    engine.kill().unwrap();
    engine.wait().unwrap();
}

fn write_config(dir: &Path, port: u16, state_api: &str) -> PathBuf {
    let mut yaml = seed_config(state_api, state_api);
    // Keep retrying, quickly, for as long as the test needs.
    yaml = yaml.replace("maxAttempts: 5", "maxAttempts: 1000");
    yaml = yaml.replace("maxDelay: 1s", "maxDelay: 200ms");
    yaml.push_str(&format!("listen: 127.0.0.1:{port}\nstore:\n  path: data\n"));
    let path = dir.join("engine.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_while_the_destination_is_down_survive_sigkill() {
    const EVENTS: usize = 300;
    let state_api = Receiver::start().await;
    state_api.set_default_status(503);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &state_api.url("/rates"));
    let log = dir.path().join("engine.log");
    let url = format!("http://127.0.0.1:{port}");

    let engine = start_engine(&config, &log, &url).await;
    let mut ids = HashSet::new();
    for year in 0..EVENTS {
        let body = format!(r#"{{"rate": 0.01, "year": {}}}"#, 1000 + year);
        let (status, answer) =
            post_json(&format!("{url}/events/tax.rate.updated"), &body, &[]).await;
        assert_eq!(status, 202, "{answer}");
        ids.insert(answer["id"].as_str().unwrap().to_owned());
    }
    // Let some events be processed and retried, then kill the engine without warning.
    state_api.wait_for(10, Duration::from_secs(20)).await;
    kill(engine);
    assert!(
        state_api.received().iter().all(|r| r.status == 503),
        "nothing was delivered before the kill"
    );

    state_api.set_default_status(200);
    let engine = start_engine(&config, &log, &url).await;
    let received = state_api
        .wait_until(Duration::from_secs(60), |received| {
            received
                .iter()
                .filter(|r| r.status == 200)
                .filter_map(|r| r.header("idempotency-key"))
                .filter_map(|key| key.strip_suffix(".0.0"))
                .collect::<HashSet<_>>()
                .len()
                >= EVENTS
        })
        .await;
    let delivered: HashSet<&str> = received
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.header("idempotency-key")?.strip_suffix(".0.0"))
        .collect();
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !delivered.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events lost: {missing:?}",
        missing.len()
    );
    kill(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_engine_cleanly_and_pending_work_resumes_on_restart() {
    let state_api = Receiver::start().await;
    state_api.set_default_status(503);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &state_api.url("/rates"));
    let log = dir.path().join("engine.log");
    let url = format!("http://127.0.0.1:{port}");

    let mut engine = start_engine(&config, &log, &url).await;
    let (status, answer) = post_json(
        &format!("{url}/events/tax.rate.updated"),
        r#"{"rate": 0.02, "year": 2030}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    state_api.wait_for(1, Duration::from_secs(20)).await;

    signal(&engine, "TERM");
    let exit = exit_within(&mut engine, Duration::from_secs(30))
        .await
        .expect("the engine stops on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("SIGTERM: shutting down"), "{text}");
    assert!(text.contains("sync engine stopped"), "{text}");

    state_api.set_default_status(200);
    let engine = spawn_engine(ENGINE, &config, &log, "info");
    let id = answer["id"].as_str().unwrap();
    state_api
        .wait_until(Duration::from_secs(30), |received| {
            received.iter().any(|r| {
                r.status == 200 && r.header("idempotency-key") == Some(&format!("{id}.0.0"))
            })
        })
        .await;
    kill(engine);
}

#[test]
fn validate_names_the_bad_key_of_every_broken_config() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} says what it expects",
            path.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(path.file_name().unwrap());
        std::fs::write(&config, text.replace("{artifacts}", ARTIFACTS)).unwrap();
        let output = Command::new(ENGINE)
            .arg("validate")
            .arg(&config)
            .env_remove("SYNC_ENGINE_TEST_NEVER_SET")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: {stdout}",
            path.display()
        );
        assert!(stdout.contains("is not a valid configuration"), "{stdout}");
        for line in expected {
            assert!(
                stdout.contains(line),
                "{} should say {line:?}; it said:\n{stdout}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "{checked} fixtures");
}

/// Sends `signal` (`TERM`, `INT`) to a process.
fn signal(engine: &EngineProcess, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), engine.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits up to `limit` for a process to exit.
async fn exit_within(
    engine: &mut EngineProcess,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = engine.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_when_a_request_holds_up_shutdown() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "http://127.0.0.1:9/rates");
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("http:\n  shutdownTimeout: 60s\n");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.path().join("engine.log");
    let mut engine = start_engine(&config, &log, &format!("http://127.0.0.1:{port}")).await;
    // A request whose body never finishes.
    let mut stuck = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stuck
        .write_all(
            b"POST /events/tax.rate.updated HTTP/1.1\r\nhost: engine\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&engine, "TERM");
    assert!(
        exit_within(&mut engine, Duration::from_millis(500))
            .await
            .is_none(),
        "the first signal waits for the request (up to http.shutdownTimeout)"
    );
    signal(&engine, "TERM");
    let exit = exit_within(&mut engine, Duration::from_secs(20))
        .await
        .expect("the second signal exits at once");
    assert!(!exit.success(), "{exit:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("SIGTERM, a second signal: exiting now"),
        "{text}"
    );
    drop(stuck);
}

/// Runs `sync-engine run` on `config` at `listen`, expects it to refuse to start, and returns
/// what it said.
fn run_expecting_refusal(config: &Path, listen: &str) -> String {
    let output = Command::new(ENGINE)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(listen)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_data_directory_refuses_to_start_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "http://127.0.0.1:9/rates");
    let log = dir.path().join("engine.log");
    let first = start_engine(&config, &log, &format!("http://127.0.0.1:{port}")).await;
    let stderr = run_expecting_refusal(&config, &format!("127.0.0.1:{}", free_port()));
    assert!(
        stderr.contains(&format!(
            "in use by another engine (process {})",
            first.id()
        )),
        "{stderr}"
    );
    // The first one serves on, and once it is gone the directory is free again.
    let (status, _) = post_json(
        &format!("http://127.0.0.1:{port}/events/tax.rate.updated"),
        r#"{"rate": 1, "year": 2020}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    kill(first);
    let again = start_engine(&config, &log, &format!("http://127.0.0.1:{port}")).await;
    kill(again);
}

#[test]
fn run_refuses_to_listen_beyond_loopback_while_anyone_could_write_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), "http://127.0.0.1:9/rates");
    let stderr = run_expecting_refusal(&config, &format!("0.0.0.0:{}", free_port()));
    assert!(stderr.contains("bus.token: required"), "{stderr}");
    assert!(
        stderr.contains("externalWebhooks[0].secrets: required"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was started: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_listen_brings_an_exposed_configuration_back_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), "http://127.0.0.1:9/rates");
    let yaml = std::fs::read_to_string(&config).unwrap();
    let exposed = yaml.replace("listen: 127.0.0.1:", "listen: 0.0.0.0:");
    std::fs::write(&config, exposed).unwrap();
    // As the file says, it is refused; on loopback, the same file runs.
    let stderr = run_expecting_refusal(&config, &format!("0.0.0.0:{}", free_port()));
    assert!(stderr.contains("bus.token: required"), "{stderr}");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let engine = sync_engine_tests::spawn_engine_with(
        ENGINE,
        &config,
        &dir.path().join("engine.log"),
        "info",
        &["--listen", &listen],
    );
    wait_healthy(&format!("http://{listen}"), Duration::from_secs(30)).await;
    kill(engine);
}

#[test]
fn validate_accepts_the_example_configurations() {
    for example in ["tax-rate.yaml", "tax-rate-nats.yaml"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let example = root.join("examples").join(example);
        // The examples read the plugins where `scripts/run-example` builds them; check a copy
        // that points at this build's plugins.
        let built_by_the_script = "../target/wasm-plugins/wasm32-unknown-unknown/plugin";
        let text = std::fs::read_to_string(&example).unwrap();
        assert!(text.contains(built_by_the_script), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tax-rate.yaml");
        std::fs::write(&config, text.replace(built_by_the_script, ARTIFACTS)).unwrap();
        let output = Command::new(ENGINE)
            .arg("validate")
            .arg(&config)
            .env("HMS_CORE_TOKEN", "test")
            .env("SYNC_ENGINE_ADMIN_TOKEN", "an-admin-token-for-tests")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {stdout}\n{}",
            example.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(
                "is valid: 2 plugin(s), 1 destination(s), 1 HMS event route(s), 1 webhook(s)"
            ),
            "{stdout}"
        );
    }
}

#[test]
fn plugin_check_reports_the_world_or_the_refusal() {
    let output = Command::new(ENGINE)
        .args(["plugin", "check"])
        .arg(format!("{ARTIFACTS}/tax_rate_inbound.wasm"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("implements the handler world"), "{stdout}");
    assert!(stdout.contains("hms:sync/log@0.1.0"), "{stdout}");

    let output = Command::new(ENGINE)
        .args(["plugin", "check"])
        .arg(format!("{ARTIFACTS}/wrong_shape.wasm"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("refused"), "{stdout}");
    assert!(stdout.contains("`transform` function"), "{stdout}");

    // Built against a WIT version this engine does not load: refused, naming both.
    let output = Command::new(ENGINE)
        .args(["plugin", "check"])
        .arg(format!("{ARTIFACTS}/wit_next.wasm"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("built against `hms:sync@0.2.0`")
            && stdout.contains("this engine loads `hms:sync@0.1.0`"),
        "{stdout}"
    );
}

/// Runs a `sync-engine` command to completion; returns its exit code and stdout.
fn run_command(args: &[&str]) -> (i32, String) {
    let output = Command::new(ENGINE).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{stdout}{}",
            if output.status.success() { "" } else { &stderr }
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_and_events_commands_list_show_and_replay_through_the_admin_api() {
    let state_api = Receiver::start().await;
    state_api.set_default_status(503);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &state_api.url("/rates"));
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml = yaml.replace("maxAttempts: 1000", "maxAttempts: 2");
    yaml.push_str("admin:\n  token: cli-secret-for-tests\n");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.path().join("engine.log");
    let url = format!("http://127.0.0.1:{port}");
    let engine = start_engine(&config, &log, &url).await;
    let config = config.to_str().unwrap();

    let (status, answer) = post_json(
        &format!("{url}/events/tax.rate.updated"),
        r#"{"rate": 0.04, "year": 2031}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (code, out) = run_command(&["dlq", "list", "--config", config]);
        assert_eq!(code, 0, "{out}");
        if out.starts_with("#1 ") {
            break out;
        }
        assert!(Instant::now() < deadline, "no dead letter: {out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        listed.contains(&format!(
            "event {id} (tax.rate.updated) at state-api by tax-rate-outbound@"
        )),
        "{listed}"
    );
    assert!(listed.contains("HTTP 503"), "{listed}");

    let (code, shown) = run_command(&["events", "show", &id, "--config", config]);
    assert_eq!(code, 0, "{shown}");
    for needle in [
        format!("event {id} (tax.rate.updated from hms)"),
        "run handler 0: tax-rate-outbound@".to_owned(),
        "attempt 1 at".to_owned(),
        "HTTP 503".to_owned(),
        "-> retry".to_owned(),
        "-> dead".to_owned(),
        "[dead]".to_owned(),
    ] {
        assert!(shown.contains(&needle), "{needle:?} in:\n{shown}");
    }
    let (code, json) = run_command(&["events", "show", &id, "--config", config, "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["event"]["event"]["id"], id.as_str());
    // Found by its type and origin, with where its work stands; nothing from elsewhere.
    let (code, found) = run_command(&[
        "events",
        "find",
        "--type",
        "tax.rate.updated",
        "--origin",
        "hms",
        "--config",
        config,
    ]);
    assert_eq!(code, 0, "{found}");
    assert!(
        found.contains(&id) && found.trim_end().ends_with("failed"),
        "{found}"
    );
    let (code, none) = run_command(&[
        "events",
        "find",
        "--origin",
        "elsewhere",
        "--config",
        config,
    ]);
    assert_eq!(code, 0, "{none}");
    assert_eq!(none, "no event matches\n");

    state_api.set_default_status(200);
    let (code, replayed) = run_command(&[
        "dlq",
        "replay",
        "--destination",
        "state-api",
        "--url",
        &url,
        "--token",
        "cli-secret-for-tests",
    ]);
    assert_eq!(code, 0, "{replayed}");
    assert!(
        replayed.starts_with("replayed 1 dead letter(s): [1]"),
        "{replayed}"
    );
    state_api
        .wait_until(Duration::from_secs(20), |r| {
            r.iter().any(|r| r.status == 200)
        })
        .await;
    let (code, again) = run_command(&["dlq", "replay", "--id", "1", "--config", config]);
    assert_eq!(code, 0, "{again}");
    assert!(again.contains("skipped #1: already replayed"), "{again}");

    let (code, refused) = run_command(&["dlq", "list", "--url", &url, "--token", "wrong"]);
    assert_eq!(code, 1);
    assert!(refused.contains("401"), "{refused}");

    // No conflict strategy on this route: the destination holds nothing for the entity.
    let (code, none) = run_command(&[
        "entities",
        "show",
        "--destination",
        "state-api",
        "--key",
        "2031",
        "--config",
        config,
    ]);
    assert_eq!(code, 1, "{none}");
    assert!(
        none.contains("404") && none.contains("holds nothing"),
        "{none}"
    );
    let (code, usage) = run_command(&["entities", "reset", "--key", "2031", "--config", config]);
    assert_eq!(code, 2, "{usage}");
    assert!(usage.contains("--destination"), "{usage}");
    kill(engine);
}

#[test]
fn plugin_test_runs_fixtures_offline() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures.json");
    std::fs::write(
        &fixtures,
        r#"[
          {"name": "the seed's mapping",
           "event": {"type": "tax-rate.changed", "payload": {"currentRate": 0.07, "taxYear": 2025}},
           "expect": {"actions": [{"emit": {"type": "tax.rate.updated",
                                            "payload": {"rate": 0.07, "year": 2025},
                                            "key": "tax-rate/2025"}}]}},
          {"name": "a renamed event",
           "event": {"type": "x", "payload": {"currentRate": 1, "taxYear": 2026}},
           "expect": {"actions": [{"emit": {"type": "tax.rate.corrected", "payload": {"rate": 1, "year": 2026}}}]}},
          {"name": "a missing field",
           "event": {"type": "x", "payload": {"taxYear": 2026}},
           "expect": {"error": "invalid-input"}}
        ]"#,
    )
    .unwrap();
    let inbound = format!("{ARTIFACTS}/tax_rate_inbound.wasm");
    let fixtures = fixtures.to_str().unwrap();
    let (code, out) = run_command(&["plugin", "test", &inbound, "--fixtures", fixtures]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pass  the seed's mapping"), "{out}");
    assert!(out.contains("FAIL  a renamed event: action 0: expected an emission of `tax.rate.corrected`, got one of `tax.rate.updated`"), "{out}");
    assert!(out.contains("pass  a missing field"), "{out}");
    assert!(
        out.contains("2 of 3 case(s) passed (handler tax_rate_inbound@"),
        "{out}"
    );
    let (code, out) = run_command(&[
        "plugin",
        "test",
        &inbound,
        "--fixtures",
        fixtures,
        "--set",
        "event-type=tax.rate.corrected",
    ]);
    assert_eq!(code, 1, "the first case now fails: {out}");
    assert!(out.contains("pass  a renamed event"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_commands_upload_list_show_and_roll_back_through_the_admin_api() {
    let state_api = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &state_api.url("/rates"));
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("admin:\n  token: cli-secret-for-tests\n");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.path().join("engine.log");
    let engine = start_engine(&config, &log, &format!("http://127.0.0.1:{port}")).await;
    let config = config.to_str().unwrap();
    let inbound = format!("{ARTIFACTS}/tax_rate_inbound.wasm");
    let outbound = format!("{ARTIFACTS}/tax_rate_outbound.wasm");

    let (code, out) = run_command(&["plugin", "list", "--config", config]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("tax-rate-outbound  ") && out.contains("transformer"),
        "{out}"
    );

    // A handler cannot replace a transformer: refused, with the reason.
    let (code, out) = run_command(&[
        "plugin",
        "upload",
        "tax-rate-outbound",
        &inbound,
        "--config",
        config,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("422") && out.contains("a new version must keep the world"),
        "{out}"
    );

    // The same bytes again: accepted, nothing changes.
    let (code, out) = run_command(&[
        "plugin",
        "upload",
        "tax-rate-outbound",
        &outbound,
        "--config",
        config,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already active"), "{out}");

    let (code, out) = run_command(&["plugin", "show", "tax-rate-outbound", "--config", config]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tax-rate-outbound (transformer)"), "{out}");
    assert!(
        out.contains("uploaded") && out.contains("by config"),
        "{out}"
    );
    let (code, out) = run_command(&[
        "plugin",
        "rollback",
        "tax-rate-outbound",
        "--config",
        config,
    ]);
    assert_eq!(code, 1, "only one version: {out}");
    assert!(out.contains("no other version to roll back to"), "{out}");
    kill(engine);
}

#[test]
fn validate_connects_to_the_nats_store_and_says_when_it_cannot() {
    let server = sync_engine_tests::NatsServer::start();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let validate = |servers: &str| {
        let config = dir.path().join("nats.yaml");
        std::fs::write(
            &config,
            format!(
                "{}\nstore:\n  kind: nats\n  nats:\n    servers: [{servers}]\n    requestTimeout: 2s\n",
                seed_config("http://127.0.0.1:9/rates", "http://127.0.0.1:9/hms")
            ),
        )
        .unwrap();
        let output = Command::new(ENGINE)
            .arg("validate")
            .arg(&config)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (ok, stdout) = validate(&server.url());
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("(stream sync_LOG) takes writes"),
        "{stdout}"
    );
    let (ok, stdout) = validate(&format!("nats://127.0.0.1:{dead_port}"));
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("store.nats: NATS"), "{stdout}");
}

/// A GET of the admin API at `url` with the token `admin`: its JSON answer.
async fn admin_get(url: &str, admin: &str, path: &str) -> serde_json::Value {
    let response = sync_engine_tests::http()
        .get(format!("{url}{path}"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_secrets_and_forged_lines_never_reach_the_record_the_console_or_the_log() {
    const ADMIN: &str = "admin-secret-for-process-tests";
    const SECRETS: [&str; 2] = ["SECRET-KEY-42", "PASSWORD-77"];
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Nobody listens there: every attempt fails with an error that names the URL.
    let state_api = format!(
        "http://bot:{}@127.0.0.1:{}/rates?api_key={}&v=1",
        SECRETS[1],
        free_port(),
        SECRETS[0]
    );
    let config = write_config(dir.path(), port, &state_api);
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml = yaml.replace("maxAttempts: 1000", "maxAttempts: 2");
    yaml = yaml.replace(
        "plugins:\n",
        &format!(
            "plugins:\n  misbehave:\n    path: {}\n",
            sync_engine_tests::component_path("misbehave").display()
        ),
    );
    yaml = yaml.replace(
        "hmsEvents:\n",
        "hmsEvents:\n  - event: forge\n    handler: misbehave\n",
    );
    yaml.push_str(&format!("admin:\n  token: {ADMIN}\n"));
    std::fs::write(&config, yaml).unwrap();
    let log = dir.path().join("engine.log");
    let url = format!("http://127.0.0.1:{port}");
    // At debug, so that every line the engine can write is written.
    let engine = spawn_engine(ENGINE, &config, &log, "debug");
    wait_healthy(&url, Duration::from_secs(30)).await;

    let (status, answer) = post_json(
        &format!("{url}/events/tax.rate.updated"),
        r#"{"rate": 0.04, "year": 2031}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let (status, _) = post_json(&format!("{url}/events/forge"), "{}", &[]).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = admin_get(&url, ADMIN, "/admin/dead-letters").await;
        if !dead["deadLetters"].as_array().unwrap().is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let history = admin_get(&url, ADMIN, &format!("/admin/events/{id}")).await;
    let attempts = history["event"]["actions"][0]["attempts"].clone();
    assert_eq!(attempts.as_array().map(Vec::len), Some(2), "{history}");
    let error = attempts[0]["error"].as_str().unwrap();
    // (reqwest moves the user and password into a header before it sends.)
    assert!(
        error.contains("/rates?api_key=***&v=***"),
        "the URL is named, masked: {error}"
    );
    let pages = [
        sync_engine_tests::console_page(&url, ADMIN, &format!("/console/events/{id}")).await,
        sync_engine_tests::console_page(&url, ADMIN, "/console/dead-letters").await,
        sync_engine_tests::console_page(&url, ADMIN, "/console/config").await,
    ];
    assert!(pages[0].contains("api_key=***"), "{}", pages[0]);
    kill(engine);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("api_key=***"), "the log names the URL masked");
    for secret in SECRETS {
        for (what, record) in [
            ("the dead letters", dead.to_string()),
            ("the event's history", history.to_string()),
            ("the console's event page", pages[0].clone()),
            ("the console's dead letters", pages[1].clone()),
            ("the console's configuration", pages[2].clone()),
            ("the log", text.clone()),
        ] {
            assert!(!record.contains(secret), "{secret} in {what}:\n{record}");
        }
    }

    // The plugin's newline and carriage return are escaped in its line: nothing it logs or
    // prints starts a line of its own, nor steers a terminal.
    let forged = "2026-12-04T00:00:00.000000Z  INFO sync_engine::console: logged in";
    assert!(text.contains(&format!("mapping\\n{forged}")), "{text}");
    for line in text.lines() {
        assert!(!line.starts_with(forged), "a forged line: {line}");
        assert!(
            !line.contains(['\r', '\u{1b}']),
            "a control character: {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_dry_run_in_flight_and_the_engine_within_its_shutdown_timeout() {
    const ADMIN: &str = "admin-secret-for-process-tests";
    const EVENTS: usize = 100;
    let state_api = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &state_api.url("/rates"));
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    // The candidate spends the whole 250 ms deadline on each event: 25 s for them all.
    yaml.push_str(&format!(
        "admin:\n  token: {ADMIN}\nsandbox:\n  limits:\n    timeout: 250ms\nhttp:\n  shutdownTimeout: 2s\n"
    ));
    std::fs::write(&config, yaml).unwrap();
    let log = dir.path().join("engine.log");
    let url = format!("http://127.0.0.1:{port}");
    let mut engine = start_engine(&config, &log, &url).await;
    for i in 0..EVENTS {
        let body = format!(r#"{{"rate": 0.05, "year": {}, "stuck": true}}"#, 2000 + i);
        let (status, _) = post_json(&format!("{url}/events/tax.rate.updated"), &body, &[]).await;
        assert_eq!(status, 202);
    }
    state_api.wait_for(EVENTS, Duration::from_secs(30)).await;
    let dry_run = tokio::spawn({
        let url = format!("{url}/admin/plugins/tax-rate-outbound/try?limit={EVENTS}");
        async move {
            let response = sync_engine_tests::http()
                .post(url)
                .bearer_auth(ADMIN)
                .header("content-type", "application/wasm")
                .body(sync_engine_tests::component("tax-rate-flaky"))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap_or_default())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = sync_engine_tests::http()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if sync_engine_tests::sample(&metrics, "sync_dry_runs_running") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the dry run did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&engine, "TERM");
    let exit = exit_within(&mut engine, Duration::from_secs(2 + 3))
        .await
        .expect("the engine stops within its shutdown timeout, its dry run with it");
    assert!(exit.success(), "{exit:?}");
    let (status, answer) = dry_run.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let stopped = answer["stopped"].as_str().unwrap();
    assert!(
        stopped.starts_with("the engine is stopping after "),
        "{stopped}"
    );
    assert!(answer["summary"]["events"].as_u64().unwrap() < EVENTS as u64);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("sync engine stopped"), "{text}");
}
