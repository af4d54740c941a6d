//! `sync-engine-load`: the end-to-end load generator.
//!
//! It posts HMS events to a running engine (`POST {engine}/events/{type}`) and is at the same time
//! the sink the engine delivers to, so one process sees both ends: how many events were accepted
//! and how fast, how many were delivered and how long after they were sent. Each payload carries
//! its send time in the `rate` field (microseconds since the run started), which the seed's
//! outbound transformer passes through as `newRates` (and an echoing handler as `rate`), so the
//! sink can time every delivery.
//!
//! Two ways to load: `--rate N` sends N events a second on a fixed schedule whatever the engine
//! does (latency is measured from when each request was due, so a stalled engine shows in the
//! percentiles); `--rate 0` keeps `--connections` requests in flight back to back, to find the
//! most the engine sustains. After the sending phase it waits for every accepted event to be
//! delivered (up to `--drain`), then prints one report, and with `--row` one Markdown table row.
//!
//! With `--nats`, the events are published onto the HMS bus on NATS instead (JetStream, each
//! publish acknowledged by the stream before the next on its connection), for an engine that
//! reads the bus (`bus.kind: nats`); deliveries still come to the sink.
//!
//! `scripts/bench-e2e` runs the engine and this tool through the documented scenarios.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Posts HMS events to a running engine and receives its deliveries.
#[derive(Parser, Debug)]
#[command(name = "sync-engine-load", version)]
struct Args {
    /// The engine's listener. Repeat it for engines that share one store: the connections are
    /// spread over them, round robin.
    #[arg(long = "engine", default_value = "http://127.0.0.1:6000")]
    engines: Vec<String>,
    /// The address this tool receives deliveries on; point the engine's destinations here.
    #[arg(long, default_value = "127.0.0.1:6200")]
    sink: String,
    /// Events a second, on a fixed schedule; 0 sends back to back on `--connections`.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Connections to the engine, each with one request in flight at a time.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to send for.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long to wait after sending for the deliveries to arrive.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Payload size in bytes (at least the ~40 bytes of `{"rate", "year"}`; padded with a
    /// `note` field the outbound transformer drops).
    #[arg(long, default_value_t = 100)]
    payload_size: usize,
    /// Event types to spread the events over, round robin (one route each).
    #[arg(long = "event-type", default_value = "tax.rate.updated")]
    event_types: Vec<String>,
    /// How many entities the events are about: event `n` carries the year `1000 + n % keys`
    /// (a route keyed by `/year` then has this many entity keys). 1 makes every event about
    /// the same entity.
    #[arg(long, default_value_t = 1)]
    keys: u64,
    /// How long the sink takes to answer each delivery (a slow destination).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    sink_delay: Duration,
    /// The engine's process id, to report its peak resident memory.
    #[arg(long)]
    engine_pid: Option<u32>,
    /// The bus token, when the engine requires one.
    #[arg(long, env = "SYNC_ENGINE_BUS_TOKEN")]
    token: Option<String>,
    /// Also count the deliveries the engine superseded (a keyed route's older versions), read
    /// from the engine's `GET /metrics`: an event then counts as settled when it was delivered
    /// or superseded, and the run waits for every accepted event to settle.
    #[arg(long)]
    superseded: bool,
    /// Publish the events onto the HMS bus on NATS at this server instead of posting them
    /// (`--engine` is then only waited on for readiness, and read for metrics).
    #[arg(long)]
    nats: Option<String>,
    /// The bus's subject prefix (`bus.nats.subjectPrefix`): type `t` goes to `<prefix>.t`.
    #[arg(long, default_value = "hms")]
    subject_prefix: String,
    /// The bus's stream (`bus.nats.stream`), waited for before sending.
    #[arg(long, default_value = "HMS")]
    stream: String,
    /// A label for this run in the report.
    #[arg(long, default_value = "run")]
    label: String,
    /// Also print the report as one row of the Markdown table in `README.md`.
    #[arg(long)]
    row: bool,
}

/// What the sink saw.
struct Sink {
    started: Instant,
    delay: Duration,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    keys: Mutex<HashSet<String>>,
    latency: Mutex<Histogram<u64>>,
    /// How long each answer was actually held back (at least `--sink-delay`).
    held: Mutex<Histogram<u64>>,
    last_delivery_us: AtomicU64,
}

