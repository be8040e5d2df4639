//! `SpreadGuard`: reject quotes and cross rates whose bid/ask spread is too wide.
//!
//! A wide spread usually means a thin or broken market, or a cross built from
//! legs that were themselves wide (a triangulated cross carries the spreads
//! of both legs). The guard measures each price's spread in pips,
//! `(ask - bid) / pair.pip()` — exact decimals, no floats — and sends prices
//! wider than `max_pips` to its `errors` output (reason `wide_spread`), where a
//! dead-letter sink can keep them. A price with bid above ask is rejected too
//! (reason `bid_above_ask`). Everything else passes through unchanged.
//!
//! Written only against the public APIs of `fxflow-engine` and `fxflow-stages`.

use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Emit, FunctionTransform, Kinds, Shape, Stage, StageConfig, StageError,
};
use fxflow_stages::fx::{kind, FxEvent, Pair};
use rust_decimal::Decimal;
use serde::Deserialize;

/// Passes quotes and cross rates whose bid/ask spread is at most `max_pips`
/// and sends wider ones (and any with bid above ask) to the `errors` output.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpreadGuardConfig {
    /// The widest spread let through, in pips of each pair (0.01 for JPY
    /// pairs, 0.0001 for the others); read exactly, e.g. `2.5`. Must be positive.
    #[schemars(schema_with = "decimal_schema")]
    pub max_pips: Decimal,
}

/// Decimals are written as RON numbers (`2.5`) and parsed from their text, never through a float.
fn decimal_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["number", "string"], "format": "decimal" })
}

/// Why a price was rejected (also the `error_type` label of `fxflow_stage_errors_total`).
pub mod reason {
    pub const WIDE_SPREAD: &str = "wide_spread";
    pub const CROSSED: &str = "bid_above_ask";
    pub const UNEXPECTED_KIND: &str = "unexpected_kind";
}

#[async_trait]
impl StageConfig<FxEvent> for SpreadGuardConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE])
    }

    /// A filter: what comes in is what goes out.
    fn emits_given(&self, inputs: &Kinds) -> Kinds {
        self.emits().intersection(inputs)
    }

    fn check(&self) -> Vec<ConfigProblem> {
        if self.max_pips <= Decimal::ZERO {
            vec![
                ConfigProblem::field("max_pips", format!("must be positive, not {}", self.max_pips))
                    .with_hint("a spread is never negative; e.g. `max_pips: 2.5`"),
            ]
        } else {
            Vec::new()
        }
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Function(Box::new(SpreadGuard::new(self.max_pips))))
    }
}

/// The spread of a two-sided price in pips of its pair: `(ask - bid) / pip`.
pub fn spread_pips(pair: Pair, bid: Decimal, ask: Decimal) -> Decimal {
    (ask - bid) / pair.pip()
}

/// The running stage.
pub struct SpreadGuard {
    max_pips: Decimal,
}

impl SpreadGuard {
    pub fn new(max_pips: Decimal) -> Self {
        SpreadGuard { max_pips }
    }

    /// `Ok` if the price may pass, else the reason and a message.
    fn judge(&self, pair: Pair, bid: Decimal, ask: Decimal) -> Result<(), (&'static str, String)> {
        if bid > ask {
            return Err((reason::CROSSED, format!("{pair}: bid {bid} is above ask {ask}")));
        }
        let spread = spread_pips(pair, bid, ask);
        if spread > self.max_pips {
            let msg = format!(
                "{pair}: spread {} pips exceeds max_pips {}",
                spread.round_dp(3).normalize(),
                self.max_pips
            );
            return Err((reason::WIDE_SPREAD, msg));
        }
        Ok(())
    }
}

impl FunctionTransform<FxEvent> for SpreadGuard {
    fn transform(&mut self, event: FxEvent, emit: &mut Emit<FxEvent>) {
        let verdict = match &event {
            FxEvent::Quote(q) => self.judge(q.pair, q.bid, q.ask),
            FxEvent::CrossRate(c) => self.judge(c.pair, c.bid, c.ask),
            other => Err((
                reason::UNEXPECTED_KIND,
                format!("SpreadGuard takes quotes and cross rates, not {other:?}"),
            )),
        };
        match verdict {
            Ok(()) => emit.push(event),
            Err((why, msg)) => emit.reject(event, why, msg),
        }
    }
}

#[cfg(test)]
mod tests {

    use fxflow_engine::pipeline_file::load_str;
    use fxflow_engine::testkit::run_transform;
    use fxflow_stages::fx::{CrossRate, Currency, Quote};
    use rust_decimal_macros::dec;

    use super::*;

    fn cross(pair: &str, bid: Decimal, ask: Decimal) -> FxEvent {
        FxEvent::CrossRate(CrossRate {
            pair: pair.parse().unwrap(),
            bid,
            ask,
            ts: "2026-01-01T00:00:00Z".parse().unwrap(),
            source: fxflow_stages::fx::SourceName::intern("test").unwrap(),
            via: Currency::USD,
        })
    }

    fn quote(pair: &str, bid: Decimal, ask: Decimal) -> FxEvent {
        FxEvent::Quote(Quote {
            pair: pair.parse().unwrap(),
            bid,
            ask,
            ts: "2026-01-01T00:00:00Z".parse().unwrap(),
            source: fxflow_stages::fx::SourceName::intern("test").unwrap(),
            enrichment: None,
        })
    }

