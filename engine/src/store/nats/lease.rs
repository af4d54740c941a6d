//! The work lease: which engine runs the processor, the dispatcher and housekeeping.
//!
//! The lease is one key in the `<prefix>_leases` bucket, whose entries expire after the lease
//! time. An engine takes it by creating the key (which fails while another holds it) and keeps
//! it by updating it with the revision it last wrote, a third of the lease time apart (which
//! fails if anyone else wrote in between). An engine that has not renewed it for two thirds of
//! the lease time stops, before the key expires and another engine can take it; one that stops
//! cleanly deletes the key, and a waiting engine takes it within a tenth of the lease time.

use super::unavailable;
use crate::store::StoreError;
use async_nats::jetstream::kv;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The key of the work lease.
const KEY: &str = "work";

/// One engine's claim on the work lease.
#[derive(Clone)]
pub struct WorkLease {
    bucket: kv::Store,
    ttl: Duration,
    owner: String,
}

/// The lease, held: its last revision.
#[derive(Debug)]
pub struct Held {
    revision: u64,
}

impl WorkLease {
    pub(super) fn new(bucket: kv::Store, ttl: Duration) -> WorkLease {
        WorkLease {
            bucket,
            ttl,
            owner: format!("{}:{}", std::process::id(), uuid::Uuid::now_v7().simple()),
        }
    }

    /// This engine's name in the lease.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Waits until this engine holds the lease; `None` when `shutdown` came first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Held> {
        let poll = (self.ttl / 10).max(Duration::from_millis(100));
        let mut waiting_logged = false;
        loop {
            match self.bucket.create(KEY, self.owner.clone().into()).await {
                Ok(revision) => {
                    tracing::info!(owner = %self.owner, "this engine holds the work lease: it processes and delivers");
                    return Some(Held { revision });
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if !waiting_logged {
                        tracing::info!(
                            "another engine holds the work lease; this one accepts events and waits to take over"
                        );
                        waiting_logged = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim the work lease; trying again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Keeps the lease until `until` is cancelled, or until it cannot be renewed for two
    /// thirds of its time: then it answers the error, and the engine must stop its work at
    /// once (another engine may take the lease when it expires).
    pub async fn keep(&self, held: &mut Held, until: &CancellationToken) -> Result<(), StoreError> {
        let renew = self.ttl / 3;
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = until.cancelled() => return Ok(()),
                () = tokio::time::sleep(renew) => {}
            }
            // A renewal waits at most until the next is due, so a hung call cannot carry the
            // engine past the point where it must stop.
            let renewal = tokio::time::timeout(
                renew,
                self.bucket
                    .update(KEY, self.owner.clone().into(), held.revision),
            )
            .await;
            match renewal {
                Ok(Ok(revision)) => {
                    held.revision = revision;
                    renewed = Instant::now();
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    return Err(StoreError::Conflict(format!(
                        "the work lease was taken by another engine ({e})"
                    )));
                }
                Ok(Err(e)) if renewed.elapsed() >= self.ttl * 2 / 3 => {
                    return Err(unavailable("cannot renew the work lease in time", e));
                }
                Err(_) if renewed.elapsed() >= self.ttl * 2 / 3 => {
                    return Err(unavailable(
                        "cannot renew the work lease in time",
                        "the servers did not answer",
                    ));
                }
                Err(_) => tracing::warn!(
                    "the servers did not answer a renewal of the work lease; trying again"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew the work lease; trying again");
                }
            }
        }
    }

    /// Gives the lease back, so a waiting engine takes it at once.
    pub async fn release(&self, held: Held) {
        match self
            .bucket
            .delete_expect_revision(KEY, Some(held.revision))
            .await
        {
            Ok(()) => tracing::info!("the work lease is given back"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot give the work lease back; another engine takes it when it expires");
            }
        }
    }
}
