//! The providers' formats, without I/O: the requests of one poll, and what each
//! response means — rates, or an error classified by what to do about it.
//!
//! Every number is read from the response's **text** into a `Decimal`: JSON
//! numbers are captured as raw tokens (`serde_json::value::RawValue`) and
//! parsed with `Decimal::from_str_exact`, so `0.1` is exactly 0.1 and a
//! 28-digit rate keeps every digit. Nothing passes through `f64`.
//!
//! The shared parts live here (requests, error classes, exact decimals, snapshot assembly); each
//! provider's response format is one file in `providers/`, with its real success and error shapes as
//! tests.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use reqwest::Url;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fx::quote::invert;
use crate::fx::{Currency, Pair, Quote, QuoteSnapshot, SourceName};

mod alpha_vantage;
mod ecb;
mod exchange_rate_api;
mod frankfurter;
mod oanda;
mod open_exchange_rates;

/// One rate provider: where it is, what one poll asks it, and what its answers mean. A new
/// provider is one file in `providers/` implementing this, and one line in [`providers!`].
pub trait RateApi: Sync {
    /// The default `source` name stamped on quotes.
    fn name(&self) -> &'static str;

    /// Whether it takes an API key.
    fn key_use(&self) -> KeyUse {
        KeyUse::None
    }

    /// Its real endpoint (the keyed one when `keyed`).
    fn default_url(&self, keyed: bool) -> &'static str;

    /// The only base it serves, if that is fixed.
    fn fixed_base(&self) -> Option<Currency> {
        None
    }

    /// Whether a poll needs the config's `account_id`.
    fn needs_account(&self) -> bool {
        false
    }

    /// Whether the key goes in an `Authorization: Bearer` header rather than the URL.
    fn bearer_key(&self) -> bool {
        false
    }

    /// The URL (and the pair it asks for, when one request asks for one pair) of each request of
    /// one poll, with `key` wherever the provider wants it in the URL.
    fn urls(&self, target: &Target<'_>, key: &str) -> Result<Vec<(Url, Option<Pair>)>, String>;

    /// The rates of a 2xx response (`status`: some providers report errors with a 200).
    fn read(
        &self,
        status: u16,
        body: &[u8],
        request: &Request,
        base: Currency,
        symbols: &[Currency],
    ) -> Result<Rates, PollError>;

    /// Its own message in an error body, and a classification when the body decides it.
    fn error_body(&self, body: &[u8]) -> Option<(String, Option<PollError>)> {
        Some((ErrorFields::of(body)?.message?, None))
    }
}

/// The registry of providers: the `Provider` names pipeline files use (with their reference
/// text), each with its implementation.
macro_rules! providers {
    ($($(#[doc = $doc:literal])* $variant:ident => $api:expr,)*) => {
        /// The rate provider polled, which fixes the request and the response format.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
        pub enum Provider {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Provider {
            /// Its implementation.
            pub fn api(self) -> &'static dyn RateApi {
                match self {
                    $(Provider::$variant => &$api,)*
                }
            }
        }
    };
}

providers! {
    /// Frankfurter API v1: `GET {url}/latest?base=USD&symbols=EUR,…`, one object with a `rates` map. Mid
    /// rates, daily, no key. Default url `https://api.frankfurter.dev/v1`.
    Frankfurter => frankfurter::Frankfurter { v2: false },
    /// Frankfurter API v2: `GET {url}/rates?base=USD&quotes=EUR,…`, an array of `{date, base, quote,
    /// rate}` rows. Mid rates, no key. Default url `https://api.frankfurter.dev/v2`.
    FrankfurterV2 => frankfurter::Frankfurter { v2: true },
    /// The ECB's daily euro reference rates, `eurofxref-daily.xml` (`url` is the whole file URL). Base
    /// EUR only, mid rates, no key.
    Ecb => ecb::Ecb,
    /// Open Exchange Rates: `GET {url}/latest.json?app_id=…&base=USD&symbols=…`. Needs `api_key_env`
    /// (the App ID). Mid rates. Default url `https://openexchangerates.org/api`.
    OpenExchangeRates => open_exchange_rates::OpenExchangeRates,
    /// ExchangeRate-API v6. Without `api_key_env`, the open-access endpoint `GET {url}/latest/USD`
    /// (default url `https://open.er-api.com/v6`); with it, `GET {url}/KEY/latest/USD` (default url
    /// `https://v6.exchangerate-api.com/v6`). Mid rates.
    ExchangeRateApi => exchange_rate_api::ExchangeRateApi,
    /// Alpha Vantage `CURRENCY_EXCHANGE_RATE`: one request per pair, in market orientation. Needs
    /// `api_key_env`. Bid and ask. Default url `https://www.alphavantage.co`.
    AlphaVantage => alpha_vantage::AlphaVantage,
    /// OANDA v20 pricing: `GET {url}/v3/accounts/{account_id}/pricing?instruments=EUR_USD,…` with the
    /// token of `api_key_env` as a bearer token. Best bid and ask. Default url
    /// `https://api-fxtrade.oanda.com` (practice accounts: `https://api-fxpractice.oanda.com`).
    Oanda => oanda::Oanda,
}

/// Whether a provider takes an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Required,
    Optional,
    None,
}

impl Provider {
    /// The default `source` name stamped on quotes.
    pub fn name(self) -> &'static str {
        self.api().name()
    }

    pub fn key_use(self) -> KeyUse {
        self.api().key_use()
    }

    /// The provider's real endpoint (the keyed one when `keyed`).
    pub fn default_url(self, keyed: bool) -> &'static str {
        self.api().default_url(keyed)
    }

