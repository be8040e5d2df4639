//! Frankfurter v2 (`lib/versions/v2.rb`, `lib/versions/v2/rate_query.rb`) as its
//! `providers=ecb` answers: `/rates` (`.csv`), `/rate/{base}/{quote}`, `/currencies`,
//! `/currency/{code}`, `/providers`. fxflow has one provider, the ECB.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::{answer, error, float_text, json, parse_date, round, today, unavailable, Day, EcbHistory};
use crate::fx::Currency;

const CACHE: &str = "public, max-age=86400, stale-while-revalidate=86400, stale-if-error=86400";
const PROVIDERS_CACHE: &str = "public, max-age=3600";
const ALLOWED: [&str; 8] = ["base", "quotes", "providers", "date", "from", "to", "group", "expand"];

fn failure(status: StatusCode, message: &str) -> Response {
    error(status, message, true)
}

fn invalid(message: &str) -> Response {
    failure(StatusCode::UNPROCESSABLE_ENTITY, message)
}

pub async fn root(headers: HeaderMap) -> Response {
    json(
        &headers,
        r#"{"version":"v2","status":"current","docs":"https://frankfurter.dev"}"#.to_owned(),
        None,
        CACHE,
    )
}

/// Bars of a range (`group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Week,
    Month,
}

impl Group {
    /// The bucket's date as Frankfurter stamps it (`lib/bucket.rb`): the month's first day;
    /// for a week, January 1st plus seven days per Monday-based week number (`%W`), which
    /// is not always a Monday.
    pub fn bucket(self, date: NaiveDate) -> NaiveDate {
        let jan1 = NaiveDate::from_ymd_opt(date.year(), 1, 1).expect("a date");
        match self {
            Group::Month => date.with_day(1).expect("a date"),
            Group::Week => {
                let first_monday = (7 - jan1.weekday().num_days_from_monday()) % 7;
                let week = (date.ordinal0() + 7 - first_monday) / 7;
                jan1 + chrono::Duration::days(i64::from(week) * 7)
            }
        }
    }
}

/// A `/rates` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub base: Currency,
    pub quotes: Option<Vec<Currency>>,
    /// Whether the ECB is among `providers` (or no providers were named).
    pub ecb: bool,
    pub when: When,
    pub group: Option<Group>,
    pub expand: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    On(NaiveDate),
    Range(NaiveDate, NaiveDate),
}

