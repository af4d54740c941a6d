//! What a run's actions become: outbox rows, each with its idempotency key, entity key,
//! version and timestamp, conflict strategy and hop count, and the loop rules that keep an
//! update from going back where it came from or around a cycle forever.

use super::routes::{RouteHandler, Routes};
use crate::sandbox::event::{Action, Event, HMS_ORIGIN};
use crate::store::{OutboxAction, OutboxKind};

/// Outbox rows for a run's actions. Each gets an idempotency key made of the event id, the
/// handler's index and the action's index: the same for every retry, and the same again if the
/// event is processed again after a crash. Each carries its entity key, version and timestamp
/// (the action's, else the route's pointers', else the event's), the route's conflict strategy,
/// and the hop count it will arrive with. An action that would send an update back to the
/// system it came from, or past the hop limit, gets the reason it is not sent.
///
/// A timestamp (the action's or the route pointer's) further ahead of the engine's clock than
/// `maxClockSkew` fails the run (`timestamp-ahead`, a dead letter that can be replayed): under
/// last-write-wins it would make every later update of its entity stale. On a route that reads
/// its keys from payloads (`conflict.key`), a delivery or emission that finds no key anywhere
/// fails the run too (`key-missing`): sent unkeyed it would skip the conflict check and the
/// order of its entity.
pub(super) fn outbox_rows(
    event: &Event,
    handler_index: usize,
    handler: &RouteHandler,
    actions: Vec<Action>,
    routes: &Routes,
) -> Result<Vec<OutboxAction>, (String, String)> {
    let latest = crate::store::now_ms().saturating_add(routes.max_clock_skew_ms);
    let extracted = handler.conflict.extract(&event.payload);
    let key = |own: Option<String>| {
        own.or_else(|| extracted.key.clone())
            .or_else(|| event.key.clone())
    };
    let version = |own: Option<u64>| own.or(extracted.version).or(event.version);
    let timestamp = |own: Option<i64>| own.or(extracted.timestamp).unwrap_or(event.timestamp);
    let over_hop_limit = hop_limit(event.hops, routes.max_hops);
    actions
        .into_iter()
        .enumerate()
        .map(|(j, action)| {
            let mut row = OutboxAction {
                path: event.path.clone(),
                kind: OutboxKind::Drop,
                target: String::new(),
                reason: None,
                idempotency_key: format!("{}.{handler_index}.{j}", event.id),
                origin: event.origin.clone(),
                content_type: String::new(),
                headers: Vec::new(),
                body: Vec::new(),
                key: event.key.clone(),
                version: event.version,
                timestamp: event.timestamp,
                hops: event.hops.saturating_add(1),
                conflict: handler.conflict.strategy,
                resolver: handler.conflict.resolver.clone(),
            };
            match action {
                Action::Deliver(d) => {
                    let destination = &routes.destinations[&d.destination];
                    row.reason = over_hop_limit
                        .clone()
                        .or_else(|| echo_to_system(event, &d.destination, &destination.system));
                    row.kind = OutboxKind::Deliver;
                    row.content_type = d
                        .content_type
                        .unwrap_or_else(|| destination.content_type.clone());
                    row.target = d.destination;
                    row.headers = d.headers;
                    row.body = d.body;
                    row.key = key(d.key);
                    row.version = version(d.version);
                    row.timestamp = timestamp(d.timestamp);
                }
                Action::Emit(e) => {
                    row.reason = over_hop_limit
                        .clone()
                        .or_else(|| echo_to_bus(event, &e.event_type));
                    row.kind = OutboxKind::Emit;
                    row.target = e.event_type;
                    row.content_type = e.content_type.unwrap_or_else(|| "application/json".into());
                    row.body = e.payload;
                    row.key = key(e.key);
                    row.version = version(e.version);
                    row.timestamp = timestamp(e.timestamp);
                }
                Action::Drop(reason) => row.reason = Some(reason),
            }
            if row.kind != OutboxKind::Drop
                && let Some(reason) = &row.reason
            {
                tracing::debug!(event_id = %event.id, target = %row.target, reason = %reason, "not sent");
            }
            let sent = row.kind != OutboxKind::Drop && row.reason.is_none();
            if sent && row.key.is_none() && handler.conflict.keyed() {
                return Err((
                    "key-missing".to_owned(),
                    format!(
                        "action {j} has no entity key: the action sets none, the route's \
                         `conflict.key` pointer finds none in the event's payload, and the event \
                         has no `hms-key`; it is not sent unkeyed, past the conflict check"
                    ),
                ));
            }
            // Only a row that will be sent can pin anything.
            if sent && row.timestamp > latest {
                return Err((
                    "timestamp-ahead".to_owned(),
                    format!(
                        "action {j} has the timestamp {}, {} s ahead of the engine's clock, \
                         more than `maxClockSkew` allows: under last-write-wins it would make \
                         every later update of its entity stale",
                        row.timestamp,
                        (row.timestamp - crate::store::now_ms()) / 1000
                    ),
                ));
            }
            Ok(row)
        })
        .collect()
}

