//! `HttpPoll`: polls a rate provider's HTTP API and emits one quote snapshot per new answer.
//!
//! Each poll makes the provider's request(s) (`providers.rs` builds them and reads the answers, with
//! no I/O), orients every quote to market convention against the configured `base`, and emits one
//! `QuoteSnapshot`. The loop around it:
//!
//! - **Timing.** The first poll is at start; the next one `interval` after the start of the previous
//!   one. Shutdown interrupts both the wait and a request in flight.
//! - **Conditional requests.** The `ETag` and `Last-Modified` of the last response that made a
//!   snapshot are sent back as `If-None-Match` / `If-Modified-Since`; a `304 Not Modified` emits
//!   nothing (counted as `fxflow_http_poll_polls_total{outcome="not_modified"}`).
//! - **No duplicates.** A snapshot whose provider timestamp is not newer than the last one emitted is
//!   not emitted again (`outcome="unchanged"`): daily providers answer every poll with the same day.
//!   Snapshots stamped with the receive time (no provider timestamp) are always new.
//! - **Failures** are counted in `fxflow_stage_errors_total{error_type=reason}` and logged. A response
//!   that came back but cannot be used (`bad_response`, `missing_symbols`, `provider_error`,
//!   `unauthorized`) also goes to the error output with its body (never the API key). Nothing partial
//!   is emitted: one failed request fails the whole poll.
//! - **Backoff**, by the engine's one retry policy (`fxflow_engine::retry`). After a failure the next
//!   poll waits `initial_backoff`, doubling per consecutive failure up to `max_backoff`, each wait
//!   with jitter; throttling waits at least the provider's `Retry-After` (seconds or an HTTP date;
//!   HTTP 429, or a quota notice in an HTTP 200 body); a refusal that retrying cannot fix (bad key)
//!   waits `max_backoff`. The first good poll returns to `interval`.
//!
//! Sends are unacknowledged (`Envelope::unacked`): a poll has nothing to commit, and a lost snapshot
//! is superseded by the next one.

pub mod providers;

use std::time::Duration;

