//! `CrossRate`: every cross of a snapshot's currencies, N·(N−1)/2 of them.
//!
//! A snapshot quotes N−1 currencies against its base C. Pairs that involve C
//! are the quotes themselves (oriented by convention); every other pair X/Y
//! is triangulated through C with the bid/ask rules in [`crate::fx::cross`].
//! The stage is stateless per snapshot, so any number of workers can run it.
//! Above `parallel_above` currencies the rows are computed on rayon's pool:
//! 8 currencies (28 crosses) take well under a microsecond's worth of work per
//! cross and are faster on one thread; see BENCHMARKS.md for where the switch pays.

use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Emit, FunctionTransform, Kinds, Shape, Stage, StageConfig, StageError,
};
use rayon::prelude::*;
use serde::Deserialize;

use crate::fx::cross::{triangulate, CrossError, Leg, Side};
use crate::fx::quote::invert;
use crate::fx::{kind, CrossRate, Currency, FxEvent, Pair, QuoteSnapshot};

/// Computes every cross rate among a snapshot's currencies (8 currencies → 28
/// crosses) by triangulation through the snapshot's base currency.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossRateConfig {
    /// Only these currencies (default: every currency in the snapshot).
    #[serde(default)]
    pub currencies: Option<Vec<Currency>>,
    /// Compute in parallel (rayon) when a snapshot has more currencies than this.
    #[serde(default = "default_parallel_above")]
    pub parallel_above: usize,
}

fn default_parallel_above() -> usize {
    DEFAULT_PARALLEL_ABOVE
}

/// Measured on 2 cores (BENCHMARKS.md): sequential wins up to about this many currencies (at 32 the two are even, at 40 rayon saves ~20%).
pub const DEFAULT_PARALLEL_ABOVE: usize = 32;

#[async_trait]
impl StageConfig<FxEvent> for CrossRateConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE_SNAPSHOT])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::CROSS_RATE])
    }

    fn check(&self) -> Vec<ConfigProblem> {
        match &self.currencies {
            Some(c) if c.len() < 2 => vec![ConfigProblem::field(
                "currencies",
                "cross rates need at least two currencies",
            )],
            _ => Vec::new(),
        }
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Function(Box::new(CrossRates::new(
            self.currencies.clone(),
            self.parallel_above,
        ))))
    }
}

pub struct CrossRates {
    only: Option<Vec<Currency>>,
    parallel_above: usize,
}

/// A quote, or a cross, that could not be produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub pair: Pair,
    /// The offending quote's index in the snapshot, when one quote is to blame.
    pub quote: Option<usize>,
    pub reason: &'static str,
    pub error: String,
}

impl CrossRates {
    pub fn new(only: Option<Vec<Currency>>, parallel_above: usize) -> Self {
        CrossRates { only, parallel_above }
    }

    /// All crosses of a snapshot, in market-convention order of their currencies.
    pub fn compute(&self, snapshot: &QuoteSnapshot) -> (Vec<CrossRate>, Vec<Skipped>) {
        let base = snapshot.base;
        let mut skipped = Vec::new();
        // Each wanted currency with its side against the base (None for the base itself).
        let mut currencies: Vec<(Currency, Option<Side>)> = Vec::with_capacity(snapshot.quotes.len() + 1);
        if self.wanted(base) {
            currencies.push((base, None));
        }
        for (index, quote) in snapshot.quotes.iter().enumerate() {
            let Some(other) = quote.pair.other(base) else {
                let error = format!("{} does not involve the snapshot base {base}", quote.pair);
                skipped.push(Skipped {
                    pair: quote.pair,
                    quote: Some(index),
                    reason: "not_in_base",
                    error,
                });
                continue;
            };
            if !self.wanted(other) {
                continue;
            }
            if currencies.iter().any(|(c, _)| *c == other) {
                let error = format!("{other} is quoted twice in one snapshot");
                skipped.push(Skipped {
                    pair: quote.pair,
                    quote: Some(index),
                    reason: "repeated_currency",
                    error,
                });
                continue;
            }
            let leg = Leg {
                pair: quote.pair,
                bid: quote.bid,
                ask: quote.ask,
            };
            currencies.push((other, Some(Side::of(other, &leg))));
        }
        // Sorted by convention, every pair (i < j) is `currencies[i] / currencies[j]`.
        // Insertion sort: a snapshot has a handful of currencies, usually already in order.
        for i in 1..currencies.len() {
            let mut j = i;
            while j > 0 && currencies[j - 1].0.convention_rank() > currencies[j].0.convention_rank() {
                currencies.swap(j - 1, j);
                j -= 1;
            }
        }
        let n = currencies.len();
        let mut crosses = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        if n > self.parallel_above {
            let rows: Vec<(Vec<CrossRate>, Vec<Skipped>)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let mut row = (Vec::with_capacity(n - i), Vec::new());
                    for j in i + 1..n {
                        self.push_one(snapshot, &currencies[i], &currencies[j], &mut row.0, &mut row.1);
                    }
                    row
                })
                .collect();
            for (row, errors) in rows {
                crosses.extend(row);
                skipped.extend(errors);
            }
        } else {
            for i in 0..n {
                for j in i + 1..n {
                    self.push_one(snapshot, &currencies[i], &currencies[j], &mut crosses, &mut skipped);
                }
            }
        }
        (crosses, skipped)
    }

    fn wanted(&self, currency: Currency) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&currency))
    }

    /// The cross `x/y` (already in convention order).
    fn push_one(
        &self,
        snapshot: &QuoteSnapshot,
        x: &(Currency, Option<Side>),
        y: &(Currency, Option<Side>),
        crosses: &mut Vec<CrossRate>,
        skipped: &mut Vec<Skipped>,
    ) {
        let pair = Pair { base: x.0, quote: y.0 };
        // A pair with the base currency C is its own quote, inverted when quoted the other way round.
        let direct = |side: &Side, as_quoted: bool| {
            if as_quoted {
                Ok((side.bid, side.ask))
            } else {
                invert(side.bid, side.ask).ok_or(CrossError::Zero)
            }
        };
        let result = match (&x.1, &y.1) {
            (None, Some(side)) => direct(side, !side.quoted_first),
            (Some(side), None) => direct(side, side.quoted_first),
            (Some(sx), Some(sy)) => triangulate(sx, sy),
            (None, None) => unreachable!("only the base has no side"),
        };
        match result {
            Ok((bid, ask)) => crosses.push(CrossRate {
                pair,
                bid,
                ask,
                ts: snapshot.ts,
                source: snapshot.source,
                via: snapshot.base,
            }),
            Err(e) => skipped.push(Skipped {
                pair,
                quote: None,
                reason: "cross_failed",
                error: e.to_string(),
            }),
        }
    }
}

