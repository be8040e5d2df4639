//! Open Exchange Rates (`/api/latest.json`): mid rates against a base, errors as
//! `{"error":true,"status":…,"message":…,"description":…}`.

use super::*;

/// OXR errors by their `message` (its documented codes). `not_allowed` comes with HTTP 429 but is a
/// plan restriction, not throttling; `access_restricted` is "repeated over-use".
pub(super) fn error(message: &str, status: Option<u16>, text: String) -> Option<PollError> {
    Some(match message {
        "not_allowed" | "invalid_base" | "not_found" => PollError::fatal(text),
        "missing_app_id" | "invalid_app_id" => PollError::unauthorized(text),
        "access_restricted" => PollError::throttled(text),
        _ => match status? {
            429 => PollError::throttled(text),
            401 | 403 => PollError::unauthorized(text),
            500..=599 => PollError::new(ErrorClass::Transient, "server_error", text),
            _ => PollError::fatal(text),
        },
    })
}

/// Open Exchange Rates: `{"disclaimer","license","timestamp":…,"base":"USD","rates":{…}}`, or
/// `{"error":true,"status":401,"message":"invalid_app_id","description":"…"}`.
pub(super) fn read(status: u16, body: &[u8], base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
    #[derive(Deserialize)]
    struct Oxr {
        #[serde(default)]
        error: bool,
        status: Option<u16>,
        message: Option<String>,
        description: Option<String>,
        timestamp: Option<Box<RawValue>>,
        base: Option<String>,
        rates: Option<RawMap>,
    }
    let oxr: Oxr = serde_json::from_slice(body).map_err(|e| undecodable("Open Exchange Rates", e))?;
    if oxr.error {
        let message = oxr.message.unwrap_or_else(|| "error".into());
        let text = match &oxr.description {
            Some(d) => format!("{message}: {d}"),
            None => message.clone(),
        };
        let class = error(&message, oxr.status.or(Some(status)), text.clone());
        return Err(class.unwrap_or_else(|| PollError::fatal(text)));
    }
    let map = oxr
        .rates
        .ok_or_else(|| PollError::bad_response("no `rates` in the response"))?;
    unix_stamped_rates(&map, oxr.base.as_deref(), oxr.timestamp.as_deref(), base, symbols)
}

/// Open Exchange Rates.
pub(super) struct OpenExchangeRates;

impl RateApi for OpenExchangeRates {
    fn name(&self) -> &'static str {
        "openexchangerates"
    }

    fn key_use(&self) -> KeyUse {
        KeyUse::Required
    }

    fn default_url(&self, _keyed: bool) -> &'static str {
        "https://openexchangerates.org/api"
    }

    fn urls(&self, target: &Target<'_>, key: &str) -> Result<Vec<(Url, Option<Pair>)>, String> {
        let mut url = join(target.url, &["latest.json"])?;
        url.query_pairs_mut()
            .append_pair("app_id", key)
            .append_pair("base", target.base.code())
            .append_pair("symbols", &codes(target.symbols));
        Ok(vec![(url, None)])
    }

    fn read(
        &self,
        status: u16,
        body: &[u8],
        _: &Request,
        base: Currency,
        symbols: &[Currency],
    ) -> Result<Rates, PollError> {
        read(status, body, base, symbols)
    }

    fn error_body(&self, body: &[u8]) -> Option<(String, Option<PollError>)> {
        let fields = ErrorFields::of(body)?;
        let message = fields.message?;
        let text = match &fields.description {
            Some(d) => format!("{message}: {d}"),
            None => message.clone(),
        };
        Some((text.clone(), error(&message, None, text)))
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::super::test_support::*;
    use super::super::*;

    const OXR: &str = r#"{
        "disclaimer": "Usage subject to terms: https://openexchangerates.org/terms",
        "license": "https://openexchangerates.org/license",
        "timestamp": 1795953600,
        "base": "USD",
        "rates": {"AED": 3.6725, "AUD": 1.534217, "CAD": 1.402301, "CHF": 0.805216, "EUR": 0.860142,
                  "GBP": 0.760811, "JPY": 156.4215, "NZD": 1.771602, "XDR": 0.7321, "BTC": 0.000010123}
    }"#;

    #[test]
    fn open_exchange_rates_success() {
        let symbols = majors_but("USD");
        let rates = read_ok(Provider::OpenExchangeRates, "USD", &symbols, OXR);
        assert_eq!(rates.ts, DateTime::from_timestamp(1_795_953_600, 0));
        let s = snapshot(&[rates], "USD", &symbols);
        assert_eq!(quote(&s, "USD/JPY").bid, dec!(156.4215));
        assert_eq!(quote(&s, "EUR/USD").bid, Decimal::ONE / dec!(0.860142));
        assert_eq!(quote(&s, "AUD/USD").ask, Decimal::ONE / dec!(1.534217));
    }

    #[test]
    fn open_exchange_rates_errors() {
        let e = read_err(
            Provider::OpenExchangeRates,
            None,
            401,
            r#"{"error":true,"status":401,"message":"invalid_app_id","description":"Invalid App ID provided."}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "unauthorized"));
        assert!(e.message.contains("invalid_app_id"));
        // `not_allowed` arrives as HTTP 429 but is a plan restriction, not throttling.
        let e = read_err(
            Provider::OpenExchangeRates,
            None,
            429,
            r#"{"error":true,"status":429,"message":"not_allowed","description":"Changing the API `base` currency is available for Developer, Enterprise and Unlimited plan clients."}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "provider_error"));
        let e = read_err(
            Provider::OpenExchangeRates,
            None,
            403,
            r#"{"error":true,"status":403,"message":"access_restricted","description":"Access restricted for repeated over-use (status: 429)."}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Throttled, "throttled"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        // An error body with HTTP 200 is an error all the same.
        let e = read_err(
            Provider::OpenExchangeRates,
            None,
            200,
            r#"{"error":true,"status":401,"message":"missing_app_id","description":"No App ID provided."}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "unauthorized"));
    }
}
