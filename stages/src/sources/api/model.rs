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
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::fx::{AlertRule, Condition, Ohlc, PriceField, Trigger};
use crate::store::{PriceKind, RuleStatus, StoredAlert, StoredCandle, StoredRate, StoredRule, StoredVolatility};

use super::contract::{self, NUMBER_MAX, NUMBER_MIN};

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
                if !contract::conforms(contract::DECIMAL, quoted) {
                    return Err(serde::de::Error::custom(format!(
                        "expected a decimal such as \"1.10\" (at most 9 digits before the point and 19 after), found {text}"
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
        let value = parse_decimal(inner).map_err(serde::de::Error::custom)?;
        if !text.starts_with('"') && !number_in_range(value) {
            return Err(serde::de::Error::custom(format!(
                "{text} is out of range: a decimal sent as a number is 0 or its size is from 0.001 to below 1e9 \
                 (send it as a string for more digits)"
            )));
        }
        Ok(DecimalJson(value))
    }
}

/// Whether a decimal sent as a JSON number is in the range the document gives numbers.
fn number_in_range(value: Decimal) -> bool {
    let size = value.abs();
    size.is_zero() || (size >= Decimal::new(1, 3) && size < Decimal::from(1_000_000_000))
}

/// The schema of a decimal input: a string of `pattern`, or a number of `number`.
fn decimal_input(pattern: &str, number: RefOr<Schema>, description: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .examples(["1.10"]),
        )
        .item(number)
        .description(Some(description))
        .into()
}

fn number_between(low: f64, high: f64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(low))
        .exclusive_maximum(Some(high))
}

/// A decimal above zero (a threshold, `k`).
pub fn positive_decimal_schema() -> RefOr<Schema> {
    decimal_input(
        contract::non_zero_decimal(false),
        number_between(NUMBER_MIN, NUMBER_MAX).into(),
        "An exact decimal above zero: a JSON string (\"1.10\": at most 9 digits before the point, 19 after) \
         or number (0.001 to below 1e9), read from its text, never rounded through a float.",
    )
}

/// A decimal that may be zero but not negative (a re-arm band).
pub fn non_negative_decimal_schema() -> RefOr<Schema> {
    decimal_input(
        contract::NON_NEGATIVE_DECIMAL,
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number).enum_values(Some([0])))
            .item(number_between(NUMBER_MIN, NUMBER_MAX))
            .into(),
        "An exact decimal, zero or above: a JSON string (at most 9 digits before the point, 19 after) \
         or number (0, or 0.001 to below 1e9).",
    )
}

/// [`non_negative_decimal_schema`], or null (the default).
pub fn non_negative_decimal_or_null_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(non_negative_decimal_schema())
        .into()
}

/// A decimal that is not zero, of either sign (a percent change).
pub fn non_zero_decimal_schema() -> RefOr<Schema> {
    decimal_input(
        contract::non_zero_decimal(true),
        AnyOfBuilder::new()
            .item(number_between(NUMBER_MIN, NUMBER_MAX))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(-NUMBER_MAX))
                    .maximum(Some(-NUMBER_MIN)),
            )
            .into(),
        "An exact decimal, not zero, either sign: a JSON string (at most 9 digits before the point, 19 after) \
         or number (size 0.001 to below 1e9).",
    )
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
                    .pattern(Some(contract::DECIMAL))
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

