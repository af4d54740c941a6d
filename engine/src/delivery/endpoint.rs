//! Where outbox rows are sent: a destination's endpoint or the HMS core's (over HTTP, or the
//! NATS bus), with how (an HTTP request's fixed parts: URL, method, headers, signer), its
//! timeout, retry schedule and concurrency.

use super::request::Sent;
use super::retry::Schedule;
use crate::bus::Bus;
use crate::config::{BusNatsConfig, Config, CoreConfig, DestinationConfig};
use crate::signing::Signer;
use crate::store::OutboxAction;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// A destination's or the core's endpoint.
pub(super) struct Endpoint {
    pub(super) via: Via,
    pub(super) timeout: Duration,
    pub(super) schedule: Schedule,
    pub(super) concurrency: usize,
}

/// How rows reach an endpoint.
pub(super) enum Via {
    /// An HTTP request.
    Http(Box<HttpTarget>),
    /// A message published onto the HMS bus on NATS (emitted events).
    Nats(Arc<Bus>),
}

/// An HTTP request's fixed parts.
pub(super) struct HttpTarget {
    pub(super) url: reqwest::Url,
    pub(super) method: http::Method,
    pub(super) headers: HeaderMap,
    pub(super) signer: Option<Signer>,
}

impl Endpoint {
    /// A configured destination's endpoint.
    pub(super) fn destination(config: &Config, d: &DestinationConfig) -> anyhow::Result<Endpoint> {
        let mut headers = HeaderMap::new();
        for (name, value) in &d.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        let secrets: Vec<&str> = d.secrets.iter().map(|s| &**s).collect();
        Ok(Endpoint {
            via: Via::Http(Box::new(HttpTarget {
                url: reqwest::Url::parse(&d.url)?,
                method: d.method.as_http(),
                headers,
                signer: Signer::new(&secrets).map_err(anyhow::Error::msg)?,
            })),
            timeout: d.timeout,
            schedule: Schedule::new(&d.retry.apply(&config.retry)),
            concurrency: d.concurrency.get(),
        })
    }

    /// The HMS core's endpoint: `POST {url}/events/{type}`, with its bearer token.
    pub(super) fn core(config: &Config, core: &CoreConfig) -> anyhow::Result<Endpoint> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &core.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", &**token))?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        Ok(Endpoint {
            via: Via::Http(Box::new(HttpTarget {
                url: reqwest::Url::parse(&core.url)?,
                method: http::Method::POST,
                headers,
                signer: None,
            })),
            timeout: core.timeout,
            schedule: Schedule::new(&core.retry.apply(&config.retry)),
            concurrency: config.delivery_concurrency.get(),
        })
    }

    /// The HMS bus on NATS, for emitted events: `<subjectPrefix>.<type>`.
    pub(super) fn bus(config: &Config, nats: &BusNatsConfig, bus: Arc<Bus>) -> Endpoint {
        Endpoint {
            via: Via::Nats(bus),
            timeout: nats.timeout,
            schedule: Schedule::new(&nats.retry.apply(&config.retry)),
            concurrency: config.delivery_concurrency.get(),
        }
    }

    /// Sends `body` for `action` of `event_id` once.
    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        event_id: &str,
        action: &OutboxAction,
        body: &[u8],
    ) -> Sent {
        match &self.via {
            Via::Http(target) => {
                super::request::send(client, target, self.timeout, event_id, action, body).await
            }
            Via::Nats(bus) => super::nats::publish(bus, self.timeout, event_id, action, body).await,
        }
    }
}
