//! The configuration's shape: one struct per section of the YAML file, with its named defaults.
//! Unknown keys are errors (`deny_unknown_fields`); keys are camelCase.

use super::StoreConfig;
use super::bus::BusConfig;
use super::listeners::{AdminConfig, HttpConfig};
use super::plugins::{PluginConfig, SandboxConfig};
use super::values::{self, Expanded, ExpandedPath};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The address the HTTP listeners bind: the HMS bus endpoint, webhooks, health.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (`1MiB`, `512KiB` or a number).
    #[serde(default = "default_max_body", deserialize_with = "values::size")]
    pub max_body_size: usize,
    /// How deep a payload may nest (arrays and objects), 1 to 256: a deeper one is refused
    /// where it arrives, with the bus's, webhooks' and NATS messages' other JSON checks.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// The HTTP listeners' limits.
    #[serde(default)]
    pub http: HttpConfig,
    /// The HMS bus: the embedded endpoint `POST /events/{type}` (`kind: http`, the default) or
    /// a NATS subscription (`kind: nats`).
    #[serde(default)]
    pub bus: BusConfig,
    /// How far ahead of the engine's clock a timestamp may be: an `hms-timestamp` further ahead
    /// is refused, an action's or payload pointer's fails its run (a far-future time would win
    /// every later last-write-wins comparison).
    #[serde(
        default = "default_max_clock_skew",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub max_clock_skew: Duration,
    /// The admin API (`/admin/...`): dead letters, event history.
    #[serde(default)]
    pub admin: AdminConfig,
    /// HMS-SYS, where emitted HMS events are delivered. Needed when a plugin emits events.
    pub core: Option<CoreConfig>,
    /// The durable store.
    #[serde(default)]
    pub store: StoreConfig,
    /// The plugin sandbox.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// The plugins, by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// A directory the engine watches: a `<name>.wasm` file there becomes a new version of the
    /// configured plugin `<name>` when it changes (with `<name>.fixtures.json`, if present).
    pub plugin_dir: Option<ExpandedPath>,
    /// Where deliveries go, by name. Plugins name destinations; they never see URLs.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// The default retry policy of every destination and of the core.
    #[serde(default)]
    pub retry: RetryConfig,
    /// How many deliveries may be in flight at once, across destinations.
    #[serde(default = "default_delivery_concurrency")]
    pub delivery_concurrency: NonZeroUsize,
    /// How many systems an update may cross (HMS core to partner and back counts two) before
    /// the engine stops forwarding it: the end of any cycle the origin check cannot see.
    #[serde(default = "default_max_hops")]
    pub max_hops: u32,
    /// Routes for events from the HMS bus: run `handler` on every event of type `event`.
    #[serde(default)]
    pub hms_events: Vec<HmsEventRoute>,
    /// Routes for external webhooks: run `handler` on every request to `path`.
    #[serde(default)]
    pub external_webhooks: Vec<WebhookRoute>,
}

/// HMS-SYS, the core.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CoreConfig {
    /// The core's base URL; events go to `POST {url}/events/{type}`.
    pub url: Expanded,
    /// The bearer token the engine presents to the core.
    pub token: Option<Expanded>,
    /// How long one delivery attempt to the core may take.
    #[serde(
        default = "default_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub timeout: Duration,
    /// Overrides of the default retry policy for the core.
    #[serde(default)]
    pub retry: RetryOverride,
}

/// One destination.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationConfig {
    /// The URL deliveries are sent to.
    pub url: Expanded,
    /// The external system this destination belongs to (default: the destination's name). An
    /// update that came from this system is never delivered back to it.
    pub system: Option<String>,
    /// The HTTP method: `POST` (default), `PUT` or `PATCH`.
    #[serde(default)]
    pub method: Method,
    /// Headers added to every request (for credentials, use `${ENV}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Expanded>,
    /// How long one attempt may take, connection included.
    #[serde(
        default = "default_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub timeout: Duration,
    /// The media type of bodies whose plugin did not set one.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// How many deliveries to this destination may be in flight at once.
    #[serde(default = "default_destination_concurrency")]
    pub concurrency: NonZeroUsize,
    /// Standard Webhooks secrets (`whsec_...`) to sign every request with; several at once
    /// while a secret is rotated.
    #[serde(default)]
    pub secrets: Vec<Expanded>,
    /// Overrides of the default retry policy.
    #[serde(default)]
    pub retry: RetryOverride,
}