/// A rule's condition, tagged by `type`, with only the fields of that type.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionSpec {
    /// True while the price is above `threshold` (a state: true at creation fires at once).
    #[schema(title = "AboveCondition")]
    Above {
        #[schema(schema_with = positive_decimal_schema)]
        threshold: DecimalJson,
    },
    /// True while the price is below `threshold`.
    #[schema(title = "BelowCondition")]
    Below {
        #[schema(schema_with = positive_decimal_schema)]
        threshold: DecimalJson,
    },
    /// The previous sample was below `threshold` and this one is at or above it.
    #[schema(title = "CrossingUpCondition")]
    CrossingUp {
        #[schema(schema_with = positive_decimal_schema)]
        threshold: DecimalJson,
    },
    /// The previous sample was above `threshold` and this one is at or below it.
    #[schema(title = "CrossingDownCondition")]
    CrossingDown {
        #[schema(schema_with = positive_decimal_schema)]
        threshold: DecimalJson,
    },
    /// The previous sample was on one side of `threshold` and this one is at or past it.
    #[schema(title = "CrossingCondition")]
    Crossing {
        #[schema(schema_with = positive_decimal_schema)]
        threshold: DecimalJson,
    },
    /// The previous sample was outside `[low, high]` (bounds included) and this one is
    /// inside; a jump across the whole channel does not enter it. `low` below `high`.
    #[schema(title = "EnteringChannelCondition")]
    EnteringChannel {
        #[schema(schema_with = positive_decimal_schema)]
        low: DecimalJson,
        #[schema(schema_with = positive_decimal_schema)]
        high: DecimalJson,
    },
    /// The previous sample was inside `[low, high]` and this one is outside.
    #[schema(title = "ExitingChannelCondition")]
    ExitingChannel {
        #[schema(schema_with = positive_decimal_schema)]
        low: DecimalJson,
        #[schema(schema_with = positive_decimal_schema)]
        high: DecimalJson,
    },
    /// True while the price is within `[low, high]` (a state: true at creation fires at once).
    #[schema(title = "InsideChannelCondition")]
    InsideChannel {
        #[schema(schema_with = positive_decimal_schema)]
        low: DecimalJson,
        #[schema(schema_with = positive_decimal_schema)]
        high: DecimalJson,
    },
    /// True while the price is below `low` or above `high` (a state).
    #[schema(title = "OutsideChannelCondition")]
    OutsideChannel {
        #[schema(schema_with = positive_decimal_schema)]
        low: DecimalJson,
        #[schema(schema_with = positive_decimal_schema)]
        high: DecimalJson,
    },
    /// The price rose by at least `amount` (price units) from the sample `over` ago.
    #[schema(title = "MovingUpCondition")]
    MovingUp {
        #[schema(schema_with = positive_decimal_schema)]
        amount: DecimalJson,
        over: LookbackSpec,
    },
    /// The price fell by at least `amount` (price units) from the sample `over` ago.
    #[schema(title = "MovingDownCondition")]
    MovingDown {
        #[schema(schema_with = positive_decimal_schema)]
        amount: DecimalJson,
        over: LookbackSpec,
    },
    /// The price rose by at least `percent` % from the sample `over` ago.
    #[schema(title = "MovingUpPercentCondition")]
    MovingUpPercent {
        #[schema(schema_with = positive_decimal_schema)]
        percent: DecimalJson,
        over: LookbackSpec,
    },
    /// The price fell by at least `percent` % (a positive number) from the sample `over` ago.
    #[schema(title = "MovingDownPercentCondition")]
    MovingDownPercent {
        #[schema(schema_with = positive_decimal_schema)]
        percent: DecimalJson,
        over: LookbackSpec,
    },
    /// The price moved by at least `percent` (negative: fell by at least) within `window`
    /// (rules stored before `moving_up_percent`/`moving_down_percent` existed; those say the same).
    #[schema(title = "PctChangeCondition")]
    PctChange {
        #[schema(schema_with = non_zero_decimal_schema)]
        percent: DecimalJson,
        /// A duration longer than zero such as `"30m"`, `"7d"`.
        #[schema(example = "7d", pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
        window: String,
    },
    /// An anomaly: the log return of the latest sample is at least `k`
    /// standard deviations from the mean of the previous `returns` returns
    /// (either direction); re-arms once |z| is below `k - rearm`.
    #[schema(title = "ZscoreCondition")]
    Zscore {
        /// How many previous returns the mean and σ are taken over (2 to 100,000).
        #[schema(example = 20, minimum = 2, maximum = 100_000)]
        returns: u32,
        #[schema(schema_with = positive_decimal_schema)]
        k: DecimalJson,
    },
    /// Data quality: the pair (from `source`, or any source) has not ticked for `max_age` of
    /// business time; weekends and TARGET holidays do not count unless `calendar` is
    /// `continuous`. Judged by the wall clock for a live feed, once per gap.
    #[schema(title = "StaleCondition")]
    Stale {
        /// A duration longer than zero, at most 366 days, such as `"26h"`.
        #[schema(example = "26h", pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
        max_age: String,
        #[schema(required = false)]
        calendar: CalendarSpec,
        /// Watch only this source's samples.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(required = false, nullable = false, example = "ecb", min_length = 1, max_length = 64)]
        source: Option<String>,
    },
    /// Data quality: the latest prices of 2 to 4 different sources of the pair differ by more
    /// than `bps` basis points (with `on_bar_close`: their latest prices as each bar closes).
    #[schema(title = "DivergenceCondition")]
    Divergence {
        #[schema(schema_with = positive_decimal_schema)]
        bps: DecimalJson,
        #[schema(schema_with = source_list_schema)]
        sources: Vec<String>,
    },
}

