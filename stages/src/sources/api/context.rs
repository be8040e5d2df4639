//! The state every handler shares: the store, the cache, the watched view,
//! the keys and limits, and the way out for rule changes.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fxflow_engine::{AckStatus, AckToken, Envelope, Readiness, Shutdown};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use rust_decimal::Decimal;
use tokio::sync::mpsc;

use super::auth::AuthState;
use super::error::{ApiError, ErrorCode};
use super::limits::{Limiter, LimitsConfig};
pub use super::metrics::ApiMetrics;
use super::model::{PriceKindView, RateView, StageView};
use super::view::View;
use crate::fx::{AlertRuleChange, Currency, FxEvent, Pair};
use crate::store::HistoryStore;

pub type ApiState = Arc<ApiContext>;

/// Everything the handlers need.
pub struct ApiContext {
    pub pipeline: String,
    pub stage: String,
    pub stages: Vec<StageView>,
    pub store: Arc<dyn HistoryStore>,
    pub cache: Option<RedisRates>,
    pub view: View,
    pub currencies: Vec<Currency>,
    /// Every pair of `currencies`, in market convention, sorted.
    pub pairs: Vec<Pair>,
    pub auth: Arc<AuthState>,
    pub per_ip: Option<Limiter<IpAddr>>,
    /// Proxies whose `X-Forwarded-For`/`Forwarded` name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The data routes need a key too (the stage's `private`).
    pub private: bool,
    pub limits: LimitsConfig,
    /// Rule changes on their way to the stage's output.
    pub changes: mpsc::Sender<Envelope<FxEvent>>,
    pub change_timeout: Duration,
    pub prometheus: PrometheusHandle,
    pub readiness: Readiness,
    pub shutdown: Shutdown,
    pub metrics: ApiMetrics,
    pub allow_private_webhooks: bool,
    /// Live-stream clients connected now.
    pub streams_open: AtomicUsize,
    /// The ECB history behind the Frankfurter routes, in memory.
    pub ecb: Arc<super::frankfurter::EcbCache>,
}

impl ApiContext {
    pub fn is_monitored(&self, pair: Pair) -> bool {
        self.pairs.binary_search(&pair).is_ok()
    }

    /// A pair the API serves, or 404 naming the monitored currencies.
    pub fn monitored(&self, pair: Pair) -> Result<Pair, ApiError> {
        if self.is_monitored(pair) {
            Ok(pair)
        } else {
            Err(ApiError::not_found(
                ErrorCode::UnknownPair,
                format!(
                    "{pair} is not monitored here; the monitored currencies are {}",
                    self.currency_list()
                ),
            ))
        }
    }

    /// A currency the API serves, or 404 naming the monitored ones.
    pub fn monitored_currency(&self, field: &str, currency: Currency) -> Result<Currency, ApiError> {
        if self.currencies.contains(&currency) {
            return Ok(currency);
        }
        Err(ApiError::not_found(
            ErrorCode::UnknownCurrency,
            format!(
                "{currency} is not monitored here; the monitored currencies are {}",
                self.currency_list()
            ),
        )
        .with_details(vec![super::error::FieldError::new(field, "not monitored")]))
    }

    pub fn currency_list(&self) -> String {
        self.currencies.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
    }

    /// The current price of each of `pairs` that has one: from the Redis cache
    /// when the stage has one (falling back to the store if Redis fails), else
    /// from the stage's own view of the stream.
    pub async fn current(&self, pairs: &[Pair]) -> Result<Vec<RateView>, ApiError> {
        if let Some(cache) = &self.cache {
            match cache.rates(&self.pairs).await {
                Ok(all) => {
                    return Ok(all
                        .into_iter()
                        .filter(|r| pairs.iter().any(|p| p.to_string() == r.pair))
                        .collect())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis did not answer; reading current rates from the store.");
                    let mut rates = Vec::new();
                    for pair in pairs {
                        if let Some(rate) = self.store.latest_rate(*pair).await? {
                            rates.push(RateView::from_stored(&rate, None));
                        }
                    }
                    return Ok(rates);
                }
            }
        }
        Ok(pairs.iter().filter_map(|p| self.view.board.get(*p)).collect())
    }

    /// Send a change downstream without waiting for it (the undo of a change
    /// that was not accepted in time: queued behind it, so it lands after it).
    pub async fn retract(&self, change: AlertRuleChange) {
        let _ = self
            .changes
            .send(Envelope::unacked(FxEvent::AlertRuleChange(Box::new(change))))
            .await;
    }

