//! ISO 4217 currency codes and the market-convention priority.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A currency, by its three-letter ISO 4217 code. `Copy`, three bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl std::hash::Hash for Currency {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(u32::from_le_bytes([self.0[0], self.0[1], self.0[2], 0]))
    }
}

/// Active ISO 4217 codes plus the historic ones that appear in the ECB history
/// (CYP, EEK, HRK, LTL, LVL, MTL, ROL, SIT, SKK, TRL). Sorted for binary search.
const KNOWN: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC",
    "CUP", "CVE", "CYP", "CZK", "DJF", "DKK", "DOP", "DZD", "EEK", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
    "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "LTL", "LVL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MTL", "MUR",
    "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "ROL", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP",
    "SIT", "SKK", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRL",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XAG", "XAU",
    "XCD", "XOF", "XPD", "XPF", "XPT", "YER", "ZAR", "ZMW", "ZWG",
];

/// English names (ISO 4217) of the currencies the ECB publishes and of other
/// widely traded ones. Sorted by code for binary search.
const NAMES: &[(&str, &str)] = &[
    ("AED", "UAE Dirham"),
    ("AUD", "Australian Dollar"),
    ("BGN", "Bulgarian Lev"),
    ("BRL", "Brazilian Real"),
    ("CAD", "Canadian Dollar"),
    ("CHF", "Swiss Franc"),
    ("CLP", "Chilean Peso"),
    ("CNY", "Chinese Yuan Renminbi"),
    ("COP", "Colombian Peso"),
    ("CYP", "Cyprus Pound"),
    ("CZK", "Czech Koruna"),
    ("DKK", "Danish Krone"),
    ("EEK", "Estonian Kroon"),
    ("EUR", "Euro"),
    ("GBP", "Pound Sterling"),
    ("HKD", "Hong Kong Dollar"),
    ("HRK", "Croatian Kuna"),
    ("HUF", "Hungarian Forint"),
    ("IDR", "Indonesian Rupiah"),
    ("ILS", "Israeli New Shekel"),
    ("INR", "Indian Rupee"),
    ("ISK", "Iceland Krona"),
    ("JPY", "Japanese Yen"),
    ("KRW", "South Korean Won"),
    ("LTL", "Lithuanian Litas"),
    ("LVL", "Latvian Lats"),
    ("MTL", "Maltese Lira"),
    ("MXN", "Mexican Peso"),
    ("MYR", "Malaysian Ringgit"),
    ("NOK", "Norwegian Krone"),
    ("NZD", "New Zealand Dollar"),
    ("PHP", "Philippine Peso"),
    ("PLN", "Polish Zloty"),
    ("ROL", "Romanian Leu (old)"),
    ("RON", "Romanian Leu"),
    ("RUB", "Russian Ruble"),
    ("SAR", "Saudi Riyal"),
    ("SEK", "Swedish Krona"),
    ("SGD", "Singapore Dollar"),
    ("SIT", "Slovenian Tolar"),
    ("SKK", "Slovak Koruna"),
    ("THB", "Thai Baht"),
    ("TRL", "Turkish Lira (old)"),
    ("TRY", "Turkish Lira"),
    ("TWD", "New Taiwan Dollar"),
    ("USD", "US Dollar"),
    ("ZAR", "South African Rand"),
];

/// Market-convention priority: a pair's base is the currency that comes first here.
pub const PRIORITY: [&str; 8] = ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"];

