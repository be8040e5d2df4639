//! The API's own request metrics, next to the pipeline's stage metrics: a leaf module that
//! the context and the authentication both use.

use std::time::Duration;

use metrics::{counter, histogram};

/// Request metrics of the API, next to the pipeline's stage metrics.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub pipeline: String,
    pub stage: String,
}

/// Requests by route, method and status.
pub const REQUESTS: &str = "fxflow_api_requests_total";
/// Request latency by route and method.
pub const REQUEST_SECONDS: &str = "fxflow_api_request_duration_seconds";
/// Requests refused by a rate limit, by what was limited (`ip`, `key`, `failed_auth`).
pub const RATE_LIMITED: &str = "fxflow_api_rate_limited_total";
/// Failed authentications (unknown key, malformed header).
pub const AUTH_FAILURES: &str = "fxflow_api_auth_failures_total";
/// Live-stream clients cut off for falling behind, by stream.
pub const STREAM_DROPPED: &str = "fxflow_api_stream_clients_dropped_total";
/// Live-stream clients connected, by stream.
pub const STREAM_CLIENTS: &str = "fxflow_api_stream_clients";

impl ApiMetrics {
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let labels = [
            ("pipeline", self.pipeline.clone()),
            ("stage", self.stage.clone()),
            ("route", route.to_owned()),
            ("method", method.to_owned()),
        ];
        let mut with_status = labels.to_vec();
        with_status.push(("status", status.to_string()));
        counter!(REQUESTS, &with_status).increment(1);
        histogram!(REQUEST_SECONDS, &labels).record(elapsed.as_secs_f64());
    }

    pub fn rate_limited(&self, by: &'static str) {
        counter!(RATE_LIMITED, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone(), "by" => by)
            .increment(1);
    }

    pub fn auth_failed(&self) {
        counter!(AUTH_FAILURES, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone()).increment(1);
    }

    pub fn stream_dropped(&self, stream: &'static str) {
        counter!(STREAM_DROPPED, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone(), "stream" => stream)
            .increment(1);
    }

    pub fn stream_clients(&self, stream: &'static str, delta: f64) {
        metrics::gauge!(STREAM_CLIENTS, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone(), "stream" => stream)
            .increment(delta);
    }
}
