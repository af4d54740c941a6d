//! The HMS bus on NATS (`bus.kind: nats`): one connection per engine, shared by the source that
//! reads HMS events from it (`sources::nats`) and the delivery of emitted events onto it
//! (`delivery::nats`), and the stream both use.
//!
//! The connection does not wait for a server: an engine starts while the bus is down, its
//! source keeps trying to reach it, and publishing fails (and is retried by its schedule) until
//! a server answers. The client reconnects by itself after a server restarts.

use crate::config::{BusNatsConfig, Expanded, ExpandedPath};
use async_nats::jetstream;
use std::time::Duration;

/// A connection to the HMS bus.
pub struct Bus {
    /// The client, for plain subjects.
    pub(crate) client: async_nats::Client,
    /// JetStream, for the stream.
    pub(crate) jetstream: jetstream::Context,
    /// What the configuration says.
    pub(crate) config: BusNatsConfig,
}

impl Bus {
    /// A connection to the bus's servers, made in the background (see the module's doc).
    pub async fn connect(config: &BusNatsConfig) -> anyhow::Result<Bus> {
        let (servers, options) = connect_options(
            &config.servers,
            config.credentials.as_ref(),
            config.user.as_ref().zip(config.password.as_ref()),
            config.timeout,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let client = async_nats::connect_with_options(servers, options.retry_on_initial_connect())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the NATS bus: {e}"))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.timeout);
        Ok(Bus {
            client,
            jetstream,
            config: config.clone(),
        })
    }

    /// The subject of events of type `event_type`.
    pub fn subject(&self, event_type: &str) -> String {
        self.config.subject(event_type)
    }

    /// The configured stream, made when it does not exist (file storage, the subjects under
    /// the prefix, kept `streamMaxAge`); `None` on plain subjects.
    pub(crate) async fn stream(&self) -> Result<Option<jetstream::stream::Stream>, String> {
        let Some(name) = &self.config.stream else {
            return Ok(None);
        };
        self.jetstream
            .get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                description: Some("HMS events (made by the sync engine)".into()),
                subjects: vec![format!("{}.>", self.config.subject_prefix)],
                storage: jetstream::stream::StorageType::File,
                max_age: self.config.stream_max_age,
                ..Default::default()
            })
            .await
            .map(Some)
            .map_err(|e| format!("cannot open the stream {name}: {e}"))
    }
}

/// The servers' addresses and the connect options of a NATS section: its credentials file,
/// or user and password, and how long connecting and each request may take. Shared by the bus
/// and the NATS store.
pub(crate) async fn connect_options(
    servers: &[Expanded],
    credentials: Option<&ExpandedPath>,
    user_password: Option<(&Expanded, &Expanded)>,
    timeout: Duration,
) -> Result<(Vec<async_nats::ServerAddr>, async_nats::ConnectOptions), String> {
    let mut options = async_nats::ConnectOptions::new()
        .name("sync-engine")
        .connection_timeout(timeout)
        .request_timeout(Some(timeout));
    if let Some(path) = credentials {
        options = options
            .credentials_file(&path.0)
            .await
            .map_err(|e| format!("cannot read the NATS credentials {}: {e}", path.0.display()))?;
    }
    if let Some((user, password)) = user_password {
        options = options.user_and_password(user.0.clone(), password.0.clone());
    }
    let servers = servers
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| format!("the server address {} is not valid: {e}", s.0))
        })
        .collect::<Result<_, _>>()?;
    Ok((servers, options))
}