/// The HTTP methods a destination may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `POST`
    #[default]
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
}

impl Method {
    /// The method as `http` knows it.
    pub fn as_http(self) -> http::Method {
        match self {
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Patch => http::Method::PATCH,
        }
    }
}

/// The retry policy: exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryConfig {
    /// The delay before the second attempt.
    #[serde(
        default = "default_initial_delay",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub initial_delay: Duration,
    /// How much each delay grows over the previous one (at least 1).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// The longest delay between two attempts.
    #[serde(
        default = "default_max_delay",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub max_delay: Duration,
    /// How many attempts in all before the delivery becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: NonZeroU32,
    /// How long after it was queued a delivery may still be retried.
    #[serde(
        default = "default_max_age",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub max_age: Duration,
    /// The longest `Retry-After` a receiver may ask for; a longer one is cut to this.
    #[serde(
        default = "default_max_retry_after",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: default_initial_delay(),
            factor: default_factor(),
            max_delay: default_max_delay(),
            max_attempts: default_max_attempts(),
            max_age: default_max_age(),
            max_retry_after: default_max_retry_after(),
        }
    }
}

/// Per-destination overrides of [`RetryConfig`]; unset fields take the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryOverride {
    /// See [`RetryConfig::initial_delay`].
    #[serde(default, deserialize_with = "values::opt_duration::deserialize")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub initial_delay: Option<Duration>,
    /// See [`RetryConfig::factor`].
    pub factor: Option<f64>,
    /// See [`RetryConfig::max_delay`].
    #[serde(default, deserialize_with = "values::opt_duration::deserialize")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub max_delay: Option<Duration>,
    /// See [`RetryConfig::max_attempts`].
    pub max_attempts: Option<NonZeroU32>,
    /// See [`RetryConfig::max_age`].
    #[serde(default, deserialize_with = "values::opt_duration::deserialize")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub max_age: Option<Duration>,
    /// See [`RetryConfig::max_retry_after`].
    #[serde(default, deserialize_with = "values::opt_duration::deserialize")]
    #[cfg_attr(test, schemars(with = "Option<String>"))]
    pub max_retry_after: Option<Duration>,
}

impl RetryOverride {
    /// The defaults with these overrides applied.
    pub fn apply(&self, defaults: &RetryConfig) -> RetryConfig {
        RetryConfig {
            initial_delay: self.initial_delay.unwrap_or(defaults.initial_delay),
            factor: self.factor.unwrap_or(defaults.factor),
            max_delay: self.max_delay.unwrap_or(defaults.max_delay),
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            max_age: self.max_age.unwrap_or(defaults.max_age),
            max_retry_after: self.max_retry_after.unwrap_or(defaults.max_retry_after),
        }
    }
}

/// A route for HMS bus events (the seed's `hmsEvents` entries).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HmsEventRoute {
    /// The event type, such as `tax.rate.updated`.
    pub event: String,
    /// The plugin that handles it.
    pub handler: String,
    /// For a transformer: the destination its result is delivered to. A handler names its
    /// destinations itself.
    pub destination: Option<String>,
    /// How conflicts between versions of one entity are settled for this route's actions.
    #[serde(default)]
    pub conflict: ConflictConfig,
}

