//! `Api`: the query API — REST, live streams (SSE), OpenAPI, the live page.
//!
//! **Its place in the graph.** The API both *watches* events (rates, crosses
//! and firings: the current-rate board and the live streams) and *produces*
//! rule changes for the `Alert` stage, whose firings it watches: a cycle.
//! The engine's answer is a *watching source* (`StageConfig::watches_inputs`):
//! `Api` is a source — it emits `AlertRuleChange`s of its own, independent of
//! what it watches, and runs until shutdown like any source — whose `inputs`
//! are watched, not part of the flow. Validation kind-checks those edges but
//! leaves them out of the cycle check; the watcher reads them without ever
//! waiting on the output, so the loop cannot deadlock; and on shutdown the
//! source stops emitting, which lets the `Alert` stage drain and close the
//! edges the API watches (see ARCHITECTURE.md, "The query API").
//!
//! Files: [`model`] (bodies and schemas), [`error`] (one error type),
//! [`extract`] (strict JSON, queries, pairs), [`auth`] (keys), [`limits`],
//! [`view`] (board and feeds), [`context`] (shared state), the routes in
//! [`rates`], [`alerts`], [`stream`], [`meta`], and [`openapi`] (router + document).

pub mod alerts;
pub mod analytics;
pub mod auth;
pub mod candles;
pub mod context;
pub mod contract;
pub mod csv;
pub mod error;
pub mod extract;
pub mod fluctuation;
pub mod frankfurter;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod page;
pub mod rates;
pub mod stream;
pub mod view;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use fxflow_engine::{
    async_trait, AckStatus, BuildContext, ConfigProblem, Envelope, Input, Kinds, ListenAddress, ReadyReporter,
    ResourceUse, Shape, Source, SourceContext, Stage, StageConfig, StageError,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::backends::redis::{RedisHandle, KIND as REDIS};
use crate::backends::STORE_KINDS;
use crate::fx::{kind, AlertRuleChange, Currency, FxEvent, Pair};
use crate::store::{HistoryStore, RuleQuery, RuleStatus};
use auth::{ApiKeys, ClientAddress};
use context::{ApiContext, ApiMetrics, ApiState, RedisRates};
use error::{ApiError, ErrorCode};
use limits::{Limiter, LimitsConfig};
use model::StageView;

/// Serves the REST API, the live streams, the OpenAPI document and the live
/// page on `listen`; reads history from `store`, current rates from the
/// watched stream (or from `cache` in the worker set), and emits the rule
/// changes made over HTTP (`AlertRuleChange`) to the stages that list it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port` to listen on, e.g. `127.0.0.1:8000`.
    pub listen: String,
    /// A `Postgres` or `Sqlite` resource: rate history, rules, alert history.
    pub store: String,
    /// A `Redis` resource that a `Redis` sink keeps current: `GET /rates`
    /// reads it (falling back to the store) instead of the watched stream —
    /// for API workers that did not see every rate themselves.
    #[serde(default)]
    pub cache: Option<String>,
    /// Key prefix of the cached rates (the `Redis` sink's `key_prefix`).
    #[serde(default = "default_cache_prefix")]
    pub cache_prefix: String,
    /// API keys of the alert endpoints: a comma-separated string
    /// (`"${FXFLOW_API_KEYS}"`) or a list. Each entry is `tenant:key`,
    /// `tenant:sha256:<hex digest of the key>`, or a bare key (tenant
    /// `default`); a key has at least 16 characters. A tenant's rules and
    /// firings are visible to its own keys only.
    #[serde(default)]
    pub keys: ApiKeys,
    /// A file of more key entries, one per line (`#` comments), read again
    /// within seconds of a change: rotate a key by adding the new one,
    /// moving clients to it, then removing the old one, without a restart.
    /// Empty: none (so `"${FXFLOW_API_KEYS_FILE:-}"` works unset).
    #[serde(default)]
    pub keys_file: Option<String>,
    /// Every data route needs a key too — rates, history, candles, analytics,
    /// conversion, currencies and the rate stream — not only the alert
    /// routes. The index, `/health`, `/ready`, `/metrics`, the document
    /// (`/openapi.json`, `/docs`) and the live page's files stay open.
    #[serde(default)]
    pub private: bool,
    /// Reverse proxies (addresses or CIDR ranges, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` or `Forwarded` header names the client: the limits
    /// then count the client, not the proxy. Empty: the peer address counts,
    /// and those headers are ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// With no `keys`: make one random key at start and print it once on
    /// standard error (the embedded default). Otherwise no change is accepted.
    #[serde(default)]
    pub generate_key: bool,
    /// The monitored currencies: `GET /currencies`, and every pair of them.
    #[serde(default = "crate::fx::currency::majors")]
    #[schemars(with = "Vec<String>")]
    pub currencies: Vec<Currency>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub cors: CorsConfig,
    /// Accept webhook URLs on loopback and private addresses (off: SSRF).
    #[serde(default)]
    pub allow_private_webhooks: bool,
    /// At start, send every active stored rule downstream as a rule change:
    /// in one process the `Alert` stage learns the rules created over HTTP
    /// before a restart this way. Off in the worker set, where the compacted
    /// rules topic holds them.
    #[serde(default = "yes")]
    pub replay_rules: bool,
    /// How long a change waits to be accepted downstream before the request
    /// fails with 503 (and the change is undone in the store).
    #[serde(default = "default_change_timeout", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub change_timeout: Duration,
    /// Apply the store's pending migrations at start.
    #[serde(default = "yes")]
    pub migrate: bool,
}

