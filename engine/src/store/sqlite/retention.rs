//! Pruning finished work, a round at a time.

use super::columns::json_ints;
use crate::store::{Prune, Pruned, StoreError};
use rusqlite::{Connection, params};

/// How many events one round looks at, per event it may remove: old events kept (pending
/// work, a recent dead letter) are passed over, and a round stays short however many there are.
const LOOK_PER_LIMIT: usize = 4;
/// Pages (4 KiB) given back to the file system per round at most.
const VACUUM_PAGES: u32 = 4096;

/// One round of pruning (see [`crate::store::Retention::prune`]).
pub(super) fn prune(conn: &Connection, prune: &Prune) -> Result<Pruned, StoreError> {
    let limit = prune.limit.max(1);
    let look = limit.saturating_mul(LOOK_PER_LIMIT);
    let mut candidates = conn.prepare_cached(
        "SELECT seq, id, accepted_at, processed_at FROM events WHERE seq > ?1 ORDER BY seq
         LIMIT ?2",
    )?;
    let mut rows = candidates.query(params![
        prune.after,
        i64::try_from(look).unwrap_or(i64::MAX)
    ])?;
    let (mut seqs, mut ids) = (Vec::new(), Vec::new());
    let (mut looked, mut last, mut reached_cutoff) = (0, prune.after, false);
    while let Some(row) = rows.next()? {
        looked += 1;
        let seq: i64 = row.get("seq")?;
        last = seq;
        if row.get::<_, i64>("accepted_at")? >= prune.cutoffs.finished {
            reached_cutoff = true;
            break;
        }
        if row.get::<_, Option<i64>>("processed_at")?.is_none() {
            continue;
        }
        let id: String = row.get("id")?;
        if finished(conn, &id, prune.cutoffs.dead_letters)? {
            seqs.push(seq);
            ids.push(id);
            if seqs.len() == limit {
                break;
            }
        }
    }
    drop(rows);
    let next = (!reached_cutoff && (looked == look || seqs.len() == limit)).then_some(last);
    let events = remove(conn, &seqs, &ids)?;
    let dedupe_keys = forget_dedupe_keys(conn, prune.cutoffs.dedupe, limit)?;
    if events + dedupe_keys > 0 {
        conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
    }
    Ok(Pruned {
        events,
        dedupe_keys,
        next,
    })
}

/// Whether a processed event's work is finished: no action pending, no dead letter (not
/// replayed) created at or after `dead_before`.
fn finished(conn: &Connection, id: &str, dead_before: i64) -> Result<bool, StoreError> {
    let pending: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE event_id = ?1 AND state = 'pending')",
        )?
        .query_row(params![id], |row| row.get(0))?;
    if pending {
        return Ok(false);
    }
    let dead: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM dead_letters
                 WHERE event_id = ?1 AND state = 'dead' AND created_at >= ?2)",
        )?
        .query_row(params![id, dead_before], |row| row.get(0))?;
    Ok(!dead)
}

/// Removes events and everything recorded about them, children first.
fn remove(conn: &Connection, seqs: &[i64], ids: &[String]) -> Result<u64, StoreError> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let ids = serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let seqs = json_ints(seqs);
    for sql in [
        "DELETE FROM attempts WHERE outbox_id IN
             (SELECT id FROM outbox WHERE event_id IN (SELECT value FROM json_each(?1)))",
        "DELETE FROM dead_letters WHERE event_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM shadow_runs WHERE event_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM outbox WHERE event_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM runs WHERE event_id IN (SELECT value FROM json_each(?1))",
    ] {
        conn.prepare_cached(sql)?.execute(params![ids])?;
    }
    conn.prepare_cached(
        "DELETE FROM payloads WHERE event_seq IN (SELECT value FROM json_each(?1))",
    )?
    .execute(params![seqs])?;
    let removed = conn
        .prepare_cached("DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?1))")?
        .execute(params![seqs])?;
    Ok(removed as u64)
}

/// Forgets up to `limit` dedupe keys of events accepted before `before`, oldest first.
fn forget_dedupe_keys(conn: &Connection, before: i64, limit: usize) -> Result<u64, StoreError> {
    let mut oldest = conn.prepare_cached(
        "SELECT seq, accepted_at FROM events WHERE dedupe_key IS NOT NULL ORDER BY seq LIMIT ?1",
    )?;
    let mut seqs = Vec::new();
    let mut rows = oldest.query(params![i64::try_from(limit).unwrap_or(i64::MAX)])?;
    while let Some(row) = rows.next()? {
        if row.get::<_, i64>("accepted_at")? >= before {
            break;
        }
        seqs.push(row.get::<_, i64>("seq")?);
    }
    drop(rows);
    if seqs.is_empty() {
        return Ok(0);
    }
    let forgotten = conn
        .prepare_cached(
            "UPDATE events SET dedupe_key = NULL WHERE seq IN (SELECT value FROM json_each(?1))",
        )?
        .execute(params![json_ints(&seqs)])?;
    Ok(forgotten as u64)
}