impl Ask {
    /// Frankfurter's validation, in its order: unknown parameters, dates, conflicts,
    /// group, expand, currencies.
    pub fn parse(params: &[(String, String)], path: Option<(&str, &str)>) -> Result<Ask, String> {
        let unknown: Vec<&str> = params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !ALLOWED.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(format!("unknown parameter: {}", unknown.join(", ")));
        }
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let date = |name: &str| {
            get(name)
                .map(|text| parse_date(text).ok_or("invalid date".to_owned()))
                .transpose()
        };
        let (on, from, to) = (date("date")?, date("from")?, date("to")?);
        let when = match (on, from, to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err("conflicting params".into()),
            (Some(on), None, None) => When::On(on),
            (None, Some(from), to) => When::Range(from, to.unwrap_or_else(today)),
            (None, None, Some(to)) => When::On(to),
            (None, None, None) => When::On(today()),
        };
        let group = match get("group").map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("week") => Some(Group::Week),
            Some("month") => Some(Group::Month),
            Some(_) => return Err("invalid group".into()),
        };
        let expand = match get("expand") {
            None => false,
            Some("providers") => true,
            Some(other) => return Err(format!("invalid expand: {other}")),
        };
        let (base_text, quotes_text) = match path {
            Some((base, quote)) => (Some(base.to_owned()), Some(quote.to_owned())),
            None => (get("base").map(str::to_owned), get("quotes").map(str::to_owned)),
        };
        let mut bad = Vec::new();
        let mut currency = |code: &str| {
            let code = code.trim().to_ascii_uppercase();
            match Currency::parse(&code) {
                Ok(c) if code != "XXX" && code != "XTS" => Some(c),
                _ => {
                    bad.push(code);
                    None
                }
            }
        };
        let base = base_text.as_deref().map_or(Some(Currency::EUR), &mut currency);
        let quotes: Option<Vec<Option<Currency>>> =
            quotes_text.map(|q| q.split(',').filter(|c| !c.is_empty()).map(&mut currency).collect());
        if !bad.is_empty() {
            return Err(format!("invalid currency: {}", bad.join(", ")));
        }
        let ecb = get("providers").is_none_or(|p| p.split(',').any(|p| p.trim().eq_ignore_ascii_case("ecb")));
        Ok(Ask {
            base: base.expect("checked"),
            quotes: quotes.map(|q| q.into_iter().flatten().collect()),
            ecb,
            when,
            group,
            expand,
        })
    }

    fn wants(&self, quote: Currency) -> bool {
        self.quotes.as_ref().is_none_or(|q| q.contains(&quote))
    }

    /// One day's (or bucket's) rows from EUR rates: raw ECB digits against EUR, derived
    /// and rounded against another base; the base's own row (1.0) when asked for.
    fn rows_of(&self, date: NaiveDate, rates: &[(Currency, Decimal)], raw: bool, out: &mut Vec<Row>) {
        let eur = |c: Currency| {
            if c == Currency::EUR {
                Some(Decimal::ONE)
            } else {
                rates.iter().find(|(x, _)| *x == c).map(|(_, r)| *r)
            }
        };
        let Some(divisor) = eur(self.base).filter(|d| !d.is_zero()) else {
            return;
        };
        let start = out.len();
        let mut quotes: Vec<Currency> = rates.iter().map(|(c, _)| *c).collect();
        quotes.push(Currency::EUR);
        quotes.sort_by(|a, b| a.code().cmp(b.code()));
        for quote in quotes {
            if quote == self.base || !self.wants(quote) {
                continue;
            }
            let Some(rate) = eur(quote) else { continue };
            let rate = if self.base == Currency::EUR && raw {
                rate
            } else {
                round(rate / divisor)
            };
            out.push(Row {
                date,
                base: self.base,
                quote,
                rate,
                identity: false,
            });
        }
        if out.len() > start && self.wants(self.base) {
            let at = start + out[start..].partition_point(|r| r.quote.code() < self.base.code());
            out.insert(
                at,
                Row {
                    date,
                    base: self.base,
                    quote: self.base,
                    rate: Decimal::ONE,
                    identity: true,
                },
            );
        }
    }

    /// Every row the request answers, ordered by date then quote.
    pub fn rows(&self, history: &EcbHistory) -> Vec<Row> {
        let mut rows = Vec::new();
        if !self.ecb {
            return rows;
        }
        match self.when {
            When::On(date) => {
                if let Some(day) = history.on_or_before(date) {
                    self.rows_of(day.date, &day.rates, true, &mut rows);
                }
            }
            When::Range(from, to) => {
                let days = history.between(from, to);
                match self.group {
                    None => {
                        // A start without data is anchored on the last day before it.
                        if days.first().is_none_or(|d| d.date != from) {
                            if let Some(day) = history.on_or_before(from) {
                                self.rows_of(day.date, &day.rates, true, &mut rows);
                            }
                        }
                        for day in days {
                            self.rows_of(day.date, &day.rates, true, &mut rows);
                        }
                    }
                    Some(group) => {
                        for (bucket, rates) in averages(days, group) {
                            self.rows_of(bucket, &rates, false, &mut rows);
                        }
                    }
                }
            }
        }
        rows
    }
}

/// Each bucket's average EUR rate per currency, over the days of the range in it.
fn averages(days: &[Day], group: Group) -> Vec<(NaiveDate, Vec<(Currency, Decimal)>)> {
    let mut buckets: BTreeMap<NaiveDate, BTreeMap<&str, (Currency, Decimal, u32)>> = BTreeMap::new();
    for day in days {
        let bucket = buckets.entry(group.bucket(day.date)).or_default();
        for (currency, rate) in &day.rates {
            let entry = bucket.entry(currency.code()).or_insert((*currency, Decimal::ZERO, 0));
            entry.1 += rate;
            entry.2 += 1;
        }
    }
    buckets
        .into_iter()
        .map(|(date, sums)| {
            let rates = sums
                .into_values()
                .map(|(c, sum, n)| (c, sum / Decimal::from(n)))
                .collect();
            (date, rates)
        })
        .collect()
}

