//! How the admin API's answers read as text, for the `dlq`, `events` and `plugin` commands.

use crate::admin::api::{
    CanaryReport, Change, DeadLetter, EventHistory, PluginDetail, RunWindow, ShadowReport, Swapped,
    Trial,
};
use std::time::{Duration, UNIX_EPOCH};

/// A version made active, as text.
pub(super) fn swap_text(answer: &Swapped) -> String {
    let swap = &answer.plugin;
    let what = if swap.unchanged {
        "already active"
    } else {
        "now active"
    };
    format!(
        "{}@{} ({}, {} bytes) {what}; replaced {}; passed {} fixture case(s) in {} ms\n",
        swap.name,
        short(&swap.hash),
        swap.world,
        swap.size,
        swap.replaced.as_deref().map_or("nothing", short),
        swap.fixtures_passed,
        swap.took_ms,
    )
}

/// A dry run, as text: each event that changed (or every event, with `all`), then the counts.
pub(super) fn trial_text(trial: &Trial, all: bool) -> String {
    let mut out = String::new();
    for e in trial.events.iter().filter(|e| all || e.verdict != "same") {
        out.push_str(&format!(
            "{} {} ({}{}) accepted {}, version then {}\n",
            e.verdict,
            e.event_id,
            e.event_type,
            e.key
                .as_deref()
                .map(|k| format!(", key {k}"))
                .unwrap_or_default(),
            time(Some(e.accepted_at)),
            e.then_version.as_deref().map_or("-", short),
        ));
        if let Some(error) = &e.error {
            out.push_str(&format!("  {error}\n"));
        }
        if e.changes_omitted {
            out.push_str("  (changes left out: the report holds 8 MiB of them at most)\n");
        }
        let json = |v: &Option<serde_json::Value>| {
            v.as_ref().map_or_else(String::new, ToString::to_string)
        };
        for c in &e.changes {
            let line = match c.op.as_str() {
                "add" => format!("  + {} {}", c.path, json(&c.after)),
                "remove" => format!("  - {} {}", c.path, json(&c.before)),
                _ => format!("  ~ {} {} -> {}", c.path, json(&c.before), json(&c.after)),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    let s = &trial.summary;
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
    out.push_str(&format!(
        "{}@{} on {} event(s): {} same, {} different, {} failed, {} skipped; run time p50 {} p99 {} \
         (then {} / {}); took {} ms\n",
        trial.plugin,
        short(&trial.candidate),
        s.events,
        s.same,
        s.different,
        s.failed,
        s.skipped,
        ms(s.candidate_p50_ms),
        ms(s.candidate_p99_ms),
        ms(s.then_p50_ms),
        ms(s.then_p99_ms),
        s.took_ms,
    ));
    if let Some(why) = &trial.stopped {
        out.push_str(&format!(
            "stopped early: {why}; {} of {} selected event(s) tried\n",
            s.events, s.selected
        ));
    }
    out
}

/// Differences, one per line: `+ path value`, `- path value`, `~ path before -> after`.
fn changes_text(changes: &[Change]) -> String {
    let json =
        |v: &Option<serde_json::Value>| v.as_ref().map_or_else(String::new, ToString::to_string);
    changes
        .iter()
        .map(|c| match c.op.as_str() {
            "add" => format!("  + {} {}\n", c.path, json(&c.after)),
            "remove" => format!("  - {} {}\n", c.path, json(&c.before)),
            _ => format!("  ~ {} {} -> {}\n", c.path, json(&c.before), json(&c.after)),
        })
        .collect()
}

/// A shadow's report, as text: the counts, then its latest differences.
pub(super) fn shadow_text(r: &ShadowReport) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
    let mut out = format!(
        "{}: shadow {} beside {} since {} (by {})\n  {} run(s): {} same, {} different, {} failed; {} skipped; agreement {}\n  run time p50 {} p99 {} (active {} / {})\n",
        r.plugin,
        short(&r.shadow),
        r.active.as_deref().map_or("-", short),
        time(Some(r.started_at)),
        r.started_by,
        r.runs,
        r.same,
        r.different,
        r.failed,
        r.skipped,
        r.agreement_rate
            .map_or_else(|| "-".to_owned(), |a| format!("{:.1}%", a * 100.0)),
        ms(r.shadow_p50_ms),
        ms(r.shadow_p99_ms),
        ms(r.active_p50_ms),
        ms(r.active_p99_ms),
    );
    for d in &r.latest {
        out.push_str(&format!(
            "{} {} at {}\n",
            d.verdict,
            d.event_id,
            time(Some(d.ran_at))
        ));
        if let Some(error) = &d.error {
            out.push_str(&format!("  {error}\n"));
        }
        out.push_str(&changes_text(&d.changes));
    }
    out
}

/// A canary's report, as text: its share and state, then both versions over its window.
pub(super) fn canary_text(r: &CanaryReport) -> String {
    let window = |w: &RunWindow| {
        format!(
            "{} run(s), {} failed ({}), p99 {}",
            w.runs,
            w.failed,
            w.failure_rate
                .map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", f * 100.0)),
            w.p99_ms
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.2} ms"))
        )
    };
    let mut out = format!(
        "{}: canary {} on {}% of keys beside {}, {} since {} (by {})\n",
        r.plugin,
        short(&r.canary),
        r.percent,
        r.active.as_deref().map_or("-", short),
        r.state,
        time(Some(r.started_at)),
        r.started_by,
    );
    if let Some(why) = &r.why {
        out.push_str(&format!("  ended {}: {why}\n", time(r.ended_at)));
    }
    out.push_str(&format!(
        "  canary: {}\n  active: {}\n  over {} s, after {} runs each; rolled back past +{:.1} points of failures or {}x the p99\n",
        window(&r.canary_window),
        window(&r.active_window),
        r.window_ms / 1000,
        r.min_runs,
        r.failure_margin * 100.0,
        r.p99_ratio,
    ));
    out
}

/// A plugin's versions and activations, as text.
pub(super) fn plugin_text(a: &PluginDetail) -> String {
    let mut out = format!("{} ({})\n", a.name, a.world);
    for v in &a.versions {
        out.push_str(&format!(
            "  {} {} {} bytes, uploaded {} by {}{}\n",
            if v.active { "*" } else { " " },
            v.hash,
            v.size,
            time(Some(v.uploaded_at)),
            v.uploaded_by,
            if v.fixtures { ", with fixtures" } else { "" },
        ));
    }
    for act in &a.activations {
        out.push_str(&format!(
            "  activated {} at {} by {} ({})\n",
            short(&act.hash),
            time(Some(act.activated_at)),
            act.activated_by,
            act.reason,
        ));
    }
    out
}

/// A Unix-ms time as RFC 3339, or `-`.
pub(super) fn time(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".into(),
        |ms| {
            let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            humantime::format_rfc3339_millis(at).to_string()
        },
    )
}

