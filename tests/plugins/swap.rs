// The body of the two versions of a swappable transformer, `swap-one` and `swap-two`: each
// crate defines `VERSION` and includes this file. The output says which version made it:
// `{"version": VERSION, "rate": .., "year": ..}`. A payload with `"panic": true` makes it panic.

use hms_sync_sdk::{Event, Result, Transformer};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    rate: serde_json::Number,
    year: u16,
    #[serde(default)]
    panic: bool,
}

#[derive(Serialize)]
struct Output {
    version: &'static str,
    rate: serde_json::Number,
    year: u16,
}

/// Maps a rate, saying which version did.
pub struct Swap;

impl Transformer for Swap {
    fn transform(event: Event) -> Result<Vec<u8>> {
        let Input { rate, year, panic } = event.json()?;
        assert!(!panic, "asked to panic");
        hms_sync_sdk::to_json(&Output {
            version: VERSION,
            rate,
            year,
        })
    }
}

hms_sync_sdk::export_transformer!(Swap);