/// What the senders saw.
struct Sent {
    accepted: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.event_types.is_empty(),
        "give at least one --event-type"
    );
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let started = Instant::now();
    let sink = Arc::new(Sink {
        started,
        delay: args.sink_delay,
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        keys: Mutex::new(HashSet::new()),
        latency: Mutex::new(histogram()),
        held: Mutex::new(histogram()),
        last_delivery_us: AtomicU64::new(0),
    });
    let listener = TcpListener::bind(&args.sink)
        .await
        .with_context(|| format!("cannot listen on {} for deliveries", args.sink))?;
    let app = Router::new().fallback(receive).with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut authorities = Vec::new();
    let mut base = String::new();
    for engine in &args.engines {
        let uri: Uri = engine
            .parse()
            .with_context(|| format!("--engine {engine} is not a URL"))?;
        let authority = uri
            .authority()
            .filter(|_| uri.scheme_str() == Some("http"))
            .with_context(|| format!("--engine {engine} is not an http:// URL"))?
            .to_string();
        wait_ready(&authority).await?;
        authorities.push(authority);
        uri.path().trim_end_matches('/').clone_into(&mut base);
    }
    let sent = Arc::new(Sent {
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latency: Mutex::new(histogram()),
    });
    let bus = match &args.nats {
        Some(server) => Some(open_bus(server, &args.stream).await?),
        None => None,
    };
    let shared = Arc::new(Load {
        authorities,
        bus,
        subjects: args
            .event_types
            .iter()
            .map(|t| format!("{}.{t}", args.subject_prefix))
            .collect(),
        paths: args
            .event_types
            .iter()
            .map(|t| format!("{base}/events/{t}"))
            .collect(),
        token: args.token.clone(),
        padding: args.payload_size.saturating_sub(40),
        keys: args.keys.max(1),
        started,
        sent: sent.clone(),
    });

    let send_start = Instant::now();
    if args.rate == 0 {
        closed_loop(&shared, args.connections, args.duration).await;
    } else {
        open_loop(&shared, args.rate, args.connections, args.duration).await;
    }
    let send_time = send_start.elapsed();

    let accepted = sent.accepted.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + args.drain;
    let superseded = || async {
        if args.superseded {
            let mut total = 0;
            for authority in &shared.authorities {
                total += superseded_count(authority).await?;
            }
            anyhow::Ok(total)
        } else {
            Ok(0)
        }
    };
    let mut superseded_now = superseded().await?;
    while sink.delivered.load(Ordering::Relaxed) + superseded_now < accepted
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(if args.superseded {
            200
        } else {
            20
        }))
        .await;
        superseded_now = superseded().await?;
    }
    let delivered = sink.delivered.load(Ordering::Relaxed);
    let last_delivery = Duration::from_micros(sink.last_delivery_us.load(Ordering::Relaxed));
    let delivery_time = last_delivery.saturating_sub(send_start - started);

    let report = Report {
        label: args.label.clone(),
        rate: args.rate,
        payload_size: args.payload_size,
        seconds: send_time.as_secs_f64(),
        accepted,
        refused: sent.refused.load(Ordering::Relaxed),
        failed: sent.failed.load(Ordering::Relaxed),
        accepted_per_s: per_second(accepted, send_time),
        delivered,
        duplicates: sink.duplicates.load(Ordering::Relaxed),
        delivered_per_s: per_second(delivered, delivery_time.max(send_time)),
        superseded: superseded_now,
        settled_per_s: per_second(delivered + superseded_now, delivery_time.max(send_time)),
        accept: Percentiles::of(&lock(&sent.latency)),
        delivery: Percentiles::of(&lock(&sink.latency)),
        sink_held: (!args.sink_delay.is_zero()).then(|| Percentiles::of(&lock(&sink.held))),
        engine_peak_rss_mib: args.engine_pid.and_then(peak_rss_mib),
    };
    report.print();
    if args.row {
        println!("{}", report.row());
    }
    anyhow::ensure!(
        delivered + superseded_now >= accepted,
        "{} accepted events were neither delivered nor superseded within {:?}",
        accepted.saturating_sub(delivered + superseded_now),
        args.drain
    );
    Ok(())
}

/// What every sending task shares.
struct Load {
    /// The engines, each given every n-th connection.
    authorities: Vec<String>,
    /// The HMS bus on NATS, when the events are published there.
    bus: Option<async_nats::jetstream::Context>,
    /// Each event type's subject on the bus.
    subjects: Vec<String>,
    paths: Vec<String>,
    token: Option<String>,
    padding: usize,
    /// How many distinct years the events carry.
    keys: u64,
    started: Instant,
    sent: Arc<Sent>,
}

