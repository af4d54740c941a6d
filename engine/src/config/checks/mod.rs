//! The checks serde cannot make: references between sections, URLs, names, paths, limits; and
//! the warnings about what is valid but probably not meant.

use super::{Config, ConflictConfig, Expanded, LimitsConfig, Problem, RetryConfig, Strategy};
use std::collections::{BTreeMap, BTreeSet};

mod nats;

/// Paths the engine serves itself, which a webhook may not use.
const RESERVED_PATHS: &[&str] = &["/events", "/healthz", "/readyz", "/metrics", "/admin"];

impl Config {
    /// What is valid but probably not meant: a webhook without `system` (so echo prevention
    /// cannot recognise its partner's destination), while destinations exist; metrics open to
    /// anyone on an address beyond loopback.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        let metrics_at = self.admin.listen.unwrap_or(self.listen);
        if self.admin.metrics_token.is_none() && !metrics_at.ip().is_loopback() {
            p.add(
                "admin.metricsToken",
                format!(
                    "not set, so anyone who reaches {metrics_at} can read /metrics (event \
                     types, destinations, rates): set one, or serve the admin API and metrics \
                     on a loopback `admin.listen`"
                ),
            );
        }
        let systems: BTreeSet<&str> = self
            .destinations
            .iter()
            .map(|(name, d)| d.system.as_deref().unwrap_or(name))
            .collect();
        for (i, route) in self.external_webhooks.iter().enumerate() {
            if route.system.is_none() && !systems.is_empty() {
                p.add(
                    format!("externalWebhooks[{i}].system"),
                    format!(
                        "not set, so this webhook's system is its path `{}`, which no destination \
                         belongs to: set it to the partner's destination (or its `system`) so \
                         updates from it are never sent back to it",
                        route.path
                    ),
                );
            }
        }
        p.0
    }

    /// The checks serde cannot make: references between sections, URLs, names, secrets.
    pub(super) fn check(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        p.0.extend(self.exposure_problems());
        if let Some(token) = &self.bus.token {
            check_token(token, "bus.token", &mut p);
        }
        if let Some(token) = &self.admin.token {
            check_token(token, "admin.token", &mut p);
        }
        if let Some(token) = &self.admin.metrics_token {
            check_token(token, "admin.metricsToken", &mut p);
        }
        for (key, value) in [
            ("http.headerTimeout", self.http.header_timeout),
            ("http.bodyTimeout", self.http.body_timeout),
            ("store.retention.finished", self.store.retention.finished),
            (
                "store.retention.deadLetters",
                self.store.retention.dead_letters,
            ),
            ("store.retention.dedupe", self.store.retention.dedupe),
            ("store.retention.interval", self.store.retention.interval),
            ("sandbox.compileTimeout", self.sandbox.compile_timeout),
            ("http.shutdownTimeout", self.http.shutdown_timeout),
        ] {
            if value.is_zero() {
                p.add(key, "must be more than zero");
            }
        }
        if !(1..=crate::json::MAX_DEPTH_LIMIT).contains(&self.max_json_depth) {
            p.add(
                "maxJsonDepth",
                format!("must be 1 to {}", crate::json::MAX_DEPTH_LIMIT),
            );
        }
        self.check_store(&mut p);
        self.check_bus(&mut p);
        if self.admin.listen.is_some_and(|admin| admin == self.listen) {
            p.add(
                "admin.listen",
                "the same address as `listen`: leave it out to serve the admin API there",
            );
        }
        if let Some(core) = &self.core {
            if let Err(e) = check_url(&core.url) {
                p.add("core.url", e);
            }
            check_retry(&core.retry.apply(&self.retry), "core.retry", &mut p);
        }
        check_retry(&self.retry, "retry", &mut p);
        for (name, destination) in &self.destinations {
            let key = format!("destinations.{name}");
            if let Err(e) = check_name(name) {
                p.add(&key, e);
            }
            check_secrets(&destination.secrets, &format!("{key}.secrets"), &mut p);
            if let Err(e) = check_url(&destination.url) {
                p.add(format!("{key}.url"), e);
            }
            for (header, value) in &destination.headers {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    p.add(
                        format!("{key}.headers.{header}"),
                        "not a valid HTTP header name",
                    );
                } else if http::HeaderValue::from_str(value).is_err() {
                    p.add(
                        format!("{key}.headers.{header}"),
                        "the value is not a valid HTTP header value",
                    );
                }
            }
            check_retry(
                &destination.retry.apply(&self.retry),
                &format!("{key}.retry"),
                &mut p,
            );
        }
        if self.sandbox.workers.get() > self.sandbox.max_instances.get() as usize {
            p.add(
                "sandbox.workers",
                format!(
                    "{} workers could need more instances than sandbox.maxInstances ({})",
                    self.sandbox.workers, self.sandbox.max_instances
                ),
            );
        }
        // Idle instances kept for reuse hold the pool's slots: with the workers' own, they must
        // fit, or fresh instances would find the pool full.
        let reusing = self
            .plugins
            .values()
            .filter(|plugin| plugin.isolation.reuse_for.get() > 1)
            .count();
        let kept = reusing * crate::sandbox::MAX_IDLE;
        if reusing > 0
            && kept + self.sandbox.workers.get() > self.sandbox.max_instances.get() as usize
        {
            p.add(
                "sandbox.maxInstances",
                format!(
                    "{reusing} plugin(s) reuse instances and may each keep {} idle ({kept} in all), \
                     which with {} workers is more than sandbox.maxInstances ({}): raise it",
                    crate::sandbox::MAX_IDLE,
                    self.sandbox.workers,
                    self.sandbox.max_instances
                ),
            );
        }
        self.check_limits(&self.sandbox.limits, "sandbox.limits", &mut p);
        for (name, plugin) in &self.plugins {
            if let Err(e) = check_name(name) {
                p.add(format!("plugins.{name}"), e);
            }
            self.check_limits(&plugin.limits, &format!("plugins.{name}.limits"), &mut p);
        }
        for (i, route) in self.hms_events.iter().enumerate() {
            let key = format!("hmsEvents[{i}]");
            if let Err(e) = crate::sandbox::event::check_event_type(&route.event) {
                p.add(format!("{key}.event"), e);
            }
            check_ref(
                &self.plugins,
                "plugin",
                &route.handler,
                &format!("{key}.handler"),
                &mut p,
            );
            if let Some(destination) = &route.destination {
                let key = format!("{key}.destination");
                check_ref(&self.destinations, "destination", destination, &key, &mut p);
            }
            self.check_conflict(&route.conflict, &format!("{key}.conflict"), &mut p);
        }
        let mut paths = BTreeSet::new();
        for (i, route) in self.external_webhooks.iter().enumerate() {
            let key = format!("externalWebhooks[{i}]");
            if let Err(e) = check_webhook_path(&route.path) {
                p.add(format!("{key}.path"), e);
            } else if !paths.insert(route.path.as_str()) {
                p.add(
                    format!("{key}.path"),
                    format!("`{}` is already the path of another webhook", route.path),
                );
            }
            check_ref(
                &self.plugins,
                "plugin",
                &route.handler,
                &format!("{key}.handler"),
                &mut p,
            );
            if let Err(e) = crate::sandbox::event::check_event_type(&route.event_type()) {
                p.add(format!("{key}.type"), e);
            }
            if let Some(emit) = &route.emit {
                if let Err(e) = crate::sandbox::event::check_event_type(emit) {
                    p.add(format!("{key}.emit"), e);
                }
                if self.core.is_none() && self.bus.nats().is_none() {
                    p.add(
                        format!("{key}.emit"),
                        "this route emits HMS events, which go to the core: set `core.url` \
                         (or put the engine on a NATS bus, `bus.kind: nats`)",
                    );
                }
            }
            if let Err(e) = check_name(route.system()) {
                p.add(format!("{key}.system"), e);
            }
            check_secrets(&route.secrets, &format!("{key}.secrets"), &mut p);
            self.check_conflict(&route.conflict, &format!("{key}.conflict"), &mut p);
            for (j, header) in route.headers.iter().enumerate() {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    p.add(
                        format!("{key}.headers[{j}]"),
                        format!("`{header}` is not a valid HTTP header name"),
                    );
                }
            }
        }
        p.0
    }

    /// What must hold when `listen` is not a loopback address, where anyone who reaches the
    /// port could otherwise write events: a bus token when HMS event routes exist, and secrets
    /// (or an explicit `unauthenticated: true`) on every webhook. Checked for the address the
    /// engine will use (`run --listen` replaces the file's before the checks).
    fn exposure_problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        if self.listen.ip().is_loopback() {
            return p.0;
        }
        let listen = self.listen;
        if self.bus.token.is_none()
            && self.bus.kind == super::bus::BusKind::Http
            && !self.hms_events.is_empty()
        {
            p.add(
                "bus.token",
                format!(
                    "required: the engine listens on {listen}, beyond this machine, and anyone \
                     who reaches it could post HMS events; set a token of at least \
                     {MIN_SECRET_BYTES} bytes (or listen on a loopback address)"
                ),
            );
        }
        for (i, route) in self.external_webhooks.iter().enumerate() {
            if route.secrets.is_empty() && !route.unauthenticated {
                p.add(
                    format!("externalWebhooks[{i}].secrets"),
                    format!(
                        "required: the engine listens on {listen}, beyond this machine, and \
                         anyone who reaches it could call `{}`; set the partner's Standard \
                         Webhooks secrets, or `unauthenticated: true` to accept unsigned \
                         requests on purpose",
                        route.path
                    ),
                );
            }
        }
        p.0
    }

    fn check_conflict(&self, conflict: &ConflictConfig, key: &str, p: &mut Problems) {
        match (conflict.strategy, &conflict.resolver) {
            (Strategy::Plugin, Some(resolver)) => {
                check_ref(
                    &self.plugins,
                    "plugin",
                    resolver,
                    &format!("{key}.resolver"),
                    p,
                );
            }
            (Strategy::Plugin, None) => p.add(
                format!("{key}.resolver"),
                "the `plugin` strategy needs a resolver plugin",
            ),
            (_, Some(_)) => p.add(
                format!("{key}.resolver"),
                "a resolver is only used with `strategy: plugin`",
            ),
            (_, None) => {}
        }
        for (name, pointer) in [
            ("key", &conflict.key),
            ("version", &conflict.version),
            ("timestamp", &conflict.timestamp),
        ] {
            if let Some(pointer) = pointer
                && !pointer.starts_with('/')
            {
                p.add(
                    format!("{key}.{name}"),
                    format!(
                        "`{pointer}` is not a JSON pointer; it starts with `/`, as in `/taxYear`"
                    ),
                );
            }
        }
    }

    fn check_limits(&self, limits: &LimitsConfig, key: &str, p: &mut Problems) {
        let max_memory = self.sandbox.max_memory;
        if let Some(memory) = limits.memory
            && memory > max_memory
        {
            p.add(
                format!("{key}.memory"),
                format!("{memory} bytes is more than sandbox.maxMemory ({max_memory} bytes)"),
            );
        }
    }
}

