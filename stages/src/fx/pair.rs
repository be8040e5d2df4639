//! Currency pairs, oriented by market convention.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::currency::{Currency, UnknownCurrency};

/// `base/quote`: a price of `x` means `x` units of `quote` per one `base`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub base: Currency,
    pub quote: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("`{0}` is not a currency pair; write it as \"EUR/USD\"")]
    Format(String),
    #[error(transparent)]
    Currency(#[from] UnknownCurrency),
    #[error("a pair needs two different currencies, got {0}/{0}")]
    Same(Currency),
}

/// Which of two currencies is the base by market convention: EUR > GBP > AUD >
/// NZD > USD > CAD > CHF > JPY; a listed currency is the base against an
/// unlisted one; two unlisted currencies are ordered alphabetically (a stable
/// choice — no convention is universal there).
fn base_first(a: Currency, b: Currency) -> bool {
    a.convention_rank() < b.convention_rank()
}

impl Pair {
    pub fn new(base: Currency, quote: Currency) -> Result<Pair, PairError> {
        if base == quote {
            return Err(PairError::Same(base));
        }
        Ok(Pair { base, quote })
    }

    /// The market-convention pair of two different currencies.
    pub fn market(a: Currency, b: Currency) -> Pair {
        if base_first(a, b) {
            Pair { base: a, quote: b }
        } else {
            Pair { base: b, quote: a }
        }
    }

    pub fn is_market_convention(&self) -> bool {
        base_first(self.base, self.quote)
    }

    pub fn inverse(&self) -> Pair {
        Pair {
            base: self.quote,
            quote: self.base,
        }
    }

    pub fn involves(&self, currency: Currency) -> bool {
        self.base == currency || self.quote == currency
    }

    /// The other currency of a pair that involves `currency`.
    pub fn other(&self, currency: Currency) -> Option<Currency> {
        if self.base == currency {
            Some(self.quote)
        } else if self.quote == currency {
            Some(self.base)
        } else {
            None
        }
    }

    fn is_jpy(&self) -> bool {
        self.base == Currency::JPY || self.quote == Currency::JPY
    }

    /// Decimal places shown to people: 3 for JPY pairs, 5 for the others.
    pub fn display_decimals(&self) -> u32 {
        if self.is_jpy() {
            3
        } else {
            5
        }
    }

    /// The size of one pip: 0.01 for JPY pairs, 0.0001 for the others.
    pub fn pip(&self) -> Decimal {
        if self.is_jpy() {
            Decimal::new(1, 2)
        } else {
            Decimal::new(1, 4)
        }
    }

    /// `value` rounded to the pair's display precision, as text.
    pub fn format_price(&self, value: Decimal) -> String {
        let dp = self.display_decimals();
        format!("{:.*}", dp as usize, value.round_dp(dp))
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.quote)
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Pair {
    type Err = PairError;

    /// `EUR/USD`, `EURUSD` or `EUR_USD` (OANDA's form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (a, b) = match s.split_once(['/', '_', '-']) {
            Some(parts) => parts,
            None if s.len() == 6 && s.is_ascii() => s.split_at(3),
            None => return Err(PairError::Format(s.to_owned())),
        };
        Pair::new(a.parse()?, b.parse()?)
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Pair {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pair".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "a currency pair, e.g. \"EUR/USD\"" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        code.parse().unwrap()
    }

    #[test]
    fn orientation_table() {
        // (a, b, expected market pair)
        let table = [
            ("USD", "EUR", "EUR/USD"),
            ("EUR", "GBP", "EUR/GBP"),
            ("JPY", "GBP", "GBP/JPY"),
            ("USD", "AUD", "AUD/USD"),
            ("NZD", "AUD", "AUD/NZD"),
            ("CAD", "USD", "USD/CAD"),
            ("CHF", "CAD", "CAD/CHF"),
            ("JPY", "CHF", "CHF/JPY"),
            ("JPY", "CAD", "CAD/JPY"),
            ("NZD", "USD", "NZD/USD"),
            ("SEK", "EUR", "EUR/SEK"),
            ("USD", "SEK", "USD/SEK"),
            ("SEK", "JPY", "JPY/SEK"),
            ("SEK", "NOK", "NOK/SEK"),
        ];
        for (a, b, want) in table {
            let pair = Pair::market(c(a), c(b));
            assert_eq!(pair.to_string(), want, "{a} vs {b}");
            assert!(pair.is_market_convention());
            assert_eq!(Pair::market(c(b), c(a)), pair, "symmetric");
        }
        assert!(!"USD/EUR".parse::<Pair>().unwrap().is_market_convention());
    }

    #[test]
    fn parses_and_formats() {
        assert_eq!("EURUSD".parse::<Pair>().unwrap().to_string(), "EUR/USD");
        assert_eq!("usd_jpy".parse::<Pair>().unwrap().to_string(), "USD/JPY");
        assert!("EUR/EUR".parse::<Pair>().is_err());
        assert!("EUR/XYZ".parse::<Pair>().is_err());
        let usdjpy: Pair = "USD/JPY".parse().unwrap();
        assert_eq!(usdjpy.format_price("149.1234".parse().unwrap()), "149.123");
        let eurusd: Pair = "EUR/USD".parse().unwrap();
        assert_eq!(eurusd.format_price("1.1".parse().unwrap()), "1.10000");
        assert_eq!(eurusd.pip(), "0.0001".parse().unwrap());
    }
}
