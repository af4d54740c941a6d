//! A plugin's result, checked against the output rules (`hms-sync-rules`, which the SDK's test
//! harness applies too) and converted to the engine's types.

use super::bindings::wit;
use super::run::Output;
use super::{Limits, RunError};
use crate::event::{Action, Delivery, Emission, Header};
use hms_sync_rules as rules;

/// What the guest returned, before it is checked.
pub(crate) enum Raw {
    Payload(Vec<u8>),
    Actions(Vec<wit::Action>),
}

/// Checks what the plugin returned against the output limit and the rules, then converts it.
pub(crate) fn checked_output(raw: Raw, limits: &Limits) -> Result<Output, RunError> {
    match raw {
        Raw::Payload(payload) => {
            rules::check_size(payload.len(), limits.output)?;
            Ok(Output::Payload(payload))
        }
        Raw::Actions(actions) => {
            rules::check_actions(actions.iter().map(view), limits.output, limits.actions)?;
            Ok(Output::Actions(actions.into_iter().map(convert).collect()))
        }
    }
}

/// How the rules see an action.
fn view(action: &wit::Action) -> rules::Action<'_> {
    match action {
        wit::Action::Deliver(d) => rules::Action::Deliver {
            destination: &d.destination,
            body: &d.body,
            content_type: d.content_type.as_deref(),
            headers: d
                .headers
                .iter()
                .map(|h| rules::Header {
                    name: &h.name,
                    value: &h.value,
                })
                .collect(),
            key: d.key.as_deref(),
            version: d.version,
        },
        wit::Action::Emit(e) => rules::Action::Emit {
            event_type: &e.event_type,
            payload: &e.payload,
            content_type: e.content_type.as_deref(),
            key: e.key.as_deref(),
            version: e.version,
        },
        wit::Action::Drop(reason) => rules::Action::Drop { reason },
    }
}

/// A checked action in the engine's types (header names lower-case).
fn convert(action: wit::Action) -> Action {
    match action {
        wit::Action::Deliver(d) => Action::Deliver(Delivery {
            destination: d.destination,
            body: d.body,
            content_type: d.content_type,
            headers: d
                .headers
                .into_iter()
                .map(|h| Header::new(h.name.to_ascii_lowercase(), h.value))
                .collect(),
            key: d.key,
            version: d.version,
            timestamp: d.timestamp,
        }),
        wit::Action::Emit(e) => Action::Emit(Emission {
            event_type: e.event_type,
            payload: e.payload,
            content_type: e.content_type,
            key: e.key,
            version: e.version,
            timestamp: e.timestamp,
        }),
        wit::Action::Drop(reason) => Action::Drop(reason),
    }
}
