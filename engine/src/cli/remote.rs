//! The commands that talk to a running engine's admin API: `dlq`, `events`, `entities` and the
//! plugin lifecycle commands ([`plugins`]). They read the API's own types
//! ([`crate::admin::api`]).

use super::text::{dead_letter_line, history_text, time};
use crate::admin::api::{
    DeadLetterDetail, DeadLetters, Entity, EntityAnswer, EntityQuery, EntityReset, ErrorAnswer,
    EventAnswer, EventList, EventSearch, Replayed, Selection,
};
use crate::config::Config;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

mod plugins;

pub(super) use plugins::{PluginRemote, plugin};

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
    /// Finds events by entity key, type, origin or acceptance time, newest first.
    Find {
        /// The entity key.
        #[arg(long)]
        key: Option<String>,
        /// The event type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// The system it came from.
        #[arg(long)]
        origin: Option<String>,
        /// Accepted at or after this time (RFC 3339 or Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// Accepted before this time (RFC 3339 or Unix ms).
        #[arg(long)]
        until: Option<String>,
        /// At most this many (default 50, at most 500).
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum EntitiesCommand {
    /// Shows the last version a destination (or the core, for an emitted type) was sent of an
    /// entity.
    Show {
        #[command(flatten)]
        entity: EntityArgs,
    },
    /// Forgets it, so the entity's next update is sent whatever its version or timestamp (an
    /// entity pinned by a far-future version). Logged with who did it.
    Reset {
        #[command(flatten)]
        entity: EntityArgs,
    },
}

#[derive(Debug, Args)]
pub(super) struct EntityArgs {
    /// The destination the entity is delivered to.
    #[arg(long, required_unless_present = "emit", conflicts_with = "emit")]
    destination: Option<String>,
    /// Or the event type it is emitted as.
    #[arg(long)]
    emit: Option<String>,
    /// The entity key.
    #[arg(long)]
    key: String,
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
    /// Sends a request and reads the answer as `T`; an error answer becomes an error saying
    /// what the engine said.
    fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("cannot reach the engine at {}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .context("cannot read the engine's answer")?;
        if !status.is_success() {
            let answer: ErrorAnswer = serde_json::from_slice(&body).with_context(|| {
                format!(
                    "the engine answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )
            })?;
            let failures: String = answer
                .error
                .failures
                .iter()
                .map(|f| format!("\n  - {f}"))
                .collect();
            bail!(
                "the engine answered {status}: {}{failures}",
                answer.error.message
            );
        }
        serde_json::from_slice(&body).context("the engine's answer is not what this command reads")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn get<T: DeserializeOwned>(&self, path: &str, query: &impl Serialize) -> anyhow::Result<T> {
        self.call(self.request(reqwest::Method::GET, path).query(query))
    }
}

/// Prints an answer: as JSON with `--json`, else as `text` makes it.
#[allow(clippy::print_stdout)]
fn print<T: Serialize>(remote: &Remote, answer: &T, text: impl FnOnce(&T) -> String) {
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
    /// Dead letters asked for per request.
    const PAGE: usize = 1000;
    match command {
        DlqCommand::List {
            selection,
            all,
            limit,
        } => {
            // Page by page, until the end or `limit` (0, as before, means no limit).
            let limit = limit.filter(|l| *l > 0);
            let mut answer = DeadLetters {
                dead_letters: Vec::new(),
                next: None,
            };
            loop {
                let wanted = limit.map(|l| l.saturating_sub(answer.dead_letters.len()));
                let query = Selection {
                    all,
                    limit: wanted.map(|w| w.min(PAGE)).or(Some(PAGE)),
                    after: answer.next,
                    ..selection.selection()
                };
                let page: DeadLetters = client.get("/admin/dead-letters", &query)?;
                answer.dead_letters.extend(page.dead_letters);
                answer.next = page.next;
                let enough = limit.is_some_and(|l| answer.dead_letters.len() >= l);
                if answer.next.is_none() || enough {
                    break;
                }
            }
            print(remote, &answer, |a| {
                if a.dead_letters.is_empty() {
                    return "no dead letters\n".into();
                }
                a.dead_letters.iter().map(dead_letter_line).collect()
            });
        }
        DlqCommand::Show { id } => {
            let answer: DeadLetterDetail = client.get(&format!("/admin/dead-letters/{id}"), &())?;
            print(remote, &answer, |a| {
                let mut out = dead_letter_line(&a.dead_letter);
                if let Some(event) = &a.event {
                    out.push_str(&history_text(event));
                }
                out
            });
        }
        DlqCommand::Replay {
            ids,
            selection,
            all,
        } => {
            let body = Selection {
                ids,
                all,
                ..selection.selection()
            };
            let answer: Replayed = client.call(
                client
                    .request(reqwest::Method::POST, "/admin/dead-letters/replay")
                    .json(&body),
            )?;
            print(remote, &answer, |a| {
                let mut out = format!(
                    "replayed {} dead letter(s): {:?}\n",
                    a.replayed.len(),
                    a.replayed
                );
                for skipped in &a.skipped {
                    out.push_str(&format!("skipped #{}: {}\n", skipped.id, skipped.reason));
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
            let answer: EventAnswer = client.get(&format!("/admin/events/{id}"), &())?;
            print(remote, &answer, |a| history_text(&a.event));
        }
        EventsCommand::Find {
            key,
            event_type,
            origin,
            since,
            until,
            limit,
        } => {
            let search = EventSearch {
                key,
                event_type,
                origin,
                since,
                until,
                limit,
                ..EventSearch::default()
            };
            let answer: EventList = client.get("/admin/events", &search)?;
            print(remote, &answer, |list| {
                list.events
                    .iter()
                    .map(|e| {
                        format!(
                            "{}  {}  {} from {}{}  {}\n",
                            time(Some(e.accepted_at)),
                            e.id,
                            e.event_type,
                            e.origin,
                            e.key
                                .as_deref()
                                .map(|k| format!(", key {k}"))
                                .unwrap_or_default(),
                            e.state
                        )
                    })
                    .collect::<String>()
                    + if list.events.is_empty() {
                        "no event matches\n"
                    } else {
                        ""
                    }
            });
        }
    }
    Ok(())
}

pub(super) fn entities(remote: &Remote, command: EntitiesCommand) -> anyhow::Result<()> {
    let client = remote.client()?;
    let line = |e: &Entity| {
        let version = e.version.map_or_else(|| "-".to_owned(), |v| v.to_string());
        format!(
            "{} {} key {}: version {version}, timestamp {}, event {}",
            e.kind, e.target, e.key, e.timestamp, e.event_id
        )
    };
    match command {
        EntitiesCommand::Show { entity } => {
            let answer: EntityAnswer = client.get("/admin/entities", &entity.query())?;
            print(remote, &answer, |a| format!("{}\n", line(&a.entity)));
        }
        EntitiesCommand::Reset { entity } => {
            let answer: EntityReset = client.call(
                client
                    .request(reqwest::Method::DELETE, "/admin/entities")
                    .query(&entity.query()),
            )?;
            print(remote, &answer, |a| {
                format!("reset ({}) {}\n", a.by, line(&a.reset))
            });
        }
    }
    Ok(())
}

impl EntityArgs {
    fn query(&self) -> EntityQuery {
        EntityQuery {
            destination: self.destination.clone(),
            emit: self.emit.clone(),
            key: self.key.clone(),
        }
    }
}

impl SelectionArgs {
    fn selection(&self) -> Selection {
        Selection {
            destination: self.destination.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            ..Selection::default()
        }
    }
}
