//! Wiring: builds the running engine from a checked configuration and runs it until shutdown.

use crate::admin::Admin;
use crate::config::{Config, ConfigError, StoreKind};
use crate::delivery::Dispatcher;
use crate::http::health::{Health, Stage};
use crate::metrics::Metrics;
use crate::pipeline::{Routes, load_plugins};
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
use work::Work;

mod work;

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
    // One throttle for every credential presented, whichever listener it came to.
    let auth = Arc::new(crate::http::auth::AuthThrottle::new(metrics.clone()));
    let sources = Arc::new(Sources::new(
        &config,
        backend.intake.clone(),
        routes.clone(),
        metrics.clone(),
        auth.clone(),
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
            shutdown: shutdown.clone(),
            auth: auth.clone(),
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
        auth,
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
