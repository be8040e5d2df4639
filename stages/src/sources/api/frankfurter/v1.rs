//! Frankfurter v1 (`lib/versions/v1.rb`): `/latest` (`/current`), `/{date}`,
//! `/{start}..{end}`, `/{start}..`, `/currencies`; `from`/`base`, `to`/`symbols`, `amount`.

use std::fmt::Write as _;
use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{error, float_text, json, parse_date, round, today, unavailable, Day, EcbHistory};
use crate::fx::Currency;

const CACHE: &str = "public, max-age=86400";

pub async fn root(headers: HeaderMap) -> Response {
    json(
        &headers,
        r#"{"version":"v1","status":"frozen","docs":"https://frankfurter.dev/v1/"}"#.to_owned(),
        None,
        CACHE,
    )
}

/// What a v1 request asks: Frankfurter's `Query` (`lib/versions/v1/query.rb`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// Upper-cased, as given (`from` wins over `base`); EUR when neither.
    pub base: String,
    /// Whether `base`/`from` was given (a pair check needs it).
    pub base_given: bool,
    pub symbols: Option<Vec<String>>,
    pub amount: Decimal,
}

impl Ask {
    pub fn parse(params: &[(String, String)]) -> Result<Ask, &'static str> {
        let first = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        let base = first(["from", "base"]).map(|b| b.to_ascii_uppercase());
        let symbols = first(["to", "symbols"]).map(|s| s.to_ascii_uppercase().split(',').map(str::to_owned).collect());
        let amount = match first(["amount", "amount"]) {
            None => Decimal::ONE,
            Some(text) => ruby_to_f(&text)
                .filter(|a| a.is_sign_positive() && !a.is_zero())
                .ok_or("invalid amount")?,
        };
        let ask = Ask {
            base_given: base.is_some(),
            base: base.unwrap_or_else(|| "EUR".into()),
            symbols,
            amount,
        };
        if ask.base_given && ask.symbols.as_deref() == Some(std::slice::from_ref(&ask.base)) {
            return Err("bad currency pair");
        }
        Ok(ask)
    }

    /// The day's rates as Frankfurter computes them (`lib/versions/v1/quote/base.rb`),
    /// or `None` when it has nothing for this request (the day is dropped).
    pub fn rates(&self, day: &Day) -> Option<Vec<(String, Decimal)>> {
        let wanted = |code: &str| {
            self.symbols
                .as_ref()
                .is_none_or(|s| s.iter().any(|w| w == code) || code == self.base)
        };
        let should_round = self.amount != Decimal::ONE || self.base != "EUR";
        let mut rates: Vec<(String, Decimal)> = day
            .rates
            .iter()
            .filter(|(c, _)| wanted(c.code()))
            .map(|(c, rate)| {
                let value = self.amount * rate;
                (c.code().to_owned(), if should_round { round(value) } else { value })
            })
            .collect();
        if self.base != "EUR" {
            if self.symbols.as_ref().is_none_or(|s| s.iter().any(|w| w == "EUR")) {
                rates.push(("EUR".into(), self.amount));
            }
            let at = rates.iter().position(|(code, _)| *code == self.base)?;
            let divisor = rates.remove(at).1;
            if divisor.is_zero() {
                return None;
            }
            rates.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, rate) in &mut rates {
                *rate = round(self.amount * *rate / divisor);
            }
        }
        (!rates.is_empty()).then_some(rates)
    }
}

/// Ruby's `String#to_f`: the longest leading number, 0 when there is none.
fn ruby_to_f(text: &str) -> Option<Decimal> {
    let text = text.trim_start();
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let digits_from = end;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    if end == digits_from {
        return Some(Decimal::ZERO);
    }
    Decimal::from_str(&text[..end]).ok()
}

/// `{"CODE":rate,...}`
fn write_rates(out: &mut String, rates: &[(String, Decimal)]) {
    out.push('{');
    for (i, (code, rate)) in rates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{code}\":{}", float_text(*rate));
    }
    out.push('}');
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found", false)
}

/// `/v1/{segment}`: latest, current, currencies, a date or a range.
pub async fn dispatch(
    State(reference): State<super::Reference>,
    Path(segment): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    enum Route {
        On(NaiveDate),
        Range(NaiveDate, NaiveDate),
        Currencies,
    }
    let date = |text: &str| parse_date(text).ok_or(());
    let looks_like_date = |t: &str| t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-';
    let route = match segment.as_str() {
        "latest" | "current" => Ok(Route::On(today())),
        "currencies" => Ok(Route::Currencies),
        s if looks_like_date(s) => date(s).map(Route::On),
        s => match s.split_once("..") {
            Some((start, end)) if looks_like_date(start) && (end.is_empty() || looks_like_date(end)) => {
                match (date(start), if end.is_empty() { Ok(today()) } else { date(end) }) {
                    (Ok(start), Ok(end)) => Ok(Route::Range(start, end)),
                    _ => Err(()),
                }
            }
            _ => return not_found(),
        },
    };
    let Ok(route) = route else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid date", false);
    };
    let history = match reference.history().await {
        Ok(history) => history,
        Err(e) => return unavailable(&e, false),
    };
    if let Route::Currencies = route {
        return currencies(&headers, &history);
    }
    let ask = match Ask::parse(&params) {
        Ok(ask) => ask,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message, false),
    };
    match route {
        Route::On(date) => one_day(&headers, &history, &ask, date),
        Route::Range(start, end) => range(&headers, &history, &ask, start, end),
        Route::Currencies => unreachable!("answered above"),
    }
}

