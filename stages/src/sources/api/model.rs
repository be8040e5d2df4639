//! What the API reads and writes: request and response bodies, with their
//! OpenAPI schemas derived from these same types (so the document cannot
//! drift from the handlers).
//!
//! Prices are exact: responses write decimals as JSON strings; requests take
//! a string or a number and read it from its text ([`DecimalJson`]), never
//! through `f64`.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::fx::{AlertRule, Condition, Ohlc, PriceField, Trigger};
use crate::store::{PriceKind, RuleStatus, StoredAlert, StoredCandle, StoredRate, StoredRule, StoredVolatility};

/// The pattern of a decimal written as a string.
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// A decimal in JSON, written as a string (`"1.10"`) or a number (`1.10`),
/// read exactly from its text. Serialized as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecimalJson(pub Decimal);

/// Parse a decimal from the text of a JSON string or number.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected a decimal number".into());
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str(text)
    };
    parsed.map_err(|_| format!("`{text}` is not a decimal number within ±7.9e28 with at most 28 decimal places"))
}

impl<'de> Deserialize<'de> for DecimalJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The raw JSON text keeps every digit; serde_json would round a number through f64.
        let raw: Box<RawValue> = Deserialize::deserialize(deserializer)?;
        let text = raw.get();
        let inner = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(quoted) => {
                if !quoted.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
                    return Err(serde::de::Error::custom(format!(
                        "expected a decimal such as \"1.10\", found {text}"
                    )));
                }
                quoted
            }
            None if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) => text,
            None => {
                return Err(serde::de::Error::custom(format!(
                    "expected a decimal as a string or number, found {text}"
                )))
            }
        };
        parse_decimal(inner).map(DecimalJson).map_err(serde::de::Error::custom)
    }
}

impl Serialize for DecimalJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl utoipa::PartialSchema for DecimalJson {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(DECIMAL_PATTERN))
                    .examples(["1.10"]),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .description(Some(
                "An exact decimal: a JSON string (\"1.10\") or number (1.10), read from its text, never rounded through a float.",
            ))
            .into()
    }
}

impl ToSchema for DecimalJson {
    fn name() -> Cow<'static, str> {
        "Decimal".into()
    }
}

/// Whether a price was quoted by its provider or computed as a cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceKindView {
    Quote,
    Cross,
}

impl From<PriceKind> for PriceKindView {
    fn from(kind: PriceKind) -> Self {
        match kind {
            PriceKind::Quote => PriceKindView::Quote,
            PriceKind::Cross => PriceKindView::Cross,
        }
    }
}

/// The current (or historic) price of one pair, in market convention.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct RateView {
    #[schema(example = "EUR/USD")]
    pub pair: String,
    pub kind: PriceKindView,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "1.0842")]
    pub bid: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "1.0844")]
    pub ask: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "1.0843")]
    pub mid: Decimal,
    /// Mid minus the previous price's mid (null for the first one seen).
    #[schema(value_type = Option<String>, example = "0.0012")]
    pub change: Option<Decimal>,
    /// The price's own time (the provider's timestamp).
    #[schema(value_type = String, format = DateTime)]
    pub ts: DateTime<Utc>,
    #[schema(example = "ecb")]
    pub source: String,
    /// Decimal places to show: 3 for JPY pairs, 5 for the others.
    #[schema(example = 5)]
    pub decimals: u32,
}

impl RateView {
    pub fn from_stored(rate: &StoredRate, change: Option<Decimal>) -> Self {
        RateView {
            pair: rate.pair.to_string(),
            kind: rate.kind.into(),
            bid: rate.bid,
            ask: rate.ask,
            mid: rate.mid,
            change,
            ts: rate.ts,
            source: rate.source.clone(),
            decimals: rate.pair.display_decimals(),
        }
    }
}

/// `GET /rates`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatesResponse {
    /// One entry per pair that has a price, in market convention, by pair.
    pub rates: Vec<RateView>,
    /// The instant asked for with `at` (null for the current rates).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<DateTime<Utc>>,
}

