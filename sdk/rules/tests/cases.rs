//! The shared conformance table (`cases.json`, see `CASES.md`) through this crate: the expected
//! results are this crate's, and every SDK's harness runs the same table through its own port of
//! the rules, so none of them can drift from the engine.

use hms_sync_rules::{
    Action, DEFAULT_ACTION_LIMIT, DEFAULT_OUTPUT_LIMIT, Header, check_actions, check_size,
};
use serde_json::Value;

/// A version as the table writes it: a number, or a decimal string past 2^53.
fn version(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => Some(n.as_u64().expect("a version is a non-negative integer")),
        Value::String(s) => Some(s.parse().expect("a version string is decimal")),
        other => panic!("a version is a number or a string, not {other}"),
    }
}

fn text<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get(field).map(|v| v.as_str().expect("a string"))
}

fn action(value: &Value) -> Action<'_> {
    let (kind, body) = value
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("an action is an object with one key");
    match kind.as_str() {
        "deliver" => Action::Deliver {
            destination: text(body, "destination").expect("a destination"),
            body: text(body, "body").expect("a body").as_bytes(),
            content_type: text(body, "contentType"),
            headers: body
                .get("headers")
                .and_then(Value::as_array)
                .map(|headers| {
                    headers
                        .iter()
                        .map(|pair| Header {
                            name: pair[0].as_str().expect("a header name"),
                            value: pair[1].as_str().expect("a header value"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            key: text(body, "key"),
            version: version(body.get("version")),
        },
        "emit" => Action::Emit {
            event_type: text(body, "eventType").expect("an event type"),
            payload: text(body, "payload").expect("a payload").as_bytes(),
            content_type: text(body, "contentType"),
            key: text(body, "key"),
            version: version(body.get("version")),
        },
        "drop" => Action::Drop {
            reason: body.as_str().expect("a drop reason"),
        },
        other => panic!("unknown action `{other}`"),
    }
}

#[test]
fn every_case_of_the_shared_table_gets_its_expected_result() {
    let table: Vec<Value> = serde_json::from_str(include_str!("../cases.json")).unwrap();
    assert!(table.len() > 100, "the table is there");
    let mut failures = Vec::new();
    for case in &table {
        let name = case["name"].as_str().expect("every case has a name");
        let limit = case
            .get("limit")
            .map_or(DEFAULT_OUTPUT_LIMIT, |l| l.as_u64().unwrap() as usize);
        let result = if let Some(size) = case.get("payloadSize") {
            check_size(size.as_u64().unwrap() as usize, limit)
        } else {
            let max_actions = case
                .get("maxActions")
                .map_or(DEFAULT_ACTION_LIMIT, |m| m.as_u64().unwrap() as usize);
            let actions = case["actions"].as_array().expect("actions");
            check_actions(actions.iter().map(action), limit, max_actions)
        };
        let expected = case["expect"].as_str().expect("an expected result");
        let got = result.as_ref().map_or_else(|r| r.code(), |()| "ok");
        if got != expected {
            failures.push(format!(
                "{name}: expected {expected}, got {got} ({result:?})"
            ));
        } else if let (Some(message), Err(refusal)) = (text(case, "message"), &result)
            && !refusal.to_string().contains(message)
        {
            failures.push(format!("{name}: `{refusal}` does not contain `{message}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
