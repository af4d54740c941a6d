//! The commands that talk to a running engine's admin API: `dlq` and `events`.

use crate::config::Config;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

/// How to reach the engine: its configuration file (for `listen` and `admin.token`), or a URL
/// and a token.
#[derive(Debug, Args)]
pub(super) struct Remote {
    /// The engine's configuration file: the admin API is at its `listen` address, with its
    /// `admin.token`.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The engine's base URL, such as `http://127.0.0.1:6000` (instead of `--config`).
    #[arg(long, env = "SYNC_ENGINE_URL", global = true)]
    url: Option<String>,
    /// The admin token (instead of `--config`).
    #[arg(
        long,
        env = "SYNC_ENGINE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum DlqCommand {
    /// Lists dead letters, oldest first.
    List {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Replayed ones too.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Shows one dead letter with its event's whole history.
    Show {
        /// The dead letter's id.
        id: i64,
    },
    /// Queues dead letters again: deliveries get a fresh retry schedule, failed plugin runs run
    /// again. Ones already replayed are skipped.
    Replay {
        /// Dead letters to replay, by id (repeat for several).
        #[arg(long = "id")]
        ids: Vec<i64>,
        #[command(flatten)]
        selection: SelectionArgs,
        /// Every dead letter (when no other selection is given).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub(super) struct SelectionArgs {
    /// Only those for this destination (`hms-core` for emitted events), or plugin.
    #[arg(long)]
    destination: Option<String>,
    /// Only those that died at or after this time (RFC 3339 or Unix ms).
    #[arg(long)]
    since: Option<String>,
    /// Only those that died before this time (RFC 3339 or Unix ms).
    #[arg(long)]
    until: Option<String>,
}

/// Plugin commands against a running engine.
#[derive(Debug, Subcommand)]
pub(super) enum PluginRemote {
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

#[derive(Debug, Subcommand)]
pub(super) enum EventsCommand {
    /// Shows an event's whole history: when it was accepted, which plugin version ran, its
    /// actions, every delivery attempt, where it ended.
    Show {
        /// The event's id.
        id: String,
    },
}

struct Client {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Remote {
    fn client(&self) -> anyhow::Result<Client> {
        let (url, token) =
            match &self.config {
                Some(path) => {
                    let config = Config::load(path)?;
                    let token = config.admin.token.map(|t| t.0).context(
                        "the configuration sets no `admin.token`, so its admin API is off",
                    )?;
                    (format!("http://{}", config.listen), token)
                }
                None => {
                    let url = self.url.clone().context(
                        "say where the engine is: --config <file>, or --url and --token",
                    )?;
                    let token = self
                        .token
                        .clone()
                        .context("--url needs --token (or SYNC_ENGINE_ADMIN_TOKEN)")?;
                    (url, token)
                }
            };
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Client {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }
}

impl Client {
    fn call(&self, request: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("cannot reach the engine at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().context("the engine's answer is not JSON")?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            let failures: String = body["error"]["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| format!("\n  - {}", text(f)))
                .collect();
            bail!("the engine answered {status}: {message}{failures}");
        }
        Ok(body)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}{path}", self.base)).query(query))
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(self.http.post(format!("{}{path}", self.base)).json(body))
    }
}

#[allow(clippy::print_stdout)]
fn print(remote: &Remote, answer: &Value, text: impl FnOnce(&Value) -> String) {
    if remote.json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
    } else {
        print!("{}", text(answer));
    }
}

pub(super) fn dlq(remote: &Remote, command: DlqCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        DlqCommand::List {
            selection,
            all,
            limit,
        } => {
            let mut query = selection.query();
            if all {
                query.push(("all", "true".into()));
            }
            if let Some(limit) = limit {
                query.push(("limit", limit.to_string()));
            }
            let answer = client.get("/admin/dead-letters", &query)?;
            print(remote, &answer, |a| {
                let dead = a["dead_letters"].as_array().cloned().unwrap_or_default();
                if dead.is_empty() {
                    return "no dead letters\n".into();
                }
                dead.iter().map(dead_letter_line).collect()
            });
        }
        DlqCommand::Show { id } => {
            let answer = client.get(&format!("/admin/dead-letters/{id}"), &[])?;
            print(remote, &answer, |a| {
                format!(
                    "{}\n{}",
                    dead_letter_line(&a["dead_letter"]),
                    history_text(&a["event"])
                )
            });
        }
        DlqCommand::Replay {
            ids,
            selection,
            all,
        } => {
            let mut body = json!({ "ids": ids, "all": all });
            for (key, value) in selection.query() {
                body[key] = Value::String(value);
            }
            let answer = client.post("/admin/dead-letters/replay", &body)?;
            print(remote, &answer, |a| {
                let mut out = format!(
                    "replayed {} dead letter(s): {}\n",
                    a["replayed"].as_array().map_or(0, Vec::len),
                    a["replayed"]
                );
                for skipped in a["skipped"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "skipped #{}: {}\n",
                        skipped["id"],
                        text(&skipped["reason"])
                    ));
                }
                out
            });
        }
    }
    Ok(())
}

