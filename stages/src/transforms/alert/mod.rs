//! `Alert`: checks every price sample against the alert rules and emits firings.
//!
//! Task-shaped: besides the event stream it keeps a timer that sweeps out
//! rules whose expiry lies behind the newest sample seen. All time is the
//! data's own (cooldown, expiry, the sweep), so a replay of 2024 behaves
//! exactly as live data did then. The indexing that keeps a tick cheap with a million rules
//! is in [`rules`].

pub mod checkpoint;
#[cfg(test)]
mod grammar_tests;
#[cfg(test)]
mod quality_tests;
pub mod rules;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fxflow_engine::kafka::{save_timer, StateTopicConfig};
use fxflow_engine::{
    async_trait, AckStatus, BuildContext, ConfigProblem, Envelope, Failure, Input, Kinds, Outputs, Shape, Stage,
    StageConfig, StageError, TaskTransform,
};
use metrics::counter;
use serde::Deserialize;

use crate::fx::{kind, AlertFired, AlertRule, AlertRuleChange, FxEvent};
use checkpoint::Checkpoints;
use rules::RuleBook;

/// Checks quotes and cross rates against alert rules (`Above`, `Below`,
/// `Crossing`, `CrossingUp`, `CrossingDown`, `EnteringChannel`, `ExitingChannel`,
/// `InsideChannel`, `OutsideChannel`, `MovingUp`, `MovingDown`, `MovingUpPercent`,
/// `MovingDownPercent`, `PctChange`, `ZScore`, and the data-quality `Stale` and `Divergence`; triggers `Once`, `Every`, `OncePerBar`,
/// `OnBarClose`) and emits an `AlertFired` for each firing.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The rules, e.g. `(id: "eurusd-1.12", pair: "EUR/USD", condition: Above(1.12), trigger: Every(cooldown: "1h", rearm: 0.002))`.
    #[serde(default)]
    pub rules: Vec<AlertRule>,
    /// How often rules whose `expires` lies behind the newest sample are dropped
    /// (a rule never fires past its expiry either way; the sweep frees memory).
    #[serde(default = "default_sweep", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub expiry_sweep: Duration,
    /// Keep the rule state in a compacted Kafka topic, so that a restarted
    /// worker, or one a rebalance hands pairs to, continues exactly: no missed
    /// `PctChange` or crossing, no second firing of a `Once` rule, cooldowns
    /// kept. Needs the samples to come from a `KafkaSource`. Without it the
    /// state lives in memory only and a restart starts every rule afresh.
    #[serde(default)]
    pub state: Option<StateTopicConfig>,
}

/// How often the wall clock is read for `Stale` rules of live feeds (a stopped feed fires
/// within `max_age` plus this).
const WALL_CLOCK_TICK: Duration = Duration::from_millis(250);

fn default_sweep() -> Duration {
    Duration::from_secs(60)
}

/// The metric counting firings, labelled by pipeline, stage and pair.
pub const ALERTS_FIRED: &str = "fxflow_alerts_fired_total";

/// Samples ignored because their source had already sent one as new or newer
/// for the pair (re-deliveries after a crash upstream).
pub const SAMPLES_REPEATED: &str = "fxflow_alert_samples_repeated_total";

#[async_trait]
impl StageConfig<FxEvent> for AlertConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::CROSS_RATE, kind::QUOTE, kind::ALERT_RULE_CHANGE])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::ALERT_FIRED])
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for rule in &self.rules {
            if !seen.insert(rule.id.as_str()) {
                problems.push(
                    ConfigProblem::field("rules", format!("rule id `{}` is used twice", rule.id))
                        .with_hint("rule ids must be unique"),
                );
            }
            if rule.webhook.is_some() {
                problems.push(
                    ConfigProblem::field("rules", format!("rule `{}` has a webhook", rule.id)).with_hint(
                        "webhooks belong to rules created over the API (POST /alerts): the Webhook stage reads them from the store",
                    ),
                );
            }
            if let Err(e) = rules::validate(rule) {
                problems.push(ConfigProblem::field("rules", format!("rule `{}`: {e}", rule.id)));
            }
        }
        if self.expiry_sweep.is_zero() {
            problems.push(ConfigProblem::field("expiry_sweep", "must be longer than zero"));
        }
        problems.extend(StateTopicConfig::check_optional(self.state.as_ref(), "state"));
        problems
    }

    crate::transforms::state_topic_methods!();

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let mut book = RuleBook::new();
        for rule in &self.rules {
            book.add(rule).map_err(StageError::new)?;
        }
        let checkpoints = match &self.state {
            Some(state) => Some(Checkpoints::new(state.open(cx)?, state.interval)),
            None => None,
        };
        Ok(Stage::Task(Box::new(Alert {
            book,
            configured: self.rules.iter().map(|r| r.id.clone()).collect(),
            sweep: self.expiry_sweep,
            now: None,
            checkpoints,
        })))
    }
}

