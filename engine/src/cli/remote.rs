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
            bail!("the engine answered {status}: {message}");
        }
        Ok(body)
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