    /// The only base the provider serves, if it is fixed.
    pub fn fixed_base(self) -> Option<Currency> {
        self.api().fixed_base()
    }
}

/// One HTTP request of a poll.
#[derive(Clone)]
pub struct Request {
    /// The URL to fetch, with the API key where the provider wants it in the URL.
    pub url: Url,
    /// The same URL with the key replaced by `REDACTED`: the only form logged or dead-lettered.
    pub shown: String,
    /// Sent as `Authorization: Bearer …` (OANDA).
    pub bearer: Option<String>,
    /// The pair this request asks for (Alpha Vantage: one request per pair).
    pub pair: Option<Pair>,
}

impl fmt::Debug for Request {
    /// Never prints the key or the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("url", &self.shown)
            .field("bearer", &self.bearer.as_ref().map(|_| "REDACTED"))
            .field("pair", &self.pair)
            .finish()
    }
}

const REDACTED: &str = "REDACTED";

/// What one poll asks for.
pub struct Target<'a> {
    pub provider: Provider,
    /// The API root (or, for `Ecb`, the file's URL).
    pub url: &'a Url,
    pub base: Currency,
    pub symbols: &'a [Currency],
    pub key: Option<&'a str>,
    pub account_id: Option<&'a str>,
}

/// `root` with `segments` appended to its path.
fn join(root: &Url, segments: &[&str]) -> Result<Url, String> {
    let mut url = root.clone();
    url.path_segments_mut()
        .map_err(|_| format!("`{root}` cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn codes(currencies: &[Currency]) -> String {
    currencies.iter().map(Currency::code).collect::<Vec<_>>().join(",")
}

/// OANDA's instrument name of a pair: `EUR_USD`.
pub fn instrument(pair: Pair) -> String {
    format!("{}_{}", pair.base, pair.quote)
}

/// The requests of one poll, in order.
pub fn requests(target: &Target<'_>) -> Result<Vec<Request>, String> {
    let key = target.key.unwrap_or("");
    // Built twice: with the key (sent) and with `REDACTED` (shown).
    let build = |key: &str| target.provider.api().urls(target, key);
    let real = build(key)?;
    let shown = build(REDACTED)?;
    let bearer = target.provider.api().bearer_key().then(|| key.to_owned());
    Ok(real
        .into_iter()
        .zip(shown)
        .map(|((url, pair), (shown, _))| Request {
            url,
            shown: shown.to_string(),
            bearer: bearer.clone(),
            pair,
        })
        .collect())
}

/// What to do about a failed poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The provider asks to slow down (HTTP 429, a quota note in a 200 body): wait at least its
    /// `Retry-After`, and back off.
    Throttled,
    /// Might pass on its own (connection refused, timeout, HTTP 5xx): retry with backoff.
    Transient,
    /// The response cannot be used (undecodable, wrong shape, a requested currency missing):
    /// dead-lettered with its body, retried with backoff.
    Invalid,
    /// The provider refused the request (bad key, unknown currency, not on the plan): dead-lettered,
    /// retried only after `max_backoff`, since retrying sooner cannot help.
    Fatal,
}

/// Why a poll produced no snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct PollError {
    pub class: ErrorClass,
    /// Short and stable: the `error_type` label of `fxflow_stage_errors_total` and the dead letter's reason.
    pub reason: &'static str,
    pub message: String,
    /// The provider's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl PollError {
    pub fn new(class: ErrorClass, reason: &'static str, message: impl Into<String>) -> Self {
        PollError {
            class,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn throttled(message: impl Into<String>) -> Self {
        PollError::new(ErrorClass::Throttled, "throttled", message)
    }

    pub fn bad_response(message: impl Into<String>) -> Self {
        PollError::new(ErrorClass::Invalid, "bad_response", message)
    }

    fn fatal(message: impl Into<String>) -> Self {
        PollError::new(ErrorClass::Fatal, "provider_error", message)
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        PollError::new(ErrorClass::Fatal, "unauthorized", message)
    }

    /// Whether the failure goes to the error output: responses that came back but could not be used.
    pub fn is_dead_lettered(&self) -> bool {
        matches!(self.class, ErrorClass::Invalid | ErrorClass::Fatal)
    }
}

/// One price as the provider gave it: `pair` = `bid`/`ask` units of its quote per one of its base.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub pair: Pair,
    pub bid: Decimal,
    pub ask: Decimal,
    /// The provider's time of this price, when it gives one per price.
    pub ts: Option<DateTime<Utc>>,
}

/// What one response held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// The provider's time of the whole response, when it gives one.
    pub ts: Option<DateTime<Utc>>,
    pub rates: Vec<Rate>,
}

