//! The route's plugin configuration: the string keys and values under the plugin's `config`
//! in the engine's YAML file. Read-only; the same for every event on that route.

use crate::{Error, Result};

/// The value of `key`, or `None` when the route does not set it.
pub fn get(key: &str) -> Option<String> {
    crate::host::config_get(key)
}

/// The value of `key`, or an [`ErrorKind::Internal`](crate::ErrorKind::Internal) error naming
/// the missing key, for settings the plugin cannot work without.
pub fn require(key: &str) -> Result<String> {
    get(key).ok_or_else(|| {
        Error::internal(format!(
            "the route's plugin config does not set the required key `{key}`"
        ))
    })
}

/// Every key and value the route sets, sorted by key.
pub fn entries() -> Vec<(String, String)> {
    crate::host::config_entries()
}
