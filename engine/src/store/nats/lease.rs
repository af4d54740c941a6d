//! Who does which work: the work lease (housekeeping, and with one partition the processor and
//! the dispatcher too) and the partitions (processing and delivery, with more than one).
//!
//! The lease is one key in the `<prefix>_leases` bucket, whose entries expire after the lease
//! time. An engine takes it by creating the key (which fails while another holds it) and keeps
//! it by updating it with the revision it last wrote, a third of the lease time apart (which
//! fails if anyone else wrote in between). An engine that has not renewed it for two thirds of
//! the lease time stops, before the key expires and another engine can take it; one that stops
//! cleanly deletes the key, and a waiting engine takes it within a tenth of the lease time.
//!
//! Partitions ([`Partitions`]) are leased the same way, one key each (`part.<n>`), by the
//! engine rendezvous hashing gives them among the engines that announced themselves
//! (`member.<engine>`, renewed like a lease).

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
    pub(super) bucket: kv::Store,
    pub(super) ttl: Duration,
    pub(super) owner: String,
}

/// What renewing a lease key gave.
enum Renewal {
    /// Renewed: its new revision.
    Renewed(u64),
    /// Not renewed this time, but still held: why.
    Retry(String),
    /// No longer held.
    Lost(StoreError),
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
            match self.renew(KEY, held.revision, renewed, renew).await {
                Renewal::Renewed(revision) => {
                    held.revision = revision;
                    renewed = Instant::now();
                }
                Renewal::Retry(why) => {
                    tracing::warn!(error = %why, "cannot renew the work lease; trying again");
                }
                Renewal::Lost(e) => return Err(e),
            }
        }
    }

    /// Renews `key`, held at `revision` and last renewed at `renewed`, waiting at most
    /// `within` for the servers. Lost when someone else wrote it in between, or when it could
    /// not be renewed for two thirds of the lease time (before it expires and another engine
    /// can take it).
    async fn renew(&self, key: &str, revision: u64, renewed: Instant, within: Duration) -> Renewal {
        let renewal = tokio::time::timeout(
            within,
            self.bucket.update(key, self.owner.clone().into(), revision),
        )
        .await;
        let why = match renewal {
            Ok(Ok(revision)) => return Renewal::Renewed(revision),
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                return Renewal::Lost(StoreError::Conflict(format!(
                    "`{key}` was taken by another engine ({e})"
                )));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the servers did not answer".to_owned(),
        };
        if renewed.elapsed() >= self.ttl * 2 / 3 {
            Renewal::Lost(unavailable(&format!("cannot renew `{key}` in time"), why))
        } else {
            Renewal::Retry(why)
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

/// A stable number for `parts` (the same on every engine and every build): the first 8 bytes
/// of their SHA-256.
pub fn stable_hash(parts: &[&str]) -> u64 {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// The engine among `members` that should process `partition` (rendezvous hashing: each
/// partition goes to the member with the highest score, so a member joining or leaving moves
/// only its own share).
fn winner(members: &[String], partition: u32) -> Option<&str> {
    let partition = partition.to_string();
    members
        .iter()
        .max_by_key(|member| stable_hash(&[member, &partition]))
        .map(String::as_str)
}

/// The processing partitions this engine holds, kept in step with the live engines: each
/// engine keeps a membership key (`member.<owner>`) and claims the partitions rendezvous
/// hashing gives it (`part.<p>`), renewing them like the work lease; a partition it should no
/// longer hold is given back once its processing has stopped.
pub struct Partitions {
    lease: WorkLease,
    count: u32,
}

impl Partitions {
    pub(super) fn new(lease: WorkLease, count: u32) -> Partitions {
        Partitions { lease, count }
    }

    /// How many partitions there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Runs until `shutdown`. `held` is told the partitions this engine may process now;
    /// `running` tells it the partitions whose processing runs (a partition is given back only
    /// once it is no longer running).
    pub async fn run(
        &self,
        held: tokio::sync::watch::Sender<std::collections::BTreeSet<u32>>,
        mut running: tokio::sync::watch::Receiver<std::collections::BTreeSet<u32>>,
        shutdown: &CancellationToken,
    ) {
        use std::collections::{BTreeMap, BTreeSet};
        let bucket = &self.lease.bucket;
        let owner = self.lease.owner.clone();
        let ttl = self.lease.ttl;
        let tick = (ttl / 10).max(Duration::from_millis(100));
        let member = format!("member.{}", owner.replace([':', '.'], "-"));
        // Held partitions: their revision and when they were last renewed.
        let mut revisions: BTreeMap<u32, (u64, Instant)> = BTreeMap::new();
        let mut member_put: Option<Instant> = None;
        loop {
            if member_put.is_none_or(|at| at.elapsed() >= ttl / 3) {
                match bucket.put(&member, owner.clone().into()).await {
                    Ok(_) => member_put = Some(Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot announce this engine to the others");
                    }
                }
            }
            let desired: BTreeSet<u32> = if shutdown.is_cancelled() {
                BTreeSet::new()
            } else {
                match live_members(bucket).await {
                    Ok(members) => (0..self.count)
                        .filter(|p| {
                            winner(&members, *p) == Some(member.trim_start_matches("member."))
                        })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list the engines; keeping what this one holds");
                        revisions.keys().copied().collect()
                    }
                }
            };
            let claims: Vec<u32> = desired
                .iter()
                .filter(|p| !revisions.contains_key(p))
                .copied()
                .collect();
            for p in claims {
                if let Ok(revision) = bucket
                    .create(format!("part.{p}"), owner.clone().into())
                    .await
                {
                    revisions.insert(p, (revision, Instant::now()));
                }
            }
            let leaving: BTreeSet<u32> = revisions
                .keys()
                .filter(|p| !desired.contains(p))
                .copied()
                .collect();
            // Renew what is held; a partition not renewed in time, or taken, is lost.
            let mut lost = Vec::new();
            for (p, (revision, renewed)) in &mut revisions {
                if renewed.elapsed() < ttl / 3 {
                    continue;
                }
                match self
                    .lease
                    .renew(&format!("part.{p}"), *revision, *renewed, tick)
                    .await
                {
                    Renewal::Renewed(next) => {
                        *revision = next;
                        *renewed = Instant::now();
                    }
                    Renewal::Retry(_) => {}
                    Renewal::Lost(e) => {
                        tracing::warn!(partition = p, error = %e, "a partition was lost; its work stops");
                        lost.push(*p);
                    }
                }
            }
            for p in lost {
                revisions.remove(&p);
            }
            let may_process: BTreeSet<u32> = revisions
                .keys()
                .filter(|p| !leaving.contains(p))
                .copied()
                .collect();
            held.send_if_modified(|now| {
                let changed = *now != may_process;
                *now = may_process.clone();
                changed
            });
            // Give back what is leaving once its processing stopped.
            let stopped: Vec<u32> = leaving
                .iter()
                .filter(|p| !running.borrow().contains(p))
                .copied()
                .collect();
            for p in stopped {
                if let Some((revision, _)) = revisions.remove(&p) {
                    let _ = bucket
                        .delete_expect_revision(format!("part.{p}"), Some(revision))
                        .await;
                }
            }
            if shutdown.is_cancelled() && revisions.is_empty() {
                let _ = bucket.delete(&member).await;
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                _ = running.changed() => {}
                () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
            }
        }
    }
}

/// The engines that announced themselves within the lease time.
async fn live_members(bucket: &kv::Store) -> Result<Vec<String>, StoreError> {
    use futures_util::StreamExt;
    let mut keys = bucket
        .keys()
        .await
        .map_err(|e| unavailable("cannot list the engines", e))?;
    let mut members = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| unavailable("cannot list the engines", e))?;
        if let Some(member) = key.strip_prefix("member.") {
            members.push(member.to_owned());
        }
    }
    Ok(members)
}
