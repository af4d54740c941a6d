//! The dispatcher's view of what is in flight. A delivery task holds two things: a *slot* of its
//! target (one request in flight, within the target's concurrency) from its start until the
//! request has ended, and its *row* (and with it the row's entity) until the attempt is
//! recorded. A task gives its slot back through [`SlotRelease`] as soon as the answer is in, so
//! the next request to the target starts while the store records this one.

use crate::metrics::DestinationLabels;
use crate::store::{EntityRef, OutboxRow};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// What the dispatcher keeps of a row in flight: enough to put it back in its queue's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Held {
    /// The row's id.
    pub(super) id: i64,
    /// Its entity, when it has a key.
    pub(super) entity: Option<EntityRef>,
    /// Its target (a destination, or `hms-core`).
    target: String,
    /// Whether its request may still be in flight (the task holds a slot of the target).
    requesting: bool,
}

impl Held {
    /// What to keep of `row` while it is in flight.
    pub(super) fn of(row: &OutboxRow) -> Held {
        Held {
            id: row.id,
            entity: row.action.entity(),
            target: row.action.target_name().to_owned(),
            requesting: true,
        }
    }
}

/// What is in flight.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// The row each task holds, so a finished (or panicked) task gives it back.
    tasks: HashMap<tokio::task::Id, Held>,
    /// Requests in flight per target.
    per_target: HashMap<String, usize>,
    /// Requests in flight in all.
    requests: usize,
    /// Where requests in flight per target are shown, if anywhere.
    shown: Option<Family<DestinationLabels, Gauge>>,
}

impl Slots {
    /// Slots that show the requests in flight per target in `gauges`.
    pub(super) fn shown_in(gauges: Family<DestinationLabels, Gauge>) -> Slots {
        Slots {
            shown: Some(gauges),
            ..Slots::default()
        }
    }

    /// Shows `target`'s requests in flight.
    fn show(&self, target: &str) {
        if let Some(gauges) = &self.shown {
            let busy = self.per_target.get(target).copied().unwrap_or(0);
            gauges
                .get_or_create(&DestinationLabels {
                    destination: target.to_owned(),
                })
                .set(i64::try_from(busy).unwrap_or(i64::MAX));
        }
    }

    /// Whether `target` has a free slot under its `limit`.
    pub(super) fn has_room(&self, target: &str, limit: usize) -> bool {
        self.per_target.get(target).copied().unwrap_or(0) < limit
    }

    /// Remembers that `task` sends the row it `held`, taking a slot of its target.
    pub(super) fn hold(&mut self, task: tokio::task::Id, held: Held) {
        *self.per_target.entry(held.target.clone()).or_default() += 1;
        self.requests += 1;
        self.show(&held.target);
        self.tasks.insert(task, held);
    }

    /// The request of `task` has ended: its slot is free, its row still held.
    pub(super) fn request_ended(&mut self, task: tokio::task::Id) {
        if let Some(held) = self.tasks.get_mut(&task)
            && Self::free(&mut self.per_target, &mut self.requests, held)
        {
            let target = held.target.clone();
            self.show(&target);
        }
    }

    /// Gives back what a finished task held: its slot, if it still had it, and its row.
    pub(super) fn finished(&mut self, task: tokio::task::Id) -> Option<Held> {
        let mut held = self.tasks.remove(&task)?;
        if Self::free(&mut self.per_target, &mut self.requests, &mut held) {
            self.show(&held.target);
        }
        Some(held)
    }

    /// Frees `held`'s slot if it still has it; answers whether it did.
    fn free(
        per_target: &mut HashMap<String, usize>,
        requests: &mut usize,
        held: &mut Held,
    ) -> bool {
        if !std::mem::take(&mut held.requesting) {
            return false;
        }
        if let Some(busy) = per_target.get_mut(&held.target) {
            *busy = busy.saturating_sub(1);
        }
        *requests = requests.saturating_sub(1);
        true
    }

    /// How many requests are in flight.
    pub(super) fn requests(&self) -> usize {
        self.requests
    }

    /// How many tasks are in flight: requesting, or recording what their request got.
    pub(super) fn tasks(&self) -> usize {
        self.tasks.len()
    }
}

/// A delivery task's hold on its slot: dropping it (when the request has ended, or the task
/// ends early) tells the dispatcher the slot is free.
pub(super) struct SlotRelease(Option<mpsc::UnboundedSender<tokio::task::Id>>);

impl SlotRelease {
    /// A release that tells `ended`; it must be dropped inside the task that holds the slot.
    pub(super) fn new(ended: mpsc::UnboundedSender<tokio::task::Id>) -> SlotRelease {
        SlotRelease(Some(ended))
    }
}

impl Drop for SlotRelease {
    fn drop(&mut self) {
        if let (Some(ended), Some(task)) = (self.0.take(), tokio::task::try_id()) {
            // The dispatcher gone means nothing is left to tell.
            let _ = ended.send(task);
        }
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
        slots.hold(ids[0], Held::of(&samples::row(1, "e1", "api", None)));
        assert!(slots.has_room("api", 2));
        slots.hold(ids[1], Held::of(&samples::row(2, "e2", "api", None)));
        assert!(!slots.has_room("api", 2));
        assert!(slots.has_room("other", 2));
        assert_eq!(slots.requests(), 2);
        assert_eq!(slots.finished(ids[0]).map(|h| h.id), Some(1));
        assert!(slots.has_room("api", 2));
        assert!(slots.finished(ids[2]).is_none(), "a task it never held");
    }

    #[tokio::test]
    async fn an_ended_request_frees_its_slot_but_not_its_row() {
        let ids = task_ids(2).await;
        let mut slots = Slots::default();
        slots.hold(ids[0], Held::of(&samples::row(1, "e1", "api", Some("k"))));
        slots.hold(ids[1], Held::of(&samples::row(2, "e2", "api", None)));
        slots.request_ended(ids[0]);
        slots.request_ended(ids[0]);
        assert_eq!((slots.requests(), slots.tasks()), (1, 2));
        assert!(slots.has_room("api", 2));
        let held = slots.finished(ids[0]).unwrap();
        assert_eq!(held.entity.map(|e| e.key), Some("k".to_owned()));
        assert_eq!(
            (slots.requests(), slots.tasks()),
            (1, 1),
            "a finished task whose request had ended frees no second slot"
        );
        slots.finished(ids[1]);
        assert_eq!((slots.requests(), slots.tasks()), (0, 0));
    }

    #[tokio::test]
    async fn dropping_a_release_inside_a_task_names_that_task() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let release = SlotRelease::new(tx);
        let task = tokio::spawn(async move { drop(release) });
        let id = task.id();
        task.await.unwrap();
        assert_eq!(rx.recv().await, Some(id));
    }
}