/// One HTTP/1.1 connection to the engine, kept for request after request (as `wrk` does): the
/// load generator shares the engine's two cores, so it spends as little as it can per request.
type Connection = http1::SendRequest<Full<Bytes>>;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn connect(authority: &str) -> anyhow::Result<Connection> {
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

impl Load {
    /// Sends event number `n`, due at `due`, on `connection` to engine `engine` (opened or
    /// reopened as needed), and records the outcome.
    async fn send(&self, engine: usize, connection: &mut Option<Connection>, n: u64, due: Instant) {
        let authority = &self.authorities[engine % self.authorities.len()];
        let which = usize::try_from(n).unwrap_or(0) % self.paths.len();
        let path = &self.paths[which];
        let sent_us = due.duration_since(self.started).as_micros();
        let year = 1000 + n % self.keys;
        let body = format!(
            r#"{{"rate":{sent_us},"year":{year},"note":"{}"}}"#,
            "x".repeat(self.padding)
        );
        let mut request = Request::post(path.as_str())
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if let Some(bus) = &self.bus {
                // Taken once the stream holds it.
                bus.publish(self.subjects[which].clone(), Bytes::from(body))
                    .await?
                    .await?;
                return anyhow::Ok((StatusCode::ACCEPTED, Bytes::new()));
            }
            let request = request.body(Full::new(Bytes::from(body)))?;
            let sender = match connection {
                Some(sender) if !sender.is_closed() => sender,
                _ => connection.insert(connect(authority).await?),
            };
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await;
        match outcome {
            Ok(Ok((StatusCode::ACCEPTED, _))) => {
                self.sent.accepted.fetch_add(1, Ordering::Relaxed);
                record(&self.sent.latency, due.elapsed());
            }
            Ok(Ok((status, body))) => {
                if self.sent.refused.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("refused with {status}: {}", String::from_utf8_lossy(&body));
                }
            }
            Ok(Err(e)) => {
                *connection = None;
                if self.sent.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("request failed: {e:#}");
                }
            }
            Err(_) => {
                *connection = None;
                if self.sent.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("request timed out after {REQUEST_TIMEOUT:?}");
                }
            }
        }
    }
}