/// One answer row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub date: NaiveDate,
    pub base: Currency,
    pub quote: Currency,
    pub rate: Decimal,
    /// The base's own row: it never lists providers.
    pub identity: bool,
}

impl Row {
    fn json(&self, expand: bool, out: &mut String) {
        let _ = write!(
            out,
            "{{\"date\":\"{}\",\"base\":\"{}\",\"quote\":\"{}\",\"rate\":{}",
            self.date,
            self.base.code(),
            self.quote.code(),
            float_text(self.rate)
        );
        if expand && !self.identity {
            let _ = write!(
                out,
                ",\"providers\":[{{\"key\":\"ECB\",\"rate\":{}}}]",
                float_text(self.rate)
            );
        }
        out.push('}');
    }

    fn csv(&self, expand: bool, out: &mut String) {
        let _ = write!(
            out,
            "{},{},{},{}",
            self.date,
            self.base.code(),
            self.quote.code(),
            float_text(self.rate)
        );
        if expand {
            if self.identity {
                out.push(',');
            } else {
                let _ = write!(out, ",ECB:{}", float_text(self.rate));
            }
        }
        out.push('\n');
    }
}

/// How the client wants rows: the `.csv` suffix or `Accept` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    NdJson,
}

fn format_of(headers: &HeaderMap, csv_suffix: bool) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if csv_suffix || accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains("application/x-ndjson") {
        Format::NdJson
    } else {
        Format::Json
    }
}

fn write_rows(headers: &HeaderMap, rows: &[Row], expand: bool, format: Format, tag: Option<String>) -> Response {
    let mut body = String::with_capacity(16 + rows.len() * 64);
    let content_type = match format {
        Format::Json => {
            body.push('[');
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                row.json(expand, &mut body);
            }
            body.push(']');
            "application/json; charset=utf-8"
        }
        Format::NdJson => {
            for row in rows {
                row.json(expand, &mut body);
                body.push('\n');
            }
            "application/x-ndjson"
        }
        Format::Csv => {
            if !rows.is_empty() {
                body.push_str(if expand {
                    "date,base,quote,rate,providers\n"
                } else {
                    "date,base,quote,rate\n"
                });
            }
            for row in rows {
                row.csv(expand, &mut body);
            }
            "text/csv"
        }
    };
    let mut response = answer(headers, body, tag, CACHE, content_type);
    response
        .headers_mut()
        .insert(header::VARY, axum::http::HeaderValue::from_static("Accept"));
    response
}

/// `/v2/{segment}`: rates (`.csv`), currencies, providers.
pub async fn dispatch(
    State(reference): State<super::Reference>,
    Path(segment): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let (name, csv) = match segment.strip_suffix(".csv") {
        Some(name) => (name, true),
        None => (segment.as_str(), false),
    };
    if !matches!(name, "rates" | "currencies" | "providers") {
        return failure(StatusCode::NOT_FOUND, "not found");
    }
    if csv && name != "rates" {
        return failure(StatusCode::NOT_ACCEPTABLE, "CSV is served for rates only");
    }
    let history = match reference.history().await {
        Ok(history) => history,
        Err(e) => return unavailable(&e, true),
    };
    match name {
        "rates" => {
            let ask = match Ask::parse(&params, None) {
                Ok(ask) => ask,
                Err(message) => return invalid(&message),
            };
            let rows = ask.rows(&history);
            let newest = rows.iter().map(|r| r.date).max();
            let tag = newest.map(|d| super::etag(&format!("{d}|{}", if ask.expand { "providers" } else { "" })));
            write_rows(&headers, &rows, ask.expand, format_of(&headers, csv), tag)
        }
        "currencies" => {
            let all = params.iter().any(|(k, v)| k == "scope" && v == "all");
            let body = currency_list(&history, all);
            json(
                &headers,
                body,
                history.newest().map(|d| super::etag(&d.date.to_string())),
                CACHE,
            )
        }
        _ => providers(&headers, &history),
    }
}

