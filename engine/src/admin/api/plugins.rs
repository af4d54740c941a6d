//! The plugin endpoints' answers and requests: the plugins, a plugin's versions and
//! activations, a version made active, an activation's request, a deleted version.

use crate::store;
use serde::{Deserialize, Serialize};

/// `GET /admin/plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    /// Every configured plugin.
    pub plugins: Vec<PluginSummary>,
}

/// A configured plugin and its active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSummary {
    /// Its name.
    pub name: String,
    /// The active version's hash.
    pub active: Option<String>,
    /// The world it implements.
    pub world: Option<String>,
    /// The active component's size in bytes.
    pub size: Option<usize>,
}

/// `GET /admin/plugins/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginDetail {
    /// Its name.
    pub name: String,
    /// The active version's hash.
    pub active: String,
    /// The world it implements.
    pub world: String,
    /// Every version, oldest first.
    pub versions: Vec<PluginVersion>,
    /// Every activation, oldest first.
    pub activations: Vec<Activation>,
}

/// A version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginVersion {
    /// The SHA-256 of the component, hex.
    pub hash: String,
    /// The world it implements.
    pub world: String,
    /// The component's size in bytes.
    pub size: u64,
    /// Whether it came with fixtures.
    pub fixtures: bool,
    /// When it was uploaded.
    pub uploaded_at: i64,
    /// Who gave it: `config`, `watch`, or the admin token's id.
    pub uploaded_by: String,
    /// Whether it is the active version.
    pub active: bool,
}

impl From<store::PluginVersionInfo> for PluginVersion {
    fn from(v: store::PluginVersionInfo) -> Self {
        PluginVersion {
            hash: v.hash,
            world: v.world,
            size: v.size,
            fixtures: v.fixtures,
            uploaded_at: v.uploaded_at,
            uploaded_by: v.uploaded_by,
            active: v.active,
        }
    }
}

/// One activation of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    /// The version activated.
    pub hash: String,
    /// When.
    pub activated_at: i64,
    /// By whom: `config`, `watch`, or the admin token's id.
    pub activated_by: String,
    /// Why: `config`, `upload`, `watch`, `activate` or `rollback`.
    pub reason: String,
}

impl From<store::Activation> for Activation {
    fn from(a: store::Activation) -> Self {
        Activation {
            hash: a.hash,
            activated_at: a.record.at,
            activated_by: a.record.by,
            reason: a.record.reason,
        }
    }
}

/// `PUT /admin/plugins/{name}`, `POST .../activate` and `POST .../rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Swapped {
    /// The version made active.
    pub plugin: Swap,
}

/// A version made active.
pub use crate::registry::Swap;

/// The body of `POST /admin/plugins/{name}/activate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The version to make active.
    pub hash: String,
}

/// `DELETE /admin/plugins/{name}/versions/{hash}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// The version deleted.
    pub deleted: VersionRef,
}

/// One version of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRef {
    /// The plugin.
    pub name: String,
    /// The version's hash.
    pub hash: String,
}
