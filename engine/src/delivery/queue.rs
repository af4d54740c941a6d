//! What waits to be delivered, in memory: the dispatcher's queue. Rows come from the processor
//! as soon as they are committed (and from the store after a start, a replay or an overflow);
//! a row leaves the queue when its delivery starts and comes back if it must be tried again.
//!
//! The queue keeps the ordering promises:
//! - the rows of one entity (kind, target, key) go one at a time, in event acceptance order
//!   (`event_seq`, then `id`): only an entity's first row is ever ready, and only while none of
//!   its rows is in flight;
//! - a row of an entity waits until every event of its route accepted before its own was
//!   processed (the route's watermark; for a row loaded from the store, whose route the queue
//!   does not know, every route's), since an older row of its entity could still appear;
//! - a row waits for its next attempt time.
//!
//! A freed slot takes the next ready row at once: readiness changes only when something
//! happens (a row arrives, a delivery ends, a time passes, the watermark moves), and each of
//! those moves the rows it concerns to where they belong.
//!
//! Memory is bounded: once the queue holds its [`Capacity`], a *lane* (a destination, or the
//! HMS core) that gets a new row stops taking rows past the last one it holds and becomes
//! partial; the store keeps the rest. A partial lane loads its next page from the store when it
//! has worked most of its rows off. A lane always holds every pending row up to its cut, so an
//! entity's rows (which share a lane) still go in order, and one lane's backlog never keeps
//! another's rows out.

use crate::pipeline::handoff::Watermarks;
use crate::store::{EntityRef, OutboxRow};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// What the queue may hold in memory before it leaves the rest in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Capacity {
    /// Rows.
    pub(super) rows: usize,
    /// Bytes of bodies.
    pub(super) bytes: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            rows: 100_000,
            bytes: 64 << 20,
        }
    }
}

/// A row's place in event acceptance order.
pub(super) type Order = (i64, i64);

/// How many rows a partial lane loads at a time; it loads again once it holds fewer than half.
pub(super) const LOAD_PAGE: usize = 1000;

/// What the queue knows of one lane.
#[derive(Debug, Default)]
struct Lane {
    /// Rows waiting in the queue.
    rows: usize,
    /// When the store may hold rows of the lane that the queue does not: the last row the
    /// queue holds, in order. Every pending row of the lane up to it is in the queue or in
    /// flight.
    cut: Option<Order>,
}

pub(super) fn order(row: &OutboxRow) -> Order {
    (row.event_seq, row.id)
}

/// The pending rows the dispatcher knows, and which of them are ready.
#[derive(Debug, Default)]
pub(super) struct Queue {
    capacity: Capacity,
    /// Every row waiting (not in flight), by id.
    rows: HashMap<i64, OutboxRow>,
    /// Bytes of the waiting rows' bodies.
    bytes: usize,
    /// The waiting rows of each entity, in order.
    entities: HashMap<EntityRef, BTreeSet<Order>>,
    /// Rows in flight, and the entities they hold.
    in_flight: HashSet<i64>,
    busy: HashSet<EntityRef>,
    /// Rows ready to send, per target, oldest placement first.
    ready: HashMap<String, VecDeque<i64>>,
    /// Targets with ready rows, in the order they are served.
    targets: VecDeque<String>,
    /// Rows waiting for a time: (due at, id).
    timers: BinaryHeap<Reverse<(i64, i64)>>,
    /// Rows of entities waiting for their watermark.
    held: BTreeSet<Order>,
    /// Each route's watermark: every event of the route below it has been processed.
    watermarks: Watermarks,
    /// The route of each row the processor handed over (rows loaded from the store have none).
    route_of: HashMap<i64, Arc<str>>,
    /// The time the queue was last told (Unix ms).
    now: i64,
    /// The lanes with rows, by name (a destination, or `hms-core`).
    lanes: HashMap<String, Lane>,
}

impl Queue {
    /// An empty queue that holds at most `capacity` in memory, knowing nothing is processed.
    pub(super) fn new(capacity: Capacity) -> Queue {
        Queue {
            capacity,
            ..Queue::default()
        }
    }

