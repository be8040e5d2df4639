//! Cross rates: triangulation through a common currency, exactly as the desk does it.
//!
//! For X/Y through C (ARCHITECTURE.md §9, "FX rules that must be exact"):
//! - from X/C and C/Y: bid = bid(X/C)·bid(C/Y), ask = ask(X/C)·ask(C/Y);
//! - from X/C and Y/C: bid = bid(X/C)/ask(Y/C), ask = ask(X/C)/bid(Y/C);
//! - from C/X and C/Y: bid = bid(C/Y)/ask(C/X), ask = ask(C/Y)/bid(C/X);
//! - from C/X and Y/C: the inverse of the first case.
//!
//! Each target is computed in its own orientation directly from the legs, so
//! there is one rounding (rust_decimal's 28 significant digits), never an
//! inversion of an already rounded result.

use super::source::SourceName;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::currency::Currency;
use super::pair::Pair;

/// A cross rate derived from a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossRate {
    pub pair: Pair,
    pub bid: Decimal,
    pub ask: Decimal,
    pub ts: DateTime<Utc>,
    pub source: SourceName,
    /// The common currency of the legs; for a pair that involves it, the quote itself.
    pub via: Currency,
}

impl CrossRate {
    pub fn mid(&self) -> Decimal {
        super::quote::mid(self.bid, self.ask)
    }
}

/// One side of a triangle: a quoted pair with its bid and ask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Leg {
    pub pair: Pair,
    pub bid: Decimal,
    pub ask: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossError {
    #[error("{0} and {1} share no currency")]
    NoCommonCurrency(Pair, Pair),
    #[error("{target} cannot be made from {a} and {b}")]
    WrongTarget { target: Pair, a: Pair, b: Pair },
    #[error("a leg has a zero price")]
    Zero,
    #[error("the result overflows")]
    Overflow,
}

fn mul(a: Decimal, b: Decimal) -> Result<Decimal, CrossError> {
    a.checked_mul(b).ok_or(CrossError::Overflow)
}

fn div(a: Decimal, b: Decimal) -> Result<Decimal, CrossError> {
    if b.is_zero() {
        return Err(CrossError::Zero);
    }
    a.checked_div(b).ok_or(CrossError::Overflow)
}

/// One currency's quote against the common currency C, as a triangulation side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Side {
    /// True when quoted as `X/C`, false when quoted as `C/X`.
    pub quoted_first: bool,
    pub bid: Decimal,
    pub ask: Decimal,
}

impl Side {
    /// The side of `currency` in `leg`, which must pair it with the common currency.
    pub fn of(currency: Currency, leg: &Leg) -> Side {
        Side {
            quoted_first: leg.pair.base == currency,
            bid: leg.bid,
            ask: leg.ask,
        }
    }

    /// Bid and ask are the same number written the same way (a mid-only provider).
    /// Comparing the representation is exact and much cheaper than a numeric compare.
    fn mid_only(&self) -> bool {
        self.bid.serialize() == self.ask.serialize()
    }

    fn get(&self, bid: bool) -> Decimal {
        if bid {
            self.bid
        } else {
            self.ask
        }
    }
}

/// X/Y from the sides of X and Y against a common currency C — the four cases
/// of the module docs. When both sides are mid-only the two results are the
/// same number and it is computed once.
pub fn triangulate(x: &Side, y: &Side) -> Result<(Decimal, Decimal), CrossError> {
    let compute = |bid: bool| match (x.quoted_first, y.quoted_first) {
        // X/C and C/Y
        (true, false) => mul(x.get(bid), y.get(bid)),
        // X/C and Y/C
        (true, true) => div(x.get(bid), y.get(!bid)),
        // C/X and C/Y
        (false, false) => div(y.get(bid), x.get(!bid)),
        // C/X and Y/C: X/Y = 1 / (C/X · Y/C)
        (false, true) => div(Decimal::ONE, mul(x.get(!bid), y.get(!bid))?),
    };
    let bid = compute(true)?;
    if x.mid_only() && y.mid_only() {
        return Ok((bid, bid));
    }
    Ok((bid, compute(false)?))
}

