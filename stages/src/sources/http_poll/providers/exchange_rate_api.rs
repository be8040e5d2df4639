//! ExchangeRate-API v6, keyless open access and keyed: mid rates; errors as
//! `{"result":"error","error-type":…}` with HTTP 200.

use super::*;

/// ExchangeRate-API errors by their documented `error-type`; `None` for one not documented.
pub(super) fn error(kind: &str) -> Option<PollError> {
    let text = format!("ExchangeRate-API error `{kind}`");
    Some(match kind {
        "quota-reached" => PollError::throttled(text),
        "invalid-key" | "inactive-account" => PollError::unauthorized(text),
        "unsupported-code"
        | "unknown-code"
        | "malformed-request"
        | "base-code-only-on-pro"
        | "not-available-on-plan" => PollError::fatal(text),
        _ => return None,
    })
}

/// ExchangeRate-API: open access (`rates`) or v6 with a key (`conversion_rates`), both with
/// `result`, `time_last_update_unix` and `base_code`; errors are `{"result":"error","error-type":…}`
/// with HTTP 200.
pub(super) fn read(body: &[u8], base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
    #[derive(Deserialize)]
    struct ErApi {
        result: Option<String>,
        #[serde(rename = "error-type")]
        error_type: Option<String>,
        time_last_update_unix: Option<Box<RawValue>>,
        base_code: Option<String>,
        rates: Option<RawMap>,
        conversion_rates: Option<RawMap>,
    }
    let er: ErApi = serde_json::from_slice(body).map_err(|e| undecodable("ExchangeRate-API", e))?;
    match er.result.as_deref() {
        Some("success") => {}
        Some("error") => {
            let kind = er.error_type.as_deref().unwrap_or("unknown");
            return Err(error(kind).unwrap_or_else(|| PollError::fatal(format!("ExchangeRate-API error `{kind}`"))));
        }
        other => {
            return Err(PollError::bad_response(format!(
                "`result` is {other:?}, expected \"success\" or \"error\""
            )))
        }
    }
    let map = er
        .conversion_rates
        .or(er.rates)
        .ok_or_else(|| PollError::bad_response("no `rates` or `conversion_rates` in the response"))?;
    unix_stamped_rates(
        &map,
        er.base_code.as_deref(),
        er.time_last_update_unix.as_deref(),
        base,
        symbols,
    )
}

/// ExchangeRate-API v6 (open access without a key, the keyed endpoint with one).
pub(super) struct ExchangeRateApi;

impl RateApi for ExchangeRateApi {
    fn name(&self) -> &'static str {
        "exchangerate-api"
    }

    fn key_use(&self) -> KeyUse {
        KeyUse::Optional
    }

    fn default_url(&self, keyed: bool) -> &'static str {
        if keyed {
            "https://v6.exchangerate-api.com/v6"
        } else {
            "https://open.er-api.com/v6"
        }
    }

    fn urls(&self, target: &Target<'_>, key: &str) -> Result<Vec<(Url, Option<Pair>)>, String> {
        let base = target.base.code();
        let url = match target.key {
            Some(_) => join(target.url, &[key, "latest", base])?,
            None => join(target.url, &["latest", base])?,
        };
        Ok(vec![(url, None)])
    }

    fn read(&self, _: u16, body: &[u8], _: &Request, base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
        read(body, base, symbols)
    }

    fn error_body(&self, body: &[u8]) -> Option<(String, Option<PollError>)> {
        let kind = ErrorFields::of(body)?.error_type?;
        let known = error(&kind);
        Some((format!("ExchangeRate-API error `{kind}`"), known))
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn exchange_rate_api_open_and_keyed() {
        let open = r#"{"result":"success","provider":"https://www.exchangerate-api.com","documentation":"https://www.exchangerate-api.com/docs/free","terms_of_use":"https://www.exchangerate-api.com/terms","time_last_update_unix":1795910551,"time_last_update_utc":"Tue, 24 Nov 2026 00:02:31 +0000","time_next_update_unix":1795997641,"time_next_update_utc":"Wed, 25 Nov 2026 00:14:01 +0000","time_eol_unix":0,"base_code":"USD","rates":{"USD":1,"AED":3.6725,"AUD":1.534,"CAD":1.4023,"CHF":0.8052,"EUR":0.86,"GBP":0.7608,"JPY":156.42,"NZD":1.7716}}"#;
        let keyed = r#"{"result":"success","documentation":"https://www.exchangerate-api.com/docs","terms_of_use":"https://www.exchangerate-api.com/terms","time_last_update_unix":1795910401,"time_last_update_utc":"Tue, 24 Nov 2026 00:00:01 +0000","time_next_update_unix":1795996801,"time_next_update_utc":"Wed, 25 Nov 2026 00:00:01 +0000","base_code":"USD","conversion_rates":{"USD":1,"AUD":1.5342,"CAD":1.4023,"CHF":0.8052,"EUR":0.8601,"GBP":0.7608,"JPY":156.42,"NZD":1.7716}}"#;
        let symbols = majors_but("USD");
        let a = read_ok(Provider::ExchangeRateApi, "USD", &symbols, open);
        assert_eq!(a.ts, DateTime::from_timestamp(1_795_910_551, 0));
        assert_eq!(snapshot(&[a], "USD", &symbols).quotes.len(), 7);
        let b = read_ok(Provider::ExchangeRateApi, "USD", &symbols, keyed);
        let s = snapshot(&[b], "USD", &symbols);
        assert_eq!(quote(&s, "EUR/USD").bid, Decimal::ONE / dec!(0.8601));
        assert_eq!(quote(&s, "USD/CHF").bid, dec!(0.8052));
    }

    #[test]
    fn exchange_rate_api_errors_come_with_http_200() {
        for (kind, class, reason) in [
            ("quota-reached", ErrorClass::Throttled, "throttled"),
            ("invalid-key", ErrorClass::Fatal, "unauthorized"),
            ("inactive-account", ErrorClass::Fatal, "unauthorized"),
            ("unsupported-code", ErrorClass::Fatal, "provider_error"),
            ("malformed-request", ErrorClass::Fatal, "provider_error"),
        ] {
            let body = format!(r#"{{"result":"error","error-type":"{kind}"}}"#);
            let e = read_err(Provider::ExchangeRateApi, None, 200, &body);
            assert_eq!((e.class, e.reason), (class, reason), "{kind}");
            assert!(e.message.contains(kind));
        }
        // The open-access endpoint throttles with HTTP 429; an error type not documented leaves the
        // status to decide.
        let e = read_err(
            Provider::ExchangeRateApi,
            None,
            429,
            r#"{"result":"error","error-type":"rate-limited"}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Throttled, "throttled"));
        assert!(e.message.contains("rate-limited"));
        let e = read_err(Provider::ExchangeRateApi, None, 429, "Too Many Requests");
        assert_eq!(e.class, ErrorClass::Throttled);
        let e = read_err(
            Provider::ExchangeRateApi,
            None,
            200,
            r#"{"result":"error","error-type":"new-kind"}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "provider_error"));
    }
}
