//! The configuration reference (`docs/operations/configuration.md`) and the schema, held
//! together: every key the engine reads is documented, and every documented key is read.

use super::Config;
use serde_json::Value;
use std::collections::BTreeSet;

/// The reference page, as the repository holds it.
const REFERENCE: &str = include_str!("../../../docs/operations/configuration.md");

/// Every leaf key of the configuration, as the reference writes keys: `a.b`, `<name>` for a map
/// of sections, `[]` for each entry of a list. A map or list of plain values is one key.
fn schema_keys() -> BTreeSet<String> {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).expect("a JSON schema");
    let mut keys = BTreeSet::new();
    walk(&schema, &schema, "", &mut keys);
    keys
}

/// The schema `node` resolves to: through `$ref`, and past an `Option`'s `null` alternative.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference
            .rsplit('/')
            .next()
            .expect("a $ref names a definition");
        return resolve(root, &root["$defs"][name]);
    }
    for alternatives in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = node.get(alternatives).and_then(Value::as_array) {
            return list.iter().flat_map(|n| resolve(root, n)).collect();
        }
    }
    vec![node]
}

/// Whether a resolved node is a section: an object with keys of its own.
fn is_section(node: &Value) -> bool {
    node.get("properties").is_some()
}

fn walk(root: &Value, node: &Value, path: &str, keys: &mut BTreeSet<String>) {
    let nodes = resolve(root, node);
    let mut leaf = true;
    for node in nodes {
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            leaf = false;
            for (key, child) in properties {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(root, child, &child_path, keys);
            }
        } else if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object())
            && resolve(root, values).into_iter().any(is_section)
        {
            leaf = false;
            walk(root, values, &format!("{path}.<name>"), keys);
        } else if let Some(items) = node.get("items").filter(|v| v.is_object())
            && resolve(root, items).into_iter().any(is_section)
        {
            leaf = false;
            walk(root, items, &format!("{path}[]"), keys);
        }
    }
    if leaf {
        keys.insert(path.to_owned());
    }
}

/// Every key the reference's tables document: the backticked names in each row's first cell.
fn documented_keys() -> BTreeSet<String> {
    REFERENCE
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let cell = line.split('|').nth(1).unwrap_or_default();
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_key_of_the_configuration_is_in_the_reference_and_back() {
    let schema = schema_keys();
    let documented = documented_keys();
    assert!(
        schema.contains("destinations.<name>.retry.maxAttempts"),
        "{schema:#?}"
    );
    assert!(schema.contains("hmsEvents[].conflict.key"), "{schema:#?}");
    assert!(schema.contains("plugins.<name>.config"), "{schema:#?}");
    let undocumented: Vec<&String> = schema.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&schema).collect();
    assert!(
        undocumented.is_empty(),
        "keys the engine reads that docs/operations/configuration.md does not document: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/operations/configuration.md documents that the engine does not read: {unknown:?}"
    );
}
