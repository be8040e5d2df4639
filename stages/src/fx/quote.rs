//! Quotes and snapshots, in exact decimals.

use super::source::SourceName;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::currency::Currency;
use super::pair::Pair;

/// A two-sided price from one source at one instant. Mid-only providers
/// (ECB, Frankfurter) give `bid == ask == mid`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub pair: Pair,
    pub bid: Decimal,
    pub ask: Decimal,
    pub ts: DateTime<Utc>,
    pub source: SourceName,
    /// Filled in by the `Enrich` stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<Enrichment>,
}

/// What `Enrich` adds to a valid quote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    /// Mid minus the previous accepted mid of the same pair and source (none for the first).
    pub change: Option<Decimal>,
    /// `(ask - bid) / pip`.
    pub spread_pips: Decimal,
}

/// Exact midpoint `(bid + ask) / 2`; no division when the quote is mid-only.
pub fn mid(bid: Decimal, ask: Decimal) -> Decimal {
    if bid == ask {
        bid
    } else {
        (bid + ask) * Decimal::new(5, 1)
    }
}

impl Quote {
    pub fn mid(&self) -> Decimal {
        mid(self.bid, self.ask)
    }

    /// The same price seen from the other side: bid(B/A) = 1/ask(A/B), ask(B/A) = 1/bid(A/B).
    /// `None` if a side is zero.
    pub fn inverse(&self) -> Option<Quote> {
        let (bid, ask) = invert(self.bid, self.ask)?;
        Some(Quote {
            pair: self.pair.inverse(),
            bid,
            ask,
            ts: self.ts,
            source: self.source,
            enrichment: None,
        })
    }
}

/// Invert a two-sided price; `None` if a side is zero.
pub fn invert(bid: Decimal, ask: Decimal) -> Option<(Decimal, Decimal)> {
    if bid.is_zero() || ask.is_zero() {
        return None;
    }
    if bid == ask {
        let v = Decimal::ONE.checked_div(bid)?;
        return Some((v, v));
    }
    Some((Decimal::ONE.checked_div(ask)?, Decimal::ONE.checked_div(bid)?))
}

/// All quotes of one provider at one instant, against one common `base`
/// currency. Cross rates need the whole snapshot, so it travels as one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuoteSnapshot {
    pub source: SourceName,
    pub ts: DateTime<Utc>,
    pub base: Currency,
    pub quotes: Vec<Quote>,
}