/// The eight majors the default pipelines monitor, in priority order.
pub fn majors() -> Vec<Currency> {
    PRIORITY.iter().map(|c| Currency::from_code(c)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", unknown_currency_text(.0))]
pub struct UnknownCurrency(pub String);

/// Why `code` is no currency with a rate: `XXX` and `XTS` are ISO 4217 codes,
/// but of "no currency" and of testing, so they are named for what they are.
fn unknown_currency_text(code: &str) -> String {
    match code.trim().to_ascii_uppercase().as_str() {
        "XXX" => "`XXX` is ISO 4217's code for \"no currency\": it has no exchange rate".to_owned(),
        "XTS" => "`XTS` is ISO 4217's code reserved for testing: it has no exchange rate".to_owned(),
        _ => format!("`{code}` is not an ISO 4217 currency code (three letters such as EUR, USD, JPY)"),
    }
}

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");
    pub const JPY: Currency = Currency(*b"JPY");

    fn from_code(code: &str) -> Currency {
        let b = code.as_bytes();
        Currency([b[0], b[1], b[2]])
    }

    /// Parse a code; case-insensitive, must be a known ISO 4217 code.
    pub fn parse(code: &str) -> Result<Currency, UnknownCurrency> {
        let upper = code.trim().to_ascii_uppercase();
        if upper.len() == 3 && KNOWN.binary_search(&upper.as_str()).is_ok() {
            Ok(Currency::from_code(&upper))
        } else {
            Err(UnknownCurrency(code.to_owned()))
        }
    }

    /// A code as three bytes (a binary wire form): exact, upper case, known.
    pub fn from_bytes(code: [u8; 3]) -> Result<Currency, UnknownCurrency> {
        match std::str::from_utf8(&code) {
            Ok(text) if KNOWN.binary_search(&text).is_ok() => Ok(Currency(code)),
            _ => Err(UnknownCurrency(String::from_utf8_lossy(&code).into_owned())),
        }
    }

    /// The code's three ASCII bytes.
    pub fn bytes(self) -> [u8; 3] {
        self.0
    }

    pub fn code(&self) -> &str {
        // Only ever built from ASCII codes.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Position in the convention list (0 = EUR), or `None` for other currencies.
    pub fn priority(self) -> Option<usize> {
        match &self.0 {
            b"EUR" => Some(0),
            b"GBP" => Some(1),
            b"AUD" => Some(2),
            b"NZD" => Some(3),
            b"USD" => Some(4),
            b"CAD" => Some(5),
            b"CHF" => Some(6),
            b"JPY" => Some(7),
            _ => None,
        }
    }

    /// The English name of the currency (ISO 4217), or the code itself for
    /// codes without a name here.
    pub fn name(self) -> &'static str {
        NAMES
            .binary_search_by(|(code, _)| code.as_bytes().cmp(&self.0[..]))
            .map(|i| NAMES[i].1)
            .unwrap_or_else(|_| KNOWN[KNOWN.binary_search(&self.code()).unwrap_or(0)])
    }

    /// Sort key of market convention: listed currencies by priority, then the rest alphabetically.
    pub fn convention_rank(self) -> (usize, Currency) {
        (self.priority().unwrap_or(usize::MAX), self)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = UnknownCurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Currency::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Currency {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "ISO 4217 code, e.g. \"EUR\"", "pattern": "^[A-Z]{3}$" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_list_is_sorted_for_binary_search() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_are_sorted_and_known() {
        assert!(NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(NAMES.iter().all(|(code, _)| KNOWN.contains(code)));
        assert_eq!(Currency::EUR.name(), "Euro");
        assert_eq!(Currency::parse("XAU").unwrap().name(), "XAU");
    }

    #[test]
    fn priority_follows_the_list() {
        for (i, code) in PRIORITY.iter().enumerate() {
            assert_eq!(Currency::parse(code).unwrap().priority(), Some(i));
        }
    }

    #[test]
    fn parses_codes() {
        assert_eq!(Currency::parse("eur").unwrap(), Currency::EUR);
        assert_eq!(Currency::parse("CYP").unwrap().code(), "CYP");
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("XXY").is_err());
        assert_eq!(Currency::EUR.priority(), Some(0));
        assert_eq!(Currency::JPY.priority(), Some(7));
        assert_eq!(Currency::parse("SEK").unwrap().priority(), None);
    }
}