/// One row of a pair's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryRow {
    #[schema(value_type = String, format = DateTime)]
    pub ts: DateTime<Utc>,
    pub source: String,
    pub kind: PriceKindView,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub bid: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub ask: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub mid: Decimal,
}

impl From<&StoredRate> for HistoryRow {
    fn from(rate: &StoredRate) -> Self {
        HistoryRow {
            ts: rate.ts,
            source: rate.source.clone(),
            kind: rate.kind.into(),
            bid: rate.bid,
            ask: rate.ask,
            mid: rate.mid,
        }
    }
}

/// `GET /rates/{pair}/history`: one page, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    #[schema(example = "EUR/USD")]
    pub pair: String,
    pub rates: Vec<HistoryRow>,
    /// The next page (same filters), or null on the last page.
    #[schema(example = "/rates/EURUSD/history?from=2024-01-01T00:00:00Z&limit=1000&after=...")]
    pub next: Option<String>,
}

/// Open, high, low and close of one side of the price.
#[derive(Debug, Serialize, ToSchema)]
pub struct OhlcView {
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub open: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub high: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub low: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub close: Decimal,
}

impl From<Ohlc> for OhlcView {
    fn from(bar: Ohlc) -> Self {
        OhlcView {
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
        }
    }
}

/// One bar: open (the first price by event time), high, low and close (the
/// last) of the mid over `[start, end)`, with bid and ask bars when the prices
/// were two-sided.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandleView {
    /// The bar's first instant (a multiple of the interval since the Unix epoch).
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<Utc>,
    /// The instant after the bar.
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<Utc>,
    #[schema(example = "ecb")]
    pub source: String,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "1.0842")]
    pub open: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub high: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub low: Decimal,
    #[schema(value_type = String, pattern = r"^-?[0-9]+(\.[0-9]+)?$")]
    pub close: Decimal,
    pub bid: Option<OhlcView>,
    pub ask: Option<OhlcView>,
    /// Prices the bar is made of.
    pub ticks: i64,
    /// False while the interval was still open when the bar was stored.
    pub closed: bool,
}

impl CandleView {
    pub fn new(candle: &StoredCandle, interval: Duration) -> Self {
        CandleView {
            start: candle.start,
            end: candle.start + chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX),
            source: candle.source.clone(),
            open: candle.mid.open,
            high: candle.mid.high,
            low: candle.mid.low,
            close: candle.mid.close,
            bid: candle.bid.map(OhlcView::from),
            ask: candle.ask.map(OhlcView::from),
            ticks: candle.ticks,
            closed: candle.closed,
        }
    }
}

/// `GET /rates/{pair}/candles`: one page of bars, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandlesResponse {
    #[schema(example = "EUR/USD")]
    pub pair: String,
    #[schema(example = "1h")]
    pub interval: String,
    pub candles: Vec<CandleView>,
    /// The next page (same filters), or null on the last page.
    pub next: Option<String>,
}

/// One volatility reading.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolatilityView {
    #[schema(example = "EUR/USD")]
    pub pair: String,
    #[schema(example = "ecb")]
    pub source: String,
    #[schema(example = "30d")]
    pub window: String,
    /// The window's end: the returns are those of prices in `[ts - window, ts)`.
    #[schema(value_type = String, format = DateTime)]
    pub ts: DateTime<Utc>,
    /// The annualised standard deviation of the mid's log returns (0.08 = 8% a year).
    #[schema(example = 0.0734)]
    pub volatility: f64,
    /// Returns in the window.
    pub samples: i64,
}

impl From<&StoredVolatility> for VolatilityView {
    fn from(v: &StoredVolatility) -> Self {
        VolatilityView {
            pair: v.pair.to_string(),
            source: v.source.clone(),
            window: v.window.clone(),
            ts: v.ts,
            volatility: v.volatility,
            samples: v.samples,
        }
    }
}

