//! `Enrich`: validate quotes, orient them by market convention, and add change and spread.
//!
//! A quote is rejected — to the error output, with the reason — when a side is
//! not positive, when bid > ask, when it is older than the snapshot by more
//! than `max_age`, when it repeats the last accepted timestamp of its pair and
//! source (`duplicate`), or when it is older than that (`out_of_order`). Time is
//! the data's own (quote and snapshot timestamps), so a replay of 1999 is
//! judged exactly like live data.

use fxflow_engine::fast_hash::FastMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fxflow_engine::{async_trait, BuildContext, Emit, FunctionTransform, Kinds, Shape, Stage, StageConfig, StageError};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::fx::{kind, Enrichment, FxEvent, Pair, Quote, QuoteSnapshot, SourceName};

/// Validates quotes (positive, bid ≤ ask, fresh, not repeated), orients them by
/// market convention and attaches the change against the previous quote and
/// the spread in pips. Rejected quotes go to the error output.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Reject a quote older than its snapshot by more than this (e.g. `"5m"`).
    /// Unset: no staleness check.
    #[serde(default, with = "fxflow_engine::duration::option")]
    #[schemars(schema_with = "fxflow_engine::duration::option_schema")]
    pub max_age: Option<Duration>,
}

#[async_trait]
impl StageConfig<FxEvent> for EnrichConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::QUOTE_SNAPSHOT])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::QUOTE_SNAPSHOT])
    }

    /// Quotes in, quotes out; snapshots in, snapshots out.
    fn emits_given(&self, inputs: &Kinds) -> Kinds {
        self.emits().intersection(inputs)
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Function(Box::new(Enrich::new(self.max_age))))
    }
}

/// Why a quote was rejected (also the `error_type` metric label).
pub mod reason {
    pub const NON_POSITIVE: &str = "non_positive";
    pub const CROSSED: &str = "bid_above_ask";
    pub const STALE: &str = "stale";
    pub const DUPLICATE: &str = "duplicate";
    pub const OUT_OF_ORDER: &str = "out_of_order";
    pub const EMPTY_SNAPSHOT: &str = "empty_snapshot";
}

/// A rejected quote, the reason (metric label) and the message.
type Rejection = (Quote, &'static str, String);

pub struct Enrich {
    max_age: Option<chrono::Duration>,
    /// Last accepted (timestamp, mid) per (pair, source).
    last: FastMap<(Pair, SourceName), (DateTime<Utc>, Decimal)>,
}

impl Enrich {
    pub fn new(max_age: Option<Duration>) -> Self {
        Enrich {
            max_age: max_age.map(|d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)),
            last: FastMap::default(),
        }
    }

    /// Check and enrich one quote against `now` (its snapshot's time).
    fn check(&mut self, quote: Quote, now: DateTime<Utc>) -> Result<Quote, Box<Rejection>> {
        if quote.bid <= Decimal::ZERO || quote.ask <= Decimal::ZERO {
            let msg = format!(
                "{}: bid {} / ask {} must both be positive",
                quote.pair, quote.bid, quote.ask
            );
            return Err(Box::new((quote, reason::NON_POSITIVE, msg)));
        }
        if quote.bid > quote.ask {
            let msg = format!("{}: bid {} is above ask {}", quote.pair, quote.bid, quote.ask);
            return Err(Box::new((quote, reason::CROSSED, msg)));
        }
        if let Some(max_age) = self.max_age {
            if quote.ts + max_age < now {
                let msg = format!(
                    "{}: quote from {} is older than {} at {now}",
                    quote.pair,
                    quote.ts,
                    fxflow_engine::duration::format(&max_age.to_std().unwrap_or_default())
                );
                return Err(Box::new((quote, reason::STALE, msg)));
            }
        }
        let mut quote = if quote.pair.is_market_convention() {
            quote
        } else {
            // Positive sides checked above, so the inverse exists.
            match quote.inverse() {
                Some(inverse) => inverse,
                None => {
                    return Err(Box::new((
                        quote,
                        reason::NON_POSITIVE,
                        "cannot invert a zero price".into(),
                    )))
                }
            }
        };
        let mid = quote.mid();
        let key = (quote.pair, quote.source);
        let change = match self.last.get(&key) {
            Some((ts, _)) if *ts == quote.ts => {
                let msg = format!(
                    "{}: a quote for {} from {} was already accepted",
                    quote.pair, quote.ts, quote.source
                );
                return Err(Box::new((quote, reason::DUPLICATE, msg)));
            }
            Some((ts, _)) if *ts > quote.ts => {
                let msg = format!("{}: quote from {} arrived after one from {ts}", quote.pair, quote.ts);
                return Err(Box::new((quote, reason::OUT_OF_ORDER, msg)));
            }
            Some((_, previous)) => Some(mid - previous),
            None => None,
        };
        self.last.insert(key, (quote.ts, mid));
        let spread_pips = (quote.ask - quote.bid) / quote.pair.pip();
        quote.enrichment = Some(Enrichment { change, spread_pips });
        Ok(quote)
    }

    fn snapshot(&mut self, snapshot: QuoteSnapshot, emit: &mut Emit<FxEvent>) {
        if snapshot.quotes.is_empty() {
            emit.reject(
                FxEvent::QuoteSnapshot(snapshot),
                reason::EMPTY_SNAPSHOT,
                "the snapshot holds no quotes",
            );
            return;
        }
        let QuoteSnapshot {
            source,
            ts,
            base,
            quotes,
        } = snapshot;
        let mut valid = Vec::with_capacity(quotes.len());
        for quote in quotes {
            match self.check(quote, ts) {
                Ok(quote) => valid.push(quote),
                Err(rejected) => {
                    let (quote, why, msg) = *rejected;
                    emit.reject(FxEvent::Quote(quote), why, msg)
                }
            }
        }
        if !valid.is_empty() {
            emit.push(FxEvent::QuoteSnapshot(QuoteSnapshot {
                source,
                ts,
                base,
                quotes: valid,
            }));
        }
    }
}

