//! Runs one component on the same event in a loop, for profiling what a fresh instance costs
//! (under `perf record`, say): fresh instances, then store and instance alone, then one reused
//! instance, each with its µs per event and the page faults it took.
//!
//! ```sh
//! cargo run --release -p sync-engine-sandbox --features bench --example fresh_loop -- \
//!     target/wasm-plugins/plugins/tax-rate-outbound-js.wasm [events] [keep-resident KiB]
//! ```

#![allow(clippy::print_stdout, missing_docs)]

use std::num::NonZeroU32;
use std::time::Instant;
use sync_engine_sandbox::event::Event;
use sync_engine_sandbox::{Isolation, PluginSetup, Sandbox, SandboxOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: fresh_loop <component.wasm> [events] [keep-resident KiB]")
    })?;
    let events: u32 = args.next().map_or(Ok(2000), |n| n.parse())?;
    let mut options = SandboxOptions::default();
    if let Some(kib) = args.next() {
        options.keep_resident = kib.parse::<usize>()? << 10;
    }
    let sandbox = Sandbox::new(options)?;
    let started = Instant::now();
    let plugin = sandbox.load("plugin", &std::fs::read(&path)?)?;
    println!("loaded in {:?}", started.elapsed());
    let event = Event {
        id: "0193a8e2-7c1f-7d40-9a55-1c2d3e4f5a6b".into(),
        event_type: "tax.rate.updated".into(),
        origin: "hms".into(),
        key: Some("tax-rate/2025".into()),
        version: Some(3),
        timestamp: 1_764_000_000_000,
        content_type: "application/json".into(),
        payload: br#"{"rate":0.0725,"year":2025}"#.to_vec(),
        headers: Vec::new(),
        hops: 0,
        path: vec!["hms".into()],
    };
    let fresh = PluginSetup::default();
    let reused = PluginSetup {
        isolation: Isolation {
            reuse_for: NonZeroU32::MAX,
            ..Isolation::default()
        },
        ..PluginSetup::default()
    };
    plugin.run(&event, &fresh)?;
    measure("fresh instance", events, || {
        plugin.run(&event, &fresh).map(drop)
    })?;
    measure("store and instance", events, || {
        plugin.prepare_only(&fresh, true)
    })?;
    measure("reused instance", events, || {
        plugin.run(&event, &reused).map(drop)
    })?;
    Ok(())
}

fn measure<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    events: u32,
    mut run: impl FnMut() -> Result<(), E>,
) -> anyhow::Result<()> {
    let faults = minor_faults()?;
    let started = Instant::now();
    for _ in 0..events {
        run()?;
    }
    let per_event = started.elapsed().as_secs_f64() * 1e6 / f64::from(events);
    let faults = (minor_faults()? - faults) as f64 / f64::from(events);
    println!("{what:>20}: {per_event:8.1} µs per event, {faults:6.1} page faults per event");
    Ok(())
}

/// The process's minor page faults so far (`/proc/self/stat`, field 10).
fn minor_faults() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = &stat[stat.rfind(')').unwrap_or(0) + 2..];
    Ok(after_name
        .split(' ')
        .nth(7)
        .ok_or_else(|| anyhow::anyhow!("no fault count in /proc/self/stat"))?
        .parse()?)
}
