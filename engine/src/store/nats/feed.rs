//! The dispatcher's hand-off when engines share processing: the deliveries every engine's
//! processing queued, as this replica applies them, with each route's watermark.
//!
//! With one engine processing, its processor hands the dispatcher its rows and watermarks in
//! memory (`pipeline::handoff`). When several process (each its partitions), the engine that
//! delivers learns of rows from the log instead: the follower's collector offers every
//! `Complete` answer here, in log order, whoever wrote it. Each answer carries where its route's
//! watermark stood right after it was applied (the oldest event of the route still
//! unprocessed at that point of the log), and the watermark moves to it just before the rows are
//! handed over: a watermark never passes an event whose rows are not handed over yet.

use crate::pipeline::handoff::{ALL_PROCESSED, Handed, HandedRows, NOTHING_PROCESSED, Watermarks};
use crate::store::{OutboxRow, SqliteStore};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, watch};

/// Rows queued by applied writes; see the module.
#[derive(Clone, Default)]
pub struct Feed {
    listener: Arc<Mutex<Option<Listener>>>,
}

struct Listener {
    rows: mpsc::UnboundedSender<HandedRows>,
    watermarks: watch::Sender<Watermarks>,
}

impl Feed {
    /// Offers the rows a `Complete` queued, on `route`, whose watermark stood at `floor` once
    /// it was applied (called in log order).
    pub(super) fn offer(&self, route: &str, floor: Option<i64>, rows: &[OutboxRow]) {
        let listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(listener) = listener.as_ref() else {
            return;
        };
        let route = Arc::<str>::from(route);
        listener.watermarks.send_modify(|held| {
            held.routes
                .insert(route.clone(), floor.unwrap_or(ALL_PROCESSED));
        });
        let _ = listener.rows.send(HandedRows {
            route,
            rows: rows.to_vec(),
        });
    }

    /// Events became pending again (a replay): every route's watermark goes down to its
    /// oldest unprocessed event, if that is lower.
    pub(super) fn requeued(&self, store: &SqliteStore) {
        let listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listener) = listener.as_ref() {
            listener.watermarks.send_modify(|held| {
                for (route, watermark) in &mut held.routes {
                    let floor = store
                        .pending_floor(route)
                        .map_or(NOTHING_PROCESSED, |floor| floor.unwrap_or(ALL_PROCESSED));
                    *watermark = (*watermark).min(floor);
                }
            });
        }
    }

    /// A hand-off for a dispatcher: every row queued from now on, and the watermarks of
    /// `routes` (a route not among them waits for all), starting from what `store` holds now
    /// (the dispatcher reads the rows already queued from the store when it starts). A new
    /// hand-off replaces the last.
    pub fn handed(
        &self,
        store: &SqliteStore,
        routes: &[Arc<str>],
        owns: Option<crate::pipeline::handoff::RowFilter>,
    ) -> Handed {
        let (rows, rows_rx) = mpsc::unbounded_channel();
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        let mut start = Watermarks {
            started: true,
            routes: Default::default(),
        };
        for route in routes {
            let floor = store
                .pending_floor(route)
                .map_or(NOTHING_PROCESSED, |floor| floor.unwrap_or(ALL_PROCESSED));
            start.routes.insert(route.clone(), floor);
        }
        let (watermarks, watermarks_rx) = watch::channel(start);
        *listener = Some(Listener { rows, watermarks });
        Handed {
            rows: rows_rx,
            watermarks: watermarks_rx,
            owns,
        }
    }
}
