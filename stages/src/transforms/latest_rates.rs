//! `LatestRates`: each pair's newest rate, at most once per `every` — the
//! conflated stream behind the public, compacted per-pair topic
//! (`fx.rates.latest`), whose readers want each pair's current price rather
//! than every tick.
//!
//! A rate superseded before the next emission is dropped on purpose (counted
//! in `fxflow_stage_discarded_events_total{reason="superseded"}`; a compacted
//! topic would drop it too), so its input finalizes as delivered; the rate
//! held for emission keeps its input's ack token, so a source offset is
//! committed only once what it carried is published. This stage waits for its
//! timer by design: it sits on a side branch, never on the tick-to-alert path.

use std::collections::BTreeMap;
use std::time::Duration;

use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, Input, Kinds, Outputs, Shape, Stage, StageConfig, StageError,
    TaskTransform,
};
use serde::Deserialize;

use crate::fx::{kind, FxEvent, Pair};

/// Passes on each pair's newest quote or cross rate at most once per `every`
/// (conflation): for a compacted per-pair topic or a slow consumer that wants
/// current prices, not every tick. An older rate than the one held is dropped.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatestRatesConfig {
    /// How often the held rates are sent on (each pair at most once per period).
    #[serde(default = "default_every", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub every: Duration,
}

fn default_every() -> Duration {
    Duration::from_secs(1)
}

#[async_trait]
impl StageConfig<FxEvent> for LatestRatesConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE])
    }

    fn emits_given(&self, inputs: &Kinds) -> Kinds {
        self.emits().intersection(inputs)
    }

    fn check(&self) -> Vec<ConfigProblem> {
        if self.every.is_zero() {
            vec![ConfigProblem::field("every", "must be longer than zero")]
        } else {
            Vec::new()
        }
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Task(Box::new(LatestRates {
            every: self.every,
            held: BTreeMap::new(),
        })))
    }
}

struct LatestRates {
    every: Duration,
    /// The newest rate of each pair since the last emission.
    held: BTreeMap<Pair, Envelope<FxEvent>>,
}

impl LatestRates {
    /// Keep each pair's newest rate; returns how many were superseded.
    fn absorb(&mut self, batch: Vec<Envelope<FxEvent>>) -> u64 {
        let mut superseded = 0;
        for envelope in batch {
            let Some(price) = envelope.event.price() else {
                continue; // the declared kinds all have a price
            };
            match self.held.get(&price.pair).and_then(|held| held.event.price()) {
                Some(held) if held.ts > price.ts => superseded += 1,
                Some(_) => {
                    superseded += 1;
                    self.held.insert(price.pair, envelope);
                }
                None => {
                    self.held.insert(price.pair, envelope);
                }
            }
        }
        superseded
    }

    fn take(&mut self) -> Vec<Envelope<FxEvent>> {
        std::mem::take(&mut self.held).into_values().collect()
    }
}

#[async_trait]
impl TaskTransform<FxEvent> for LatestRates {
    async fn run(
        mut self: Box<Self>,
        mut input: Input<FxEvent>,
        mut outputs: Outputs<FxEvent>,
    ) -> Result<(), StageError> {
        let mut timer = tokio::time::interval(self.every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = input.next() => {
                    let Some(batch) = batch else { break };
                    let superseded = self.absorb(batch);
                    if superseded > 0 {
                        outputs.labels.discarded("superseded", superseded);
                    }
                }
                _ = timer.tick() => {
                    let latest = self.take();
                    outputs.send(latest).await?;
                }
            }
        }
        // The input ended: what is held still goes out.
        let latest = self.take();
        outputs.send(latest).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use fxflow_engine::{AckStatus, AckToken};
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::{CrossRate, SourceName};

    fn cross(pair: &str, mid: Decimal, second: i64) -> FxEvent {
        FxEvent::CrossRate(CrossRate {
            pair: pair.parse().unwrap(),
            bid: mid,
            ask: mid,
            ts: DateTime::<Utc>::from_timestamp(1_700_000_000 + second, 0).unwrap(),
            source: SourceName::intern("test").unwrap(),
            via: "USD".parse().unwrap(),
        })
    }

    fn mids(events: &[Envelope<FxEvent>]) -> Vec<(String, Decimal)> {
        events
            .iter()
            .map(|e| {
                let p = e.event.price().unwrap();
                (p.pair.to_string(), p.bid)
            })
            .collect()
    }

    #[test]
    fn keeps_each_pairs_newest_rate_and_never_an_older_one() {
        let mut stage = LatestRates {
            every: Duration::from_secs(1),
            held: BTreeMap::new(),
        };
        let superseded = stage.absorb(vec![
            Envelope::unacked(cross("EUR/USD", dec!(1.10), 1)),
            Envelope::unacked(cross("GBP/USD", dec!(1.30), 1)),
            Envelope::unacked(cross("EUR/USD", dec!(1.11), 2)),
            // Older than the held EUR/USD: dropped, not a regression of the current price.
            Envelope::unacked(cross("EUR/USD", dec!(1.09), 0)),
        ]);
        assert_eq!(superseded, 2);
        assert_eq!(
            mids(&stage.take()),
            [("EUR/USD".to_owned(), dec!(1.11)), ("GBP/USD".to_owned(), dec!(1.30))]
        );
        assert!(stage.take().is_empty(), "each rate goes out once");
    }

    #[test]
    fn a_superseded_rate_finalizes_its_input_and_the_held_one_keeps_its_token() {
        let mut stage = LatestRates {
            every: Duration::from_secs(1),
            held: BTreeMap::new(),
        };
        let (old_token, mut old_ack) = AckToken::new();
        let (new_token, mut new_ack) = AckToken::new();
        stage.absorb(vec![Envelope::new(cross("EUR/USD", dec!(1.10), 1), old_token)]);
        stage.absorb(vec![Envelope::new(cross("EUR/USD", dec!(1.11), 2), new_token)]);
        assert_eq!(
            old_ack.try_status(),
            Some(AckStatus::Delivered),
            "superseded on purpose"
        );
        assert_eq!(new_ack.try_status(), None, "held until sent and delivered");
        drop(stage.take());
        assert_eq!(new_ack.try_status(), Some(AckStatus::Delivered));
    }
}
