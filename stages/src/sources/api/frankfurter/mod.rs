//! Frankfurter-compatible routes: `/v1/...` and `/v2/...` answer as the Frankfurter rates
//! API (api.frankfurter.dev, `lineofflight/frankfurter`) does for its ECB data, so clients
//! written against it work against fxflow. docs/API.md lists where fxflow answers
//! differently, and why.
//!
//! The data is the ECB's daily EUR rates in the history store (pair `EUR/X`, source
//! `ecb`), loaded by `pipelines/backfill.ron` (worker set) or `local.ron` (embedded).
//! Like Frankfurter, other bases are derived when asked. The whole history is small
//! (about 7,000 days × at most 41 currencies), so it is held in memory ([`EcbCache`]),
//! reloaded from the store in the background once a minute (every second while a backfill
//! makes it grow): answers cost no query, and "latest" is the newest stored day however
//! long ago a live cache expired.
//!
//! These routes are not in fxflow's OpenAPI document: their contract is Frankfurter's.

mod names;
pub mod v1;
pub mod v2;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::fx::{Currency, Pair};
use crate::store::HistoryStore;

/// The source name the ECB's rates are stored under.
pub const ECB_SOURCE: &str = "ecb";

/// The currencies of the ECB's euro reference-rate file (every column since 1999).
pub const ECB_CURRENCIES: [&str; 41] = [
    "USD", "JPY", "BGN", "CYP", "CZK", "DKK", "EEK", "GBP", "HUF", "LTL", "LVL", "MTL", "PLN", "ROL", "RON", "SEK",
    "SIT", "SKK", "CHF", "ISK", "NOK", "HRK", "RUB", "TRL", "TRY", "AUD", "BRL", "CAD", "CNY", "HKD", "IDR", "ILS",
    "INR", "KRW", "MXN", "MYR", "NZD", "PHP", "SGD", "THB", "ZAR",
];

/// The first day of the ECB's data.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(1999, 1, 4).expect("a date")
}

/// What the routes need of the API's state (taken from it by `FromRef`, so this module
/// depends on nothing of the context's).
#[derive(Clone)]
pub struct Reference {
    pub store: Arc<dyn HistoryStore>,
    pub cache: Arc<EcbCache>,
}

impl Reference {
    pub async fn history(&self) -> Result<Arc<EcbHistory>, crate::store::StoreError> {
        self.cache.get(&self.store).await
    }
}

/// The routes, with open CORS (GET from any origin), as Frankfurter has them. The CORS
/// headers are set by [`answer`] and [`error`], and preflight requests answered by
/// [`preflight`], so they hold whatever layers the API stacks around its router.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Reference: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/v1", get(v1::root).options(preflight))
        .route("/v1/", get(v1::root).options(preflight))
        .route("/v1/{segment}", get(v1::dispatch).options(preflight))
        .route("/v2", get(v2::root).options(preflight))
        .route("/v2/", get(v2::root).options(preflight))
        .route("/v2/{segment}", get(v2::dispatch).options(preflight))
        .route("/v2/rate/{base}/{quote}", get(v2::rate).options(preflight))
        .route("/v2/currency/{code}", get(v2::currency).options(preflight))
}

/// A CORS preflight: any origin may GET, with any header (what rack-cors answers for
/// Frankfurter: `origins "*"`, `methods: [:get, :options]`, max age 7200 s).
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("7200"));
    response
}

/// One ECB day: each currency's EUR rate, sorted by code.
#[derive(Debug, Clone)]
pub struct Day {
    pub date: NaiveDate,
    pub rates: Vec<(Currency, Decimal)>,
}

impl Day {
    pub fn rate(&self, currency: Currency) -> Option<Decimal> {
        if currency == Currency::EUR {
            return Some(Decimal::ONE);
        }
        self.rates
            .binary_search_by(|(c, _)| c.code().cmp(currency.code()))
            .ok()
            .map(|i| self.rates[i].1)
    }
}

/// The ECB history as stored, oldest day first.
#[derive(Debug, Default)]
pub struct EcbHistory {
    pub days: Vec<Day>,
}

impl EcbHistory {
    /// The newest day at or before `date`.
    pub fn on_or_before(&self, date: NaiveDate) -> Option<&Day> {
        let after = self.days.partition_point(|d| d.date <= date);
        after.checked_sub(1).map(|i| &self.days[i])
    }

    /// Days with `from <= date <= to`.
    pub fn between(&self, from: NaiveDate, to: NaiveDate) -> &[Day] {
        let start = self.days.partition_point(|d| d.date < from);
        let end = self.days.partition_point(|d| d.date <= to);
        &self.days[start..end.max(start)]
    }

    pub fn newest(&self) -> Option<&Day> {
        self.days.last()
    }

