//! Plugin versions and their activations.

/// A version of a plugin, with its component.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginVersion {
    /// The plugin's name.
    pub name: String,
    /// The SHA-256 of the component, hex.
    pub hash: String,
    /// The world it implements.
    pub world: String,
    /// The component.
    pub component: Vec<u8>,
    /// Its fixtures (JSON), when it came with any.
    pub fixtures: Option<String>,
    /// When it was uploaded (Unix ms).
    pub uploaded_at: i64,
    /// Who gave it: `config`, `watch`, or the admin token's id.
    pub uploaded_by: String,
}

/// A version of a plugin, as listed (without its component).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersionInfo {
    /// The SHA-256 of the component, hex.
    pub hash: String,
    /// The world it implements.
    pub world: String,
    /// The component's size in bytes.
    pub size: u64,
    /// Whether it came with fixtures.
    pub fixtures: bool,
    /// When it was uploaded (Unix ms).
    pub uploaded_at: i64,
    /// Who gave it.
    pub uploaded_by: String,
    /// Whether it is the active version.
    pub active: bool,
}

/// One activation of a plugin version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The version activated.
    pub hash: String,
    /// Who, when and why.
    pub record: ActivationRecord,
}

/// Who made a version active, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActivationRecord {
    /// When (Unix ms).
    pub at: i64,
    /// By whom: `config`, `watch`, or the admin token's id.
    pub by: String,
    /// Why: `config`, `upload`, `watch`, `activate` or `rollback`.
    pub reason: String,
}

/// A write about plugins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum PluginWrite {
    /// Keeps a version (one already kept keeps its metadata; it gains fixtures if it had none),
    /// and, in the same transaction, makes it active when `activate` says so.
    Add {
        /// The version.
        version: PluginVersion,
        /// The activation, if it is to be made active.
        activate: Option<ActivationRecord>,
        /// The version the activation replaces: the one active when the new version's check
        /// began (`None`: none was). When another is active by the time the write is applied
        /// (another engine swapped the plugin meanwhile), the whole write is refused
        /// ([`StoreError::Conflict`](crate::store::StoreError)): of two concurrent swaps, one wins.
        replaces: Option<String>,
    },
    /// Deletes a version that is not active.
    Delete {
        /// The plugin.
        name: String,
        /// The version.
        hash: String,
    },
}
