//! Wiring: builds the running engine from a checked configuration and runs it until shutdown.

use crate::admin::Admin;
use crate::config::{Config, ConfigError};
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
    let prepared = prepare(&config, Some(compiled))?;
    let store = SqliteStore::open(store_dir)
        .with_context(|| format!("cannot open the store in {}", store_dir.display()))?;
    let backend = Backend::sqlite(&store);
    let registry = Arc::new(Registry::new(
        prepared.sandbox.clone(),
        backend.plugins.clone(),
        &config,
    ));
    registry.bootstrap(&config, &prepared.plugins).await?;
    let metrics = Arc::new(Metrics::default());
    let dispatcher = Arc::new(Dispatcher::new(
        &config,
        backend.outbox.clone(),
        prepared.routes.clone(),
        registry.clone(),
        metrics.clone(),
    )?);
    let sources = Arc::new(Sources::new(
        &config,
        backend.intake.clone(),
        prepared.routes.clone(),
        metrics.clone(),
    )?);
    let admin = Arc::new(Admin::new(
        backend.records.clone(),
        registry.clone(),
        config.admin.token.as_ref().map(|t| t.0.clone()),
    ));
    let (processor_stage, dispatcher_stage, housekeeping_stage) = (
        Stage::new("processor"),
        Stage::new("dispatcher"),
        Stage::new("housekeeping"),
    );
    let health = Arc::new(Health {
        intake: backend.intake.clone(),
        records: backend.records.clone(),
        metrics: metrics.clone(),
        metrics_token: config.admin.metrics_token.as_ref().map(|t| t.0.clone()),
        stages: vec![
            processor_stage.clone(),
            dispatcher_stage.clone(),
            housekeeping_stage.clone(),
        ],
        backlog: crate::http::health::BacklogCache::default(),
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

    let housekeeping = housekeeping_stage.spawn(
        crate::store::housekeeping::run(
            backend.retention.clone(),
            config.store.clone(),
            metrics.clone(),
            shutdown.clone(),
        ),
        shutdown.clone(),
    );
    let (handoff, handed) = crate::pipeline::handoff::channel();
    let processor = processor_stage.spawn(
        run_processor(
            backend.queue.clone(),
            prepared.routes.clone(),
            registry.clone(),
            metrics,
            handoff,
            config.sandbox.workers.get(),
            shutdown.clone(),
        ),
        shutdown.clone(),
    );
    let delivery =
        dispatcher_stage.spawn(dispatcher.run(handed, shutdown.clone()), shutdown.clone());
    let watcher = config.plugin_dir.as_ref().map(|dir| {
        tokio::spawn(crate::registry::watch(
            registry.clone(),
            dir.0.clone(),
            shutdown.clone(),
        ))
    });

    let address = listener.local_addr()?;
    tracing::info!(%address, store = %store.path().display(), "sync engine listening");
    let sources = sources.router(config.max_body_size);
    let admin = admin
        .router(config.admin.max_upload_size)
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
    // However the server ended, stop the rest and let it finish cleanly.
    shutdown.cancel();
    let (processed, delivered, housekept) = tokio::join!(processor, delivery, housekeeping);
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    store.close().await;
    processed.context("the processor panicked")?;
    delivered.context("the dispatcher panicked")?;
    housekept.context("housekeeping panicked")?;
    drop(dir_lock);
    tracing::info!("sync engine stopped");
    Ok(())
}
