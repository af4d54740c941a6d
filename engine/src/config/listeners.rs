//! The sections about the HTTP listeners: their limits (`http`) and the admin API (`admin`).
//! The HMS bus (`bus`), an HTTP endpoint or a NATS subscription, has its own module.

use super::values::{self, Expanded};
use serde::Deserialize;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

/// The HTTP listeners' limits.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfig {
    /// How long a client may take to send a request's headers (or, on a kept-alive
    /// connection, to start its next request) before its connection is closed.
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from its headers to its last byte.
    #[serde(
        default = "default_body_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub body_timeout: Duration,
    /// Connections open at once, per listener; beyond it a few more are served health only,
    /// and new ones wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: NonZeroUsize,
    /// How long shutdown waits for requests in flight before closing their connections.
    #[serde(
        default = "default_shutdown_timeout",
        deserialize_with = "values::duration::deserialize"
    )]
    #[cfg_attr(test, schemars(with = "String"))]
    pub shutdown_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            max_connections: default_max_connections(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

/// The admin API.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    /// The bearer token every admin request must present (at least 16 bytes). Without one the
    /// admin API is off.
    pub token: Option<Expanded>,
    /// The largest plugin upload accepted, in bytes.
    #[serde(default = "default_max_upload", deserialize_with = "values::size")]
    pub max_upload_size: usize,
    /// Serve the admin API and `/metrics` on this address instead of `listen` (which then
    /// serves neither).
    pub listen: Option<SocketAddr>,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>` (at least 16 bytes).
    pub metrics_token: Option<Expanded>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            max_upload_size: default_max_upload(),
            listen: None,
            metrics_token: None,
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> NonZeroUsize {
    NonZeroUsize::new(1024).expect("not zero")
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_upload() -> usize {
    64 << 20
}
