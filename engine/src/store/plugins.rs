//! Plugin versions and activations, as stored.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// A version of a plugin, with its component.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A version of a plugin, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Activation {
    /// The version activated.
    pub hash: String,
    /// When (Unix ms).
    pub activated_at: i64,
    /// By whom: `config`, `watch`, or the admin token's id.
    pub activated_by: String,
    /// Why: `config`, `upload`, `watch`, `activate` or `rollback`.
    pub reason: String,
}

/// Who made a version active, when, and why.
#[derive(Debug, Clone)]
pub struct ActivationRecord {
    /// When (Unix ms).
    pub at: i64,
    /// By whom.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A write about plugins.
#[derive(Debug, Clone)]
pub enum PluginWrite {
    /// Keeps a version (one already kept keeps its metadata; it gains fixtures if it had none),
    /// and, in the same transaction, makes it active when `activate` says so.
    Add {
        /// The version.
        version: PluginVersion,
        /// The activation, if it is to be made active.
        activate: Option<ActivationRecord>,
    },
    /// Makes a version the store holds the active one; an error when it holds no such version.
    Activate {
        /// The plugin.
        name: String,
        /// The version.
        hash: String,
        /// Who, when, why.
        record: ActivationRecord,
    },
    /// Deletes a version that is not active.
    Delete {
        /// The plugin.
        name: String,
        /// The version.
        hash: String,
    },
}

pub(super) fn write(conn: &Connection, w: &PluginWrite) -> Result<(), StoreError> {
    match w {
        PluginWrite::Add {
            version: v,
            activate,
        } => {
            conn.prepare_cached(
                "INSERT INTO plugin_versions (name, hash, world, size, component, fixtures,
                     uploaded_at, uploaded_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (name, hash) DO UPDATE SET
                     fixtures = COALESCE(plugin_versions.fixtures, excluded.fixtures)",
            )?
            .execute(params![
                v.name,
                v.hash,
                v.world,
                i64::try_from(v.component.len()).unwrap_or(i64::MAX),
                v.component,
                v.fixtures,
                v.uploaded_at,
                v.uploaded_by,
            ])?;
            if let Some(a) = activate {
                activate_version(conn, &v.name, &v.hash, a)?;
            }
        }
        PluginWrite::Activate { name, hash, record } => activate_version(conn, name, hash, record)?,
        PluginWrite::Delete { name, hash } => {
            if active(conn, name)?.as_deref() == Some(hash.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "{hash} is the active version of `{name}`; activate another one first"
                )));
            }
            let deleted = conn
                .prepare_cached("DELETE FROM plugin_versions WHERE name = ?1 AND hash = ?2")?
                .execute(params![name, hash])?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!(
                    "`{name}` has no version {hash}"
                )));
            }
        }
    }
    Ok(())
}

/// Records an activation of a version the store holds.
fn activate_version(
    conn: &Connection,
    name: &str,
    hash: &str,
    a: &ActivationRecord,
) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO plugin_activations (name, hash, activated_at, activated_by, reason)
             SELECT ?1, ?2, ?3, ?4, ?5
             WHERE EXISTS (SELECT 1 FROM plugin_versions WHERE name = ?1 AND hash = ?2)",
        )?
        .execute(params![name, hash, a.at, a.by, a.reason])?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "`{name}` has no version {hash} to activate"
        )));
    }
    Ok(())
}

/// The active version of a plugin.
pub(super) fn active(conn: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT hash FROM plugin_activations WHERE name = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([name], |row| row.get(0))
        .optional()?)
}

pub(super) fn version(
    conn: &Connection,
    name: &str,
    hash: &str,
) -> Result<Option<PluginVersion>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT name, hash, world, component, fixtures, uploaded_at, uploaded_by
             FROM plugin_versions WHERE name = ?1 AND hash = ?2",
        )?
        .query_row(params![name, hash], |row| {
            Ok(PluginVersion {
                name: row.get(0)?,
                hash: row.get(1)?,
                world: row.get(2)?,
                component: row.get(3)?,
                fixtures: row.get(4)?,
                uploaded_at: row.get(5)?,
                uploaded_by: row.get(6)?,
            })
        })
        .optional()?)
}

pub(super) fn versions(
    conn: &Connection,
    name: &str,
) -> Result<Vec<PluginVersionInfo>, StoreError> {
    let active = active(conn, name)?;
    let rows = conn
        .prepare_cached(
            "SELECT hash, world, size, fixtures IS NOT NULL, uploaded_at, uploaded_by
             FROM plugin_versions WHERE name = ?1 ORDER BY uploaded_at, hash",
        )?
        .query_map([name], |row| {
            Ok(PluginVersionInfo {
                hash: row.get(0)?,
                world: row.get(1)?,
                size: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                fixtures: row.get(3)?,
                uploaded_at: row.get(4)?,
                uploaded_by: row.get(5)?,
                active: false,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|mut v| {
            v.active = active.as_deref() == Some(v.hash.as_str());
            v
        })
        .collect())
}

pub(super) fn activations(conn: &Connection, name: &str) -> Result<Vec<Activation>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT hash, activated_at, activated_by, reason FROM plugin_activations
             WHERE name = ?1 ORDER BY id",
        )?
        .query_map([name], |row| {
            Ok(Activation {
                hash: row.get(0)?,
                activated_at: row.get(1)?,
                activated_by: row.get(2)?,
                reason: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}
