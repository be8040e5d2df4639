//! The worker's HTTP endpoint: `/metrics` (Prometheus text), `/health`
//! (the process is alive) and `/ready` (every pipeline has started and every
//! component reaches its dependencies; see [`crate::health`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::health::Readiness;

/// Bind `address` and serve until the process ends. Binding happens before
/// this returns, so a taken port is reported at start, not later.
pub async fn serve(address: &str, metrics: PrometheusHandle, readiness: Readiness) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        // Histograms are summarised on render; upkeep keeps their memory bounded.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route(
            "/ready",
            get(move || {
                let report = readiness.report();
                async move {
                    let status = if report.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, Json(report)).into_response()
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "error": "not found", "endpoints": ["/metrics", "/health", "/ready"] })),
            )
        });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "Telemetry server stopped.");
        }
    });
    tracing::info!(address = %bound, "Serving /metrics, /health and /ready.");
    Ok(bound)
}