/// How conflicts between versions of one entity are settled: per (destination, entity key),
/// the engine keeps what it last delivered and checks every later delivery against it.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConflictConfig {
    /// The strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// For the `plugin` strategy: the resolver plugin (a `plugins` entry of the resolver world).
    pub resolver: Option<String>,
    /// A JSON pointer (such as `/taxYear`) to the entity key in the event's payload, for actions
    /// that set none.
    pub key: Option<String>,
    /// A JSON pointer to the entity version (a whole number) in the event's payload.
    pub version: Option<String>,
    /// A JSON pointer to the change time in the event's payload: Unix milliseconds, or an RFC
    /// 3339 string.
    pub timestamp: Option<String>,
}

/// A conflict strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Deliver everything.
    #[default]
    None,
    /// The later timestamp wins; ties go to the later event id.
    LastWriteWins,
    /// Only a strictly greater version is delivered.
    Version,
    /// A resolver plugin decides: keep, replace, or a merged payload.
    Plugin,
}

impl Strategy {
    /// The strategy's name, as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::LastWriteWins => "last-write-wins",
            Strategy::Version => "version",
            Strategy::Plugin => "plugin",
        }
    }

    /// The strategy of a name, as [`Strategy::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Strategy> {
        [
            Strategy::None,
            Strategy::LastWriteWins,
            Strategy::Version,
            Strategy::Plugin,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A route for external webhooks (the seed's `externalWebhooks` entries).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookRoute {
    /// The path requests arrive on, such as `/webhook/tax-rate`.
    pub path: String,
    /// The plugin that handles them.
    pub handler: String,
    /// The external system that calls this webhook: the origin of its events. Defaults to the
    /// path.
    pub system: Option<String>,
    /// The event type the accepted events get. Defaults to the path's segments joined by `.`
    /// (`/webhook/tax-rate` gives `webhook.tax-rate`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// For a transformer: the HMS event type its result is emitted as. A handler emits events
    /// itself.
    pub emit: Option<String>,
    /// The request headers the plugin may see (case-insensitive).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Standard Webhooks secrets (`whsec_...`): when set, a request must carry a valid
    /// `webhook-signature` by one of them, with a `webhook-timestamp` within five minutes.
    #[serde(default)]
    pub secrets: Vec<Expanded>,
    /// Accept unsigned requests on a listener that is not loopback: without it (and without
    /// `secrets`) such a webhook is a configuration error.
    #[serde(default)]
    pub unauthenticated: bool,
    /// How conflicts between versions of one entity are settled for this route's actions.
    #[serde(default)]
    pub conflict: ConflictConfig,
}

impl WebhookRoute {
    /// The origin system of this route's events.
    pub fn system(&self) -> &str {
        self.system.as_deref().unwrap_or(&self.path)
    }

    /// The event type of this route's events.
    pub fn event_type(&self) -> String {
        self.event_type.clone().unwrap_or_else(|| {
            self.path
                .split('/')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(".")
        })
    }
}

pub(super) fn default_max_clock_skew() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6000))
}
pub(super) fn default_max_body() -> usize {
    1 << 20
}

pub(super) fn default_max_json_depth() -> usize {
    crate::json::DEFAULT_MAX_DEPTH
}

pub(super) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_content_type() -> String {
    "application/json".into()
}
pub(super) fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
pub(super) fn default_factor() -> f64 {
    2.0
}
pub(super) fn default_max_delay() -> Duration {
    Duration::from_secs(600)
}
pub(super) fn default_max_attempts() -> NonZeroU32 {
    NonZeroU32::new(12).expect("non-zero")
}
pub(super) fn default_delivery_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(64).expect("non-zero")
}
pub(super) fn default_max_hops() -> u32 {
    4
}
pub(super) fn default_destination_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(16).expect("non-zero")
}
pub(super) fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
pub(super) fn default_max_retry_after() -> Duration {
    Duration::from_secs(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_defaults() {
        let route = WebhookRoute {
            path: "/webhook/tax-rate".into(),
            handler: "h".into(),
            system: None,
            event_type: None,
            emit: None,
            headers: vec![],
            secrets: vec![],
            unauthenticated: false,
            conflict: ConflictConfig::default(),
        };
        assert_eq!(route.event_type(), "webhook.tax-rate");
        assert_eq!(route.system(), "/webhook/tax-rate");
    }
}
