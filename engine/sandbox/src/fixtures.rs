//! Plugin fixtures: input events and what a plugin must make of them. A new version of a plugin
//! is activated only when it passes the fixtures it was uploaded with, or, when it came with
//! none, those of the version it replaces.
//!
//! A fixtures file is a JSON array of cases:
//!
//! ```json
//! [
//!   {
//!     "name": "the seed's payload",
//!     "event": {"type": "tax.rate.updated", "payload": {"rate": 0.07, "year": 2025}},
//!     "expect": {"payload": {"newRates": 0.07, "effectiveYear": 2025}}
//!   },
//!   {
//!     "event": {"type": "tax-rate.changed", "origin": "state-tax-api",
//!               "payload": {"currentRate": 0.07, "taxYear": 2025}},
//!     "expect": {"actions": [{"emit": {"type": "tax.rate.updated",
//!                                      "payload": {"rate": 0.07, "year": 2025},
//!                                      "key": "tax-rate/2025"}}]}
//!   },
//!   {"event": {"type": "tax.rate.updated", "payload": {"year": 2025}},
//!    "expect": {"error": "invalid-input"}}
//! ]
//! ```
//!
//! `event` takes `type` and `payload` (any JSON) and optionally `origin` (default `hms`), `key`,
//! `version`, `timestamp` and `headers` (an object). `expect` is one of: `payload` (a
//! transformer's output, compared as JSON), `actions` (a handler's, each `{"deliver":
//! {"destination", "body", ...}}`, `{"emit": {"type", "payload", ...}}` or `{"drop": reason}`;
//! `key`, `version`, `headers` and `content_type` are compared when given), or `error` (the code
//! of the failure: `invalid-input`, `rejected`, `internal`, `trap`, `timeout`, ...).

use crate::event::{Action, Event, Header};
use crate::{Output, Plugin, PluginSetup};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Fixture cases.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Fixtures {
    cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    name: Option<String>,
    event: FixtureEvent,
    expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureEvent {
    #[serde(rename = "type")]
    event_type: String,
    payload: Value,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Expect {
    Payload(Value),
    Actions(Vec<ExpectedAction>),
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum ExpectedAction {
    Deliver(ExpectedDelivery),
    Emit(ExpectedEmission),
    Drop(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDelivery {
    destination: String,
    body: Value,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedEmission {
    #[serde(rename = "type")]
    event_type: String,
    payload: Value,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    version: Option<u64>,
}

impl Fixtures {
    /// Reads fixtures from JSON; the error names what is wrong, with its place.
    pub fn parse(json: &str) -> Result<Fixtures, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        let fixtures: Fixtures = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            format!(
                "the fixtures are not valid: at `{}`: {}",
                e.path(),
                e.inner()
            )
        })?;
        if fixtures.cases.is_empty() {
            return Err("the fixtures hold no case".into());
        }
        Ok(fixtures)
    }

    /// How many cases there are.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether there is no case (never true of parsed fixtures).
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Runs every case on `plugin` (under `setup`: its route settings and limits); returns each
    /// case's name and whether it passed, or what differed.
    ///
    /// Blocks while the plugin runs: call it on a thread that may block.
    pub fn run(&self, plugin: &Plugin, setup: &PluginSetup) -> Vec<(String, Result<(), String>)> {
        self.cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let name = case
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("case {i} ({})", case.event.event_type));
                (name, case.check(plugin, setup, i))
            })
            .collect()
    }

    /// Runs every case; returns one message per failing case, naming it and saying what
    /// differed.
    pub fn check(&self, plugin: &Plugin, setup: &PluginSetup) -> Vec<String> {
        self.run(plugin, setup)
            .into_iter()
            .filter_map(|(name, result)| result.err().map(|e| format!("{name}: {e}")))
            .collect()
    }
}

impl Case {
    fn check(&self, plugin: &Plugin, setup: &PluginSetup, index: usize) -> Result<(), String> {
        let event = self.event.to_event(index);
        let result = plugin.run(&event, setup);
        match (&self.expect, result) {
            (Expect::Error(code), Err(e)) if e.code() == code => Ok(()),
            (Expect::Error(code), Err(e)) => Err(format!("expected error `{code}`, got: {e}")),
            (Expect::Error(code), Ok(output)) => Err(format!(
                "expected error `{code}`, got a result: {}",
                describe(&output)
            )),
            (_, Err(e)) => Err(format!("failed: {e}")),
            (Expect::Payload(expected), Ok(Output::Payload(payload))) => {
                same_json("the payload", expected, &payload)
            }
            (Expect::Actions(expected), Ok(Output::Actions(actions))) => {
                if expected.len() != actions.len() {
                    return Err(format!(
                        "expected {} action(s), got {}: {}",
                        expected.len(),
                        actions.len(),
                        describe(&Output::Actions(actions))
                    ));
                }
                expected
                    .iter()
                    .zip(&actions)
                    .enumerate()
                    .try_for_each(|(j, (e, a))| e.check(a).map_err(|m| format!("action {j}: {m}")))
            }
            (Expect::Payload(_), Ok(output)) => Err(format!(
                "expected a payload (a transformer's output), got {}",
                describe(&output)
            )),
            (Expect::Actions(_), Ok(output)) => Err(format!(
                "expected actions (a handler's output), got {}",
                describe(&output)
            )),
        }
    }
}

