//! A store that is a replica of a log: which log it follows, and how far it has applied it.

use crate::store::StoreError;
use rusqlite::{Connection, OptionalExtension};

/// Binds an empty replica to the log `log`, or checks that it follows it; answers the position
/// of the last entry applied (0 for none). A store that holds events but follows no log (an
/// embedded store) or follows another log is refused: applying this log to it would mix two
/// histories.
pub(super) fn bind(c: &Connection, log: &str) -> Result<u64, StoreError> {
    match followed(c)? {
        Some((followed, position)) if followed == log => Ok(position),
        Some((followed, _)) => Err(StoreError::Conflict(format!(
            "this data directory is a replica of the log `{followed}`, not of `{log}`: give each log its own directory"
        ))),
        None => {
            let events: i64 = c.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
            if events > 0 {
                return Err(StoreError::Conflict(format!(
                    "this data directory holds an embedded store ({events} events): the NATS backend needs a directory of its own"
                )));
            }
            c.execute(
                "INSERT INTO replica (id, log, position) VALUES (1, ?1, 0)",
                [log],
            )?;
            Ok(0)
        }
    }
}

/// The log the store follows and the position of the last entry applied, if it follows one.
fn followed(c: &Connection) -> Result<Option<(String, u64)>, StoreError> {
    let bound: Option<(String, i64)> = c
        .query_row(
            "SELECT log, position FROM replica WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    bound
        .map(|(log, position)| {
            u64::try_from(position)
                .map(|position| (log, position))
                .map_err(|_| StoreError::Corrupt(format!("the replica's position {position}")))
        })
        .transpose()
}

/// The position of the last log entry the store applied (0 when it follows no log).
pub(super) fn position(c: &Connection) -> Result<u64, StoreError> {
    Ok(followed(c)?.map_or(0, |(_, position)| position))
}

/// Records that the log entry at `position` is applied.
pub(super) fn advance(c: &Connection, position: u64) -> Result<(), StoreError> {
    let position = i64::try_from(position)
        .map_err(|_| StoreError::Corrupt(format!("a log position past i64: {position}")))?;
    c.prepare_cached("UPDATE replica SET position = ?1 WHERE id = 1")?
        .execute([position])?;
    Ok(())
}

/// Which log the database in `path` follows and how far it applied it: `None` when there is no
/// database, or it is empty and follows no log (a fresh replica may start from a snapshot).
/// A database that holds events of its own is reported as following no log (`""`), for
/// [`bind`] to refuse.
pub(super) fn read_binding(path: &std::path::Path) -> Result<Option<(String, u64)>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    let bound = if has_table(&c, "replica")? {
        followed(&c)?
    } else {
        None
    };
    match bound {
        Some(bound) => Ok(Some(bound)),
        None => {
            let events: i64 = if has_table(&c, "events")? {
                c.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?
            } else {
                0
            };
            Ok((events > 0).then(|| (String::new(), 0)))
        }
    }
}

/// Whether the database has the table `name` (one from before its schema version may not).
fn has_table(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get(0),
    )?)
}
