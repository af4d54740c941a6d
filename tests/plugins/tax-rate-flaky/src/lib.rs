//! A broken new version of the seed's outbound transformer: it maps as the seed's version does,
//! but fails every event whose year ends in 7 (one in ten) with an internal error (what a
//! canary of it should be rolled back for), and never ends on an event marked `"stuck": true`
//! (the seed's version maps it): the sandbox's deadline stops it, as it would a dry run's.

use hms_sync_sdk::{Error, Event, Result, Transformer};
use serde::{Deserialize, Serialize};
use serde_json::Number;

#[derive(Deserialize)]
struct HmsRate {
    rate: Number,
    year: u16,
    #[serde(default)]
    stuck: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateRate {
    new_rates: Number,
    effective_year: u16,
}

/// Maps HMS tax rates to the state API's format, failing one year in ten.
pub struct Flaky;

impl Transformer for Flaky {
    fn transform(event: Event) -> Result<Vec<u8>> {
        let HmsRate { rate, year, stuck } = event.json()?;
        if stuck {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if year % 10 == 7 {
            return Err(Error::internal(format!("cannot map the year {year}")));
        }
        hms_sync_sdk::to_json(&StateRate {
            new_rates: rate,
            effective_year: year,
        })
    }
}

hms_sync_sdk::export_transformer!(Flaky);
