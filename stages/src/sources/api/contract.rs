//! What the OpenAPI document promises about each input, and the checks that
//! keep the promise: every pattern the document states is a constant here,
//! and the handlers check their input against that same constant, so a
//! request the schema admits is one the server reads the same way, and a
//! request it refuses is refused (the fuzz test holds both to it).
//!
//! The `#[utoipa::path]` and `#[param]` attributes need literal strings, so
//! they repeat the constants; a test reads the document back and checks that
//! each parameter carries its constant.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// A pair in a path or a filter: `EURUSD`, `EUR-USD`, `EUR_USD`, `EUR/USD`, any case.
pub const PAIR: &str = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$";
/// A comma-separated list of pairs, no spaces.
pub const PAIRS: &str = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}(,[A-Za-z]{3}[-_/]?[A-Za-z]{3})*$";
/// A currency code: three letters, any case.
pub const CURRENCY: &str = r"^[A-Za-z]{3}$";
/// A comma-separated list of currency codes, no spaces.
pub const CURRENCIES: &str = r"^[A-Za-z]{3}(,[A-Za-z]{3})*$";
/// An amount to convert: digits with an optional fraction, at most 15 + 12 digits.
pub const AMOUNT: &str = r"^[0-9]{1,15}(\.[0-9]{1,12})?$";
/// A length of time longer than zero (a candle interval, a volatility or alert window).
pub const POSITIVE_DURATION: &str = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$";
/// A length of time, zero allowed (a cooldown).
pub const DURATION: &str = r"^(0|[1-9][0-9]{0,5})(ms|s|m|h|d)$";
/// A page cursor as the API issues it (base64url, no padding).
pub const CURSOR: &str = r"^[A-Za-z0-9_-]{1,1024}$";
/// A rule id as the API issues it (and the pipeline files' ids).
pub const RULE_ID: &str = r"^[A-Za-z0-9._-]{1,128}$";
/// A provider name (`ecb`, `oanda`).
pub const SOURCE: &str = r"^[a-z0-9][a-z0-9_.-]{0,63}$";
/// A decimal sent as a JSON string: an optional minus, at most 9 digits
/// before the point (no leading zeros) and 19 after — always exact in 28 digits.
pub const DECIMAL: &str = r"^-?(0|[1-9][0-9]{0,8})(\.[0-9]{1,19})?$";
/// [`DECIMAL`] without a sign.
pub const NON_NEGATIVE_DECIMAL: &str = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,19})?$";
/// Zero as [`DECIMAL`] writes it (`0`, `-0.00`): what "not zero" excludes.
pub const ZERO_DECIMAL: &str = r"^-?0(\.0+)?$";
/// A candle interval: a whole number of seconds, minutes, hours or days.
pub const CANDLE_INTERVAL: &str = r"^[1-9][0-9]{0,5}(s|m|h|d)$";

/// [`NON_NEGATIVE_DECIMAL`] above zero, or with `signed` [`DECIMAL`] but
/// zero: no look-ahead (not every schema tool has it), so "a fraction of at
/// most 19 digits with a non-zero one" is spelled out by where that digit is.
pub fn non_zero_decimal(signed: bool) -> &'static str {
    static PATTERNS: OnceLock<[&'static str; 2]> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let fractions: Vec<String> = (0..19).map(|k| format!("0{{{k}}}[1-9][0-9]{{0,{}}}", 18 - k)).collect();
        let body = format!(r"([1-9][0-9]{{0,8}}(\.[0-9]{{1,19}})?|0\.({}))", fractions.join("|"));
        [
            Box::leak(format!("^{body}$").into_boxed_str()),
            Box::leak(format!("^-?{body}$").into_boxed_str()),
        ]
    })[usize::from(signed)]
}

/// A webhook URL: http(s), a host name with a dot, an IPv4 address or `localhost`, an
/// optional port and path (whether the host may be private is the deployment's call).
pub const WEBHOOK_URL: &str = r"^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|localhost)(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$";

/// An email address: a plain local part, `@`, a host name with a dot.
pub const EMAIL: &str =
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$";
/// Most addresses on one rule.
pub const MAX_EMAILS: usize = 10;