/// `connections` connections, each sending its next event as soon as the last one is answered.
async fn closed_loop(load: &Arc<Load>, connections: usize, duration: Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for engine in 0..connections {
        let (load, next) = (load.clone(), next.clone());
        tasks.spawn(async move {
            let mut connection = None;
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                load.send(engine, &mut connection, n, Instant::now()).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends `rate` events a second on a fixed schedule over `connections` connections. An event
/// due while every connection is busy waits for one, and its wait counts in its latency.
async fn open_loop(load: &Arc<Load>, rate: u32, connections: usize, duration: Duration) {
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
    let mut tasks = tokio::task::JoinSet::new();
    for engine in 0..connections {
        let (load, due_rx) = (load.clone(), due_rx.clone());
        tasks.spawn(async move {
            let mut connection = None;
            loop {
                let next = due_rx.lock().await.recv().await;
                let Some((n, due)) = next else { break };
                load.send(engine, &mut connection, n, due).await;
            }
        });
    }
    let start = Instant::now();
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0;
    while n < total {
        ticker.tick().await;
        let now = Instant::now();
        // Everything due by now goes out, stamped with when it was due.
        while n < total {
            let due = start + interval.mul_f64(n as f64);
            if due > now || due_tx.send((n, due)).is_err() {
                break;
            }
            n += 1;
        }
    }
    drop(due_tx);
    while tasks.join_next().await.is_some() {}
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !sink.delay.is_zero() {
        let start = Instant::now();
        if sink.delay < Duration::from_millis(20) {
            // Tokio's timer ticks in whole milliseconds and fires on the tick after the
            // deadline (a 1 ms sleep takes about 2); a thread's sleep is exact to tens of µs.
            let delay = sink.delay;
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
        } else {
            tokio::time::sleep(sink.delay).await;
        }
        record(&sink.held, start.elapsed());
    }
    let now_us = u64::try_from(sink.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !lock(&sink.keys).insert(key) {
        sink.duplicates.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    }
    if let Some(sent_us) = sent_at(&body) {
        record(
            &sink.latency,
            Duration::from_micros(now_us.saturating_sub(sent_us)),
        );
    }
    sink.last_delivery_us.fetch_max(now_us, Ordering::Relaxed);
    sink.delivered.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// The send time a delivered body carries: `newRates` (the outbound transformer's body) or
/// `rate` (an echo of the event).
fn sent_at(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        #[serde(alias = "newRates")]
        rate: u64,
    }
    serde_json::from_slice::<Stamp>(body).ok().map(|s| s.rate)
}

/// The deliveries the engine has superseded so far: the sum of its
/// `sync_deliveries_total{outcome="superseded"}` counters.
async fn superseded_count(authority: &str) -> anyhow::Result<u64> {
    let mut sender = connect(authority).await?;
    let request = Request::get("/metrics")
        .header(HOST, authority)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "GET /metrics answered {}",
        response.status()
    );
    let text = response.into_body().collect().await?.to_bytes();
    let text = std::str::from_utf8(&text).context("GET /metrics is not UTF-8")?;
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with("sync_deliveries_total{") && line.contains(r#"outcome="superseded""#) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            total += value
                .parse::<f64>()
                .with_context(|| format!("a metrics line without a value: {line}"))?;
        }
    }
    Ok(total as u64)
}

/// Waits until the engine answers `GET /readyz` with 200.
/// A connection to the HMS bus at `server`, once the engine has made its `stream`.
async fn open_bus(server: &str, stream: &str) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = async_nats::connect(server)
        .await
        .with_context(|| format!("cannot connect to the NATS bus at {server}"))?;
    let bus = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(60);
    while bus.get_stream(stream).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stream {stream} did not appear on {server} within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(bus)
}

async fn wait_ready(authority: &str) -> anyhow::Result<()> {
    // Loading many plugins (each compiled on first use) can take a while.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = async {
            let mut sender = connect(authority).await?;
            let request = Request::get("/readyz")
                .header(HOST, authority)
                .body(Full::new(Bytes::new()))?;
            anyhow::Ok(sender.send_request(request).await?.status() == StatusCode::OK)
        };
        match ready.await {
            Ok(true) => return Ok(()),
            _ if Instant::now() > deadline => {
                anyhow::bail!("the engine at {authority} was not ready within five minutes")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, from 1 µs to 10 minutes, 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn record(histogram: &Mutex<Histogram<u64>>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    lock(histogram).saturating_record(us.max(1));
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn per_second(count: u64, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        count as f64 / time.as_secs_f64()
    }
}

/// The peak resident memory of a process (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Latency percentiles, in milliseconds.
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

struct Report {
    label: String,
    rate: u32,
    payload_size: usize,
    seconds: f64,
    accepted: u64,
    refused: u64,
    failed: u64,
    accepted_per_s: f64,
    delivered: u64,
    duplicates: u64,
    delivered_per_s: f64,
    /// Deliveries the engine superseded (with `--superseded`).
    superseded: u64,
    /// Delivered and superseded, a second.
    settled_per_s: f64,
    accept: Percentiles,
    delivery: Percentiles,
    /// How long the sink actually held its answers, with `--sink-delay`.
    sink_held: Option<Percentiles>,
    engine_peak_rss_mib: Option<f64>,
}

impl Report {
    fn print(&self) {
        let load = if self.rate == 0 {
            "as fast as answered".to_owned()
        } else {
            format!("{} events/s", self.rate)
        };
        println!(
            "{}: {load}, {} B payloads, {:.1} s",
            self.label, self.payload_size, self.seconds
        );
        println!(
            "  accepted  {:>9} ({:.0}/s), refused {}, failed {}",
            self.accepted, self.accepted_per_s, self.refused, self.failed
        );
        println!(
            "  delivered {:>9} ({:.0}/s), duplicates {}",
            self.delivered, self.delivered_per_s, self.duplicates
        );
        println!(
            "  superseded {:>8}, settled (delivered or superseded) {:.0}/s",
            self.superseded, self.settled_per_s
        );
        for (name, p) in [("accept", &self.accept), ("delivery", &self.delivery)] {
            println!(
                "  {name:<8} latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                p.p50, p.p90, p.p99, p.max
            );
        }
        if let Some(p) = &self.sink_held {
            println!(
                "  sink held answers ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                p.p50, p.p90, p.p99, p.max
            );
        }
        if let Some(rss) = self.engine_peak_rss_mib {
            println!("  engine peak RSS {rss:.0} MiB");
        }
    }

    /// `| label | load | payload | accepted/s | delivered/s | settled/s | accept p50 |
    /// accept p99 | delivery p50 | delivery p99 | peak RSS |`, latencies in ms.
    fn row(&self) -> String {
        let load = if self.rate == 0 {
            "max".to_owned()
        } else {
            format!("{}/s", self.rate)
        };
        let rss = self
            .engine_peak_rss_mib
            .map_or_else(|| "–".to_owned(), |m| format!("{m:.0} MiB"));
        format!(
            "| {} | {load} | {} B | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {rss} |",
            self.label,
            self.payload_size,
            self.accepted_per_s,
            self.delivered_per_s,
            self.settled_per_s,
            self.accept.p50,
            self.accept.p99,
            self.delivery.p50,
            self.delivery.p99,
        )
    }
}
