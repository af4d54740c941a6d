//! The dispatcher's view of what is in flight: a slot per request, within each target's
//! concurrency, one delivery at a time per entity, and rows whose attempt could not be recorded
//! kept cooling before they are sent again.

use crate::store::{EntityRef, OutboxRow};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long a row whose attempt could not be recorded waits before it is sent again (the store
/// is failing; hammering the receiver would not help).
pub(super) const RECORD_COOLDOWN: Duration = Duration::from_secs(5);

/// What one delivery task holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    row: i64,
    target: String,
    entity: Option<EntityRef>,
}

/// What is in flight.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// What each task holds, so a finished (or panicked) task gives it back.
    tasks: HashMap<tokio::task::Id, Claim>,
    /// The entities with a delivery in flight: one at a time each, whatever the order rows
    /// became due in (a replayed dead letter can be older than the row in flight).
    entities: HashSet<EntityRef>,
    /// Requests in flight per target.
    per_target: HashMap<String, usize>,
    /// Rows whose attempt could not be recorded: not sent again before the time given.
    cooling: HashMap<i64, Instant>,
}

impl Slots {
    /// The rows not to fetch (in flight or cooling, as of `now`) and the targets at their limit.
    pub(super) fn exclusions(
        &mut self,
        now: Instant,
        limit_of: impl Fn(&str) -> usize,
    ) -> (Vec<i64>, Vec<String>) {
        self.cooling.retain(|_, until| *until > now);
        let skip = self
            .tasks
            .values()
            .map(|t| t.row)
            .chain(self.cooling.keys().copied())
            .collect();
        let saturated = self
            .per_target
            .iter()
            .filter(|(name, busy)| **busy >= limit_of(name))
            .map(|(name, _)| name.clone())
            .collect();
        (skip, saturated)
    }

    /// Takes a slot of the row's target and its entity, unless either is taken.
    pub(super) fn claim(
        &mut self,
        row: &OutboxRow,
        limit_of: impl Fn(&str) -> usize,
    ) -> Option<Claim> {
        let target = row.action.target_name().to_owned();
        let entity = row.action.entity();
        if entity.as_ref().is_some_and(|e| self.entities.contains(e)) {
            return None;
        }
        let busy = self.per_target.entry(target.clone()).or_default();
        if *busy >= limit_of(&target) {
            return None;
        }
        *busy += 1;
        if let Some(entity) = &entity {
            self.entities.insert(entity.clone());
        }
        Some(Claim {
            row: row.id,
            target,
            entity,
        })
    }

    /// Remembers which task holds a claim.
    pub(super) fn hold(&mut self, task: tokio::task::Id, claim: Claim) {
        self.tasks.insert(task, claim);
    }

    /// Gives back what a finished task held; a row whose attempt was not recorded cools down
    /// until `now` plus [`RECORD_COOLDOWN`].
    pub(super) fn release(&mut self, task: tokio::task::Id, recorded: bool, now: Instant) {
        let Some(done) = self.tasks.remove(&task) else {
            return;
        };
        if let Some(busy) = self.per_target.get_mut(&done.target) {
            *busy = busy.saturating_sub(1);
        }
        if let Some(entity) = &done.entity {
            self.entities.remove(entity);
        }
        if !recorded {
            self.cooling.insert(done.row, now + RECORD_COOLDOWN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, target: &str, key: Option<&str>) -> OutboxRow {
        crate::store::samples::row(id, &format!("e{id}"), target, key)
    }

    /// Task ids come from the runtime; a JoinSet of tasks that do nothing gives real ones.
    async fn task_ids(n: usize) -> Vec<tokio::task::Id> {
        let mut set = tokio::task::JoinSet::new();
        (0..n).map(|_| set.spawn(async {}).id()).collect()
    }

    #[tokio::test]
    async fn one_delivery_per_entity_and_no_more_than_a_targets_limit() {
        let ids = task_ids(3).await;
        let limit = |_: &str| 2;
        let mut slots = Slots::default();
        let a1 = slots.claim(&row(1, "api", Some("a")), limit).unwrap();
        slots.hold(ids[0], a1);
        assert!(
            slots.claim(&row(2, "api", Some("a")), limit).is_none(),
            "key a is busy"
        );
        let b = slots.claim(&row(3, "api", Some("b")), limit).unwrap();
        slots.hold(ids[1], b);
        assert!(
            slots.claim(&row(4, "api", None), limit).is_none(),
            "api is at its limit"
        );
        assert!(slots.claim(&row(5, "other", None), limit).is_some());
        let (skip, saturated) = slots.exclusions(Instant::now(), limit);
        assert_eq!(saturated, ["api"]);
        assert_eq!(skip.len(), 2);
        // Key a's delivery is recorded: its next row may go, and the target has room.
        slots.release(ids[0], true, Instant::now());
        assert!(slots.claim(&row(2, "api", Some("a")), limit).is_some());
    }

    #[tokio::test]
    async fn a_row_whose_attempt_was_not_recorded_cools_down() {
        let ids = task_ids(1).await;
        let limit = |_: &str| 8;
        let mut slots = Slots::default();
        let claim = slots.claim(&row(7, "api", Some("k")), limit).unwrap();
        slots.hold(ids[0], claim);
        let now = Instant::now();
        slots.release(ids[0], false, now);
        let (skip, _) = slots.exclusions(now + Duration::from_secs(1), limit);
        assert_eq!(skip, [7], "still cooling");
        let (skip, _) = slots.exclusions(now + RECORD_COOLDOWN + Duration::from_millis(1), limit);
        assert!(skip.is_empty(), "cooled down");
        // The entity was given back at once.
        assert!(slots.claim(&row(8, "api", Some("k")), limit).is_some());
    }
}