    /// Each currency's first and last day with a rate (EUR: the whole history).
    pub fn spans(&self) -> Vec<(Currency, NaiveDate, NaiveDate)> {
        let mut spans: std::collections::BTreeMap<&str, (Currency, NaiveDate, NaiveDate)> = Default::default();
        for day in &self.days {
            for (currency, _) in &day.rates {
                spans
                    .entry(currency.code())
                    .and_modify(|s| s.2 = day.date)
                    .or_insert((*currency, day.date, day.date));
            }
        }
        if let (Some(first), Some(last)) = (self.days.first(), self.days.last()) {
            spans.insert("EUR", (Currency::EUR, first.date, last.date));
        }
        spans.into_values().collect()
    }
}

/// The history in memory, reloaded from the store in the background when older than
/// [`RELOAD_EVERY`] (the first request waits for the first load).
#[derive(Default)]
pub struct EcbCache {
    history: RwLock<Option<Arc<EcbHistory>>>,
    /// When it was last loaded, and whether that load found more than the one before
    /// (a backfill under way: look again soon).
    loaded: Mutex<Option<(Instant, bool)>>,
    reloading: AtomicBool,
}

/// How stale the in-memory ECB history may get: a new fixing shows within this.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// While the history grows (a backfill running), it is reloaded this often instead.
pub const RELOAD_GROWING: Duration = Duration::from_secs(1);

impl EcbCache {
    pub async fn get(
        self: &Arc<Self>,
        store: &Arc<dyn HistoryStore>,
    ) -> Result<Arc<EcbHistory>, crate::store::StoreError> {
        let current = self.history.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(current) = current else {
            let history = Arc::new(load(store.as_ref()).await?);
            self.set(history.clone());
            return Ok(history);
        };
        let stale = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|(at, grew)| at.elapsed() >= if grew { RELOAD_GROWING } else { RELOAD_EVERY });
        if stale && !self.reloading.swap(true, Ordering::AcqRel) {
            let store = store.clone();
            let this = self.clone();
            tokio::spawn(async move {
                match load(store.as_ref()).await {
                    Ok(history) => this.set(Arc::new(history)),
                    Err(e) => tracing::warn!(error = %e, "Reloading the ECB history failed; serving the one held."),
                }
                this.reloading.store(false, Ordering::Release);
            });
        }
        Ok(current)
    }

    fn set(&self, history: Arc<EcbHistory>) {
        let size = |h: &EcbHistory| h.days.iter().map(|d| d.rates.len()).sum::<usize>();
        let mut held = self.history.write().unwrap_or_else(|p| p.into_inner());
        let grew = held.as_ref().is_none_or(|old| size(old) != size(&history));
        *held = Some(history);
        drop(held);
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), grew));
    }
}

/// Every stored ECB day.
async fn load(store: &dyn HistoryStore) -> Result<EcbHistory, crate::store::StoreError> {
    let pairs: Vec<Pair> = ECB_CURRENCIES
        .iter()
        .filter_map(|code| Currency::parse(code).ok())
        .map(|c| Pair::market(Currency::EUR, c))
        .collect();
    let from = Utc.from_utc_datetime(&first_day().and_hms_opt(0, 0, 0).expect("midnight"));
    let to = Utc::now() + chrono::Duration::days(7);
    let rows = store.source_rates(ECB_SOURCE, &pairs, from, to).await?;
    let mut days: Vec<Day> = Vec::new();
    for row in rows {
        let Some(currency) = row.pair.other(Currency::EUR) else {
            continue;
        };
        // EUR/X is X per euro; a pair stored the other way round is its inverse.
        let rate = if row.pair.base == Currency::EUR {
            row.mid
        } else if row.mid.is_zero() {
            continue;
        } else {
            Decimal::ONE / row.mid
        };
        let date = row.ts.date_naive();
        match days.last_mut() {
            Some(day) if day.date == date => day.rates.push((currency, rate)),
            _ => days.push(Day {
                date,
                rates: vec![(currency, rate)],
            }),
        }
    }
    for day in &mut days {
        day.rates.sort_by(|a, b| a.0.code().cmp(b.0.code()));
        day.rates.dedup_by(|a, b| a.0 == b.0);
    }
    Ok(EcbHistory { days })
}

/// Frankfurter's rounding (`lib/roundable.rb`): decimal places by size, half to even as C's
/// `printf` rounds a double. Exact here: the value is a decimal, not a binary double.
pub fn round(value: Decimal) -> Decimal {
    let dp = if value > Decimal::from(5000) {
        0
    } else if value > Decimal::from(80) {
        2
    } else if value > Decimal::from(20) {
        3
    } else if value > Decimal::ONE {
        4
    } else if value > Decimal::new(1, 4) {
        5
    } else {
        6
    };
    value.round_dp_with_strategy(dp, RoundingStrategy::MidpointNearestEven)
}

