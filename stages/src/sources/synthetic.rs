//! `Synthetic`: a seeded geometric random walk, for demos, load tests and benchmarks.
//!
//! Each step multiplies every mid by `1 + σ·z` with `z` ≈ N(0, 1) drawn from a
//! seeded generator; prices stay exact decimals (the shock is an integer
//! scaled into a decimal, never a float) and are rounded to one digit past the
//! pair's display precision. Bid and ask sit `spread_pips / 2` either side of
//! the mid. The same seed and start time give the same snapshots.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, Kinds, Shape, Source, SourceContext, Stage, StageConfig,
    StageError,
};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::fx::source::TooManySources;
use crate::fx::{kind, Currency, FxEvent, Pair, Quote, QuoteSnapshot, SourceName};

/// Generates quote snapshots by a seeded geometric random walk around start rates.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// The common currency of every snapshot.
    #[serde(default = "default_base")]
    pub base: Currency,
    /// Start mid per pair; each pair must involve `base`. Default: the majors against USD.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub start: Option<BTreeMap<Pair, Decimal>>,
    /// Standard deviation of one step, in basis points of the price.
    #[serde(default = "default_volatility")]
    #[schemars(schema_with = "crate::fx::decimal_schema")]
    pub volatility_bp: Decimal,
    /// Bid/ask spread in pips.
    #[serde(default = "default_spread")]
    #[schemars(schema_with = "crate::fx::decimal_schema")]
    pub spread_pips: Decimal,
    /// Snapshots per second; 0 means as fast as the pipeline takes them.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Stop after this many snapshots (default: run until shutdown).
    #[serde(default)]
    pub count: Option<u64>,
    /// Seed of the random walk.
    #[serde(default)]
    pub seed: u64,
    /// Timestamp of the first snapshot (RFC 3339); later ones follow at 1/rate
    /// (1 ms when `rate` is 0). Default: the wall clock at start.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub start_time: Option<DateTime<Utc>>,
    /// The `source` name stamped on quotes.
    #[serde(default = "default_source")]
    pub source: String,
}

fn default_base() -> Currency {
    Currency::USD
}
fn default_volatility() -> Decimal {
    Decimal::new(5, 0)
}
fn default_spread() -> Decimal {
    Decimal::new(8, 1)
}
fn default_rate() -> u32 {
    10
}
fn default_source() -> String {
    "synthetic".into()
}

/// Start mids of the majors against USD (late-2026 levels).
pub fn default_start() -> BTreeMap<Pair, Decimal> {
    [
        ("EUR/USD", "1.1172"),
        ("GBP/USD", "1.3399"),
        ("AUD/USD", "0.7025"),
        ("NZD/USD", "0.5636"),
        ("USD/CAD", "1.3969"),
        ("USD/CHF", "0.8230"),
        ("USD/JPY", "157.25"),
    ]
    .into_iter()
    .map(|(p, r)| (p.parse().expect("valid pair"), r.parse().expect("valid rate")))
    .collect()
}

#[async_trait]
impl StageConfig<FxEvent> for SyntheticConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE_SNAPSHOT])
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(start) = &self.start {
            for (pair, rate) in start {
                if !pair.involves(self.base) {
                    problems.push(
                        ConfigProblem::field("start", format!("{pair} does not involve the base {}", self.base))
                            .with_hint("every start pair must have the base currency on one side"),
                    );
                }
                if *rate <= Decimal::ZERO {
                    problems.push(ConfigProblem::field(
                        "start",
                        format!("{pair}: start rate {rate} must be positive"),
                    ));
                }
            }
            if start.is_empty() {
                problems.push(ConfigProblem::field("start", "needs at least one pair"));
            }
        } else if self.base != Currency::USD {
            problems.push(
                ConfigProblem::field("base", "the default start rates are against USD")
                    .with_hint("give `start` rates for your base"),
            );
        }
        if self.volatility_bp < Decimal::ZERO || self.volatility_bp > Decimal::new(1000, 0) {
            problems.push(ConfigProblem::field(
                "volatility_bp",
                "must be between 0 and 1000 basis points",
            ));
        }
        if self.spread_pips < Decimal::ZERO {
            problems.push(ConfigProblem::field("spread_pips", "must not be negative"));
        }
        problems
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let walk = RandomWalk::new(self).map_err(StageError::new)?;
        Ok(Stage::Source(Box::new(Synthetic {
            walk,
            rate: self.rate,
            count: self.count,
        })))
    }
}

/// SplitMix64: tiny, fast, and the same sequence on every platform for a seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An integer ≈ N(0, 1)·65536 (Irwin–Hall: the sum of 12 uniforms minus 6).
    fn normal_scaled(&mut self) -> i64 {
        let mut sum: i64 = 0;
        for _ in 0..3 {
            let r = self.next();
            // Four 16-bit uniforms per draw.
            for shift in [0, 16, 32, 48] {
                sum += ((r >> shift) & 0xFFFF) as i64;
            }
        }
        sum - 6 * 65_536 + 6
    }
}

/// The walk's state: one mid per pair.
pub struct RandomWalk {
    rng: SplitMix64,
    base: Currency,
    mids: Vec<(Pair, Decimal)>,
    /// σ in basis points / (10_000 · 65_536): multiply by the scaled normal.
    step_scale: Decimal,
    spread_pips: Decimal,
    source: SourceName,
    ts: DateTime<Utc>,
    step: chrono::Duration,
}

