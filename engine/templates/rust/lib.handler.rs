//! {{name}}: a handler for the HMS Synchronization Engine. It turns a payload
//! `{"firstName", "lastName"}` into a delivery of `{"fullName"}` to the destination the route's
//! `destination` setting names (default `contacts`), and drops events without a last name.
//! Change the types and the actions to yours.

use hms_sync_sdk::{Action, Delivery, Event, Handler, Result};
use serde::{Deserialize, Serialize};

/// What the plugin receives.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Person {
    first_name: String,
    #[serde(default)]
    last_name: Option<String>,
}

/// What it delivers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contact {
    full_name: String,
}

/// The plugin.
pub struct Plugin;

impl Handler for Plugin {
    fn handle(event: Event) -> Result<Vec<Action>> {
        let person: Person = event.json()?;
        let Some(last_name) = person.last_name else {
            return Ok(vec![Action::drop("no last name")]);
        };
        let destination =
            hms_sync_sdk::config::get("destination").unwrap_or_else(|| "contacts".to_owned());
        hms_sync_sdk::info!("contact for event {}", event.id);
        let contact = Contact {
            full_name: format!("{} {last_name}", person.first_name),
        };
        Ok(vec![Delivery::json(destination, &contact)?.into()])
    }
}

hms_sync_sdk::export_handler!(Plugin);

#[cfg(test)]
mod tests {
    use super::Plugin;
    use hms_sync_sdk::testing::{TestHost, json_event};
    use hms_sync_sdk::{Action, Delivery};
    use serde_json::json;

    #[test]
    fn delivers_the_contact_to_the_configured_destination() {
        let event = json_event("person.updated", &json!({"firstName": "Ada", "lastName": "Lovelace"}));
        let outcome = TestHost::new().with_config("destination", "crm").handle::<Plugin>(event);
        let expected = Delivery::json("crm", &json!({"fullName": "Ada Lovelace"})).unwrap();
        assert_eq!(outcome.result, Ok(vec![expected.into()]));
    }

    #[test]
    fn drops_a_person_without_a_last_name() {
        let event = json_event("person.updated", &json!({"firstName": "Ada"}));
        let outcome = TestHost::new().handle::<Plugin>(event);
        assert_eq!(outcome.result, Ok(vec![Action::drop("no last name")]));
    }
}
