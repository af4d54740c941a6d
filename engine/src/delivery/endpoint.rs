//! Where outbox rows are sent: a destination's endpoint or the HMS core's, with the request's
//! fixed parts (URL, method, headers, timeout), its retry schedule, concurrency and signer.

use super::retry::Schedule;
use crate::config::{Config, CoreConfig, DestinationConfig};
use crate::signing::Signer;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// A destination's or the core's endpoint.
pub(super) struct Endpoint {
    pub(super) url: reqwest::Url,
    pub(super) method: http::Method,
    pub(super) headers: HeaderMap,
    pub(super) timeout: Duration,
    pub(super) schedule: Schedule,
    pub(super) concurrency: usize,
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
            url: reqwest::Url::parse(&d.url)?,
            method: d.method.as_http(),
            headers,
            timeout: d.timeout,
            schedule: Schedule::new(&d.retry.apply(&config.retry)),
            concurrency: d.concurrency.get(),
            signer: Signer::new(&secrets).map_err(anyhow::Error::msg)?,
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
            url: reqwest::Url::parse(&core.url)?,
            method: http::Method::POST,
            headers,
            timeout: core.timeout,
            schedule: Schedule::new(&core.retry.apply(&config.retry)),
            concurrency: config.delivery_concurrency.get(),
            signer: None,
        })
    }
}
