//! Currency names, ISO numeric codes and symbols as RubyMoney has them: Frankfurter's source
//! for `/v1/currencies` and `/v2/currencies`, so fxflow names currencies the same way.
//!
//! From RubyMoney/money `config/currency_iso.json` and `config/currency_backwards_compatible.json`
//! (EEK, LTL, LVL, MTL) at commit 53f9a6e2b0c2bbbbeb1419750389581c15a3b113 (MIT licence).
//! CYP, ROL, SIT and TRL are in neither file: Frankfurter then names a currency by its code.

/// (code, name, iso_numeric, symbol), sorted by code.
const MONEY: &[(&str, &str, &str, &str)] = &[
    ("AUD", "Australian Dollar", "036", "$"),
    ("BGN", "Bulgarian Lev", "975", "лв."),
    ("BRL", "Brazilian Real", "986", "R$"),
    ("CAD", "Canadian Dollar", "124", "$"),
    ("CHF", "Swiss Franc", "756", "CHF"),
    ("CNY", "Chinese Renminbi Yuan", "156", "¥"),
    ("CZK", "Czech Koruna", "203", "Kč"),
    ("DKK", "Danish Krone", "208", "kr."),
    ("EEK", "Estonian Kroon", "233", "KR"),
    ("EUR", "Euro", "978", "€"),
    ("GBP", "British Pound", "826", "£"),
    ("HKD", "Hong Kong Dollar", "344", "$"),
    ("HRK", "Croatian Kuna", "191", "kn"),
    ("HUF", "Hungarian Forint", "348", "Ft"),
    ("IDR", "Indonesian Rupiah", "360", "Rp"),
    ("ILS", "Israeli New Sheqel", "376", "₪"),
    ("INR", "Indian Rupee", "356", "₹"),
    ("ISK", "Icelandic Króna", "352", "kr"),
    ("JPY", "Japanese Yen", "392", "¥"),
    ("KRW", "South Korean Won", "410", "₩"),
    ("LTL", "Lithuanian Litas", "440", "Lt"),
    ("LVL", "Latvian Lats", "428", "Ls"),
    ("MTL", "Maltese Lira", "470", "₤"),
    ("MXN", "Mexican Peso", "484", "$"),
    ("MYR", "Malaysian Ringgit", "458", "RM"),
    ("NOK", "Norwegian Krone", "578", "kr"),
    ("NZD", "New Zealand Dollar", "554", "$"),
    ("PHP", "Philippine Peso", "608", "₱"),
    ("PLN", "Polish Złoty", "985", "zł"),
    ("RON", "Romanian Leu", "946", "Lei"),
    ("RUB", "Russian Ruble", "643", "₽"),
    ("SEK", "Swedish Krona", "752", "kr"),
    ("SGD", "Singapore Dollar", "702", "$"),
    ("SKK", "Slovak Koruna", "703", "Sk"),
    ("THB", "Thai Baht", "764", "฿"),
    ("TRY", "Turkish Lira", "949", "₺"),
    ("USD", "United States Dollar", "840", "$"),
    ("ZAR", "South African Rand", "710", "R"),
];

/// A code's RubyMoney entry.
pub fn find(code: &str) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    MONEY.binary_search_by(|m| m.0.cmp(code)).ok().map(|i| &MONEY[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorted_for_the_binary_search() {
        assert!(super::MONEY.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(super::find("USD").map(|m| m.1), Some("United States Dollar"));
        assert!(super::find("CYP").is_none());
    }
}
