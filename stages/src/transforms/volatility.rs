//! `Volatility`: the rolling standard deviation of log returns per pair and
//! source, annualised, on the engine's sliding event-time windows.
//!
//! Each price of a (pair, source) after its first gives a log return of the
//! mid, `r = ln(mid / previous mid)`, stamped at the price's time. Every
//! `every` a window of length `window` ends; the returns stamped inside it
//! give the sample standard deviation σ (mean-adjusted, n − 1), kept as
//! running sums per `every`-long pane (merged when a window closes), so a
//! window costs the same for 30 daily returns or 2.6 million one-second ones.
//! A reading needs two returns. Annualised:
//!
//! - `ElapsedTime` (default): σ · √(n / elapsed years) — n returns over the
//!   time they span (the sum of their intervals, weekends included), with a
//!   year of 365.25 days. Right for any sampling, regular or not.
//! - `ReturnsPerYear(k)`: σ · √k — each return is one of k periods a year
//!   (252 for daily closes of trading days).
//!
//! Statistics are `f64`: prices come in as exact decimals and are converted
//! only to take logarithms. Prices of a key arrive in event-time order (see
//! `Candles`), so a price not newer than the last one is a re-delivery and is
//! skipped.

use std::time::Duration;

use fxflow_engine::kafka::StateTopicConfig;
use fxflow_engine::window::{
    nanos, Aggregation, Assigned, Contribution, EmitPolicy, EventTime, Window, WindowConfig, WindowShape, WindowStage,
};
use fxflow_engine::{async_trait, BuildContext, ConfigProblem, Kinds, Shape, Stage, StageConfig, StageError};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use super::{event_time, utc};
use crate::fx::quote::mid;
use crate::fx::{kind, FxEvent, Pair, SourceName, Volatility};

/// The length of a year for `ElapsedTime`: 365.25 days.
const YEAR_NANOS: f64 = 365.25 * 86_400.0 * 1e9;

/// Most windows one price may fall into (`window / every`).
const MAX_OVERLAP: u64 = 1_000;

/// Emits the annualised volatility (standard deviation of the mid's log
/// returns) of each pair and source over `window`, every `every`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolatilityConfig {
    /// The span each reading covers, e.g. `"30d"`.
    #[serde(with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub window: Duration,
    /// How often a reading is due: windows end at every multiple of this
    /// since the Unix epoch (`"1d"`: at 00:00 UTC). `window` must be a whole
    /// number of them.
    #[serde(default = "one_day", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub every: Duration,
    /// How the standard deviation of the returns becomes a yearly figure.
    #[serde(default)]
    pub annualise: Annualise,
    /// Event time: how late a price may be and what happens to later ones.
    /// Readings are emitted when their window closes (`emit: OnClose`).
    #[serde(default)]
    pub time: WindowConfig,
    /// Keep the running windows in a compacted Kafka topic (one for this
    /// stage), so that a restarted worker continues them exactly. Needs the
    /// prices to come from a `KafkaSource`.
    #[serde(default)]
    pub state: Option<StateTopicConfig>,
}

fn one_day() -> Duration {
    Duration::from_secs(86_400)
}

/// How σ of the returns is annualised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub enum Annualise {
    /// σ · √(n returns / the years they span), a year being 365.25 days: for any sampling.
    #[default]
    ElapsedTime,
    /// σ · √k: each return is one of `k` periods a year (252 trading days for daily prices).
    ReturnsPerYear(u32),
}

#[async_trait]
impl StageConfig<FxEvent> for VolatilityConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::VOLATILITY])
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.window.is_zero() {
            problems.push(ConfigProblem::field("window", "must be longer than zero"));
        }
        if self.every.is_zero() || self.every > self.window {
            problems.push(
                ConfigProblem::field("every", "must be longer than zero and at most `window`")
                    .with_hint("every: \"1d\" with window: \"30d\""),
            );
        } else if !WindowShape::fits(self.window, self.every) {
            problems.push(ConfigProblem::field(
                "every",
                "`window` must be a whole number of `every`s (windows are made of them)",
            ));
        } else if nanos(self.window) as u64 / nanos(self.every).max(1) as u64 > MAX_OVERLAP {
            problems.push(ConfigProblem::field(
                "every",
                format!("a price would be in more than {MAX_OVERLAP} windows; make `every` longer"),
            ));
        }
        if self.annualise == Annualise::ReturnsPerYear(0) {
            problems.push(ConfigProblem::field("annualise", "ReturnsPerYear needs at least 1"));
        }
        if self.time.emit != EmitPolicy::OnClose {
            problems.push(
                ConfigProblem::field("time", "readings are emitted only when their window closes")
                    .with_hint("leave `emit` out (OnClose)"),
            );
        }
        problems.extend(self.time.check("time"));
        problems.extend(StateTopicConfig::check_optional(self.state.as_ref(), "state"));
        problems
    }

    crate::transforms::state_topic_methods!();

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let aggregation = VolatilityAggregation {
            window: self.window,
            shape: WindowShape::sliding(self.window, self.every),
            annualise: self.annualise,
        };
        WindowStage::build(aggregation, &self.time, self.state.as_ref(), cx)
    }
}

