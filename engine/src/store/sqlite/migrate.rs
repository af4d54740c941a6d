//! Opening the database, and bringing an older one up to the current schema.

use crate::store::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// The schema version this engine writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 8;

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
        // WAL lets readers run beside the writer; FULL makes every commit durable (the writer
        // relaxes it for batches the engine can redo: see `writer::Sync`).
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "{} cannot use WAL mode (got `{mode}`)",
                path.display()
            )));
        }
        // Statement journals (and temporary tables) in memory, not in a file per statement;
        // the write-ahead log cut back to 64 MiB after each checkpoint that empties it.
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
             PRAGMA journal_size_limit = 67108864;",
        )?;
    }
    Ok(conn)
}

/// Creates the schema in a new database, or upgrades an older one, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    incremental_vacuum(conn, version)?;
    let steps: &[&str] = match version {
        0 => &[include_str!("schema.sql")],
        1 => &[TO_2, TO_3, TO_4, TO_5, TO_6, TO_7, TO_8],
        2 => &[TO_3, TO_4, TO_5, TO_6, TO_7, TO_8],
        3 => &[TO_4, TO_5, TO_6, TO_7, TO_8],
        4 => &[TO_5, TO_6, TO_7, TO_8],
        5 => &[TO_6, TO_7, TO_8],
        6 => &[TO_7, TO_8],
        7 => &[TO_8],
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

/// Makes the database give the pages retention frees back to the file system a few at a
/// time (`PRAGMA incremental_vacuum`, run after each pruning). The database is rewritten once
/// (`VACUUM`) to change its mode: at once for a new one, a while for a large older one.
fn incremental_vacuum(conn: &Connection, version: i64) -> Result<(), StoreError> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
    if mode == INCREMENTAL {
        return Ok(());
    }
    if version != 0 {
        tracing::info!("rewriting the database once so that pruned space can be given back");
    }
    // The mode of a database whose first page exists (a new one has it once WAL mode is set)
    // changes only by rewriting it, which for a new one takes no time.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
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

/// Version 2 to 3: payloads move to their own table, so marking an event processed rewrites
/// only its small row; the dispatcher loads pending rows by event order, not by due time.
const TO_3: &str = "
    CREATE TABLE payloads (
        event_seq INTEGER PRIMARY KEY REFERENCES events (seq),
        payload   BLOB    NOT NULL
    );
    INSERT INTO payloads (event_seq, payload) SELECT seq, payload FROM events;
    ALTER TABLE events DROP COLUMN payload;
    DROP INDEX outbox_due;
    CREATE INDEX outbox_lane ON outbox ((CASE kind WHEN 'emit' THEN 'hms-core' ELSE target END),
        event_seq, id) WHERE state = 'pending';
";

/// Version 3 to 4: what a delivered version supersedes is found by a range over the stale
/// rows of its entity, not by a scan of every pending row of it.
const TO_4: &str = "
    DROP INDEX outbox_key_order;
    CREATE INDEX outbox_stale_lww ON outbox (kind, target, entity_key, timestamp, event_id, id)
        WHERE state = 'pending' AND conflict = 'last-write-wins';
    CREATE INDEX outbox_stale_version ON outbox (kind, target, entity_key, version)
        WHERE state = 'pending' AND conflict = 'version';
";

/// Version 4 to 5: each route's pending events are read by the route; retention finds an
/// event's dead letters by the event, and the oldest dedupe keys in acceptance order; removing a run or an outbox row finds the rows that refer to
/// it by index (the foreign key checks of a delete), not by a scan of their tables.
const TO_5: &str = "
    CREATE INDEX dead_letters_event ON dead_letters (event_id);
    CREATE INDEX dead_letters_refs ON dead_letters (run_id, outbox_id);
    CREATE INDEX dead_letters_outbox ON dead_letters (outbox_id);
    CREATE INDEX outbox_run ON outbox (run_id);
    CREATE INDEX events_dedupe_age ON events (seq) WHERE dedupe_key IS NOT NULL;
    DROP INDEX events_pending;
    CREATE INDEX events_pending ON events (route, seq) WHERE processed_at IS NULL;
";

/// Version 5 to 6: a store that is a replica of a log (the NATS backend) records which log,
/// and how far it has applied it.
const TO_6: &str = "
    CREATE TABLE replica (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        log      TEXT    NOT NULL,
        position INTEGER NOT NULL
    );
";

/// Version 6 to 7: events are found by entity key and by acceptance time (the admin API's
/// search), not by a scan of every event.
const TO_7: &str = "
    CREATE INDEX events_key ON events (entity_key, seq) WHERE entity_key IS NOT NULL;
    CREATE INDEX events_accepted ON events (accepted_at);
";

/// Version 7 to 8: what shadow versions made of events.
const TO_8: &str = "
    CREATE TABLE shadow_runs (
        id          INTEGER PRIMARY KEY,
        event_id    TEXT    NOT NULL REFERENCES events (id),
        handler     INTEGER NOT NULL,
        plugin      TEXT    NOT NULL,
        shadow_hash TEXT    NOT NULL,
        active_hash TEXT    NOT NULL,
        verdict     TEXT    NOT NULL,
        changes     TEXT,
        error       TEXT,
        duration_us INTEGER NOT NULL,
        ran_at      INTEGER NOT NULL
    );
    CREATE INDEX shadow_runs_event ON shadow_runs (event_id);
";

#[cfg(test)]
mod tests {
    use super::*;

    /// A database as version 1 of the engine wrote it: an event, a delivered row, a drop
    /// action and an echo that was not sent.
    fn version_1_database(path: &Path) {
        let conn = open_connection(path, false).unwrap();
        conn.execute_batch(include_str!("testdata/schema-v1.sql"))
            .unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO events (seq, id, route, event_type, origin, timestamp, content_type,
                 headers, payload, accepted_at, processed_at)
             VALUES (1, 'e1', 'bus:tax.rate.updated', 'tax.rate.updated', 'hms', 5,
                 'application/json', '[]', X'7B7D', 6, 7);
             INSERT INTO runs (id, event_id, handler, plugin, plugin_hash, outcome, duration_us,
                 ran_at) VALUES (1, 'e1', 0, 'p', 'h', 'ok', 1, 7);
             INSERT INTO outbox (id, event_id, event_seq, run_id, kind, target, idempotency_key,
                 origin, content_type, headers, body, timestamp, state, round_started_at,
                 next_attempt_at, created_at, last_error)
             VALUES
                 (1, 'e1', 1, 1, 'deliver', 'state-api', 'e1.0.0', 'hms', 'application/json',
                  '[]', X'7B7D', 5, 'dead', 7, 7, 7, 'HTTP 500'),
                 (2, 'e1', 1, 1, 'drop', 'not for us', 'e1.0.1', 'hms', 'application/json',
                  '[]', X'', 5, 'dropped', 7, 7, 7, NULL),
                 (3, 'e1', 1, 1, 'deliver', 'irs', 'e1.0.2', 'hms', 'application/json', '[]',
                  X'7B7D', 5, 'dropped', 7, 7, 7, 'echo: ...');",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_keeping_its_rows() {
        use crate::store::{Records, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        version_1_database(&dir.path().join(super::super::DATABASE_FILE));
        let store = SqliteStore::open(dir.path()).unwrap();
        let history = store.event_history("e1").await.unwrap().unwrap();
        assert_eq!(history.event.event.payload, b"{}");
        assert_eq!(history.event.processed_at, Some(7));
        let rows: Vec<(&str, Option<&str>, Option<&str>)> = history
            .outbox
            .iter()
            .map(|(row, _)| {
                (
                    row.action.target.as_str(),
                    row.action.reason.as_deref(),
                    row.last_error.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("state-api", None, Some("HTTP 500")),
                ("", Some("not for us"), None),
                ("irs", Some("echo: ..."), None),
            ]
        );
        store.close().await;
        // Opening it again finds it current.
        let mut conn =
            open_connection(&dir.path().join(super::super::DATABASE_FILE), false).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // Rewritten once at the upgrade, it gives pruned pages back.
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2, "incremental");
    }

    #[test]
    fn a_new_database_gives_pruned_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("new.db"), false).unwrap();
        migrate(&mut conn).unwrap();
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2, "incremental");
    }

    /// Every table's columns and every index's columns and condition, in a comparable form.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut objects: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        objects.sort();
        let mut shape = Vec::new();
        for (kind, name, sql) in objects {
            let pragma = if kind == "table" {
                "table_info"
            } else {
                "index_xinfo"
            };
            let mut columns: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_{pragma}(?1)"))
                .unwrap()
                .query_map([&name], |r| r.get::<_, Option<String>>(0))
                .unwrap()
                .map(|c| c.unwrap().unwrap_or_else(|| "<expression>".into()))
                .collect();
            if kind == "table" {
                // Columns added by a migration come last; their order does not matter.
                columns.sort();
            }
            // An index's condition, whitespace aside.
            let condition = sql
                .as_deref()
                .and_then(|sql| sql.split_once(" WHERE "))
                .map(|(_, w)| w.split_whitespace().collect::<Vec<_>>().join(" "));
            shape.push(format!("{kind} {name} {columns:?} {condition:?}"));
        }
        shape
    }

    #[tokio::test]
    async fn an_upgraded_database_has_the_shape_of_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        version_1_database(&old);
        let mut upgraded = open_connection(&old, false).unwrap();
        migrate(&mut upgraded).unwrap();
        let mut new = open_connection(&dir.path().join("new.db"), false).unwrap();
        migrate(&mut new).unwrap();
        assert_eq!(shape(&upgraded), shape(&new));
    }

    #[test]
    fn the_stale_rows_of_an_entity_are_found_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("plan.db"), false).unwrap();
        migrate(&mut conn).unwrap();
        for (strategy, index) in [
            (crate::config::Strategy::LastWriteWins, "outbox_stale_lww"),
            (crate::config::Strategy::Version, "outbox_stale_version"),
        ] {
            let stale = crate::conflict::sql::row_is_stale(strategy, true).unwrap();
            let mut explain = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT id FROM outbox
                     WHERE state = 'pending' AND kind = ?1 AND target = ?2 AND entity_key = ?3
                       AND id != ?4 AND {stale}"
                ))
                .unwrap();
            let parameters = (1..=explain.parameter_count()).map(|n| n as i64);
            let plan: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(parameters), |r| {
                    r.get::<_, String>("detail")
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.starts_with("SEARCH outbox USING")
                    && plan.contains(&format!("INDEX {index} "))
                    && plan.contains('<'),
                "{strategy:?}: {plan}"
            );
        }
    }

    #[test]
    fn a_database_from_a_newer_engine_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("newer.db"), false).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        let refused = migrate(&mut conn).unwrap_err();
        assert!(
            refused.to_string().contains("schema version 99"),
            "{refused}"
        );
    }
}
