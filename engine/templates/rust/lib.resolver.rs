//! {{name}}: a conflict resolver for the HMS Synchronization Engine (routes whose conflict
//! strategy is `plugin`). It delivers the incoming version of an entity when it is at least as
//! new as the one the destination holds, and keeps the current one otherwise. Change the rule to
//! yours: `Resolution::Merged(payload)` delivers a merged payload instead.

use hms_sync_sdk::{Entity, Resolution, Resolver, Result};

/// The plugin.
pub struct Plugin;

impl Resolver for Plugin {
    fn resolve(current: Entity, incoming: Entity) -> Result<Resolution> {
        let newer = match (incoming.version, current.version) {
            (Some(incoming), Some(current)) => incoming >= current,
            _ => incoming.timestamp >= current.timestamp,
        };
        Ok(if newer { Resolution::Replace } else { Resolution::Keep })
    }
}

hms_sync_sdk::export_resolver!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use hms_sync_sdk::Resolution;
    use hms_sync_sdk::testing::{TestHost, json_entity};
    use serde_json::json;

    #[test]
    fn a_newer_version_replaces_and_an_older_one_is_kept_out() {
        let v1 = json_entity("person/1", Some(1), &json!({"fullName": "Ada"}));
        let v2 = json_entity("person/1", Some(2), &json!({"fullName": "Ada Lovelace"}));
        let host = TestHost::new();
        assert_eq!(host.resolve::<Plugin>(v1.clone(), v2.clone()).result, Ok(Resolution::Replace));
        assert_eq!(host.resolve::<Plugin>(v2, v1).result, Ok(Resolution::Keep));
    }
}