use chrono::{DateTime, Utc};
use fxflow_engine::retry::{RetryConfig, Waits};
use fxflow_engine::{
    async_trait, AckStatus, BuildContext, ConfigProblem, Envelope, Failure, Kinds, Shape, Source, SourceContext, Stage,
    StageConfig, StageError,
};
use reqwest::header::{HeaderMap, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use crate::fx::{kind, Currency, FxEvent, QuoteSnapshot, SourceName};
use providers::{ErrorClass, KeyUse, PollError, Provider, Rates, Request};

/// Counts every poll by its outcome: `snapshot`, `not_modified`, `unchanged`, `failed`.
pub const POLLS: &str = "fxflow_http_poll_polls_total";

/// Most bytes read from one response (the largest real answers are a few kB).
const MAX_BODY: usize = 4 << 20;

/// Polls a rate provider's HTTP API (Frankfurter, the ECB, Open Exchange Rates, ExchangeRate-API,
/// Alpha Vantage or OANDA) every `interval` and emits one quote snapshot per new answer, each quote
/// in market convention against `base`, prices read exactly from the response text. Unusable answers
/// go to the error output; failures back off exponentially and honour `Retry-After`. Example:
/// `"oxr": HttpPoll(provider: OpenExchangeRates, api_key_env: "OXR_APP_ID", interval: "1m")` polls
/// `https://openexchangerates.org/api/latest.json` every minute with the App ID from the environment
/// variable `OXR_APP_ID` and emits the seven other majors against USD (EUR/USD, GBP/USD, AUD/USD,
/// NZD/USD, USD/CAD, USD/CHF, USD/JPY).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpPollConfig {
    /// The provider, which fixes the request and the response format.
    pub provider: Provider,
    /// Base URL of the provider's API (for `Ecb`, the file's URL). Default: the provider's real
    /// endpoint (see `Provider`).
    #[serde(default)]
    pub url: Option<String>,
    /// The common currency of every snapshot. Default: `EUR` for `Ecb`, otherwise `USD`.
    #[serde(default)]
    pub base: Option<Currency>,
    /// The currencies to quote against `base`. Default: the majors EUR GBP AUD NZD USD CAD CHF JPY other
    /// than `base`.
    #[serde(default)]
    pub symbols: Option<Vec<Currency>>,
    /// Whether an answer lacking one of `symbols` fails the poll (dead-lettered as `missing_symbols`).
    /// With `false` the snapshot holds the currencies that are there (never none).
    #[serde(default = "yes")]
    pub require_all: bool,
    /// Time between polls (from the start of one to the start of the next).
    #[serde(default = "default_interval", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub interval: Duration,
    /// Longest one request may take, connecting included.
    #[serde(default = "default_timeout", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub timeout: Duration,
    /// Wait after the first failed poll; it doubles with each further consecutive failure.
    #[serde(default = "default_initial_backoff", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub initial_backoff: Duration,
    /// Longest wait between failed polls (a `Retry-After` may ask for longer, up to a day).
    #[serde(default = "default_max_backoff", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub max_backoff: Duration,
    /// Name of the environment variable holding the API key (OANDA: the bearer token), read when the
    /// stage starts, e.g. `"OXR_APP_ID"`. Keys never appear in pipeline files, logs or dead letters.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// OANDA account ID (`Oanda` only).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Skip a snapshot whose provider timestamp is not newer than the last one emitted.
    #[serde(default = "yes")]
    pub skip_unchanged: bool,
    /// The `source` name stamped on quotes. Default: the provider's name (`frankfurter`, `ecb`,
    /// `openexchangerates`, `exchangerate-api`, `alphavantage`, `oanda`).
    #[serde(default)]
    pub source: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

impl HttpPollConfig {
    /// A config with every default, for `provider`.
    pub fn new(provider: Provider) -> Self {
        HttpPollConfig {
            provider,
            url: None,
            base: None,
            symbols: None,
            require_all: true,
            interval: default_interval(),
            timeout: default_timeout(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            api_key_env: None,
            account_id: None,
            skip_unchanged: true,
            source: None,
        }
    }

    pub fn base(&self) -> Currency {
        self.base.or(self.provider.fixed_base()).unwrap_or(Currency::USD)
    }

    pub fn symbols(&self) -> Vec<Currency> {
        let base = self.base();
        self.symbols.clone().unwrap_or_else(|| {
            crate::fx::currency::majors()
                .into_iter()
                .filter(|c| *c != base)
                .collect()
        })
    }

    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(self.provider.name())
    }

    fn url_text(&self) -> &str {
        self.url
            .as_deref()
            .unwrap_or(self.provider.default_url(self.api_key_env.is_some()))
    }
}

#[async_trait]
impl StageConfig<FxEvent> for HttpPollConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE_SNAPSHOT])
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let base = self.base();
        if let Some(fixed) = self.provider.fixed_base() {
            if base != fixed {
                problems.push(
                    ConfigProblem::field("base", format!("{:?} quotes against {fixed} only", self.provider))
                        .with_hint(format!("remove `base` or set it to \"{fixed}\"")),
                );
            }
        }
        let symbols = self.symbols();
        if symbols.is_empty() {
            problems.push(ConfigProblem::field("symbols", "at least one currency is needed"));
        }
        if symbols.contains(&base) {
            problems.push(ConfigProblem::field(
                "symbols",
                format!("{base} is the base; it cannot also be a symbol"),
            ));
        }
        for (i, symbol) in symbols.iter().enumerate() {
            if symbols[..i].contains(symbol) {
                problems.push(ConfigProblem::field("symbols", format!("{symbol} is listed twice")));
            }
        }
        match Url::parse(self.url_text()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(_) => problems.push(ConfigProblem::field("url", "must be an http:// or https:// URL")),
            Err(e) => problems.push(ConfigProblem::field("url", format!("not a URL: {e}"))),
        }
        for (field, value) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("initial_backoff", self.initial_backoff),
        ] {
            if value.is_zero() {
                problems.push(ConfigProblem::field(field, "must be longer than zero"));
            }
        }
        if self.max_backoff < self.initial_backoff {
            problems.push(ConfigProblem::field(
                "max_backoff",
                "must not be shorter than `initial_backoff`",
            ));
        }
        match (self.provider.key_use(), &self.api_key_env) {
            (KeyUse::Required, None) => problems.push(
                ConfigProblem::field("provider", format!("{:?} needs an API key", self.provider))
                    .with_hint("name the environment variable that holds it: `api_key_env: \"MY_KEY_VAR\"`"),
            ),
            (KeyUse::None, Some(_)) => problems.push(ConfigProblem::field(
                "api_key_env",
                format!("{:?} takes no API key", self.provider),
            )),
            (_, Some(name)) if !is_env_name(name) => problems.push(
                ConfigProblem::field("api_key_env", format!("`{name}` is not an environment variable name"))
                    .with_hint("give the variable's name (like \"OXR_APP_ID\"), never the key itself"),
            ),
            _ => {}
        }
        match (self.provider.api().needs_account(), &self.account_id) {
            (true, None) => problems.push(ConfigProblem::field(
                "provider",
                format!("{:?} needs `account_id`", self.provider),
            )),
            (true, Some(id)) if id.trim().is_empty() || id.contains('/') => problems.push(ConfigProblem::field(
                "account_id",
                format!("not a {:?} account ID", self.provider),
            )),
            (true, Some(_)) | (false, None) => {}
            (false, Some(_)) => problems.push(ConfigProblem::field(
                "account_id",
                format!("{:?} takes no account ID", self.provider),
            )),
        }
        if self.source_name().trim().is_empty() {
            problems.push(ConfigProblem::field("source", "must not be empty"));
        }
        problems
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let key = match &self.api_key_env {
            Some(name) => Some(std::env::var(name).map_err(|_| {
                StageError::new(format!(
                    "the environment variable `{name}` (api_key_env) is not set or not valid UTF-8"
                ))
            })?),
            None => None,
        };
        let url = Url::parse(self.url_text()).map_err(|e| StageError::new(format!("url: {e}")))?;
        let base = self.base();
        let symbols = self.symbols();
        let requests = providers::requests(&providers::Target {
            provider: self.provider,
            url: &url,
            base,
            symbols: &symbols,
            key: key.as_deref(),
            account_id: self.account_id.as_deref(),
        })
        .map_err(StageError::new)?;
        if requests.is_empty() {
            return Err(StageError::new("nothing to poll: `symbols` is empty"));
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("fxflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StageError::new(format!("cannot build the HTTP client: {e}")))?;
        let polls = |outcome: &'static str| metrics::counter!(POLLS, "pipeline" => cx.pipeline.clone(), "stage" => cx.stage.clone(), "outcome" => outcome);
        Ok(Stage::Source(Box::new(HttpPoll {
            client,
            provider: self.provider,
            slots: requests.into_iter().map(Slot::new).collect(),
            base,
            symbols,
            require_all: self.require_all,
            skip_unchanged: self.skip_unchanged,
            source: SourceName::intern(self.source_name()).map_err(StageError::new)?,
            interval: self.interval,
            backoff: Backoff::new(self.initial_backoff, self.max_backoff),
            last_emitted: None,
            counters: Counters {
                snapshot: polls("snapshot"),
                not_modified: polls("not_modified"),
                unchanged: polls("unchanged"),
                failed: polls("failed"),
            },
        })))
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// When to poll again after failures: the engine's retry policy, endless.
pub struct Backoff {
    policy: RetryConfig,
    /// The waits of the current run of failures (None: the last poll was good).
    waits: Option<Waits>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            policy: RetryConfig {
                attempts: 0,
                initial_backoff: initial,
                max_backoff: max,
            },
            waits: None,
        }
    }

    /// The wait after a failed poll whose error was `error`.
    pub fn after_failure(&mut self, error: &PollError) -> Duration {
        let max = self.policy.max_backoff;
        let waits = self.waits.get_or_insert_with(|| self.policy.endless_waits());
        match error.class {
            ErrorClass::Fatal => max,
            ErrorClass::Throttled => waits.next_after(error.retry_after).unwrap_or(max),
            ErrorClass::Transient | ErrorClass::Invalid => waits.next().unwrap_or(max),
        }
    }

    /// A good poll: the next failure starts from `initial_backoff` again.
    pub fn reset(&mut self) {
        self.waits = None;
    }
}

