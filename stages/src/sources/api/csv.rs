//! Streamed CSV exports: pages from the store, written as they come, so an
//! export of years never sits in memory. A store failure midway ends the body
//! with an error (the client sees a broken transfer, not a short file).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Rows per store query while streaming.
const CHUNK: u32 = 10_000;

/// The pages of one export.
#[fxflow_engine::async_trait]
pub trait CsvPages: Send + 'static {
    /// The next page of at most `limit` rows, appended to `out` as CSV lines;
    /// returns how many rows it had (fewer than `limit`: the last page).
    async fn next_page(&mut self, limit: u32, out: &mut String) -> Result<usize, StoreError>;
}

/// Stream `pages` as `text/csv` named `filename`, after the `header` line, up to `remaining` rows.
pub fn stream(filename: &str, header: &'static str, mut pages: impl CsvPages, mut remaining: u64) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let _ = tx.send(Ok(Bytes::from_static(header.as_bytes()))).await;
        while remaining > 0 {
            let limit = CHUNK.min(u32::try_from(remaining).unwrap_or(u32::MAX));
            let mut chunk = String::with_capacity(limit as usize * 80);
            let rows = match pages.next_page(limit, &mut chunk).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "CSV export stopped: the store failed.");
                    let _ = tx.send(Err(std::io::Error::other(e.message))).await;
                    return;
                }
            };
            remaining = remaining.saturating_sub(rows as u64);
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return; // the client went away
            }
            if rows < limit as usize {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Quote a CSV field if it needs it (source names are ours, but be exact).
pub fn field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// How a limit parameter of an export reads: at least 1; none is everything.
pub fn export_limit(limit: Option<u32>) -> Result<u64, super::error::ApiError> {
    match limit {
        Some(0) => Err(super::error::ApiError::invalid_parameter(
            "query.limit",
            "must be at least 1",
        )),
        Some(n) => Ok(u64::from(n)),
        None => Ok(u64::MAX),
    }
}
