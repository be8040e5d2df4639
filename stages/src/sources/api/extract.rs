//! Request extractors that turn every kind of bad input into an [`ApiError`]
//! naming the field at fault: strict JSON bodies, query strings, pairs in paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::contract;
use super::error::{ApiError, ErrorCode, FieldError};
use crate::fx::{Currency, Pair};

/// A JSON body, strictly: `Content-Type: application/json` (else 415),
/// within the body limit (else 413), well-formed (else 400), and matching the
/// type with no unknown fields (else 422 with the field's path).
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    ErrorCode::BodyTooLarge,
                    "the request body is larger than this API accepts",
                )
            } else {
                ApiError::bad_request(ErrorCode::UnreadableBody, rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(StrictJson)
    }
}

/// Deserialize `bytes` as `T`, with the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |inner: &serde_json::Error| {
        ApiError::bad_request(ErrorCode::MalformedJson, format!("the body is not valid JSON: {inner}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::validation(vec![FieldError::new(field, strip_position(&inner.to_string()))])
            }
            _ => malformed(&inner),
        }
    })?;
    // Trailing characters after the value are malformed JSON too.
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string as `T` (`deny_unknown_fields` in `T` makes unknown
/// parameters an error); 400 naming the parameter otherwise.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Params)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                if path == "." {
                    ApiError::bad_request(ErrorCode::InvalidParameter, format!("query string: {message}"))
                        .with_details(vec![FieldError::new("query", message)])
                } else {
                    ApiError::invalid_parameter(&format!("query.{path}"), message)
                }
            })
    }
}

/// A pair as written in a path: `EURUSD`, `EUR-USD`, `EUR_USD` or `EUR/USD`,
/// in either orientation; always returned in market convention.
pub fn pair_in_path(text: &str) -> Result<Pair, ApiError> {
    pair_param("path.pair", text)
}

/// A pair parameter ([`contract::PAIR`]): 400 when it is not written as a
/// pair; 404 when it is, but names no currency (`EURXYZ`) or one currency
/// twice (`EUREUR`): well-formed, and no such pair exists.
pub fn pair_param(field: &str, text: &str) -> Result<Pair, ApiError> {
    if !contract::conforms(contract::PAIR, text) {
        return Err(ApiError::invalid_parameter(
            field,
            format!("`{text}` is not a currency pair; write a pair as EURUSD, EUR-USD or EUR_USD"),
        ));
    }
    match text.parse::<Pair>() {
        Ok(pair) => Ok(Pair::market(pair.base, pair.quote)),
        Err(crate::fx::pair::PairError::Currency(e)) => {
            Err(ApiError::not_found(ErrorCode::UnknownCurrency, e.to_string())
                .with_details(vec![FieldError::new(field, "no such currency")]))
        }
        Err(e) => Err(ApiError::not_found(ErrorCode::UnknownPair, e.to_string())
            .with_details(vec![FieldError::new(field, "no such pair")])),
    }
}

/// A currency code parameter ([`contract::CURRENCY`]): 400 when it is not
/// three letters, 404 when it is no currency (not an ISO 4217 code, or `XXX`).
pub fn currency(field: &str, text: &str) -> Result<Currency, ApiError> {
    if !contract::conforms(contract::CURRENCY, text) {
        return Err(ApiError::invalid_parameter(
            field,
            format!("`{text}` is not a currency code: three letters such as EUR, USD, JPY"),
        ));
    }
    Currency::parse(text).map_err(|e| {
        ApiError::not_found(ErrorCode::UnknownCurrency, e.to_string())
            .with_details(vec![FieldError::new(field, "no such currency")])
    })
}

/// An RFC 3339 instant parameter.
pub fn instant(field: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let t = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid_parameter(
                field,
                format!("`{text}` is not an RFC 3339 time ({e}), e.g. 2024-01-02T00:00:00Z"),
            )
        })?;
    if t < earliest() || t > latest() {
        return Err(ApiError::invalid_parameter(
            field,
            "must lie between the years 1 and 9999",
        ));
    }
    Ok(t)
}

/// The earliest and latest instants a range can name: years 1 to 9999, so
/// every store compares them correctly (SQLite compares timestamps as text).
pub fn earliest() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01 is representable")
}

pub fn latest() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31 is representable")
}

/// `from`/`to` as a half-open range, defaulting to everything.
pub fn time_range(from: Option<&str>, to: Option<&str>) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let from = from
        .map(|t| instant("query.from", t))
        .transpose()?
        .unwrap_or_else(earliest);
    let to = to.map(|t| instant("query.to", t)).transpose()?.unwrap_or_else(latest);

    if from > to {
        return Err(
            ApiError::bad_request(ErrorCode::InvalidRange, format!("`from` ({from}) is after `to` ({to})"))
                .with_details(vec![FieldError::new("query.from", "must not be after `to`")]),
        );
    }
    Ok((from, to))
}

/// A page size: default `default`, at most `max`.
pub fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match limit {
        None => Ok(default.min(max)),
        Some(0) => Err(ApiError::invalid_parameter("query.limit", "must be at least 1")),
        Some(n) if n > max => Err(ApiError::bad_request(
            ErrorCode::PageTooLarge,
            format!("query.limit: {n} is above the maximum of {max} rows per page; follow `next` for more"),
        )
        .with_details(vec![FieldError::new(
            "query.limit",
            format!("at most {max} (limits.max_page)"),
        )])),
        Some(n) => Ok(n),
    }
}

