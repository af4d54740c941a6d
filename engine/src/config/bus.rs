//! The `bus` section: where HMS events come from and where emitted events go. `kind: http`
//! (the default) is the embedded endpoint `POST /events/{type}` and the core's URL (`core`);
//! `kind: nats` is a NATS subscription (a durable JetStream consumer, or plain subjects) and
//! publishing onto the same subjects.

use super::schema::RetryOverride;
use super::values::{self, Expanded, ExpandedPath};
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::time::Duration;

/// The HMS bus.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BusConfig {
    /// `http` (the default): HMS modules post events to `POST /events/{type}` and emitted events
    /// go to the core's URL (`core`). `nats`: the engine subscribes to the HMS bus on NATS
    /// and publishes emitted events onto it (`nats` says where); `POST /events/{type}` is off.
    #[serde(default)]
    pub kind: BusKind,
    /// With `kind: http`: when set, `POST /events/{type}` requires `Authorization: Bearer
    /// <token>` (at least 16 bytes). Required when `listen` is not a loopback address and HMS
    /// event routes exist.
    pub token: Option<Expanded>,
    /// The NATS servers, subjects, stream and consumer, with `kind: nats`.
    #[serde(default)]
    pub nats: Option<BusNatsConfig>,
}

impl BusConfig {
    /// The NATS bus, when the engine uses one.
    pub fn nats(&self) -> Option<&BusNatsConfig> {
        match self.kind {
            BusKind::Nats => self.nats.as_ref(),
            BusKind::Http => None,
        }
    }
}

/// Which HMS bus the engine is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BusKind {
    /// The embedded HTTP endpoint, and the core's URL for emitted events.
    #[default]
    Http,
    /// A NATS server (or cluster) that HMS publishes its events on.
    Nats,
}

/// Where a NATS consumer that is new starts in its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DeliverFrom {
    /// Messages published after the consumer is made.
    #[default]
    New,
    /// Every message the stream holds.
    All,
}

/// The HMS bus on NATS.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BusNatsConfig {
    /// The servers to connect to (`nats://host:port`, `tls://host:port`); any one of a cluster
    /// will do.
    pub servers: Vec<Expanded>,
    /// A credentials file (`.creds`: a user JWT and its NKey seed), when the servers ask for one.
    #[serde(default)]
    pub credentials: Option<ExpandedPath>,
    /// A user and password, when the servers ask for them (not with `credentials`).
    #[serde(default)]
    pub user: Option<Expanded>,
    /// The password of `user`.
    #[serde(default)]
    pub password: Option<Expanded>,
    /// HMS events of type `t` are on the subject `<subjectPrefix>.t`, and emitted events are
    /// published there.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream that holds the bus's subjects: the engine reads it with a durable
    /// consumer and acknowledges a message once its event is stored, and waits for the stream's
    /// acknowledgement of every event it publishes. Made (file storage, subjects
    /// `<subjectPrefix>.>`) when absent. Without a stream the engine subscribes to the plain
    /// subjects: a message published while no engine is connected is lost (at most once).
    #[serde(default)]
    pub stream: Option<String>,
    /// How long a stream the engine makes keeps its messages.
    #[serde(
        default = "default_stream_max_age",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub stream_max_age: Duration,
    /// The durable consumer's name (the queue group's, without a stream): engines with the
    /// same name share the messages, each taken by one of them.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// Where a consumer that does not exist yet starts: `new` (messages published from then
    /// on) or `all` (everything the stream holds).
    #[serde(default)]
    pub deliver: DeliverFrom,
    /// How long the servers wait for the engine to acknowledge a message before they send it
    /// again.
    #[serde(
        default = "default_ack_wait",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub ack_wait: Duration,
    /// How many messages the servers hand the consumer before it acknowledges them; the rest
    /// wait in the stream.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: NonZeroUsize,
    /// While this many accepted events wait to be processed, the engine takes no more messages
    /// (they wait in the stream, where every engine of the consumer can take them).
    #[serde(default = "default_max_backlog")]
    pub max_backlog: NonZeroUsize,
    /// How long connecting, and publishing an emitted event until the stream acknowledges it,
    /// may take.
    #[serde(
        default = "default_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub timeout: Duration,
    /// Overrides of the default retry policy for publishing emitted events.
    #[serde(default)]
    pub retry: RetryOverride,
}

impl BusNatsConfig {
    /// The subject of events of type `event_type`.
    pub fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.subject_prefix)
    }
}

fn default_subject_prefix() -> String {
    "hms".into()
}
fn default_stream_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_consumer() -> String {
    "sync-engine".into()
}
fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ack_pending() -> NonZeroUsize {
    NonZeroUsize::new(1000).expect("not zero")
}
fn default_max_backlog() -> NonZeroUsize {
    NonZeroUsize::new(10_000).expect("not zero")
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
