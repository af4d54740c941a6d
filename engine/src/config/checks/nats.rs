//! The checks of the sections about NATS: the store's (`store.nats`) and the bus's
//! (`bus.nats`), and what they share (servers, credentials).

use super::{Problems, check_retry};
use crate::config::{Config, Expanded};

impl Config {
    /// The `store` section: a `nats` section exactly with `kind: nats`, and what it names.
    pub(super) fn check_store(&self, p: &mut Problems) {
        use crate::config::StoreKind;
        let nats = match (self.store.kind, &self.store.nats) {
            (StoreKind::Sqlite, None) => return,
            (StoreKind::Sqlite, Some(_)) => {
                p.add("store.nats", "only with `store.kind: nats`");
                return;
            }
            (StoreKind::Nats, None) => {
                p.add(
                    "store.nats",
                    "`store.kind: nats` needs this section (at least `servers`)",
                );
                return;
            }
            (StoreKind::Nats, Some(nats)) => nats,
        };
        check_nats_connection(
            "store.nats",
            &nats.servers,
            nats.credentials.is_some(),
            (nats.user.is_some(), nats.password.is_some()),
            p,
        );
        if nats.prefix.is_empty()
            || !nats
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.add(
                "store.nats.prefix",
                "letters, digits, `-` and `_` only (it starts stream, subject and bucket names)",
            );
        }
        if ![1, 3, 5].contains(&nats.replicas) {
            p.add("store.nats.replicas", "1, 3 or 5");
        }
        if nats.lease < std::time::Duration::from_secs(1) {
            p.add("store.nats.lease", "at least 1s");
        }
        if nats.request_timeout.is_zero() {
            p.add("store.nats.requestTimeout", "must be more than zero");
        }
        if !(1..=1024).contains(&nats.partitions) {
            p.add("store.nats.partitions", "from 1 to 1024");
        }
        if nats.snapshot_interval < std::time::Duration::from_secs(1) {
            p.add("store.nats.snapshotInterval", "at least 1s");
        }
    }

    /// The `bus` section: a `nats` section exactly with `kind: nats`, what it names, and with
    /// it neither the HTTP endpoint's token nor the core's URL (emitted events go onto the bus).
    pub(super) fn check_bus(&self, p: &mut Problems) {
        use crate::config::BusKind;
        let nats = match (self.bus.kind, &self.bus.nats) {
            (BusKind::Http, None) => return,
            (BusKind::Http, Some(_)) => {
                p.add("bus.nats", "only with `bus.kind: nats`");
                return;
            }
            (BusKind::Nats, None) => {
                p.add(
                    "bus.nats",
                    "`bus.kind: nats` needs this section (at least `servers`)",
                );
                return;
            }
            (BusKind::Nats, Some(nats)) => nats,
        };
        if self.bus.token.is_some() {
            p.add(
                "bus.token",
                "only with `bus.kind: http`: on the NATS bus, `POST /events/{type}` is off",
            );
        }
        if self.core.is_some() {
            p.add(
                "core",
                "only with `bus.kind: http`: on the NATS bus, emitted events are published \
                 onto it; remove `core`",
            );
        }
        check_nats_connection(
            "bus.nats",
            &nats.servers,
            nats.credentials.is_some(),
            (nats.user.is_some(), nats.password.is_some()),
            p,
        );
        let prefix_ok = !nats.subject_prefix.is_empty()
            && nats.subject_prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !prefix_ok {
            p.add(
                "bus.nats.subjectPrefix",
                "dot-separated words of letters, digits, `-` and `_` (no wildcards)",
            );
        }
        for (key, name) in [
            ("bus.nats.stream", nats.stream.as_deref()),
            ("bus.nats.consumer", Some(nats.consumer.as_str())),
        ] {
            if let Some(name) = name
                && (name.is_empty()
                    || name.len() > 64
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            {
                p.add(key, "1 to 64 letters, digits, `-` and `_`");
            }
        }
        for (key, value) in [
            ("bus.nats.ackWait", nats.ack_wait),
            ("bus.nats.timeout", nats.timeout),
            ("bus.nats.streamMaxAge", nats.stream_max_age),
        ] {
            if value < std::time::Duration::from_secs(1) {
                p.add(key, "at least 1s");
            }
        }
        check_retry(&nats.retry.apply(&self.retry), "bus.nats.retry", p);
        // The NATS store's log, on the same servers perhaps: its subject `<prefix>.log` must not
        // fall under the bus's `<subjectPrefix>.>`, nor its stream be the bus's.
        if let (crate::config::StoreKind::Nats, Some(store)) = (self.store.kind, &self.store.nats) {
            if nats.subject_prefix == store.prefix {
                p.add(
                    "bus.nats.subjectPrefix",
                    format!(
                        "`{}` starts the NATS store's own subjects (`store.nats.prefix`); choose \
                         another prefix",
                        store.prefix
                    ),
                );
            }
            if nats.stream.as_deref() == Some(&format!("{}_LOG", store.prefix)) {
                p.add("bus.nats.stream", "the NATS store's log has this name");
            }
        }
    }
}

/// A NATS section's servers and credentials (`key`: where the section is): at least one
/// server address, and a credentials file or a user with a password, not both.
fn check_nats_connection(
    key: &str,
    servers: &[Expanded],
    credentials: bool,
    (user, password): (bool, bool),
    p: &mut Problems,
) {
    if servers.is_empty() {
        p.add(format!("{key}.servers"), "name at least one server");
    }
    for (i, server) in servers.iter().enumerate() {
        if let Err(e) = server.parse::<async_nats::ServerAddr>() {
            p.add(
                format!("{key}.servers[{i}]"),
                format!("not a NATS server address ({e})"),
            );
        }
    }
    if credentials && user {
        p.add(
            format!("{key}.user"),
            "either `credentials` or `user`, not both",
        );
    }
    if user != password {
        p.add(
            format!("{key}.password"),
            "`user` and `password` go together",
        );
    }
}
