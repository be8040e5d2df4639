//! Realised volatility: the standard deviation of log returns, annualised.
//!
//! Statistics, so `f64` (prices stay decimal everywhere else).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::pair::Pair;
use super::source::SourceName;

/// One volatility reading of a pair from one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volatility {
    pub pair: Pair,
    pub source: SourceName,
    /// The span the returns were taken over (`"30d"`).
    #[serde(with = "fxflow_engine::duration")]
    pub window: Duration,
    /// The end of the span: the returns are those of prices stamped in `[ts - window, ts)`.
    pub ts: DateTime<Utc>,
    /// The annualised sample standard deviation of the log returns of the mid
    /// (0.08 is 8% a year); how it is annualised is the stage's `annualise`.
    pub volatility: f64,
    /// How many returns it was computed from.
    pub samples: u64,
}

impl Volatility {
    /// The window as the stores and the API name it (`"30d"`).
    pub fn window_name(&self) -> String {
        fxflow_engine::duration::format(&self.window)
    }
}
