//! Helpers for the black-box tests: where the plugins built from source are, a receiver that
//! stands in for destinations and the HMS core, and engines run in-process or as a process.
//!
//! The `test-components` crate (`tests/components`) compiles every crate under `plugins/` and
//! `tests/plugins/` to WebAssembly before these tests compile; [`component`] reads the result.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_engine::config::Config;
use sync_engine::store::SqliteStore;
pub use sync_engine::store::nats::server::NatsServer;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use test_components::{ARTIFACTS, component, component_path};

/// The seed's tax-rate configuration for tests: both plugins, the outbound route to the
/// destination `state-api` at `state_api`, the webhook `/webhook/tax-rate` (system `state-api`)
/// and the core at `core` with token `core-token`. Retries are fast: 50 ms doubling, 5 attempts.
pub fn seed_config(state_api: &str, core: &str) -> String {
    seed_config_with(state_api, core, "tax-rate-outbound", "tax-rate-inbound")
}

/// [`seed_config`] with the seed's two plugins built from the packages `outbound` and `inbound`
/// (the same plugins in another language, say), under the same plugin names.
pub fn seed_config_with(state_api: &str, core: &str, outbound: &str, inbound: &str) -> String {
    format!(
        r#"
core:
  url: {core}
  token: core-token
  timeout: 2s
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
  maxAttempts: 5
hmsEvents:
  - event: tax.rate.updated
    handler: tax-rate-outbound
    destination: state-api
externalWebhooks:
  - path: /webhook/tax-rate
    handler: tax-rate-inbound
    system: state-api
"#,
        outbound = component_path(outbound).display(),
        inbound = component_path(inbound).display(),
    )
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The headers, names lower-case (the last value of repeated ones).
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How a [`Receiver`] answers one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl From<u16> for Reply {
    fn from(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    /// The chance that a request without a scripted reply gets a 503 instead of the default.
    failure_rate: Mutex<f64>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    arrived: Notify,
}

/// A real HTTP server on loopback that records every request and answers with scripted
/// statuses: the stand-in for a state API or the HMS core.
pub struct Receiver {
    address: SocketAddr,
    state: Arc<ReceiverState>,
    shutdown: CancellationToken,
}

impl Receiver {
    /// Starts a receiver on a free port; it answers 200 until told otherwise.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts a receiver on `address`.
    pub async fn start_on(address: SocketAddr) -> Receiver {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .unwrap_or_else(|e| panic!("cannot bind the receiver to {address}: {e}"));
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(ReceiverState {
            received: Mutex::default(),
            script: Mutex::default(),
            default: Mutex::new(Reply::from(200)),
            failure_rate: Mutex::new(0.0),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            arrived: Notify::new(),
        });
        let shutdown = CancellationToken::new();
        let app = Router::new().fallback(record).with_state(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .expect("the receiver serves");
        });
        Receiver {
            address,
            state,
            shutdown,
        }
    }

    /// `http://address{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Answers the next requests with these replies (or statuses), in order, then with the
    /// default.
    pub fn script<R: Into<Reply>>(&self, replies: impl IntoIterator<Item = R>) {
        self.state
            .script
            .lock()
            .expect("lock")
            .extend(replies.into_iter().map(Into::into));
    }

    /// Answers with `status` when no scripted reply is left.
    pub fn set_default_status(&self, status: u16) {
        self.set_default(status);
    }

    /// Answers with `reply` when no scripted reply is left.
    pub fn set_default(&self, reply: impl Into<Reply>) {
        *self.state.default.lock().expect("lock") = reply.into();
    }

    /// Answers a request that has no scripted reply with a 503, at random, this often (0 to 1).
    pub fn set_failure_rate(&self, rate: f64) {
        *self.state.failure_rate.lock().expect("lock") = rate;
    }

    /// The most requests it was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for the requests received, or panics after `timeout` showing
    /// what did arrive.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let received = self.received();
                if done(&received) {
                    return received;
                }
                panic!(
                    "timed out after {timeout:?}; {} request(s) arrived: {:#?}",
                    received.len(),
                    received
                        .iter()
                        .map(|r| (&r.path, r.status))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits for at least `n` requests.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, |r| r.len() >= n).await
    }

    /// Stops serving; later requests are refused.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let at = Instant::now();
    let scripted = state.script.lock().expect("lock").pop_front();
    let reply = scripted.unwrap_or_else(|| {
        let rate = *state.failure_rate.lock().expect("lock");
        if rate > 0.0 && pseudo_random() < rate {
            Reply::from(503)
        } else {
            state.default.lock().expect("lock").clone()
        }
    });
    let headers_seen = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // Recorded on arrival: a client that gives up waiting still counts as a request.
    state.received.lock().expect("lock").push(Received {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers_seen,
        body: body.to_vec(),
        at,
        status: reply.status,
    });
    state.arrived.notify_waiters();
    let _in_flight = InFlight::enter(&state);
    tokio::time::sleep(reply.delay).await;
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("a valid status");
    for (name, value) in &reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            axum::http::HeaderValue::from_str(value).expect("a header value"),
        );
    }
    response
}

