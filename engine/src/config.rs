//! The engine's configuration: YAML in the seed's shape (`hmsEvents`, `externalWebhooks`),
//! extended with where to listen, the HMS core, the store, plugins, destinations and retries.
//!
//! Loading is strict: an unknown key, a value of the wrong type, a bad duration or size, a
//! missing environment variable, or a route that names a plugin or destination that does not
//! exist is an error naming the key. `${NAME}` in a URL, token, header value, path or plugin
//! setting is replaced by the environment variable `NAME` (`$$` is a literal `$`). Relative
//! paths are relative to the configuration file's directory.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The address the HTTP listeners bind: the HMS bus endpoint, webhooks, health.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes (`1MiB`, `512KiB` or a number).
    #[serde(default = "default_max_body", deserialize_with = "size")]
    pub max_body_size: usize,
    /// The embedded HMS bus endpoint, `POST /events/{type}`.
    #[serde(default)]
    pub bus: BusConfig,
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
    pub sandbox: SandboxSettings,
    /// The plugins, by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
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

/// The embedded HMS bus endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BusConfig {
    /// When set, `POST /events/{type}` requires `Authorization: Bearer <token>`.
    pub token: Option<Expanded>,
}

/// The admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    /// The bearer token every admin request must present. Without one the admin API is off.
    pub token: Option<Expanded>,
    /// The largest plugin upload accepted, in bytes.
    #[serde(default = "default_max_upload", deserialize_with = "size")]
    pub max_upload_size: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            max_upload_size: default_max_upload(),
        }
    }
}

/// HMS-SYS, the core.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CoreConfig {
    /// The core's base URL; events go to `POST {url}/events/{type}`.
    pub url: Expanded,
    /// The bearer token the engine presents to the core.
    pub token: Option<Expanded>,
    /// How long one delivery attempt to the core may take.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Overrides of the default retry policy for the core.
    #[serde(default)]
    pub retry: RetryOverride,
}

/// The durable store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreConfig {
    /// The data directory; the SQLite database lives inside it.
    #[serde(default = "default_store_path")]
    pub path: ExpandedPath,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
        }
    }
}

/// The plugin sandbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SandboxSettings {
    /// How many plugin instances may exist at once.
    #[serde(default = "default_max_instances")]
    pub max_instances: NonZeroU32,
    /// How many events run plugins at the same time (threads).
    #[serde(default = "default_workers")]
    pub workers: NonZeroUsize,
    /// The largest memory limit any plugin may be given.
    #[serde(default = "default_max_memory", deserialize_with = "size")]
    pub max_memory: usize,
    /// The default limits of every plugin.
    #[serde(default)]
    pub limits: LimitSettings,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            max_instances: default_max_instances(),
            workers: default_workers(),
            max_memory: default_max_memory(),
            limits: LimitSettings::default(),
        }
    }
}

/// Per-event limits of a plugin; unset fields take the sandbox's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitSettings {
    /// Wall-clock time per event.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Bytes each linear memory may grow to.
    #[serde(default, deserialize_with = "opt_size")]
    pub memory: Option<usize>,
    /// Bytes of output per event.
    #[serde(default, deserialize_with = "opt_size")]
    pub output: Option<usize>,
}

impl LimitSettings {
    /// These limits, with unset ones taken from `defaults`, then from the sandbox's built-in
    /// defaults.
    pub fn resolve(&self, defaults: &LimitSettings) -> crate::sandbox::Limits {
        let builtin = crate::sandbox::Limits::default();
        crate::sandbox::Limits {
            timeout: self.timeout.or(defaults.timeout).unwrap_or(builtin.timeout),
            memory: self.memory.or(defaults.memory).unwrap_or(builtin.memory),
            output: self.output.or(defaults.output).unwrap_or(builtin.output),
        }
    }
}

/// One plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginSettings {
    /// The component file (`.wasm`).
    pub path: ExpandedPath,
    /// A fixtures file (JSON, see the README) the plugin must pass when it is loaded from the
    /// configuration; later versions must pass it too unless they bring their own.
    pub fixtures: Option<ExpandedPath>,
    /// String settings the plugin reads through the `config` import.
    #[serde(default)]
    pub config: BTreeMap<String, Expanded>,
    /// Overrides of the sandbox's default limits.
    #[serde(default)]
    pub limits: LimitSettings,
}

