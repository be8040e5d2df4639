//! OANDA v20 pricing: best bid and ask per instrument, nanosecond timestamps.

use super::*;

/// OANDA v20: `{"prices":[{"instrument":"EUR_USD","time":"…","bids":[{"price":"…","liquidity":…}],
/// "asks":[…],"closeoutBid":…,"closeoutAsk":…,"tradeable":true,"type":"PRICE"}],"time":"…"}`. The best
/// bid is the highest bucket, the best ask the lowest. An instrument with an empty side has no price.
pub(super) fn read(body: &[u8], base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
    #[derive(Deserialize)]
    struct Pricing {
        prices: Option<Vec<Price>>,
        #[serde(rename = "errorMessage")]
        error_message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Price {
        #[serde(rename = "type")]
        kind: Option<String>,
        instrument: String,
        time: String,
        #[serde(default)]
        bids: Vec<Bucket>,
        #[serde(default)]
        asks: Vec<Bucket>,
    }
    #[derive(Deserialize)]
    struct Bucket {
        price: Box<RawValue>,
    }
    let pricing: Pricing = serde_json::from_slice(body).map_err(|e| undecodable("OANDA pricing", e))?;
    if let Some(message) = pricing.error_message {
        return Err(PollError::fatal(message));
    }
    let prices = pricing
        .prices
        .ok_or_else(|| PollError::bad_response("no `prices` in the response"))?;
    let wanted: Vec<Pair> = symbols.iter().map(|s| Pair::market(base, *s)).collect();
    let mut rates = Vec::new();
    for price in prices {
        if price.kind.as_deref().is_some_and(|k| k != "PRICE") {
            continue;
        }
        let pair: Pair = price
            .instrument
            .parse()
            .map_err(|e| PollError::bad_response(format!("instrument `{}`: {e}", price.instrument)))?;
        if !wanted.contains(&pair) {
            continue;
        }
        let side = |buckets: &[Bucket], name: &str| -> Result<Vec<Decimal>, PollError> {
            buckets
                .iter()
                .map(|b| decimal(&b.price).map_err(|e| PollError::bad_response(format!("{pair} {name}: {e}"))))
                .collect()
        };
        let (Some(bid), Some(ask)) = (
            side(&price.bids, "bid")?.into_iter().max(),
            side(&price.asks, "ask")?.into_iter().min(),
        ) else {
            continue;
        };
        let ts = DateTime::parse_from_rfc3339(&price.time)
            .map_err(|_| PollError::bad_response(format!("{pair}: bad time `{}`", price.time)))?
            .with_timezone(&Utc);
        rates.push(Rate {
            pair,
            bid,
            ask,
            ts: Some(ts),
        });
    }
    Ok(Rates { ts: None, rates })
}

/// OANDA v20 pricing.
pub(super) struct Oanda;

impl RateApi for Oanda {
    fn name(&self) -> &'static str {
        "oanda"
    }

    fn key_use(&self) -> KeyUse {
        KeyUse::Required
    }

    fn default_url(&self, _keyed: bool) -> &'static str {
        "https://api-fxtrade.oanda.com"
    }

    fn needs_account(&self) -> bool {
        true
    }

    fn bearer_key(&self) -> bool {
        true
    }

    fn urls(&self, target: &Target<'_>, _key: &str) -> Result<Vec<(Url, Option<Pair>)>, String> {
        let account = target.account_id.ok_or("OANDA needs `account_id`")?;
        let mut url = join(target.url, &["v3", "accounts", account, "pricing"])?;
        let instruments: Vec<String> = target
            .symbols
            .iter()
            .map(|s| instrument(Pair::market(target.base, *s)))
            .collect();
        url.query_pairs_mut().append_pair("instruments", &instruments.join(","));
        Ok(vec![(url, None)])
    }

    fn read(&self, _: u16, body: &[u8], _: &Request, base: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
        read(body, base, symbols)
    }

    fn error_body(&self, body: &[u8]) -> Option<(String, Option<PollError>)> {
        Some((ErrorFields::of(body)?.error_message?, None))
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::super::test_support::*;
    use super::super::*;

    const OANDA: &str = r#"{"time":"2026-11-24T10:00:01.500000000Z","prices":[
        {"type":"PRICE","time":"2026-11-24T10:00:01.123456789Z","bids":[{"price":"1.16160","liquidity":1000000},{"price":"1.16150","liquidity":5000000}],"asks":[{"price":"1.16180","liquidity":1000000},{"price":"1.16190","liquidity":5000000}],"closeoutBid":"1.16150","closeoutAsk":"1.16190","status":"tradeable","tradeable":true,"instrument":"EUR_USD"},
        {"type":"PRICE","time":"2026-11-24T10:00:00.987654321Z","bids":[{"price":"156.410","liquidity":1000000}],"asks":[{"price":"156.430","liquidity":1000000}],"closeoutBid":"156.400","closeoutAsk":"156.440","status":"tradeable","tradeable":true,"instrument":"USD_JPY"},
        {"type":"PRICE","time":"2026-11-24T09:00:00.000000000Z","bids":[],"asks":[],"closeoutBid":"0.80500","closeoutAsk":"0.80540","status":"non-tradeable","tradeable":false,"instrument":"USD_CHF"}
    ]}"#;

    #[test]
    fn oanda_best_bid_and_ask_with_nanosecond_times() {
        let symbols = [c("EUR"), c("JPY"), c("CHF")];
        let rates = read_ok(Provider::Oanda, "USD", &symbols, OANDA);
        assert_eq!(rates.rates.len(), 2, "USD_CHF has no bids or asks, so no price");
        let out = assemble(&[rates], c("USD"), &symbols, false, source(), received()).unwrap();
        assert_eq!(out.missing, vec![c("CHF")]);
        let s = out.snapshot;
        let eurusd = quote(&s, "EUR/USD");
        assert_eq!(
            (eurusd.bid.to_string(), eurusd.ask.to_string()),
            ("1.16160".into(), "1.16180".into())
        );
        assert_eq!(
            eurusd.ts,
            "2026-11-24T10:00:01.123456789Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(quote(&s, "USD/JPY").bid, dec!(156.410));
        assert_eq!(s.ts, eurusd.ts, "the newest price");
        assert!(out.provider_time);
    }

    #[test]
    fn oanda_errors() {
        let e = read_err(
            Provider::Oanda,
            None,
            401,
            r#"{"errorMessage":"Insufficient authorization to perform request."}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "unauthorized"));
        assert!(e.message.contains("Insufficient authorization"));
        let e = read_err(
            Provider::Oanda,
            None,
            400,
            r#"{"errorMessage":"Invalid value specified for 'instruments'"}"#,
        );
        assert_eq!((e.class, e.reason), (ErrorClass::Fatal, "provider_error"));
        let e = read_err(Provider::Oanda, None, 200, r#"{"prices":[{"instrument":"EUR_USD"}]}"#);
        assert_eq!(e.reason, "bad_response");
    }
}