/// A decimal from a JSON value's text: a number token or a string holding one.
pub fn decimal(raw: &RawValue) -> Result<Decimal, String> {
    let text = raw.get().trim();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
        decimal_text(inner.trim())
    } else {
        decimal_text(text)
    }
}

/// A decimal from text such as `1.1617`, `-3`, `6.5e-05`. Refuses anything it would have to round.
pub fn decimal_text(text: &str) -> Result<Decimal, String> {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    let parsed = if !plain {
        None
    } else if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    };
    parsed.ok_or_else(|| format!("`{text}` is not an exact decimal number"))
}

fn date_at_midnight(text: &str) -> Result<DateTime<Utc>, String> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| format!("bad date `{text}`"))?;
    Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

fn unix_seconds(raw: &RawValue) -> Result<DateTime<Utc>, String> {
    let text = raw.get().trim().trim_matches('"');
    text.parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| format!("bad unix timestamp `{text}`"))
}

fn message_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "empty body".into()
    } else {
        text
    }
}

/// Read one response: rates, or the failure classified. `status` is the HTTP status (a 304 is
/// handled before this), `retry_after` its `Retry-After`.
pub fn read(
    provider: Provider,
    request: &Request,
    base: Currency,
    symbols: &[Currency],
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Rates, PollError> {
    let result = if (200..300).contains(&status) {
        provider.api().read(status, body, request, base, symbols)
    } else {
        Err(http_error(provider, status, body))
    };
    result.map_err(|mut e| {
        if e.class == ErrorClass::Throttled {
            e.retry_after = retry_after;
        }
        e
    })
}

/// A non-2xx response: the status decides, refined by the provider's error body.
fn http_error(provider: Provider, status: u16, body: &[u8]) -> PollError {
    let message = match error_body(provider, body) {
        Some((_, Some(known))) => return known,
        Some((message, None)) => format!("HTTP {status}: {message}"),
        None => format!("HTTP {status}: {}", message_of(body)),
    };
    match status {
        429 => PollError::throttled(message),
        408 | 500..=599 => PollError::new(ErrorClass::Transient, "server_error", message),
        401 | 403 => PollError::unauthorized(message),
        _ => PollError::fatal(message),
    }
}

/// The provider's own error message in a body, and a classification when the body decides it.
fn error_body(provider: Provider, body: &[u8]) -> Option<(String, Option<PollError>)> {
    provider.api().error_body(body)
}

/// The fields providers put their error messages in (each reads the ones it uses).
#[derive(Deserialize)]
struct ErrorFields {
    // Frankfurter, Open Exchange Rates
    message: Option<String>,
    description: Option<String>,
    // OANDA
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
    // ExchangeRate-API
    #[serde(rename = "error-type")]
    error_type: Option<String>,
}

impl ErrorFields {
    fn of(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

type RawMap = HashMap<String, Box<RawValue>>;

/// `rates[X] = r` against `base`: one mid-only rate `base/X = r` per requested symbol present.
fn rate_map(rates: &RawMap, base: Currency, symbols: &[Currency]) -> Result<Vec<Rate>, PollError> {
    symbols
        .iter()
        .filter_map(|symbol| rates.get(symbol.code()).map(|raw| (symbol, raw)))
        .map(|(symbol, raw)| {
            let value = decimal(raw).map_err(|e| PollError::bad_response(format!("{symbol}: {e}")))?;
            Ok(Rate {
                pair: Pair { base, quote: *symbol },
                bid: value,
                ask: value,
                ts: None,
            })
        })
        .collect()
}

/// The rates of a body that names its base and stamps its time in Unix seconds
/// (Open Exchange Rates, ExchangeRate-API): the base checked, the time read.
fn unix_stamped_rates(
    map: &RawMap,
    found_base: Option<&str>,
    unix: Option<&RawValue>,
    base: Currency,
    symbols: &[Currency],
) -> Result<Rates, PollError> {
    check_base(found_base, base)?;
    let ts = unix.map(unix_seconds).transpose().map_err(PollError::bad_response)?;
    Ok(Rates {
        ts,
        rates: rate_map(map, base, symbols)?,
    })
}

fn check_base(found: Option<&str>, base: Currency) -> Result<(), PollError> {
    match found {
        Some(code) if code.eq_ignore_ascii_case(base.code()) => Ok(()),
        Some(code) => Err(PollError::bad_response(format!(
            "rates are against {code}, not the requested {base}"
        ))),
        None => Err(PollError::bad_response("the response names no base currency")),
    }
}

fn undecodable(provider: &str, e: impl fmt::Display) -> PollError {
    PollError::bad_response(format!("not a {provider} response: {e}"))
}

/// The snapshot of one poll, every quote in market orientation.
pub struct Assembled {
    pub snapshot: QuoteSnapshot,
    /// Whether `snapshot.ts` is the provider's own time (not the receive time).
    pub provider_time: bool,
    /// Requested currencies the provider did not give (only ever non-empty when not all are required).
    pub missing: Vec<Currency>,
}

/// Build the snapshot from the rates of one poll. Each requested symbol becomes one quote of the
/// market-convention pair of (`base`, symbol); a rate given the other way round is inverted exactly
/// (`bid = 1/ask`, `ask = 1/bid`). Quote times: the price's own, else the response's, else
/// `received`; the snapshot's time is the newest of them.
pub fn assemble(
    responses: &[Rates],
    base: Currency,
    symbols: &[Currency],
    require_all: bool,
    source: SourceName,
    received: DateTime<Utc>,
) -> Result<Assembled, PollError> {
    let mut quotes = Vec::with_capacity(symbols.len());
    let mut missing = Vec::new();
    let mut newest: Option<DateTime<Utc>> = None;
    for symbol in symbols {
        let market = Pair::market(base, *symbol);
        let found = responses.iter().find_map(|response| {
            response
                .rates
                .iter()
                .find(|r| r.pair == market || r.pair == market.inverse())
                .map(|r| (r, response.ts))
        });
        let Some((rate, response_ts)) = found else {
            missing.push(*symbol);
            continue;
        };
        if rate.bid <= Decimal::ZERO || rate.ask <= Decimal::ZERO {
            return Err(PollError::bad_response(format!(
                "{}: rate {}/{} is not positive",
                rate.pair, rate.bid, rate.ask
            )));
        }
        let (bid, ask) = if rate.pair == market {
            (rate.bid, rate.ask)
        } else {
            invert(rate.bid, rate.ask)
                .ok_or_else(|| PollError::bad_response(format!("{}: cannot invert", rate.pair)))?
        };
        let provider_ts = rate.ts.or(response_ts);
        if let Some(ts) = provider_ts {
            newest = Some(newest.map_or(ts, |n| n.max(ts)));
        }
        quotes.push(Quote {
            pair: market,
            bid,
            ask,
            ts: provider_ts.unwrap_or(received),
            source,
            enrichment: None,
        });
    }
    if quotes.is_empty() || (require_all && !missing.is_empty()) {
        let list: Vec<&str> = missing.iter().map(Currency::code).collect();
        return Err(PollError::new(
            ErrorClass::Invalid,
            "missing_symbols",
            format!("the response has no rate for {} against {base}", list.join(", ")),
        ));
    }
    Ok(Assembled {
        snapshot: QuoteSnapshot {
            source,
            ts: newest.unwrap_or(received),
            base,
            quotes,
        },
        provider_time: newest.is_some(),
        missing,
    })
}

/// Helpers of the providers' tests.
#[cfg(test)]
mod test_support {
    use super::*;

    pub fn c(code: &str) -> Currency {
        code.parse().unwrap()
    }

    pub fn majors_but(base: &str) -> Vec<Currency> {
        crate::fx::currency::majors()
            .into_iter()
            .filter(|x| *x != c(base))
            .collect()
    }

    pub fn source() -> SourceName {
        SourceName::intern("test").unwrap()
    }

    pub fn received() -> DateTime<Utc> {
        "2026-11-24T12:00:00Z".parse().unwrap()
    }

    pub fn request(pair: Option<Pair>) -> Request {
        Request {
            url: Url::parse("http://127.0.0.1/").unwrap(),
            shown: "http://127.0.0.1/".into(),
            bearer: None,
            pair,
        }
    }

    pub fn read_ok(provider: Provider, base: &str, symbols: &[Currency], body: &str) -> Rates {
        read(provider, &request(None), c(base), symbols, 200, None, body.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    pub fn snapshot(responses: &[Rates], base: &str, symbols: &[Currency]) -> QuoteSnapshot {
        assemble(responses, c(base), symbols, true, source(), received())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .snapshot
    }

    pub fn quote<'a>(s: &'a QuoteSnapshot, pair: &str) -> &'a Quote {
        s.quotes
            .iter()
            .find(|q| q.pair.to_string() == pair)
            .unwrap_or_else(|| panic!("no {pair} in {s:?}"))
    }

    pub fn read_err(provider: Provider, pair: Option<Pair>, status: u16, body: &str) -> PollError {
        read(
            provider,
            &request(pair),
            c("USD"),
            &majors_but("USD"),
            status,
            Some(Duration::from_secs(7)),
            body.as_bytes(),
        )
        .unwrap_err()
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::test_support::*;
    use super::*;

    #[test]
    fn numbers_are_read_from_their_text_never_through_f64() {
        let body = r#"{"amount":1.0,"base":"USD","date":"2026-11-24","rates":{"JPY":0.1,"CAD":0.2,"CHF":1.234567890123456789012345678,"NZD":6.5e-05}}"#;
        let symbols = [c("JPY"), c("CAD"), c("CHF"), c("NZD")];
        let rates = read_ok(Provider::Frankfurter, "USD", &symbols, body);
        let by = |code: &str| rates.rates.iter().find(|r| r.pair.quote == c(code)).unwrap().bid;
        assert_eq!(by("JPY").to_string(), "0.1");
        // Through f64, 0.1 + 0.2 is 0.30000000000000004.
        assert_eq!(by("JPY") + by("CAD"), dec!(0.3));
        // 28 significant digits: more than an f64 holds (about 17).
        assert_eq!(by("CHF").to_string(), "1.234567890123456789012345678");
        assert_eq!(by("NZD"), dec!(0.000065));
        // A number that cannot be held exactly is refused, not rounded.
        assert!(decimal_text("0.00000000000000000000000000001").is_err());
        assert!(decimal_text("1_000").is_err());
        assert!(decimal_text("NaN").is_err());
        let raw: Box<RawValue> = serde_json::from_str(r#""1.16170000""#).unwrap();
        assert_eq!(decimal(&raw).unwrap().to_string(), "1.16170000");
    }

    #[test]
    fn a_missing_currency_fails_the_poll_unless_partial_snapshots_are_allowed() {
        let body = r#"{"amount":1.0,"base":"USD","date":"2026-11-24","rates":{"EUR":0.86,"GBP":0.7608}}"#;
        let symbols = [c("EUR"), c("GBP"), c("JPY")];
        let rates = read_ok(Provider::Frankfurter, "USD", &symbols, body);
        let e = match assemble(
            std::slice::from_ref(&rates),
            c("USD"),
            &symbols,
            true,
            source(),
            received(),
        ) {
            Err(e) => e,
            Ok(_) => panic!("a snapshot without JPY was assembled"),
        };
        assert_eq!((e.class, e.reason), (ErrorClass::Invalid, "missing_symbols"));
        assert!(e.message.contains("JPY"), "{}", e.message);
        let out = assemble(&[rates], c("USD"), &symbols, false, source(), received()).unwrap();
        assert_eq!(out.snapshot.quotes.len(), 2);
        assert_eq!(out.missing, vec![c("JPY")]);
        // Nothing at all is never a snapshot.
        let empty = read_ok(Provider::Frankfurter, "USD", &symbols, r#"{"base":"USD","rates":{}}"#);
        let e = match assemble(&[empty], c("USD"), &symbols, false, source(), received()) {
            Err(e) => e,
            Ok(_) => panic!("an empty snapshot was assembled"),
        };
        assert_eq!(e.reason, "missing_symbols");
    }

    #[test]
    fn non_positive_rates_and_receive_time_fallback() {
        let symbols = [c("EUR")];
        let zero = read_ok(
            Provider::Frankfurter,
            "USD",
            &symbols,
            r#"{"base":"USD","rates":{"EUR":0}}"#,
        );
        let e = match assemble(&[zero], c("USD"), &symbols, true, source(), received()) {
            Err(e) => e,
            Ok(_) => panic!("a zero rate was accepted"),
        };
        assert_eq!(e.reason, "bad_response");
        // No date in the response: the receive time, and the snapshot says so.
        let undated = read_ok(
            Provider::Frankfurter,
            "USD",
            &symbols,
            r#"{"base":"USD","rates":{"EUR":0.86}}"#,
        );
        let out = assemble(&[undated], c("USD"), &symbols, true, source(), received()).unwrap();
        assert_eq!(out.snapshot.ts, received());
        assert!(!out.provider_time);
    }

    #[test]
    fn requests_per_provider_never_show_the_key() {
        let symbols = [c("EUR"), c("JPY")];
        let url = |s: &str| Url::parse(s).unwrap();
        let make = |provider, root: &str, key: Option<&str>| {
            requests(&Target {
                provider,
                url: &url(root),
                base: c("USD"),
                symbols: &symbols,
                key,
                account_id: Some("001-004-1234567-001"),
            })
            .unwrap()
        };
        let r = make(Provider::Frankfurter, "https://api.frankfurter.dev/v1/", None);
        assert_eq!(
            r[0].url.as_str(),
            "https://api.frankfurter.dev/v1/latest?base=USD&symbols=EUR%2CJPY"
        );
        let r = make(Provider::FrankfurterV2, "https://api.frankfurter.dev/v2", None);
        assert_eq!(
            r[0].url.as_str(),
            "https://api.frankfurter.dev/v2/rates?base=USD&quotes=EUR%2CJPY"
        );
        let r = make(
            Provider::OpenExchangeRates,
            "https://openexchangerates.org/api",
            Some("s3cret&x"),
        );
        assert_eq!(
            r[0].url.as_str(),
            "https://openexchangerates.org/api/latest.json?app_id=s3cret%26x&base=USD&symbols=EUR%2CJPY"
        );
        assert!(!r[0].shown.contains("s3cret") && r[0].shown.contains("app_id=REDACTED"));
        let r = make(
            Provider::ExchangeRateApi,
            "https://v6.exchangerate-api.com/v6",
            Some("s3cret"),
        );
        assert_eq!(
            r[0].url.as_str(),
            "https://v6.exchangerate-api.com/v6/s3cret/latest/USD"
        );
        assert_eq!(r[0].shown, "https://v6.exchangerate-api.com/v6/REDACTED/latest/USD");
        let r = make(Provider::ExchangeRateApi, "https://open.er-api.com/v6", None);
        assert_eq!(r[0].url.as_str(), "https://open.er-api.com/v6/latest/USD");
        let r = make(Provider::AlphaVantage, "https://www.alphavantage.co", Some("s3cret"));
        assert_eq!(r.len(), 2, "one request per pair");
        assert_eq!(
            r[0].url.as_str(),
            "https://www.alphavantage.co/query?function=CURRENCY_EXCHANGE_RATE&from_currency=EUR&to_currency=USD&apikey=s3cret"
        );
        assert_eq!(r[1].pair, Some("USD/JPY".parse().unwrap()));
        assert!(r.iter().all(|r| !r.shown.contains("s3cret")));
        let r = make(Provider::Oanda, "https://api-fxtrade.oanda.com", Some("t0ken"));
        assert_eq!(
            r[0].url.as_str(),
            "https://api-fxtrade.oanda.com/v3/accounts/001-004-1234567-001/pricing?instruments=EUR_USD%2CUSD_JPY"
        );
        assert_eq!(r[0].bearer.as_deref(), Some("t0ken"));
        assert!(!format!("{:?}", r[0]).contains("t0ken"));
        let r = make(
            Provider::Ecb,
            "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml",
            None,
        );
        assert_eq!(r[0].url.path(), "/stats/eurofxref/eurofxref-daily.xml");
    }
}