pub(super) fn plugin(command: PluginRemote) -> anyhow::Result<()> {
    use reqwest::Method;
    let (remote, answer) = match command {
        PluginRemote::Upload {
            name,
            file,
            fixtures,
            remote,
        } => {
            let client = remote.client()?;
            let component =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut form = reqwest::blocking::multipart::Form::new().part(
                "component",
                reqwest::blocking::multipart::Part::bytes(component)
                    .mime_str("application/wasm")?,
            );
            if let Some(fixtures) = fixtures {
                let json = std::fs::read_to_string(&fixtures)
                    .with_context(|| format!("cannot read {}", fixtures.display()))?;
                form = form.text("fixtures", json);
            }
            let request = client
                .request(Method::PUT, &format!("/admin/plugins/{name}"))
                .timeout(Duration::from_secs(300))
                .multipart(form);
            let answer = client.call(request)?;
            (remote, answer)
        }
        PluginRemote::List { remote } => {
            let answer = remote.client()?.get("/admin/plugins", &[])?;
            (remote, answer)
        }
        PluginRemote::Show { name, remote } => {
            let answer = remote
                .client()?
                .get(&format!("/admin/plugins/{name}"), &[])?;
            (remote, answer)
        }
        PluginRemote::Activate { name, hash, remote } => {
            let client = remote.client()?;
            let request = client
                .request(Method::POST, &format!("/admin/plugins/{name}/activate"))
                .timeout(Duration::from_secs(300))
                .json(&json!({ "hash": hash }));
            let answer = client.call(request)?;
            (remote, answer)
        }
        PluginRemote::Rollback { name, remote } => {
            let client = remote.client()?;
            let request = client
                .request(Method::POST, &format!("/admin/plugins/{name}/rollback"))
                .timeout(Duration::from_secs(300))
                .json(&json!({}));
            let answer = client.call(request)?;
            (remote, answer)
        }
        PluginRemote::Delete { name, hash, remote } => {
            let client = remote.client()?;
            let answer = client.call(client.request(
                Method::DELETE,
                &format!("/admin/plugins/{name}/versions/{hash}"),
            ))?;
            (remote, answer)
        }
    };
    print(&remote, &answer, plugin_text);
    Ok(())
}

/// A plugin answer as text.
fn plugin_text(a: &Value) -> String {
    if let Some(swap) = a.get("plugin") {
        let what = if swap["unchanged"] == Value::Bool(true) {
            "already active"
        } else {
            "now active"
        };
        return format!(
            "{}@{} ({}, {} bytes) {what}; replaced {}; passed {} fixture case(s) in {} ms\n",
            text(&swap["name"]),
            short(&swap["hash"]),
            text(&swap["world"]),
            swap["size"],
            swap["replaced"].as_str().map_or_else(
                || "nothing".to_owned(),
                |h| h.chars().take(12).collect::<String>()
            ),
            swap["fixtures_passed"],
            swap["took_ms"],
        );
    }
    if let Some(plugins) = a["plugins"].as_array() {
        return plugins
            .iter()
            .map(|p| {
                format!(
                    "{}  {}  {}\n",
                    text(&p["name"]),
                    short(&p["active"]),
                    text(&p["world"])
                )
            })
            .collect();
    }
    if let Some(versions) = a["versions"].as_array() {
        let mut out = format!("{} ({})\n", text(&a["name"]), text(&a["world"]));
        for v in versions {
            out.push_str(&format!(
                "  {} {} {} bytes, uploaded {} by {}{}\n",
                if v["active"] == Value::Bool(true) {
                    "*"
                } else {
                    " "
                },
                text(&v["hash"]),
                v["size"],
                time(&v["uploaded_at"]),
                text(&v["uploaded_by"]),
                if v["fixtures"] == Value::Bool(true) {
                    ", with fixtures"
                } else {
                    ""
                },
            ));
        }
        for act in a["activations"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  activated {} at {} by {} ({})\n",
                short(&act["hash"]),
                time(&act["activated_at"]),
                text(&act["activated_by"]),
                text(&act["reason"]),
            ));
        }
        return out;
    }
    format!("{a}\n")
}

