//! What a handler asks the engine to do.

use crate::{Header, Result, to_json};

/// One thing the engine should do because of an event (the WIT `action`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver a body to a destination named in the engine's configuration.
    Deliver(Delivery),
    /// Publish an event on the HMS bus.
    Emit(Emission),
    /// Ignore the event on purpose; the reason is recorded.
    Drop(String),
}

impl Action {
    /// Ignore the event on purpose, for the given reason.
    pub fn drop(reason: impl Into<String>) -> Self {
        Action::Drop(reason.into())
    }
}

impl From<Delivery> for Action {
    fn from(delivery: Delivery) -> Self {
        Action::Deliver(delivery)
    }
}

impl From<Emission> for Action {
    fn from(emission: Emission) -> Self {
        Action::Emit(emission)
    }
}

/// A request to a named destination (the WIT `delivery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The destination's name in the engine's configuration.
    pub destination: String,
    /// The request body.
    pub body: Vec<u8>,
    /// The body's media type; the destination's default when `None`.
    pub content_type: Option<String>,
    /// Extra request headers.
    pub headers: Vec<Header>,
    /// The entity key for ordering and conflict checks; the event's when `None`.
    pub key: Option<String>,
    /// The entity version; the event's when `None`.
    pub version: Option<u64>,
    /// When this version was made, in Unix milliseconds; the event's when `None`.
    pub timestamp: Option<i64>,
}

impl Delivery {
    /// A delivery of `body` to the destination called `destination`.
    pub fn new(destination: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Delivery {
            destination: destination.into(),
            body: body.into(),
            content_type: None,
            headers: Vec::new(),
            key: None,
            version: None,
            timestamp: None,
        }
    }

    /// A delivery of `value` as a JSON body (`application/json`).
    pub fn json<T: serde::Serialize + ?Sized>(
        destination: impl Into<String>,
        value: &T,
    ) -> Result<Self> {
        Ok(Self::new(destination, to_json(value)?).with_content_type("application/json"))
    }
    /// Adds a request header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }
}

/// A new event for the HMS bus (the WIT `emission`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emission {
    /// The new event's type, such as `tax.rate.updated`.
    pub event_type: String,
    /// The new event's payload.
    pub payload: Vec<u8>,
    /// The payload's media type; `application/json` when `None`.
    pub content_type: Option<String>,
    /// The entity key; the handled event's when `None`.
    pub key: Option<String>,
    /// The entity version; the handled event's when `None`.
    pub version: Option<u64>,
    /// When the change happened, in Unix milliseconds; the handled event's when `None`.
    pub timestamp: Option<i64>,
}

impl Emission {
    /// An event of type `event_type` carrying `payload`.
    pub fn new(event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Emission {
            event_type: event_type.into(),
            payload: payload.into(),
            content_type: None,
            key: None,
            version: None,
            timestamp: None,
        }
    }

    /// An event of type `event_type` whose payload is `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self> {
        Ok(Self::new(event_type, to_json(value)?).with_content_type("application/json"))
    }
}

/// The setters [`Delivery`] and [`Emission`] share: media type, entity key, version, timestamp.
macro_rules! entity_setters {
    ($($ty:ty),+) => {$(
        impl $ty {
            /// Sets the media type of the body or payload.
            pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
                self.content_type = Some(content_type.into());
                self
            }

            /// Sets the entity key, for ordering and conflict checks.
            pub fn with_key(mut self, key: impl Into<String>) -> Self {
                self.key = Some(key.into());
                self
            }

            /// Sets the entity version. Larger is newer.
            pub fn with_version(mut self, version: u64) -> Self {
                self.version = Some(version);
                self
            }

            /// Sets when this version of the entity was made, in Unix milliseconds.
            pub fn with_timestamp(mut self, timestamp: i64) -> Self {
                self.timestamp = Some(timestamp);
                self
            }
        }
    )+};
}

entity_setters!(Delivery, Emission);
