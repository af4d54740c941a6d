//! A new version of the seed's outbound transformer with one change: the state API's `newRates`
//! is the rate rounded to two decimals (`0.0725` becomes `0.07`); `effectiveYear` is as before.
//! Rates with two decimals or fewer map exactly as the seed's version maps them, so a dry run
//! or a shadow against that version differs on exactly the events whose rate has more.

use hms_sync_sdk::{Event, Result, Transformer};
use serde::{Deserialize, Serialize};
use serde_json::Number;

#[derive(Deserialize)]
struct HmsRate {
    rate: Number,
    year: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateRate {
    new_rates: Number,
    effective_year: u16,
}

/// Maps HMS tax rates to the state API's format, rounding rates to two decimals.
pub struct Rounded;

impl Transformer for Rounded {
    fn transform(event: Event) -> Result<Vec<u8>> {
        let HmsRate { rate, year } = event.json()?;
        // Two decimals or fewer: the number as it came (an integer stays an integer).
        let digits = rate.to_string().split_once('.').map_or(0, |(_, d)| d.len());
        let new_rates = if digits <= 2 {
            rate
        } else {
            let rounded = (rate.as_f64().unwrap_or_default() * 100.0).round() / 100.0;
            Number::from_f64(rounded).unwrap_or(rate)
        };
        hms_sync_sdk::to_json(&StateRate {
            new_rates,
            effective_year: year,
        })
    }
}

hms_sync_sdk::export_transformer!(Rounded);