/// `/v2/rate/{base}/{quote}`: the first row, as an object.
pub async fn rate(
    State(reference): State<super::Reference>,
    Path((base, quote)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let (quote, csv) = match quote.strip_suffix(".csv") {
        Some(quote) => (quote.to_owned(), true),
        None => (quote, false),
    };
    let params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| k != "base" && k != "quotes")
        .collect();
    let ask = match Ask::parse(&params, Some((&base, &quote))) {
        Ok(ask) => ask,
        Err(message) => return invalid(&message),
    };
    let history = match reference.history().await {
        Ok(history) => history,
        Err(e) => return unavailable(&e, true),
    };
    let rows = ask.rows(&history);
    let Some(first) = rows.first() else {
        return failure(StatusCode::NOT_FOUND, "not found");
    };
    match format_of(&headers, csv) {
        Format::Json => {
            let mut body = String::new();
            first.json(ask.expand, &mut body);
            json(&headers, body, None, CACHE)
        }
        format => write_rows(&headers, std::slice::from_ref(first), ask.expand, format, None),
    }
}

/// `/v2/currency/{code}`: one currency, with its providers.
pub async fn currency(
    State(reference): State<super::Reference>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let history = match reference.history().await {
        Ok(history) => history,
        Err(e) => return unavailable(&e, true),
    };
    let code = code.to_ascii_uppercase();
    let Some(span) = history.spans().into_iter().find(|(c, _, _)| c.code() == code) else {
        return failure(StatusCode::NOT_FOUND, "not found");
    };
    let mut body = String::new();
    currency_item(&mut body, span);
    body.pop();
    body.push_str(",\"providers\":[\"ECB\"]}");
    json(&headers, body, None, CACHE)
}

fn currency_item(out: &mut String, (currency, start, end): (Currency, NaiveDate, NaiveDate)) {
    let (name, numeric, symbol) = match super::money(currency.code()) {
        Some((_, name, numeric, symbol)) => (*name, Some(*numeric), Some(*symbol)),
        None => (currency.code(), None, None),
    };
    let text = |s: Option<&str>| serde_json::to_string(&s).unwrap_or_default();
    let _ = write!(
        out,
        "{{\"iso_code\":\"{}\",\"iso_numeric\":{},\"name\":{},\"symbol\":{},\"start_date\":\"{start}\",\"end_date\":\"{end}\"}}",
        currency.code(),
        text(numeric),
        text(Some(name)),
        text(symbol)
    );
}

/// Active currencies (a rate on the newest day, and EUR), or all with `scope=all`.
fn currency_list(history: &EcbHistory, all: bool) -> String {
    let newest = history.newest().map(|d| d.date);
    let mut body = String::from("[");
    let mut first = true;
    for span in history.spans() {
        if !all && Some(span.2) != newest {
            continue;
        }
        if !first {
            body.push(',');
        }
        first = false;
        currency_item(&mut body, span);
    }
    body.push(']');
    body
}