struct Alert {
    book: RuleBook,
    /// Ids of the rules in the stage's config; the others came as changes (the API).
    configured: HashSet<String>,
    sweep: Duration,
    /// The newest sample time seen: the stage's clock.
    now: Option<chrono::DateTime<chrono::Utc>>,
    checkpoints: Option<Checkpoints>,
}

/// What an `Alert` replaced by a reload leaves its new version: the rules
/// that came as changes (the config's are the new version's own), the state
/// of every pair (rules of an unchanged definition keep cooldowns and arming,
/// crossings their last price), and the stage's clock.
struct Legacy {
    changed_rules: Vec<AlertRule>,
    pairs: Vec<(crate::fx::Pair, rules::PairRules)>,
    now: Option<chrono::DateTime<chrono::Utc>>,
}

impl Alert {
    fn bequest(&self) -> Legacy {
        Legacy {
            changed_rules: self
                .book
                .rules()
                .into_iter()
                .filter(|r| !self.configured.contains(&r.id))
                .collect(),
            pairs: self
                .book
                .pairs()
                .into_iter()
                .filter_map(|pair| Some((pair, self.book.export(pair)?)))
                .collect(),
            now: self.now,
        }
    }

    /// Continue from what the previous version left; its rules that the new
    /// config defines (by id) take the new definition.
    fn adopt(&mut self, legacy: Legacy) {
        let mut adopted = 0;
        for rule in legacy.changed_rules {
            if !self.configured.contains(&rule.id) && self.book.add(&rule).is_ok() {
                adopted += 1;
            }
        }
        for (pair, state) in legacy.pairs {
            self.book.import(pair, state);
        }
        self.now = self.now.max(legacy.now);
        tracing::info!(
            rules = self.book.len(),
            from_changes = adopted,
            "Alert state taken over from the previous version."
        );
    }

    /// Replace, add or delete a rule. A replaced rule starts afresh (armed, no
    /// cooldown); a change carrying the rule exactly as it is changes nothing
    /// (re-delivered changes, and the changelog re-read at every start).
    fn apply(&mut self, change: &AlertRuleChange) -> Result<Vec<AlertFired>, String> {
        if change.rule.as_ref().is_some_and(|rule| self.book.is_current(rule)) {
            return Ok(Vec::new());
        }
        let existed = self.book.remove(&change.id);
        let Some(rule) = &change.rule else {
            tracing::info!(rule = %change.id, existed, "Alert rule deleted.");
            return Ok(Vec::new());
        };
        if rule.id != change.id {
            return Err(format!("change for `{}` carries rule `{}`", change.id, rule.id));
        }
        let firings = self.book.add(rule).map_err(|e| e.to_string())?;
        tracing::info!(rule = %rule.id, replaced = existed, "Alert rule set.");
        Ok(firings)
    }