/// Why an update that already crossed `hops` systems goes no further, when `max_hops` says so.
fn hop_limit(hops: u32, max_hops: u32) -> Option<String> {
    (hops >= max_hops).then(|| {
        format!("hop limit: the update already crossed {hops} systems (maxHops is {max_hops})")
    })
}

/// Why a delivery to `destination`, which belongs to `system`, would be an echo: the update
/// came from that system (its origin, or a system on its path).
fn echo_to_system(event: &Event, destination: &str, system: &str) -> Option<String> {
    (event.origin == system || event.path.iter().any(|s| s == system)).then(|| {
        format!(
            "echo: `{destination}` belongs to `{system}`, which this update came from \
             (origin `{}`, path {})",
            event.origin,
            event.path.join(" > ")
        )
    })
}

/// Why emitting `event_type` would be an echo: the same type back onto the bus the event came
/// from (a bus event's handler may still emit other types).
fn echo_to_bus(event: &Event, event_type: &str) -> Option<String> {
    let came_from_bus = event.path.last().is_some_and(|s| s == HMS_ORIGIN);
    (came_from_bus && event_type == event.event_type).then(|| {
        format!("echo: `{event_type}` came from the HMS bus; it is not emitted back to it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(origin: &str, path: &[&str], hops: u32) -> Event {
        Event {
            id: "e".into(),
            event_type: "tax.rate.updated".into(),
            origin: origin.into(),
            key: None,
            version: None,
            timestamp: 0,
            content_type: "application/json".into(),
            payload: b"{}".to_vec(),
            headers: Vec::new(),
            hops,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn an_update_never_goes_back_to_a_system_it_came_through() {
        let from_state = event("state-api", &["state-api"], 0);
        assert!(echo_to_system(&from_state, "state", "state-api").is_some());
        assert!(echo_to_system(&from_state, "irs", "irs").is_none());
        // Relayed through the IRS and the bus: neither gets it back.
        let relayed = event("state-api", &["state-api", "irs", "hms"], 2);
        assert!(echo_to_system(&relayed, "irs-api", "irs").is_some());
        assert!(echo_to_system(&relayed, "dmv", "dmv").is_none());
    }

    #[test]
    fn the_same_type_is_not_emitted_back_to_the_bus() {
        let from_bus = event("hms", &["hms"], 0);
        assert!(echo_to_bus(&from_bus, "tax.rate.updated").is_some());
        assert!(echo_to_bus(&from_bus, "tax.rate.audited").is_none());
        let from_webhook = event("state-api", &["state-api"], 0);
        assert!(echo_to_bus(&from_webhook, "tax.rate.updated").is_none());
    }

    #[test]
    fn the_hop_limit_ends_cycles() {
        assert!(hop_limit(3, 4).is_none());
        let reason = hop_limit(4, 4).unwrap();
        assert!(reason.contains("crossed 4 systems"), "{reason}");
    }
}
