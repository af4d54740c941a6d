//! Read-only connections. The engine's own reads (pending events, pending deliveries) have a
//! connection of their own, so an operator's query (a long dead-letter list, an event with
//! thousands of attempts) or a metrics scrape never holds up processing or delivery; the
//! operators' reads share a few more.

use crate::store::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// A few read-only connections, each serving one query at a time.
pub(super) struct Readers {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// `count` read-only connections to the database at `path` (at least one).
    pub(super) fn open(path: &Path, count: usize) -> Result<Readers, StoreError> {
        let connections = (0..count.max(1))
            .map(|_| super::migrate::open_connection(path, true).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Readers {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `query` on a free connection, or, when all are busy, on the next one in turn once
    /// it is free. Blocks: call it on a blocking thread.
    pub(super) fn run<T>(&self, query: impl FnOnce(&Connection) -> T) -> T {
        for connection in &self.connections {
            if let Ok(conn) = connection.try_lock() {
                return query(&conn);
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let conn = self.connections[turn]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        query(&conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_in_progress_does_not_hold_up_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = super::super::migrate::open_connection(&path, false).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let readers = Readers::open(&path, 2).unwrap();
        let (inside, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                readers.run(|_conn| {
                    inside.wait();
                    release.wait();
                });
            });
            inside.wait();
            // One connection is held by the query above: this one runs on the other.
            let x: i64 =
                readers.run(|conn| conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap());
            assert_eq!(x, 1);
            release.wait();
        });
    }
}
