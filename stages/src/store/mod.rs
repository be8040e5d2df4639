//! The history store: rate history, alert rules and alert history behind one
//! interface, with a PostgreSQL and a SQLite implementation.
//!
//! The sinks (`Postgres`, `Sqlite`) write through it and the query API reads
//! through it, so neither cares which database runs: the worker set uses
//! PostgreSQL, the embedded default a SQLite file. Both implementations keep
//! the same contract, checked by one test that runs the same writes and reads
//! against each (`stages/tests/store_contract.rs`):
//!
//! - `write` stores a batch in one transaction (or, for large PostgreSQL
//!   batches, a few concurrent ones) and is idempotent on the natural keys:
//!   a redelivered batch adds no rows. Candles are upserted per (pair,
//!   interval, bucket, source): a later emission of a bar replaces the stored
//!   one, a final bar only by a final one ([`candle_replaces`]).
//! - Reads return exact decimals, ordered and paged by keys the indexes serve.

pub mod rule_cache;
pub mod sink;

pub use rule_cache::RuleCache;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::fx::{AlertRule, Candle, FxEvent, Ohlc, Pair};

/// Rate history, alert rules and alert history.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Store a batch: prices into the rate history, firings into the alert
    /// history, candles and volatility readings into theirs, rule changes into
    /// the rule table (the last change of a rule in the batch wins; a change
    /// without a rule deletes it). Other kinds are ignored. Idempotent: writing
    /// the same batch twice leaves the same rows.
    async fn write(&self, events: &[&FxEvent]) -> Result<(), StoreError>;

    /// One page of a pair's history, oldest first.
    async fn rates(&self, query: &RateQuery) -> Result<Vec<StoredRate>, StoreError>;

    /// Every price of `pairs` with `from <= ts < to` (of one `source` when given), in
    /// (ts, pair, source) order, as the samples the alert rules take, streamed from one query: a backtest reads millions of rows
    /// without holding them, and without paging (each page's keyset bound costs a new
    /// index descent, and a generic plan may not use it at all).
    fn rate_stream<'a>(
        &'a self,
        pairs: &'a [String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        source: Option<&'a str>,
    ) -> futures_util::stream::BoxStream<'a, Result<crate::fx::Price, StoreError>>;

    /// The newest stored price of a pair (any source), if any.
    async fn latest_rate(&self, pair: Pair) -> Result<Option<StoredRate>, StoreError>;

    /// One page of firings, newest first.
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;

    /// The stored rules, of one pair or all, by id.
    async fn rules(&self, pair: Option<Pair>) -> Result<Vec<AlertRule>, StoreError>;

    /// One stored rule with its firing count, if it exists.
    async fn rule(&self, id: &str) -> Result<Option<StoredRule>, StoreError>;

    /// One page of stored rules with their firing counts, by id.
    async fn rules_page(&self, query: &RuleQuery) -> Result<Vec<StoredRule>, StoreError>;

    /// How many rules a tenant has stored, and how many of them carry a webhook.
    async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError>;

    /// The price of each pair in force at `at`: its newest row stamped at or
    /// before `at` (any source). Pairs with no such row are left out.
    async fn rates_at(&self, pairs: &[Pair], at: DateTime<Utc>) -> Result<Vec<StoredRate>, StoreError>;

    /// One source's prices of `pairs` with `from <= ts <= to`, oldest first (ties by
    /// pair): the ECB's daily EUR rates behind the Frankfurter routes.
    async fn source_rates(
        &self,
        source: &str,
        pairs: &[Pair],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredRate>, StoreError>;

    /// The newest `ts` of `source`'s `pair` at or before `at` (the last day it published).
    async fn last_ts(&self, source: &str, pair: Pair, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// One page of a pair's candles of one interval, oldest first.
    async fn candles(&self, query: &CandleQuery) -> Result<Vec<StoredCandle>, StoreError>;

    /// Volatility readings of one window: each pair's newest, or every
    /// reading in a time range.
    async fn volatility(&self, query: &VolatilityQuery) -> Result<Vec<StoredVolatility>, StoreError>;

    /// Does the database answer? (For readiness.)
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What [`HistoryStore::candles`] returns: bars of `pair` at `interval` with
/// `from <= bucket < to`, ordered by `(bucket, source)`, at most `limit`,
/// after `after` (the last bar of the previous page) when given.
#[derive(Clone, Debug)]
pub struct CandleQuery {
    pub pair: Pair,
    /// As stored: `"1m"`, `"1h"` (see [`Candle::interval_name`]).
    pub interval: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub source: Option<String>,
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

/// A stored bar.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCandle {
    pub pair: Pair,
    pub interval: String,
    pub start: DateTime<Utc>,
    pub source: String,
    pub mid: Ohlc,
    pub bid: Option<Ohlc>,
    pub ask: Option<Ohlc>,
    pub ticks: i64,
    pub closed: bool,
}

/// What [`HistoryStore::volatility`] returns: readings of `window` (`"30d"`)
/// for `pairs` — with `range`, every reading with `from <= ts < to`, ordered by
/// `(pair, ts, source)`, at most `limit`; without, the newest of each pair.
#[derive(Clone, Debug)]
pub struct VolatilityQuery {
    pub pairs: Vec<Pair>,
    pub window: String,
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub limit: u32,
}

/// A stored volatility reading.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVolatility {
    pub pair: Pair,
    pub source: String,
    pub window: String,
    pub ts: DateTime<Utc>,
    pub volatility: f64,
    pub samples: i64,
}

/// What [`HistoryStore::rules_page`] returns: rules of `pair` (or all) in
/// `status` (or any), ordered by id, after `after`, at most `limit`. Status is
/// judged at `now`.
#[derive(Clone, Debug)]
pub struct RuleQuery {
    /// Only rules this tenant sees (its own and shared ones); None: every rule.
    pub tenant: Option<String>,
    pub pair: Option<Pair>,
    pub status: Option<RuleStatus>,
    pub after: Option<String>,
    pub limit: u32,
    pub now: DateTime<Utc>,
}

/// Where a rule stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// Checked against every sample.
    Active,
    /// A `Once` rule that fired: retired.
    Triggered,
    /// Past its `expires`.
    Expired,
}

