//! The hand-off from the processor to the dispatcher, in memory: the rows each processed
//! event queued for delivery, as soon as they are committed, and the *watermark*, below which
//! every accepted event has been processed. The store stays the record: after a start, a replay
//! or an overflow the dispatcher reads pending rows from it; in the steady state it reads
//! nothing.

use crate::store::OutboxRow;
use tokio::sync::{mpsc, watch};

/// No event is known to be processed yet: keyed rows wait (see [`Handoff::watermark`]).
pub const NOTHING_PROCESSED: i64 = 0;
/// Every event read so far was processed.
pub const ALL_PROCESSED: i64 = i64::MAX;

/// The processor's side.
#[derive(Debug, Clone)]
pub struct Handoff {
    rows: mpsc::UnboundedSender<Vec<OutboxRow>>,
    watermark: watch::Sender<i64>,
}

/// The dispatcher's side.
#[derive(Debug)]
pub struct Handed {
    /// Rows queued for delivery, each batch in acceptance order.
    pub rows: mpsc::UnboundedReceiver<Vec<OutboxRow>>,
    /// The watermark: every event with a lower `seq` has been processed.
    pub watermark: watch::Receiver<i64>,
}

/// A hand-off and its receiving side.
pub fn channel() -> (Handoff, Handed) {
    let (rows, rows_rx) = mpsc::unbounded_channel();
    let (watermark, watermark_rx) = watch::channel(NOTHING_PROCESSED);
    (
        Handoff { rows, watermark },
        Handed {
            rows: rows_rx,
            watermark: watermark_rx,
        },
    )
}

impl Handoff {
    /// Hands over rows that were just committed. A dispatcher that has stopped does not mind.
    pub fn rows(&self, rows: Vec<OutboxRow>) {
        if !rows.is_empty() {
            let _ = self.rows.send(rows);
        }
    }

    /// Every event with a `seq` lower than `watermark` has been processed, so no older row can
    /// still appear for an entity whose rows come from events below it.
    pub fn watermark(&self, watermark: i64) {
        self.watermark.send_if_modified(|held| {
            let changed = *held != watermark;
            *held = watermark;
            changed
        });
    }
}