impl FunctionTransform<FxEvent> for CrossRates {
    fn transform(&mut self, event: FxEvent, emit: &mut Emit<FxEvent>) {
        let FxEvent::QuoteSnapshot(snapshot) = event else {
            emit.reject(event, "unexpected_kind", "CrossRate takes quote snapshots");
            return;
        };
        let (crosses, skipped) = self.compute(&snapshot);
        for c in crosses {
            emit.push(FxEvent::CrossRate(c));
        }
        // A quote to blame goes to the error output itself; crosses that failed
        // for other reasons (overflow, a zero leg) send the snapshot once, with every error.
        let mut failed_crosses = Vec::new();
        for s in skipped {
            match s.quote.and_then(|i| snapshot.quotes.get(i)) {
                Some(quote) => emit.reject(FxEvent::Quote(quote.clone()), s.reason, s.error),
                None => failed_crosses.push(format!("{}: {}", s.pair, s.error)),
            }
        }
        if !failed_crosses.is_empty() {
            emit.reject(
                FxEvent::QuoteSnapshot(snapshot),
                "cross_failed",
                failed_crosses.join("; "),
            );
        }
    }
}

#[cfg(test)]
mod tests {

    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::{Quote, SourceName};

    fn snapshot(base: &str, quotes: &[(&str, Decimal, Decimal)]) -> QuoteSnapshot {
        let ts = "2026-10-30T00:00:00Z".parse().unwrap();
        let source = SourceName::intern("test").unwrap();
        QuoteSnapshot {
            source,
            ts,
            base: base.parse().unwrap(),
            quotes: quotes
                .iter()
                .map(|(p, bid, ask)| Quote {
                    pair: p.parse().unwrap(),
                    bid: *bid,
                    ask: *ask,
                    ts,
                    source,
                    enrichment: None,
                })
                .collect(),
        }
    }

