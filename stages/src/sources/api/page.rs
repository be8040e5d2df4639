//! `/live`: the live page, its assets embedded in the binary (no CDN, works
//! offline). It talks only to this API: `/rates`, `/stream/*`, `/alerts*`,
//! `/rates/{pair}/history`, `/stats`.
//!
//! For working on the page without rebuilding, set `FXFLOW_PAGE_DIR` to the
//! assets folder (`stages/src/sources/api/assets/live`): files are then read from
//! there on every request.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::context::ApiState;
use super::error::{ApiError, ErrorCode};

/// (file name, content type, bytes) of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("assets/live/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/live/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/live/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/live/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/live/uPlot.min.css"),
    ),
    (
        "LICENSE-uPlot.txt",
        "text/plain; charset=utf-8",
        include_bytes!("assets/live/LICENSE-uPlot.txt"),
    ),
];

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/live", get(|| async { asset("index.html") }))
        .route("/live/", get(|| async { Redirect::permanent("/live") }))
        .route(
            "/live/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, embedded)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found(ErrorCode::NoSuchAsset, format!("the live page has no file `{name}`"))
            .into_response();
    };
    let body: Vec<u8> = match std::env::var_os("FXFLOW_PAGE_DIR") {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(name)) {
            Ok(bytes) => bytes,
            Err(_) => embedded.to_vec(),
        },
        None => embedded.to_vec(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page may only load what it ships and talk to this origin.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
