//! `/rates`, `/rates/{pair}`, `/rates/{pair}/history`, `/currencies`, `/convert`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::IntoParams;

use super::context::ApiState;
use super::csv;
use super::error::{ApiError, ApiResult, ErrorBody, ErrorCode, FieldError};
use super::extract::{
    currency, encode_time_source, instant, next_page, page_limit, pair_in_path, pair_param, time_range,
    time_source_cursor, Params,
};
use super::model::{
    parse_decimal, ConvertResponse, CurrenciesResponse, CurrencyView, HistoryResponse, HistoryRow, QuoteSide, RateView,
    RatesResponse,
};
use crate::fx::Pair;
use crate::store::RateQuery;

/// Default rows per history page.
pub const DEFAULT_PAGE: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RatesQuery {
    /// Only these pairs, comma-separated: `EUR/USD,USD/JPY` (any spelling or orientation).
    #[param(pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}(,[A-Za-z]{3}[-_/]?[A-Za-z]{3})*$")]
    pub pairs: Option<String>,
    /// The rates in force at this instant (RFC 3339), from the stored history.
    #[param(format = DateTime)]
    pub at: Option<String>,
}

/// Parse a `pairs` filter into monitored market-convention pairs.
pub fn pair_filter(state: &ApiState, pairs: Option<&str>) -> ApiResult<Option<Vec<Pair>>> {
    let Some(text) = pairs else {
        return Ok(None);
    };
    if !super::contract::conforms(super::contract::PAIRS, text) {
        return Err(ApiError::invalid_parameter(
            "query.pairs",
            format!("`{text}` is not a list of pairs; write pairs as EUR/USD,USD/JPY (no spaces)"),
        ));
    }
    let mut out = Vec::new();
    for item in text.split(',') {
        out.push(state.monitored(pair_param("query.pairs", item)?)?);
    }
    out.sort();
    out.dedup();
    Ok(Some(out))
}

fn json_body(body: Bytes) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// The current rate of every monitored pair (quotes and crosses), or of the
/// pairs asked for, or — with `at` — the rates in force at a past instant.
#[utoipa::path(get, path = "/rates", operation_id = "listRates", tag = "rates", params(RatesQuery),
    responses(
        (status = 200, description = "One rate per pair, in market convention", body = RatesResponse),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 404, description = "A pair that is not monitored", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store or cache does not answer", body = ErrorBody),
    ))]
pub async fn list(State(state): State<ApiState>, Params(q): Params<RatesQuery>) -> ApiResult<Response> {
    let filter = pair_filter(&state, q.pairs.as_deref())?;
    if let Some(at) = q.at.as_deref() {
        let at = instant("query.at", at)?;
        let pairs = filter.unwrap_or_else(|| state.pairs.clone());
        let rates = state.store.rates_at(&pairs, at).await?;
        let rates = rates.iter().map(|r| RateView::from_stored(r, None)).collect();
        return Ok(Json(RatesResponse { rates, at: Some(at) }).into_response());
    }
    match filter {
        // The hot path: the whole board, serialized once per change.
        None if state.cache.is_none() => Ok(json_body(state.view.board.all_json())),
        None => {
            let rates = state.current(&state.pairs).await?;
            Ok(Json(RatesResponse { rates, at: None }).into_response())
        }
        Some(pairs) => {
            let rates = state.current(&pairs).await?;
            Ok(Json(RatesResponse { rates, at: None }).into_response())
        }
    }
}

