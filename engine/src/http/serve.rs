//! Serving a router on a listener, with the limits a listener that faces the internet needs and
//! `axum::serve` does not set: a deadline for a request's headers (a client that sends them a
//! byte at a time is cut off; on a kept-alive connection the wait for the next request counts,
//! so an idle connection is closed after the same time) and for its body
//! ([`super::body_deadline`]), a cap on open connections, and a deadline for graceful shutdown
//! (a client that never finishes its body cannot hold the engine up). HTTP/1.1, keep-alive.
//!
//! Beyond the cap, as many connections again (at most [`MAX_SPARE_CONNECTIONS`]) are served
//! one request each by the health router alone: `/healthz` and `/readyz` answer as ever and
//! everything else gets 503 with `Retry-After`, so a load balancer still sees a live engine
//! and a client learns to come back. Beyond those, new connections wait in the kernel's
//! backlog until one closes.

use super::ApiError;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers, or to start the next one on a
    /// kept-alive connection.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from its headers to its end.
    pub body_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before it closes their connections.
    pub shutdown_timeout: Duration,
}

/// The most connections served beyond `http.maxConnections` (by the health router alone).
pub const MAX_SPARE_CONNECTIONS: usize = 64;

/// Serves `router` on `listener` until `shutdown`, then lets requests in flight finish (for at
/// most `limits.shutdown_timeout`). `health` serves the connections beyond the cap.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    health: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_connections));
    let spares = Arc::new(Semaphore::new(max_connections.min(MAX_SPARE_CONNECTIONS)));
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        super::body_deadline::limit,
    ));
    let health = health
        .fallback(too_many_connections)
        .layer(axum::middleware::map_response(close_after));
    let connections = TaskTracker::new();
    // Cancelled when the shutdown timeout has passed: connections still open are dropped.
    let force = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some((permit, spare)) = admit(&permits, &spares, &shutdown).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let app = if spare {
            health.clone()
        } else {
            router.clone()
        };
        // Every request knows where it came from (credential checks are throttled by it).
        let peer = super::auth::Peer(peer.ip());
        let service = TowerToHyperService::new(app.map_request(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(peer);
                request
            },
        ));
        let shutdown = shutdown.clone();
        let force = force.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = force.cancelled() => {}
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown timeout; they are closed unanswered"
        );
        force.cancel();
        connections.wait().await;
    }
}

/// A permit for a connection just accepted: a regular one while there are some (`false`), else
/// a spare one (`true`), else the first of either to come free. `None` on shutdown.
async fn admit(
    permits: &Arc<Semaphore>,
    spares: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(OwnedSemaphorePermit, bool)> {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Some((permit, false));
    }
    if let Ok(permit) = spares.clone().try_acquire_owned() {
        return Some((permit, true));
    }
    tokio::select! {
        permit = permits.clone().acquire_owned() => permit.ok().map(|permit| (permit, false)),
        permit = spares.clone().acquire_owned() => permit.ok().map(|permit| (permit, true)),
        () = shutdown.cancelled() => None,
    }
}

/// A spare connection serves one request: its answer says the connection closes after it.
async fn close_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What a connection beyond the cap gets for anything but health.
async fn too_many_connections() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too-many-connections",
        "the engine has as many connections open as it serves (http.maxConnections); try again shortly",
    )
}
