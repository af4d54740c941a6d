//! The dead letters page: a filtered list with where each replay stands now, and the replay
//! form (the ticked dead letters, or every one the filter matches).

use super::session::Notice;
use super::{
    LoggedIn, back_to, checked_form, error_page, field, given, json, page, pages, typed_time,
    with_query,
};
use crate::admin::Admin;
use crate::admin::api::Selection;
use crate::http::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a replayed dead letter's work stands now.
#[derive(serde::Serialize)]
struct Now {
    state: String,
    text: String,
    /// Whether it may still change (the page refreshes while one may).
    awaiting: bool,
}

pub(super) async fn list(
    State(admin): State<Arc<Admin>>,
    who: LoggedIn,
    request_query: Result<Query<Selection>, QueryRejection>,
) -> Response {
    let selection = match request_query {
        Ok(Query(selection)) => selection,
        Err(e) => {
            return error_page(
                &who,
                "dead-letters",
                &ApiError::bad_request(e),
                "/console/dead-letters",
            );
        }
    };
    let selection = Selection {
        destination: selection.destination.filter(|d| !d.is_empty()),
        since: typed_time(selection.since.filter(|s| !s.is_empty())),
        until: typed_time(selection.until.filter(|s| !s.is_empty())),
        ..selection
    };
    let filtered =
        selection.destination.is_some() || selection.since.is_some() || selection.until.is_some();
    let (dead, next, error) = match admin.dead_letters(&selection).await {
        Ok(list) => (list.dead_letters, list.next, None),
        Err(e) => (Vec::new(), None, Some(e.detail().message.clone())),
    };
    // Where each replayed one's work stands now: its delivery's state, or its event's.
    let mut now = BTreeMap::new();
    for d in dead.iter().filter(|d| d.replayed) {
        let Ok(history) = admin.event(&d.event_id).await else {
            continue;
        };
        let h = history.event;
        let (state, text) = match d
            .action_id
            .and_then(|id| h.actions.iter().find(|a| a.id == id))
        {
            Some(action) => {
                let attempts = action.attempts.len();
                let text = match action.state.as_str() {
                    "delivered" => format!(
                        "delivered {} (attempt {attempts})",
                        pages::when(action.finished_at)
                    ),
                    "pending" => format!("pending, attempt {} next", attempts + 1),
                    other => format!("{other} again"),
                };
                (action.state.clone(), text)
            }
            None => {
                let state = h.state();
                (state.to_owned(), format!("event {state}"))
            }
        };
        let awaiting = matches!(state.as_str(), "pending" | "processing" | "delivering");
        now.insert(
            d.id,
            Now {
                state,
                text,
                awaiting,
            },
        );
    }
    let mut targets: Vec<String> = admin
        .configuration()
        .destinations
        .iter()
        .map(|d| d.name.clone())
        .chain(
            admin
                .configuration()
                .core
                .iter()
                .map(|_| "hms-core".to_owned()),
        )
        .chain(admin.plugins().plugins.into_iter().map(|p| p.name))
        .collect();
    targets.sort();
    targets.dedup();
    let here = with_query("/console/dead-letters", &selection);
    let more = next.map(|after| {
        let page = Selection {
            after: Some(after),
            ..selection.clone()
        };
        with_query("/console/dead-letters", &page)
    });
    page(
        "dead_letters.html",
        &who,
        "dead-letters",
        context! {
            dead => json(&dead), now => json(&now), selection => json(&selection), targets,
            filtered, error, next, more, here
        },
    )
}

pub(super) async fn replay(
    State(admin): State<Arc<Admin>>,
    who: LoggedIn,
    request: Request,
) -> Response {
    let fields = match checked_form(&who, request).await {
        Ok(fields) => fields,
        Err(refused) => return refused.into_response(),
    };
    let back = field(&fields, "return").map(str::to_owned);
    let notice = match replay_selection(&fields) {
        Err(why) => Notice::refused(why, Vec::new()),
        Ok(selection) => match admin.replay(&selection).await {
            Ok(replayed) => {
                let ids = |ids: &[i64]| {
                    ids.iter()
                        .map(|id| format!("#{id}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut lines: Vec<String> = replayed
                    .skipped
                    .iter()
                    .map(|s| format!("#{} skipped: {}", s.id, s.reason))
                    .collect();
                if replayed.replayed.is_empty() {
                    Notice::refused("Nothing was replayed.", lines)
                } else {
                    lines.insert(
                        0,
                        "They are queued again; the Now column shows them land.".to_owned(),
                    );
                    Notice::ok(
                        format!(
                            "Replayed {} dead letter{}: {}.",
                            replayed.replayed.len(),
                            if replayed.replayed.len() == 1 {
                                ""
                            } else {
                                "s"
                            },
                            ids(&replayed.replayed)
                        ),
                        lines,
                    )
                }
            }
            Err(e) => Notice::refused(e.detail().message.clone(), e.detail().failures.clone()),
        },
    };
    admin.sessions().notify(&who.session.id, notice);
    // Show the replayed ones too, so they can be seen to land.
    let to = back.map(|b| {
        if b.contains("all=") {
            b
        } else if b.contains('?') {
            format!("{b}&all=true")
        } else {
            format!("{b}?all=true")
        }
    });
    back_to(to.as_deref(), "/console/dead-letters?all=true").into_response()
}

/// What a replay form asks for: the ticked dead letters, or every one the filter matches.
fn replay_selection(fields: &[(String, String)]) -> Result<Selection, String> {
    match field(fields, "scope") {
        Some("matching") => {
            let selection = Selection {
                destination: given(fields, "destination"),
                since: typed_time(given(fields, "since")),
                until: typed_time(given(fields, "until")),
                ..Selection::default()
            };
            let all = selection.destination.is_none()
                && selection.since.is_none()
                && selection.until.is_none();
            Ok(Selection { all, ..selection })
        }
        _ => {
            let ids = fields
                .iter()
                .filter(|(name, _)| name == "ids")
                .map(|(_, id)| {
                    id.parse::<i64>()
                        .map_err(|_| format!("`{id}` is not a dead letter's id"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ids.is_empty() {
                return Err("Tick the dead letters to replay first.".to_owned());
            }
            Ok(Selection {
                ids,
                ..Selection::default()
            })
        }
    }
}
