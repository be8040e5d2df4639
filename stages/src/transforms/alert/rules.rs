//! The rule book: alert rules indexed so a price move costs what it fires.
//!
//! Rules are grouped per (pair, price field). Threshold rules live in ordered
//! maps keyed by threshold, split by direction and by state:
//! - *armed* `Above` rules fire when the price is above their threshold, so a
//!   sample at `p` fires exactly the armed keys `< p`; `Below` mirrors it;
//! - *armed* `CrossingUp` rules fire for keys in `(previous, p]`; `CrossingDown`
//!   for keys in `[p, previous)`;
//! - a rule that fired with trigger `Every` is *disarmed*: it waits in a
//!   re-arm map keyed by `threshold ∓ rearm` and returns to the armed map once
//!   the price goes back past that level (hysteresis).
//!
//! A sample therefore touches `O(log n + k)` entries, where `k` is the number of
//! rules that fire or re-arm — not the number of rules. `PctChange` rules are
//! few in practice and are scanned per sample of their pair, against a window
//! of the pair's recent samples.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::fx::fast_hash::FastMap;
use crate::fx::quote::mid;
use crate::fx::{AlertFired, AlertRule, Condition, Pair, Price, PriceField, SourceName, Trigger};

type RuleId = usize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule with id `{0}` already exists")]
    Duplicate(String),
    #[error("rule `{0}`: {1}")]
    Invalid(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Above(Decimal),
    Below(Decimal),
    CrossingUp(Decimal),
    CrossingDown(Decimal),
    Pct { percent: Decimal, window: chrono::Duration },
}

impl Kind {
    /// True for rules that fire on rising prices (they re-arm when the price falls back).
    fn rising(&self) -> bool {
        match self {
            Kind::Above(_) | Kind::CrossingUp(_) => true,
            Kind::Below(_) | Kind::CrossingDown(_) => false,
            Kind::Pct { percent, .. } => *percent >= Decimal::ZERO,
        }
    }

    fn threshold(&self) -> Decimal {
        match *self {
            Kind::Above(t) | Kind::Below(t) | Kind::CrossingUp(t) | Kind::CrossingDown(t) => t,
            Kind::Pct { percent, .. } => percent,
        }
    }
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    pair: Pair,
    field: PriceField,
    kind: Kind,
    once: bool,
    cooldown: chrono::Duration,
    rearm: Decimal,
    expires: Option<DateTime<Utc>>,
    condition: Arc<str>,
    last_fired: Option<DateTime<Utc>>,
    /// Disarmed rules wait for the price to go back past `threshold ∓ rearm`.
    armed: bool,
}

impl Rule {
    fn rearm_level(&self) -> Decimal {
        let t = self.kind.threshold();
        if self.kind.rising() {
            t - self.rearm
        } else {
            t + self.rearm
        }
    }
}

type Index = BTreeMap<Decimal, Vec<RuleId>>;

fn index_insert(index: &mut Index, key: Decimal, id: RuleId) {
    index.entry(key).or_default().push(id);
}

