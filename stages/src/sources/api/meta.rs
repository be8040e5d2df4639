//! `/`, `/health`, `/ready`, `/metrics`, `/stats`, `/openapi.json`, `/docs`,
//! and the JSON answers for unknown paths and methods.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::Utc;

use super::context::ApiState;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::model::{ComponentView, HealthResponse, IndexResponse, ReadyResponse, StageStats, StatsResponse};

/// What this is, what runs, and where to go next.
#[utoipa::path(get, path = "/", operation_id = "getIndex", tag = "meta", responses((status = 200, body = IndexResponse)))]
pub async fn index(State(state): State<ApiState>) -> Json<IndexResponse> {
    let mut links = serde_json::Map::new();
    for (name, path) in [
        ("live", "/live"),
        ("docs", "/docs"),
        ("openapi", "/openapi.json"),
        ("rates", "/rates"),
        ("rate", "/rates/{pair}"),
        ("history", "/rates/{pair}/history"),
        ("candles", "/rates/{pair}/candles?interval=1h"),
        ("volatility", "/analytics/volatility?window=30d"),
        ("currencies", "/currencies"),
        ("convert", "/convert?from=USD&to=JPY&amount=1000"),
        ("alerts", "/alerts"),
        ("alert", "/alerts/{id}"),
        ("alert_history", "/alerts/history"),
        ("stream_rates", "/stream/rates"),
        ("stream_alerts", "/stream/alerts"),
        ("health", "/health"),
        ("ready", "/ready"),
        ("metrics", "/metrics"),
        ("stats", "/stats"),
    ] {
        links.insert(name.to_owned(), serde_json::Value::String(path.to_owned()));
    }
    Json(IndexResponse {
        name: "fxflow",
        version: env!("CARGO_PKG_VERSION"),
        pipeline: state.pipeline.clone(),
        stages: state.stages.clone(),
        links,
    })
}

/// The process is alive.
#[utoipa::path(get, path = "/health", operation_id = "getHealth", tag = "meta", responses((status = 200, body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// Ready when every pipeline runs and every dependency (store, cache, broker) answers.
#[utoipa::path(get, path = "/ready", operation_id = "getReady", tag = "meta",
    responses(
        (status = 200, description = "Ready", body = ReadyResponse),
        (status = 503, description = "Not ready: see which component", body = ReadyResponse),
    ))]
pub async fn ready(State(state): State<ApiState>) -> Response {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = ReadyResponse {
        ready: report.ready,
        started: report.started,
        components: report
            .components
            .into_iter()
            .map(|(name, c)| {
                (
                    name,
                    ComponentView {
                        ready: c.ready,
                        detail: c.detail,
                    },
                )
            })
            .collect(),
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics of this worker: every stage's, plus the API's requests.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

/// Per-stage counters (events in, out, errors) of this worker's pipelines.
#[utoipa::path(get, path = "/stats", operation_id = "getStats", tag = "meta", responses((status = 200, body = StatsResponse)))]
pub async fn stats(State(state): State<ApiState>) -> Json<StatsResponse> {
    Json(StatsResponse {
        at: Utc::now(),
        stages: stage_stats(&state.prometheus.render()),
    })
}

/// Sum the engine's stage metrics per (pipeline, stage) from rendered Prometheus text.
pub fn stage_stats(rendered: &str) -> Vec<StageStats> {
    use fxflow_engine::metrics::{CHANNEL_UTILIZATION, DISCARDED_EVENTS, ERRORS, RECEIVED_EVENTS, SENT_EVENTS};
    let mut by_stage: BTreeMap<(String, String), StageStats> = BTreeMap::new();
    for line in rendered.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        let (Some(pipeline), Some(stage)) = (labels.get("pipeline"), labels.get("stage")) else {
            continue;
        };
        // The error output counts as `stage="name.errors"`: it is the stage's.
        let (stage, error_output) = match stage.strip_suffix(".errors") {
            Some(stage) => (stage.to_owned(), true),
            None => (stage.clone(), false),
        };
        let entry = by_stage
            .entry((pipeline.clone(), stage.clone()))
            .or_insert_with(|| StageStats {
                pipeline: pipeline.clone(),
                stage,
                ..Default::default()
            });
        match name {
            n if n == RECEIVED_EVENTS => entry.received += value,
            n if n == SENT_EVENTS && !error_output => entry.sent += value,
            n if n == ERRORS => entry.errors += value,
            n if n == DISCARDED_EVENTS => entry.discarded += value,
            n if n == CHANNEL_UTILIZATION => entry.buffer = value,
            _ => {}
        }
    }
    by_stage.into_values().collect()
}

/// `name{a="x",b="y"} 12.5` → (name, labels, value).
fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, BTreeMap::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        val.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => break,
                c => val.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), val);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels, value))
}

/// The OpenAPI 3.1 document of this API, generated from the handlers' types.
#[utoipa::path(get, path = "/openapi.json", operation_id = "getOpenApi", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
pub async fn openapi(State(state): State<ApiState>) -> Response {
    let document = if state.private {
        super::openapi::private_document_json()
    } else {
        super::openapi::document_json()
    };
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

/// The API reference, rendered from `/openapi.json` in the browser (no CDN: works offline).
#[utoipa::path(get, path = "/docs", operation_id = "getDocs", tag = "meta",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("assets/docs.html"))
}

/// Unknown paths: a JSON 404 listing where to look.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(
        ErrorCode::NoSuchEndpoint,
        format!(
            "there is no {} here; GET / lists the endpoints, /docs documents them",
            uri.path()
        ),
    )
}

/// A known path with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method; see /docs",
    )
}

#[allow(dead_code)]
fn _error_body_is_documented(_: ErrorBody) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_stats_sum_kinds_and_fold_the_error_output_in() {
        let text = "\
# TYPE fxflow_stage_sent_events_total counter
fxflow_stage_sent_events_total{pipeline=\"local\",stage=\"crosses\",kind=\"CrossRate\"} 280
fxflow_stage_sent_events_total{pipeline=\"local\",stage=\"crosses.errors\",kind=\"DeadLetter\"} 2
fxflow_stage_received_events_total{pipeline=\"local\",stage=\"crosses\",kind=\"QuoteSnapshot\"} 10
fxflow_stage_errors_total{pipeline=\"local\",stage=\"crosses\",error_type=\"cross_failed\"} 2
fxflow_channel_utilization{pipeline=\"local\",stage=\"crosses\"} 0.25
fxflow_api_requests_total{route=\"/\"} 3
";
        let stats = stage_stats(text);
        assert_eq!(stats.len(), 1);
        let s = &stats[0];
        assert_eq!(
            (s.stage.as_str(), s.received, s.sent, s.errors, s.buffer),
            ("crosses", 10.0, 280.0, 2.0, 0.25)
        );
    }
}