    /// Evaluate a batch: firings inherit the ack token of the sample that fired them.
    fn batch(&mut self, batch: Vec<Envelope<FxEvent>>) -> (Vec<Envelope<FxEvent>>, Vec<Failure<FxEvent>>) {
        let mut fired = Vec::new();
        let mut failures = Vec::new();
        for envelope in batch {
            if let FxEvent::AlertRuleChange(change) = &envelope.event {
                match self.apply(change) {
                    Ok(firings) => fired.extend(firings.into_iter().map(|f| envelope.derive(FxEvent::AlertFired(f)))),
                    Err(e) => failures.push(Failure::new(envelope, "invalid_rule", e)),
                }
                continue;
            }
            let Some(price) = envelope.event.price() else {
                failures.push(Failure::new(
                    envelope,
                    "unexpected_kind",
                    "Alert takes quotes, cross rates and rule changes",
                ));
                continue;
            };
            let checkpoints = self.checkpoints.as_mut().zip(envelope.origin.as_ref());
            if let Some((checkpoints, origin)) = checkpoints {
                if checkpoints.covers(price.pair, origin) {
                    continue; // re-delivered; the restored state already includes it
                }
            }
            self.now = self.now.max(Some(price.ts));
            for firing in self.book.on_sample(price) {
                let ack = match self.checkpoints.as_mut() {
                    Some(checkpoints) => checkpoints.track(&firing, envelope.ack.clone()),
                    None => envelope.ack.clone(),
                };
                fired.push(Envelope::new(FxEvent::AlertFired(firing), ack).with_ingested(envelope.ingested));
            }
            if let (Some(checkpoints), Some(origin)) = (self.checkpoints.as_mut(), envelope.origin.as_ref()) {
                if self.book.knows(price.pair) {
                    checkpoints.absorbed(price.pair, origin, &envelope.ack);
                }
            }
        }
        (fired, failures)
    }

    /// Before a batch: restore the saved state of partitions read for the first
    /// time, and emit again the firings their last saves had not seen delivered.
    async fn restore_for(&mut self, batch: &[Envelope<FxEvent>]) -> Result<Vec<Envelope<FxEvent>>, StageError> {
        let Some(checkpoints) = self.checkpoints.as_mut() else {
            return Ok(Vec::new());
        };
        let samples = batch
            .iter()
            .filter(|e| e.event.price().is_some())
            .filter_map(|e| e.origin.as_ref().map(|o| (o, &e.ack)));
        let fresh = checkpoints.newly_assigned(samples);
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let replays = checkpoints.restore(&mut self.book, &fresh).await?;
        Ok(replays
            .into_iter()
            .map(|(firing, input)| {
                let ack = checkpoints.track(&firing, input);
                Envelope::new(FxEvent::AlertFired(firing), ack)
            })
            .collect())
    }
}

