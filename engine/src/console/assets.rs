//! The console's static files, built into the binary: its style sheet and script, and the
//! vendored charting library (uPlot 1.6.32, MIT, with its licence).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

/// Each file: its path under `/console/assets/`, media type and content.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/console.js"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/vendor/uplot/uPlot.min.css"),
    ),
    (
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("assets/vendor/uplot/LICENSE"),
    ),
];

/// A digest of every file, in the pages' asset URLs (`?v=`): a browser may keep a file as long
/// as it likes, and a new engine's files get new URLs.
pub(super) static VERSION: LazyLock<String> = LazyLock::new(|| {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for (path, _, content) in FILES {
        digest.update(path.as_bytes());
        digest.update(content);
    }
    hex::encode(digest.finalize())[..12].to_owned()
});

/// `GET /console/assets/{*file}`.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, media_type, content)) = FILES.iter().find(|(path, _, _)| *path == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        *content,
    )
        .into_response()
}