/// Counts a request being answered; leaves the count right even when the client gives up
/// waiting and the handler is dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(state: &'a ReceiverState) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = state.in_flight.fetch_add(1, SeqCst) + 1;
        state.max_in_flight.fetch_max(now, SeqCst);
        InFlight(&state.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A number in [0, 1) that differs from call to call (from the standard library's randomly
/// seeded hasher; good enough to make a receiver flap).
fn pseudo_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the black-box tests run on the NATS backend: `SYNC_TEST_STORE=nats` (what
/// `scripts/test` sets for its second run of the suite); otherwise on the embedded store.
pub fn on_nats() -> bool {
    std::env::var("SYNC_TEST_STORE").is_ok_and(|kind| kind == "nats")
}

/// The `store.nats` section for an engine of the log `prefix` on `servers`, with a short lease
/// (so a test sees a takeover in seconds).
pub fn nats_config(servers: &[String], prefix: &str) -> sync_engine::config::NatsConfig {
    sync_engine::config::NatsConfig {
        servers: servers
            .iter()
            .map(|s| sync_engine::config::Expanded(s.clone()))
            .collect(),
        credentials: None,
        user: None,
        password: None,
        prefix: prefix.into(),
        replicas: 1,
        lease: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        snapshot_interval: Duration::from_secs(600),
        partitions: 1,
    }
}

/// An engine running in this process on a free port, with its store in a temporary directory
/// (on the NATS backend, with its own nats-server whose storage is in that directory too, so
/// an engine started again there finds the same log).
pub struct TestEngine {
    url: String,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    nats: Option<NatsServer>,
}

impl TestEngine {
    /// Starts an engine on configuration text (relative paths are relative to a fresh temporary
    /// directory, where the store also lives) and waits until it answers.
    pub async fn start(yaml: &str) -> TestEngine {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::start_in(yaml, dir).await
    }

    /// Starts an engine whose store lives in `dir`.
    pub async fn start_in(yaml: &str, dir: tempfile::TempDir) -> TestEngine {
        let config = Config::parse(yaml, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        Self::serve(config, listener, dir).await
    }

    /// Starts an engine on a parsed configuration and a bound listener, with its directory.
    pub async fn serve(
        mut config: Config,
        listener: tokio::net::TcpListener,
        dir: tempfile::TempDir,
    ) -> TestEngine {
        // A configuration that names its own store keeps it.
        let nats = (on_nats() && config.store.nats.is_none()).then(|| {
            let server = NatsServer::start_in(&dir.path().join("nats"));
            config.store.kind = sync_engine::config::StoreKind::Nats;
            config.store.nats = Some(nats_config(&[server.url()], "sync"));
            server
        });
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sync_engine::engine::run(config, listener, shutdown.clone()));
        let engine = TestEngine {
            url,
            dir,
            shutdown,
            task,
            nats,
        };
        // Starting compiles every plugin: megabytes of code for a JavaScript or Python one, which
        // takes tens of seconds while other tests load the same two cores.
        wait_healthy(&engine.url, Duration::from_secs(120)).await;
        engine
    }

    /// `http://address{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The engine's database file.
    pub fn database(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join("data")
            .join(sync_engine::store::sqlite::DATABASE_FILE)
    }

    /// Makes the store unavailable for `duration`, then available again: another process
    /// holds the embedded store's write lock (its writer waits 5 s for it, then fails), or the
    /// NATS server is down (killed, then started again on its storage).
    pub async fn store_outage(&mut self, duration: Duration) {
        match &mut self.nats {
            Some(server) => {
                server.kill();
                tokio::time::sleep(duration).await;
                server.restart();
            }
            None => {
                let database = self.database();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(database).unwrap();
                    conn.busy_timeout(Duration::from_secs(5)).unwrap();
                    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
                    std::thread::sleep(duration);
                    conn.execute_batch("COMMIT").unwrap();
                })
                .await
                .unwrap();
            }
        }
    }

    /// Stops the engine gracefully, checks it stopped cleanly, and returns its directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the engine task did not panic")
            .expect("the engine stopped cleanly");
        drop(self.nats);
        self.dir
    }
}

/// An engine process a test started. Dropping it kills (SIGKILL) and reaps the process, so a
/// test that fails half-way never leaves an engine running.
pub struct EngineProcess(std::process::Child);

