//! A handler that misbehaves on request: the event type says how.
//!
//! | event type  | what the plugin does                                         |
//! | ----------- | ------------------------------------------------------------ |
//! | `echo`      | delivers the payload to the destination `echo`               |
//! | `loop`      | loops forever                                                |
//! | `sleep`     | sleeps for an hour                                           |
//! | `alloc`     | allocates without bound                                      |
//! | `huge`      | returns a 4 MiB body                                         |
//! | `panic`     | panics                                                       |
//! | `recurse`   | recurses until the stack overflows                           |
//! | `open-file` | reads a file and returns it                                  |
//! | `escape`    | tries the environment, arguments, stdin and a socket         |
//! | `count`     | bumps a global counter and reports it                        |
//! | `malformed` | returns a delivery with an invalid header name               |
//! | `reject`    | fails with a `rejected` error                                |
//! | `log`       | logs through the import and prints to stdout and stderr      |
//! | `forge`     | logs and prints text that would forge a log line of its own  |
//! | `config`    | reports the route config's `greeting` and its entry count    |
//! | `flood`     | returns as many empty drops as the payload's number says     |
//! | `random`    | asks WASI for as many random bytes as the payload's number says |

use hms_sync_sdk::{Action, Delivery, Emission, Error, Event, Handler, Result};
use std::hint::black_box;
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// What the `forge` mode tries to pass off as a line of the engine's own log.
const FORGED: &str =
    "2026-12-04T00:00:00.000000Z  INFO sync_engine::console: logged in by=admin:forged";

struct Misbehave;

impl Handler for Misbehave {
    fn handle(event: Event) -> Result<Vec<Action>> {
        Ok(match event.event_type.as_str() {
            "echo" => vec![Delivery::new("echo", event.payload).into()],
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                vec![Action::drop("woke up")]
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "huge" => vec![Delivery::new("echo", vec![b'x'; 4 << 20]).into()],
            "panic" => panic!("the plugin panicked on purpose"),
            "recurse" => vec![Action::drop(format!("depth {}", recurse(black_box(0))))],
            "open-file" => {
                let path = String::from_utf8_lossy(&event.payload).into_owned();
                match std::fs::read(&path) {
                    Ok(bytes) => vec![Delivery::new("echo", bytes).into()],
                    Err(e) => return Err(Error::internal(format!("cannot open {path}: {e}"))),
                }
            }
            "escape" => vec![Action::drop(escape())],
            "count" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                vec![Action::drop(format!("count={n}"))]
            }
            "malformed" => {
                vec![
                    Delivery::new("echo", event.payload)
                        .with_header("bad header", "x")
                        .into(),
                ]
            }
            // Output the engine's rules refuse (as the SDK's test harness does).
            "engine-header" => vec![
                Delivery::new("echo", event.payload)
                    .with_header("HMS-Hops", "0")
                    .into(),
            ],
            "emit-dot-dot" => vec![Emission::new("..", event.payload).into()],
            // A header the `echo` destination's configuration sets in the engine's tests.
            "destination-header" => vec![
                Delivery::new("echo", event.payload)
                    .with_header("x-api-key", "stolen")
                    .into(),
            ],
            "reject" => return Err(Error::rejected("this plugin rejects `reject` events")),
            "log" => {
                hms_sync_sdk::info!("info line for {}", event.id);
                hms_sync_sdk::warn!("warn line");
                #[allow(clippy::print_stdout, clippy::print_stderr)]
                {
                    println!("printed to stdout");
                    eprintln!("printed to stderr");
                }
                vec![Action::drop("logged")]
            }
            "forge" => {
                // A newline, then what looks like a line of the engine's own.
                let forged = format!("\n{FORGED}\r\u{1b}[2K");
                hms_sync_sdk::info!("mapping{forged}");
                #[allow(clippy::print_stdout, clippy::print_stderr)]
                {
                    println!("printed{forged}");
                    eprintln!("printed{forged}");
                }
                vec![Action::drop("forged")]
            }
            "config" => {
                let greeting = hms_sync_sdk::config::get("greeting").unwrap_or_default();
                let entries = hms_sync_sdk::config::entries().len();
                vec![Action::drop(format!("{greeting}/{entries}"))]
            }
            "flood" => {
                let n: usize = String::from_utf8_lossy(&event.payload)
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid_input("`flood` takes a number"))?;
                (0..n).map(|_| Action::drop("")).collect()
            }
            "random" => {
                let n: u64 = String::from_utf8_lossy(&event.payload)
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid_input("`random` takes a number"))?;
                let bytes = wasi_random::wasi::random::random::get_random_bytes(n);
                vec![Action::drop(format!("got {} random bytes", bytes.len()))]
            }
            other => return Err(Error::invalid_input(format!("unknown mode `{other}`"))),
        })
    }
}

/// `wasi:random/random`, imported directly (the SDK does not use it).
mod wasi_random {
    wit_bindgen::generate!({
        inline: "
            package wasi:random@0.2.0;
            interface random {
                get-random-bytes: func(len: u64) -> list<u8>;
                get-random-u64: func() -> u64;
            }
            world imports {
                import random;
            }
        ",
        world: "imports",
    });
}

fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 64]);
    recurse(black_box(depth + 1)) + frame[0]
}

/// Tries every ambient capability and says what each attempt got.
fn escape() -> String {
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let mut stdin = Vec::new();
    let stdin = std::io::stdin()
        .read_to_end(&mut stdin)
        .map(|_| stdin.len());
    let net = std::net::TcpStream::connect("127.0.0.1:9").map(|_| ());
    let dir = std::fs::read_dir("/").map(|_| ());
    format!(
        "env={env} args={args} stdin={} net={} dir={}",
        ok_or_err(stdin.map(|n| n.to_string())),
        ok_or_err(net.map(|()| "connected".to_owned())),
        ok_or_err(dir.map(|()| "listed".to_owned())),
    )
}

fn ok_or_err(result: std::io::Result<String>) -> String {
    match result {
        Ok(v) => format!("ok:{v}"),
        Err(_) => "denied".to_owned(),
    }
}

hms_sync_sdk::export_handler!(Misbehave);