/// Cross-origin access from browsers.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call the API from a page of theirs
    /// (`https://dash.example.com`), or `["*"]` for any. Empty: same origin only.
    #[serde(default)]
    pub allow_origins: Vec<String>,
}

impl ApiConfig {
    fn keys_file(&self) -> Option<&str> {
        self.keys_file.as_deref().filter(|path| !path.is_empty())
    }
}

fn default_cache_prefix() -> String {
    "fx:rate:".into()
}
fn default_change_timeout() -> Duration {
    Duration::from_secs(5)
}
fn yes() -> bool {
    true
}

/// Rule changes waiting for the stage's output.
const CHANGE_QUEUE: usize = 256;
/// How often the store and cache are probed for `/ready`.
const PROBE_EVERY: Duration = Duration::from_secs(5);

#[async_trait]
impl StageConfig<FxEvent> for ApiConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }

    fn watches_inputs(&self) -> bool {
        true
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE, kind::ALERT_FIRED])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::ALERT_RULE_CHANGE])
    }

    fn listen_addresses(&self) -> Vec<ListenAddress> {
        vec![ListenAddress {
            field: "listen",
            address: self.listen.clone(),
        }]
    }

    fn resources(&self) -> Vec<ResourceUse> {
        let mut used = vec![ResourceUse::one_of("store", &self.store, STORE_KINDS)];
        if let Some(cache) = &self.cache {
            used.push(ResourceUse::new("cache", cache, REDIS));
        }
        used
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(
                ConfigProblem::field("listen", format!("`{}` is not a host:port address", self.listen))
                    .with_hint("listen: \"127.0.0.1:8000\""),
            );
        }
        for key in &self.keys.0 {
            if let Err(e) = auth::parse_entry(key) {
                problems.push(
                    ConfigProblem::field("keys", e)
                        .with_hint("an entry is `tenant:key` or a bare key; make a key with: openssl rand -hex 16"),
                );
            }
        }
        if let Some(path) = self.keys_file() {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    if let Err(lines) = auth::parse_key_file(std::path::Path::new(path), &text) {
                        for line in lines {
                            problems.push(
                                ConfigProblem::field("keys_file", line)
                                    .with_hint("one entry per line: `tenant:key` or `tenant:sha256:<hex>`"),
                            );
                        }
                    }
                }
                Err(e) => problems.push(ConfigProblem::field("keys_file", format!("cannot read `{path}`: {e}"))),
            }
        }
        for proxy in &self.trusted_proxies {
            if parse_proxy(proxy).is_none() {
                problems.push(
                    ConfigProblem::field("trusted_proxies", format!("`{proxy}` is not an address or CIDR range"))
                        .with_hint("trusted_proxies: [\"10.0.0.0/8\", \"127.0.0.1\"]"),
                );
            }
        }
        let mut currencies = self.currencies.clone();
        currencies.sort();
        currencies.dedup();
        if currencies.len() != self.currencies.len() {
            problems.push(ConfigProblem::field("currencies", "a currency is listed twice"));
        }
        if self.currencies.len() < 2 {
            problems.push(ConfigProblem::field(
                "currencies",
                "at least two currencies make a pair",
            ));
        }
        for problem in self.limits.problems() {
            problems.push(ConfigProblem::field("limits", problem));
        }
        for origin in &self.cors.allow_origins {
            if origin != "*" && HeaderValue::from_str(origin).is_err() {
                problems.push(ConfigProblem::field(
                    "cors",
                    format!("`{origin}` is not a valid origin"),
                ));
            }
        }
        if self.change_timeout.is_zero() {
            problems.push(ConfigProblem::field("change_timeout", "must be longer than zero"));
        }
        problems
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let store = crate::backends::open_store(&cx.resources, &self.store, self.migrate).await?;
        let cache = match &self.cache {
            Some(name) => {
                let handle = cx.resources.get::<RedisHandle>(name)?;
                Some(RedisRates::new(handle.connection.clone(), self.cache_prefix.clone()))
            }
            None => None,
        };
        // Bound here, so a taken port stops the start before anything runs; a
        // version replacing a running one binds once that one let the port go.
        let listener = if cx.replaces_running {
            Listener::Later(self.listen.clone())
        } else {
            Listener::Bound(bind(&self.listen).await?)
        };
        let mut entries = self
            .keys
            .0
            .iter()
            .map(|k| auth::parse_entry(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StageError::new)?;
        if entries.is_empty() && self.keys_file().is_none() && self.generate_key {
            let key = auth::random_key();
            eprintln!(
                "API key for this run (tenant `{}`; set FXFLOW_API_KEYS to choose your own): {key}\n  e.g. curl -H 'Authorization: Bearer {key}' ...",
                auth::DEFAULT_TENANT
            );
            entries.push(auth::parse_entry(&key).map_err(StageError::new)?);
        }
        let keys =
            auth::Keys::load(entries, self.keys_file().map(std::path::PathBuf::from)).map_err(StageError::new)?;
        if keys.current().is_empty() {
            tracing::warn!(stage = %cx.stage, "No API keys configured: the API serves rates only; the alert endpoints answer 403.");
        }
        let probes = Probes {
            store: cx
                .readiness
                .component(format!("{}: store", cx.stage), "not checked yet"),
            cache: cache.as_ref().map(|_| {
                cx.readiness
                    .component(format!("{}: cache", cx.stage), "not checked yet")
            }),
        };
        let mut pairs = Vec::new();
        for (i, a) in self.currencies.iter().enumerate() {
            for b in &self.currencies[i + 1..] {
                pairs.push(Pair::market(*a, *b));
            }
        }
        pairs.sort();
        Ok(Stage::Source(Box::new(Api {
            config: self.clone(),
            pipeline: cx.pipeline.clone(),
            stage: cx.stage.clone(),
            stages: cx
                .stages
                .iter()
                .map(|s| StageView {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                })
                .collect(),
            store,
            cache,
            listener,
            keys: Arc::new(keys),
            pairs,
            readiness: cx.readiness.clone(),
            probes,
        })))
    }
}