/// Checks that `name` is a key of `section` (the map called `what`s in the file).
fn check_ref<V>(
    section: &BTreeMap<String, V>,
    what: &str,
    name: &str,
    key: &str,
    p: &mut Problems,
) {
    if !section.contains_key(name) {
        let names: Vec<String> = section.keys().map(|n| format!("`{n}`")).collect();
        let known = if names.is_empty() {
            format!("no {what}s are configured")
        } else {
            format!("the configured {what}s are {}", names.join(", "))
        };
        p.add(key, format!("no {what} is named `{name}`; {known}"));
    }
}

/// Problems found so far.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn check_retry(retry: &RetryConfig, key: &str, p: &mut Problems) {
    if !(retry.factor.is_finite() && retry.factor >= 1.0) {
        p.add(
            format!("{key}.factor"),
            format!(
                "{} is not a growth factor; it must be at least 1",
                retry.factor
            ),
        );
    }
    if retry.max_delay < retry.initial_delay {
        p.add(
            format!("{key}.maxDelay"),
            "is shorter than the initial delay",
        );
    }
}

/// The fewest bytes a token or a signing key may have.
pub const MIN_SECRET_BYTES: usize = 16;

fn check_token(token: &str, key: &str, p: &mut Problems) {
    if token.len() < MIN_SECRET_BYTES {
        p.add(
            key,
            format!(
                "a token must be at least {MIN_SECRET_BYTES} bytes (this one has {}): a short \
                 one can be guessed",
                token.len()
            ),
        );
    }
}