    /// How many rows wait.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the queue is at its capacity.
    fn is_full(&self) -> bool {
        self.rows.len() >= self.capacity.rows || self.bytes >= self.capacity.bytes
    }

    /// Forgets every waiting row and lane (not the rows in flight), before loading the store's
    /// again.
    pub(super) fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
        self.entities.clear();
        self.ready.clear();
        self.targets.clear();
        self.timers.clear();
        self.held.clear();
        self.lanes.clear();
        let in_flight = &self.in_flight;
        self.route_of.retain(|id, _| in_flight.contains(id));
    }

    /// A page of a lane's rows from the store, in event order, starting past its cut; the lane
    /// is partial until a page comes back short (`complete`).
    #[cfg(test)]
    pub(super) fn loaded(&mut self, lane: &str, rows: Vec<OutboxRow>, complete: bool) {
        let last = rows.last().map(order);
        self.loaded_through(lane, rows, complete, last);
    }

    /// [`Queue::loaded`] for a page of which only `rows` are this engine's (engines share
    /// delivery): the page read through `through`, which the lane's next page starts after.
    pub(super) fn loaded_through(
        &mut self,
        lane: &str,
        rows: Vec<OutboxRow>,
        complete: bool,
        through: Option<Order>,
    ) {
        let last = through;
        for row in rows {
            self.insert(row);
        }
        let lane = self.lanes.entry(lane.to_owned()).or_default();
        lane.cut = if complete { None } else { last.or(lane.cut) };
    }

    /// The partial lanes that hold fewer than half a page, with the row to load past.
    pub(super) fn to_load(&self) -> Vec<(String, Order)> {
        self.lanes
            .iter()
            .filter_map(|(name, lane)| {
                let cut = lane.cut?;
                (lane.rows < LOAD_PAGE / 2).then(|| (name.clone(), cut))
            })
            .collect()
    }

    /// A row the processor just committed, with its event's route. Kept unless its lane is
    /// partial and the row lies past its cut (the store keeps it for the lane's next page).
    /// Once the queue is full, a lane that gets a row becomes partial after the last row it
    /// holds; a row before that (a replayed older event's) is still kept, so its entity's rows
    /// go in order.
    pub(super) fn handed_on(&mut self, route: &Arc<str>, row: OutboxRow) {
        let id = row.id;
        let known = self.rows.contains_key(&id) || self.in_flight.contains(&id);
        if known {
            return;
        }
        // Known before the row is placed: it waits for its route's watermark only.
        self.route_of.insert(id, route.clone());
        if !self.handed(row) {
            self.route_of.remove(&id);
        }
    }

    /// [`Queue::handed_on`] for a row whose route is not known. Answers whether it was kept.
    pub(super) fn handed(&mut self, row: OutboxRow) -> bool {
        let name = row.action.target_name().to_owned();
        let full = self.is_full();
        let held_last = || {
            self.rows
                .values()
                .filter(|r| r.action.target_name() == name)
                .map(order)
                .max()
                .unwrap_or((i64::MIN, i64::MIN))
        };
        let cut = match self.lanes.get(&name).and_then(|lane| lane.cut) {
            Some(cut) => Some(cut),
            None if full => {
                let last = held_last();
                self.lanes.entry(name).or_default().cut = Some(last);
                Some(last)
            }
            None => None,
        };
        if cut.is_some_and(|cut| order(&row) > cut) {
            return false;
        }
        self.insert(row);
        true
    }

    /// Whether a row lies past its lane's cut (the store keeps it).
    fn past_cut(&self, row: &OutboxRow) -> bool {
        self.lanes
            .get(row.action.target_name())
            .and_then(|lane| lane.cut)
            .is_some_and(|cut| order(row) > cut)
    }

    /// Adds a waiting row (one already known, waiting or in flight, is ignored).
    fn insert(&mut self, row: OutboxRow) {
        if self.rows.contains_key(&row.id) || self.in_flight.contains(&row.id) {
            return;
        }
        let id = row.id;
        self.bytes += row.action.body.len();
        self.lanes
            .entry(row.action.target_name().to_owned())
            .or_default()
            .rows += 1;
        if let Some(entity) = row.action.entity() {
            self.entities.entry(entity).or_default().insert(order(&row));
        }
        self.rows.insert(id, row);
        self.place(id);
    }

    /// Puts a waiting row where it belongs now: ready, waiting for its time, waiting for the
    /// watermark, or nowhere (its entity has an earlier row, or one in flight: the row is
    /// placed again when that changes).
    fn place(&mut self, id: i64) {
        let Some(row) = self.rows.get(&id) else {
            return;
        };
        if let Some(entity) = row.action.entity() {
            if self.busy.contains(&entity) || self.head(&entity) != Some(order(row)) {
                return;
            }
            if row.event_seq >= self.watermark_of(row) {
                self.held.insert(order(row));
                return;
            }
        }
        if row.next_attempt_at > self.now {
            self.timers.push(Reverse((row.next_attempt_at, id)));
            return;
        }
        let target = row.action.target_name().to_owned();
        let ready = self.ready.entry(target.clone()).or_default();
        if ready.is_empty() {
            self.targets.push_back(target);
        }
        ready.push_back(id);
    }

    /// The first waiting row of an entity.
    fn head(&self, entity: &EntityRef) -> Option<Order> {
        self.entities.get(entity)?.first().copied()
    }

    /// Whether a row taken from the ready list may go now.
    fn may_go(&self, row: &OutboxRow) -> bool {
        if row.next_attempt_at > self.now {
            return false;
        }
        match row.action.entity() {
            Some(entity) => {
                !self.busy.contains(&entity)
                    && self.head(&entity) == Some(order(row))
                    && row.event_seq < self.watermark_of(row)
            }
            None => true,
        }
    }

    /// The time is now `now` (Unix ms): rows whose time has come become ready.
    pub(super) fn advance(&mut self, now: i64) {
        self.now = now;
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            // Placed again only if its time is still this one (it may have moved since).
            if self.rows.get(&id).is_some_and(|r| r.next_attempt_at == at) {
                self.place(id);
            }
        }
    }

    /// The watermark a row waits for: its route's, or every route's.
    fn watermark_of(&self, row: &OutboxRow) -> i64 {
        self.watermarks.of(self.route_of.get(&row.id))
    }

    /// Each route's watermark now: the rows it lets go may.
    pub(super) fn set_watermarks(&mut self, watermarks: &Watermarks) {
        if *watermarks == self.watermarks {
            return;
        }
        self.watermarks = watermarks.clone();
        let released: Vec<Order> = self
            .held
            .iter()
            .filter(|(seq, id)| {
                self.rows
                    .get(id)
                    .is_none_or(|row| *seq < self.watermark_of(row))
            })
            .copied()
            .collect();
        for order in released {
            self.held.remove(&order);
            self.place(order.1);
        }
    }

    /// Every event below `watermark` has been processed (whatever its route).
    #[cfg(test)]
    pub(super) fn set_watermark(&mut self, watermark: i64) {
        let mut watermarks = Watermarks {
            started: true,
            ..Watermarks::default()
        };
        watermarks.routes.insert(Arc::from(""), watermark);
        self.set_watermarks(&watermarks);
    }

    /// When the next waiting row's time comes, if one waits for a time.
    pub(super) fn next_time(&self) -> Option<i64> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The next row to send to a target that `has_room`, serving targets in turn; the row is
    /// then in flight (with its entity) until [`Queue::finished`].
    pub(super) fn take(&mut self, has_room: impl Fn(&str) -> bool) -> Option<OutboxRow> {
        for _ in 0..self.targets.len() {
            let target = self.targets.pop_front()?;
            if !has_room(&target) {
                self.targets.push_back(target);
                continue;
            }
            let mut taken = None;
            while let Some(id) = self.ready.get_mut(&target).and_then(VecDeque::pop_front) {
                match self.rows.get(&id) {
                    Some(row) if self.may_go(row) => {
                        taken = Some(id);
                        break;
                    }
                    // Stale: placed again where it belongs now (never back in this list).
                    Some(_) => self.place(id),
                    None => {}
                }
            }
            if self.ready.get(&target).is_some_and(|r| !r.is_empty()) {
                self.targets.push_back(target);
            } else {
                self.ready.remove(&target);
            }
            if let Some(id) = taken {
                return Some(self.start(id));
            }
        }
        None
    }

    /// Takes a waiting row out of the counts.
    fn forget(&mut self, id: i64) -> Option<OutboxRow> {
        let row = self.rows.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(row.action.body.len());
        if let Some(lane) = self.lanes.get_mut(row.action.target_name()) {
            lane.rows = lane.rows.saturating_sub(1);
        }
        Some(row)
    }

    /// Moves a waiting row in flight.
    fn start(&mut self, id: i64) -> OutboxRow {
        let row = self.forget(id).expect("a waiting row");
        if let Some(entity) = row.action.entity() {
            if let Some(rows) = self.entities.get_mut(&entity) {
                rows.remove(&order(&row));
                if rows.is_empty() {
                    self.entities.remove(&entity);
                }
            }
            self.busy.insert(entity);
        }
        self.in_flight.insert(id);
        row
    }

    /// The delivery of row `id` (of `entity`) ended. `again` is the row when it must be tried
    /// again (with its next attempt time); `superseded` the rows its delivered version made
    /// stale, which leave the queue.
    pub(super) fn finished(
        &mut self,
        id: i64,
        entity: Option<&EntityRef>,
        again: Option<OutboxRow>,
        superseded: &[i64],
    ) {
        self.in_flight.remove(&id);
        if again.is_none() {
            self.route_of.remove(&id);
        }
        if let Some(entity) = entity {
            self.busy.remove(entity);
        }
        for id in superseded {
            self.remove(*id);
        }
        if let Some(again) = again
            && !self.past_cut(&again)
        {
            self.insert(again);
        }
        if let Some(entity) = entity
            && let Some((_, id)) = self.head(entity)
        {
            self.place(id);
        }
    }

    /// Drops a waiting row (superseded in the store); its entity's next row moves up.
    fn remove(&mut self, id: i64) {
        self.route_of.remove(&id);
        let Some(row) = self.forget(id) else {
            return;
        };
        if let Some(entity) = row.action.entity() {
            let mut next = None;
            if let Some(rows) = self.entities.get_mut(&entity) {
                rows.remove(&order(&row));
                next = rows.first().map(|(_, id)| *id);
                if rows.is_empty() {
                    self.entities.remove(&entity);
                }
            }
            self.held.remove(&order(&row));
            if let Some(next) = next {
                self.place(next);
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::store::samples;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// What happens to the queue, one step at a time.
    #[derive(Debug, Clone)]
    enum Step {
        /// The processor hands over the next row (rows come in acceptance order).
        Hand,
        /// A slot is free: the queue gives its next ready row.
        Take,
        /// A delivery in flight ends: delivered, or to be tried again `retry` ms later.
        Finish { which: usize, retry: Option<u16> },
        /// Time passes.
        Advance(u16),
        /// The processor's watermark moves (it can move back after a replay).
        Watermark(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Hand),
            3 => Just(Step::Take),
            3 => (any::<usize>(), proptest::option::of(1u16..500))
                .prop_map(|(which, retry)| Step::Finish { which, retry }),
            1 => (1u16..1000).prop_map(Step::Advance),
            1 => (0u8..64).prop_map(Step::Watermark),
        ]
    }

    proptest! {
        /// Whatever the interleaving of rows arriving, slots freeing, deliveries failing and
        /// retrying, time passing and the watermark moving: an entity has one row in flight at
        /// most, its rows are delivered in acceptance order, a keyed row goes only below the
        /// watermark, and in the end every row is delivered exactly once.
        #[test]
        fn per_entity_order_holds_under_any_interleaving(
            keys in proptest::collection::vec(proptest::option::of(0u8..4), 1..40),
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let rows: Vec<OutboxRow> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let id = i as i64 + 1;
                    let target = if i % 3 == 0 { "b" } else { "a" };
                    let key = key.map(|k| format!("k{k}"));
                    let mut row = samples::row(id, &format!("e{id}"), target, key.as_deref());
                    row.event_seq = id;
                    row
                })
                .collect();
            let mut q = Queue::new(Capacity::default());
            let (mut now, mut watermark, mut handed) = (0i64, 0i64, 0usize);
            let mut in_flight: Vec<OutboxRow> = Vec::new();
            let mut delivered: Vec<i64> = Vec::new();
            let take = |q: &mut Queue, in_flight: &mut Vec<OutboxRow>, watermark: i64| -> Result<bool, TestCaseError> {
                let Some(row) = q.take(|_| true) else { return Ok(false) };
                if let Some(entity) = row.action.entity() {
                    prop_assert!(row.event_seq < watermark, "row {} went at watermark {watermark}", row.id);
                    prop_assert!(
                        in_flight.iter().all(|r| r.action.entity().as_ref() != Some(&entity)),
                        "two rows of {entity:?} in flight"
                    );
                }
                in_flight.push(row);
                Ok(true)
            };
            for step in steps {
                match step {
                    Step::Hand if handed < rows.len() => {
                        q.handed(rows[handed].clone());
                        handed += 1;
                    }
                    Step::Hand => {}
                    Step::Take => {
                        take(&mut q, &mut in_flight, watermark)?;
                    }
                    Step::Finish { which, retry } if !in_flight.is_empty() => {
                        let row = in_flight.remove(which % in_flight.len());
                        let again = retry.map(|after| {
                            let mut again = row.clone();
                            again.attempts += 1;
                            again.next_attempt_at = now + i64::from(after);
                            again
                        });
                        if again.is_none() {
                            delivered.push(row.id);
                        }
                        q.finished(row.id, row.action.entity().as_ref(), again, &[]);
                    }
                    Step::Finish { .. } => {}
                    Step::Advance(ms) => {
                        now += i64::from(ms);
                        q.advance(now);
                    }
                    Step::Watermark(w) => {
                        watermark = i64::from(w);
                        q.set_watermark(watermark);
                    }
                }
            }
            // Then everything is handed, processed and delivered.
            for row in &rows[handed..] {
                q.handed(row.clone());
            }
            watermark = i64::MAX;
            q.set_watermark(watermark);
            now += 1_000_000;
            q.advance(now);
            loop {
                while take(&mut q, &mut in_flight, watermark)? {}
                let Some(row) = in_flight.pop() else { break };
                delivered.push(row.id);
                q.finished(row.id, row.action.entity().as_ref(), None, &[]);
            }
            let mut once = delivered.clone();
            once.sort_unstable();
            prop_assert_eq!(once, (1..=rows.len() as i64).collect::<Vec<_>>(), "each row once");
            // Per entity, in acceptance order.
            let mut last: HashMap<EntityRef, i64> = HashMap::new();
            for id in delivered {
                let row = &rows[id as usize - 1];
                if let Some(entity) = row.action.entity() {
                    let before = last.insert(entity.clone(), row.event_seq);
                    prop_assert!(before < Some(row.event_seq), "{entity:?}: {before:?} then {}", row.event_seq);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::samples;

    fn row(id: i64, seq: i64, target: &str, key: Option<&str>, due: i64) -> OutboxRow {
        let mut row = samples::row(id, &format!("e{seq}"), target, key);
        row.event_seq = seq;
        row.next_attempt_at = due;
        row
    }

    fn queue() -> Queue {
        let mut q = Queue::new(Capacity::default());
        q.set_watermark(i64::MAX);
        q.advance(100);
        q
    }

    /// The delivery of `row` ended.
    fn done(q: &mut Queue, row: &OutboxRow, again: Option<OutboxRow>, superseded: &[i64]) {
        q.finished(row.id, row.action.entity().as_ref(), again, superseded);
    }

    fn take_all(q: &mut Queue) -> Vec<i64> {
        std::iter::from_fn(|| q.take(|_| true))
            .map(|r| r.id)
            .collect()
    }

    #[test]
    fn one_row_of_an_entity_at_a_time_in_event_order() {
        let mut q = queue();
        q.handed(row(2, 20, "api", Some("a"), 0));
        q.handed(row(3, 30, "api", Some("b"), 0));
        q.handed(row(4, 40, "api", None, 0));
        // A replayed older event's row for a arrives late: it goes first.
        q.handed(row(9, 10, "api", Some("a"), 0));
        let first = take_all(&mut q);
        assert_eq!(first, [3, 4, 9]);
        assert!(
            q.take(|_| true).is_none(),
            "a's next row waits for the one in flight"
        );
        let nine = row(9, 10, "api", Some("a"), 0);
        done(&mut q, &nine, None, &[]);
        assert_eq!(take_all(&mut q), [2]);
    }

    #[test]
    fn a_retry_waits_for_its_time_and_holds_its_entity() {
        let mut q = queue();
        q.handed(row(1, 1, "api", Some("a"), 0));
        q.handed(row(2, 2, "api", Some("a"), 0));
        q.handed(row(3, 3, "api", Some("b"), 0));
        let taken = take_all(&mut q);
        assert_eq!(taken, [1, 3]);
        let mut again = row(1, 1, "api", Some("a"), 5_000);
        again.attempts = 1;
        done(&mut q, &row(1, 1, "api", Some("a"), 0), Some(again), &[]);
        done(&mut q, &row(3, 3, "api", Some("b"), 0), None, &[]);
        assert!(
            q.take(|_| true).is_none(),
            "a waits for its retry; b is done"
        );
        assert_eq!(q.next_time(), Some(5_000));
        q.advance(5_000);
        assert_eq!(take_all(&mut q), [1]);
        done(&mut q, &row(1, 1, "api", Some("a"), 5_000), None, &[]);
        assert_eq!(
            take_all(&mut q),
            [2],
            "a's next row goes once the retry is done"
        );
    }

    #[test]
    fn keyed_rows_wait_for_the_watermark() {
        let mut q = Queue::new(Capacity::default());
        q.advance(100);
        q.set_watermark(5);
        q.handed(row(1, 4, "api", Some("a"), 0));
        q.handed(row(2, 7, "api", Some("b"), 0));
        q.handed(row(3, 8, "api", None, 0));
        assert_eq!(take_all(&mut q), [1, 3]);
        q.set_watermark(8);
        assert_eq!(take_all(&mut q), [2]);
    }

    #[test]
    fn a_keyed_row_waits_for_its_own_routes_watermark_and_a_loaded_one_for_every_routes() {
        let mut q = Queue::new(Capacity::default());
        q.advance(100);
        let (fast, slow): (Arc<str>, Arc<str>) = (Arc::from("bus:fast"), Arc::from("bus:slow"));
        let mut watermarks = Watermarks {
            started: true,
            ..Watermarks::default()
        };
        watermarks.routes.insert(fast.clone(), i64::MAX);
        watermarks.routes.insert(slow.clone(), 3);
        q.set_watermarks(&watermarks);
        // Route fast has processed everything; route slow is stuck at event 3.
        q.handed_on(&fast, row(1, 10, "api", Some("a"), 0));
        q.handed_on(&slow, row(2, 11, "api", Some("b"), 0));
        // Loaded from the store after a start: its route is not known.
        q.loaded("api", vec![row(3, 12, "api", Some("c"), 0)], true);
        assert_eq!(take_all(&mut q), [1]);
        watermarks.routes.insert(slow.clone(), 12);
        q.set_watermarks(&watermarks);
        assert_eq!(take_all(&mut q), [2]);
        watermarks.routes.insert(slow, i64::MAX);
        q.set_watermarks(&watermarks);
        assert_eq!(take_all(&mut q), [3]);
    }

    #[test]
    fn nothing_keyed_goes_before_the_processor_names_its_routes() {
        let mut q = Queue::new(Capacity::default());
        q.advance(100);
        q.set_watermarks(&Watermarks::default());
        q.loaded("api", vec![row(1, 1, "api", Some("a"), 0)], true);
        q.handed(row(2, 2, "api", None, 0));
        assert_eq!(take_all(&mut q), [2]);
        q.set_watermarks(&Watermarks {
            started: true,
            ..Watermarks::default()
        });
        assert_eq!(take_all(&mut q), [1]);
    }

    #[test]
    fn targets_are_served_in_turn_within_their_room() {
        let mut q = queue();
        for id in 1..=4 {
            q.handed(row(id, id, "slow", None, 0));
        }
        q.handed(row(5, 5, "fast", None, 0));
        let first = q.take(|_| true).unwrap().id;
        let second = q.take(|_| true).unwrap().id;
        assert_eq!((first, second), (1, 5));
        // The slow target is full: nothing else goes.
        assert!(q.take(|t| t != "slow").is_none());
        assert_eq!(q.take(|_| true).unwrap().id, 2);
    }

    #[test]
    fn superseded_rows_leave_and_the_next_row_moves_up() {
        let mut q = queue();
        q.handed(row(1, 1, "api", Some("a"), 0));
        q.handed(row(2, 2, "api", Some("a"), 0));
        q.handed(row(3, 3, "api", Some("a"), 0));
        assert_eq!(take_all(&mut q), [1]);
        done(&mut q, &row(1, 1, "api", Some("a"), 0), None, &[2]);
        assert_eq!(take_all(&mut q), [3]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_partial_lane_loads_its_next_page_and_leaves_the_rest_in_the_store() {
        let mut q = queue();
        let page: Vec<OutboxRow> = (1..=3).map(|id| row(id, id, "api", Some("a"), 0)).collect();
        q.loaded("api", page, false);
        assert_eq!(q.to_load(), [("api".to_owned(), (3, 3))]);
        // A row past the cut stays in the store; one before it is kept.
        q.handed(row(9, 9, "api", None, 0));
        q.handed(row(7, 0, "api", None, 0));
        assert_eq!(take_all(&mut q), [1, 7]);
        q.loaded("api", vec![row(9, 9, "api", None, 0)], true);
        assert!(q.to_load().is_empty());
        assert_eq!(take_all(&mut q), [9]);
        q.clear();
        assert_eq!(q.len(), 0);
    }
}

#[cfg(test)]
mod filling {
    use super::*;
    use crate::store::samples;

    #[test]
    fn a_full_queue_leaves_new_rows_of_a_lane_in_the_store_but_not_another_lanes() {
        let mut q = Queue::new(Capacity {
            rows: 2,
            bytes: 1 << 20,
        });
        q.set_watermark(i64::MAX);
        q.advance(100);
        let row = |id: i64, seq: i64, target: &str| {
            let mut row = samples::row(id, &format!("e{seq}"), target, Some("a"));
            row.event_seq = seq;
            row
        };
        q.handed(row(1, 10, "down"));
        q.handed(row(2, 20, "down"));
        // Full: a newer row of the lane stays in the store, an older one (a replay's) comes in.
        q.handed(row(3, 30, "down"));
        q.handed(row(4, 5, "down"));
        assert_eq!(q.to_load(), [("down".to_owned(), (20, 2))]);
        // Another lane becomes partial with nothing held, and loads its own page.
        q.handed(row(5, 40, "up"));
        let mut lanes = q.to_load();
        lanes.sort();
        assert_eq!(lanes[1], ("up".to_owned(), (i64::MIN, i64::MIN)));
        q.loaded("up", vec![row(5, 40, "up")], true);
        let first: Vec<i64> = std::iter::from_fn(|| q.take(|_| true))
            .map(|r| r.id)
            .collect();
        assert_eq!(
            first,
            [4, 5],
            "the down lane's entity goes in order; up is not held back"
        );
    }
}
