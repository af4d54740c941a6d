//! A handler doing typical handler work for the plugin-stage benchmark: it reads an HMS
//! `tax.rate.updated` payload `{"rate", "year"}`, delivers the state API's body to two state
//! agencies and emits an audit event on the HMS bus: three actions per event.

use hms_sync_sdk::{Action, Delivery, Emission, Event, Handler, Result};
use serde::{Deserialize, Serialize};
use serde_json::Number;

/// The HMS payload.
#[derive(Deserialize)]
struct HmsRate {
    rate: Number,
    year: u16,
}

/// The state APIs' body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateRate<'a> {
    new_rates: &'a Number,
    effective_year: u16,
}

/// The audit event.
#[derive(Serialize)]
struct Mirrored<'a> {
    source: &'a str,
    year: u16,
    destinations: [&'a str; 2],
}

/// Delivers a tax rate to two states and records that it did.
pub struct FanOut;

impl Handler for FanOut {
    fn handle(event: Event) -> Result<Vec<Action>> {
        let HmsRate { rate, year } = event.json()?;
        let key = format!("tax-rate/{year}");
        let body = StateRate {
            new_rates: &rate,
            effective_year: year,
        };
        let destinations = ["state-a", "state-b"];
        let mut actions = Vec::with_capacity(3);
        for destination in destinations {
            actions.push(
                Delivery::json(destination, &body)?
                    .with_key(key.clone())
                    .into(),
            );
        }
        let audit = Mirrored {
            source: &event.id,
            year,
            destinations,
        };
        actions.push(
            Emission::json("tax.rate.mirrored", &audit)?
                .with_key(key)
                .into(),
        );
        Ok(actions)
    }
}

hms_sync_sdk::export_handler!(FanOut);

#[cfg(test)]
mod tests {
    use super::FanOut;
    use hms_sync_sdk::Action;
    use hms_sync_sdk::testing::{TestHost, json_event};
    use serde_json::json;

    #[test]
    fn returns_two_deliveries_and_an_emission() {
        let event = json_event("tax.rate.updated", &json!({"rate": 0.0725, "year": 2025}));
        let actions = TestHost::new().handle::<FanOut>(event).result.unwrap();
        let [Action::Deliver(a), Action::Deliver(b), Action::Emit(audit)] = &actions[..] else {
            panic!("unexpected actions: {actions:?}");
        };
        assert_eq!(
            (a.destination.as_str(), b.destination.as_str()),
            ("state-a", "state-b")
        );
        assert_eq!(a.body, br#"{"newRates":0.0725,"effectiveYear":2025}"#);
        assert_eq!(a.body, b.body);
        assert_eq!(audit.event_type, "tax.rate.mirrored");
        assert_eq!(audit.key.as_deref(), Some("tax-rate/2025"));
    }
}