/// One destination.
#[derive(Debug, Clone, Deserialize)]
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
    #[serde(default = "default_timeout", with = "duration")]
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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryConfig {
    /// The delay before the second attempt.
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// How much each delay grows over the previous one (at least 1).
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// The longest delay between two attempts.
    #[serde(default = "default_max_delay", with = "duration")]
    pub max_delay: Duration,
    /// How many attempts in all before the delivery becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: NonZeroU32,
    /// How long after it was queued a delivery may still be retried.
    #[serde(default = "default_max_age", with = "duration")]
    pub max_age: Duration,
    /// The longest `Retry-After` a receiver may ask for; a longer one is cut to this.
    #[serde(default = "default_max_retry_after", with = "duration")]
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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryOverride {
    /// See [`RetryConfig::initial_delay`].
    #[serde(default, with = "opt_duration")]
    pub initial_delay: Option<Duration>,
    /// See [`RetryConfig::factor`].
    pub factor: Option<f64>,
    /// See [`RetryConfig::max_delay`].
    #[serde(default, with = "opt_duration")]
    pub max_delay: Option<Duration>,
    /// See [`RetryConfig::max_attempts`].
    pub max_attempts: Option<NonZeroU32>,
    /// See [`RetryConfig::max_age`].
    #[serde(default, with = "opt_duration")]
    pub max_age: Option<Duration>,
    /// See [`RetryConfig::max_retry_after`].
    #[serde(default, with = "opt_duration")]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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

/// A string with `${ENV}` references replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct Expanded(pub String);

impl fmt::Debug for Expanded {
    // Expanded strings often hold secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Expanded(..)")
    }
}

impl std::ops::Deref for Expanded {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Expanded {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(Expanded)
            .map_err(serde::de::Error::custom)
    }
}

/// A path with `${ENV}` references replaced; made absolute against the configuration file's
/// directory when the file is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedPath(pub PathBuf);

impl<'de> Deserialize<'de> for ExpandedPath {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        Expanded::deserialize(de).map(|e| ExpandedPath(PathBuf::from(e.0)))
    }
}

