//! What flows through a plugin: the accepted [`Event`] it receives and the [`Action`]s it turns
//! the event into, in the engine's own types (the WIT's, generated in `bindings`, stay inside
//! this crate).

/// One header: a name and a value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// The header name.
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

/// The origin of events that come from the HMS bus.
pub const HMS_ORIGIN: &str = "hms";

/// One accepted change event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// The id the engine gave the event on acceptance.
    pub id: String,
    /// The event type, such as `tax.rate.updated`.
    pub event_type: String,
    /// The system the event came from: [`HMS_ORIGIN`] or an external system's name.
    pub origin: String,
    /// The key of the entity the event is about, when known.
    pub key: Option<String>,
    /// The entity's version after the change, when known.
    pub version: Option<u64>,
    /// When the change happened, in Unix milliseconds.
    pub timestamp: i64,
    /// The payload's media type.
    pub content_type: String,
    /// The payload, byte for byte as received.
    #[serde(serialize_with = "bytes_as_text")]
    pub payload: Vec<u8>,
    /// The inbound headers plugins may see, with lower-case names.
    pub headers: Vec<Header>,
    /// How many systems the update crossed before it reached the engine as this event (the
    /// `hms-hops` header; 0 when it starts here). Not shown to plugins.
    pub hops: u32,
    /// The systems the update passed through, oldest first, ending with the one that handed it
    /// to the engine (`hms` for the bus): the `hms-path` header it came with, plus that last
    /// system. An update is never delivered to a system on its path. Not shown to plugins.
    pub path: Vec<String>,
}

/// One thing the engine should do because of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver a body to a named destination.
    Deliver(Delivery),
    /// Publish an event on the HMS bus.
    Emit(Emission),
    /// Ignore the event on purpose, for the given reason.
    Drop(String),
}

/// A request to a named destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The destination's configured name.
    pub destination: String,
    /// The request body.
    pub body: Vec<u8>,
    /// The body's media type, when the plugin set one.
    pub content_type: Option<String>,
    /// Extra request headers.
    pub headers: Vec<Header>,
    /// The entity key, when the plugin set one.
    pub key: Option<String>,
    /// The entity version, when the plugin set one.
    pub version: Option<u64>,
    /// When this version was made (Unix milliseconds), when the plugin set it.
    pub timestamp: Option<i64>,
}

/// A new event for the HMS bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emission {
    /// The new event's type.
    pub event_type: String,
    /// The new event's payload.
    pub payload: Vec<u8>,
    /// The payload's media type, when the plugin set one.
    pub content_type: Option<String>,
    /// The entity key, when the plugin set one.
    pub key: Option<String>,
    /// The entity version, when the plugin set one.
    pub version: Option<u64>,
    /// When the change happened (Unix milliseconds), when the plugin set it.
    pub timestamp: Option<i64>,
}

/// Serialises bytes as text (invalid UTF-8 replaced), for JSON views of payloads and bodies.
pub fn bytes_as_text<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(bytes))
}

pub use hms_sync_rules::check_event_type;
