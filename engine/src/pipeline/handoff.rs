//! The hand-off from the processor to the dispatcher, in memory: the rows each processed
//! event queued for delivery, as soon as they are committed, with the route the event came on,
//! and each route's *watermark*, below which every event of that route has been processed. The
//! store stays the record: after a start, a replay or an overflow the dispatcher reads pending
//! rows from it; in the steady state it reads nothing.

use crate::store::OutboxRow;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// No event is known to be processed yet: keyed rows wait (see [`Handoff::watermark`]).
pub const NOTHING_PROCESSED: i64 = 0;
/// Every event read so far was processed.
pub const ALL_PROCESSED: i64 = i64::MAX;

/// Each route's watermark, by route (`bus:<type>`, `webhook:<path>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// Whether the processor has named every route it reads (until then nothing is known to
    /// be processed).
    pub started: bool,
    /// The watermark of each route.
    pub routes: HashMap<Arc<str>, i64>,
}

impl Watermarks {
    /// The watermark of the rows of `route` (`None`: a row whose route is not known, which
    /// must wait for every route).
    pub fn of(&self, route: Option<&Arc<str>>) -> i64 {
        if !self.started {
            return NOTHING_PROCESSED;
        }
        match route.and_then(|route| self.routes.get(route)) {
            Some(watermark) => *watermark,
            None => self.lowest(),
        }
    }

    /// The watermark below which every event of every route has been processed: the lowest
    /// route's, or [`ALL_PROCESSED`] when no route has events.
    pub fn lowest(&self) -> i64 {
        if !self.started {
            return NOTHING_PROCESSED;
        }
        self.routes.values().copied().min().unwrap_or(ALL_PROCESSED)
    }
}

/// Rows one processed batch of a route queued, with the route.
#[derive(Debug)]
pub struct HandedRows {
    /// The route the rows' events came on.
    pub route: Arc<str>,
    /// The rows, in acceptance order.
    pub rows: Vec<OutboxRow>,
}

/// The processor's side.
#[derive(Debug, Clone)]
pub struct Handoff {
    rows: mpsc::UnboundedSender<HandedRows>,
    watermarks: watch::Sender<Watermarks>,
}

/// Which rows this engine delivers, when engines share delivery.
pub type RowFilter = Arc<dyn Fn(&OutboxRow) -> bool + Send + Sync>;

/// The dispatcher's side.
pub struct Handed {
    /// Rows queued for delivery, each batch in acceptance order.
    pub rows: mpsc::UnboundedReceiver<HandedRows>,
    /// Each route's watermark: every event of the route with a lower `seq` has been processed.
    /// A route not in it has processed nothing yet.
    pub watermarks: watch::Receiver<Watermarks>,
    /// The rows this engine delivers, when engines share delivery (the others' are skipped,
    /// handed or read from the store); all rows without.
    pub owns: Option<RowFilter>,
}

impl std::fmt::Debug for Handed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handed")
            .field("rows", &self.rows)
            .field("watermarks", &self.watermarks)
            .field("owns", &self.owns.is_some())
            .finish()
    }
}

/// A hand-off and its receiving side.
pub fn channel() -> (Handoff, Handed) {
    let (rows, rows_rx) = mpsc::unbounded_channel();
    let (watermarks, watermarks_rx) = watch::channel(Watermarks::default());
    (
        Handoff { rows, watermarks },
        Handed {
            rows: rows_rx,
            watermarks: watermarks_rx,
            owns: None,
        },
    )
}

impl Handoff {
    /// Hands over rows of `route` that were just committed. A dispatcher that has stopped does
    /// not mind.
    pub fn rows(&self, route: &Arc<str>, rows: Vec<OutboxRow>) {
        if !rows.is_empty() {
            let _ = self.rows.send(HandedRows {
                route: route.clone(),
                rows,
            });
        }
    }

    /// The processor reads these routes, none of whose events is known to be processed yet.
    /// Until this is said, no route's events are.
    pub fn start(&self, routes: &[Arc<str>]) {
        self.watermarks.send_modify(|held| {
            held.started = true;
            for route in routes {
                held.routes.insert(route.clone(), NOTHING_PROCESSED);
            }
        });
    }

    /// Every event of `route` with a `seq` lower than `watermark` has been processed, so no
    /// older row of that route can still appear for an entity.
    pub fn watermark(&self, route: &Arc<str>, watermark: i64) {
        self.watermarks.send_if_modified(|held| {
            let changed = held.routes.get(route) != Some(&watermark);
            held.routes.insert(route.clone(), watermark);
            changed
        });
    }
}