/// Which days count toward a `stale` condition's `max_age`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarSpec {
    /// TARGET business days: weekends and the euro area's holidays do not count.
    #[default]
    Target,
    /// Every day, around the clock.
    Continuous,
}

/// A `divergence` condition's sources: 2 to 4 different names.
fn source_list_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64)),
        )
        .min_items(Some(2))
        .max_items(Some(4))
        .unique_items(true)
        .examples([serde_json::json!(["ecb", "oanda"])])
        .build()
}

/// How far back a `moving_…` condition compares: `{"bars": 5}` (samples, or bars with an
/// `on_bar_close` trigger) or `{"window": "1h"}` (the oldest sample within it).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LookbackSpec {
    Bars(BarsLookback),
    Window(WindowLookback),
}

/// Compare with the sample this many samples back (bars with `on_bar_close`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BarsLookback {
    /// 1 (the previous sample) to 100,000.
    #[schema(minimum = 1, maximum = 100_000, example = 5)]
    pub bars: u32,
}

/// Compare with the oldest sample within this window.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowLookback {
    /// A duration longer than zero such as `"30m"`, `"7d"`.
    #[schema(example = "1h", pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
    pub window: String,
}

impl From<&crate::fx::Lookback> for LookbackSpec {
    fn from(over: &crate::fx::Lookback) -> Self {
        match over {
            crate::fx::Lookback::Bars(n) => LookbackSpec::Bars(BarsLookback { bars: *n }),
            crate::fx::Lookback::Window(w) => LookbackSpec::Window(WindowLookback {
                window: fxflow_engine::duration::format(w),
            }),
        }
    }
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
            Condition::Crossing(t) => ConditionSpec::Crossing {
                threshold: DecimalJson(*t),
            },
            Condition::EnteringChannel { low, high } => ConditionSpec::EnteringChannel {
                low: DecimalJson(*low),
                high: DecimalJson(*high),
            },
            Condition::ExitingChannel { low, high } => ConditionSpec::ExitingChannel {
                low: DecimalJson(*low),
                high: DecimalJson(*high),
            },
            Condition::InsideChannel { low, high } => ConditionSpec::InsideChannel {
                low: DecimalJson(*low),
                high: DecimalJson(*high),
            },
            Condition::OutsideChannel { low, high } => ConditionSpec::OutsideChannel {
                low: DecimalJson(*low),
                high: DecimalJson(*high),
            },
            Condition::MovingUp { amount, over } => ConditionSpec::MovingUp {
                amount: DecimalJson(*amount),
                over: over.into(),
            },
            Condition::MovingDown { amount, over } => ConditionSpec::MovingDown {
                amount: DecimalJson(*amount),
                over: over.into(),
            },
            Condition::MovingUpPercent { percent, over } => ConditionSpec::MovingUpPercent {
                percent: DecimalJson(*percent),
                over: over.into(),
            },
            Condition::MovingDownPercent { percent, over } => ConditionSpec::MovingDownPercent {
                percent: DecimalJson(*percent),
                over: over.into(),
            },
            Condition::PctChange { percent, window } => ConditionSpec::PctChange {
                percent: DecimalJson(*percent),
                window: fxflow_engine::duration::format(window),
            },
            Condition::ZScore { returns, k } => ConditionSpec::Zscore {
                returns: *returns,
                k: DecimalJson(*k),
            },
            Condition::Stale {
                max_age,
                calendar,
                source,
            } => ConditionSpec::Stale {
                max_age: fxflow_engine::duration::format(max_age),
                calendar: match calendar {
                    crate::fx::Calendar::Target => CalendarSpec::Target,
                    crate::fx::Calendar::Continuous => CalendarSpec::Continuous,
                },
                source: source.clone(),
            },
            Condition::Divergence { bps, sources } => ConditionSpec::Divergence {
                bps: DecimalJson(*bps),
                sources: sources.clone(),
            },
        }
    }
}