/// Replaces `${NAME}` with `lookup(NAME)` and `$$` with `$`; any other `$` stays as it is.
fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{raw}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not an environment variable reference: names are letters, digits and `_`"
                ));
            }
            let value = lookup(name)
                .ok_or_else(|| format!("the environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6000))
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_store_path() -> ExpandedPath {
    ExpandedPath(PathBuf::from("data"))
}
fn default_max_instances() -> NonZeroU32 {
    NonZeroU32::new(256).expect("non-zero")
}
fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
fn default_max_memory() -> usize {
    256 << 20
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_content_type() -> String {
    "application/json".into()
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_factor() -> f64 {
    2.0
}
fn default_max_delay() -> Duration {
    Duration::from_secs(600)
}
fn default_max_attempts() -> NonZeroU32 {
    NonZeroU32::new(12).expect("non-zero")
}
fn default_delivery_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(64).expect("non-zero")
}
fn default_max_upload() -> usize {
    64 << 20
}
fn default_max_hops() -> u32 {
    4
}
fn default_destination_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(16).expect("non-zero")
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(3600)
}

/// Durations written as `500ms`, `10s`, `5m`, `1h 30m`.
mod duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(super) fn parse(raw: &str) -> Result<Duration, String> {
        humantime::parse_duration(raw).map_err(|e| {
            format!("`{raw}` is not a duration ({e}); write a number and a unit, such as `500ms`, `10s` or `5m`")
        })
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Duration, D::Error> {
        parse(&String::deserialize(de)?).map_err(serde::de::Error::custom)
    }
}

/// Optional durations; see [`duration`].
mod opt_duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(de)?
            .map(|raw| super::duration::parse(&raw).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses a byte size: a number of bytes, or a number with `KiB`, `MiB` or `GiB`.
fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => {
            return Err(format!(
                "`{raw}` is not a size: the unit `{other}` is not one of B, KiB, MiB, GiB"
            ));
        }
    };
    let n: usize = digits.parse().map_err(|_| {
        format!("`{raw}` is not a size; write a number of bytes or, say, `512KiB` or `1MiB`")
    })?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{raw}` is too large"))
}

/// A size given as a YAML number or string.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Number(u64),
    Text(String),
}

fn size<'de, D: serde::Deserializer<'de>>(de: D) -> Result<usize, D::Error> {
    match RawSize::deserialize(de)? {
        RawSize::Number(n) => usize::try_from(n).map_err(serde::de::Error::custom),
        RawSize::Text(raw) => parse_size(&raw).map_err(serde::de::Error::custom),
    }
}

fn opt_size<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<usize>, D::Error> {
    match Option::<RawSize>::deserialize(de)? {
        None => Ok(None),
        Some(RawSize::Number(n)) => usize::try_from(n)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(RawSize::Text(raw)) => parse_size(&raw).map(Some).map_err(serde::de::Error::custom),
    }
}

/// One thing wrong with a configuration, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a path such as `destinations.state-api.url` or `hmsEvents[0].handler`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{} is not a valid configuration:", file.display())?,
            None => f.write_str("the configuration is not valid:")?,
        }
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Paths the engine serves itself, which a webhook may not use.
const RESERVED_PATHS: &[&str] = &["/events", "/healthz", "/readyz", "/metrics", "/admin"];

impl Config {
    /// How the plugin `name` runs: its `config` settings and its limits (its own, else the
    /// sandbox's defaults, else the built-in ones). The one place a plugin's setup is built
    /// from the configuration. `name` must be a configured plugin.
    pub fn plugin_setup(&self, name: &str) -> crate::sandbox::PluginSetup {
        let plugin = &self.plugins[name];
        crate::sandbox::PluginSetup {
            settings: std::sync::Arc::new(
                plugin
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            ),
            limits: plugin.limits.resolve(&self.sandbox.limits),
        }
    }

    /// Reads and checks a configuration file. Relative paths in it become relative to the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            file: Some(path.to_owned()),
            problems: vec![Problem {
                key: String::new(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and checks configuration text; relative paths become relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                let key = e.path().to_string();
                let message = if key == "." {
                    e.inner().to_string()
                } else {
                    format!("{key}{KEY_SEPARATOR}{}", e.inner())
                };
                <serde_saphyr::Error as serde::de::Error>::custom(message)
            })
        })
        .map_err(|e| ConfigError {
            file: None,
            problems: vec![yaml_problem(&e)],
        })?;
        config.resolve_paths(base);
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: None,
                problems,
            })
        }
    }

    /// What is valid but probably not meant: a webhook without `system` (so echo prevention
    /// cannot recognise its partner's destination), while destinations exist.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut p = Problems::default();
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

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut ExpandedPath| {
            if p.0.is_relative() {
                p.0 = base.join(&p.0);
            }
        };
        resolve(&mut self.store.path);
        if let Some(dir) = &mut self.plugin_dir {
            resolve(dir);
        }
        for plugin in self.plugins.values_mut() {
            resolve(&mut plugin.path);
            if let Some(fixtures) = &mut plugin.fixtures {
                resolve(fixtures);
            }
        }
    }

    /// The checks serde cannot make: references between sections, URLs, names.
    fn check(&self) -> Vec<Problem> {
        let mut p = Problems::default();
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
                if self.core.is_none() {
                    p.add(
                        format!("{key}.emit"),
                        "this route emits HMS events, which go to the core: set `core.url`",
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

    fn check_limits(&self, limits: &LimitSettings, key: &str, p: &mut Problems) {
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

/// Separates the key path from the message in a typing error's text.
const KEY_SEPARATOR: &str = ": ";

/// Turns a YAML or typing error into a problem. A typing error's text starts with the key path
/// our wrapper put in it (see [`Config::parse`]); the YAML crate adds the line and column.
fn yaml_problem(err: &serde_saphyr::Error) -> Problem {
    let text = err.to_string();
    let is_key = |key: &str| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| !c.is_whitespace() && c != '`' && c != '\'')
    };
    match text.split_once(KEY_SEPARATOR) {
        Some((key, message)) if is_key(key) => Problem {
            key: key.to_owned(),
            message: message.trim().to_owned(),
        },
        _ => Problem {
            key: String::new(),
            message: text.trim().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_expand() {
        let env = |name: &str| (name == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(expand_env("Bearer ${TOKEN}", env).unwrap(), "Bearer s3cret");
        assert_eq!(
            expand_env("cost $$5 and $x", env).unwrap(),
            "cost $5 and $x"
        );
        assert_eq!(expand_env("plain", env).unwrap(), "plain");
        assert!(
            expand_env("${MISSING}", env)
                .unwrap_err()
                .contains("`MISSING` is not set")
        );
        assert!(expand_env("${TOKEN", env).unwrap_err().contains("closing"));
        assert!(
            expand_env("${A-B}", env)
                .unwrap_err()
                .contains("not an environment variable")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert!(parse_size("1MB").unwrap_err().contains("`MB`"));
        assert!(parse_size("lots").is_err());
    }

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
            conflict: ConflictConfig::default(),
        };
        assert_eq!(route.event_type(), "webhook.tax-rate");
        assert_eq!(route.system(), "/webhook/tax-rate");
    }
}
