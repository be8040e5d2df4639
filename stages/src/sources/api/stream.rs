//! `/stream/rates` and `/stream/alerts`: Server-Sent Events.
//!
//! Each client reads a broadcast feed of pre-serialized items (see
//! [`super::view`]). A client that falls `limits.stream_backlog` items behind
//! is cut off and counted — it can reconnect with `Last-Event-ID` and get
//! what is still in the replay ring — so a slow reader never slows the
//! pipeline. Streams end when the pipeline shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::auth::Authorized;
use super::context::ApiState;
use super::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use super::extract::Params;
use super::rates::pair_filter;
use super::view::{Feed, FeedItem};
use crate::fx::Pair;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only these pairs, comma-separated (`EUR/USD,USD/JPY`).
    #[param(pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}(,[A-Za-z]{3}[-_/]?[A-Za-z]{3})*$")]
    pub pairs: Option<String>,
}

/// Every rate update as it happens (`event: rate`, data: a rate as in
/// `GET /rates/{pair}`). Conflated per pipeline batch: a pair's newest price
/// of each batch. Reconnect with `Last-Event-ID` to get missed updates.
#[utoipa::path(get, path = "/stream/rates", operation_id = "streamRates", tag = "streams", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "An event stream; each `data` is a RateView", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 404, description = "Not a monitored pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Too many stream clients", body = ErrorBody),
    ))]
pub async fn rates(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Params(q): Params<StreamQuery>,
) -> ApiResult<Response> {
    open(state, &headers, q, Which::Rates, None)
}

/// Every firing of the caller's tenant's rules and of shared ones as it
/// happens (`event: alert`, data: a firing as in `GET /alerts/history`).
/// Reconnect with `Last-Event-ID` to get missed ones.
#[utoipa::path(get, path = "/stream/alerts", operation_id = "streamFirings", tag = "streams", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "An event stream; each `data` is a FiringView", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 404, description = "Not a monitored pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Too many stream clients", body = ErrorBody),
    ))]
pub async fn alerts(
    State(state): State<ApiState>,
    key: Authorized,
    headers: HeaderMap,
    Params(q): Params<StreamQuery>,
) -> ApiResult<Response> {
    open(state, &headers, q, Which::Alerts, Some(key.tenant))
}

#[derive(Clone, Copy)]
enum Which {
    Rates,
    Alerts,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Rates => "rates",
            Which::Alerts => "alerts",
        }
    }

    fn feed(self, state: &ApiState) -> &Feed {
        match self {
            Which::Rates => &state.view.rates,
            Which::Alerts => &state.view.alerts,
        }
    }
}

/// Counts the client while it is connected.
struct Connected {
    state: ApiState,
    which: Which,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.state.streams_open.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.stream_clients(self.which.name(), -1.0);
    }
}

/// `tenant`: only items that are everyone's or this tenant's (None: every item).
fn open(
    state: ApiState,
    headers: &HeaderMap,
    q: StreamQuery,
    which: Which,
    tenant: Option<Arc<str>>,
) -> ApiResult<Response> {
    let filter: Option<HashSet<Pair>> = pair_filter(&state, q.pairs.as_deref())?.map(|p| p.into_iter().collect());
    let feed = which.feed(&state);
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| feed.seen(v));
    let open = state.streams_open.fetch_add(1, Ordering::AcqRel);
    let connected = Connected {
        state: state.clone(),
        which,
    };
    state.metrics.stream_clients(which.name(), 1.0);
    if open >= state.limits.stream_clients {
        drop(connected);
        return Err(ApiError::unavailable(
            ErrorCode::TooManyStreams,
            format!(
                "{} stream clients are connected, the most this API serves",
                state.limits.stream_clients
            ),
        ));
    }
    let (receiver, missed) = feed.subscribe(last_seen);
    let run = feed.run;
    let event_name = feed.event;
    let shutdown = state.shutdown.clone();
    let st = Reader {
        missed: missed.into(),
        receiver,
        filter,
        tenant,
        last_sent: last_seen.unwrap_or(0),
        _connected: connected,
    };
    let stream = futures_util::stream::unfold((st, shutdown), move |(mut st, shutdown)| async move {
        loop {
            let item: Arc<FeedItem> = match st.missed.pop_front() {
                Some(item) => item,
                None => tokio::select! {
                    received = st.receiver.recv() => match received {
                        Ok(item) => item,
                        Err(RecvError::Lagged(_)) => {
                            st._connected.state.metrics.stream_dropped(st._connected.which.name());
                            tracing::info!(stream = st._connected.which.name(), "A stream client fell behind and was cut off.");
                            return None;
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = shutdown.wait() => return None,
                },
            };
            if item.seq <= st.last_sent {
                continue; // already sent from the replay ring
            }
            st.last_sent = item.seq;
            if st.filter.as_ref().is_some_and(|f| !f.contains(&item.pair)) {
                continue;
            }
            if let (Some(mine), Some(theirs)) = (&st.tenant, &item.tenant) {
                if mine != theirs {
                    continue;
                }
            }
            let event = Event::default()
                .id(Feed::event_id(run, item.seq))
                .event(event_name)
                .data(item.json.as_str());
            return Some((Ok::<_, Infallible>(event), (st, shutdown)));
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // A reverse proxy (nginx) would otherwise buffer the stream and deliver ticks in lumps.
    response.headers_mut().insert(
        axum::http::header::HeaderName::from_static("x-accel-buffering"),
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

struct Reader {
    missed: std::collections::VecDeque<Arc<FeedItem>>,
    receiver: tokio::sync::broadcast::Receiver<Arc<FeedItem>>,
    filter: Option<HashSet<Pair>>,
    tenant: Option<Arc<str>>,
    last_sent: u64,
    _connected: Connected,
}