/// Readiness of the API's dependencies.
struct Probes {
    store: ReadyReporter,
    cache: Option<ReadyReporter>,
}

enum Listener {
    Bound(tokio::net::TcpListener),
    Later(String),
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, StageError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| StageError::new(format!("cannot listen on {address}: {e}")))
}

struct Api {
    config: ApiConfig,
    pipeline: String,
    stage: String,
    stages: Vec<StageView>,
    store: Arc<dyn HistoryStore>,
    cache: Option<RedisRates>,
    listener: Listener,
    keys: Arc<auth::Keys>,
    pairs: Vec<Pair>,
    readiness: fxflow_engine::Readiness,
    probes: Probes,
}

#[async_trait]
impl Source<FxEvent> for Api {
    async fn run(self: Box<Self>, cx: SourceContext<FxEvent>) -> Result<(), StageError> {
        let SourceContext {
            mut outputs,
            shutdown,
            input,
            ..
        } = cx;
        let Api {
            config,
            pipeline,
            stage,
            stages,
            store,
            cache,
            listener,
            keys,
            pairs,
            readiness,
            probes,
        } = *self;
        let (changes, mut pending) = mpsc::channel(CHANGE_QUEUE);
        let limits = config.limits.clone();
        let state: ApiState = Arc::new(ApiContext {
            pipeline: pipeline.clone(),
            stage: stage.clone(),
            stages,
            store: store.clone(),
            cache,
            view: view::View::new(limits.stream_backlog, limits.stream_replay),
            currencies: config.currencies.clone(),
            pairs: pairs.clone(),
            auth: Arc::new(auth::AuthState {
                keys: keys.clone(),
                per_key: limits.per_key.map(Limiter::new),
                failed: limits.failed_auth.map(Limiter::failures),
                metrics: ApiMetrics {
                    pipeline: pipeline.clone(),
                    stage: stage.clone(),
                },
            }),
            per_ip: limits.per_ip.map(Limiter::new),
            trusted_proxies: config.trusted_proxies.iter().filter_map(|p| parse_proxy(p)).collect(),
            private: config.private,
            limits,
            changes,
            change_timeout: config.change_timeout,
            prometheus: fxflow_engine::metrics::install_recorder(),
            readiness,
            shutdown: shutdown.clone(),
            metrics: ApiMetrics {
                pipeline: pipeline.clone(),
                stage: stage.clone(),
            },
            allow_private_webhooks: config.allow_private_webhooks,
            streams_open: AtomicUsize::new(0),
            ecb: Arc::default(),
        });

        // Watch: read the watched stages to their end, whatever else happens.
        let watcher = tokio::spawn(watch(state.clone(), input));
        let key_watcher = tokio::spawn(keys.watch(stage.clone()));

        // What was there before this start: the newest stored price of each pair,
        // and the rules created over HTTP (for the `Alert` stage of this process).
        if state.cache.is_none() {
            prime_board(&state).await;
        }
        if config.replay_rules {
            let replay = stored_rules(&store).await;
            let count = replay.len();
            let envelopes = replay
                .into_iter()
                .map(|change| Envelope::unacked(FxEvent::AlertRuleChange(Box::new(change))))
                .collect();
            outputs.send(envelopes).await?;
            if count > 0 {
                tracing::info!(%stage, rules = count, "Stored alert rules sent to the pipeline.");
            }
        }

        let listener = match listener {
            Listener::Bound(listener) => listener,
            Listener::Later(address) => bind(&address).await?,
        };
        let prober = tokio::spawn(probe(state.clone(), probes));
        let app = app(state.clone(), &config)?;
        let address = listener.local_addr().map_err(StageError::new)?;
        let serve_shutdown = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { serve_shutdown.wait().await })
                .await
        });
        tracing::info!(%stage, address = %address, "Serving the API: http://{address}/ (live page /live, docs /docs).");

        // Emit: forward rule changes until shutdown.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                change = pending.recv() => match change {
                    Some(envelope) => outputs.send(vec![envelope]).await?,
                    None => break,
                },
            }
        }
        // No more changes: those still queued are refused, so their requests fail honestly.
        pending.close();
        while let Ok(envelope) = pending.try_recv() {
            envelope.ack.mark(AckStatus::Failed);
        }
        drop(outputs);
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%stage, error = %e, "The API server stopped with an error."),
            Err(e) => tracing::warn!(%stage, error = %e, "The API server task failed."),
        }
        prober.abort();
        key_watcher.abort();
        let _ = watcher.await;
        tracing::info!(%stage, "API stopped.");
        Ok(())
    }
}