impl FixtureEvent {
    fn to_event(&self, index: usize) -> Event {
        Event {
            id: format!("fixture-{index}"),
            event_type: self.event_type.clone(),
            origin: self.origin.clone().unwrap_or_else(|| "hms".into()),
            key: self.key.clone(),
            version: self.version,
            timestamp: self.timestamp.unwrap_or(0),
            content_type: "application/json".into(),
            payload: serde_json::to_vec(&self.payload).unwrap_or_default(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| Header::new(k.to_ascii_lowercase(), v))
                .collect(),
            hops: 0,
            path: vec![self.origin.clone().unwrap_or_else(|| "hms".into())],
        }
    }
}

impl ExpectedAction {
    fn check(&self, got: &Action) -> Result<(), String> {
        match (self, got) {
            (ExpectedAction::Deliver(e), Action::Deliver(d)) => {
                if e.destination != d.destination {
                    return Err(format!(
                        "expected a delivery to `{}`, got one to `{}`",
                        e.destination, d.destination
                    ));
                }
                same_json("the body", &e.body, &d.body)?;
                same_opt("the key", &e.key, &d.key)?;
                same_opt("the version", &e.version, &d.version)?;
                same_opt("the content type", &e.content_type, &d.content_type)?;
                if let Some(headers) = &e.headers {
                    let got: BTreeMap<String, String> = d
                        .headers
                        .iter()
                        .map(|h| (h.name.clone(), h.value.clone()))
                        .collect();
                    if *headers != got {
                        return Err(format!("expected headers {headers:?}, got {got:?}"));
                    }
                }
                Ok(())
            }
            (ExpectedAction::Emit(e), Action::Emit(m)) => {
                if e.event_type != m.event_type {
                    return Err(format!(
                        "expected an emission of `{}`, got one of `{}`",
                        e.event_type, m.event_type
                    ));
                }
                same_json("the payload", &e.payload, &m.payload)?;
                same_opt("the key", &e.key, &m.key)?;
                same_opt("the version", &e.version, &m.version)
            }
            (ExpectedAction::Drop(reason), Action::Drop(got)) if reason == got => Ok(()),
            (expected, got) => Err(format!("expected {expected:?}, got {got:?}")),
        }
    }
}

fn same_json(what: &str, expected: &Value, got: &[u8]) -> Result<(), String> {
    match serde_json::from_slice::<Value>(got) {
        Ok(value) if value == *expected => Ok(()),
        Ok(value) => Err(format!("expected {what} {expected}, got {value}")),
        Err(_) => Err(format!(
            "expected {what} {expected}, got bytes that are not JSON: {}",
            String::from_utf8_lossy(got)
        )),
    }
}

fn same_opt<T: PartialEq + std::fmt::Debug>(
    what: &str,
    expected: &Option<T>,
    got: &Option<T>,
) -> Result<(), String> {
    match expected {
        Some(e) if Some(e) != got.as_ref() => Err(format!("expected {what} {e:?}, got {got:?}")),
        _ => Ok(()),
    }
}

fn describe(output: &Output) -> String {
    match output {
        Output::Payload(p) => format!("the payload {}", String::from_utf8_lossy(p)),
        Output::Actions(actions) => format!("{actions:?}"),
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value, a few levels deep.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever JSON a fixtures file holds, it is read or refused with a message naming
        /// what is wrong; nothing panics.
        #[test]
        fn any_json_is_read_or_refused(value in json(), text in "\\PC{0,40}") {
            if let Err(message) = Fixtures::parse(&value.to_string()) {
                prop_assert!(!message.is_empty());
            }
            let _ = Fixtures::parse(&text);
        }

        /// Cases written in the documented shape are all read (an empty list is refused).
        #[test]
        fn documented_cases_are_read(cases in proptest::collection::vec(("[a-z ]{1,12}", "[a-z.]{1,12}", any::<i32>()), 1..8)) {
            let json: Vec<Value> = cases
                .iter()
                .map(|(name, event_type, rate)| serde_json::json!({
                    "name": name,
                    "event": {"type": event_type, "payload": {"rate": rate}},
                    "expect": {"payload": {"newRates": rate}},
                }))
                .collect();
            let fixtures = Fixtures::parse(&Value::Array(json).to_string()).unwrap();
            prop_assert_eq!(fixtures.len(), cases.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let fixtures = Fixtures::parse(
            r#"[
              {"name": "seed", "event": {"type": "t", "payload": {"rate": 1}},
               "expect": {"payload": {"newRates": 1}}},
              {"event": {"type": "t", "payload": {}, "origin": "state", "headers": {"X-A": "b"}},
               "expect": {"actions": [{"emit": {"type": "u", "payload": {}, "key": "k"}},
                                      {"deliver": {"destination": "d", "body": [1]}},
                                      {"drop": "why"}]}},
              {"event": {"type": "t", "payload": null}, "expect": {"error": "invalid-input"}}
            ]"#,
        )
        .unwrap();
        assert_eq!(fixtures.len(), 3);
        let event = fixtures.cases[1].event.to_event(1);
        assert_eq!(event.origin, "state");
        assert_eq!(event.headers, [Header::new("x-a", "b")]);
    }

    #[test]
    fn bad_fixtures_say_where() {
        let err =
            Fixtures::parse(r#"[{"event": {"type": "t"}, "expect": {"payload": 1}}]"#).unwrap_err();
        assert!(err.contains("missing field `payload`"), "{err}");
        let err =
            Fixtures::parse(r#"[{"event": {"type": "t", "payload": 1}, "expect": {"result": 1}}]"#)
                .unwrap_err();
        assert!(err.contains("[0].expect"), "{err}");
        assert!(Fixtures::parse("[]").unwrap_err().contains("no case"));
    }
}