/// `Retry-After` of a response (seconds, or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    fxflow_engine::retry::retry_after(text, std::time::SystemTime::now())
}

/// One request of the poll, with what the conditional request needs.
struct Slot {
    request: Request,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    /// The rates of the response the validators belong to (reused on a 304).
    last: Option<Rates>,
}

impl Slot {
    fn new(request: Request) -> Self {
        Slot {
            request,
            etag: None,
            last_modified: None,
            last: None,
        }
    }

    fn forget(&mut self) {
        self.etag = None;
        self.last_modified = None;
        self.last = None;
    }
}

struct Counters {
    snapshot: metrics::Counter,
    not_modified: metrics::Counter,
    unchanged: metrics::Counter,
    failed: metrics::Counter,
}

struct HttpPoll {
    client: reqwest::Client,
    provider: Provider,
    slots: Vec<Slot>,
    base: Currency,
    symbols: Vec<Currency>,
    require_all: bool,
    skip_unchanged: bool,
    source: SourceName,
    interval: Duration,
    backoff: Backoff,
    /// Provider timestamp of the last snapshot emitted.
    last_emitted: Option<DateTime<Utc>>,
    counters: Counters,
}

/// What one poll came to.
enum Outcome {
    Snapshot(QuoteSnapshot),
    NotModified,
    Unchanged(DateTime<Utc>),
    /// The error, and the bodies of the poll's responses (for the dead letter).
    Failed(PollError, Vec<u8>),
}