async fn watch(state: ApiState, input: Option<Input<FxEvent>>) {
    let Some(mut input) = input else { return };
    while let Some(batch) = input.next().await {
        let events: Vec<&FxEvent> = batch.iter().map(|e| &e.event).collect();
        state.view.apply(&events);
    }
}

async fn prime_board(state: &ApiState) {
    for pair in &state.pairs {
        match state.store.latest_rate(*pair).await {
            Ok(Some(rate)) => state.view.board.prime(model::RateView::from_stored(&rate, None)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the stored rates; the board starts empty.");
                return;
            }
        }
    }
}

/// The active stored rules, as changes that (re)add them.
async fn stored_rules(store: &Arc<dyn HistoryStore>) -> Vec<AlertRuleChange> {
    let mut changes = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .rules_page(&RuleQuery {
                tenant: None,
                pair: None,
                status: Some(RuleStatus::Active),
                after: after.clone(),
                limit: 1000,
                now: chrono::Utc::now(),
            })
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the stored rules; only new ones will run.");
                return changes;
            }
        };
        let done = page.len() < 1000;
        after = page.last().map(|r| r.rule.id.clone());
        changes.extend(page.into_iter().map(|r| AlertRuleChange {
            id: r.rule.id.clone(),
            rule: Some(r.rule),
        }));
        if done {
            return changes;
        }
    }
}

