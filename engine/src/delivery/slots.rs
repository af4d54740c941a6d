//! The dispatcher's view of what is in flight: one slot per request, within each target's
//! concurrency, and which row each delivery task holds.

use crate::store::OutboxRow;
use std::collections::HashMap;

/// What is in flight.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// The row each task is sending, so a finished (or panicked) task gives it back.
    tasks: HashMap<tokio::task::Id, OutboxRow>,
    /// Requests in flight per target.
    per_target: HashMap<String, usize>,
}

impl Slots {
    /// Whether `target` has a free slot under its `limit`.
    pub(super) fn has_room(&self, target: &str, limit: usize) -> bool {
        self.per_target.get(target).copied().unwrap_or(0) < limit
    }

    /// Remembers that `task` sends `row`, taking a slot of its target.
    pub(super) fn hold(&mut self, task: tokio::task::Id, row: OutboxRow) {
        *self
            .per_target
            .entry(row.action.target_name().to_owned())
            .or_default() += 1;
        self.tasks.insert(task, row);
    }

    /// Gives back the slot a finished task held, and the row it was sending.
    pub(super) fn release(&mut self, task: tokio::task::Id) -> Option<OutboxRow> {
        let row = self.tasks.remove(&task)?;
        if let Some(busy) = self.per_target.get_mut(row.action.target_name()) {
            *busy = busy.saturating_sub(1);
        }
        Some(row)
    }

    /// How many requests are in flight.
    pub(super) fn len(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::samples;

    /// Task ids come from the runtime; a JoinSet of tasks that do nothing gives real ones.
    async fn task_ids(n: usize) -> Vec<tokio::task::Id> {
        let mut set = tokio::task::JoinSet::new();
        (0..n).map(|_| set.spawn(async {}).id()).collect()
    }

    #[tokio::test]
    async fn a_target_gets_no_more_slots_than_its_limit() {
        let ids = task_ids(3).await;
        let mut slots = Slots::default();
        slots.hold(ids[0], samples::row(1, "e1", "api", None));
        assert!(slots.has_room("api", 2));
        slots.hold(ids[1], samples::row(2, "e2", "api", None));
        assert!(!slots.has_room("api", 2));
        assert!(slots.has_room("other", 2));
        assert_eq!(slots.len(), 2);
        assert_eq!(slots.release(ids[0]).map(|r| r.id), Some(1));
        assert!(slots.has_room("api", 2));
        assert!(slots.release(ids[2]).is_none(), "a task it never held");
    }
}