impl RuleStatus {
    /// The status of `rule` at `now`, given how often it fired.
    pub fn of(rule: &AlertRule, fired_count: i64, now: DateTime<Utc>) -> RuleStatus {
        if matches!(rule.trigger, crate::fx::Trigger::Once) && fired_count > 0 {
            RuleStatus::Triggered
        } else if rule.expires.is_some_and(|e| e <= now) {
            RuleStatus::Expired
        } else {
            RuleStatus::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Active => "active",
            RuleStatus::Triggered => "triggered",
            RuleStatus::Expired => "expired",
        }
    }
}

/// A stored rule and what the alert history says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRule {
    pub rule: AlertRule,
    /// The owner (None: shared).
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub fired_count: i64,
    pub last_fired_at: Option<DateTime<Utc>>,
}

/// What [`HistoryStore::rates`] returns: prices of `pair` with `from <= ts < to`,
/// ordered by `(ts, source)`, at most `limit`, starting after `after` (the last
/// row of the previous page) when given.
#[derive(Clone, Debug)]
pub struct RateQuery {
    pub pair: Pair,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Only this source's prices.
    pub source: Option<String>,
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: u32,
}

/// What [`HistoryStore::alerts`] returns: firings with `from <= fired_at < to`,
/// of one rule and/or pair when given, newest first (ties by rule id and
/// source, descending), at most `limit`.
#[derive(Clone, Debug)]
pub struct AlertQuery {
    /// Only firings this tenant sees (of its own rules and of shared ones); None: every firing.
    pub tenant: Option<String>,
    pub rule_id: Option<String>,
    pub pair: Option<Pair>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Continue below this `(fired_at, rule_id, source)`: the last row of the previous page.
    pub before: Option<(DateTime<Utc>, String, String)>,
    pub limit: u32,
}

/// Whether a stored price was quoted by a provider or computed as a cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceKind {
    Quote,
    Cross,
}

impl PriceKind {
    /// A `Quote` is a quote; so is a `CrossRate` of a pair that involves its
    /// common currency (the provider's own quote, oriented by convention).
    /// Every other cross rate is computed.
    pub fn of(event: &FxEvent) -> PriceKind {
        match event {
            FxEvent::Quote(_) => PriceKind::Quote,
            FxEvent::CrossRate(c) if c.pair.involves(c.via) => PriceKind::Quote,
            _ => PriceKind::Cross,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PriceKind::Quote => "quote",
            PriceKind::Cross => "cross",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<PriceKind, StoreError> {
        match text {
            "quote" => Ok(PriceKind::Quote),
            "cross" => Ok(PriceKind::Cross),
            other => Err(StoreError::data(format!("unknown price kind {other:?}"))),
        }
    }
}

/// A row of the rate history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredRate {
    pub pair: Pair,
    pub ts: DateTime<Utc>,
    pub source: String,
    pub kind: PriceKind,
    pub bid: Decimal,
    pub ask: Decimal,
    pub mid: Decimal,
}

/// A row of the alert history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredAlert {
    pub rule_id: String,
    pub pair: Pair,
    pub condition: String,
    pub value: Decimal,
    pub previous: Option<Decimal>,
    pub fired_at: DateTime<Utc>,
    pub source: String,
    /// The rule's tenant (None: a shared rule's firing).
    pub tenant: Option<String>,
}

/// What one tenant keeps stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantUsage {
    pub rules: u64,
    pub webhooks: u64,
}

impl TenantUsage {
    /// From SQL's `(count(rules), count(webhooks))`.
    pub(crate) fn from_counts((rules, webhooks): (i64, i64)) -> Self {
        TenantUsage {
            rules: u64::try_from(rules).unwrap_or(0),
            webhooks: u64::try_from(webhooks).unwrap_or(0),
        }
    }
}