/// `GET /analytics/volatility`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolatilityResponse {
    #[schema(example = "30d")]
    pub window: String,
    /// The newest reading of each pair that has one (or every reading in `from`..`to`).
    pub volatility: Vec<VolatilityView>,
}

/// A currency the system monitors.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyView {
    #[schema(example = "EUR")]
    pub code: String,
    #[schema(example = "Euro")]
    pub name: String,
}

/// `GET /currencies`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrenciesResponse {
    pub currencies: Vec<CurrencyView>,
}

/// Which side of the quote a conversion used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuoteSide {
    /// Selling the pair's base currency.
    Bid,
    /// Buying the pair's base currency.
    Ask,
    /// A mid-only provider (bid = ask).
    Mid,
}

/// `GET /convert`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConvertResponse {
    #[schema(example = "USD")]
    pub from: String,
    #[schema(example = "JPY")]
    pub to: String,
    #[schema(value_type = String, example = "1000")]
    pub amount: Decimal,
    /// `amount` of `from` in `to`, exact (not rounded for display).
    #[schema(value_type = String, example = "149250")]
    pub result: Decimal,
    /// The market-convention pair whose quote was used.
    #[schema(example = "USD/JPY")]
    pub pair: String,
    /// The price used (of `pair`).
    #[schema(value_type = String, example = "149.25")]
    pub rate: Decimal,
    pub side: QuoteSide,
    #[schema(value_type = String, format = DateTime)]
    pub ts: DateTime<Utc>,
    pub source: String,
}

/// A rule's condition, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConditionSpec {
    /// True while the price is above `threshold` (a state: true at creation fires at once).
    Above { threshold: DecimalJson },
    /// True while the price is below `threshold`.
    Below { threshold: DecimalJson },
    /// The previous sample was below `threshold` and this one is at or above it.
    CrossingUp { threshold: DecimalJson },
    /// The previous sample was above `threshold` and this one is at or below it.
    CrossingDown { threshold: DecimalJson },
    /// The price moved by at least `percent` (negative: fell by at least) within `window`.
    PctChange {
        percent: DecimalJson,
        /// A duration such as `"30m"`, `"7d"`.
        #[schema(example = "7d")]
        window: String,
    },
    /// An anomaly: the log return of the latest sample is at least `k`
    /// standard deviations from the mean of the previous `returns` returns
    /// (either direction); re-arms once |z| is below `k - rearm`.
    Zscore {
        /// How many previous returns the mean and σ are taken over (at least 2).
        #[schema(example = 20, minimum = 2)]
        returns: u32,
        k: DecimalJson,
    },
}

impl From<&Condition> for ConditionSpec {
    fn from(condition: &Condition) -> Self {
        match condition {
            Condition::Above(t) => ConditionSpec::Above {
                threshold: DecimalJson(*t),
            },
            Condition::Below(t) => ConditionSpec::Below {
                threshold: DecimalJson(*t),
            },
            Condition::CrossingUp(t) => ConditionSpec::CrossingUp {
                threshold: DecimalJson(*t),
            },
            Condition::CrossingDown(t) => ConditionSpec::CrossingDown {
                threshold: DecimalJson(*t),
            },
            Condition::PctChange { percent, window } => ConditionSpec::PctChange {
                percent: DecimalJson(*percent),
                window: fxflow_engine::duration::format(window),
            },
            Condition::ZScore { returns, k } => ConditionSpec::Zscore {
                returns: *returns,
                k: DecimalJson(*k),
            },
        }
    }
}

/// How often a rule fires, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerSpec {
    /// Fire the first time the condition holds, then retire the rule.
    Once,
    /// Fire each time the condition holds again, but not within `cooldown`
    /// of the last firing, and only after the price went back past the
    /// threshold by `rearm` (hysteresis).
    Every {
        #[schema(example = "1h")]
        cooldown: String,
        rearm: DecimalJson,
    },
}

impl From<&Trigger> for TriggerSpec {
    fn from(trigger: &Trigger) -> Self {
        match trigger {
            Trigger::Once => TriggerSpec::Once,
            Trigger::Every { cooldown, rearm } => TriggerSpec::Every {
                cooldown: fxflow_engine::duration::format(cooldown),
                rearm: DecimalJson(*rearm),
            },
        }
    }
}

