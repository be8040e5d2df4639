//! The ECB's `eurofxref-daily.xml`, read by a small scanner of its `Cube` elements.

use super::*;

/// The ECB's `eurofxref-daily.xml`: `<Cube time='YYYY-MM-DD'>` holding `<Cube currency='USD'
/// rate='1.1617'/>` elements, all against EUR. Read by a small scanner of `Cube` elements (single or
/// double quotes); a file with several days (the 90-day history) gives its newest.
pub(super) fn read(body: &[u8], symbols: &[Currency]) -> Result<Rates, PollError> {
    let text = std::str::from_utf8(body).map_err(|e| undecodable("ECB", e))?;
    let mut days: Vec<(NaiveDate, HashMap<&str, &str>)> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("<Cube") {
        let after = &rest[at + "<Cube".len()..];
        let end = after
            .find('>')
            .ok_or_else(|| PollError::bad_response("unterminated <Cube> element"))?;
        let tag = &after[..end];
        rest = &after[end + 1..];
        if tag.starts_with(|c: char| !(c.is_whitespace() || c == '/')) {
            continue; // another element whose name starts with "Cube"
        }
        let attributes = xml_attributes(tag).map_err(PollError::bad_response)?;
        let get = |name: &str| attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        if let Some(time) = get("time") {
            let date = NaiveDate::parse_from_str(time.trim(), "%Y-%m-%d")
                .map_err(|_| PollError::bad_response(format!("bad Cube time `{time}`")))?;
            days.push((date, HashMap::new()));
        } else if let (Some(currency), Some(rate)) = (get("currency"), get("rate")) {
            let (_, rates) = days
                .last_mut()
                .ok_or_else(|| PollError::bad_response("a rate Cube outside any dated Cube"))?;
            rates.insert(currency.trim(), rate.trim());
        }
    }
    let (date, found) = days
        .into_iter()
        .max_by_key(|(date, _)| *date)
        .ok_or_else(|| PollError::bad_response("no <Cube time='…'> element: not an ECB reference-rate file"))?;
    let mut rates = Vec::new();
    for symbol in symbols {
        if let Some(text) = found.get(symbol.code()) {
            let value = decimal_text(text).map_err(|e| PollError::bad_response(format!("{symbol}: {e}")))?;
            rates.push(Rate {
                pair: Pair {
                    base: Currency::EUR,
                    quote: *symbol,
                },
                bid: value,
                ask: value,
                ts: None,
            });
        }
    }
    Ok(Rates {
        ts: Some(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()),
        rates,
    })
}

/// `name='value'` / `name="value"` pairs of a start tag's inside.
fn xml_attributes(tag: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = tag.trim().trim_end_matches('/').trim_end();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| format!("bad attributes in <Cube{tag}>"))?;
        let name = rest[..eq].trim();
        let value_part = rest[eq + 1..].trim_start();
        let quote = value_part
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or_else(|| format!("unquoted attribute `{name}` in <Cube{tag}>"))?;
        let close = value_part[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute `{name}` in <Cube{tag}>"))?;
        out.push((name, &value_part[1..1 + close]));
        rest = value_part[close + 2..].trim_start();
    }
    Ok(out)
}

/// The ECB's daily reference rates file.
pub(super) struct Ecb;

impl RateApi for Ecb {
    fn name(&self) -> &'static str {
        "ecb"
    }

    fn default_url(&self, _keyed: bool) -> &'static str {
        "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
    }

    fn fixed_base(&self) -> Option<Currency> {
        Some(Currency::EUR)
    }

    fn urls(&self, target: &Target<'_>, _key: &str) -> Result<Vec<(Url, Option<Pair>)>, String> {
        Ok(vec![(target.url.clone(), None)])
    }

    fn read(&self, _: u16, body: &[u8], _: &Request, _: Currency, symbols: &[Currency]) -> Result<Rates, PollError> {
        read(body, symbols)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::super::test_support::*;
    use super::super::*;

    const ECB_DAILY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<gesmes:Envelope xmlns:gesmes=\"http://www.gesmes.org/xml/2002-08-01\" xmlns=\"http://www.ecb.int/vocabulary/2002-08-01/eurofxref\">
\t<gesmes:subject>Reference rates</gesmes:subject>
\t<gesmes:Sender>
\t\t<gesmes:name>European Central Bank</gesmes:name>
\t</gesmes:Sender>
\t<Cube>
\t\t<Cube time='2026-11-24'>
\t\t\t<Cube currency='USD' rate='1.1617'/>
\t\t\t<Cube currency='JPY' rate='181.63'/>
\t\t\t<Cube currency='BGN' rate='1.9558'/>
\t\t\t<Cube currency='GBP' rate='0.87945'/>
\t\t\t<Cube currency='CHF' rate='0.9365'/>
\t\t\t<Cube currency='AUD' rate='1.7824'/>
\t\t\t<Cube currency='CAD' rate='1.6290'/>
\t\t\t<Cube currency='NZD' rate='2.0581'/>
\t\t</Cube>
\t</Cube>
</gesmes:Envelope>";

    #[test]
    fn ecb_daily_xml() {
        let symbols = majors_but("EUR");
        let rates = read_ok(Provider::Ecb, "EUR", &symbols, ECB_DAILY);
        let s = snapshot(&[rates], "EUR", &symbols);
        assert_eq!(s.base, Currency::EUR);
        assert_eq!(s.quotes.len(), 7);
        assert_eq!(s.ts, "2026-11-24T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // Against EUR every major is already in market orientation: the file's digits exactly.
        assert_eq!(quote(&s, "EUR/USD").bid, dec!(1.1617));
        assert_eq!(quote(&s, "EUR/GBP").ask, dec!(0.87945));
        assert_eq!(quote(&s, "EUR/CAD").bid.to_string(), "1.6290", "trailing zero kept");
        assert_eq!(quote(&s, "EUR/JPY").bid, dec!(181.63));
    }

    #[test]
    fn ecb_double_quotes_several_days_and_garbage() {
        let body = r#"<Cube><Cube time="2026-11-21"><Cube currency="USD" rate="1.1500"/></Cube>
            <Cube time="2026-11-24"><Cube currency="USD" rate="1.1617" /></Cube></Cube>"#;
        let rates = read_ok(Provider::Ecb, "EUR", &[c("USD")], body);
        assert_eq!(
            rates.ts,
            Some("2026-11-24T00:00:00Z".parse().unwrap()),
            "the newest day"
        );
        assert_eq!(rates.rates[0].bid, dec!(1.1617));
        for bad in [
            "<html><body>Maintenance</body></html>",
            "<Cube time='2026-11-24'><Cube currency='USD' rate='1,16'/></Cube>",
            "<Cube time='2026-11-24'><Cube currency='USD' rate='1.16/></Cube>",
            "<Cube currency='USD' rate='1.16'/>",
        ] {
            let e = read(
                Provider::Ecb,
                &request(None),
                Currency::EUR,
                &[c("USD")],
                200,
                None,
                bad.as_bytes(),
            )
            .unwrap_err();
            assert_eq!((e.class, e.reason), (ErrorClass::Invalid, "bad_response"), "{bad}");
        }
    }
}