/// Why a store operation failed, and whether trying again may help
/// (connection lost, database busy) or not (the database refuses the data).
#[derive(Debug)]
pub struct StoreError {
    pub message: String,
    pub retryable: bool,
}

impl StoreError {
    pub fn retryable(message: impl fmt::Display) -> Self {
        StoreError {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// The data itself is the problem (refused by the database, unreadable when read back).
    pub fn data(message: impl fmt::Display) -> Self {
        StoreError {
            message: message.to_string(),
            retryable: false,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// The rule changes of a batch folded to the last change per rule id, in id
/// order (a stable lock order for concurrent writers): `(id, Some(rule))` is an
/// upsert, `(id, None)` a delete.
pub(crate) fn last_rule_changes<'a>(events: &[&'a FxEvent]) -> Vec<(&'a str, Option<&'a AlertRule>)> {
    let mut last = std::collections::BTreeMap::new();
    for event in events {
        if let FxEvent::AlertRuleChange(change) = event {
            last.insert(change.id.as_str(), change.rule.as_ref());
        }
    }
    last.into_iter().collect()
}

/// Whether `new` should replace the stored `old` bar of the same key: a final
/// bar is replaced only by a final one, an open bar by a final one or one with
/// at least as many ticks — so the same emissions in any order give one row.
/// (The SQL upserts say the same in their `WHERE`.)
pub fn candle_replaces(new: &Candle, old_closed: bool, old_ticks: u64) -> bool {
    new.closed || (!old_closed && new.ticks >= old_ticks)
}

/// The candles of a batch, one per (pair, interval, start, source): the one
/// [`candle_replaces`] keeps when a bar was emitted more than once (one
/// statement may not upsert a row twice).
pub(crate) fn candles_of<'a>(events: &[&'a FxEvent]) -> Vec<&'a Candle> {
    one_per_key(
        events,
        |e| match e {
            FxEvent::Candle(c) => Some(c.as_ref()),
            _ => None,
        },
        |c| (c.pair, c.interval, c.start, c.source),
        |new, old| candle_replaces(new, old.closed, old.ticks),
    )
}

/// The volatility readings of a batch, the last one per (pair, window, ts, source).
pub(crate) fn volatility_of<'a>(events: &[&'a FxEvent]) -> Vec<&'a crate::fx::Volatility> {
    one_per_key(
        events,
        |e| match e {
            FxEvent::Volatility(v) => Some(v),
            _ => None,
        },
        |v| (v.pair, v.window, v.ts, v.source),
        |_, _| true,
    )
}

/// The events `pick` takes from a batch, one per `key`: of two with one key,
/// the later replaces the earlier if `replaces(later, earlier)`.
fn one_per_key<'a, T, K: std::hash::Hash + Eq>(
    events: &[&'a FxEvent],
    pick: impl Fn(&'a FxEvent) -> Option<&'a T>,
    key: impl Fn(&T) -> K,
    replaces: impl Fn(&T, &T) -> bool,
) -> Vec<&'a T> {
    let mut kept: Vec<&T> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for item in events.iter().filter_map(|e| pick(e)) {
        match index.get(&key(item)) {
            Some(&i) => {
                if replaces(item, kept[i]) {
                    kept[i] = item;
                }
            }
            None => {
                index.insert(key(item), kept.len());
                kept.push(item);
            }
        }
    }
    kept
}

/// A rule as stored (JSON); a rule whose id differs from its change's id is stored under the change's id.
pub(crate) fn rule_json(id: &str, rule: &AlertRule) -> Result<String, StoreError> {
    let mut rule = rule.clone();
    rule.id = id.to_owned();
    serde_json::to_string(&rule).map_err(StoreError::data)
}

pub(crate) fn parse_rule(json: &str) -> Result<AlertRule, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::data(format!("stored rule is not readable: {e}")))
}

pub(crate) fn parse_pair(text: &str) -> Result<Pair, StoreError> {
    text.parse()
        .map_err(|e| StoreError::data(format!("stored pair {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::AlertRuleChange;

    fn change(id: &str, pair: Option<&str>) -> FxEvent {
        FxEvent::AlertRuleChange(Box::new(AlertRuleChange {
            id: id.into(),
            rule: pair.map(|p| {
                serde_json::from_value(serde_json::json!({
                    "id": id, "pair": p, "condition": {"Above": "1.5"}
                }))
                .unwrap()
            }),
        }))
    }

    #[test]
    fn the_last_change_of_each_rule_wins_in_id_order() {
        let events = [
            change("b", Some("EUR/USD")),
            change("a", Some("GBP/USD")),
            change("b", None),
            change("a", Some("USD/JPY")),
        ];
        let refs: Vec<&FxEvent> = events.iter().collect();
        let folded = last_rule_changes(&refs);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].0, "a");
        assert_eq!(folded[0].1.unwrap().pair.to_string(), "USD/JPY");
        assert_eq!(folded[1], ("b", None));
    }
}
