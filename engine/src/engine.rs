//! Wiring: builds the running engine from a checked configuration and runs it until shutdown.

use crate::admin::Admin;
use crate::config::{Config, ConfigError, StoreKind};
use crate::delivery::Dispatcher;
use crate::http::health::{Health, Stage};
use crate::metrics::Metrics;
use crate::pipeline::{Routes, load_plugins, run_processor};
use crate::registry::Registry;
use crate::sandbox::{Plugin, Sandbox, SandboxOptions};
use crate::sources::Sources;
use crate::store::dir_lock::DirLock;
use crate::store::{Backend, SqliteStore};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The sandbox of a configuration, with every plugin loaded and every route built: what
/// `sync-engine validate` checks and `run` starts from.
pub struct Prepared {
    /// The sandbox the plugins live in.
    pub sandbox: Arc<Sandbox>,
    /// The plugins as the configuration's files hold them.
    pub plugins: BTreeMap<String, Plugin>,
    /// The routes.
    pub routes: Arc<Routes>,
}

/// Creates the sandbox (caching compiled components in `cache_dir`, when given), loads every
/// plugin and builds the routes. Every problem found is reported, each naming its key.
pub fn prepare(config: &Config, cache_dir: Option<PathBuf>) -> Result<Prepared, ConfigError> {
    let sandbox = Sandbox::new(SandboxOptions {
        max_instances: config.sandbox.max_instances.get(),
        max_memory: config.sandbox.max_memory,
        max_core_instances_per_plugin: config.sandbox.max_core_instances_per_plugin.get(),
        max_memories_per_plugin: config.sandbox.max_memories_per_plugin.get(),
        keep_resident: config.sandbox.keep_resident,
        cache_dir,
        ..SandboxOptions::default()
    })
    .map_err(|e| ConfigError {
        file: None,
        problems: vec![crate::config::Problem {
            key: "sandbox".into(),
            message: format!("{e:#}"),
        }],
    })?;
    let plugins = load_plugins(config, &sandbox).map_err(|problems| ConfigError {
        file: None,
        problems,
    })?;
    let worlds = plugins
        .iter()
        .map(|(name, plugin)| (name.clone(), plugin.world()))
        .collect();
    let routes = Routes::build(config, &worlds).map_err(|problems| ConfigError {
        file: None,
        problems,
    })?;
    Ok(Prepared {
        sandbox: Arc::new(sandbox),
        plugins,
        routes: Arc::new(routes),
    })
}

/// What a store shared by several engines adds: the follower that applies its log to this
/// engine's replica, and the work lease.
struct Shared {
    follower: crate::store::nats::Follower,
    lease: crate::store::nats::WorkLease,
    compactor: crate::store::nats::Compactor,
    /// The processing partitions, when engines share processing.
    partitions: Option<crate::store::nats::Partitions>,
}

/// Opens the store the configuration names: the embedded one, or this engine's replica of the
/// NATS log (brought up to date before this answers).
async fn open_store(
    config: &Config,
    stop_following: CancellationToken,
) -> anyhow::Result<(SqliteStore, Option<Shared>)> {
    let dir = &config.store.path.0;
    match (config.store.kind, &config.store.nats) {
        (StoreKind::Nats, Some(nats)) => {
            let connection = crate::store::nats::Connection::open(nats)
                .await
                .context("cannot open the NATS store (store.nats)")?;
            tracing::info!(servers = %connection.describe(), "the store is a NATS log shared by every engine with its prefix");
            let (store, follower) = connection
                .replica(dir, stop_following)
                .await
                .with_context(|| format!("cannot open the replica in {}", dir.display()))?;
            let compactor = connection.compactor(&store, dir);
            let lease = connection.lease();
            let partitions = connection.partitions(&lease);
            Ok((
                store,
                Some(Shared {
                    follower,
                    lease,
                    compactor,
                    partitions,
                }),
            ))
        }
        _ => {
            let store = SqliteStore::open(dir)
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            Ok((store, None))
        }
    }
}