/// The side of the price a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceFieldView {
    Mid,
    Bid,
    Ask,
}

impl From<PriceField> for PriceFieldView {
    fn from(field: PriceField) -> Self {
        match field {
            PriceField::Mid => PriceFieldView::Mid,
            PriceField::Bid => PriceFieldView::Bid,
            PriceField::Ask => PriceFieldView::Ask,
        }
    }
}

impl From<PriceFieldView> for PriceField {
    fn from(field: PriceFieldView) -> Self {
        match field {
            PriceFieldView::Mid => PriceField::Mid,
            PriceFieldView::Bid => PriceField::Bid,
            PriceFieldView::Ask => PriceField::Ask,
        }
    }
}

/// `POST /alerts`: a new rule. The server assigns its `id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlert {
    /// A monitored pair in market convention: `EUR/USD` (also `EURUSD`, `EUR-USD`, `EUR_USD`).
    #[schema(example = "EUR/USD", pattern = r"^[A-Z]{3}[-_/]?[A-Z]{3}$")]
    pub pair: String,
    #[schema(value_type = ConditionSpec)]
    pub condition: ConditionInput,
    /// Default `{"type": "once"}`.
    #[serde(default)]
    #[schema(value_type = Option<TriggerSpec>)]
    pub trigger: Option<TriggerInput>,
    /// Default `mid`.
    #[serde(default)]
    pub price: Option<PriceFieldView>,
    /// RFC 3339: the rule never fires for a sample stamped at or after it.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub webhook: Option<WebhookInput>,
}

/// The condition as sent: `type` plus the fields of that type. Read flat
/// (not as a serde-tagged enum) so numbers keep their exact text and every
/// missing or extra field is reported by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionInput {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub threshold: Option<DecimalJson>,
    #[serde(default)]
    pub percent: Option<DecimalJson>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub returns: Option<u32>,
    #[serde(default)]
    pub k: Option<DecimalJson>,
}

/// The trigger as sent (see [`ConditionInput`] for why it is flat).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub cooldown: Option<String>,
    #[serde(default)]
    pub rearm: Option<DecimalJson>,
}

/// Where to POST each firing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// `http://` or `https://`; private and loopback addresses are refused
    /// unless the server allows them (SSRF).
    #[schema(example = "https://hooks.example.com/fx")]
    pub url: String,
    /// Signs each delivery: `X-Fxflow-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A rule's webhook, as shown (the secret never is).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub url: String,
    /// Whether deliveries are signed.
    pub signed: bool,
}

/// Where a rule stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatusView {
    /// Checked against every sample.
    Active,
    /// A `once` rule that fired: retired.
    Triggered,
    /// Past its `expires_at`.
    Expired,
}

impl From<RuleStatus> for RuleStatusView {
    fn from(status: RuleStatus) -> Self {
        match status {
            RuleStatus::Active => RuleStatusView::Active,
            RuleStatus::Triggered => RuleStatusView::Triggered,
            RuleStatus::Expired => RuleStatusView::Expired,
        }
    }
}

impl From<RuleStatusView> for RuleStatus {
    fn from(status: RuleStatusView) -> Self {
        match status {
            RuleStatusView::Active => RuleStatus::Active,
            RuleStatusView::Triggered => RuleStatus::Triggered,
            RuleStatusView::Expired => RuleStatus::Expired,
        }
    }
}

/// An alert rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    #[schema(example = "a3f9c2e81b7d4c05")]
    pub id: String,
    #[schema(example = "EUR/USD")]
    pub pair: String,
    pub condition: ConditionSpec,
    /// The condition in words, as firings record it.
    #[schema(example = "above 1.10")]
    pub condition_text: String,
    pub trigger: TriggerSpec,
    pub price: PriceFieldView,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    pub webhook: Option<WebhookView>,
    pub status: RuleStatusView,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Firings recorded in the alert history.
    pub fired_count: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_fired_at: Option<DateTime<Utc>>,
}

