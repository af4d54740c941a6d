//! Keeping the log short: snapshots of a replica, and the entries every engine has applied
//! removed from the log.
//!
//! Every engine reports the position its replica has applied, every few seconds, in the
//! `<prefix>_positions` bucket (a report older than [`POSITION_KEPT`] expires: an engine away
//! longer than that starts again from a snapshot). The engine holding the work lease, every
//! `store.nats.snapshotInterval`, copies its replica (`VACUUM INTO`), keeps the copy as the
//! object `replica` of `<prefix>_snapshots`, and removes from the log every entry at or below
//! both the copy's position and the lowest position reported. An engine whose replica needs
//! entries the log no longer holds (a new one, or one away too long) starts from the snapshot.

use super::{Connection, unavailable};
use crate::store::{SqliteStore, StoreError};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The object holding the latest snapshot.
const SNAPSHOT: &str = "replica";
/// How often an engine reports its position.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long a report holds entries in the log.
pub(super) const POSITION_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Reports this replica's position under `id` until `stop`.
pub(super) async fn report_position(
    conn: Connection,
    store: SqliteStore,
    id: String,
    stop: CancellationToken,
) {
    loop {
        match store.log_position() {
            Ok(position) => {
                if let Err(e) = conn
                    .positions
                    .put(id.as_str(), position.to_string().into())
                    .await
                {
                    tracing::debug!(error = %e, "cannot report the replica's position");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the replica's position"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REPORT_EVERY) => {}
        }
    }
}

/// Snapshots and log trimming, by the engine holding the work lease.
#[derive(Clone)]
pub struct Compactor {
    conn: Connection,
    store: SqliteStore,
    dir: std::path::PathBuf,
}

/// What one round of compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The position of the snapshot kept.
    pub snapshot: u64,
    /// The log now starts after this position (entries at or below it were removed).
    pub trimmed_to: u64,
}

impl Compactor {
    pub(super) fn new(conn: Connection, store: SqliteStore, dir: &Path) -> Compactor {
        Compactor {
            conn,
            store,
            dir: dir.to_owned(),
        }
    }

    /// Compacts every `store.nats.snapshotInterval` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let every = self.conn.config.snapshot_interval;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.compact().await {
                Ok(done) => tracing::info!(
                    snapshot = done.snapshot,
                    trimmed_to = done.trimmed_to,
                    "log compacted"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot compact the log; trying again later"),
            }
        }
    }

    /// One round: a snapshot, then the log trimmed below it and below every engine's
    /// reported position.
    pub async fn compact(&self) -> Result<Compacted, StoreError> {
        let file = self.dir.join("snapshot.db");
        let _ = std::fs::remove_file(&file);
        let (store, path) = (self.store.clone(), file.clone());
        let snapshot = tokio::task::spawn_blocking(move || store.snapshot(&path))
            .await
            .map_err(|e| StoreError::Io(format!("the snapshot panicked: {e}")))??;
        let mut reader = tokio::fs::File::open(&file)
            .await
            .map_err(|e| StoreError::Io(format!("cannot read the snapshot: {e}")))?;
        self.conn
            .snapshots
            .put(SNAPSHOT, &mut reader)
            .await
            .map_err(|e| unavailable("cannot keep the snapshot", e))?;
        let _ = std::fs::remove_file(&file);
        let mut lowest = snapshot;
        let mut keys = self
            .conn
            .positions
            .keys()
            .await
            .map_err(|e| unavailable("cannot read the engines' positions", e))?;
        use futures_util::StreamExt;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| unavailable("cannot read the engines' positions", e))?;
            let reported = self
                .conn
                .positions
                .get(key.as_str())
                .await
                .map_err(|e| unavailable("cannot read the engines' positions", e))?;
            if let Some(position) =
                reported.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u64>().ok())
            {
                lowest = lowest.min(position);
            }
        }
        if lowest > 0 {
            self.conn
                .stream
                .purge()
                .sequence(lowest + 1)
                .await
                .map_err(|e| unavailable("cannot trim the log", e))?;
        }
        Ok(Compacted {
            snapshot,
            trimmed_to: lowest,
        })
    }
}

/// Replaces the replica in `dir` with the latest snapshot when the log no longer holds an
/// entry it needs (its first entry is past the replica's position + 1).
pub(super) async fn restore_if_needed(
    conn: &Connection,
    dir: &Path,
    first: u64,
) -> Result<(), StoreError> {
    let database = dir.join(crate::store::sqlite::DATABASE_FILE);
    let needs = match crate::store::sqlite::read_file_binding(&database)? {
        None => first > 1,
        Some((log, position)) => log == conn.identity && position + 1 < first,
    };
    if !needs {
        return Ok(());
    }
    tracing::info!(
        first,
        "the log no longer holds what this replica needs: starting from the latest snapshot"
    );
    let mut object = conn.snapshots.get(SNAPSHOT).await.map_err(|e| {
        StoreError::Io(format!(
            "the log starts at entry {first}, past what this replica holds, and the latest snapshot cannot be read: {e}"
        ))
    })?;
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let restoring = dir.join("restore.db");
    let mut out = tokio::fs::File::create(&restoring)
        .await
        .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", restoring.display())))?;
    tokio::io::copy(&mut object, &mut out)
        .await
        .map_err(|e| unavailable("cannot read the snapshot", e))?;
    out.flush()
        .await
        .map_err(|e| StoreError::Io(format!("cannot write the snapshot: {e}")))?;
    drop(out);
    match crate::store::sqlite::read_file_binding(&restoring)? {
        Some((log, position)) if log == conn.identity && position + 1 >= first => {}
        other => {
            return Err(StoreError::Conflict(format!(
                "the latest snapshot ({other:?}) does not reach the log's first entry {first} of {}",
                conn.identity
            )));
        }
    }
    for suffix in ["-wal", "-shm"] {
        let mut name = database.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    std::fs::rename(&restoring, &database)
        .map_err(|e| StoreError::Io(format!("cannot put the snapshot in place: {e}")))?;
    Ok(())
}
