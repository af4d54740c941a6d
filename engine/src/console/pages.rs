//! The console's pages: Jinja templates (minijinja, HTML escaped by default) built into the
//! binary, and the filters they format values with.

use minijinja::value::Value;
use minijinja::{Environment, Error};
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("events.html", include_str!("templates/events.html")),
    ("event.html", include_str!("templates/event.html")),
    (
        "dead_letters.html",
        include_str!("templates/dead_letters.html"),
    ),
    ("plugins.html", include_str!("templates/plugins.html")),
    ("plugin.html", include_str!("templates/plugin.html")),
    ("config.html", include_str!("templates/config.html")),
    ("trial.html", include_str!("templates/trial.html")),
];

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("the console template {name} does not parse: {e:#}"));
    }
    env.add_filter("when", when);
    env.add_filter("age", age);
    env.add_filter("pct", pct);
    env.add_filter("millis", millis);
    env.add_filter("short", short);
    env.add_filter("bytes", bytes);
    env.add_filter("pretty", pretty);
    env
});

/// Renders the template `name` with `context`.
pub(super) fn render(name: &str, context: Value) -> Result<String, Error> {
    PAGES.get_template(name)?.render(context)
}

/// Unix milliseconds as an RFC 3339 time, to the second (UTC).
pub(super) fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return String::new();
    };
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// Milliseconds as a short duration: `850 ms`, `12 s`, `3 min`, `2 h`.
fn age(ms: Option<i64>) -> String {
    match ms {
        None => "none".into(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{} s", ms / 1_000),
        Some(ms) if ms < 7_200_000 => format!("{} min", ms / 60_000),
        Some(ms) => format!("{} h", ms / 3_600_000),
    }
}

/// A share as a percentage: `99.5%`; `–` when there is none.
fn pct(share: Option<f64>) -> String {
    share.map_or_else(|| "–".into(), |s| format!("{:.1}%", s * 100.0))
}

/// Milliseconds: `0.42 ms`, `12 ms`; `–` when there are none.
fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
        Some(ms) => format!("{ms:.0} ms"),
    }
}

/// A version hash, shortened to 12 digits.
fn short(hash: Option<String>) -> String {
    hash.map(|h| h.chars().take(12).collect())
        .unwrap_or_default()
}

/// A size: `812 B`, `1.4 MiB`.
fn bytes(size: Option<u64>) -> String {
    match size {
        None => String::new(),
        Some(n) if n < 1024 => format!("{n} B"),
        Some(n) if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// A body as it is stored, indented when it is JSON: only the space between tokens is laid out
/// again; every name, string and number stays exactly as written, in its order, a name given
/// twice included (parsing and writing it again would sort, merge and round them).
fn pretty(body: &str) -> String {
    if crate::json::check(body.as_bytes(), crate::json::MAX_DEPTH_LIMIT).is_err() {
        return body.to_owned();
    }
    let mut out = String::with_capacity(body.len() + body.len() / 2);
    let line = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(char::is_ascii_whitespace).is_some() {}
                // An empty object or array stays on its line.
                if let Some(close) = chars.next_if(|n| matches!(n, '}' | ']')) {
                    out.push(close);
                } else {
                    depth += 1;
                    line(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                line(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                line(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_filters_format() {
        LazyLock::force(&PAGES);
        assert_eq!(when(Some(1_767_225_600_000)), "2026-01-01 00:00:00 UTC");
        assert_eq!(age(Some(90_000)), "90 s");
        assert_eq!(age(Some(600_000)), "10 min");
        assert_eq!(pct(Some(0.995)), "99.5%");
        assert_eq!(pct(None), "–");
        assert_eq!(millis(Some(0.4213)), "0.42 ms");
        assert_eq!(short(Some("a".repeat(64))), "a".repeat(12));
        assert_eq!(bytes(Some(1536)), "1.5 KiB");
        assert_eq!(pretty(r#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(pretty("plain"), "plain");
        // As stored: order, escapes, numbers and spaces within strings kept; empty ones inline.
        assert_eq!(
            pretty(r#" {"z" : 1.50, "a":["x, \"y\"" ,{}, []], "n": 1e2}"#),
            "{\n  \"z\": 1.50,\n  \"a\": [\n    \"x, \\\"y\\\"\",\n    {},\n    []\n  ],\n  \"n\": 1e2\n}"
        );
    }
}