/// How often a rule fires, tagged by `type`, with only the fields of that type.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerSpec {
    /// Fire the first time the condition holds, then retire the rule.
    #[schema(title = "OnceTrigger")]
    Once,
    /// Fire each time the condition holds again, but not within `cooldown`
    /// of the last firing, and only after the price went back past the
    /// threshold by `rearm` (hysteresis).
    #[schema(title = "EveryTrigger")]
    Every {
        /// A duration, zero allowed; default (absent or null) `0s`.
        #[schema(
            example = "1h",
            required = false,
            nullable,
            pattern = r"^(0|[1-9][0-9]{0,5})(ms|s|m|h|d)$"
        )]
        cooldown: String,
        /// Default (absent or null) 0.
        #[schema(schema_with = non_negative_decimal_or_null_schema, required = false)]
        rearm: DecimalJson,
    },
    /// Fire when the condition holds, at most once per bar of `interval` (bars aligned to
    /// the Unix epoch in event time: `1h` is once per clock hour, `1d` per UTC day).
    #[schema(title = "OncePerBarTrigger")]
    OncePerBar {
        /// The bar, a duration longer than zero such as `"1h"`.
        #[schema(example = "1h", pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
        interval: String,
    },
    /// Judge the condition on each bar's close (the last sample in it) against the previous
    /// bar's close, and fire when the bar closes: when a sample of a later bar arrives.
    #[schema(title = "OnBarCloseTrigger")]
    OnBarClose {
        /// The bar, a duration longer than zero such as `"1d"`.
        #[schema(example = "1d", pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
        interval: String,
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
            Trigger::OncePerBar(bar) => TriggerSpec::OncePerBar {
                interval: fxflow_engine::duration::format(bar),
            },
            Trigger::OnBarClose(bar) => TriggerSpec::OnBarClose {
                interval: fxflow_engine::duration::format(bar),
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
    #[schema(example = "EUR/USD", pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$")]
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
    /// Mail each firing to these addresses (an `Email` stage sends it).
    #[serde(default)]
    pub email: Option<EmailInput>,
}

/// Where to mail each firing.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailInput {
    #[schema(schema_with = email_addresses_schema)]
    pub to: Vec<String>,
}

/// 1 to 10 addresses such as `desk@example.com` (no display names).
fn email_addresses_schema() -> RefOr<Schema> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(254))
                .pattern(Some(contract::EMAIL))
                .examples(["desk@example.com"]),
        )
        .min_items(Some(1))
        .max_items(Some(contract::MAX_EMAILS))
        .description(Some("1 to 10 addresses such as `desk@example.com` (no display names)."))
        .into()
}

/// The body of a webhook's deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormatView {
    /// fxflow's JSON of the firing (the default), signed with the secret.
    Json,
    /// A Slack-compatible incoming-webhook message (`text`, `blocks`).
    Slack,
    /// A Microsoft Teams message card.
    Teams,
}

impl From<WebhookFormatView> for crate::fx::WebhookFormat {
    fn from(format: WebhookFormatView) -> Self {
        match format {
            WebhookFormatView::Json => crate::fx::WebhookFormat::Json,
            WebhookFormatView::Slack => crate::fx::WebhookFormat::Slack,
            WebhookFormatView::Teams => crate::fx::WebhookFormat::Teams,
        }
    }
}

impl From<crate::fx::WebhookFormat> for WebhookFormatView {
    fn from(format: crate::fx::WebhookFormat) -> Self {
        match format {
            crate::fx::WebhookFormat::Json => WebhookFormatView::Json,
            crate::fx::WebhookFormat::Slack => WebhookFormatView::Slack,
            crate::fx::WebhookFormat::Teams => WebhookFormatView::Teams,
        }
    }
}

/// The condition as sent: `type` plus the fields of that type. Read flat
/// (not as a serde-tagged enum) so numbers keep their exact text and every
/// missing or extra field is reported by name. Each field is `None` when
/// absent and `Some(None)` when sent as `null`: a field that does not belong
/// to the type is an error even as `null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionInput {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "present")]
    pub threshold: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub percent: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub window: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_count")]
    pub returns: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub k: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub low: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub high: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub amount: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub over: Option<Option<LookbackInput>>,
    #[serde(default, deserialize_with = "present")]
    pub max_age: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub calendar: Option<Option<CalendarSpec>>,
    #[serde(default, deserialize_with = "present")]
    pub source: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub bps: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub sources: Option<Option<Vec<String>>>,
}