/// Bounds of a decimal sent as a JSON number: its magnitude is zero or at
/// least [`NUMBER_MIN`] (a double's 17 digits then need at most 19 places
/// after the point, as [`DECIMAL`] allows, so the rule reads back in the
/// string form), and below [`NUMBER_MAX`] (as [`DECIMAL`]'s 9 digits).
/// Smaller values go as strings.
pub const NUMBER_MIN: f64 = 1e-3;
pub const NUMBER_MAX: f64 = 1e9;

/// Whether `text` matches `pattern` (one of the constants above).
pub fn conforms(pattern: &'static str, text: &str) -> bool {
    static COMPILED: OnceLock<Mutex<HashMap<&'static str, regex::Regex>>> = OnceLock::new();
    let mut compiled = COMPILED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    compiled
        .entry(pattern)
        .or_insert_with(|| regex::Regex::new(pattern).expect("the contract's patterns compile"))
        .is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_say_what_the_server_reads() {
        for ok in ["EURUSD", "eur-usd", "EUR_USD", "EUR/USD"] {
            assert!(conforms(PAIR, ok), "{ok}");
        }
        for bad in ["EURUSD ", "EU/USD", "EUR//USD", "EUR USD", ""] {
            assert!(!conforms(PAIR, bad), "{bad:?}");
        }
        assert!(conforms(PAIRS, "EURUSD,usd-jpy") && !conforms(PAIRS, "EURUSD,") && !conforms(PAIRS, ""));
        for ok in [
            "1",
            "0.5",
            "-0.5",
            "0.0000000000000000001",
            "999999999",
            "1.1000000000000000888",
        ] {
            assert!(conforms(DECIMAL, ok), "{ok}");
        }
        for bad in [
            "01",
            "-",
            ".5",
            "1.",
            "1e3",
            "1000000000",
            "0.00000000000000000001",
            "+1",
            " 1",
        ] {
            assert!(!conforms(DECIMAL, bad), "{bad}");
        }
        assert!(conforms(ZERO_DECIMAL, "-0.00") && !conforms(ZERO_DECIMAL, "0.001"));
        let positive = non_zero_decimal(false);
        for ok in [
            "1",
            "0.5",
            "0.0000000000000000001",
            "999999999.9",
            "0.1000000000000000000",
        ] {
            assert!(conforms(positive, ok), "{ok}");
        }
        for bad in [
            "0",
            "0.0",
            "-1",
            "0.00000000000000000000",
            "0.00000000000000000001",
            "1000000000",
        ] {
            assert!(!conforms(positive, bad), "{bad}");
        }
        assert!(conforms(non_zero_decimal(true), "-0.5") && !conforms(non_zero_decimal(true), "-0.00"));
        assert!(conforms(NON_NEGATIVE_DECIMAL, "0") && !conforms(NON_NEGATIVE_DECIMAL, "-0"));
        assert!(conforms(POSITIVE_DURATION, "30d") && !conforms(POSITIVE_DURATION, "0d"));
        assert!(!conforms(POSITIVE_DURATION, "01d") && !conforms(POSITIVE_DURATION, "1 d"));
        assert!(conforms(DURATION, "0s") && !conforms(DURATION, "00s"));
        assert!(conforms(WEBHOOK_URL, "https://hooks.example.com/services/T0/B0/x"));
        assert!(conforms(WEBHOOK_URL, "http://127.0.0.1:9/hook") && !conforms(WEBHOOK_URL, "https://256.0.0.1/x"));
        assert!(conforms(WEBHOOK_URL, "http://127.0.0.1:65535/") && !conforms(WEBHOOK_URL, "http://a.io:65536/"));
        assert!(!conforms(WEBHOOK_URL, "http://a.io:0/") && !conforms(WEBHOOK_URL, "http://a.io:080/"));
        assert!(!conforms(WEBHOOK_URL, "ftp://a.io/") && !conforms(WEBHOOK_URL, "http://[::1]/"));
        assert!(conforms(EMAIL, "desk.fx+alerts@bank.example.com") && !conforms(EMAIL, "desk@localhost"));
        assert!(!conforms(EMAIL, "a b@c.io") && !conforms(EMAIL, "Desk <d@c.io>") && !conforms(EMAIL, "@c.io"));
        assert!(!conforms(WEBHOOK_URL, "https://a.io/ x") && !conforms(WEBHOOK_URL, "https://u:p@a.io/"));
    }
}
