//! The plugin lifecycle commands against a running engine: upload, dry run, shadow, canary,
//! list, show, activate, roll back, delete.

use super::super::text::{canary_text, plugin_text, shadow_text, short, swap_text, trial_text};
use super::{Remote, print};
use crate::admin::api::{
    ActivateRequest, CanaryQuery, CanaryReport, CanaryShare, Deleted, PluginDetail, Plugins,
    ShadowReport, Swapped, Trial, TrialQuery,
};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;

/// Plugin commands against a running engine.
#[derive(Debug, Subcommand)]
pub(in crate::cli) enum PluginRemote {
    /// Uploads a new version of a plugin: the engine checks it (world, fixtures) and, when it
    /// passes, makes it active; otherwise it says every reason and the active version stays.
    Upload {
        /// The plugin's name.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// Fixtures the version must pass (JSON); without them, the active version's apply.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Tries a candidate version on stored events of the plugin's routes, newest first, and
    /// says for each whether it makes what was made then, something else (with a JSON diff), or
    /// fails. Nothing is stored, activated or delivered.
    Try {
        /// The plugin's name.
        name: String,
        /// The candidate component (`.wasm`).
        file: PathBuf,
        /// Events accepted at or after this time (RFC 3339 or Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// Events accepted before this time (RFC 3339 or Unix ms).
        #[arg(long)]
        until: Option<String>,
        /// At most this many events, the newest (default 1,000, at most 10,000).
        #[arg(long)]
        limit: Option<usize>,
        /// How long it may run (default 2m, at most 10m): past it, it stops and reports what
        /// it tried.
        #[arg(long, value_parser = humantime::parse_duration)]
        budget: Option<Duration>,
        /// Also list the events where nothing changed.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Runs a candidate version as the plugin's shadow: beside the active version on live
    /// events, delivering nothing, comparing what it makes (replaces the shadow, if any).
    Shadow {
        /// The plugin's name.
        name: String,
        /// The candidate component (`.wasm`).
        file: PathBuf,
        /// Fixtures it must pass when promoted (JSON); without them, the active version's apply.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Shows what the plugin's shadow has done: how often it agreed, its latest differences.
    ShadowReport {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stops the plugin's shadow, showing what it did.
    ShadowStop {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes the plugin's shadow its active version, after the same checks as an upload.
    ShadowPromote {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Checks a candidate version as an upload is, keeps it, and lets it take a share of the
    /// plugin's live events by entity key; it is rolled back on its own when it fails more, or
    /// runs slower, than the active version by more than the margins.
    Canary {
        /// The plugin's name.
        name: String,
        /// The candidate component (`.wasm`).
        file: PathBuf,
        /// Fixtures it must pass (JSON); without them, the active version's apply.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// The share of entity keys it takes, in percent (default 10).
        #[arg(long)]
        percent: Option<u8>,
        /// How far back runs count, such as `5m` (default 5 minutes).
        #[arg(long)]
        window: Option<String>,
        /// Runs of each version in the window before anything is decided (default 20).
        #[arg(long)]
        min_runs: Option<usize>,
        /// How much higher its failure rate may be than the active version's (default 0.05).
        #[arg(long)]
        failure_margin: Option<f64>,
        /// How many times the active version's p99 run time its own may be (default 3).
        #[arg(long)]
        p99_ratio: Option<f64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Sets the share of entity keys the plugin's canary takes.
    CanaryShare {
        /// The plugin's name.
        name: String,
        /// The share, in percent (1 to 99).
        percent: u8,
        #[command(flatten)]
        remote: Remote,
    },
    /// Shows how the plugin's canary fares (or how its last one ended, and why).
    CanaryReport {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stops the plugin's canary: its keys go back to the active version.
    CanaryStop {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes the plugin's canary its active version.
    CanaryPromote {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Lists the plugins and their active versions.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Shows a plugin's versions and activations.
    Show {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes a stored version active again, after the same checks as an upload.
    Activate {
        /// The plugin's name.
        name: String,
        /// The version's hash.
        hash: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Makes the version active before the current one active again.
    Rollback {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deletes a version that is not active.
    Delete {
        /// The plugin's name.
        name: String,
        /// The version's hash.
        hash: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `POST path` (a rollback, a promotion), which makes a version active: prints which.
fn swap(remote: &Remote, path: &str) -> anyhow::Result<()> {
    let client = remote.client()?;
    let answer: Swapped = client.call(
        client
            .request(reqwest::Method::POST, path)
            .timeout(Duration::from_secs(300)),
    )?;
    print(remote, &answer, swap_text);
    Ok(())
}

/// `PUT path` with a component (and its fixtures) as the multipart form the admin API takes:
/// a version the engine checks (compiles, runs its fixtures) before it answers, which may take
/// minutes.
fn put_version(
    client: &super::Client,
    path: &str,
    file: &std::path::Path,
    fixtures: Option<&std::path::Path>,
) -> anyhow::Result<reqwest::blocking::RequestBuilder> {
    let component =
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut form = reqwest::blocking::multipart::Form::new().part(
        "component",
        reqwest::blocking::multipart::Part::bytes(component).mime_str("application/wasm")?,
    );
    if let Some(fixtures) = fixtures {
        let json = std::fs::read_to_string(fixtures)
            .with_context(|| format!("cannot read {}", fixtures.display()))?;
        form = form.text("fixtures", json);
    }
    Ok(client
        .request(reqwest::Method::PUT, path)
        .timeout(Duration::from_secs(300))
        .multipart(form))
}

pub(in crate::cli) fn plugin(command: PluginRemote) -> anyhow::Result<()> {
    use reqwest::Method;
    match command {
        PluginRemote::Upload {
            name,
            file,
            fixtures,
            remote,
        } => {
            let client = remote.client()?;
            let path = format!("/admin/plugins/{name}");
            let answer: Swapped =
                client.call(put_version(&client, &path, &file, fixtures.as_deref())?)?;
            print(&remote, &answer, swap_text);
        }
        PluginRemote::Shadow {
            name,
            file,
            fixtures,
            remote,
        } => {
            let client = remote.client()?;
            let path = format!("/admin/plugins/{name}/shadow");
            let answer: ShadowReport =
                client.call(put_version(&client, &path, &file, fixtures.as_deref())?)?;
            print(&remote, &answer, shadow_text);
        }
        PluginRemote::ShadowReport { name, remote } => {
            let answer: ShadowReport = remote
                .client()?
                .get(&format!("/admin/plugins/{name}/shadow"), &())?;
            print(&remote, &answer, shadow_text);
        }
        PluginRemote::ShadowStop { name, remote } => {
            let client = remote.client()?;
            let answer: ShadowReport = client
                .call(client.request(Method::DELETE, &format!("/admin/plugins/{name}/shadow")))?;
            print(&remote, &answer, |r| format!("stopped\n{}", shadow_text(r)));
        }
        PluginRemote::ShadowPromote { name, remote } => {
            swap(&remote, &format!("/admin/plugins/{name}/shadow/promote"))?;
        }
        PluginRemote::Canary {
            name,
            file,
            fixtures,
            percent,
            window,
            min_runs,
            failure_margin,
            p99_ratio,
            remote,
        } => {
            let client = remote.client()?;
            let query = CanaryQuery {
                percent,
                window,
                min_runs,
                failure_margin,
                p99_ratio,
            };
            let path = format!("/admin/plugins/{name}/canary");
            let answer: CanaryReport = client
                .call(put_version(&client, &path, &file, fixtures.as_deref())?.query(&query))?;
            print(&remote, &answer, canary_text);
        }
        PluginRemote::CanaryShare {
            name,
            percent,
            remote,
        } => {
            let client = remote.client()?;
            let answer: CanaryReport = client.call(
                client
                    .request(Method::PATCH, &format!("/admin/plugins/{name}/canary"))
                    .json(&CanaryShare { percent }),
            )?;
            print(&remote, &answer, canary_text);
        }
        PluginRemote::CanaryReport { name, remote } => {
            let answer: CanaryReport = remote
                .client()?
                .get(&format!("/admin/plugins/{name}/canary"), &())?;
            print(&remote, &answer, canary_text);
        }
        PluginRemote::CanaryStop { name, remote } => {
            let client = remote.client()?;
            let answer: CanaryReport = client
                .call(client.request(Method::DELETE, &format!("/admin/plugins/{name}/canary")))?;
            print(&remote, &answer, canary_text);
        }
        PluginRemote::CanaryPromote { name, remote } => {
            swap(&remote, &format!("/admin/plugins/{name}/canary/promote"))?;
        }
        PluginRemote::Try {
            name,
            file,
            since,
            until,
            limit,
            budget,
            all,
            remote,
        } => {
            let client = remote.client()?;
            let component =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let query = TrialQuery {
                since,
                until,
                limit,
                budget: budget.map(|b| humantime::format_duration(b).to_string()),
            };
            // The engine answers within the budget (2 minutes unless given), after compiling
            // the candidate (at most `sandbox.compileTimeout`).
            let wait = budget.unwrap_or(Duration::from_secs(120)) + Duration::from_secs(300);
            let answer: Trial = client.call(
                client
                    .request(Method::POST, &format!("/admin/plugins/{name}/try"))
                    .query(&query)
                    .header("content-type", "application/wasm")
                    .timeout(wait)
                    .body(component),
            )?;
            print(&remote, &answer, |trial| trial_text(trial, all));
        }
        PluginRemote::List { remote } => {
            let answer: Plugins = remote.client()?.get("/admin/plugins", &())?;
            print(&remote, &answer, |a| {
                a.plugins
                    .iter()
                    .map(|p| {
                        format!(
                            "{}  {}  {}\n",
                            p.name,
                            short(p.active.as_deref().unwrap_or("-")),
                            p.world.as_deref().unwrap_or("-")
                        )
                    })
                    .collect()
            });
        }
        PluginRemote::Show { name, remote } => {
            let answer: PluginDetail = remote
                .client()?
                .get(&format!("/admin/plugins/{name}"), &())?;
            print(&remote, &answer, plugin_text);
        }
        PluginRemote::Activate { name, hash, remote } => {
            let client = remote.client()?;
            let answer: Swapped = client.call(
                client
                    .request(Method::POST, &format!("/admin/plugins/{name}/activate"))
                    .timeout(Duration::from_secs(300))
                    .json(&ActivateRequest { hash }),
            )?;
            print(&remote, &answer, swap_text);
        }
        PluginRemote::Rollback { name, remote } => {
            swap(&remote, &format!("/admin/plugins/{name}/rollback"))?;
        }
        PluginRemote::Delete { name, hash, remote } => {
            let client = remote.client()?;
            let answer: Deleted = client.call(client.request(
                Method::DELETE,
                &format!("/admin/plugins/{name}/versions/{hash}"),
            ))?;
            print(&remote, &answer, |a| {
                format!("deleted {}@{}\n", a.deleted.name, short(&a.deleted.hash))
            });
        }
    }
    Ok(())
}
