//! The plugin stage: what running one event through a plugin costs.
//!
//! For the seed's outbound transformer (`plugins/tax-rate-outbound`) and for a handler that
//! returns three actions (`tests/plugins/fan-out`), each measured in the same run:
//!
//! - `native`: the same mapping compiled natively and called directly (no sandbox);
//! - `reused-instance`: the component, one instance kept for every event (the engine's opt-in
//!   `isolation.reuseFor`, unbounded: not isolated);
//! - `fresh-instance`: the component, a fresh store and instance per event, as the engine runs
//!   it by default (`Plugin::run`);
//! - `store-only` and `store-and-instance`: the parts of a fresh run before the plugin's code
//!   runs, for the breakdown.
//!
//! Run with `cargo bench -p sync-engine-sandbox --bench plugin_stage`. After criterion's own
//! report it prints a table of medians in µs per event and the ratios between them.

#![allow(clippy::print_stdout, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput};
use hms_sync_sdk::{Handler, Transformer};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use sync_engine_sandbox::event::Event;
use sync_engine_sandbox::{Isolation, Plugin, PluginSetup, Sandbox, SandboxOptions};

const PAYLOAD: &[u8] = br#"{"rate":0.0725,"year":2025}"#;

/// The ways each plugin is run, in the order they are measured. The reused instance comes last:
/// once one instance has run many events of a JavaScript plugin, fresh instances of the same
/// plugin measured after it cost more (see docs/performance.md), so each way is measured from
/// the state the engine would be in when it runs that way.
const WAYS: [&str; 5] = [
    "native",
    "fresh-instance",
    "store-only",
    "store-and-instance",
    "reused-instance",
];

fn main() {
    let started = SystemTime::now();
    let output = criterion_dir();
    let mut criterion = Criterion::default()
        .output_directory(&output)
        .configure_from_args();
    let sandbox = Sandbox::new(SandboxOptions::default()).expect("the sandbox starts");
    let setup = PluginSetup::default();
    let event = engine_event();
    let guest_event = sdk_event();

    let outbound = load(&sandbox, "tax-rate-outbound");
    bench_plugin(
        &mut criterion,
        "transformer",
        &outbound,
        &event,
        &setup,
        Some(&|| {
            tax_rate_outbound::Outbound::transform(guest_event.clone())
                .expect("the mapping succeeds")
                .len()
        }),
    );
    let fan_out = load(&sandbox, "fan-out");
    bench_plugin(
        &mut criterion,
        "handler-3-actions",
        &fan_out,
        &event,
        &setup,
        Some(&|| {
            fan_out::FanOut::handle(guest_event.clone())
                .expect("the mapping succeeds")
                .len()
        }),
    );
    // The same transformer written in JavaScript and in Python (no native way: the mapping is
    // not Rust).
    for (group, package) in [
        ("transformer-js", "tax-rate-outbound-js"),
        ("transformer-py", "tax-rate-outbound-py"),
    ] {
        let plugin = load(&sandbox, package);
        bench_plugin(&mut criterion, group, &plugin, &event, &setup, None);
    }
    criterion.final_summary();
    report(
        &output,
        started,
        &[
            "transformer",
            "transformer-js",
            "transformer-py",
            "handler-3-actions",
        ],
    );
}

fn bench_plugin(
    criterion: &mut Criterion,
    group: &str,
    plugin: &Plugin,
    event: &Event,
    setup: &PluginSetup,
    native: Option<&dyn Fn() -> usize>,
) {
    // The engine's opt-in reuse, with no bound on the events per instance.
    let reused = PluginSetup {
        isolation: Isolation {
            reuse_for: NonZeroU32::MAX,
            ..Isolation::default()
        },
        ..setup.clone()
    };
    // Each way must produce the same result before it is timed.
    let expected = plugin.run(event, setup).expect("the plugin runs");
    assert_eq!(
        plugin.run(event, &reused).expect("the plugin runs"),
        expected
    );

    let mut group = criterion.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    for way in WAYS {
        if way == "native" && native.is_none() {
            continue;
        }
        group.bench_function(BenchmarkId::from_parameter(way), |b| match way {
            "native" => {
                let native = native.expect("skipped above without a native mapping");
                b.iter(|| black_box(native()));
            }
            "reused-instance" => b.iter(|| plugin.run(black_box(event), &reused).expect("runs")),
            "fresh-instance" => {
                b.iter(|| plugin.run(black_box(event), setup).expect("runs"));
            }
            "store-only" => b.iter(|| plugin.prepare_only(setup, false).expect("runs")),
            "store-and-instance" => {
                b.iter(|| plugin.prepare_only(setup, true).expect("runs"));
            }
            _ => unreachable!("every way is benchmarked above"),
        });
    }
    group.finish();
}

fn engine_event() -> Event {
    Event {
        id: "0193a8e2-7c1f-7d40-9a55-1c2d3e4f5a6b".to_owned(),
        event_type: "tax.rate.updated".to_owned(),
        origin: "hms".to_owned(),
        key: Some("tax-rate/2025".to_owned()),
        version: Some(3),
        timestamp: 1_764_000_000_000,
        content_type: "application/json".to_owned(),
        payload: PAYLOAD.to_vec(),
        headers: Vec::new(),
        hops: 0,
        path: vec!["hms".to_owned()],
    }
}

fn sdk_event() -> hms_sync_sdk::Event {
    let event = engine_event();
    hms_sync_sdk::Event {
        id: event.id,
        event_type: event.event_type,
        origin: event.origin,
        key: event.key,
        version: event.version,
        timestamp: event.timestamp,
        content_type: event.content_type,
        payload: event.payload,
        headers: Vec::new(),
    }
}

/// Where criterion writes its results: `<target>/criterion`, found from this binary's path
/// (`<target>/<profile>/deps/plugin_stage-…`), so the report below can read them back.
fn criterion_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark knows its path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("criterion")
}

/// The median of one benchmark in µs, if it ran in this run (a filter or `--test` may skip
/// it; an older result is not used).
fn median_us(output: &Path, started: SystemTime, group: &str, way: &str) -> Option<f64> {
    let path = output.join(group).join(way).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < started {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(estimates["median"]["point_estimate"].as_f64()? / 1000.0)
}

fn report(output: &Path, started: SystemTime, groups: &[&str]) {
    println!("\nPlugin stage, median µs per event (this run):\n");
    println!(
        "| plugin | native | reused | fresh | store only | store + instance | fresh / reused | fresh / native |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for group in groups {
        let m: Vec<Option<f64>> = WAYS
            .iter()
            .map(|way| median_us(output, started, group, way))
            .collect();
        let cell = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
            _ => "–".to_owned(),
        };
        println!(
            "| {group} | {} | {} | {} | {} | {} | {} | {} |",
            cell(m[0]),
            cell(m[4]),
            cell(m[1]),
            cell(m[2]),
            cell(m[3]),
            ratio(m[1], m[4]),
            ratio(m[1], m[0]),
        );
    }
}

/// Loads the component built from `package` into `sandbox` under the package's name.
fn load(sandbox: &Sandbox, package: &str) -> Plugin {
    sandbox
        .load(package, &test_components::component(package))
        .unwrap_or_else(|e| panic!("cannot load {package}: {e}"))
}