impl FunctionTransform<FxEvent> for Enrich {
    fn transform(&mut self, event: FxEvent, emit: &mut Emit<FxEvent>) {
        match event {
            FxEvent::QuoteSnapshot(snapshot) => self.snapshot(snapshot, emit),
            FxEvent::Quote(quote) => {
                let now = quote.ts;
                match self.check(quote, now) {
                    Ok(quote) => emit.push(FxEvent::Quote(quote)),
                    Err(rejected) => {
                        let (quote, why, msg) = *rejected;
                        emit.reject(FxEvent::Quote(quote), why, msg)
                    }
                }
            }
            other => emit.reject(other, "unexpected_kind", "Enrich takes quotes and snapshots"),
        }
    }
}

#[cfg(test)]
mod tests {
    use fxflow_engine::testkit::run_transform;
    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::Currency;

    fn quote(pair: &str, bid: Decimal, ask: Decimal, ts: &str) -> Quote {
        Quote {
            pair: pair.parse().unwrap(),
            bid,
            ask,
            ts: ts.parse().unwrap(),
            source: SourceName::intern("test").unwrap(),
            enrichment: None,
        }
    }

    fn snapshot(ts: &str, quotes: Vec<Quote>) -> FxEvent {
        FxEvent::QuoteSnapshot(QuoteSnapshot {
            source: SourceName::intern("test").unwrap(),
            ts: ts.parse().unwrap(),
            base: Currency::USD,
            quotes,
        })
    }

    #[test]
    fn rejects_bad_quotes_with_reasons_and_keeps_the_good() {
        let t0 = "2026-01-01T00:00:00Z";
        let mut stage = Enrich::new(Some(Duration::from_secs(60)));
        let out = run_transform(
            &mut stage,
            [snapshot(
                t0,
                vec![
                    quote("EUR/USD", dec!(1.1000), dec!(1.1002), t0),
                    quote("USD/JPY", dec!(150.10), dec!(150.00), t0),
                    quote("USD/CAD", dec!(0), dec!(1.3), t0),
                    quote("USD/CHF", dec!(0.8), dec!(0.8), "2025-12-31T23:58:00Z"),
                ],
            )],
        );
        let reasons: Vec<_> = out.rejected.iter().map(|(r, _, _)| *r).collect();
        assert_eq!(reasons, vec![reason::CROSSED, reason::NON_POSITIVE, reason::STALE]);
        let FxEvent::QuoteSnapshot(s) = &out.events[0] else {
            panic!()
        };
        assert_eq!(s.quotes.len(), 1);
        let e = s.quotes[0].enrichment.as_ref().unwrap();
        assert_eq!(e.change, None, "first quote has no previous");
        assert_eq!(e.spread_pips, dec!(2));
    }

    #[test]
    fn orients_computes_change_and_catches_repeats() {
        let mut stage = Enrich::new(None);
        let out = run_transform(
            &mut stage,
            [
                FxEvent::Quote(quote("JPY/USD", dec!(0.0066), dec!(0.0066), "2026-01-01T00:00:00Z")),
                FxEvent::Quote(quote("USD/JPY", dec!(152.00), dec!(152.02), "2026-01-01T00:00:01Z")),
                FxEvent::Quote(quote("USD/JPY", dec!(152.00), dec!(152.02), "2026-01-01T00:00:01Z")),
                FxEvent::Quote(quote("USD/JPY", dec!(151.00), dec!(151.02), "2026-01-01T00:00:00.500Z")),
            ],
        );
        let FxEvent::Quote(first) = &out.events[0] else {
            panic!()
        };
        assert_eq!(first.pair.to_string(), "USD/JPY", "inverted to market convention");
        assert_eq!(first.bid, Decimal::ONE / dec!(0.0066));
        let FxEvent::Quote(second) = &out.events[1] else {
            panic!()
        };
        let change = second.enrichment.as_ref().unwrap().change.unwrap();
        assert_eq!(change, dec!(152.01) - Decimal::ONE / dec!(0.0066));
        assert_eq!(
            second.enrichment.as_ref().unwrap().spread_pips,
            dec!(2),
            "JPY pip is 0.01"
        );
        let reasons: Vec<_> = out.rejected.iter().map(|(r, _, _)| *r).collect();
        assert_eq!(reasons, vec![reason::DUPLICATE, reason::OUT_OF_ORDER]);
    }
}