/// The current rate of one pair.
#[utoipa::path(get, path = "/rates/{pair}", operation_id = "getRate", tag = "rates",
    params(("pair" = String, Path, description = "`EURUSD`, `EUR-USD`, `EUR_USD` or `EUR%2FUSD`, either orientation", example = "EURUSD", pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$")),
    responses(
        (status = 200, description = "The pair's rate, in market convention", body = RateView),
        (status = 400, description = "Not a currency pair", body = ErrorBody),
        (status = 404, description = "Not monitored, or no rate yet", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store or cache does not answer", body = ErrorBody),
    ))]
pub async fn one(State(state): State<ApiState>, Path(pair): Path<String>) -> ApiResult<Json<RateView>> {
    let pair = state.monitored(pair_in_path(&pair)?)?;
    let mut rates = state.current(&[pair]).await?;
    match rates.pop() {
        Some(rate) => Ok(Json(rate)),
        None => Err(ApiError::not_found(
            ErrorCode::NoRate,
            format!("no rate of {pair} has been seen yet"),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// First instant (RFC 3339, inclusive). Default: the beginning.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Last instant (RFC 3339, exclusive). Default: the end.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only this provider's prices (`ecb`).
    pub source: Option<String>,
    /// Rows per page, 1 to the stage's `limits.max_page` (default 10,000); default 1,000.
    /// With CSV: the most rows exported (default: all).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The cursor from the previous page's `next`.
    pub after: Option<String>,
    /// `csv` streams the whole range as CSV (also with `Accept: text/csv`).
    #[param(inline)]
    pub format: Option<Format>,
    /// Not served here: bars of an interval come from `/rates/{pair}/candles?interval=`
    /// (a 400 says so). Left out of the document: no request may send it.
    #[param(ignore)]
    pub interval: Option<String>,
}

/// A pair's rate history, oldest first, one keyset-paginated page at a time;
/// or the whole range as streamed CSV.
#[utoipa::path(get, path = "/rates/{pair}/history", operation_id = "listRateHistory", tag = "rates",
    params(("pair" = String, Path, description = "`EURUSD`, `EUR-USD`, `EUR_USD`, either orientation", example = "EURUSD", pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$"), HistoryQuery),
    responses(
        (status = 200, description = "One page (JSON) or the whole range (CSV: pair,ts,source,kind,bid,ask,mid)",
            content((HistoryResponse = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Malformed parameter, `from` after `to`, or `limit` above the maximum", body = ErrorBody),
        (status = 404, description = "Not a monitored pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<ApiState>,
    Path(pair_text): Path<String>,
    headers: HeaderMap,
    Params(q): Params<HistoryQuery>,
) -> ApiResult<Response> {
    let pair = state.monitored(pair_in_path(&pair_text)?)?;
    if let Some(interval) = q.interval.as_deref() {
        return Err(ApiError::bad_request(
            ErrorCode::UseCandles,
            format!(
                "the history is every stored price; bars of an interval are served by /rates/{}{}/candles?interval={interval}",
                pair.base, pair.quote
            ),
        )
        .with_details(vec![FieldError::new("query.interval", "use /rates/{pair}/candles")]));
    }
    let (from, to) = time_range(q.from.as_deref(), q.to.as_deref())?;
    let after = time_source_cursor(q.after.as_deref())?;
    let query = RateQuery {
        pair,
        from,
        to,
        source: q.source.clone(),
        after,
        limit: 0,
    };
    if wants_csv(q.format, &headers) {
        let limit = csv::export_limit(q.limit)?;
        let filename = format!("{}{}-history.csv", pair.base, pair.quote);
        let pages = HistoryPages {
            state,
            query,
            pair: pair.to_string(),
        };
        return Ok(csv::stream(
            &filename,
            "pair,ts,source,kind,bid,ask,mid\n",
            pages,
            limit,
        ));
    }
    let limit = page_limit(q.limit, DEFAULT_PAGE, state.limits.max_page)?;
    let mut page = state
        .store
        .rates(&RateQuery {
            limit: limit + 1,
            ..query
        })
        .await?;
    let filters = [
        ("from", q.from.as_deref()),
        ("to", q.to.as_deref()),
        ("source", q.source.as_deref()),
    ];
    let path = format!("/rates/{}{}/history", pair.base, pair.quote);
    let next = next_page(&mut page, limit, &path, &filters, |last| {
        ("after", encode_time_source(last.ts, &last.source))
    });
    Ok(Json(HistoryResponse {
        pair: pair.to_string(),
        rates: page.iter().map(HistoryRow::from).collect(),
        next,
    })
    .into_response())
}

pub fn ts_text(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Whether the client asked for CSV: `format=csv`, or `Accept: text/csv` without a `format`.
pub fn wants_csv(format: Option<Format>, headers: &HeaderMap) -> bool {
    match format {
        Some(Format::Csv) => true,
        Some(Format::Json) => false,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    }
}

/// The history of one pair, page by page, for [`csv::stream`].
struct HistoryPages {
    state: ApiState,
    query: RateQuery,
    pair: String,
}

#[fxflow_engine::async_trait]
impl csv::CsvPages for HistoryPages {
    async fn next_page(&mut self, limit: u32, out: &mut String) -> Result<usize, crate::store::StoreError> {
        use std::fmt::Write as _;
        self.query.limit = limit;
        let page = self.state.store.rates(&self.query).await?;
        for row in &page {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{}",
                self.pair,
                ts_text(row.ts),
                csv::field(&row.source),
                row.kind.as_str(),
                row.bid,
                row.ask,
                row.mid
            );
        }
        if let Some(last) = page.last() {
            self.query.after = Some((last.ts, last.source.clone()));
        }
        Ok(page.len())
    }
}

/// The monitored currencies with their names.
#[utoipa::path(get, path = "/currencies", operation_id = "listCurrencies", tag = "rates",
    responses(
        (status = 200, body = CurrenciesResponse),
        (status = 429, description = "Rate limited", body = ErrorBody),
    ))]
pub async fn currencies(State(state): State<ApiState>) -> Json<CurrenciesResponse> {
    Json(CurrenciesResponse {
        currencies: state
            .currencies
            .iter()
            .map(|c| CurrencyView {
                code: c.code().to_owned(),
                name: c.name().to_owned(),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConvertQuery {
    /// The currency you have (ISO 4217).
    #[param(example = "USD", pattern = "^[A-Za-z]{3}$")]
    pub from: String,
    /// The currency you want (not `from`).
    #[param(example = "JPY", pattern = "^[A-Za-z]{3}$")]
    pub to: String,
    /// How much of `from` (exact decimal, not negative); default 1.
    #[param(example = "1000", pattern = r"^[0-9]{1,15}(\.[0-9]{1,12})?$")]
    pub amount: Option<String>,
}

/// Convert an amount at the current rate, exactly: selling the pair's base
/// uses its bid, buying it uses its ask (mid-only providers: their one price).
#[utoipa::path(get, path = "/convert", operation_id = "convert", tag = "rates", params(ConvertQuery),
    responses(
        (status = 200, body = ConvertResponse),
        (status = 400, description = "Not a currency code or amount; `same_currency`: `to` is `from` (a rule across fields)", body = ErrorBody),
        (status = 404, description = "No such currency (`XXX` too), one that is not monitored, or no rate yet", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store or cache does not answer", body = ErrorBody),
    ))]
pub async fn convert(
    State(state): State<ApiState>,
    Params(q): Params<ConvertQuery>,
) -> ApiResult<Json<ConvertResponse>> {
    let from = currency("query.from", &q.from)?;
    let to = currency("query.to", &q.to)?;
    if from == to {
        return Err(
            ApiError::bad_request(ErrorCode::SameCurrency, "`to` must differ from `from`")
                .with_details(vec![FieldError::new("query.to", "must differ from `from`")]),
        );
    }
    let amount = match q.amount.as_deref() {
        None => Decimal::ONE,
        Some(text) if !super::contract::conforms(super::contract::AMOUNT, text) => {
            return Err(ApiError::invalid_parameter(
                "query.amount",
                format!("`{text}` is not an amount: digits with an optional fraction, e.g. 1000 or 99.95"),
            ))
        }
        Some(text) => parse_decimal(text).map_err(|e| ApiError::invalid_parameter("query.amount", e))?,
    };
    if amount.is_sign_negative() {
        return Err(ApiError::invalid_parameter("query.amount", "must not be negative"));
    }
    for (field, c) in [("query.from", from), ("query.to", to)] {
        state.monitored_currency(field, c)?;
    }
    let pair = Pair::market(from, to);
    let rate = state
        .current(&[pair])
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(ErrorCode::NoRate, format!("no rate of {pair} has been seen yet")))?;
    let overflow = || ApiError::invalid_parameter("query.amount", "the result does not fit a decimal (±7.9e28)");
    let (side, price, result) = if pair.base == from {
        // Selling the base: the bid.
        let side = if rate.bid == rate.ask {
            QuoteSide::Mid
        } else {
            QuoteSide::Bid
        };
        (side, rate.bid, amount.checked_mul(rate.bid).ok_or_else(overflow)?)
    } else {
        // Buying the base with the quote currency: the ask.
        let side = if rate.bid == rate.ask {
            QuoteSide::Mid
        } else {
            QuoteSide::Ask
        };
        (side, rate.ask, amount.checked_div(rate.ask).ok_or_else(overflow)?)
    };
    Ok(Json(ConvertResponse {
        from: from.code().to_owned(),
        to: to.code().to_owned(),
        amount,
        result: result.normalize(),
        pair: pair.to_string(),
        rate: price,
        side,
        ts: rate.ts,
        source: rate.source,
    }))
}
