//! Opening the database, and bringing an older one up to the current schema.

use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// The schema version this engine writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

/// Opens the database for writing (WAL, `synchronous = FULL`) or reading.
pub(super) fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !read_only {
        // WAL lets readers run beside the writer; FULL makes every commit durable.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "{} cannot use WAL mode (got `{mode}`)",
                path.display()
            )));
        }
        // Statement journals (and temporary tables) in memory, not in a file per statement.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )?;
    }
    Ok(conn)
}

/// Creates the schema in a new database, or upgrades an older one, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let steps: &[&str] = match version {
        0 => &[include_str!("schema.sql")],
        1 => &[TO_2],
        SCHEMA_VERSION => return Ok(()),
        newer => {
            return Err(StoreError::Io(format!(
                "the database has schema version {newer}; this engine knows version {SCHEMA_VERSION}"
            )));
        }
    };
    let tx = conn.transaction()?;
    for step in steps {
        tx.execute_batch(step)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

/// Version 1 to 2: why a row was not sent gets its own column. Version 1 kept a drop action's
/// reason in `target`, and the reason of an echo, a hop limit or a supersede in `last_error`.
const TO_2: &str = "
    ALTER TABLE outbox ADD COLUMN reason TEXT;
    UPDATE outbox SET reason = target, target = '' WHERE kind = 'drop';
    UPDATE outbox SET reason = last_error, last_error = NULL
        WHERE kind != 'drop' AND state IN ('dropped', 'superseded');
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_database_is_upgraded_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let mut conn = open_connection(&path, false).unwrap();
        // The version 1 outbox, as far as the upgrade touches it.
        conn.execute_batch(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL,
                 state TEXT NOT NULL, last_error TEXT);
             INSERT INTO outbox VALUES (1, 'drop', 'not for us', 'dropped', NULL);
             INSERT INTO outbox VALUES (2, 'deliver', 'state-api', 'dropped', 'echo: ...');
             INSERT INTO outbox VALUES (3, 'deliver', 'state-api', 'dead', 'HTTP 500');
             PRAGMA user_version = 1;",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, Option<String>, Option<String>)> = conn
            .prepare("SELECT target, reason, last_error FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (String::new(), Some("not for us".into()), None),
                ("state-api".into(), Some("echo: ...".into()), None),
                ("state-api".into(), None, Some("HTTP 500".into())),
            ]
        );
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        migrate(&mut conn).unwrap();
    }
}