impl AlertView {
    pub fn new(stored: &StoredRule, now: DateTime<Utc>) -> Self {
        let rule: &AlertRule = &stored.rule;
        AlertView {
            id: rule.id.clone(),
            pair: rule.pair.to_string(),
            condition: (&rule.condition).into(),
            condition_text: rule.condition.describe(),
            trigger: (&rule.trigger).into(),
            price: rule.price.into(),
            expires_at: rule.expires,
            webhook: rule.webhook.as_ref().map(|w| WebhookView {
                url: w.url.clone(),
                signed: w.secret.is_some(),
            }),
            status: RuleStatus::of(rule, stored.fired_count, now).into(),
            created_at: stored.created_at,
            fired_count: stored.fired_count,
            last_fired_at: stored.last_fired_at,
        }
    }
}

/// `GET /alerts`: one page of rules, by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
    /// The next page, or null on the last one.
    pub next: Option<String>,
}

/// One firing of a rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FiringView {
    pub rule_id: String,
    #[schema(example = "EUR/USD")]
    pub pair: String,
    /// The condition in words.
    #[schema(example = "crossing up 1.10")]
    pub condition: String,
    /// The price that fired it.
    #[schema(value_type = String, example = "1.1003")]
    pub value: Decimal,
    /// The previous sample's price (for `pct_change`: the window's reference).
    #[schema(value_type = Option<String>, example = "1.0998")]
    pub previous: Option<Decimal>,
    /// The sample's time.
    #[schema(value_type = String, format = DateTime)]
    pub fired_at: DateTime<Utc>,
    pub source: String,
}

impl From<&StoredAlert> for FiringView {
    fn from(a: &StoredAlert) -> Self {
        FiringView {
            rule_id: a.rule_id.clone(),
            pair: a.pair.to_string(),
            condition: a.condition.clone(),
            value: a.value,
            previous: a.previous,
            fired_at: a.fired_at,
            source: a.source.clone(),
        }
    }
}

impl From<&crate::fx::AlertFired> for FiringView {
    fn from(a: &crate::fx::AlertFired) -> Self {
        FiringView {
            rule_id: a.rule_id.to_string(),
            pair: a.pair.to_string(),
            condition: a.condition.to_string(),
            value: a.value,
            previous: a.previous,
            fired_at: a.ts,
            source: a.source.to_string(),
        }
    }
}

/// `GET /alerts/history`: one page of firings, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiringList {
    pub firings: Vec<FiringView>,
    /// The next (older) page, or null on the last one.
    pub next: Option<String>,
}

/// A stage of a running pipeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageView {
    pub name: String,
    pub kind: String,
}

/// `GET /`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexResponse {
    #[schema(example = "fxflow")]
    pub name: &'static str,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// The pipeline this API stage runs in.
    pub pipeline: String,
    pub stages: Vec<StageView>,
    /// Where to go next: the endpoints by name.
    #[schema(value_type = Object)]
    pub links: serde_json::Map<String, serde_json::Value>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// One dependency on `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentView {
    pub ready: bool,
    pub detail: String,
}

/// `GET /ready`: ready when the pipeline runs and every dependency answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyResponse {
    pub ready: bool,
    pub started: bool,
    /// By name: the store, the cache, each Kafka consumer...
    pub components: std::collections::BTreeMap<String, ComponentView>,
}

/// Per-stage counters of the running pipelines, for the live page.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Server time of the reading, for rates between two readings.
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    pub stages: Vec<StageStats>,
}

/// Counters of one stage since the process started.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct StageStats {
    pub pipeline: String,
    pub stage: String,
    pub received: f64,
    pub sent: f64,
    pub errors: f64,
    pub discarded: f64,
    /// Fill of the buffer in front of the stage, 0–1.
    pub buffer: f64,
}

/// A duration as the pipeline files write it (`"30s"`, `"7d"`), for errors.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    fxflow_engine::duration::parse(text)
}