fn one_day(headers: &HeaderMap, history: &EcbHistory, ask: &Ask, date: NaiveDate) -> Response {
    let Some(day) = history.on_or_before(date) else {
        return not_found();
    };
    let Some(rates) = ask.rates(day) else {
        return not_found();
    };
    let mut body = String::with_capacity(64 + rates.len() * 16);
    let _ = write!(
        body,
        "{{\"amount\":{},\"base\":\"{}\",\"date\":\"{}\",\"rates\":",
        float_text(ask.amount),
        json_safe(&ask.base),
        day.date
    );
    write_rates(&mut body, &rates);
    body.push('}');
    json(headers, body, Some(super::etag(&day.date.to_string())), CACHE)
}

fn range(headers: &HeaderMap, history: &EcbHistory, ask: &Ask, start: NaiveDate, end: NaiveDate) -> Response {
    if start > today() {
        return not_found();
    }
    // The start snaps back to the last ECB day on or before it (lib/rate.rb `between`).
    let from = history.on_or_before(start).map_or(start, |d| d.date);
    let days: Vec<(NaiveDate, Vec<(String, Decimal)>)> = history
        .between(from, end)
        .iter()
        .filter_map(|day| ask.rates(day).map(|rates| (day.date, rates)))
        .collect();
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return not_found();
    };
    let mut body = String::with_capacity(96 + days.len() * 400);
    let _ = write!(
        body,
        "{{\"amount\":{},\"base\":\"{}\",\"start_date\":\"{}\",\"end_date\":\"{}\",\"rates\":{{",
        float_text(ask.amount),
        json_safe(&ask.base),
        first.0,
        last.0
    );
    for (i, (date, rates)) in days.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, "\"{date}\":");
        write_rates(&mut body, rates);
    }
    body.push_str("}}");
    json(headers, body, Some(super::etag(&last.0.to_string())), CACHE)
}

/// Currencies with a rate on the newest day, and EUR, with their names.
fn currencies(headers: &HeaderMap, history: &EcbHistory) -> Response {
    let Some(newest) = history.newest() else {
        return json(headers, "{}".into(), None, CACHE);
    };
    let mut codes: Vec<Currency> = newest.rates.iter().map(|(c, _)| *c).collect();
    codes.push(Currency::EUR);
    codes.sort_by(|a, b| a.code().cmp(b.code()));
    let mut body = String::from("{");
    for (i, currency) in codes.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let name = serde_json::to_string(&super::name(*currency)).unwrap_or_default();
        let _ = write!(body, "\"{}\":{name}", currency.code());
    }
    body.push('}');
    json(headers, body, Some(super::etag(&newest.date.to_string())), CACHE)
}

/// A client's text inside a JSON string (the base echoes what was asked).
fn json_safe(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::sources::api::frankfurter::tests::params;

    fn day() -> Day {
        let c = |code: &str| Currency::parse(code).unwrap();
        Day {
            date: "2024-01-02".parse().unwrap(),
            rates: vec![
                (c("GBP"), dec!(0.86905)),
                (c("IDR"), dec!(16950.43)),
                (c("JPY"), dec!(155.76)),
                (c("USD"), dec!(1.0956)),
            ],
        }
    }

    #[test]
    fn reads_parameters_as_frankfurter_does() {
        let ask = Ask::parse(&params(&[("base", "usd"), ("from", "gbp"), ("symbols", "eur,jpy")])).unwrap();
        assert_eq!(ask.base, "GBP", "`from` wins over `base`");
        assert_eq!(ask.symbols, Some(vec!["EUR".into(), "JPY".into()]));
        assert_eq!(ask.amount, Decimal::ONE);
        assert_eq!(Ask::parse(&params(&[("amount", "10abc")])).unwrap().amount, dec!(10));
        assert_eq!(Ask::parse(&params(&[("amount", "0")])), Err("invalid amount"));
        assert_eq!(Ask::parse(&params(&[("amount", "x")])), Err("invalid amount"));
        assert_eq!(Ask::parse(&params(&[("amount", "-1")])), Err("invalid amount"));
        assert_eq!(
            Ask::parse(&params(&[("from", "USD"), ("to", "USD")])),
            Err("bad currency pair")
        );
        assert!(
            Ask::parse(&params(&[("to", "EUR")])).is_ok(),
            "no explicit base: not caught"
        );
    }

    #[test]
    fn euro_rates_are_the_ecb_digits_and_other_bases_round_twice() {
        let eur = Ask::parse(&[]).unwrap().rates(&day()).unwrap();
        assert_eq!(eur[3], ("USD".into(), dec!(1.0956)));
        let ten = Ask::parse(&params(&[("amount", "10")])).unwrap().rates(&day()).unwrap();
        assert_eq!(ten[0], ("GBP".into(), dec!(8.6905)));
        assert_eq!(ten[2], ("JPY".into(), dec!(1557.60)));
        // IDR base: its EUR rate rounds to 16950 before dividing (lib/versions/v1/quote/base.rb).
        let idr = Ask::parse(&params(&[("base", "IDR"), ("symbols", "EUR,USD")])).unwrap();
        let rates = idr.rates(&day()).unwrap();
        assert_eq!(
            rates,
            vec![("EUR".into(), dec!(0.000059)), ("USD".into(), dec!(0.000065))]
        );
        let usd = Ask::parse(&params(&[("from", "USD"), ("to", "EUR")])).unwrap();
        assert_eq!(usd.rates(&day()).unwrap(), vec![("EUR".into(), dec!(0.91274))]);
        let missing = Ask::parse(&params(&[("from", "CHF")])).unwrap();
        assert_eq!(
            missing.rates(&day()),
            None,
            "a base without a rate that day drops the day"
        );
    }
}