/// A `moving_…` condition's `over` as sent: one of `bars`, `window`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookbackInput {
    #[serde(default, deserialize_with = "present_count")]
    pub bars: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    pub window: Option<Option<String>>,
}

/// The trigger as sent (see [`ConditionInput`] for why it is flat).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "present")]
    pub cooldown: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub rearm: Option<Option<DecimalJson>>,
    #[serde(default, deserialize_with = "present")]
    pub interval: Option<Option<String>>,
}

/// A field that was sent: `Some(None)` for `null` (absent stays `None` by `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An optional count, also written as a number with no fraction (`2.0`), as JSON Schema reads it.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    present_count(deserializer).map(Option::flatten)
}

/// [`present`] for a count: an integer, also written as a number with no
/// fraction (`2.0` is the integer 2 to JSON Schema).
fn present_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u32>>, D::Error> {
    let number = Option::<serde_json::Number>::deserialize(deserializer)?;
    let Some(number) = number else { return Ok(Some(None)) };
    let count = match number.as_u64() {
        Some(n) => u32::try_from(n).ok(),
        None => number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u32),
    };
    count.map(|c| Some(Some(c))).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a whole number from 0 to {}, found {number}",
            u32::MAX
        ))
    })
}

/// Where to POST each firing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// `http://` or `https://` to a host name or IPv4 address, no credentials; names of
    /// loopback or private hosts are refused unless the server allows them (SSRF).
    #[schema(
        example = "https://hooks.example.com/fx",
        max_length = 2048,
        pattern = r"^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|localhost)(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
    )]
    pub url: String,
    /// Signs each delivery: `X-Fxflow-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub secret: Option<String>,
    /// Default `json`.
    #[serde(default)]
    pub format: Option<WebhookFormatView>,
}

/// A rule's webhook, as shown: the URL's scheme, host and port only (its path
/// often carries a credential), and never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(example = "https://hooks.example.com/…")]
    pub url: String,
    /// Whether deliveries are signed.
    pub signed: bool,
    pub format: WebhookFormatView,
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
    pub email: Option<EmailInput>,
    /// A rule of the pipeline file, visible to every tenant (and changed only there).
    pub shared: bool,
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
                url: crate::sinks::webhook::shown_text(&w.url),
                signed: w.secret.is_some(),
                format: w.format.into(),
            }),
            email: rule.email.as_ref().map(|e| EmailInput { to: e.to.clone() }),
            shared: stored.tenant.is_none(),
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

/// `POST /alerts/backtest`: rules to try on the stored history, as `POST /alerts` takes them
/// (nothing is stored and no notification is sent).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// 1 to 20 rules; firings name them `r1`, `r2`, … in this order.
    #[schema(min_items = 1, max_items = 20)]
    pub rules: Vec<NewAlert>,
    /// RFC 3339: the first sample's earliest time.
    #[schema(value_type = String, format = DateTime, example = "2024-01-01T00:00:00Z")]
    pub from: String,
    /// RFC 3339: the samples end before it; at most 366 days after `from`.
    #[schema(value_type = String, format = DateTime, example = "2025-01-01T00:00:00Z")]
    pub to: String,
    /// Firings per page, 1 to 1,000 (default 100).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next`: `f` and how many firings came before (a rerun of the same
    /// request skips them; the backtest is deterministic).
    #[serde(default)]
    #[schema(pattern = r"^f[0-9]{1,18}$", example = "f100")]
    pub after: Option<String>,
}

/// A backtest's page of firings, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BacktestPage {
    /// The firings, each with the price that fired, the previous one (or the reference a
    /// move compared with) and the condition in words.
    pub firings: Vec<FiringView>,
    /// Stored samples the rules ran over.
    pub samples: u64,
    /// Firings over the whole range.
    pub total: u64,
    /// Send it back as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// A firing of a pipeline file's rule, seen by every tenant.
    pub shared: bool,
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
            shared: a.tenant.is_none(),
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
            shared: a.tenant.is_none(),
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

/// A duration in a request, written as the pipeline files write it (`"30s"`,
/// `"7d"`) and nothing else (no spaces, at most 6 digits): [`contract::DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if !contract::conforms(contract::DURATION, text) {
        return Err(format!(
            "`{text}` is not a duration; write it like \"250ms\", \"30s\", \"5m\", \"2h\" or \"7d\""
        ));
    }
    fxflow_engine::duration::parse(text)
}