    #[test]
    fn passes_tight_prices_and_rejects_wide_ones_with_reasons() {
        let mut guard = SpreadGuard::new(dec!(2));
        let out = run_transform(
            &mut guard,
            [
                cross("EUR/GBP", dec!(0.83370), dec!(0.83390)),  // exactly 2 pips: passes
                cross("EUR/GBP", dec!(0.83370), dec!(0.833901)), // 2.01 pips
                cross("GBP/JPY", dec!(210.70), dec!(210.72)),    // 2 JPY pips: passes
                cross("GBP/JPY", dec!(210.70), dec!(210.73)),    // 3 JPY pips
                quote("EUR/USD", dec!(1.1172), dec!(1.1172)),    // mid-only: 0 pips
                quote("USD/JPY", dec!(157.30), dec!(157.20)),    // crossed
            ],
        );
        assert_eq!(
            out.events,
            vec![
                cross("EUR/GBP", dec!(0.83370), dec!(0.83390)),
                cross("GBP/JPY", dec!(210.70), dec!(210.72)),
                quote("EUR/USD", dec!(1.1172), dec!(1.1172)),
            ]
        );
        let rejected: Vec<_> = out
            .rejected
            .iter()
            .map(|(r, msg, e)| (*r, msg.as_str(), e.clone()))
            .collect();
        assert_eq!(
            rejected,
            vec![
                (
                    reason::WIDE_SPREAD,
                    "EUR/GBP: spread 2.01 pips exceeds max_pips 2",
                    Some(cross("EUR/GBP", dec!(0.83370), dec!(0.833901)))
                ),
                (
                    reason::WIDE_SPREAD,
                    "GBP/JPY: spread 3 pips exceeds max_pips 2",
                    Some(cross("GBP/JPY", dec!(210.70), dec!(210.73)))
                ),
                (
                    reason::CROSSED,
                    "USD/JPY: bid 157.30 is above ask 157.20",
                    Some(quote("USD/JPY", dec!(157.30), dec!(157.20)))
                ),
            ]
        );
    }

    #[test]
    fn spread_is_measured_in_the_pairs_own_pips() {
        assert_eq!(
            spread_pips("USD/JPY".parse().unwrap(), dec!(157.245), dec!(157.255)),
            dec!(1)
        );
        assert_eq!(
            spread_pips("EUR/USD".parse().unwrap(), dec!(1.11716), dec!(1.11724)),
            dec!(0.8)
        );
    }

    fn registry() -> fxflow_engine::Registry<FxEvent> {
        let mut registry = fxflow_stages::registry();
        registry.stage::<SpreadGuardConfig>("SpreadGuard");
        registry
    }

    fn pipeline(guard: &str) -> String {
        format!(
            r#"Pipeline(
    name: "t",
    stages: {{
        "ticks": Synthetic(count: 1, rate: 0),
        "crosses": CrossRate(inputs: ["ticks"]),
        "guard": {guard},
        "out": Null(inputs: ["guard", "guard.errors"]),
    }},
)"#
        )
    }

    /// `max_pips` is read from the RON text exactly: 1.15 is 1.15, not 1.149999…
    #[tokio::test]
    async fn max_pips_is_read_exactly_from_the_pipeline_file() {
        let text = pipeline(r#"SpreadGuard(inputs: ["crosses"], max_pips: 1.15)"#);
        let spec = load_str("t.ron", &text, &registry(), |_| None).unwrap();
        let cx = BuildContext {
            pipeline: "t".into(),
            stage: "guard".into(),
            resources: Default::default(),
            readiness: Default::default(),
            stages: Default::default(),
            replaces_running: false,
        };
        let Stage::Function(mut guard) = spec.stage("guard").unwrap().config.build(&cx).await.unwrap() else {
            panic!("a function-shaped stage")
        };
        // 1.15 pips exactly passes; one hundred-millionth of a pip more does not.
        let at = cross("EUR/GBP", dec!(0.8337), dec!(0.833815));
        let above = cross("EUR/GBP", dec!(0.8337), dec!(0.833815000001));
        let out = run_transform(guard.as_mut(), [at.clone(), above]);
        assert_eq!(out.events, vec![at]);
        assert_eq!(out.rejected.len(), 1);
    }

    #[test]
    fn non_positive_max_pips_and_unknown_fields_are_reported_at_their_place() {
        for bad in ["0", "-1.5"] {
            let text = pipeline(&format!(r#"SpreadGuard(inputs: ["crosses"], max_pips: {bad})"#));
            let problems = load_str("t.ron", &text, &registry(), |_| None).unwrap_err();
            assert_eq!(problems.0.len(), 1, "{problems}");
            let problem = &problems.0[0];
            assert!(problem.message.contains("must be positive"), "{problem}");
            assert_eq!(problem.line, 6, "points at the stage: {problem}");
        }
        let text = pipeline(r#"SpreadGuard(inputs: ["crosses"], max_pips: 2, max_pip: 3)"#);
        let problems = load_str("t.ron", &text, &registry(), |_| None).unwrap_err();
        assert!(problems.to_string().contains("max_pip"), "{problems}");
    }

    #[test]
    fn the_graph_check_knows_what_passes_through() {
        // Snapshots are not prices with one spread: wiring them in is caught before start.
        let text = pipeline(r#"SpreadGuard(inputs: ["ticks"], max_pips: 2)"#);
        let problems = load_str("t.ron", &text, &registry(), |_| None).unwrap_err();
        assert!(problems.to_string().contains("QuoteSnapshot"), "{problems}");
    }
}
