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
//!   a redelivered batch adds no rows.
//! - Reads return exact decimals, ordered and paged by keys the indexes serve.

pub mod postgres;
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::fx::{AlertRule, FxEvent, Pair};

/// Rate history, alert rules and alert history.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Store a batch: prices into the rate history, firings into the alert
    /// history, rule changes into the rule table (the last change of a rule in
    /// the batch wins; a change without a rule deletes it). Other kinds are
    /// ignored. Idempotent: writing the same batch twice leaves the same rows.
    async fn write(&self, events: &[&FxEvent]) -> Result<(), StoreError>;

    /// One page of a pair's history, oldest first.
    async fn rates(&self, query: &RateQuery) -> Result<Vec<StoredRate>, StoreError>;

    /// The newest stored price of a pair (any source), if any.
    async fn latest_rate(&self, pair: Pair) -> Result<Option<StoredRate>, StoreError>;

    /// One page of firings, newest first.
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;

    /// The stored rules, of one pair or all, by id.
    async fn rules(&self, pair: Option<Pair>) -> Result<Vec<AlertRule>, StoreError>;
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
/// of one rule and/or pair when given, newest first, at most `limit`.
#[derive(Clone, Debug)]
pub struct AlertQuery {
    pub rule_id: Option<String>,
    pub pair: Option<Pair>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
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
    pub fn of(event: &FxEvent) -> PriceKind {
        match event {
            FxEvent::Quote(_) => PriceKind::Quote,
            _ => PriceKind::Cross,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PriceKind::Quote => "quote",
            PriceKind::Cross => "cross",
        }
    }

    fn parse(text: &str) -> Result<PriceKind, StoreError> {
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
        FxEvent::AlertRuleChange(AlertRuleChange {
            id: id.into(),
            rule: pair.map(|p| {
                serde_json::from_value(serde_json::json!({
                    "id": id, "pair": p, "condition": {"Above": "1.5"}
                }))
                .unwrap()
            }),
        })
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