impl RandomWalk {
    pub fn new(config: &SyntheticConfig) -> Result<Self, TooManySources> {
        let start = config.start.clone().unwrap_or_else(default_start);
        let step = if config.rate == 0 {
            chrono::Duration::milliseconds(1)
        } else {
            chrono::Duration::nanoseconds(1_000_000_000 / config.rate as i64)
        };
        Ok(RandomWalk {
            rng: SplitMix64(config.seed),
            base: config.base,
            mids: start.into_iter().collect(),
            step_scale: config.volatility_bp / Decimal::new(655_360_000, 0),
            spread_pips: config.spread_pips,
            source: SourceName::intern(&config.source)?,
            ts: config.start_time.unwrap_or_else(Utc::now),
            step,
        })
    }

    /// The next snapshot.
    pub fn step(&mut self) -> QuoteSnapshot {
        let ts = self.ts;
        self.ts += self.step;
        let half = Decimal::new(5, 1);
        let quotes = self
            .mids
            .iter_mut()
            .map(|(pair, mid)| {
                let z = Decimal::from(self.rng.normal_scaled());
                let next = (*mid * (Decimal::ONE + z * self.step_scale)).round_dp(pair.display_decimals() + 1);
                // A walk never reaches zero: clamp to one pip.
                *mid = next.max(pair.pip());
                let half_spread = self.spread_pips * pair.pip() * half;
                Quote {
                    pair: *pair,
                    bid: *mid - half_spread,
                    ask: *mid + half_spread,
                    ts,
                    source: self.source,
                    enrichment: None,
                }
            })
            .collect();
        QuoteSnapshot {
            source: self.source,
            ts,
            base: self.base,
            quotes,
        }
    }
}

struct Synthetic {
    walk: RandomWalk,
    rate: u32,
    count: Option<u64>,
}

/// Snapshots per batch when running unthrottled.
const BATCH: u64 = 256;

#[async_trait]
impl Source<FxEvent> for Synthetic {
    async fn run(mut self: Box<Self>, mut cx: SourceContext<FxEvent>) -> Result<(), StageError> {
        let mut sent: u64 = 0;
        let remaining = |sent: u64| self.count.map_or(u64::MAX, |c| c.saturating_sub(sent));
        if self.rate == 0 {
            while !cx.shutdown.is_triggered() && remaining(sent) > 0 {
                let n = remaining(sent).min(BATCH);
                let batch = (0..n)
                    .map(|_| Envelope::unacked(FxEvent::QuoteSnapshot(self.walk.step())))
                    .collect();
                cx.outputs.send(batch).await?;
                sent += n;
            }
            return Ok(());
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1) / self.rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while remaining(sent) > 0 {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cx.shutdown.wait() => break,
            }
            cx.outputs
                .send(vec![Envelope::unacked(FxEvent::QuoteSnapshot(self.walk.step()))])
                .await?;
            sent += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> SyntheticConfig {
        SyntheticConfig {
            base: Currency::USD,
            start: None,
            volatility_bp: Decimal::new(5, 0),
            spread_pips: Decimal::new(8, 1),
            rate: 0,
            count: None,
            seed,
            start_time: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            source: "synthetic".into(),
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let mut a = RandomWalk::new(&config(7)).unwrap();
        let mut b = RandomWalk::new(&config(7)).unwrap();
        let mut c = RandomWalk::new(&config(8)).unwrap();
        let (sa, sb, sc): (Vec<_>, Vec<_>, Vec<_>) = (
            (0..50).map(|_| a.step()).collect(),
            (0..50).map(|_| b.step()).collect(),
            (0..50).map(|_| c.step()).collect(),
        );
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
        assert_eq!(sa[1].ts - sa[0].ts, chrono::Duration::milliseconds(1));
    }

    #[test]
    fn walks_with_the_configured_spread_and_volatility() {
        let mut walk = RandomWalk::new(&config(1)).unwrap();
        let first = walk.step();
        assert_eq!(first.quotes.len(), 7);
        for q in &first.quotes {
            assert!(q.pair.involves(Currency::USD));
            assert_eq!((q.ask - q.bid) / q.pair.pip(), Decimal::new(8, 1), "{}", q.pair);
        }
        // 10,000 steps of 5 bp: the walk moves, but stays within a sane band.
        let mut last = first;
        for _ in 0..10_000 {
            last = walk.step();
        }
        let eurusd = last.quotes.iter().find(|q| q.pair.to_string() == "EUR/USD").unwrap();
        assert_ne!(eurusd.mid(), "1.1172".parse().unwrap());
        assert!(
            eurusd.mid() > Decimal::new(5, 1) && eurusd.mid() < Decimal::new(2, 0),
            "{}",
            eurusd.mid()
        );
    }

    #[test]
    fn normal_draws_have_the_right_spread() {
        let mut rng = SplitMix64(3);
        let n = 20_000i64;
        let draws: Vec<i64> = (0..n).map(|_| rng.normal_scaled()).collect();
        let mean = draws.iter().sum::<i64>() / n;
        let var = draws.iter().map(|d| (d - mean) * (d - mean) / n).sum::<i64>();
        let unit = 65_536i64 * 65_536;
        assert!(mean.abs() < 2_000, "mean {mean}");
        assert!(
            var * 100 > unit * 90 && var * 100 < unit * 110,
            "variance {var} vs {unit}"
        );
    }
}
