//! {{name}}: a transformer for the HMS Synchronization Engine. It maps a payload
//! `{"firstName", "lastName"}` to `{"fullName"}`; the route in the engine's configuration says
//! where the result goes. Change the two types and the mapping to yours.

use hms_sync_sdk::{Event, Result, Transformer};
use serde::{Deserialize, Serialize};

/// What the plugin receives.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Person {
    first_name: String,
    last_name: String,
}

/// What it sends on.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contact {
    full_name: String,
}

/// The plugin.
pub struct Plugin;

impl Transformer for Plugin {
    fn transform(event: Event) -> Result<Vec<u8>> {
        // A missing or mistyped field is `invalid-input`, naming the field.
        let person: Person = event.json()?;
        hms_sync_sdk::to_json(&Contact {
            full_name: format!("{} {}", person.first_name, person.last_name),
        })
    }
}

hms_sync_sdk::export_transformer!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use hms_sync_sdk::ErrorKind;
    use hms_sync_sdk::testing::{TestHost, json_event};
    use serde_json::json;

    #[test]
    fn maps_a_person_to_a_contact() {
        let event = json_event("person.updated", &json!({"firstName": "Ada", "lastName": "Lovelace"}));
        let outcome = TestHost::new().transform::<Plugin>(event);
        assert_eq!(outcome.result.unwrap(), br#"{"fullName":"Ada Lovelace"}"#);
    }

    #[test]
    fn a_missing_field_is_invalid_input_naming_it() {
        let event = json_event("person.updated", &json!({"firstName": "Ada"}));
        let err = TestHost::new().transform::<Plugin>(event).result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("lastName"), "{err}");
    }
}
