//! The seed's outbound transformer: an HMS `tax.rate.updated` payload `{"rate", "year"}` becomes
//! the state tax API's body `{"newRates", "effectiveYear"}`.
//!
//! The route in the engine's configuration says which destination receives the result.

use hms_sync_sdk::{Event, Result, Transformer};
use serde::{Deserialize, Serialize};
use serde_json::Number;

/// The HMS payload.
#[derive(Deserialize)]
struct HmsRate {
    rate: Number,
    year: u16,
}

/// The state API's body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateRate {
    new_rates: Number,
    effective_year: u16,
}

/// Maps HMS tax rates to the state API's format.
pub struct Outbound;

impl Transformer for Outbound {
    fn transform(event: Event) -> Result<Vec<u8>> {
        let HmsRate { rate, year } = event.json()?;
        hms_sync_sdk::to_json(&StateRate {
            new_rates: rate,
            effective_year: year,
        })
    }
}

hms_sync_sdk::export_transformer!(Outbound);

#[cfg(test)]
mod tests {
    use super::Outbound;
    use hms_sync_sdk::ErrorKind;
    use hms_sync_sdk::testing::{TestHost, event, json_event};
    use serde_json::{Value, json};

    fn transform(payload: &Value) -> hms_sync_sdk::Result<Value> {
        let body = TestHost::new()
            .transform::<Outbound>(json_event("tax.rate.updated", payload))
            .result?;
        Ok(serde_json::from_slice(&body).expect("the output is JSON"))
    }

    #[test]
    fn maps_the_seed_payload() {
        let out = transform(&json!({"rate": 0.0725, "year": 2025})).unwrap();
        assert_eq!(out, json!({"newRates": 0.0725, "effectiveYear": 2025}));
    }

    #[test]
    fn keeps_the_rate_exactly_as_sent() {
        let body = TestHost::new()
            .transform::<Outbound>(event(
                "tax.rate.updated",
                r#"{"rate": 5, "year": 2024, "note": "ignored"}"#,
            ))
            .result
            .unwrap();
        assert_eq!(body, br#"{"newRates":5,"effectiveYear":2024}"#);
    }

    #[test]
    fn a_missing_field_is_invalid_input_naming_it() {
        let err = transform(&json!({"year": 2025})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("missing field `rate`"), "{err}");
    }

    #[test]
    fn a_mistyped_field_is_invalid_input_naming_it() {
        let err = transform(&json!({"rate": 0.07, "year": "2025"})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("`year`"), "{err}");
        let err = transform(&json!({"rate": "seven", "year": 2025})).unwrap_err();
        assert!(err.message().contains("`rate`"), "{err}");
    }

    #[test]
    fn bad_json_is_invalid_input() {
        let err = TestHost::new()
            .transform::<Outbound>(event("tax.rate.updated", "{not json"))
            .result
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
