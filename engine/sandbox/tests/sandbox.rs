//! The sandbox against real components built from `plugins/` and `tests/plugins/`.

use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use sync_engine_sandbox::event::{Action, Emission, Event};
use sync_engine_sandbox::{
    GuestErrorKind, Isolation, Limits, LoadError, Output, Plugin, PluginSetup, RunError, Sandbox,
    SandboxOptions, World,
};
use test_components::component;

/// One sandbox for the whole test binary, as the engine has one.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxOptions::default()).expect("sandbox"))
}

fn misbehave() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| load(sandbox(), "misbehave"))
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(200),
        memory: 16 << 20,
        output: 1 << 20,
        actions: hms_sync_rules::DEFAULT_ACTION_LIMIT,
    }
}

/// No settings, the test limits.
fn setup() -> PluginSetup {
    with_limits(limits())
}

fn with_limits(limits: Limits) -> PluginSetup {
    PluginSetup {
        limits,
        ..PluginSetup::default()
    }
}

fn event(event_type: &str, payload: impl Into<Vec<u8>>) -> Event {
    Event {
        id: format!("evt-{event_type}"),
        event_type: event_type.to_owned(),
        origin: "hms".to_owned(),
        key: None,
        version: None,
        timestamp: 1_764_000_000_000,
        content_type: "application/json".to_owned(),
        payload: payload.into(),
        headers: Vec::new(),
        hops: 0,
        path: vec!["hms".into()],
    }
}

fn run(plugin: &Plugin, event_type: &str, payload: impl Into<Vec<u8>>) -> Result<Output, RunError> {
    plugin.run(&event(event_type, payload), &setup())
}

/// The plugin still serves an ordinary event after whatever went before.
fn assert_still_serves(plugin: &Plugin) {
    let output = run(plugin, "echo", "still here").expect("the next event succeeds");
    let Output::Actions(actions) = output else {
        panic!("{output:?}")
    };
    let [Action::Deliver(delivery)] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(delivery.destination, "echo");
    assert_eq!(delivery.body, b"still here");
}