fn index_remove(index: &mut Index, key: Decimal, id: RuleId) {
    if let Some(ids) = index.get_mut(&key) {
        ids.retain(|r| *r != id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

/// Remove and return every id under keys in `range`.
fn drain_range(index: &mut Index, range: (Bound<Decimal>, Bound<Decimal>)) -> Vec<RuleId> {
    let keys: Vec<Decimal> = index.range(range).map(|(k, _)| *k).collect();
    keys.into_iter()
        .flat_map(|k| index.remove(&k).unwrap_or_default())
        .collect()
}

/// Rules and recent prices of one (pair, price field).
#[derive(Debug, Default)]
struct Book {
    /// The last sample's time and price.
    last: Option<(DateTime<Utc>, Decimal)>,
    above: Index,
    below: Index,
    up: Index,
    down: Index,
    /// Disarmed rising rules, keyed by re-arm level: re-arm when price ≤ key.
    rearm_falling: Index,
    /// Disarmed falling rules: re-arm when price ≥ key.
    rearm_rising: Index,
    pct: Vec<RuleId>,
    /// (ts, price), oldest first, kept for the longest `PctChange` window.
    history: VecDeque<(DateTime<Utc>, Decimal)>,
    longest_window: chrono::Duration,
}

impl Book {
    fn armed_index(&mut self, kind: &Kind) -> Option<&mut Index> {
        match kind {
            Kind::Above(_) => Some(&mut self.above),
            Kind::Below(_) => Some(&mut self.below),
            Kind::CrossingUp(_) => Some(&mut self.up),
            Kind::CrossingDown(_) => Some(&mut self.down),
            Kind::Pct { .. } => None,
        }
    }

    fn rearm_index(&mut self, rising: bool) -> &mut Index {
        if rising {
            &mut self.rearm_falling
        } else {
            &mut self.rearm_rising
        }
    }
}

/// A price sample: one quote or cross rate.
pub type Sample = Price;

/// Every rule, indexed per (pair, price field).
#[derive(Debug, Default)]
pub struct RuleBook {
    rules: Vec<Option<Rule>>,
    free: Vec<RuleId>,
    by_id: HashMap<Arc<str>, RuleId>,
    books: FastMap<Pair, [Option<Box<Book>>; 3]>,
    expiries: BTreeMap<DateTime<Utc>, Vec<RuleId>>,
}

fn field_index(field: PriceField) -> usize {
    match field {
        PriceField::Mid => 0,
        PriceField::Bid => 1,
        PriceField::Ask => 2,
    }
}

const FIELDS: [PriceField; 3] = [PriceField::Mid, PriceField::Bid, PriceField::Ask];

/// Checks a rule's settings; used by the stage config's validation too.
pub fn validate(rule: &AlertRule) -> Result<(), String> {
    match &rule.condition {
        Condition::Above(t) | Condition::Below(t) | Condition::CrossingUp(t) | Condition::CrossingDown(t)
            if *t <= Decimal::ZERO =>
        {
            Err(format!("threshold {t} must be positive"))
        }
        Condition::PctChange { window, .. } if window.is_zero() => Err("the window must be longer than zero".into()),
        Condition::PctChange { percent, .. } if percent.is_zero() => Err("percent must not be zero".into()),
        _ => match &rule.trigger {
            Trigger::Every { rearm, .. } if *rearm < Decimal::ZERO => {
                Err(format!("rearm {rearm} must not be negative"))
            }
            _ => Ok(()),
        },
    }
}

impl RuleBook {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Add a rule. A state rule (`Above`/`Below`) that already holds against
    /// the pair's last price fires at once; those firings are returned.
    pub fn add(&mut self, rule: &AlertRule) -> Result<Vec<AlertFired>, RuleError> {
        if self.by_id.contains_key(rule.id.as_str()) {
            return Err(RuleError::Duplicate(rule.id.clone()));
        }
        validate(rule).map_err(|e| RuleError::Invalid(rule.id.clone(), e))?;
        let kind = match &rule.condition {
            Condition::Above(t) => Kind::Above(*t),
            Condition::Below(t) => Kind::Below(*t),
            Condition::CrossingUp(t) => Kind::CrossingUp(*t),
            Condition::CrossingDown(t) => Kind::CrossingDown(*t),
            Condition::PctChange { percent, window } => Kind::Pct {
                percent: *percent,
                window: chrono::Duration::from_std(*window).unwrap_or(chrono::Duration::MAX),
            },
        };
        let (once, cooldown, rearm) = match &rule.trigger {
            Trigger::Once => (true, chrono::Duration::zero(), Decimal::ZERO),
            Trigger::Every { cooldown, rearm } => (
                false,
                chrono::Duration::from_std(*cooldown).unwrap_or(chrono::Duration::MAX),
                *rearm,
            ),
        };
        let id: Arc<str> = Arc::from(rule.id.as_str());
        let state = Rule {
            id: id.clone(),
            pair: rule.pair,
            field: rule.price,
            kind,
            once,
            cooldown,
            rearm,
            expires: rule.expires,
            condition: Arc::from(rule.condition.describe()),
            last_fired: None,
            armed: true,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.rules[slot] = Some(state);
                slot
            }
            None => {
                self.rules.push(Some(state));
                self.rules.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        if let Some(expires) = rule.expires {
            self.expiries.entry(expires).or_default().push(slot);
        }
        let book =
            self.books.entry(rule.pair).or_default()[field_index(rule.price)].get_or_insert_with(Default::default);
        match kind {
            Kind::Pct { window, .. } => {
                book.pct.push(slot);
                book.longest_window = book.longest_window.max(window);
            }
            _ => {
                let index = book.armed_index(&kind).expect("threshold kinds have an index");
                index_insert(index, kind.threshold(), slot);
            }
        }
        // A state rule that is already true fires at creation.
        let Some((ts, price)) = book.last else {
            return Ok(Vec::new());
        };
        let holds = match kind {
            Kind::Above(t) => price > t,
            Kind::Below(t) => price < t,
            _ => false,
        };
        if !holds {
            return Ok(Vec::new());
        }
        let source = SourceName::intern("rule-created").expect("one fixed name");
        // The rule fires against the last sample: its price is both value and previous.
        let mut fired = Vec::new();
        let book = self.book_mut(rule.pair, rule.price);
        let index = book.armed_index(&kind).expect("threshold kinds have an index");
        index_remove(index, kind.threshold(), slot);
        self.fire_or_keep(slot, price, Some(price), ts, source, &mut fired);
        Ok(fired)
    }

    /// Remove a rule by id; returns whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_id.remove(id) else {
            return false;
        };
        if let Some(rule) = self.rules[slot].take() {
            if let Some(expires) = rule.expires {
                if let Some(ids) = self.expiries.get_mut(&expires) {
                    ids.retain(|r| *r != slot);
                }
            }
            let book = self.book_mut(rule.pair, rule.field);
            match rule.kind {
                Kind::Pct { .. } => book.pct.retain(|r| *r != slot),
                kind if rule.armed => {
                    index_remove(book.armed_index(&kind).expect("threshold kind"), kind.threshold(), slot)
                }
                kind => index_remove(book.rearm_index(kind.rising()), rule.rearm_level(), slot),
            }
        }
        self.free.push(slot);
        true
    }

    /// Drop rules whose expiry is at or before `now`; returns how many.
    pub fn expire(&mut self, now: DateTime<Utc>) -> usize {
        let later = self.expiries.split_off(&(now + chrono::Duration::nanoseconds(1)));
        let due = std::mem::replace(&mut self.expiries, later);
        let ids: Vec<Arc<str>> = due
            .into_values()
            .flatten()
            .filter_map(|slot| self.rules[slot].as_ref().map(|r| r.id.clone()))
            .collect();
        ids.iter().filter(|id| self.remove(id)).count()
    }

    fn book_mut(&mut self, pair: Pair, field: PriceField) -> &mut Book {
        self.books
            .get_mut(&pair)
            .and_then(|b| b[field_index(field)].as_deref_mut())
            .expect("a rule's book exists while the rule does")
    }

    /// Evaluate one price sample; returns the firings.
    pub fn on_sample(&mut self, sample: Sample) -> Vec<AlertFired> {
        let mut fired = Vec::new();
        let Some(books) = self.books.get(&sample.pair) else {
            return fired;
        };
        let present: Vec<PriceField> = FIELDS
            .iter()
            .copied()
            .filter(|f| books[field_index(*f)].is_some())
            .collect();
        for field in present {
            let price = match field {
                PriceField::Mid => mid(sample.bid, sample.ask),
                PriceField::Bid => sample.bid,
                PriceField::Ask => sample.ask,
            };
            self.evaluate(sample.pair, field, price, sample.ts, sample.source, &mut fired);
        }
        fired
    }

    fn evaluate(
        &mut self,
        pair: Pair,
        field: PriceField,
        price: Decimal,
        ts: DateTime<Utc>,
        source: SourceName,
        fired: &mut Vec<AlertFired>,
    ) {
        let book = self.book_mut(pair, field);
        let previous = book.last.replace((ts, price)).map(|(_, p)| p);
        // Candidates: armed rules whose condition now holds.
        let mut candidates = drain_range(&mut book.above, (Bound::Unbounded, Bound::Excluded(price)));
        candidates.extend(drain_range(&mut book.below, (Bound::Excluded(price), Bound::Unbounded)));
        if let Some(prev) = previous {
            if price > prev {
                candidates.extend(drain_range(
                    &mut book.up,
                    (Bound::Excluded(prev), Bound::Included(price)),
                ));
            } else if price < prev {
                candidates.extend(drain_range(
                    &mut book.down,
                    (Bound::Included(price), Bound::Excluded(prev)),
                ));
            }
        }
        // Disarmed rules whose price went back past their re-arm level.
        let rearmed_up = drain_range(&mut book.rearm_falling, (Bound::Included(price), Bound::Unbounded));
        let rearmed_down = drain_range(&mut book.rearm_rising, (Bound::Unbounded, Bound::Included(price)));
        // Percentage rules.
        if !book.pct.is_empty() {
            book.history.push_back((ts, price));
            let horizon = ts - book.longest_window;
            while book.history.front().is_some_and(|(t, _)| *t < horizon) {
                book.history.pop_front();
            }
        }
        let pct_rules = book.pct.clone();
        for slot in rearmed_up.into_iter().chain(rearmed_down) {
            self.rearm(slot);
        }
        for slot in candidates {
            self.fire_or_keep(slot, price, previous, ts, source, fired);
        }
        for slot in pct_rules {
            self.check_pct(pair, field, slot, price, ts, source, fired);
        }
    }

    fn rearm(&mut self, slot: RuleId) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        rule.armed = true;
        let (pair, field, kind) = (rule.pair, rule.field, rule.kind);
        let book = self.book_mut(pair, field);
        if let Some(index) = book.armed_index(&kind) {
            index_insert(index, kind.threshold(), slot);
        }
    }

    /// A threshold rule whose condition holds (already taken out of its armed index):
    /// fire it, or put it back where it belongs.
    fn fire_or_keep(
        &mut self,
        slot: RuleId,
        price: Decimal,
        previous: Option<Decimal>,
        ts: DateTime<Utc>,
        source: SourceName,
        fired: &mut Vec<AlertFired>,
    ) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        if rule.expires.is_some_and(|e| ts >= e) {
            let id = rule.id.clone();
            self.forget(slot, &id);
            return;
        }
        let cooling = rule.last_fired.is_some_and(|last| ts < last + rule.cooldown);
        if cooling {
            // Still armed: an `Above`/`Below` rule fires once the cooldown is over
            // if its condition still holds; a crossing is a moment and is missed.
            let (pair, field, kind) = (rule.pair, rule.field, rule.kind);
            let book = self.book_mut(pair, field);
            index_insert(book.armed_index(&kind).expect("threshold kind"), kind.threshold(), slot);
            return;
        }
        fired.push(AlertFired {
            rule_id: rule.id.clone(),
            pair: rule.pair,
            condition: rule.condition.clone(),
            value: price,
            previous,
            ts,
            source,
        });
        if rule.once {
            let id = rule.id.clone();
            self.forget(slot, &id);
            return;
        }
        rule.last_fired = Some(ts);
        rule.armed = false;
        let (pair, field, rising, level) = (rule.pair, rule.field, rule.kind.rising(), rule.rearm_level());
        index_insert(self.book_mut(pair, field).rearm_index(rising), level, slot);
    }

    #[allow(clippy::too_many_arguments)]
    fn check_pct(
        &mut self,
        pair: Pair,
        field: PriceField,
        slot: RuleId,
        price: Decimal,
        ts: DateTime<Utc>,
        source: SourceName,
        fired: &mut Vec<AlertFired>,
    ) {
        let Some(rule) = self.rules[slot].as_ref() else {
            return;
        };
        let Kind::Pct { percent, window } = rule.kind else {
            return;
        };
        let history = &self.books[&pair][field_index(field)]
            .as_ref()
            .expect("book exists")
            .history;
        let start = ts - window;
        let first = history.partition_point(|(t, _)| *t < start);
        let Some(&(_, reference)) = history.get(first) else {
            return;
        };
        if reference.is_zero() {
            return;
        }
        let change = (price - reference) / reference * Decimal::ONE_HUNDRED;
        let rising = percent >= Decimal::ZERO;
        let holds = if rising { change >= percent } else { change <= percent };
        let rule = self.rules[slot].as_mut().expect("checked above");
        if !rule.armed {
            let back = if rising {
                change <= percent - rule.rearm
            } else {
                change >= percent + rule.rearm
            };
            if back && !holds {
                rule.armed = true;
            }
            return;
        }
        if !holds {
            return;
        }
        if rule.expires.is_some_and(|e| ts >= e) {
            let id = rule.id.clone();
            self.forget(slot, &id);
            return;
        }
        if rule.last_fired.is_some_and(|last| ts < last + rule.cooldown) {
            return;
        }
        fired.push(AlertFired {
            rule_id: rule.id.clone(),
            pair,
            condition: rule.condition.clone(),
            value: price,
            previous: Some(reference),
            ts,
            source,
        });
        if rule.once {
            let id = rule.id.clone();
            self.forget(slot, &id);
        } else {
            rule.last_fired = Some(ts);
            rule.armed = false;
        }
    }

    /// Drop a rule that is no longer in any threshold index (fired once, or expired while firing).
    fn forget(&mut self, slot: RuleId, id: &Arc<str>) {
        if let Some(rule) = self.rules[slot].take() {
            if let Kind::Pct { .. } = rule.kind {
                let book = self.book_mut(rule.pair, rule.field);
                book.pct.retain(|r| *r != slot);
            }
            if let Some(expires) = rule.expires {
                if let Some(ids) = self.expiries.get_mut(&expires) {
                    ids.retain(|r| *r != slot);
                }
            }
        }
        self.by_id.remove(id);
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rust_decimal_macros::dec;

    use super::*;

    fn rule(id: &str, condition: Condition, trigger: Trigger) -> AlertRule {
        AlertRule {
            id: id.into(),
            pair: "EUR/USD".parse().unwrap(),
            condition,
            trigger,
            price: PriceField::Mid,
            expires: None,
        }
    }

    fn every(cooldown_s: u64, rearm: Decimal) -> Trigger {
        Trigger::Every {
            cooldown: Duration::from_secs(cooldown_s),
            rearm,
        }
    }

    /// Feed mids at one-second steps; returns the ids fired at each step.
    fn feed(book: &mut RuleBook, prices: &[Decimal]) -> Vec<Vec<String>> {
        let source = SourceName::intern("t").unwrap();
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        prices
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let sample = Sample {
                    pair: "EUR/USD".parse().unwrap(),
                    bid: *p,
                    ask: *p,
                    ts: t0 + chrono::Duration::seconds(i as i64),
                    source,
                };
                let mut ids: Vec<String> = book.on_sample(sample).iter().map(|f| f.rule_id.to_string()).collect();
                ids.sort();
                ids
            })
            .collect()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn crossing_needs_a_previous_sample_on_the_other_side() {
        let mut book = RuleBook::new();
        book.add(&rule("up", Condition::CrossingUp(dec!(1.10)), Trigger::Once))
            .unwrap();
        book.add(&rule("down", Condition::CrossingDown(dec!(1.10)), Trigger::Once))
            .unwrap();
        // First sample already above: no previous, so no crossing.
        let fired = feed(&mut book, &[dec!(1.12), dec!(1.11), dec!(1.09), dec!(1.10), dec!(1.11)]);
        assert_eq!(fired, vec![vec![], vec![], ids(&["down"]), ids(&["up"]), vec![]]);
        assert!(book.is_empty(), "once-rules retire after firing");
    }

    #[test]
    fn state_rules_fire_at_once_when_true() {
        let mut book = RuleBook::new();
        book.add(&rule("above", Condition::Above(dec!(1.10)), Trigger::Once))
            .unwrap();
        book.add(&rule("below", Condition::Below(dec!(1.20)), Trigger::Once))
            .unwrap();
        let fired = feed(&mut book, &[dec!(1.15)]);
        assert_eq!(fired, vec![ids(&["above", "below"])], "true on the first sample fires");
        // Added while the last price already satisfies it: fires at creation.
        let now = book
            .add(&rule("late", Condition::Above(dec!(1.00)), Trigger::Once))
            .unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].value, dec!(1.15));
    }

    #[test]
    fn every_with_rearm_band_is_hysteresis() {
        let mut book = RuleBook::new();
        book.add(&rule("a", Condition::Above(dec!(1.1000)), every(0, dec!(0.0010))))
            .unwrap();
        let prices = [dec!(1.1005), dec!(1.0999), dec!(1.1003), dec!(1.0989), dec!(1.1001)];
        // Fires at 1.1005; dips to 1.0999 (not below 1.0990): stays disarmed, 1.1003 does not fire;
        // 1.0989 re-arms; 1.1001 fires again.
        assert_eq!(
            feed(&mut book, &prices),
            vec![ids(&["a"]), vec![], vec![], vec![], ids(&["a"])]
        );
    }

    #[test]
    fn cooldown_delays_a_state_rule_and_drops_a_crossing() {
        let mut book = RuleBook::new();
        book.add(&rule("state", Condition::Above(dec!(1.10)), every(3, dec!(0))))
            .unwrap();
        book.add(&rule("cross", Condition::CrossingUp(dec!(1.10)), every(3, dec!(0))))
            .unwrap();
        // t0 1.11: state fires (the crossing has no previous sample).
        // t1 1.09: state re-arms.
        // t2 1.11: state holds but cools until t3, so it waits armed; the crossing fires.
        // t3 1.09: the crossing re-arms.
        // t4 1.11: state fires (cooldown over); the crossing is inside its cooldown and is missed.
        // t5, t6 1.12: state disarmed, no new crossing.
        let prices = [
            dec!(1.11),
            dec!(1.09),
            dec!(1.11),
            dec!(1.09),
            dec!(1.11),
            dec!(1.12),
            dec!(1.12),
        ];
        let fired = feed(&mut book, &prices);
        assert_eq!(
            fired,
            vec![
                ids(&["state"]),
                vec![],
                ids(&["cross"]),
                vec![],
                ids(&["state"]),
                vec![],
                vec![]
            ]
        );
    }

    #[test]
    fn pct_change_over_a_window() {
        let mut book = RuleBook::new();
        book.add(&rule(
            "jump",
            Condition::PctChange {
                percent: dec!(1),
                window: Duration::from_secs(2),
            },
            Trigger::Once,
        ))
        .unwrap();
        book.add(&rule(
            "drop",
            Condition::PctChange {
                percent: dec!(-2),
                window: Duration::from_secs(10),
            },
            Trigger::Once,
        ))
        .unwrap();
        // +0.5% per step: 2 s window sees at most ~1% (steps 0→2: 1.0 → 1.01 = +1%).
        // Falls 2.5% from the window's first sample at t4.
        let fired = feed(
            &mut book,
            &[dec!(1.000), dec!(1.005), dec!(1.010), dec!(0.990), dec!(0.975)],
        );
        assert_eq!(fired, vec![vec![], vec![], ids(&["jump"]), vec![], ids(&["drop"])]);
    }

    #[test]
    fn expiry_and_removal() {
        let mut book = RuleBook::new();
        let mut r = rule("soon", Condition::Above(dec!(1.10)), Trigger::Once);
        r.expires = Some("2026-01-01T00:00:01Z".parse().unwrap());
        book.add(&r).unwrap();
        book.add(&rule("gone", Condition::Below(dec!(1.00)), Trigger::Once))
            .unwrap();
        assert!(book.remove("gone"));
        assert!(!book.remove("gone"));
        // t0 below threshold, t1 (= expiry) above: expired, no firing.
        assert_eq!(
            feed(&mut book, &[dec!(1.05), dec!(1.15)]),
            vec![Vec::<String>::new(), vec![]]
        );
        assert!(book.is_empty());
        let mut r = rule("wall", Condition::Above(dec!(9)), Trigger::Once);
        r.expires = Some("2026-01-01T00:00:00Z".parse().unwrap());
        book.add(&r).unwrap();
        assert_eq!(book.expire("2026-01-02T00:00:00Z".parse().unwrap()), 1);
        assert!(book.is_empty());
    }

    #[test]
    fn duplicates_and_invalid_rules_are_refused() {
        let mut book = RuleBook::new();
        book.add(&rule("a", Condition::Above(dec!(1)), Trigger::Once)).unwrap();
        assert!(matches!(
            book.add(&rule("a", Condition::Above(dec!(2)), Trigger::Once)),
            Err(RuleError::Duplicate(_))
        ));
        assert!(matches!(
            book.add(&rule("b", Condition::Above(dec!(-1)), Trigger::Once)),
            Err(RuleError::Invalid(..))
        ));
    }

    #[test]
    fn a_move_only_touches_rules_between_the_two_prices() {
        // 100,000 crossing rules spread over 1.0000..1.9999; a move of 1.5000 → 1.5003
        // fires exactly the three thresholds in between.
        let mut book = RuleBook::new();
        for i in 0..100_000 {
            let t = Decimal::new(10_000 + (i % 10_000), 4);
            book.add(&rule(&format!("r{i}"), Condition::CrossingUp(t), Trigger::Once))
                .unwrap();
        }
        let fired = feed(&mut book, &[dec!(1.5000), dec!(1.5003)]);
        assert_eq!(fired[0].len(), 0);
        assert_eq!(fired[1].len(), 30, "thresholds 1.5001..=1.5003, ten rules each");
    }
}