impl std::ops::Deref for EngineProcess {
    type Target = std::process::Child;

    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for EngineProcess {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // Already gone (killed or stopped by the test) is fine.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary run --config <config>` (the engine's command, built by this package), its
/// stderr appended to `log`, at the log level `level`.
pub fn spawn_engine(binary: &str, config: &Path, log: &Path, level: &str) -> EngineProcess {
    spawn_engine_with(binary, config, log, level, &[])
}

/// [`spawn_engine`], with more arguments for `sync-engine run`.
pub fn spawn_engine_with(
    binary: &str,
    config: &Path,
    log: &Path,
    level: &str,
    args: &[&str],
) -> EngineProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the log file opens");
    std::process::Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", level)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map(EngineProcess)
        .expect("the engine starts")
}

/// Opens the store in `dir` (the engine must be stopped).
pub fn open_store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("data")).expect("the store opens")
}

/// A console page of the engine at `base` (`http://host:port`), read with a session made by
/// logging in with the admin token `admin`.
pub async fn console_page(base: &str, admin: &str, path: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{base}/console/login"))
        .form(&[("token", admin), ("next", path)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "the console logs in");
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{path}");
    page.text().await.unwrap()
}

/// A client whose requests come from `ip` (any 127.x address is this host's loopback), so a
/// test can be several clients to the engine's per-address limits.
pub fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Runs `command` to completion; panics with what it printed when it fails. Returns its stdout.
pub fn run_ok(command: &mut std::process::Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// An HTTP client for talking to engines. (reqwest is built without a default TLS provider,
/// as in the engine; this installs ring's.)
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An engine's `GET /metrics` page (which must answer 200 in the OpenMetrics text format).
pub async fn scrape(engine: &TestEngine) -> String {
    let response = http().get(engine.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    response.text().await.unwrap()
}

/// The value of `series` (a metric name with its labels) on a metrics page; 0 when absent.
pub fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the engine's metric `series` (its name and labels) passes `check`; panics with
/// the metrics page after `limit`.
pub async fn metric_until(
    engine: &TestEngine,
    series: &str,
    limit: Duration,
    check: impl Fn(f64) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let metrics = scrape(engine).await;
        if check(sample(&metrics, series)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} after {limit:?}: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `GET {url}/healthz` answers 200, or panics after `timeout`.
pub async fn wait_healthy(url: &str, timeout: Duration) {
    let client = http();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(format!("{url}/healthz")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not become healthy within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads `bytes` (`application/wasm`) as a new version of the plugin `name` through the admin
/// API; returns the status and the JSON answer.
pub async fn upload_component(
    engine: &TestEngine,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (u16, serde_json::Value) {
    let path = format!("/admin/plugins/{name}");
    send_component(engine, token, reqwest::Method::PUT, &path, bytes).await
}

/// Sends `bytes` (`application/wasm`) to the admin API's `method path` (with the bearer
/// `token`); returns the status and the JSON answer.
pub async fn send_component(
    engine: &TestEngine,
    token: &str,
    method: reqwest::Method,
    path: &str,
    bytes: Vec<u8>,
) -> (u16, serde_json::Value) {
    let response = http()
        .request(method, engine.url(path))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("the engine answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Asks the admin API `GET path` (with the bearer `token`) until the answer is 200 and `check`
/// holds for it, and returns it; panics after `wait`.
pub async fn admin_until(
    engine: &TestEngine,
    token: &str,
    path: &str,
    wait: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + wait;
    loop {
        let (status, answer) = admin_call(engine, token, "GET", path, None).await;
        if status == 200 && check(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path}: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads `bytes` with `fixtures` (their JSON text) as a new version of the plugin `name`, as a
/// multipart form (the way `sync-engine plugin upload --fixtures` sends them); returns the status
/// and the JSON answer.
pub async fn upload_with_fixtures(
    engine: &TestEngine,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
    fixtures: &str,
) -> (u16, serde_json::Value) {
    let component = reqwest::multipart::Part::bytes(bytes)
        .mime_str("application/wasm")
        .expect("a valid media type");
    let form = reqwest::multipart::Form::new()
        .part("component", component)
        .text("fixtures", fixtures.to_owned());
    let response = http()
        .put(engine.url(&format!("/admin/plugins/{name}")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("the engine answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Calls an engine's admin API with the bearer `token`; returns the status and the JSON answer.
pub async fn admin_call(
    engine: &TestEngine,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = http()
        .request(method.parse().expect("a method"), engine.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the engine answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// Posts a JSON body and returns the status and the JSON answer.
pub async fn post_json(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut request = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the engine answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}
