//! The seed's inbound handler: a state agency's webhook `{"currentRate", "taxYear"}` becomes an
//! HMS `tax.rate.updated` event `{"rate", "year"}`, keyed by the tax year.
//!
//! The route may set `event-type` in its plugin config to emit another event type.

use hms_sync_sdk::{Action, Emission, Event, Handler, Result};
use serde::{Deserialize, Serialize};
use serde_json::Number;

/// The state agency's webhook body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateRate {
    current_rate: Number,
    tax_year: u16,
}

/// The HMS payload.
#[derive(Serialize)]
struct HmsRate {
    rate: Number,
    year: u16,
}

/// Maps the state agency's webhook to an HMS event.
pub struct Inbound;

impl Handler for Inbound {
    fn handle(event: Event) -> Result<Vec<Action>> {
        let StateRate {
            current_rate,
            tax_year,
        } = event.json()?;
        let event_type = hms_sync_sdk::config::get("event-type")
            .unwrap_or_else(|| "tax.rate.updated".to_owned());
        hms_sync_sdk::debug!("tax year {tax_year} from {}", event.origin);
        let emission = Emission::json(
            event_type,
            &HmsRate {
                rate: current_rate,
                year: tax_year,
            },
        )?
        .with_key(format!("tax-rate/{tax_year}"));
        Ok(vec![emission.into()])
    }
}

hms_sync_sdk::export_handler!(Inbound);

#[cfg(test)]
mod tests {
    use super::Inbound;
    use hms_sync_sdk::testing::{TestHost, json_event};
    use hms_sync_sdk::{Action, Emission, ErrorKind};
    use serde_json::json;

    #[test]
    fn emits_the_seed_mapping_on_the_hms_bus() {
        let webhook = json_event(
            "tax-rate.changed",
            &json!({"currentRate": 0.0725, "taxYear": 2025}),
        );
        let outcome = TestHost::new().handle::<Inbound>(webhook);
        let expected = Emission::new(
            "tax.rate.updated",
            br#"{"rate":0.0725,"year":2025}"#.to_vec(),
        )
        .with_content_type("application/json")
        .with_key("tax-rate/2025");
        assert_eq!(outcome.result, Ok(vec![Action::Emit(expected)]));
        assert_eq!(outcome.logs.len(), 1);
        assert_eq!(outcome.logs[0].message, "tax year 2025 from hms");
    }

    #[test]
    fn the_route_can_rename_the_emitted_event() {
        let webhook = json_event("x", &json!({"currentRate": 1, "taxYear": 2026}));
        let outcome = TestHost::new()
            .with_config("event-type", "tax.rate.corrected")
            .handle::<Inbound>(webhook);
        let Ok(actions) = outcome.result else {
            panic!("{:?}", outcome.result)
        };
        let [Action::Emit(emission)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(emission.event_type, "tax.rate.corrected");
        assert_eq!(emission.payload, br#"{"rate":1,"year":2026}"#);
    }

    #[test]
    fn missing_and_mistyped_fields_are_invalid_input_naming_them() {
        let missing = json_event("x", &json!({"currentRate": 0.07}));
        let err = TestHost::new()
            .handle::<Inbound>(missing)
            .result
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("missing field `taxYear`"), "{err}");

        let mistyped = json_event("x", &json!({"currentRate": [], "taxYear": 2025}));
        let err = TestHost::new()
            .handle::<Inbound>(mistyped)
            .result
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("`currentRate`"), "{err}");
    }
}