#[async_trait]
impl TaskTransform<FxEvent> for Alert {
    async fn run(
        mut self: Box<Self>,
        mut input: Input<FxEvent>,
        mut outputs: Outputs<FxEvent>,
    ) -> Result<(), StageError> {
        let timer = outputs.labels.processing();
        let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + self.sweep, self.sweep);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut save = save_timer(self.checkpoints.as_ref().map(|c| c.interval));
        // Live feeds watched by `Stale` rules are judged by the wall clock too: a feed that
        // stops sends nothing that would move the event clock.
        let mut wall = tokio::time::interval(WALL_CLOCK_TICK);
        wall.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Some(legacy) = input.inherit::<Legacy>() {
            self.adopt(legacy);
        }
        loop {
            tokio::select! {
                batch = input.next() => {
                    let Some(batch) = batch else { break };
                    let replayed = self.restore_for(&batch).await?;
                    let started = Instant::now();
                    let (mut fired, failures) = self.batch(batch);
                    timer.record(started.elapsed());
                    let repeats = self.book.take_repeats();
                    if repeats > 0 {
                        counter!(SAMPLES_REPEATED, "pipeline" => outputs.labels.pipeline.clone(), "stage" => outputs.labels.stage.clone()).increment(repeats);
                    }
                    if !replayed.is_empty() {
                        tracing::info!(stage = %outputs.labels.stage, firings = replayed.len(), "Firings whose delivery was not confirmed before a restart are emitted again.");
                        fired.splice(0..0, replayed);
                    }
                    for f in &fired {
                        if let FxEvent::AlertFired(a) = &f.event {
                            tracing::debug!(rule = %a.rule_id, pair = %a.pair, value = %a.value, ts = %a.ts, "Alert fired.");
                            counter!(ALERTS_FIRED, "pipeline" => outputs.labels.pipeline.clone(), "stage" => outputs.labels.stage.clone(), "pair" => a.pair.to_string()).increment(1);
                        }
                    }
                    outputs.dead_letter(failures, AckStatus::Rejected).await?;
                    outputs.send(fired).await?;
                }
                _ = wall.tick(), if self.book.watches_live_feeds() => {
                    let fired: Vec<Envelope<FxEvent>> = self
                        .book
                        .on_wall_clock(chrono::Utc::now())
                        .into_iter()
                        .map(|firing| {
                            // No input caused it: nothing upstream waits for its delivery.
                            let ack = match self.checkpoints.as_mut() {
                                Some(checkpoints) => checkpoints.track(&firing, fxflow_engine::AckToken::none()),
                                None => fxflow_engine::AckToken::none(),
                            };
                            Envelope::new(FxEvent::AlertFired(firing), ack)
                        })
                        .collect();
                    for f in &fired {
                        if let FxEvent::AlertFired(a) = &f.event {
                            tracing::info!(rule = %a.rule_id, pair = %a.pair, reason = %a.condition, "A live feed went stale.");
                            counter!(ALERTS_FIRED, "pipeline" => outputs.labels.pipeline.clone(), "stage" => outputs.labels.stage.clone(), "pair" => a.pair.to_string()).increment(1);
                        }
                    }
                    outputs.send(fired).await?;
                }
                _ = save.tick(), if self.checkpoints.is_some() => {
                    if let Some(checkpoints) = self.checkpoints.as_mut() {
                        checkpoints.save(&self.book).await;
                    }
                }
                _ = sweep.tick() => {
                    let Some(now) = self.now else { continue };
                    let expired = self.book.expire(now);
                    if expired > 0 {
                        tracing::info!(stage = %outputs.labels.stage, expired, "Expired alert rules removed.");
                    }
                }
            }
        }
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            checkpoints.save(&self.book).await;
        }
        if input.is_replaced() {
            input.bequeath(self.bequest());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::rules::tests::{mid_at, rule};
    use super::*;
    use crate::fx::{Condition, Trigger};

    /// An `Alert` built from `configured` the way its config builds it.
    fn alert(configured: &[AlertRule]) -> Alert {
        let mut book = RuleBook::new();
        for rule in configured {
            book.add(rule).unwrap();
        }
        Alert {
            book,
            configured: configured.iter().map(|r| r.id.clone()).collect(),
            sweep: Duration::from_secs(60),
            now: None,
            checkpoints: None,
        }
    }

    fn fired(alert: &mut Alert, step: usize, price: Decimal) -> Vec<String> {
        let mut ids: Vec<String> = alert
            .book
            .on_sample(mid_at(step, price))
            .iter()
            .map(|f| f.rule_id.to_string())
            .collect();
        ids.sort();
        ids
    }
    #[test]
    fn a_replaced_alert_keeps_rules_from_changes_and_the_state_of_unchanged_rules() {
        let once = rule("once", Condition::Above(dec!(1.10)), Trigger::Once);
        let up = rule("up", Condition::CrossingUp(dec!(1.12)), Trigger::Once);
        let from_api = rule("api", Condition::Below(dec!(1.00)), Trigger::Once);
        let mut old = alert(&[once.clone(), up.clone()]);
        old.book.add(&from_api).unwrap();
        assert_eq!(fired(&mut old, 0, dec!(1.11)), ["once"]);

        // The new config drops nothing of these and adds one rule.
        let added = rule("added", Condition::Above(dec!(1.05)), Trigger::Once);
        let mut new = alert(&[once, up, added]);
        new.adopt(old.bequest());
        // `once` already fired (it stays retired); `up` crosses from the old
        // version's last price; `added` is new; the API's rule is still there.
        assert_eq!(fired(&mut new, 1, dec!(1.13)), ["added", "up"]);
        assert_eq!(fired(&mut new, 2, dec!(0.99)), ["api"]);
    }
}