/// The bid and ask of `target` from two legs that share one currency.
pub fn cross(a: &Leg, b: &Leg, target: Pair) -> Result<(Decimal, Decimal), CrossError> {
    let common = [a.pair.base, a.pair.quote]
        .into_iter()
        .find(|c| b.pair.involves(*c))
        .ok_or(CrossError::NoCommonCurrency(a.pair, b.pair))?;
    // Name the legs after the target: `x` holds target.base, `y` holds target.quote.
    let (x, y) = if a.pair.other(common) == Some(target.base) && b.pair.other(common) == Some(target.quote) {
        (a, b)
    } else if b.pair.other(common) == Some(target.base) && a.pair.other(common) == Some(target.quote) {
        (b, a)
    } else {
        return Err(CrossError::WrongTarget {
            target,
            a: a.pair,
            b: b.pair,
        });
    };
    triangulate(&Side::of(target.base, x), &Side::of(target.quote, y))
}

/// The bid and ask of `target` from a single quote of the same two currencies.
pub fn orient(leg: &Leg, target: Pair) -> Result<(Decimal, Decimal), CrossError> {
    if leg.pair == target {
        Ok((leg.bid, leg.ask))
    } else if leg.pair.inverse() == target {
        super::quote::invert(leg.bid, leg.ask).ok_or(CrossError::Zero)
    } else {
        Err(CrossError::WrongTarget {
            target,
            a: leg.pair,
            b: leg.pair,
        })
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn leg(pair: &str, bid: Decimal, ask: Decimal) -> Leg {
        Leg {
            pair: pair.parse().unwrap(),
            bid,
            ask,
        }
    }

    fn p(pair: &str) -> Pair {
        pair.parse().unwrap()
    }

    #[test]
    fn worked_example_from_the_design() {
        // USD/JPY 119.25/119.65 and USD/CAD 1.0485/1.0535 → JPY/CAD 0.008763/0.008834.
        let usdjpy = leg("USD/JPY", dec!(119.25), dec!(119.65));
        let usdcad = leg("USD/CAD", dec!(1.0485), dec!(1.0535));
        let (bid, ask) = cross(&usdjpy, &usdcad, p("JPY/CAD")).unwrap();
        assert_eq!(bid.round_dp(6), dec!(0.008763));
        assert_eq!(ask.round_dp(6), dec!(0.008834));
        assert_eq!(bid, dec!(1.0485) / dec!(119.65), "bid(C/Y)/ask(C/X), one rounding");
        assert_eq!(ask, dec!(1.0535) / dec!(119.25));
        // The market-convention pair, computed directly.
        let (bid, ask) = cross(&usdjpy, &usdcad, p("CAD/JPY")).unwrap();
        assert_eq!(bid, dec!(119.25) / dec!(1.0535));
        assert_eq!(ask, dec!(119.65) / dec!(1.0485));
        assert!(bid < ask);
    }

    #[test]
    fn all_four_leg_orientations() {
        let eurusd = leg("EUR/USD", dec!(1.1000), dec!(1.1002));
        let usdjpy = leg("USD/JPY", dec!(150.00), dec!(150.02));
        let gbpusd = leg("GBP/USD", dec!(1.2500), dec!(1.2503));
        // X/C and C/Y: EUR/JPY = EUR/USD · USD/JPY
        assert_eq!(
            cross(&eurusd, &usdjpy, p("EUR/JPY")).unwrap(),
            (dec!(1.1000) * dec!(150.00), dec!(1.1002) * dec!(150.02))
        );
        // X/C and Y/C: EUR/GBP = EUR/USD / GBP/USD
        assert_eq!(
            cross(&eurusd, &gbpusd, p("EUR/GBP")).unwrap(),
            (dec!(1.1000) / dec!(1.2503), dec!(1.1002) / dec!(1.2500))
        );
        // C/X and Y/C: JPY/EUR = 1/(USD/JPY · EUR/USD)
        let (bid, ask) = cross(&usdjpy, &eurusd, p("JPY/EUR")).unwrap();
        assert_eq!(bid, Decimal::ONE / (dec!(150.02) * dec!(1.1002)));
        assert_eq!(ask, Decimal::ONE / (dec!(150.00) * dec!(1.1000)));
        assert!(matches!(
            cross(&eurusd, &usdjpy, p("GBP/JPY")),
            Err(CrossError::WrongTarget { .. })
        ));
        let audnzd = leg("AUD/NZD", dec!(1), dec!(1));
        assert!(matches!(
            cross(&eurusd, &audnzd, p("EUR/AUD")),
            Err(CrossError::NoCommonCurrency(..))
        ));
    }

    #[test]
    fn inverse_rule() {
        let usdjpy = leg("USD/JPY", dec!(119.25), dec!(119.65));
        let (bid, ask) = orient(&usdjpy, p("JPY/USD")).unwrap();
        assert_eq!(bid, Decimal::ONE / dec!(119.65));
        assert_eq!(ask, Decimal::ONE / dec!(119.25));
    }
}