/// One fresh (not 304) response: its validators, rates and body.
struct Fetched {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    rates: Rates,
    body: Vec<u8>,
}

fn transport_error(e: reqwest::Error) -> PollError {
    let e = e.without_url(); // the URL may hold the key
    let reason = if e.is_timeout() { "timeout" } else { "connection_failed" };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    PollError::new(ErrorClass::Transient, reason, message)
}

/// The body, up to `MAX_BODY` bytes.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, PollError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(PollError::bad_response(format!(
                "the response is larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl HttpPoll {
    /// Make the poll's requests and turn the answers into a snapshot.
    async fn poll(&mut self) -> Outcome {
        let received = Utc::now();
        // (slot index, response) of every request not answered with 304.
        let mut fresh: Vec<(usize, Fetched)> = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            match self.fetch(slot).await {
                Ok(None) => {}
                Ok(Some(fetched)) => fresh.push((index, fetched)),
                Err((error, body)) => {
                    // Start afresh next time: no conditional request on a poll that failed.
                    self.slots.iter_mut().for_each(Slot::forget);
                    return Outcome::Failed(error, body);
                }
            }
        }
        if fresh.is_empty() {
            return Outcome::NotModified;
        }
        // This poll's rates: fresh ones, and the remembered ones of requests answered with 304.
        let mut responses: Vec<Rates> = Vec::with_capacity(self.slots.len());
        for (index, slot) in self.slots.iter().enumerate() {
            match fresh.iter().find(|(i, _)| *i == index) {
                Some((_, f)) => responses.push(f.rates.clone()),
                None => responses.extend(slot.last.clone()),
            }
        }
        let assembled = match providers::assemble(
            &responses,
            self.base,
            &self.symbols,
            self.require_all,
            self.source,
            received,
        ) {
            Ok(assembled) => assembled,
            Err(error) => {
                self.slots.iter_mut().for_each(Slot::forget);
                let bodies: Vec<Vec<u8>> = fresh.into_iter().map(|(_, f)| f.body).collect();
                return Outcome::Failed(error, bodies.join(&b'\n'));
            }
        };
        for (index, f) in fresh {
            let slot = &mut self.slots[index];
            slot.etag = f.etag;
            slot.last_modified = f.last_modified;
            slot.last = Some(f.rates);
        }
        if !assembled.missing.is_empty() {
            tracing::debug!(provider = ?self.provider, missing = ?assembled.missing, "Snapshot without some currencies (require_all is off).");
        }
        let snapshot = assembled.snapshot;
        if assembled.provider_time && self.skip_unchanged && self.last_emitted.is_some_and(|last| snapshot.ts <= last) {
            return Outcome::Unchanged(snapshot.ts);
        }
        if assembled.provider_time {
            self.last_emitted = Some(snapshot.ts);
        }
        Outcome::Snapshot(snapshot)
    }

    /// One request: `None` for a 304 (the slot's remembered rates stand), else the response; a
    /// failure comes with the body, for the dead letter.
    async fn fetch(&self, slot: &Slot) -> Result<Option<Fetched>, (PollError, Vec<u8>)> {
        let mut request = self.client.get(slot.request.url.clone());
        if let Some(token) = &slot.request.bearer {
            request = request.bearer_auth(token);
        }
        if slot.last.is_some() {
            if let Some(etag) = &slot.etag {
                request = request.header(IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = &slot.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified.clone());
            }
        }
        let response = request.send().await.map_err(|e| (transport_error(e), Vec::new()))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return match slot.last {
                Some(_) => Ok(None),
                None => Err((
                    PollError::bad_response("304 Not Modified to a request that was not conditional"),
                    Vec::new(),
                )),
            };
        }
        let headers = response.headers();
        let etag = headers.get(ETAG).cloned();
        let last_modified = headers.get(LAST_MODIFIED).cloned();
        let wait = retry_after(headers);
        let body = read_body(response).await.map_err(|e| (e, Vec::new()))?;
        match providers::read(
            self.provider,
            &slot.request,
            self.base,
            &self.symbols,
            status.as_u16(),
            wait,
            &body,
        ) {
            Ok(rates) => Ok(Some(Fetched {
                etag,
                last_modified,
                rates,
                body,
            })),
            Err(mut error) => {
                error.message = format!("{}: {}", slot.request.shown, error.message);
                Err((error, body))
            }
        }
    }
}

