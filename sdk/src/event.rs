//! The event a plugin receives.

use crate::{Error, Result};
use serde::de::DeserializeOwned;

/// One header: a name and a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name (lower-case on inbound events).
    pub name: String,
    /// The header value.
    pub value: String,
}

impl Header {
    /// A header with this name and value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Reads a JSON payload into `T`; an error names the field that does not fit.
pub(crate) fn parse_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::invalid_input(format!("invalid payload: {}", e.inner()))
        } else {
            Error::invalid_input(format!("invalid payload at `{path}`: {}", e.inner()))
        }
    })?;
    de.end()
        .map_err(|e| Error::invalid_input(format!("invalid payload: {e}")))?;
    Ok(value)
}

/// One change event, as the engine accepted it (the WIT `event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The id the engine gave the event when it accepted it; stable across retries.
    pub id: String,
    /// The event type, such as `tax.rate.updated`.
    pub event_type: String,
    /// The system the event came from: `hms`, or the external system's name.
    pub origin: String,
    /// The key of the entity the event is about, when known.
    pub key: Option<String>,
    /// The version of that entity after the change, when known.
    pub version: Option<u64>,
    /// When the change happened, in milliseconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// The media type of the payload, such as `application/json`.
    pub content_type: String,
    /// The payload, byte for byte as received.
    pub payload: Vec<u8>,
    /// The inbound headers the route lets plugins see, with lower-case names.
    pub headers: Vec<Header>,
}

impl Event {
    /// Reads the payload as JSON into `T`.
    ///
    /// A payload that is not JSON, or lacks a field, or has a field of the wrong type, is an
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error whose message names
    /// the field, such as ``invalid payload at `year`: invalid type: string "2025", expected
    /// u16 at line 1 column 30``.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        parse_json(&self.payload)
    }

    /// The value of the first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}