/// What readings are kept per: one pair from one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PairSource {
    pub pair: Pair,
    pub source: SourceName,
}

impl std::fmt::Display for PairSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.pair, self.source)
    }
}

/// The previous price of a key: time and natural log of the mid.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PreviousPrice(Option<(EventTime, f64)>);

/// Running sums of the returns of a pane or window: merging two is four
/// additions, so a 30-day window of daily panes costs 29 of them. (Log returns
/// are near zero-mean, so `Σr² − (Σr)²/n` loses nothing to cancellation.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Returns {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
    /// Nanoseconds the returns span (the sum of their intervals).
    pub elapsed: i64,
}

impl Returns {
    pub fn push(&mut self, r: f64, interval: i64) {
        self.n += 1;
        self.sum += r;
        self.sum_sq += r * r;
        self.elapsed = self.elapsed.saturating_add(interval);
    }

    /// Fold in the returns that follow.
    pub fn merge(&mut self, later: &Returns) {
        self.n += later.n;
        self.sum += later.sum;
        self.sum_sq += later.sum_sq;
        self.elapsed = self.elapsed.saturating_add(later.elapsed);
    }

    /// The sample standard deviation (n − 1); `None` below two returns.
    pub fn std_dev(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let squares = (self.sum_sq - self.sum * self.sum / n).max(0.0);
        Some((squares / (n - 1.0)).sqrt())
    }
}

/// A log return and the interval it spans.
pub struct LogReturn {
    r: f64,
    interval: i64,
}

/// Volatility as an [`Aggregation`].
pub struct VolatilityAggregation {
    window: Duration,
    shape: WindowShape,
    annualise: Annualise,
}

impl Annualise {
    /// The annualised figure of `returns`' σ.
    pub fn apply(self, returns: &Returns) -> Option<f64> {
        let sigma = returns.std_dev()?;
        let periods = match self {
            Annualise::ReturnsPerYear(k) => f64::from(k),
            Annualise::ElapsedTime if returns.elapsed > 0 => returns.n as f64 * YEAR_NANOS / returns.elapsed as f64,
            Annualise::ElapsedTime => return None,
        };
        Some(sigma * periods.sqrt())
    }
}

impl Aggregation<FxEvent> for VolatilityAggregation {
    type Key = PairSource;
    type KeyState = PreviousPrice;
    type Acc = Returns;
    type Value = LogReturn;

    fn shape(&self, _key: &Self::Key) -> WindowShape {
        self.shape
    }

    fn assign(&self, event: &FxEvent, keys: &mut Vec<Self::Key>) -> Assigned {
        let Some(price) = event.price() else {
            return Assigned::Reject("unexpected_kind", "Volatility takes quotes and cross rates".into());
        };
        keys.push(PairSource {
            pair: price.pair,
            source: price.source,
        });
        Assigned::At(event_time(price.ts))
    }

    fn contribution(
        &self,
        _key: &Self::Key,
        previous: &mut PreviousPrice,
        event: &FxEvent,
        time: EventTime,
    ) -> Contribution<LogReturn> {
        let Some(price) = event.price() else {
            return Contribution::Repeat;
        };
        let Some(ln) = mid(price.bid, price.ask).to_f64().filter(|m| *m > 0.0).map(f64::ln) else {
            return Contribution::Repeat; // not a price a return can be taken of
        };
        match previous.0 {
            Some((at, _)) if time <= at => Contribution::Repeat,
            Some((at, last)) => {
                previous.0 = Some((time, ln));
                Contribution::Value(LogReturn {
                    r: ln - last,
                    interval: time.as_nanos().saturating_sub(at.as_nanos()),
                })
            }
            None => {
                previous.0 = Some((time, ln));
                Contribution::StateOnly
            }
        }
    }

    fn add(&self, returns: &mut Returns, value: &LogReturn, _time: EventTime) {
        returns.push(value.r, value.interval);
    }

    fn merge(&self, returns: &mut Returns, later: &Returns) {
        returns.merge(later);
    }

    fn result(
        &self,
        key: &Self::Key,
        _state: &PreviousPrice,
        window: Window,
        returns: &Returns,
        closed: bool,
    ) -> Option<FxEvent> {
        if !closed {
            return None;
        }
        let volatility = self.annualise.apply(returns)?;
        Some(FxEvent::Volatility(Volatility {
            pair: key.pair,
            source: key.source,
            window: self.window,
            ts: utc(window.end),
            volatility,
            samples: returns.n,
        }))
    }
}

#[cfg(test)]
mod tests {
    use fxflow_engine::window::{Out, WindowSet};
    use rust_decimal::Decimal;

    use super::*;
    use crate::fx::CrossRate;

    const DAY: i64 = 86_400;

    fn cross(day: i64, price: Decimal) -> FxEvent {
        FxEvent::CrossRate(CrossRate {
            pair: "GBP/JPY".parse().unwrap(),
            bid: price,
            ask: price,
            ts: chrono::DateTime::from_timestamp(1_704_067_200 + day * DAY, 0).unwrap(), // 2024-01-01
            source: SourceName::intern("ecb").unwrap(),
            via: crate::fx::Currency::EUR,
        })
    }

