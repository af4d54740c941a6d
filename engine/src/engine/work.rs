//! The engine's work on the store, each part a stage: processing, delivery and housekeeping;
//! with a store shared by several engines, under the work lease or by partition.

use crate::delivery::Dispatcher;
use crate::http::health::Stage;
use crate::metrics::Metrics;
use crate::pipeline::{Routes, run_processor};
use crate::registry::Registry;
use crate::store::SqliteStore;
use anyhow::Context;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The engine's work on the store: processing, delivery and housekeeping, each a stage.
pub(super) struct Work {
    pub(super) queue: Arc<dyn crate::store::WorkQueue>,
    pub(super) retention: Arc<dyn crate::store::Retention>,
    pub(super) routes: Arc<Routes>,
    pub(super) registry: Arc<Registry>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) store: crate::config::StoreConfig,
    pub(super) workers: usize,
    /// The processor, the dispatcher, housekeeping.
    pub(super) stages: [Stage; 3],
    /// When engines share the work by partition: the rows every engine's processing queued, as
    /// this replica applies them (the dispatcher's hand-off), and the replica.
    pub(super) shared_processing: Option<(crate::store::nats::Feed, SqliteStore)>,
}

impl Work {
    /// Starts the processor stage until `term`, on the events `owns` selects (all without).
    fn processor(
        &self,
        handoff: crate::pipeline::handoff::Handoff,
        owns: Option<crate::pipeline::EventFilter>,
        term: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.stages[0].spawn(
            run_processor(
                self.queue.clone(),
                self.routes.clone(),
                self.registry.clone(),
                self.metrics.clone(),
                handoff,
                self.workers,
                owns,
                term.clone(),
            ),
            term.clone(),
        )
    }

    /// The dispatcher's hand-off for the partitions `set` of `count`: the rows of the entities
    /// (or, without a key, the events) that hash into them, from the log.
    fn delivering(
        &self,
        set: std::collections::BTreeSet<u32>,
        count: u32,
    ) -> crate::pipeline::handoff::Handed {
        let Some((feed, store)) = &self.shared_processing else {
            unreachable!("only with the work shared by partition");
        };
        let owns: crate::pipeline::handoff::RowFilter = Arc::new(move |row| {
            let partition = match row.action.entity() {
                Some(entity) => crate::store::nats::lease::stable_hash(&[
                    entity.kind.as_str(),
                    &entity.target,
                    &entity.key,
                ]),
                None => crate::store::nats::lease::stable_hash(&[&row.event_id]),
            } % u64::from(count);
            set.contains(&u32::try_from(partition).unwrap_or(0))
        });
        let routes: Vec<Arc<str>> = self.routes.names().map(Arc::from).collect();
        feed.handed(store, &routes, Some(owns))
    }

    /// Runs the work that is not shared until `term` is cancelled: processing, delivery and
    /// housekeeping, or, with the work shared by partition, housekeeping only. A stage that
    /// ends before (a panic) cancels `term`, so the others stop too, and is the error.
    pub(super) async fn run(&self, term: CancellationToken) -> anyhow::Result<()> {
        let [_, dispatcher_stage, housekeeping_stage] = &self.stages;
        self.metrics.work_lease_held.set(1);
        let housekeeping = housekeeping_stage.spawn(
            crate::store::housekeeping::run(
                self.retention.clone(),
                self.store.clone(),
                self.metrics.clone(),
                term.clone(),
            ),
            term.clone(),
        );
        // With the work shared by partition, this term keeps house only; processing and
        // delivery run by partition (`Work::process_partitions`).
        let (processor, delivery) = match &self.shared_processing {
            Some(_) => (None, None),
            None => {
                let (handoff, handed) = crate::pipeline::handoff::channel();
                let processor = self.processor(handoff, None, &term);
                let delivery = dispatcher_stage.spawn(
                    self.dispatcher.clone().run(handed, term.clone()),
                    term.clone(),
                );
                (Some(processor), Some(delivery))
            }
        };
        let optional = |task: Option<tokio::task::JoinHandle<()>>| async move {
            match task {
                Some(task) => task.await,
                None => Ok(()),
            }
        };
        let (processor, delivery) = (optional(processor), optional(delivery));
        let (processed, delivered, housekept) = tokio::join!(processor, delivery, housekeeping);
        self.metrics.work_lease_held.set(0);
        processed.context("the processor panicked")?;
        delivered.context("the dispatcher panicked")?;
        housekept.context("housekeeping panicked")?;
        Ok(())
    }