pub(super) fn events(remote: &Remote, command: EventsCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    match command {
        EventsCommand::Show { id } => {
            let answer = client.get(&format!("/admin/events/{id}"), &[])?;
            print(remote, &answer, |a| history_text(&a["event"]));
        }
    }
    Ok(())
}

impl SelectionArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("destination", &self.destination),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// A JSON string's text, or the value as JSON.
fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// A Unix-ms time as RFC 3339, or `-`.
fn time(value: &Value) -> String {
    value.as_i64().map_or_else(
        || "-".into(),
        |ms| {
            let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            humantime::format_rfc3339_millis(at).to_string()
        },
    )
}

fn short(hash: &Value) -> String {
    text(hash).chars().take(12).collect()
}

fn dead_letter_line(d: &Value) -> String {
    format!(
        "#{} {} {} event {} ({}) at {} by {}@{}{}: {}\n",
        d["id"],
        text(&d["kind"]),
        time(&d["created_at"]),
        text(&d["event_id"]),
        text(&d["event_type"]),
        text(&d["target"]),
        text(&d["plugin"]),
        short(&d["plugin_hash"]),
        if d["replayed"] == Value::Bool(true) {
            format!(" [replayed {}]", time(&d["replayed_at"]))
        } else {
            String::new()
        },
        text(&d["error"]),
    )
}

/// An event's history as text.
fn history_text(h: &Value) -> String {
    let stored = &h["event"];
    let event = &stored["event"];
    let mut out = format!(
        "event {} ({} from {})\n  accepted  {}  on {}  key {}  version {}\n  processed {}\n",
        text(&event["id"]),
        text(&event["event_type"]),
        text(&event["origin"]),
        time(&stored["accepted_at"]),
        text(&stored["route"]),
        event["key"].as_str().unwrap_or("-"),
        event["version"]
            .as_u64()
            .map_or("-".into(), |v| v.to_string()),
        time(&stored["processed_at"]),
    );
    out.push_str(&format!("  payload   {}\n", text(&event["payload"])));
    for run in h["runs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  run handler {}: {}@{} {} in {} µs at {}{}{}\n",
            run["handler"],
            text(&run["plugin"]),
            short(&run["plugin_hash"]),
            text(&run["outcome"]),
            run["duration_us"],
            time(&run["ran_at"]),
            run["error"]
                .as_str()
                .map_or(String::new(), |e| format!(": {e}")),
            if run["replayed_at"].is_null() {
                String::new()
            } else {
                format!(" [replayed {}]", time(&run["replayed_at"]))
            },
        ));
    }
    for pair in h["outbox"].as_array().into_iter().flatten() {
        let (row, attempts) = (&pair[0], &pair[1]);
        let action = &row["action"];
        let why = match (row["superseded_by"].as_str(), row["last_error"].as_str()) {
            (Some(winner), _) => format!(" by event {winner}"),
            (None, Some(reason)) if row["state"] == "dropped" => format!(": {reason}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  action {}: {} {} key {} version {} [{}{why}] after {} attempt(s), body {}\n",
            text(&action["idempotency_key"]),
            text(&action["kind"]),
            text(&action["target"]),
            action["key"].as_str().unwrap_or("-"),
            action["version"]
                .as_u64()
                .map_or("-".into(), |v| v.to_string()),
            text(&row["state"]),
            row["attempts"],
            text(&action["body"]),
        ));
        for a in attempts.as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    attempt {} at {}: {} in {} ms -> {}{}\n",
                a["attempt"],
                time(&a["started_at"]),
                a["status"]
                    .as_u64()
                    .map_or("no response".into(), |s| format!("HTTP {s}")),
                a["duration_ms"],
                text(&a["outcome"]),
                a["error"]
                    .as_str()
                    .map_or(String::new(), |e| format!(" ({e})")),
            ));
        }
    }
    for d in h["dead_letters"].as_array().into_iter().flatten() {
        out.push_str(&format!("  dead letter {}", dead_letter_line(d)));
    }
    out
}