pub(super) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

pub(super) fn dead_letter_line(d: &DeadLetter) -> String {
    format!(
        "#{} {} {} event {} ({}) at {} by {}@{}{}: {}\n",
        d.id,
        d.kind,
        time(Some(d.created_at)),
        d.event_id,
        d.event_type,
        d.target,
        d.plugin,
        short(&d.plugin_hash),
        if d.replayed {
            format!(" [replayed {}]", time(d.replayed_at))
        } else {
            String::new()
        },
        d.error,
    )
}

/// An event's history as text.
pub(super) fn history_text(h: &EventHistory) -> String {
    let event = &h.event;
    let mut out = format!(
        "event {} ({} from {})\n  accepted  {}  on {}  key {}  version {}\n  processed {}\n",
        event.id,
        event.event_type,
        event.origin,
        time(Some(event.accepted_at)),
        event.route,
        event.key.as_deref().unwrap_or("-"),
        or_dash(event.version),
        time(event.processed_at),
    );
    out.push_str(&format!("  payload   {}\n", event.payload));
    for run in &h.runs {
        out.push_str(&format!(
            "  run handler {}: {}@{} {} in {} µs at {}{}{}\n",
            run.handler,
            run.plugin,
            short(&run.plugin_hash),
            run.outcome,
            run.duration_us,
            time(Some(run.ran_at)),
            run.error
                .as_deref()
                .map_or(String::new(), |e| format!(": {e}")),
            run.replayed_at.map_or(String::new(), |at| format!(
                " [replayed {}]",
                time(Some(at))
            )),
        ));
    }
    for action in &h.actions {
        let why = match (&action.superseded_by, &action.reason) {
            (Some(winner), _) => format!(" by event {winner}"),
            (None, Some(reason)) => format!(": {reason}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  action {}: {} {} key {} version {} [{}{why}] after {} attempt(s), body {}\n",
            action.idempotency_key,
            action.kind,
            action.target.as_deref().unwrap_or("-"),
            action.key.as_deref().unwrap_or("-"),
            or_dash(action.version),
            action.state,
            action.attempts.len(),
            action.body,
        ));
        for a in &action.attempts {
            out.push_str(&format!(
                "    attempt {} at {}: {} in {} ms -> {}{}\n",
                a.number,
                time(Some(a.started_at)),
                a.status
                    .map_or("no response".into(), |s| format!("HTTP {s}")),
                a.duration_ms,
                a.outcome,
                a.error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" ({e})")),
            ));
        }
    }
    for d in &h.dead_letters {
        out.push_str(&format!("  dead letter {}", dead_letter_line(d)));
    }
    for r in &h.shadow_runs {
        out.push_str(&format!(
            "  shadow {}@{} beside {}: {}{}\n",
            r.plugin,
            short(&r.shadow_hash),
            short(&r.active_hash),
            r.verdict,
            r.error
                .as_deref()
                .map_or(String::new(), |e| format!(" ({e})")),
        ));
        out.push_str(&changes_text(&r.changes));
    }
    out
}