fn check_secrets(secrets: &[Expanded], key: &str, p: &mut Problems) {
    for (i, secret) in secrets.iter().enumerate() {
        if let Err(e) = crate::signing::parse_secret(secret) {
            p.add(format!("{key}[{i}]"), e);
        }
    }
}

fn check_url(raw: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}` is not an http or https URL"));
    }
    Ok(())
}

/// Names of plugins, destinations and systems: they appear in logs, records and URLs.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name is 1 to 64 characters long".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err(format!(
            "`{name}` may only hold ASCII letters, digits, `-`, `_`, `.` and `/`"
        ));
    }
    Ok(())
}

fn check_webhook_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.len() < 2 {
        return Err(format!("`{path}` must start with `/` and name a path"));
    }
    if path.ends_with('/') {
        return Err(format!("`{path}` must not end with `/`"));
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
        || path.contains("//")
    {
        return Err(format!(
            "`{path}` may only hold ASCII letters, digits, `-`, `_`, `.` and single `/`"
        ));
    }
    if let Some(reserved) = RESERVED_PATHS
        .iter()
        .find(|r| path == **r || path.starts_with(&format!("{r}/")))
    {
        return Err(format!(
            "`{path}` is under `{reserved}`, which the engine serves itself"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn warned_keys(yaml: &str) -> Vec<String> {
        Config::parse(yaml, Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"))
            .warnings()
            .into_iter()
            .map(|w| w.key)
            .collect()
    }

    #[test]
    fn metrics_open_beyond_loopback_are_warned_about() {
        let exposed = "listen: 0.0.0.0:6000\n";
        assert_eq!(warned_keys(exposed), ["admin.metricsToken"]);
        let with_token = "listen: 0.0.0.0:6000\nadmin:\n  metricsToken: a-metrics-token-value\n";
        assert!(warned_keys(with_token).is_empty());
        let admin_on_loopback = "listen: 0.0.0.0:6000\nadmin:\n  listen: 127.0.0.1:6001\n";
        assert!(warned_keys(admin_on_loopback).is_empty());
        assert!(warned_keys("listen: 127.0.0.1:6000\n").is_empty());
    }
}