    fn readings(aggregation: VolatilityAggregation, events: &[FxEvent]) -> Vec<Volatility> {
        let mut set = WindowSet::new(aggregation, &WindowConfig::default());
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for event in events {
            keys.clear();
            let Assigned::At(time) = set.aggregation().assign(event, &mut keys) else {
                panic!()
            };
            let (input, _) = set.watermarks.observe(None, time);
            for key in &keys {
                set.add(key, event, time, input, None);
            }
            set.advance();
            for o in set.take_out() {
                if let Out::Closed {
                    event: Some(FxEvent::Volatility(v)),
                    ..
                } = o
                {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Business days (Monday to Friday) of a seeded walk, from Monday 2024-01-01.
    fn walk(days: i64) -> Vec<(i64, Decimal)> {
        let mut price = 190.0_f64;
        let mut seed = 7u64;
        (0..days)
            .filter(|d| d % 7 < 5)
            .map(|d| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                price *= 1.0 + ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.02;
                (d, Decimal::from_f64_retain(price).unwrap().round_dp(3))
            })
            .collect()
    }

    /// The reference, straight from the definition: two passes over the returns stamped in
    /// `[end - window, end)`.
    fn reference(prices: &[(i64, Decimal)], end_day: i64, window_days: i64, per_year: Option<f64>) -> (f64, u64) {
        let returns: Vec<(f64, f64)> = prices
            .windows(2)
            .filter(|w| w[1].0 >= end_day - window_days && w[1].0 < end_day)
            .map(|w| {
                let (a, b) = (w[0].1.to_f64().unwrap(), w[1].1.to_f64().unwrap());
                ((b / a).ln(), (w[1].0 - w[0].0) as f64)
            })
            .collect();
        let n = returns.len() as f64;
        let mean = returns.iter().map(|r| r.0).sum::<f64>() / n;
        let var = returns.iter().map(|r| (r.0 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let elapsed_days: f64 = returns.iter().map(|r| r.1).sum();
        let periods = per_year.unwrap_or(n * 365.25 / elapsed_days);
        (var.sqrt() * periods.sqrt(), returns.len() as u64)
    }

    fn aggregation(annualise: Annualise) -> VolatilityAggregation {
        VolatilityAggregation {
            window: Duration::from_secs(30 * DAY as u64),
            shape: WindowShape::sliding(Duration::from_secs(30 * DAY as u64), Duration::from_secs(DAY as u64)),
            annualise,
        }
    }

    #[test]
    fn thirty_day_volatility_matches_the_definition() {
        let prices = walk(120);
        let events: Vec<FxEvent> = prices.iter().map(|(d, p)| cross(*d, *p)).collect();
        for annualise in [Annualise::ReturnsPerYear(252), Annualise::ElapsedTime] {
            let got = readings(aggregation(annualise), &events);
            assert!(
                got.len() > 80,
                "a reading each day once two returns are in: {}",
                got.len()
            );
            for v in &got {
                let end_day = (v.ts.timestamp() - 1_704_067_200) / DAY;
                let per_year = match annualise {
                    Annualise::ReturnsPerYear(k) => Some(f64::from(k)),
                    Annualise::ElapsedTime => None,
                };
                let (expected, n) = reference(&prices, end_day, 30, per_year);
                assert_eq!(v.samples, n, "returns in the window ending on day {end_day}");
                assert!(
                    (v.volatility - expected).abs() <= 1e-9 * expected,
                    "day {end_day}: {} vs {expected}",
                    v.volatility
                );
                assert_eq!(v.window, Duration::from_secs(30 * 86_400));
            }
        }
    }

    #[test]
    fn no_reading_from_fewer_than_two_returns_and_repeats_are_skipped() {
        let p = |d, v: i64| cross(d, Decimal::new(v, 0));
        let got = readings(
            aggregation(Annualise::ReturnsPerYear(252)),
            &[p(0, 100), p(1, 101), p(1, 101), p(40, 102)],
        );
        // Windows ending on days 2..=31 hold one return (day 1): no reading. Day 40's return
        // lands in windows that have not closed yet.
        assert!(got.is_empty(), "{got:?}");
        let got = readings(
            aggregation(Annualise::ReturnsPerYear(252)),
            &[p(0, 100), p(1, 101), p(1, 101), p(2, 100), p(3, 150)],
        );
        assert_eq!(got[0].samples, 2, "the repeated day-1 price gives no second return");
    }

    #[test]
    fn settings_are_checked() {
        let config: VolatilityConfig =
            serde_json::from_value(serde_json::json!({"window": "1d", "every": "2d"})).unwrap();
        assert_eq!(
            config.check()[0].message,
            "must be longer than zero and at most `window`"
        );
        let config: VolatilityConfig =
            serde_json::from_value(serde_json::json!({"window": "30d", "every": "1m"})).unwrap();
        assert!(config.check()[0].message.contains("more than 1000 windows"));
    }
}