fn providers(headers: &HeaderMap, history: &EcbHistory) -> Response {
    let (Some(first), Some(newest)) = (history.days.first(), history.newest()) else {
        return json(headers, "[]".into(), None, PROVIDERS_CACHE);
    };
    let mut codes: Vec<&str> = newest.rates.iter().map(|(c, _)| c.code()).collect();
    codes.push("EUR");
    codes.sort_unstable();
    let body = format!(
        "[{{\"key\":\"ECB\",\"name\":\"European Central Bank\",\"country_code\":\"EU\",\"rate_type\":\"reference rate\",\
         \"pivot_currency\":\"EUR\",\"data_url\":\"https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip\",\
         \"terms_url\":\"https://www.ecb.europa.eu/services/disclaimer/html/index.en.html\",\
         \"start_date\":\"{}\",\"end_date\":\"{}\",\"publish_cadence\":\"daily\",\"publishes_missed\":0,\"currencies\":{}}}]",
        first.date,
        newest.date,
        serde_json::to_string(&codes).unwrap_or_default()
    );
    json(headers, body, None, PROVIDERS_CACHE)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::sources::api::frankfurter::tests::params;

    fn history() -> EcbHistory {
        let c = |code: &str| Currency::parse(code).unwrap();
        let day = |date: &str, usd, gbp| Day {
            date: date.parse().unwrap(),
            rates: vec![(c("GBP"), gbp), (c("USD"), usd)],
        };
        EcbHistory {
            days: vec![
                day("2024-01-02", dec!(1.0956), dec!(0.86905)),
                day("2024-01-03", dec!(1.0919), dec!(0.86450)),
                day("2024-01-05", dec!(1.0921), dec!(0.86020)),
                day("2024-02-01", dec!(1.0826), dec!(0.85170)),
            ],
        }
    }

    #[test]
    fn validates_in_frankfurters_order() {
        assert_eq!(
            Ask::parse(&params(&[("symbols", "USD"), ("amount", "2")]), None),
            Err("unknown parameter: symbols, amount".into())
        );
        assert_eq!(
            Ask::parse(&params(&[("date", "2024-13-01")]), None),
            Err("invalid date".into())
        );
        assert_eq!(
            Ask::parse(&params(&[("date", "2024-01-02"), ("from", "2024-01-01")]), None),
            Err("conflicting params".into())
        );
        assert_eq!(
            Ask::parse(&params(&[("group", "day")]), None),
            Err("invalid group".into())
        );
        assert_eq!(
            Ask::parse(&params(&[("expand", "x")]), None),
            Err("invalid expand: x".into())
        );
        assert_eq!(
            Ask::parse(&params(&[("quotes", "USD,XYZ,XXX")]), None),
            Err("invalid currency: XYZ, XXX".into())
        );
    }

    #[test]
    fn rows_are_raw_against_the_euro_and_derived_otherwise() {
        let h = history();
        let ask = Ask::parse(&params(&[("date", "2024-01-04")]), None).unwrap();
        let rows = ask.rows(&h);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].quote.code(), "EUR");
        assert!(rows[0].identity);
        assert_eq!(
            (rows[2].date.to_string(), rows[2].rate),
            ("2024-01-03".into(), dec!(1.0919))
        );
        let usd = Ask::parse(
            &params(&[("base", "usd"), ("quotes", "EUR,GBP"), ("date", "2024-01-02")]),
            None,
        )
        .unwrap();
        let rows = usd.rows(&h);
        assert_eq!(
            rows.iter()
                .map(|r| (r.quote.code().to_owned(), r.rate))
                .collect::<Vec<_>>(),
            vec![("EUR".into(), dec!(0.91274)), ("GBP".into(), dec!(0.79322))]
        );
        let before = Ask::parse(&params(&[("date", "1998-12-31")]), None).unwrap();
        assert!(before.rows(&h).is_empty(), "before the data: an empty list");
        let other = Ask::parse(&params(&[("providers", "boc")]), None).unwrap();
        assert!(other.rows(&h).is_empty());
    }

    #[test]
    fn ranges_anchor_their_start_and_group_by_week_or_month() {
        let h = history();
        let range = Ask::parse(
            &params(&[("from", "2024-01-04"), ("to", "2024-01-31"), ("quotes", "USD")]),
            None,
        )
        .unwrap();
        let dates: Vec<String> = range.rows(&h).iter().map(|r| r.date.to_string()).collect();
        assert_eq!(
            dates,
            ["2024-01-03", "2024-01-05"],
            "anchored on the day before the start"
        );
        let month = Ask::parse(
            &params(&[
                ("from", "2024-01-01"),
                ("to", "2024-02-29"),
                ("quotes", "USD"),
                ("group", "month"),
            ]),
            None,
        )
        .unwrap();
        let rows = month.rows(&h);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].date.to_string(), "2024-01-01");
        // (1.0956 + 1.0919 + 1.0921) / 3 = 1.09320 (rounded to 4 places above 1).
        assert_eq!(rows[0].rate, dec!(1.0932));
        // 2024 starts on a Monday: its first days are in week 1 (`%W`), stamped January 8th.
        assert_eq!(
            Group::Week.bucket("2024-01-03".parse().unwrap()).to_string(),
            "2024-01-08"
        );
        // 2023 starts on a Sunday: its first day is in week 0, Jan 2 (a Monday) in week 1.
        assert_eq!(
            Group::Week.bucket("2023-01-01".parse().unwrap()).to_string(),
            "2023-01-01"
        );
        assert_eq!(
            Group::Week.bucket("2023-01-02".parse().unwrap()).to_string(),
            "2023-01-08"
        );
    }
}