#[test]
fn the_seed_outbound_transformer_maps_the_seed_payload_exactly() {
    let plugin = load(sandbox(), "tax-rate-outbound");
    assert_eq!(plugin.world(), World::Transformer);
    let payload = json!({"rate": 0.0725, "year": 2025}).to_string();
    let output = run(&plugin, "tax.rate.updated", payload).unwrap();
    assert_eq!(
        output,
        Output::Payload(br#"{"newRates":0.0725,"effectiveYear":2025}"#.to_vec())
    );
}

#[test]
fn the_seed_inbound_handler_emits_the_seed_mapping() {
    let plugin = load(sandbox(), "tax-rate-inbound");
    assert_eq!(plugin.world(), World::Handler);
    let payload = json!({"currentRate": 0.0725, "taxYear": 2025}).to_string();
    let output = run(&plugin, "tax-rate.changed", payload).unwrap();
    assert_eq!(
        output,
        Output::Actions(vec![Action::Emit(Emission {
            event_type: "tax.rate.updated".into(),
            payload: br#"{"rate":0.0725,"year":2025}"#.to_vec(),
            content_type: Some("application/json".into()),
            key: Some("tax-rate/2025".into()),
            version: None,
            timestamp: None,
        })])
    );
}

#[test]
fn seed_plugins_report_bad_fields_as_invalid_input_naming_the_field() {
    let outbound = load(sandbox(), "tax-rate-outbound");
    let err = run(&outbound, "tax.rate.updated", r#"{"rate": 0.07}"#).unwrap_err();
    let RunError::Plugin { kind, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*kind, GuestErrorKind::InvalidInput);
    assert!(message.contains("missing field `year`"), "{message}");
    assert_eq!(err.code(), "invalid-input");

    let inbound = load(sandbox(), "tax-rate-inbound");
    let err = run(&inbound, "x", r#"{"currentRate": 0.07, "taxYear": "soon"}"#).unwrap_err();
    let RunError::Plugin { kind, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*kind, GuestErrorKind::InvalidInput);
    assert!(message.contains("`taxYear`"), "{message}");
}

#[test]
fn a_plugin_that_loops_forever_is_stopped_at_its_deadline() {
    let started = Instant::now();
    let err = run(misbehave(), "loop", "").unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        RunError::Timeout {
            limit: Duration::from_millis(200)
        }
    );
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    // Generous: the point is that it stops, not how fast this shared machine is.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_cannot_wait_past_its_deadline() {
    // Epoch interruption cannot stop a host call blocked on a timer, so waiting is refused.
    let started = Instant::now();
    let err = run(misbehave(), "sleep", "").unwrap_err();
    let RunError::Trap { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("plugins may not sleep"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_still_serves(misbehave());
}

#[test]
fn a_component_with_more_core_instances_or_memories_than_a_plugin_may_hold_is_refused_at_load() {
    for (options, what) in [
        (
            SandboxOptions {
                max_core_instances_per_plugin: 1,
                ..SandboxOptions::default()
            },
            "3 core module instances, which exceeds the configured maximum of 1",
        ),
        (
            SandboxOptions {
                max_memories_per_plugin: 0,
                ..SandboxOptions::default()
            },
            "memories",
        ),
    ] {
        let small = Sandbox::new(options).expect("sandbox");
        let err = small
            .load("misbehave", &component("misbehave"))
            .expect_err("refused");
        let LoadError::Compile(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains(what), "{message}");
    }
    // The same component under the default caps loads.
    assert_still_serves(misbehave());
}

#[test]
fn random_bytes_are_capped_per_call() {
    let output = run(misbehave(), "random", "32").unwrap();
    let Output::Actions(actions) = output else {
        panic!("{output:?}")
    };
    assert_eq!(actions, [Action::Drop("got 32 random bytes".into())]);
    let cap = sync_engine_sandbox::MAX_RANDOM_BYTES;
    run(misbehave(), "random", cap.to_string()).expect("up to the cap is served");
    // Past it the call traps before the host allocates anything.
    let err = run(misbehave(), "random", (64u64 << 20).to_string()).unwrap_err();
    let RunError::Trap { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("exceeds limit 65536"), "{reason}");
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_that_allocates_without_bound_hits_its_memory_limit() {
    let err = run(misbehave(), "alloc", "").unwrap_err();
    let RunError::MemoryLimit { requested, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, 16 << 20);
    assert!(requested > limit, "{requested}");
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_that_returns_a_huge_output_is_refused() {
    let err = run(misbehave(), "huge", "").unwrap_err();
    let RunError::OutputTooLarge { size, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, 1 << 20);
    assert!(size >= 4 << 20, "{size}");
    assert_still_serves(misbehave());
}

#[test]
fn a_handler_that_floods_actions_is_refused_by_count_and_empty_actions_still_count_bytes() {
    // Up to the default limit of actions per event is fine.
    let Output::Actions(actions) = run(misbehave(), "flood", "256").unwrap() else {
        panic!("actions")
    };
    assert_eq!(actions.len(), 256);
    let err = run(misbehave(), "flood", "1000").unwrap_err();
    let RunError::TooManyActions { count, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!((count, limit), (1000, 256));
    assert_eq!(err.code(), "output-too-large");
    // With a higher action limit, empty drops still weigh on the output limit.
    let mut generous = setup();
    generous.limits.actions = 100_000;
    generous.limits.output = 64 * 1024;
    let err = misbehave()
        .run(&event("flood", "2000"), &generous)
        .unwrap_err();
    let RunError::OutputTooLarge { size, limit } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (size, limit),
        (2000 * hms_sync_rules::ACTION_OVERHEAD, 64 * 1024)
    );
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_that_panics_is_a_trap_carrying_the_panic_message() {
    let err = run(misbehave(), "panic", "").unwrap_err();
    let RunError::Trap { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("unreachable"), "{reason}");
    assert!(
        reason.contains("the plugin panicked on purpose"),
        "{reason}"
    );
    assert_eq!(err.code(), "trap");
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_that_overflows_its_stack_is_a_trap() {
    let err = run(misbehave(), "recurse", "").unwrap_err();
    let RunError::Trap { reason } = &err else {
        panic!("{err:?}")
    };
    // Rust keeps its stack in linear memory: overflowing it is an out-of-bounds access (or,
    // for frames kept on the wasm stack, wasm's own stack limit).
    assert!(
        reason.contains("out of bounds memory access") || reason.contains("call stack exhausted"),
        "{reason}"
    );
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_cannot_open_a_file() {
    let dir = std::env::temp_dir().join(format!("sandbox-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret.txt");
    std::fs::File::create(&secret)
        .unwrap()
        .write_all(b"top secret")
        .unwrap();
    for path in [secret.to_str().unwrap(), "/etc/hostname", "secret.txt"] {
        let err = run(misbehave(), "open-file", path).unwrap_err();
        let RunError::Plugin { kind, message } = &err else {
            panic!("{path}: {err:?}")
        };
        assert_eq!(*kind, GuestErrorKind::Internal);
        assert!(
            message.starts_with(&format!("cannot open {path}")),
            "{message}"
        );
        assert!(!message.contains("top secret"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_still_serves(misbehave());
}

#[test]
fn a_plugin_sees_no_environment_arguments_stdin_network_or_directories() {
    // SAFETY of the test's intent: the host process has an environment; the plugin must not.
    assert!(std::env::vars().count() > 0);
    let output = run(misbehave(), "escape", "").unwrap();
    assert_eq!(
        output,
        Output::Actions(vec![Action::Drop(
            "env=0 args=0 stdin=ok:0 net=denied dir=denied".into()
        )])
    );
}

#[test]
fn a_malformed_action_is_refused_naming_what_is_wrong() {
    let err = run(misbehave(), "malformed", "x").unwrap_err();
    let RunError::Malformed(reason) = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("action 0"), "{reason}");
    assert!(reason.contains("`bad header`"), "{reason}");
    assert_still_serves(misbehave());
}

#[test]
fn output_rules_are_the_sdks_refuse_engine_headers_and_dot_segments() {
    for (mode, says) in [
        ("engine-header", "`hms-hops` is set by the engine"),
        ("emit-dot-dot", "empty segment"),
    ] {
        let err = run(misbehave(), mode, "{}").unwrap_err();
        assert_eq!(err.code(), "malformed-output", "{mode}: {err}");
        assert!(err.to_string().contains(says), "{mode}: {err}");
    }
    // A destination's own headers are checked by the engine's pipeline, which knows them.
    assert!(run(misbehave(), "destination-header", "{}").is_ok());
}

#[test]
fn a_plugin_error_keeps_its_kind() {
    let err = run(misbehave(), "reject", "").unwrap_err();
    assert_eq!(
        err,
        RunError::Plugin {
            kind: GuestErrorKind::Rejected,
            message: "this plugin rejects `reject` events".into()
        }
    );
}

/// With reuse on, one instance serves several events (a global counter climbs), but never more
/// than `reuseFor`, never after a failure, never once its memory grew past the bound, and never
/// under other settings.
#[test]
fn a_reused_instance_keeps_state_only_within_its_bounds() {
    // Its own copy of the plugin, so no other test's events land on its kept instances.
    let plugin = load(sandbox(), "misbehave");
    let reuse = PluginSetup {
        limits: Limits {
            output: 8 << 20,
            ..limits()
        },
        isolation: Isolation {
            reuse_for: NonZeroU32::new(3).unwrap(),
            max_growth: 1 << 20,
        },
        ..PluginSetup::default()
    };
    let count = |setup: &PluginSetup| match plugin.run(&event("count", ""), setup) {
        Ok(Output::Actions(actions)) => match actions.as_slice() {
            [Action::Drop(reason)] => reason.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    // Three events per instance, then a new one.
    let counts: Vec<String> = (0..4).map(|_| count(&reuse)).collect();
    assert_eq!(counts, ["count=1", "count=2", "count=3", "count=1"]);
    // A failure discards the instance.
    assert!(matches!(
        plugin.run(&event("reject", ""), &reuse),
        Err(RunError::Plugin { .. })
    ));
    assert_eq!(count(&reuse), "count=1");
    // So does growing past the bound (a 4 MiB delivery body).
    assert!(plugin.run(&event("huge", ""), &reuse).is_ok());
    assert_eq!(count(&reuse), "count=1");
    // Other settings get another instance; fresh isolation a fresh one every time.
    let other = PluginSetup {
        settings: Arc::new(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        ..reuse
    };
    assert_eq!(count(&other), "count=1");
    assert_eq!(count(&setup()), "count=1");
    assert_eq!(count(&other), "count=2");
}

#[test]
fn two_events_never_share_state() {
    for _ in 0..3 {
        let output = run(misbehave(), "count", "").unwrap();
        assert_eq!(
            output,
            Output::Actions(vec![Action::Drop("count=1".into())])
        );
    }
}

#[test]
fn a_plugin_reads_its_route_config() {
    let setup = PluginSetup {
        settings: Arc::new(BTreeMap::from([
            ("greeting".to_owned(), "hello".to_owned()),
            ("other".to_owned(), "x".to_owned()),
        ])),
        limits: limits(),
        ..PluginSetup::default()
    };
    let output = misbehave().run(&event("config", ""), &setup).unwrap();
    assert_eq!(
        output,
        Output::Actions(vec![Action::Drop("hello/2".into())])
    );
    let output = run(misbehave(), "config", "").unwrap();
    assert_eq!(output, Output::Actions(vec![Action::Drop("/0".into())]));
}

/// A `tracing` writer that keeps everything written, for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn guest_logs_and_prints_go_to_tracing_with_plugin_and_event() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let output = tracing::subscriber::with_default(subscriber, || run(misbehave(), "log", ""));
    assert_eq!(
        output.unwrap(),
        Output::Actions(vec![Action::Drop("logged".into())])
    );
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    for (needle, level) in [
        ("info line for evt-log", "INFO"),
        ("warn line", "WARN"),
        ("printed to stdout", "INFO"),
        ("printed to stderr", "WARN"),
    ] {
        let line = line(needle);
        assert!(line.contains(level), "{line}");
        assert!(line.contains("plugin=\"misbehave\""), "{line}");
        assert!(line.contains("event_id=\"evt-log\""), "{line}");
        assert!(
            line.contains(&format!("version=\"{}\"", &misbehave().hash()[..12])),
            "{line}"
        );
    }
}

#[test]
fn a_component_of_another_world_is_refused_naming_what_it_exports() {
    let err = sandbox()
        .load("not-a-plugin", &component("not-a-plugin"))
        .unwrap_err();
    let LoadError::WrongWorld(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("no plugin world"), "{message}");
    assert!(message.contains("`hms:sync/transform@0.1.0`"), "{message}");
    assert!(message.contains("`hms:sync/handle@0.1.0`"), "{message}");
    assert!(message.contains("wasi:cli/run"), "{message}");
}

#[test]
fn a_component_with_the_wrong_shapes_is_refused_naming_the_mismatch() {
    let err = sandbox()
        .load("wrong-shape", &component("wrong-shape"))
        .unwrap_err();
    let LoadError::WrongShape(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("`hms:sync/transform@0.1.0`"), "{message}");
    assert!(message.contains("`transform` function"), "{message}");
    assert!(message.contains("transformer world"), "{message}");
    assert!(
        message.contains("expected `record` found `string`"),
        "{message}"
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let err = sandbox().load("junk", b"definitely not wasm").unwrap_err();
    assert!(matches!(err, LoadError::NotWasm(_)), "{err:?}");
    // The smallest valid core module: magic and version, nothing else.
    let err = sandbox().load("core", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(err, LoadError::CoreModule(_)), "{err:?}");
    assert!(err.to_string().contains("carries no plugin world"), "{err}");
}

#[test]
fn a_plugin_version_is_the_sha256_of_its_bytes() {
    let bytes = component("tax-rate-outbound");
    let a = sandbox().load("a", &bytes).unwrap();
    let b = sandbox().load("b", &bytes).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert_eq!(a.version_tag(), format!("a@{}", &a.hash()[..12]));
    assert_eq!(a.size(), bytes.len());
    let other = load(sandbox(), "tax-rate-inbound");
    assert_ne!(a.hash(), other.hash());
    // The inbound handler logs and reads its config; nothing imports the filesystem.
    assert!(
        other.imports().iter().any(|i| i == "hms:sync/log@0.1.0"),
        "{:?}",
        other.imports()
    );
    assert!(other.imports().iter().any(|i| i == "hms:sync/config@0.1.0"));
}

#[test]
fn a_plugin_built_for_wasm32_unknown_unknown_is_made_a_component_that_imports_only_hms_sync() {
    for package in ["tax-rate-outbound", "tax-rate-inbound", "fan-out"] {
        let bytes = component(package);
        // What the SDK builds for that target: a core module (version 1), not a component.
        assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0", "{package}");
        let plugin = load(sandbox(), package);
        assert_eq!(plugin.size(), bytes.len());
        assert!(
            plugin.imports().iter().all(|i| i.starts_with("hms:sync/")),
            "{package}: {:?}",
            plugin.imports()
        );
    }
    // A plugin that needs WASI still builds as a component and keeps its imports.
    let wasi = load(sandbox(), "misbehave");
    assert!(
        wasi.imports().iter().any(|i| i.starts_with("wasi:")),
        "{:?}",
        wasi.imports()
    );
}

#[test]
fn events_run_concurrently_on_one_plugin() {
    let plugin = load(sandbox(), "tax-rate-outbound");
    std::thread::scope(|scope| {
        for t in 0..4 {
            let plugin = &plugin;
            scope.spawn(move || {
                for year in 0..50 {
                    let year = 2000 + t * 100 + year;
                    let payload = json!({"rate": 1.5, "year": year}).to_string();
                    let output = run(plugin, "tax.rate.updated", payload).unwrap();
                    let expected = format!(r#"{{"newRates":1.5,"effectiveYear":{year}}}"#);
                    assert_eq!(output, Output::Payload(expected.into_bytes()));
                }
            });
        }
    });
}

#[test]
fn a_full_instance_pool_is_a_capacity_error_not_a_plugin_failure() {
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: 1,
        ..SandboxOptions::default()
    })
    .unwrap();
    let plugin = load(&sandbox, "misbehave");
    let busy = with_limits(Limits {
        timeout: Duration::from_secs(3),
        ..limits()
    });
    std::thread::scope(|scope| {
        // The looping event retries until it holds the slot, so the race below is one-sided.
        let looping = scope.spawn(|| {
            loop {
                match plugin.run(&event("loop", ""), &busy) {
                    Err(err) if err.is_capacity() => continue,
                    result => break result,
                }
            }
        });
        let mut saw_capacity = None;
        while !looping.is_finished() {
            if let Err(err) = run(&plugin, "echo", "x") {
                saw_capacity = Some(err);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = saw_capacity.expect("an event ran while the only slot was busy");
        assert!(err.is_capacity(), "{err:?}");
        assert_eq!(err.code(), "instantiate");
        assert!(matches!(
            looping.join().unwrap(),
            Err(RunError::Timeout { .. })
        ));
    });
    assert_still_serves(&plugin);
}

/// Loads the component built from `package` into `sandbox` under the package's name.
fn load(sandbox: &Sandbox, package: &str) -> Plugin {
    sandbox
        .load(package, &test_components::component(package))
        .unwrap_or_else(|e| panic!("cannot load {package}: {e}"))
}
