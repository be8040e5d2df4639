//! Candles: open, high, low and close of a pair over an interval, in exact decimals.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::pair::Pair;
use super::source::SourceName;

/// The first, highest, lowest and last price of an interval (first and last by event time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ohlc {
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
}

impl Ohlc {
    /// One price: open = high = low = close.
    pub fn at(price: Decimal) -> Self {
        Ohlc {
            open: price,
            high: price,
            low: price,
            close: price,
        }
    }

    /// Widen by a later-or-earlier bar: `earlier`/`later` say whether it is
    /// the new first or last of the interval.
    pub fn merge(&mut self, other: &Ohlc, earlier: bool, later: bool) {
        if earlier {
            self.open = other.open;
        }
        if later {
            self.close = other.close;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
    }
}

/// An OHLC bar of one pair from one source over one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub pair: Pair,
    pub source: SourceName,
    /// The bar's length (`"1m"`, `"1h"`, `"1d"`).
    #[serde(with = "fxflow_engine::duration")]
    pub interval: Duration,
    /// The bar's first instant: a multiple of `interval` since the Unix epoch
    /// (whole minutes, hours, days at 00:00 UTC).
    pub start: DateTime<Utc>,
    /// Of the mid price.
    #[serde(flatten)]
    pub mid: Ohlc,
    /// Of the bid and the ask, when a price of the bar was two-sided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<Ohlc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<Ohlc>,
    /// Prices (ticks) the bar is made of.
    pub ticks: u64,
    /// The final bar. `false`: an update while the interval is still open, or
    /// a bar the input ended inside; a later one of the same start replaces it.
    pub closed: bool,
}

impl Candle {
    /// The instant after the bar: `start + interval`.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::MAX)
    }

    /// The interval as the stores and the API name it (`"1m"`).
    pub fn interval_name(&self) -> String {
        fxflow_engine::duration::format(&self.interval)
    }
}