#[async_trait]
impl Source<FxEvent> for HttpPoll {
    async fn run(mut self: Box<Self>, mut cx: SourceContext<FxEvent>) -> Result<(), StageError> {
        let stage = cx.labels.stage.clone();
        let mut failures: u32 = 0;
        let mut next = Instant::now();
        tracing::info!(stage = %stage, provider = ?self.provider, url = %self.slots[0].request.shown, interval = ?self.interval, "Polling.");
        loop {
            tokio::select! {
                biased;
                _ = cx.shutdown.wait() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = cx.shutdown.wait() => break,
                outcome = self.poll() => outcome,
            };
            let wait = match outcome {
                Outcome::Failed(error, body) => {
                    failures = failures.saturating_add(1);
                    self.counters.failed.increment(1);
                    let wait = self.backoff.after_failure(&error);
                    tracing::warn!(stage = %stage, reason = error.reason, failures, retry_in = ?wait, error = %error.message, "Poll failed.");
                    if error.is_dead_lettered() {
                        let failure = Failure {
                            event: None,
                            raw: Some(body),
                            origin: None,
                            key: None,
                            headers: Vec::new(),
                            reason: error.reason,
                            error: error.message,
                            ack: Default::default(),
                            ingested: fxflow_engine::IngestTime::UNKNOWN,
                        };
                        cx.outputs.dead_letter(vec![failure], AckStatus::Rejected).await?;
                    } else {
                        cx.outputs.labels.error(error.reason, 1);
                    }
                    next = Instant::now() + wait;
                    continue;
                }
                Outcome::Snapshot(snapshot) => {
                    self.counters.snapshot.increment(1);
                    tracing::debug!(stage = %stage, ts = %snapshot.ts, quotes = snapshot.quotes.len(), "Snapshot.");
                    cx.outputs
                        .send(vec![Envelope::unacked(FxEvent::QuoteSnapshot(snapshot))])
                        .await?;
                    self.interval
                }
                Outcome::NotModified => {
                    self.counters.not_modified.increment(1);
                    self.interval
                }
                Outcome::Unchanged(ts) => {
                    self.counters.unchanged.increment(1);
                    tracing::debug!(stage = %stage, ts = %ts, "The provider has nothing newer.");
                    self.interval
                }
            };
            if failures > 0 {
                tracing::info!(stage = %stage, failures, "The provider answers again.");
                failures = 0;
                self.backoff.reset();
            }
            next = started + wait;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validate a one-stage pipeline around `stage`.
    fn load(stage: &str) -> Result<(), String> {
        let text = format!(r#"Pipeline(name: "t", stages: {{ "poll": {stage}, "out": Null(inputs: ["poll"]) }})"#);
        fxflow_engine::pipeline_file::load_str("t.ron", &text, &crate::registry(), |_| None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_provider() {
        let ecb = HttpPollConfig::new(Provider::Ecb);
        assert_eq!(ecb.base(), Currency::EUR);
        assert_eq!(ecb.symbols().len(), 7);
        assert!(!ecb.symbols().contains(&Currency::EUR));
        assert_eq!(ecb.source_name(), "ecb");
        let fr = HttpPollConfig::new(Provider::Frankfurter);
        assert_eq!(fr.base(), Currency::USD);
        assert_eq!(fr.url_text(), "https://api.frankfurter.dev/v1");
        assert!(fr.check().is_empty(), "{:?}", fr.check());
        let mut er = HttpPollConfig::new(Provider::ExchangeRateApi);
        assert_eq!(er.url_text(), "https://open.er-api.com/v6");
        er.api_key_env = Some("ER_KEY".into());
        assert_eq!(er.url_text(), "https://v6.exchangerate-api.com/v6");
        assert!(er.check().is_empty());
    }

    fn fields(config: &HttpPollConfig) -> Vec<&'static str> {
        config.check().into_iter().filter_map(|p| p.field).collect()
    }

    #[test]
    fn check_reports_each_problem_at_its_field() {
        let mut c = HttpPollConfig::new(Provider::Ecb);
        c.base = Some(Currency::USD);
        assert!(fields(&c).contains(&"base"));
        let mut c = HttpPollConfig::new(Provider::OpenExchangeRates);
        assert_eq!(fields(&c), vec!["provider"], "a key is required");
        c.api_key_env = Some("abc123 my key".into());
        assert_eq!(fields(&c), vec!["api_key_env"], "a name, not a key");
        c.api_key_env = Some("OXR_APP_ID".into());
        assert!(fields(&c).is_empty());
        c.symbols = Some(vec![Currency::EUR, Currency::USD, Currency::EUR]);
        assert_eq!(fields(&c), vec!["symbols", "symbols"]);
        c.symbols = Some(vec![]);
        assert_eq!(fields(&c), vec!["symbols"]);
        let mut c = HttpPollConfig::new(Provider::Frankfurter);
        c.api_key_env = Some("KEY".into());
        c.url = Some("ftp://example.org".into());
        c.interval = Duration::ZERO;
        c.max_backoff = Duration::from_millis(10);
        c.account_id = Some("1".into());
        assert_eq!(
            fields(&c),
            vec!["url", "interval", "max_backoff", "api_key_env", "account_id"]
        );
        let mut c = HttpPollConfig::new(Provider::Oanda);
        c.api_key_env = Some("OANDA_TOKEN".into());
        assert_eq!(fields(&c), vec!["provider"], "an account is required");
        c.account_id = Some("001-004-1234567-001".into());
        assert!(fields(&c).is_empty());
    }

    #[test]
    fn parses_from_a_pipeline_file() {
        load(r#"HttpPoll(provider: Frankfurter, base: "USD", symbols: ["EUR", "JPY"], interval: "1m", timeout: "5s")"#)
            .unwrap();
        load(r#"HttpPoll(provider: Oanda, api_key_env: "OANDA_TOKEN", account_id: "001-004-1234567-001")"#).unwrap();
        let err = load(r#"HttpPoll(provider: Frankfurter, api_key: "abc")"#).unwrap_err();
        assert!(err.contains("api_key"), "{err}");
        let err = load(r#"HttpPoll(provider: Fixer)"#).unwrap_err();
        assert!(err.contains("Fixer"), "{err}");
        let err = load(r#"HttpPoll(provider: Ecb, base: "USD", interval: "0s")"#).unwrap_err();
        assert!(
            err.contains("Ecb quotes against EUR only") && err.contains("must be longer than zero"),
            "{err}"
        );
    }

    fn error(class: ErrorClass, retry_after: Option<u64>) -> PollError {
        let mut e = PollError::new(class, "x", "x");
        e.retry_after = retry_after.map(Duration::from_secs);
        e
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let transient = error(ErrorClass::Transient, None);
        let waits: Vec<u64> = (1..=9).map(|_| b.after_failure(&transient).as_secs()).collect();
        // Each wait is the doubled backoff plus jitter (up to as much again), capped.
        for (i, (wait, base)) in waits.iter().zip([1, 2, 4, 8, 16, 32, 60, 60, 60]).enumerate() {
            assert!(
                *wait >= base && *wait <= (2 * base).min(60),
                "failure {}: {wait} s",
                i + 1
            );
        }
        for _ in 0..100 {
            assert_eq!(b.after_failure(&transient), Duration::from_secs(60), "stays at the cap");
        }
        b.reset();
        assert!(
            b.after_failure(&error(ErrorClass::Invalid, None)) < Duration::from_secs(2),
            "a good poll starts over"
        );
        // Throttling: the longer of the backoff and Retry-After, even past max_backoff.
        b.reset();
        assert_eq!(
            b.after_failure(&error(ErrorClass::Throttled, Some(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.after_failure(&error(ErrorClass::Throttled, Some(600))),
            Duration::from_secs(600)
        );
        assert_eq!(
            b.after_failure(&error(ErrorClass::Throttled, Some(10_000_000))),
            fxflow_engine::retry::MAX_RETRY_AFTER
        );
        // A refusal that retrying cannot fix waits the longest.
        assert_eq!(
            b.after_failure(&error(ErrorClass::Fatal, None)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_comes_from_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Tue, 24 Nov 2020 09:00:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a date in the past");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