async fn probe(state: ApiState, probes: Probes) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tick.tick().await;
        match state.store.ping().await {
            Ok(()) => probes.store.set(true, "answers"),
            Err(e) => probes.store.set(false, format!("does not answer: {e}")),
        }
        if let (Some(reporter), Some(cache)) = (&probes.cache, &state.cache) {
            match cache.ping().await {
                Ok(()) => reporter.set(true, "answers"),
                Err(e) => reporter.set(false, format!("does not answer: {e}")),
            }
        }
    }
}

/// The router with every layer: request ids, per-address limits, metrics,
/// body limit, CORS and a JSON answer for panics.
fn app(state: ApiState, config: &ApiConfig) -> Result<Router, StageError> {
    let (api, _) = openapi::router();
    let mut router = api
        .merge(page::routes())
        .merge(frankfurter::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), private_data))
        .route_layer(middleware::from_fn_with_state(state.clone(), measure))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.limits.max_body))
        .layer(middleware::from_fn_with_state(state.clone(), frame))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalError,
                "the server failed on this request; it is logged",
            )
            .into_response()
        }))
        .with_state(state);
    if !config.cors.allow_origins.is_empty() {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let origins = if config.cors.allow_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list: Result<Vec<HeaderValue>, _> = config
                .cors
                .allow_origins
                .iter()
                .map(|o| HeaderValue::from_str(o))
                .collect();
            AllowOrigin::list(list.map_err(StageError::new)?)
        };
        router = router.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::CONTENT_TYPE,
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    axum::http::header::LOCATION,
                    axum::http::header::RETRY_AFTER,
                    HeaderName::from_static(REQUEST_ID),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }
    Ok(router)
}

const REQUEST_ID: &str = "x-request-id";

/// A request id for logs and the response (the client's own, if it sent a sane one).
fn request_id(request: &Request) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(given) = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !given.is_empty() && given.len() <= 64 && given.bytes().all(|b| b.is_ascii_graphic()) {
            return given.to_owned();
        }
    }
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = getrandom::fill(&mut bytes);
        hex::encode(bytes)
    });
    format!("{prefix}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A trusted proxy: an address or a CIDR range.
fn parse_proxy(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Outermost: request id, the client's address, per-address rate limit, one log line per failure.
async fn frame(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| auth::client_address(address.ip(), request.headers(), &state.trusted_proxies));
    if let Some(ip) = client {
        request.extensions_mut().insert(ClientAddress(ip));
    }
    let limited = match (&state.per_ip, client) {
        (Some(limiter), Some(ip)) => limiter.check(&limits::client_key(ip)).err().map(|wait| (ip, wait)),
        _ => None,
    };
    let mut response = match limited {
        Some((ip, wait)) => {
            state.metrics.rate_limited("ip");
            ApiError::rate_limited(wait, format!("too many requests from {ip}; retry in {wait} s")).into_response()
        }
        None => {
            let span = tracing::debug_span!("request", id = %id, %method, %path);
            next.run(request).instrument(span).await
        }
    };
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(request = %id, %method, %path, status = status.as_u16(), "Request failed.");
    } else {
        tracing::debug!(request = %id, %method, %path, status = status.as_u16(), "Request served.");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// With `private`, a data route answers only a request with a key (the alert
/// routes ask for one themselves).
async fn private_data(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    if !state.private || !route.as_deref().is_some_and(openapi::is_data_route) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    match auth::Authorized::from_request_parts(&mut parts, &state).await {
        Ok(_) => next.run(Request::from_parts(parts, body)).await,
        Err(refused) => refused.into_response(),
    }
}

/// Per-route request counts and latency (after routing, so the route is known).
async fn measure(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    state
        .metrics
        .request(&route, &method, response.status().as_u16(), started.elapsed());
    response
}