/// The engine's work on the store: processing, delivery and housekeeping, each a stage.
struct Work {
    queue: Arc<dyn crate::store::WorkQueue>,
    retention: Arc<dyn crate::store::Retention>,
    routes: Arc<Routes>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    dispatcher: Arc<Dispatcher>,
    store: crate::config::StoreConfig,
    workers: usize,
    /// The processor, the dispatcher, housekeeping.
    stages: [Stage; 3],
    /// When engines share the work by partition: the rows every engine's processing queued, as
    /// this replica applies them (the dispatcher's hand-off), and the replica.
    shared_processing: Option<(crate::store::nats::Feed, SqliteStore)>,
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
    async fn run(&self, term: CancellationToken) -> anyhow::Result<()> {
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
    async fn process_partitions(
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
    async fn under_lease(
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

/// Runs the engine on `listener` until `shutdown` is cancelled: the listeners, the processor
/// and the delivery dispatcher. On shutdown the listeners stop accepting and drain, the
/// processor finishes the batch in hand, deliveries in flight get a grace period, and the store
/// commits what it was sent; anything unfinished is picked up on the next start.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!(key = %warning.key, "{}", warning.message);
    }
    let store_dir = &config.store.path.0;
    // Held until the engine has stopped: one engine per data directory.
    let dir_lock = DirLock::acquire(store_dir)?;
    let compiled = store_dir.join("compiled");
    std::fs::create_dir_all(&compiled)
        .with_context(|| format!("cannot create {}", compiled.display()))?;
    let compiled = std::path::absolute(&compiled)?;
    let Prepared {
        sandbox,
        plugins,
        routes,
    } = prepare(&config, Some(compiled))?;
    // With a shared store, the follower applies the log until everything else has stopped
    // (their last writes wait for it).
    let stop_following = CancellationToken::new();
    let (store, shared) = open_store(&config, stop_following.clone()).await?;
    let backend = Backend::sqlite(&store);
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(Registry::new(
        sandbox.clone(),
        backend.plugins.clone(),
        &config,
        metrics.clone(),
    ));
    registry.bootstrap(&config, &plugins).await?;
    // From here the registry holds the versions that run: a configured version swapped out later
    // must not stay loaded (with the instances it keeps for reuse) until the engine stops.
    drop(plugins);
    // The HMS bus on NATS, when the engine is on one: connected in the background.
    let bus = match config.bus.nats() {
        Some(nats) => Some(Arc::new(crate::bus::Bus::connect(nats).await?)),
        None => None,
    };
    let dispatcher = Arc::new(Dispatcher::new(
        &config,
        backend.outbox.clone(),
        routes.clone(),
        registry.clone(),
        metrics.clone(),
        bus.clone(),
    )?);
    let sources = Arc::new(Sources::new(
        &config,
        backend.intake.clone(),
        routes.clone(),
        metrics.clone(),
    )?);
    let backlog = Arc::new(crate::http::health::BacklogCache::default());
    let admin = Arc::new(Admin::new(
        backend.records.clone(),
        registry.clone(),
        config.admin.token.as_ref().map(|t| t.0.clone()),
        crate::admin::Sight {
            metrics: metrics.clone(),
            backlog: backlog.clone(),
            configuration: crate::admin::api::Configuration::of(&config),
            core_concurrency: config.delivery_concurrency.get(),
            routes: routes.clone(),
        },
    ));
    let work = Arc::new(Work {
        queue: backend.queue.clone(),
        retention: backend.retention.clone(),
        routes: routes.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        dispatcher,
        store: config.store.clone(),
        workers: config.sandbox.workers.get(),
        stages: [
            Stage::new("processor"),
            Stage::new("dispatcher"),
            Stage::new("housekeeping"),
        ],
        shared_processing: shared
            .as_ref()
            .filter(|shared| shared.partitions.is_some())
            .map(|shared| (shared.follower.feed(), store.clone())),
    });
    let (replica_stage, lease_stage) = (Stage::new("replica"), Stage::new("work lease"));
    // Readiness: with a shared store, an engine that waits for the work lease is ready (it
    // accepts), as long as it follows the log and waits for the lease.
    let stages = match shared {
        None => work.stages.to_vec(),
        Some(_) => vec![replica_stage.clone(), lease_stage.clone()],
    };
    let health = Arc::new(Health {
        intake: backend.intake.clone(),
        records: backend.records.clone(),
        metrics: metrics.clone(),
        metrics_token: config.admin.metrics_token.as_ref().map(|t| t.0.clone()),
        stages,
        backlog: backlog.clone(),
        probe: crate::http::health::ProbeCache::default(),
    });
    // The admin API and /metrics on their own listener, when configured; bound before anything
    // runs, so a taken port stops the start.
    let admin_listener = match config.admin.listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (admin.listen)"))?,
        ),
        None => None,
    };

