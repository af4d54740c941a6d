//! Plugin versions and activations: the active version of a plugin is its last activation.

use crate::store::{
    Activation, ActivationRecord, PluginVersion, PluginVersionInfo, PluginWrite, StoreError,
};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) fn write(conn: &Connection, w: &PluginWrite) -> Result<(), StoreError> {
    match w {
        PluginWrite::Add {
            version: v,
            activate,
            replaces,
        } => {
            if activate.is_some() {
                let now = active(conn, &v.name)?;
                if now != *replaces {
                    return Err(StoreError::Conflict(format!(
                        "the active version of `{}` changed while this one was checked (it is {} now): check it again",
                        v.name,
                        now.as_deref().unwrap_or("none")
                    )));
                }
            }
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
        .query_row([name], |row| row.get("hash"))
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
                name: row.get("name")?,
                hash: row.get("hash")?,
                world: row.get("world")?,
                component: row.get("component")?,
                fixtures: row.get("fixtures")?,
                uploaded_at: row.get("uploaded_at")?,
                uploaded_by: row.get("uploaded_by")?,
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
            "SELECT hash, world, size, fixtures IS NOT NULL AS has_fixtures, uploaded_at, uploaded_by
             FROM plugin_versions WHERE name = ?1 ORDER BY uploaded_at, hash",
        )?
        .query_map([name], |row| {
            Ok(PluginVersionInfo {
                hash: row.get("hash")?,
                world: row.get("world")?,
                size: u64::try_from(row.get::<_, i64>("size")?).unwrap_or(0),
                fixtures: row.get("has_fixtures")?,
                uploaded_at: row.get("uploaded_at")?,
                uploaded_by: row.get("uploaded_by")?,
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
                hash: row.get("hash")?,
                record: ActivationRecord {
                    at: row.get("activated_at")?,
                    by: row.get("activated_by")?,
                    reason: row.get("reason")?,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}
