//! The `sync-engine` command.

mod logging;
mod new;
mod remote;
mod sdk;
mod text;

use crate::config::Config;
use crate::sandbox::{PluginSetup, Sandbox, SandboxOptions};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// The HMS Synchronization Engine: runs agency plugins (WebAssembly components) on change
/// events and delivers their results, durably, with retries.
#[derive(Debug, Parser)]
#[command(name = "sync-engine", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How logs are written to stderr. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the engine: listeners, processing and delivery, until SIGINT or SIGTERM.
    Run {
        /// The configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Listen here instead of the configuration's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Checks a configuration file and loads every plugin it names; reports each problem.
    Validate {
        /// The configuration file (YAML).
        config: PathBuf,
    },
    /// Works with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Lists, shows and replays dead letters of a running engine (through its admin API).
    Dlq {
        #[command(subcommand)]
        command: remote::DlqCommand,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Shows the history of events of a running engine (through its admin API).
    Events {
        #[command(subcommand)]
        command: remote::EventsCommand,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Shows or resets what a destination holds for an entity under its conflict strategy
    /// (through the admin API of a running engine).
    Entities {
        #[command(subcommand)]
        command: remote::EntitiesCommand,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// The SDK packages this release carries.
    Sdk {
        #[command(subcommand)]
        command: SdkCommand,
    },
    /// Runs a receiver that logs every request and answers with a fixed status: a stand-in
    /// destination or HMS core for trying the engine out.
    Sink {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:6100")]
        listen: SocketAddr,
        /// The status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
}

#[derive(Debug, Subcommand)]
enum SdkCommand {
    /// Writes the SDK packages (Rust crates, the npm package, the Python wheel and sdist), the
    /// WIT and a README on installing or publishing each, for an agency's own registry.
    Export {
        /// Where to write them (must not exist, or be empty).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Loads a component as the engine would and says which world it implements and what it
    /// imports, or why it is refused.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Runs a component on its fixtures (see the README) and says which cases pass.
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The fixtures file (JSON).
        #[arg(long)]
        fixtures: PathBuf,
        /// A setting of the route configuration the plugin reads (`key=value`; repeat).
        #[arg(long = "set", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
    },
    /// Writes a new plugin project, ready to build, test and upload: the mapping stub, its unit
    /// tests, a fixtures file and the language's build command.
    New {
        /// The project's name (lower-case letters, digits and `-`); also its directory's.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: new::Language,
        /// The world it implements.
        #[arg(long, value_enum, default_value = "transformer")]
        world: new::NewWorld,
        /// Where to write it (default: `./<name>`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on the SDKs of this checkout of the engine's repository, for work on the SDKs
        /// (default: the SDK packages this release carries, written into the project's
        /// `vendor/`).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Commands against a running engine's admin API.
    #[command(flatten)]
    Remote(remote::PluginRemote),
}

/// Refuses a `dir` to write into that exists and holds something (nothing is ever written
/// over); `instead` says what to do.
fn ensure_empty(dir: &std::path::Path, instead: &str) -> anyhow::Result<()> {
    let taken = dir.exists()
        && dir
            .read_dir()
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
    if taken {
        anyhow::bail!("{} exists and is not empty: {instead}", dir.display());
    }
    Ok(())
}

/// A component's name in logs: its file's stem.
fn file_name(file: &std::path::Path) -> String {
    file.file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned())
}

fn parse_setting(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{raw}` is not `key=value`"))
}

/// Runs the command line; returns the process's exit code.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().version(version()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::init(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `--version` says: the engine's version, the WIT versions whose plugins it loads, and the
/// commit it was built from.
fn version() -> String {
    let loads = crate::sandbox::WIT_VERSIONS
        .iter()
        .map(|v| format!("{}@{v}", crate::sandbox::WIT_PACKAGE))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} (loads plugins built against {loads}; commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("SYNC_ENGINE_COMMIT")
    )
}

/// How long a stopped engine waits for the blocking tasks still running before it exits.
const STRAGGLERS: std::time::Duration = std::time::Duration::from_secs(1);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[allow(clippy::print_stdout)]
fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, listen } => {
            let config = Config::load_listening(&config, listen)?;
            let runtime = runtime()?;
            let ran = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.listen))?;
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                crate::engine::run(config, listener, shutdown).await
            });
            // Once the engine has stopped, everything it must keep is committed: a blocking
            // task still running (a plugin run past a stopped dry run) holds the process up
            // for a second at most, never until it ends.
            runtime.shutdown_timeout(STRAGGLERS);
            ran?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config: path } => {
            let checked = Config::load(&path).and_then(|config| {
                crate::engine::prepare(&config, None)
                    .map(|prepared| (config, prepared))
                    .map_err(|mut e| {
                        e.file = Some(path.clone());
                        e
                    })
            });
            match checked {
                Ok((config, _)) => {
                    for warning in config.warnings() {
                        println!("warning: {warning}");
                    }
                    if let Some(nats) = config.store.nats.as_ref() {
                        let reached = runtime()?.block_on(async {
                            let connection = crate::store::nats::Connection::open(nats).await?;
                            connection.check().await.map(|()| connection.describe())
                        });
                        match reached {
                            Ok(described) => println!("store.nats: {described} takes writes"),
                            Err(e) => {
                                println!("{}: store.nats: {e}", path.display());
                                return Ok(ExitCode::FAILURE);
                            }
                        }
                    }
                    println!(
                        "{} is valid: {} plugin(s), {} destination(s), {} HMS event route(s), {} webhook(s)",
                        path.display(),
                        config.plugins.len(),
                        config.destinations.len(),
                        config.hms_events.len(),
                        config.external_webhooks.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Plugin {
            command: PluginCommand::Remote(command),
        } => {
            remote::plugin(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command:
                PluginCommand::Test {
                    file,
                    fixtures,
                    settings,
                },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let json = std::fs::read_to_string(&fixtures)
                .with_context(|| format!("cannot read {}", fixtures.display()))?;
            let fixtures =
                crate::sandbox::fixtures::Fixtures::parse(&json).map_err(anyhow::Error::msg)?;
            let sandbox = Sandbox::new(SandboxOptions::default())?;
            let plugin = match sandbox.load(&file_name(&file), &bytes) {
                Ok(plugin) => plugin,
                Err(e) => {
                    println!("{}: refused: {e}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            };
            let setup = PluginSetup {
                settings: std::sync::Arc::new(settings.into_iter().collect()),
                ..PluginSetup::default()
            };
            let results = fixtures.run(&plugin, &setup);
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            for (name, result) in &results {
                match result {
                    Ok(()) => println!("pass  {name}"),
                    Err(e) => println!("FAIL  {name}: {e}"),
                }
            }
            println!(
                "{} of {} case(s) passed ({} {})",
                results.len() - failed,
                results.len(),
                plugin.world(),
                plugin.version_tag()
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    world,
                    dir,
                    sdk,
                },
        } => {
            let sdk = new::Sdk::choose(sdk)?;
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            println!("{}", new::write_project(&name, lang, world, &dir, &sdk)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sdk {
            command: SdkCommand::Export { dir },
        } => {
            let Some(packages) = sdk::Packages::embedded() else {
                anyhow::bail!(
                    "this sync-engine is a development build, which carries no SDK packages: \
                     use a release of the engine (scripts/release makes one)"
                );
            };
            print!("{}", packages.export(&dir)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let sandbox = Sandbox::new(SandboxOptions::default())?;
            match sandbox.load(&file_name(&file), &bytes) {
                Ok(plugin) => {
                    println!(
                        "{}: implements the {} world",
                        file.display(),
                        plugin.world()
                    );
                    println!("  version  {}", plugin.hash());
                    println!("  size     {} bytes", plugin.size());
                    println!("  imports  {}", plugin.imports().join(", "));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{}: refused: {e}", file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Dlq { command, remote } => {
            remote::dlq(&remote, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { command, remote } => {
            remote::events(&remote, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Entities { command, remote } => {
            remote::entities(&remote, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sink { listen, status } => {
            let status = http::StatusCode::from_u16(status)
                .with_context(|| format!("{status} is not an HTTP status"))?;
            runtime()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                crate::sink::run(listener, status, shutdown).await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind)
            .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
            .ok()
    };
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let first = next_signal(&mut terminate, &mut interrupt).await;
    tracing::info!("{first}: shutting down (a second signal exits at once)");
    shutdown.cancel();
    let second = next_signal(&mut terminate, &mut interrupt).await;
    tracing::warn!("{second}, a second signal: exiting now; what was accepted is in the store");
    std::process::exit(1);
}

/// The name of the next of these signals to arrive.
async fn next_signal(
    terminate: &mut Option<tokio::signal::unix::Signal>,
    interrupt: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        () = recv(terminate) => "SIGTERM",
        () = recv(interrupt) => "SIGINT",
    }
}