    // The work (processing, delivery, housekeeping): at once with the embedded store; with a
    // shared one, while this engine holds the work lease.
    let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let fail = {
        let failure = failure.clone();
        move |why: String| {
            *failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
        }
    };
    let (working, follower) = match shared {
        None => {
            let work = work.clone();
            let (shutdown, fail) = (shutdown.clone(), fail.clone());
            let working = tokio::spawn(async move {
                if let Err(e) = work.run(shutdown).await {
                    fail(format!("{e:#}"));
                }
            });
            (working, None)
        }
        Some(Shared {
            follower,
            lease,
            compactor,
            partitions,
        }) => {
            let follower = replica_stage.spawn(
                {
                    let fail = fail.clone();
                    async move {
                        if let Err(e) = follower.wait().await {
                            tracing::error!(error = %e, "the replica stopped following the log; the engine stops");
                            fail(format!("the replica stopped following the log: {e}"));
                        }
                    }
                },
                shutdown.clone(),
            );
            let delivering =
                work.clone()
                    .under_lease(lease, compactor, shutdown.clone(), fail.clone());
            let processing = partitions.map(|partitions| {
                work.clone()
                    .process_partitions(partitions, shutdown.clone(), fail.clone())
            });
            let working = lease_stage.spawn(
                async move {
                    match processing {
                        Some(processing) => drop(tokio::join!(delivering, processing)),
                        None => delivering.await,
                    }
                },
                shutdown.clone(),
            );
            (working, Some(follower))
        }
    };
    let following = tokio::spawn(registry.clone().follow(shutdown.clone()));
    let shadowing = tokio::spawn(registry.shadows().clone().run(
        routes.clone(),
        backend.records.clone(),
        shutdown.clone(),
    ));
    let watcher = config.plugin_dir.as_ref().map(|dir| {
        tokio::spawn(crate::registry::watch(
            registry.clone(),
            dir.0.clone(),
            shutdown.clone(),
        ))
    });

    let reading_bus = bus.map(|bus| {
        let source = crate::sources::BusSource::new(sources.clone(), bus);
        tokio::spawn(source.run(backend.records.clone(), backlog.clone(), shutdown.clone()))
    });

    let address = listener.local_addr()?;
    tracing::info!(%address, store = %store.path().display(), "sync engine listening");
    let sources = sources.router();
    let admin = admin
        .clone()
        .router(config.admin.max_upload_size)
        .merge(crate::console::router(admin, config.admin.max_upload_size))
        .merge(health.clone().metrics_router());
    let health = health.router();
    let limits = crate::http::serve::Limits {
        header_timeout: config.http.header_timeout,
        body_timeout: config.http.body_timeout,
        max_connections: config.http.max_connections.get(),
        shutdown_timeout: config.http.shutdown_timeout,
    };
    let serve = |listener, router| {
        crate::http::serve::serve(listener, router, health.clone(), limits, shutdown.clone())
    };
    match admin_listener {
        None => {
            let router = crate::http::router(sources.merge(admin).merge(health.clone()));
            serve(listener, router).await;
        }
        Some(admin_listener) => {
            let address = admin_listener.local_addr()?;
            tracing::info!(%address, "admin API and metrics listening");
            let admin = crate::http::router(admin.merge(health.clone()));
            let main = crate::http::router(sources.merge(health.clone()));
            tokio::join!(serve(listener, main), serve(admin_listener, admin));
        }
    }
    // However the server ended, stop the rest and let it finish cleanly: the work (which gives
    // the lease back once it has stopped), then the follower its last writes waited for.
    shutdown.cancel();
    if let Some(reading_bus) = reading_bus {
        let _ = reading_bus.await;
    }
    let _ = working.await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    let _ = following.await;
    let _ = shadowing.await;
    stop_following.cancel();
    if let Some(follower) = follower {
        let _ = follower.await;
    }
    store.close().await;
    if let Some(failure) = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        anyhow::bail!(failure);
    }
    drop(dir_lock);
    tracing::info!("sync engine stopped");
    Ok(())
}