    fn find<'a>(crosses: &'a [CrossRate], pair: &str) -> &'a CrossRate {
        crosses
            .iter()
            .find(|c| c.pair.to_string() == pair)
            .unwrap_or_else(|| panic!("{pair} missing"))
    }

    #[test]
    fn ecb_day_2026_10_30() {
        // The ECB's rates of 2026-10-30 (EUR base, mid only).
        let s = snapshot(
            "EUR",
            &[
                ("EUR/USD", dec!(1.1172), dec!(1.1172)),
                ("EUR/JPY", dec!(175.68), dec!(175.68)),
                ("EUR/GBP", dec!(0.8338), dec!(0.8338)),
                ("EUR/CHF", dec!(0.9194), dec!(0.9194)),
                ("EUR/AUD", dec!(1.5904), dec!(1.5904)),
                ("EUR/CAD", dec!(1.5606), dec!(1.5606)),
                ("EUR/NZD", dec!(1.9823), dec!(1.9823)),
            ],
        );
        let (crosses, skipped) = CrossRates::new(None, 32).compute(&s);
        assert!(skipped.is_empty());
        assert_eq!(crosses.len(), 28);
        let gbpjpy = find(&crosses, "GBP/JPY");
        assert_eq!(gbpjpy.bid.round_dp(6), dec!(210.698009));
        assert_eq!(gbpjpy.bid, dec!(175.68) / dec!(0.8338));
        assert_eq!(gbpjpy.bid, gbpjpy.ask);
        let chfjpy = find(&crosses, "CHF/JPY");
        assert_eq!(chfjpy.bid.round_dp(6), dec!(191.081140));
        assert_eq!(chfjpy.bid, dec!(175.68) / dec!(0.9194));
        assert_eq!(find(&crosses, "EUR/USD").bid, dec!(1.1172));
        assert_eq!(
            find(&crosses, "GBP/USD")
                .pair
                .format_price(find(&crosses, "GBP/USD").bid),
            "1.33989"
        );
        // Every pair is in market convention, each exactly once.
        let mut pairs: Vec<_> = crosses.iter().map(|c| c.pair).collect();
        assert!(pairs.iter().all(|p| p.is_market_convention()));
        pairs.dedup();
        assert_eq!(pairs.len(), 28);
    }

    #[test]
    fn usd_based_two_sided_snapshot() {
        let s = snapshot(
            "USD",
            &[
                ("USD/JPY", dec!(119.25), dec!(119.65)),
                ("USD/CAD", dec!(1.0485), dec!(1.0535)),
                ("EUR/USD", dec!(1.1000), dec!(1.1002)),
            ],
        );
        let (crosses, _) = CrossRates::new(None, 32).compute(&s);
        assert_eq!(crosses.len(), 6);
        let cadjpy = find(&crosses, "CAD/JPY");
        assert_eq!(
            (cadjpy.bid, cadjpy.ask),
            (dec!(119.25) / dec!(1.0535), dec!(119.65) / dec!(1.0485))
        );
        let eurcad = find(&crosses, "EUR/CAD");
        assert_eq!(
            (eurcad.bid, eurcad.ask),
            (dec!(1.1000) * dec!(1.0485), dec!(1.1002) * dec!(1.0535))
        );
        assert!(crosses.iter().all(|c| c.bid <= c.ask), "no cross comes out crossed");
    }

    #[test]
    fn n_currencies_give_n_choose_2_and_parallel_matches_sequential() {
        let codes = [
            "EUR", "GBP", "AUD", "NZD", "CAD", "CHF", "JPY", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "TRY", "ZAR",
            "MXN", "SGD", "HKD", "CNY", "INR", "KRW", "BRL", "ILS", "THB", "MYR", "IDR", "PHP", "ISK", "RON", "BGN",
            "CLP", "COP", "PEN", "SAR", "AED", "QAR", "KWD", "EGP", "NGN",
        ];
        let quotes: Vec<_> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pair = Pair::market("USD".parse().unwrap(), c.parse().unwrap()).to_string();
                let mid = Decimal::new(1000 + 37 * i as i64, 3);
                (pair, mid, mid + dec!(0.0002))
            })
            .collect();
        let refs: Vec<(&str, Decimal, Decimal)> = quotes.iter().map(|(p, b, a)| (p.as_str(), *b, *a)).collect();
        for n in [2usize, 8, 9, 40] {
            let s = snapshot("USD", &refs[..n - 1]);
            let (seq, _) = CrossRates::new(None, usize::MAX).compute(&s);
            let (par, _) = CrossRates::new(None, 0).compute(&s);
            assert_eq!(seq.len(), n * (n - 1) / 2, "{n} currencies");
            assert_eq!(seq, par);
        }
    }

    #[test]
    fn a_repeated_currency_rejects_the_repeat() {
        let s = snapshot(
            "USD",
            &[("USD/JPY", dec!(150), dec!(150)), ("USD/JPY", dec!(151), dec!(151))],
        );
        let mut stage = CrossRates::new(None, 32);
        let out = fxflow_engine::testkit::run_transform(&mut stage, [FxEvent::QuoteSnapshot(s)]);
        let FxEvent::CrossRate(usdjpy) = &out.events[0] else {
            panic!()
        };
        assert_eq!(usdjpy.bid, dec!(150), "the first quote is used");
        assert_eq!(out.rejected.len(), 1);
        let (reason, _, Some(FxEvent::Quote(q))) = &out.rejected[0] else {
            panic!("a quote")
        };
        assert_eq!(
            (*reason, q.bid),
            ("repeated_currency", dec!(151)),
            "the repeat is the one rejected"
        );
    }

    #[test]
    fn quotes_off_base_are_rejected_not_dropped() {
        let s = snapshot(
            "USD",
            &[("USD/JPY", dec!(150), dec!(150)), ("EUR/GBP", dec!(0.85), dec!(0.85))],
        );
        let mut stage = CrossRates::new(None, 32);
        let out = fxflow_engine::testkit::run_transform(&mut stage, [FxEvent::QuoteSnapshot(s)]);
        assert_eq!(out.events.len(), 1, "USD/JPY");
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].0, "not_in_base");
    }
}