    /// Send a rule change downstream and wait until it is accepted there
    /// (every stage it reaches has taken it; for a Kafka sink: written with acks=all).
    pub async fn emit(&self, change: AlertRuleChange) -> Result<(), ApiError> {
        let (token, accepted) = AckToken::new();
        let envelope = Envelope::new(FxEvent::AlertRuleChange(Box::new(change)), token);
        if self.changes.send(envelope).await.is_err() {
            return Err(ApiError::unavailable(
                ErrorCode::ShuttingDown,
                "the pipeline is shutting down and accepts no changes",
            ));
        }
        match tokio::time::timeout(self.change_timeout, accepted.wait()).await {
            Ok(AckStatus::Delivered) => Ok(()),
            Ok(status) => Err(ApiError::unavailable(
                ErrorCode::PipelineUnavailable,
                format!("the rule change was not accepted downstream ({status:?})"),
            )),
            Err(_) => Err(ApiError::unavailable(
                ErrorCode::PipelineUnavailable,
                format!(
                    "the rule change was not accepted downstream within {}",
                    fxflow_engine::duration::format(&self.change_timeout)
                ),
            )),
        }
    }
}

/// Current rates from the hashes a `Redis` sink keeps (`fx:rate:<pair>`).
pub struct RedisRates {
    pub connection: ConnectionManager,
    pub prefix: String,
    /// The last answer, reused for `MEMO` so a burst of requests costs one round trip.
    memo: Mutex<Option<(Instant, Vec<RateView>)>>,
}

/// How long one Redis answer serves `GET /rates`.
const MEMO: Duration = Duration::from_millis(100);

impl RedisRates {
    pub fn new(connection: ConnectionManager, prefix: String) -> Self {
        RedisRates {
            connection,
            prefix,
            memo: Mutex::new(None),
        }
    }

    /// The cached price of each of `pairs` (pipelined `HGETALL`s).
    pub async fn rates(&self, pairs: &[Pair]) -> Result<Vec<RateView>, redis::RedisError> {
        if let Some((at, rates)) = self.memo.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if at.elapsed() < MEMO {
                return Ok(rates.clone());
            }
        }
        let mut pipe = redis::pipe();
        for pair in pairs {
            pipe.hgetall(format!("{}{pair}", self.prefix));
        }
        let mut connection = self.connection.clone();
        let hashes: Vec<std::collections::HashMap<String, String>> = pipe.query_async(&mut connection).await?;
        let rates: Vec<RateView> = pairs
            .iter()
            .zip(hashes)
            .filter_map(|(pair, hash)| rate_from_hash(*pair, &hash))
            .collect();
        *self.memo.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), rates.clone()));
        Ok(rates)
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING").query_async::<()>(&mut connection).await
    }
}

/// A rate from a `Redis` sink's hash; `None` when the hash is absent or incomplete.
fn rate_from_hash(pair: Pair, hash: &std::collections::HashMap<String, String>) -> Option<RateView> {
    let decimal = |field: &str| hash.get(field).and_then(|v| v.parse::<Decimal>().ok());
    let ts: DateTime<Utc> = DateTime::parse_from_rfc3339(hash.get("ts")?).ok()?.with_timezone(&Utc);
    Some(RateView {
        pair: pair.to_string(),
        kind: if hash.get("kind").map(String::as_str) == Some("cross") {
            PriceKindView::Cross
        } else {
            PriceKindView::Quote
        },
        bid: decimal("bid")?,
        ask: decimal("ask")?,
        mid: decimal("mid")?,
        change: decimal("change"),
        ts,
        source: hash.get("source")?.clone(),
        decimals: pair.display_decimals(),
    })
}

/// The authentication extractor's share of the state (see `auth::Authorized`).
impl axum::extract::FromRef<ApiState> for super::auth::Auth {
    fn from_ref(state: &ApiState) -> Self {
        super::auth::Auth(state.auth.clone())
    }
}

/// The Frankfurter routes' share of the state.
impl axum::extract::FromRef<ApiState> for super::frankfurter::Reference {
    fn from_ref(state: &ApiState) -> Self {
        super::frankfurter::Reference {
            store: state.store.clone(),
            cache: state.ecb.clone(),
        }
    }
}
