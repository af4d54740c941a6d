//! Conflict resolution: a [`Resolver`] decides between the version of an entity a destination
//! holds and an incoming one.

use crate::Result;
use serde::de::DeserializeOwned;

/// One version of an entity (the WIT `entity`): the one last delivered, or the incoming one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The entity key.
    pub key: String,
    /// The entity's version, when known.
    pub version: Option<u64>,
    /// When this version was made, in Unix milliseconds.
    pub timestamp: i64,
    /// The id of the event that carried this version.
    pub event_id: String,
    /// The media type of the payload.
    pub content_type: String,
    /// The body as delivered (current) or as it would be delivered (incoming).
    pub payload: Vec<u8>,
}

impl Entity {
    /// Reads the payload as JSON into `T`; a payload that does not fit is an
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error naming the field.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        crate::event::parse_json(&self.payload)
    }
}

/// What to do with the incoming version (the WIT `resolution`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Keep the current version: the incoming one is not delivered.
    Keep,
    /// Deliver the incoming version as it is.
    Replace,
    /// Deliver this payload instead: the two versions merged.
    Merged(Vec<u8>),
}

impl Resolution {
    /// Deliver `value` as JSON instead of the incoming payload.
    pub fn merged_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        crate::to_json(value).map(Resolution::Merged)
    }
}

/// A plugin that resolves conflicts (the `hms:sync/resolver` world), for routes whose conflict
/// strategy is `plugin`.
///
/// Export it with [`export_resolver!`](crate::export_resolver).
pub trait Resolver {
    /// Decides between the current and the incoming version of one entity.
    fn resolve(current: Entity, incoming: Entity) -> Result<Resolution>;
}