/// Keyset pagination: `rows` was fetched with `limit + 1`; keep `limit` and,
/// when there was more, give the link to the next page: `path`, the filters
/// that were set, `limit`, and the cursor (`name`, made from the last row kept).
pub fn next_page<T>(
    rows: &mut Vec<T>,
    limit: u32,
    path: &str,
    filters: &[(&str, Option<&str>)],
    cursor_of: impl FnOnce(&T) -> (&'static str, String),
) -> Option<String> {
    if rows.len() <= limit as usize {
        return None;
    }
    rows.truncate(limit as usize);
    let (name, cursor) = cursor_of(rows.last()?);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in filters {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    query.append_pair("limit", &limit.to_string());
    query.append_pair(name, &cursor);
    Some(format!("{path}?{}", query.finish()))
}

/// The `after` cursor of lists ordered by (time, source): the last row sent.
pub fn time_source_cursor(text: Option<&str>) -> Result<Option<(DateTime<Utc>, String)>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let parts = cursor::decode("query.after", text, 2)?;
    Ok(Some((instant("query.after", &parts[0])?, parts[1].clone())))
}

/// The cursor [`time_source_cursor`] reads back.
pub fn encode_time_source(ts: DateTime<Utc>, source: &str) -> String {
    cursor::encode(&[&ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), source])
}

/// Opaque page cursors: URL-safe base64 of the key of the last row sent.
pub mod cursor {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::super::error::ApiError;

    pub fn encode(parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(parts.join("\u{1f}"))
    }

    pub fn decode(field: &str, text: &str, parts: usize) -> Result<Vec<String>, ApiError> {
        let bad = || {
            ApiError::bad_request(
                super::ErrorCode::InvalidCursor,
                format!("{field}: not a cursor this API issued; use the `next` link as given"),
            )
            .with_details(vec![super::super::error::FieldError::new(
                field,
                "not a cursor this API issued",
            )])
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let fields: Vec<String> = text.split('\u{1f}').map(str::to_owned).collect();
        if fields.len() != parts {
            return Err(bad());
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        pair: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        threshold: super::super::model::DecimalJson,
    }

    #[test]
    fn json_errors_say_what_and_where() {
        let e = parse_json::<Body>(b"{\"pair\": ").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (400, "malformed_json"));
        let e = parse_json::<Body>(b"{\"pair\": \"EUR/USD\", \"inner\": {\"threshold\": 1}} x").unwrap_err();
        assert_eq!(e.code.as_str(), "malformed_json", "trailing characters");
        let e = parse_json::<Body>(b"{\"pair\": \"EUR/USD\", \"inner\": {\"threshold\": 1, \"oops\": 2}}").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (422, "validation_failed"));
        assert_eq!(e.details[0].field, "inner.oops", "the unknown field itself");
        assert!(e.details[0].message.contains("unknown field `oops`"), "{:?}", e.details);
        let e = parse_json::<Body>(b"{\"pair\": \"EUR/USD\", \"inner\": {\"threshold\": true}}").unwrap_err();
        assert_eq!(e.details[0].field, "inner.threshold");
    }

    #[test]
    fn decimals_keep_every_digit_of_numbers_and_strings() {
        let body: Body = parse_json(b"{\"pair\": \"x\", \"inner\": {\"threshold\": 1.1000000000000000888}}").unwrap();
        assert_eq!(body.inner.threshold.0.to_string(), "1.1000000000000000888");
        let body: Body = parse_json(b"{\"pair\": \"x\", \"inner\": {\"threshold\": \"0.10\"}}").unwrap();
        assert_eq!(body.inner.threshold.0.to_string(), "0.10");
        let body: Body = parse_json(b"{\"pair\": \"x\", \"inner\": {\"threshold\": 15e-1}}").unwrap();
        assert_eq!(body.inner.threshold.0.to_string(), "1.5");
        assert!(parse_json::<Body>(b"{\"pair\": \"x\", \"inner\": {\"threshold\": \"1e5\"}}").is_err());
        assert!(parse_json::<Body>(b"{\"pair\": \"x\", \"inner\": {\"threshold\": 1e400}}").is_err());
    }

    #[test]
    fn pairs_in_paths_come_in_any_spelling_and_orientation() {
        for text in ["EURUSD", "EUR-USD", "EUR_USD", "eur/usd", "USDEUR", "USD_EUR"] {
            assert_eq!(pair_in_path(text).unwrap().to_string(), "EUR/USD", "{text}");
        }
        let e = pair_in_path("EURXYZ").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (404, "unknown_currency"),
            "well-formed, no such currency"
        );
        let e = pair_in_path("EUREUR").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (404, "unknown_pair"));
        let e = pair_in_path("EUR USD").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (400, "invalid_parameter"),
            "not written as a pair"
        );
        let e = currency("query.from", "XXX").unwrap_err();
        assert_eq!(e.status.as_u16(), 404);
        assert!(e.message.contains("no currency"), "{}", e.message);
    }

    #[test]
    fn ranges_and_limits_are_checked() {
        assert!(time_range(Some("2024-01-02T00:00:00Z"), Some("2024-01-01T00:00:00Z")).is_err());
        assert!(time_range(Some("yesterday"), None).is_err());
        assert_eq!(page_limit(None, 1000, 10_000).unwrap(), 1000);
        assert!(page_limit(Some(10_001), 1000, 10_000).is_err());
        let c = cursor::encode(&["2024-01-01T00:00:00Z", "ecb"]);
        assert_eq!(
            cursor::decode("after", &c, 2).unwrap(),
            vec!["2024-01-01T00:00:00Z", "ecb"]
        );
        assert!(cursor::decode("after", "!!", 2).is_err());
    }
}
