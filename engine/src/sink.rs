//! A receiver for trying the engine out: `sync-engine sink` answers every request with a fixed
//! status and logs what it received (method, path, idempotency key, HMS metadata, body). Point a destination
//! or the core at it to watch deliveries arrive.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How much of each body the sink logs.
const SHOWN_BODY: usize = 2048;

/// Serves on `listener`, answering `status` to everything, until `shutdown`.
pub async fn run(
    listener: TcpListener,
    status: StatusCode,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().fallback(receive).with_state(status);
    tracing::info!(address = %listener.local_addr()?, status = status.as_u16(), "sink listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn receive(
    State(status): State<StatusCode>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let shown = &body[..body.len().min(SHOWN_BODY)];
    tracing::info!(
        %method,
        path = %uri.path(),
        idempotency_key = %header("idempotency-key"),
        content_type = %header("content-type"),
        origin = %header("hms-origin"),
        key = %header("hms-key"),
        bytes = body.len(),
        body = %String::from_utf8_lossy(shown),
        "received"
    );
    status
}
