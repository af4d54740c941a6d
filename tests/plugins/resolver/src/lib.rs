//! A conflict resolver with two modes, chosen by the route's plugin config `mode`:
//!
//! - `newest` (the default): keep the current version unless the incoming one has a greater
//!   version (or, without versions, a later timestamp);
//! - `merge`: deliver the two JSON objects merged, the incoming one's fields winning, nested
//!   objects merged the same way.

use hms_sync_sdk::{Entity, Error, Resolution, Resolver, Result};
use serde_json::Value;

/// Resolves conflicts by the route's `mode`.
pub struct TestResolver;

impl Resolver for TestResolver {
    fn resolve(current: Entity, incoming: Entity) -> Result<Resolution> {
        match hms_sync_sdk::config::get("mode").as_deref() {
            None | Some("newest") => Ok(newest(&current, &incoming)),
            Some("merge") => {
                let mut merged: Value = current.json()?;
                merge(&mut merged, incoming.json()?);
                Resolution::merged_json(&merged)
            }
            Some(other) => Err(Error::internal(format!("unknown mode `{other}`"))),
        }
    }
}

fn newest(current: &Entity, incoming: &Entity) -> Resolution {
    let newer = match (current.version, incoming.version) {
        (Some(c), Some(i)) => i > c,
        _ => incoming.timestamp > current.timestamp,
    };
    if newer {
        Resolution::Replace
    } else {
        Resolution::Keep
    }
}

/// Merges `incoming` into `into`: objects field by field, anything else replaced.
fn merge(into: &mut Value, incoming: Value) {
    match (into, incoming) {
        (Value::Object(into), Value::Object(incoming)) => {
            for (key, value) in incoming {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, incoming) => *into = incoming,
    }
}

hms_sync_sdk::export_resolver!(TestResolver);

#[cfg(test)]
mod tests {
    use super::TestResolver;
    use hms_sync_sdk::Resolution;
    use hms_sync_sdk::testing::{TestHost, json_entity};
    use serde_json::json;

    #[test]
    fn newest_keeps_the_greater_version() {
        let v1 = json_entity("k", Some(1), &json!({}));
        let v3 = json_entity("k", Some(3), &json!({}));
        let host = TestHost::new();
        let keep = host.resolve::<TestResolver>(v3.clone(), v1.clone()).result;
        assert_eq!(keep, Ok(Resolution::Keep));
        let replace = host.resolve::<TestResolver>(v1, v3).result;
        assert_eq!(replace, Ok(Resolution::Replace));
    }

    #[test]
    fn merge_unites_objects_with_the_incoming_fields_winning() {
        let current = json_entity(
            "k",
            Some(1),
            &json!({"rates": {"food": 1, "fuel": 2}, "a": 1}),
        );
        let incoming = json_entity("k", Some(2), &json!({"rates": {"fuel": 3}, "b": 2}));
        let outcome = TestHost::new()
            .with_config("mode", "merge")
            .resolve::<TestResolver>(current, incoming);
        let Ok(Resolution::Merged(body)) = outcome.result else {
            panic!("{:?}", outcome.result)
        };
        let merged: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            merged,
            json!({"rates": {"food": 1, "fuel": 3}, "a": 1, "b": 2})
        );
    }
}