/// A decimal as Frankfurter's JSON writes a float: shortest digits, at least one decimal
/// place (`1.0`, `1.0956`, `16950.0`).
pub fn float_text(value: Decimal) -> String {
    let text = value.normalize().to_string();
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// A strong ETag of `text` (Frankfurter's is the MD5 of a date; this one is opaque too).
pub fn etag(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether the request's `If-None-Match` names `tag`.
pub fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == tag || v.trim() == "*")
}

/// A JSON answer with Frankfurter's headers: cacheable for a day, with an ETag (304 when
/// the client has it).
pub fn json(headers: &HeaderMap, body: String, tag: Option<String>, cache: &'static str) -> Response {
    answer(headers, body, tag, cache, "application/json; charset=utf-8")
}

pub fn answer(
    headers: &HeaderMap,
    body: String,
    tag: Option<String>,
    cache: &'static str,
    content_type: &'static str,
) -> Response {
    let mut response = match &tag {
        Some(tag) if not_modified(headers, tag) => StatusCode::NOT_MODIFIED.into_response(),
        _ => ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert(header::ETAG, tag);
    }
    response
}

/// An error as Frankfurter answers it: `{"message": ...}` (v1) or `{"status": N,
/// "message": ...}` (v2), never cached.
pub fn error(status: StatusCode, message: &str, with_status: bool) -> Response {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    let body = if with_status {
        format!("{{\"status\":{},\"message\":{message}}}", status.as_u16())
    } else {
        format!("{{\"message\":{message}}}")
    };
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The store did not answer: 503, in the version's error shape.
pub fn unavailable(e: &crate::store::StoreError, with_status: bool) -> Response {
    tracing::warn!(error = %e, "The history store did not answer a Frankfurter route.");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the history store does not answer",
        with_status,
    )
}

/// Today in UTC (Frankfurter's dates are UTC days).
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// `YYYY-MM-DD`, strictly.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    (text.len() == 10)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

/// A currency's display name as RubyMoney (Frankfurter's source of names) has it; like
/// Frankfurter, the code itself when RubyMoney has none.
pub fn name(currency: Currency) -> String {
    names::find(currency.code()).map_or_else(|| currency.code().to_owned(), |m| m.1.to_owned())
}

pub use names::find as money;

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    /// A query string's pairs, for the v1 and v2 tests.
    pub(super) fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rounds_by_size_as_frankfurter_does() {
        // spec/versions/v1/roundable_spec.rb
        for (value, rounded) in [
            (dec!(5000.123456), dec!(5000)),
            (dec!(80.123456), dec!(80.12)),
            (dec!(4999.123456), dec!(4999.12)),
            (dec!(79.123456), dec!(79.123)),
            (dec!(20.123456), dec!(20.123)),
            (dec!(19.123456), dec!(19.1235)),
            (dec!(1.123456), dec!(1.1235)),
            (dec!(0.123456), dec!(0.12346)),
            (dec!(0.0000655), dec!(0.000066)),
            (dec!(16950.43), dec!(16950)),
        ] {
            assert_eq!(round(value), rounded, "{value}");
        }
        // Half to even, exactly (0.125 is exact in binary too, so printf agrees).
        assert_eq!(round(dec!(80.125)), dec!(80.12));
        assert_eq!(round(dec!(80.135)), dec!(80.14));
    }

    #[test]
    fn numbers_look_like_ruby_floats() {
        assert_eq!(float_text(dec!(1)), "1.0");
        assert_eq!(float_text(dec!(1.0956)), "1.0956");
        assert_eq!(float_text(dec!(1.1000)), "1.1");
        assert_eq!(float_text(dec!(16950)), "16950.0");
        assert_eq!(float_text(dec!(0.000066)), "0.000066");
    }

    #[test]
    fn days_are_found_on_or_before_a_date() {
        let day = |d: &str| Day {
            date: d.parse().unwrap(),
            rates: vec![(Currency::USD, dec!(1.1))],
        };
        let history = EcbHistory {
            days: vec![day("2024-01-02"), day("2024-01-05"), day("2024-01-08")],
        };
        let on = |d: &str| history.on_or_before(d.parse().unwrap()).map(|d| d.date.to_string());
        assert_eq!(on("2024-01-01"), None);
        assert_eq!(
            on("2024-01-06").as_deref(),
            Some("2024-01-05"),
            "a weekend answers Friday"
        );
        assert_eq!(on("2024-01-08").as_deref(), Some("2024-01-08"));
        assert_eq!(on("2030-01-01").as_deref(), Some("2024-01-08"));
        let between = history.between("2024-01-03".parse().unwrap(), "2024-01-08".parse().unwrap());
        assert_eq!(between.len(), 2);
        assert!(history
            .between("2024-01-09".parse().unwrap(), "2024-01-03".parse().unwrap())
            .is_empty());
    }
}
