//! Frankfurter (api.frankfurter.dev): v1 `/latest` objects and v2 `/rates` arrays, mid rates.

use super::*;

/// Frankfurter v1 (`{"amount":1.0,"base":"USD","date":"…","rates":{…}}`) or v2 (an array of
/// `{"date","base","quote","rate"}` rows); either shape is accepted from either endpoint.
pub(super) fn read(body: &[u8], base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
    #[derive(Deserialize)]
    struct V1 {
        base: Option<String>,
        date: Option<String>,
        rates: Option<RawMap>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Row {
        date: String,
        base: String,
        quote: String,
        rate: Box<RawValue>,
    }
    let text = std::str::from_utf8(body).map_err(|e| undecodable("Frankfurter", e))?;
    if text.trim_start().starts_with('[') {
        let rows: Vec<Row> = serde_json::from_str(text).map_err(|e| undecodable("Frankfurter v2", e))?;
        let mut rates = Vec::new();
        for row in rows {
            check_base(Some(&row.base), base)?;
            let Some(symbol) = symbols.iter().find(|s| s.code().eq_ignore_ascii_case(&row.quote)) else {
                continue;
            };
            let value = decimal(&row.rate).map_err(|e| PollError::bad_response(format!("{symbol}: {e}")))?;
            let ts = date_at_midnight(&row.date).map_err(PollError::bad_response)?;
            rates.push(Rate {
                pair: Pair { base, quote: *symbol },
                bid: value,
                ask: value,
                ts: Some(ts),
            });
        }
        return Ok(Rates { ts: None, rates });
    }
    let v1: V1 = serde_json::from_str(text).map_err(|e| undecodable("Frankfurter", e))?;
    let Some(map) = v1.rates else {
        return Err(PollError::bad_response(match v1.message {
            Some(message) => format!("no rates; the provider says: {message}"),
            None => "no `rates` in the response".into(),
        }));
    };
    check_base(v1.base.as_deref(), base)?;
    let ts = v1
        .date
        .as_deref()
        .map(date_at_midnight)
        .transpose()
        .map_err(PollError::bad_response)?;
    Ok(Rates {
        ts,
        rates: rate_map(&map, base, symbols)?,
    })
}

/// Frankfurter: API v1 (`/latest?symbols=`) or v2 (`/rates?quotes=`); one reader takes both shapes.
pub(super) struct Frankfurter {
    pub v2: bool,
}

impl RateApi for Frankfurter {
    fn name(&self) -> &'static str {
        "frankfurter"
    }

    fn default_url(&self, _keyed: bool) -> &'static str {
        if self.v2 {
            "https://api.frankfurter.dev/v2"
        } else {
            "https://api.frankfurter.dev/v1"
        }
    }

    fn urls(&self, target: &Target<'_>, _key: &str) -> Result<Vec<(Url, Option<Pair>)>, String> {
        let (path, symbols) = if self.v2 {
            ("rates", "quotes")
        } else {
            ("latest", "symbols")
        };
        let mut url = join(target.url, &[path])?;
        url.query_pairs_mut()
            .append_pair("base", target.base.code())
            .append_pair(symbols, &codes(target.symbols));
        Ok(vec![(url, None)])
    }

    fn read(&self, _: u16, body: &[u8], _: &Request, base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
        read(body, base, symbols)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::super::test_support::*;
    use super::super::*;

    const FRANKFURTER_V1: &str = r#"{"amount":1.0,"base":"USD","date":"2026-11-24","rates":{"AUD":1.5342,"CAD":1.4023,"CHF":0.8052,"EUR":0.86,"GBP":0.7608,"JPY":156.42,"NZD":1.7716}}"#;

    #[test]
    fn frankfurter_v1_gives_market_pairs_with_exact_inverses() {
        let symbols = majors_but("USD");
        let rates = read_ok(Provider::Frankfurter, "USD", &symbols, FRANKFURTER_V1);
        assert_eq!(rates.ts, Some("2026-11-24T00:00:00Z".parse().unwrap()));
        let s = snapshot(&[rates], "USD", &symbols);
        assert_eq!(s.base, c("USD"));
        assert_eq!(s.quotes.len(), 7);
        assert!(s.quotes.iter().all(|q| q.pair.is_market_convention() && q.bid == q.ask));
        // USD→JPY 156.42 is already USD/JPY: the provider's digits, untouched.
        assert_eq!(quote(&s, "USD/JPY").bid, dec!(156.42));
        assert_eq!(quote(&s, "USD/CAD").ask, dec!(1.4023));
        // USD→EUR 0.86 is EUR/USD = 1/0.86, to 28 significant digits.
        let eurusd = quote(&s, "EUR/USD");
        assert_eq!(eurusd.bid, Decimal::ONE / dec!(0.86));
        assert_eq!(eurusd.bid.to_string(), "1.1627906976744186046511627907");
        assert_eq!(quote(&s, "GBP/USD").bid, Decimal::ONE / dec!(0.7608));
        assert_eq!(s.ts, "2026-11-24T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(s.quotes.iter().all(|q| q.ts == s.ts));
    }

    #[test]
    fn frankfurter_v2_rows() {
        let body = r#"[
            {"date":"2026-11-24","base":"USD","quote":"EUR","rate":0.86},
            {"date":"2026-11-24","base":"USD","quote":"JPY","rate":156.42},
            {"date":"2026-11-21","base":"USD","quote":"TWD","rate":31.913},
            {"date":"2026-11-23","base":"USD","quote":"CHF","rate":0.8052}
        ]"#;
        let symbols = [c("EUR"), c("JPY"), c("CHF")];
        let rates = read_ok(Provider::FrankfurterV2, "USD", &symbols, body);
        assert_eq!(rates.rates.len(), 3, "TWD was not asked for");
        let s = snapshot(&[rates], "USD", &symbols);
        assert_eq!(quote(&s, "EUR/USD").ask, Decimal::ONE / dec!(0.86));
        assert_eq!(quote(&s, "USD/JPY").ask, dec!(156.42));
        // A carried-forward row keeps its own date; the snapshot is as new as its newest row.
        assert_eq!(
            quote(&s, "USD/CHF").ts,
            "2026-11-23T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s.ts, "2026-11-24T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // Rows against another base are refused.
        let wrong = r#"[{"date":"2026-11-24","base":"EUR","quote":"JPY","rate":181.63}]"#;
        let e = read(
            Provider::FrankfurterV2,
            &request(None),
            c("USD"),
            &symbols,
            200,
            None,
            wrong.as_bytes(),
        )
        .unwrap_err();
        assert_eq!((e.class, e.reason), (ErrorClass::Invalid, "bad_response"));
    }

    #[test]
    fn frankfurter_errors() {
        let e = read_err(Provider::Frankfurter, None, 404, r#"{"message":"not found"}"#);
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "provider_error"));
        assert!(e.message.contains("not found"), "{}", e.message);
        let e = read_err(
            Provider::FrankfurterV2,
            None,
            422,
            r#"{"status":422,"message":"invalid currency: XXX"}"#,
        );
        assert_eq!(e.class, ErrorClass::Fatal);
        assert!(e.message.contains("invalid currency"));
        let e = read_err(Provider::Frankfurter, None, 200, r#"{"message":"not found"}"#);
        assert_eq!((e.class, e.reason), (ErrorClass::Invalid, "bad_response"));
        let e = read_err(Provider::Frankfurter, None, 200, "<html>oops</html>");
        assert_eq!((e.class, e.reason), (ErrorClass::Invalid, "bad_response"));
        let e = read_err(Provider::Frankfurter, None, 503, "<html>Service Unavailable</html>");
        assert_eq!((e.class, e.reason), (ErrorClass::Transient, "server_error"));
        assert_eq!(e.retry_after, None, "only throttling keeps Retry-After");
        let e = read_err(Provider::Frankfurter, None, 429, "");
        assert_eq!((e.class, e.reason), (ErrorClass::Throttled, "throttled"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    }
}
