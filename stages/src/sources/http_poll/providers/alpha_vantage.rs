//! Alpha Vantage `CURRENCY_EXCHANGE_RATE`: one pair per response, bid and ask as strings;
//! throttling and errors arrive with HTTP 200.

use super::*;

/// Does an Alpha Vantage `Information` text speak of request limits (rather than, say, a premium
/// endpoint)?
fn is_rate_limit_text(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "rate limit",
        "call frequency",
        "requests per",
        "calls per",
        "spreading out",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Alpha Vantage: `{"Realtime Currency Exchange Rate":{"1. From_Currency Code":…,"5. Exchange
/// Rate":"…","6. Last Refreshed":"…","7. Time Zone":"UTC","8. Bid Price":"…","9. Ask Price":"…"}}`.
/// Throttling arrives with HTTP 200 as `{"Note": …}` or `{"Information": …}`; bad requests as
/// `{"Error Message": …}`.
pub(super) fn read(body: &[u8], asked: Option<Pair>) -> Result<Rates, PollError> {
    #[derive(Deserialize)]
    struct Av {
        #[serde(rename = "Realtime Currency Exchange Rate")]
        rate: Option<AvRate>,
        #[serde(rename = "Note")]
        note: Option<String>,
        #[serde(rename = "Information")]
        information: Option<String>,
        #[serde(rename = "Error Message")]
        error_message: Option<String>,
    }
    #[derive(Deserialize)]
    struct AvRate {
        #[serde(rename = "1. From_Currency Code")]
        from: String,
        #[serde(rename = "3. To_Currency Code")]
        to: String,
        #[serde(rename = "5. Exchange Rate")]
        rate: String,
        #[serde(rename = "6. Last Refreshed")]
        refreshed: Option<String>,
        #[serde(rename = "7. Time Zone")]
        time_zone: Option<String>,
        #[serde(rename = "8. Bid Price")]
        bid: Option<String>,
        #[serde(rename = "9. Ask Price")]
        ask: Option<String>,
    }
    let av: Av = serde_json::from_slice(body).map_err(|e| undecodable("Alpha Vantage", e))?;
    if let Some(note) = av.note {
        return Err(PollError::throttled(note));
    }
    if let Some(info) = av.information {
        return Err(if is_rate_limit_text(&info) {
            PollError::throttled(info)
        } else {
            PollError::fatal(info)
        });
    }
    if let Some(message) = av.error_message {
        return Err(PollError::fatal(message));
    }
    let rate = av
        .rate
        .ok_or_else(|| PollError::bad_response("no `Realtime Currency Exchange Rate` in the response"))?;
    let pair = Pair::new(
        rate.from.parse().map_err(|e| PollError::bad_response(format!("{e}")))?,
        rate.to.parse().map_err(|e| PollError::bad_response(format!("{e}")))?,
    )
    .map_err(|e| PollError::bad_response(e.to_string()))?;
    if asked.is_some_and(|a| a != pair) {
        return Err(PollError::bad_response(format!(
            "asked for {}, got {pair}",
            asked.expect("checked")
        )));
    }
    let parse = |field: &str, text: &str| decimal_text(text.trim()).map_err(|e| format!("{pair} {field}: {e}"));
    let mid = parse("rate", &rate.rate).map_err(PollError::bad_response)?;
    // Bid and ask when both are given as numbers; otherwise the rate is a mid.
    let (bid, ask) = match (rate.bid.as_deref(), rate.ask.as_deref()) {
        (Some(b), Some(a)) => match (parse("bid", b), parse("ask", a)) {
            (Ok(b), Ok(a)) => (b, a),
            _ => (mid, mid),
        },
        _ => (mid, mid),
    };
    // "2026-11-24 10:00:01" in "7. Time Zone"; without a zone we can read, the receive time is used.
    let ts = match (rate.refreshed.as_deref(), rate.time_zone.as_deref().map(str::trim)) {
        (Some(text), Some("UTC" | "GMT" | "Etc/UTC")) => Some(
            NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S")
                .map_err(|_| PollError::bad_response(format!("bad `6. Last Refreshed` `{text}`")))?
                .and_utc(),
        ),
        _ => None,
    };
    Ok(Rates {
        ts: None,
        rates: vec![Rate { pair, bid, ask, ts }],
    })
}

/// Alpha Vantage `CURRENCY_EXCHANGE_RATE`.
pub(super) struct AlphaVantage;

impl RateApi for AlphaVantage {
    fn name(&self) -> &'static str {
        "alphavantage"
    }

    fn key_use(&self) -> KeyUse {
        KeyUse::Required
    }

    fn default_url(&self, _keyed: bool) -> &'static str {
        "https://www.alphavantage.co"
    }

    /// One request per pair, in market orientation.
    fn urls(&self, target: &Target<'_>, key: &str) -> Result<Vec<(Url, Option<Pair>)>, String> {
        target
            .symbols
            .iter()
            .map(|symbol| {
                let pair = Pair::market(target.base, *symbol);
                let mut url = join(target.url, &["query"])?;
                url.query_pairs_mut()
                    .append_pair("function", "CURRENCY_EXCHANGE_RATE")
                    .append_pair("from_currency", pair.base.code())
                    .append_pair("to_currency", pair.quote.code())
                    .append_pair("apikey", key);
                Ok((url, Some(pair)))
            })
            .collect()
    }

    fn read(&self, _: u16, body: &[u8], request: &Request, _: Currency, _: &[Currency]) -> Result<Rates, PollError> {
        read(body, request.pair)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::super::test_support::*;
    use super::super::*;

    fn av_body(from: &str, to: &str, rate: &str, bid: &str, ask: &str) -> String {
        format!(
            r#"{{"Realtime Currency Exchange Rate": {{"1. From_Currency Code": "{from}", "2. From_Currency Name": "Euro", "3. To_Currency Code": "{to}", "4. To_Currency Name": "United States Dollar", "5. Exchange Rate": "{rate}", "6. Last Refreshed": "2026-11-24 10:00:01", "7. Time Zone": "UTC", "8. Bid Price": "{bid}", "9. Ask Price": "{ask}"}}}}"#
        )
    }

    #[test]
    fn alpha_vantage_one_pair_per_response() {
        let eurusd: Pair = "EUR/USD".parse().unwrap();
        let body = av_body("EUR", "USD", "1.16170000", "1.16160000", "1.16180000");
        let rates = read(
            Provider::AlphaVantage,
            &request(Some(eurusd)),
            c("USD"),
            &[c("EUR")],
            200,
            None,
            body.as_bytes(),
        )
        .unwrap();
        let rate = &rates.rates[0];
        assert_eq!(rate.pair, eurusd);
        assert_eq!(rate.bid.to_string(), "1.16160000");
        assert_eq!(rate.ask.to_string(), "1.16180000");
        assert_eq!(rate.ts, Some("2026-11-24T10:00:01Z".parse().unwrap()));
        let usdjpy = read(
            Provider::AlphaVantage,
            &request(None),
            c("USD"),
            &[c("JPY")],
            200,
            None,
            av_body("USD", "JPY", "156.42000000", "156.41000000", "156.43000000").as_bytes(),
        )
        .unwrap();
        let s = snapshot(&[rates, usdjpy], "USD", &[c("EUR"), c("JPY")]);
        assert_eq!(quote(&s, "EUR/USD").bid, dec!(1.1616));
        assert_eq!(quote(&s, "USD/JPY").ask, dec!(156.43));
        assert_eq!(s.ts, "2026-11-24T10:00:01Z".parse::<DateTime<Utc>>().unwrap());
        // A reply for another pair than asked is refused.
        let e = read_err(
            Provider::AlphaVantage,
            Some("GBP/USD".parse().unwrap()),
            200,
            &av_body("EUR", "USD", "1.1617", "1.1616", "1.1618"),
        );
        assert_eq!(e.reason, "bad_response");
        // Bid and ask given as "-" fall back to the mid.
        let rates = read_ok(
            Provider::AlphaVantage,
            "USD",
            &[c("EUR")],
            &av_body("EUR", "USD", "1.1617", "-", "-"),
        );
        assert_eq!((rates.rates[0].bid, rates.rates[0].ask), (dec!(1.1617), dec!(1.1617)));
    }

    #[test]
    fn alpha_vantage_throttling_and_errors_come_with_http_200() {
        let note = r#"{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency."}"#;
        let e = read_err(Provider::AlphaVantage, None, 200, note);
        assert_eq!((e.class, e.reason), (ErrorClass::Throttled, "throttled"));
        let info = r#"{"Information": "We have detected your API key as DEMO and our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."}"#;
        let e = read_err(Provider::AlphaVantage, None, 200, info);
        assert_eq!((e.class, e.reason), (ErrorClass::Throttled, "throttled"));
        let premium = r#"{"Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"}"#;
        let e = read_err(Provider::AlphaVantage, None, 200, premium);
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "provider_error"));
        let error = r#"{"Error Message": "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for CURRENCY_EXCHANGE_RATE."}"#;
        let e = read_err(Provider::AlphaVantage, None, 200, error);
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "provider_error"));
        assert!(e.message.starts_with("Invalid API call"));
    }
}