    /// Works the partitions this engine holds, until `shutdown`: the processor runs on their
    /// events and the dispatcher on their deliveries (handed from the log, whoever processed
    /// them), both started again whenever the held partitions change (a partition is given back
    /// only once its work has stopped).
    pub(super) async fn process_partitions(
        self: Arc<Self>,
        partitions: crate::store::nats::Partitions,
        shutdown: CancellationToken,
        fail: impl Fn(String),
    ) {
        use std::collections::BTreeSet;
        let (held_tx, mut held) = tokio::sync::watch::channel(BTreeSet::new());
        let (running_tx, running) = tokio::sync::watch::channel(BTreeSet::new());
        let count = partitions.count();
        let manager = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { partitions.run(held_tx, running, &shutdown).await }
        });
        let mut current: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
        loop {
            let set: BTreeSet<u32> = held.borrow_and_update().clone();
            if let Some((term, task)) = current.take() {
                term.cancel();
                let _ = task.await;
            }
            running_tx.send_replace(BTreeSet::new());
            if shutdown.is_cancelled() {
                break;
            }
            if !set.is_empty() {
                tracing::info!(partitions = ?set, of = count, "this engine processes and delivers these partitions");
                let term = shutdown.child_token();
                let owned = Arc::new(set.clone());
                let owns: crate::pipeline::EventFilter = Arc::new(move |event| {
                    let route = event.stored.route.to_string();
                    let key = event
                        .stored
                        .event
                        .key
                        .as_deref()
                        .unwrap_or(&event.stored.event.id);
                    let partition =
                        crate::store::nats::lease::stable_hash(&[&route, key]) % u64::from(count);
                    owned.contains(&u32::try_from(partition).unwrap_or(0))
                });
                // Its rows reach the engine delivering their partition through the log, this one
                // included, not through this hand-off.
                let (handoff, _unused) = crate::pipeline::handoff::channel();
                let processor = self.processor(handoff, Some(owns), &term);
                let delivery = self.stages[1].spawn(
                    self.dispatcher
                        .clone()
                        .run(self.delivering(set.clone(), count), term.clone()),
                    term.clone(),
                );
                let task = tokio::spawn(async move {
                    let _ = tokio::join!(processor, delivery);
                });
                running_tx.send_replace(set);
                current = Some((term, task));
            }
            let ended = async {
                match current.as_mut() {
                    Some((_, task)) => drop(task.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                changed = held.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = ended => {
                    // The processor ended on its own (a panic): the engine stops.
                    current = None;
                    if !shutdown.is_cancelled() {
                        fail("the processor stopped unexpectedly".into());
                        shutdown.cancel();
                    }
                }
            }
        }
        if let Some((term, task)) = current.take() {
            term.cancel();
            let _ = task.await;
        }
        running_tx.send_replace(BTreeSet::new());
        if manager.await.is_err() {
            fail("the partition manager panicked".into());
        }
    }

    /// Runs the work whenever this engine holds the work lease, until `shutdown`, with the
    /// log's compaction beside it. A lost lease stops the work at once and the engine waits to
    /// take it again (it keeps accepting meanwhile); the lease is given back only once the work
    /// has stopped, so two engines never work at once while both can reach the servers.
    pub(super) async fn under_lease(
        self: Arc<Self>,
        lease: crate::store::nats::WorkLease,
        compactor: crate::store::nats::Compactor,
        shutdown: CancellationToken,
        fail: impl Fn(String),
    ) {
        while let Some(mut held) = lease.acquire(&shutdown).await {
            let term = shutdown.child_token();
            let done = CancellationToken::new();
            let working = tokio::spawn({
                let (this, term, done) = (self.clone(), term.clone(), done.clone());
                let compacting = tokio::spawn(compactor.clone().run(term.clone()));
                async move {
                    let result = this.run(term).await;
                    let _ = compacting.await;
                    done.cancel();
                    result
                }
            });
            let kept = lease.keep(&mut held, &done).await;
            if let Err(e) = &kept {
                tracing::error!(error = %e, "the work lease is lost: this engine stops its work and waits to take the lease again");
                term.cancel();
            }
            let result = working.await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => fail(format!("{e:#}")),
                Err(e) => fail(format!("the work panicked: {e}")),
            }
            if kept.is_ok() {
                // The work stopped with the engine, or on its own (a stage died: the engine
                // stops too).
                lease.release(held).await;
                shutdown.cancel();
                return;
            }
        }
    }
}
