//! `/rates/{pair}/candles`: bars of one interval, read from the candles table
//! the `Candles` stage keeps (one row per bar, never aggregated per request).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::context::ApiState;
use super::csv;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{encode_time_source, next_page, page_limit, pair_in_path, time_range, time_source_cursor, Params};
use super::model::{CandleView, CandlesResponse};
use super::rates::{ts_text, wants_csv, Format, DEFAULT_PAGE};
use crate::store::{CandleQuery, StoredCandle};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// The bar length, as the `Candles` stage's `intervals` name it: `1m`, `5m`, `1h`, `1d`.
    /// Required: without it a 400 names the lengths. A length no stage builds has no bars.
    #[param(example = "1h", required = true, pattern = r"^[1-9][0-9]{0,5}(s|m|h|d)$")]
    pub interval: Option<String>,
    /// First bar start (RFC 3339, inclusive). Default: the beginning.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Bars starting before this (RFC 3339, exclusive). Default: the end.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Only this provider's bars (`ecb`).
    pub source: Option<String>,
    /// Bars per page, 1 to the stage's `limits.max_page`; default 1,000. With CSV: the most bars exported.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The cursor from the previous page's `next`.
    pub after: Option<String>,
    /// `csv` streams the whole range as CSV (also with `Accept: text/csv`).
    #[param(inline)]
    pub format: Option<Format>,
}

/// The interval parameter: required, a duration, named as the store names it (`60m` is `1h`).
fn interval(text: Option<&str>) -> Result<(String, Duration), ApiError> {
    let field = "query.interval";
    let Some(text) = text else {
        return Err(ApiError::invalid_parameter(
            field,
            "give the bar length: interval=1m, 5m, 1h or 1d (what the Candles stage builds)",
        ));
    };
    if !super::contract::conforms(super::contract::CANDLE_INTERVAL, text) {
        return Err(ApiError::invalid_parameter(
            field,
            format!("`{text}` is not a bar length: a whole number of s, m, h or d, such as 1m, 5m, 1h or 1d"),
        ));
    }
    let interval = super::model::parse_duration(text).map_err(|e| ApiError::invalid_parameter(field, e))?;
    Ok((fxflow_engine::duration::format(&interval), interval))
}

/// A pair's bars of one interval, oldest first (by start, then source), one
/// keyset-paginated page at a time; or the whole range as streamed CSV.
/// Served from the candles table: a bar is one row, however many prices made it.
#[utoipa::path(get, path = "/rates/{pair}/candles", operation_id = "listCandles", tag = "rates",
    params(("pair" = String, Path, description = "`EURUSD`, `EUR-USD`, `EUR_USD`, either orientation", example = "EURUSD", pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$"), CandlesQuery),
    responses(
        (status = 200, description = "One page (JSON) or the whole range (CSV: pair,interval,start,source,open,high,low,close,bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close,ticks,closed)",
            content((CandlesResponse = "application/json"), (String = "text/csv"))),
        (status = 400, description = "No or a malformed interval, a malformed parameter, `from` after `to`, or `limit` above the maximum", body = ErrorBody),
        (status = 404, description = "Not a monitored pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn candles(
    State(state): State<ApiState>,
    Path(pair_text): Path<String>,
    headers: HeaderMap,
    Params(q): Params<CandlesQuery>,
) -> ApiResult<Response> {
    let pair = state.monitored(pair_in_path(&pair_text)?)?;
    let (name, length) = interval(q.interval.as_deref())?;
    let (from, to) = time_range(q.from.as_deref(), q.to.as_deref())?;
    let after = time_source_cursor(q.after.as_deref())?;
    let query = CandleQuery {
        pair,
        interval: name.clone(),
        from,
        to,
        source: q.source.clone(),
        after,
        limit: 0,
    };
    if wants_csv(q.format, &headers) {
        let limit = csv::export_limit(q.limit)?;
        let filename = format!("{}{}-{name}-candles.csv", pair.base, pair.quote);
        let pages = CandlePages { state, query };
        return Ok(csv::stream(
            &filename,
            "pair,interval,start,source,open,high,low,close,bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close,ticks,closed\n",
            pages,
            limit,
        ));
    }
    let limit = page_limit(q.limit, DEFAULT_PAGE, state.limits.max_page)?;
    let mut page = state
        .store
        .candles(&CandleQuery {
            limit: limit + 1,
            ..query
        })
        .await?;
    let filters = [
        ("interval", Some(name.as_str())),
        ("from", q.from.as_deref()),
        ("to", q.to.as_deref()),
        ("source", q.source.as_deref()),
    ];
    let path = format!("/rates/{}{}/candles", pair.base, pair.quote);
    let next = next_page(&mut page, limit, &path, &filters, |last| {
        ("after", encode_time_source(last.start, &last.source))
    });
    Ok(Json(CandlesResponse {
        pair: pair.to_string(),
        interval: name,
        candles: page.iter().map(|c| CandleView::new(c, length)).collect(),
        next,
    })
    .into_response())
}

/// One pair's bars, page by page, for [`csv::stream`].
struct CandlePages {
    state: ApiState,
    query: CandleQuery,
}

fn csv_line(out: &mut String, c: &StoredCandle) {
    use std::fmt::Write as _;
    let side = |bar: Option<crate::fx::Ohlc>| match bar {
        Some(b) => format!("{},{},{},{}", b.open, b.high, b.low, b.close),
        None => ",,,".to_owned(),
    };
    let _ = writeln!(
        out,
        "{},{},{},{},{},{},{},{},{},{},{},{}",
        c.pair,
        c.interval,
        ts_text(c.start),
        csv::field(&c.source),
        c.mid.open,
        c.mid.high,
        c.mid.low,
        c.mid.close,
        side(c.bid),
        side(c.ask),
        c.ticks,
        c.closed
    );
}

#[fxflow_engine::async_trait]
impl csv::CsvPages for CandlePages {
    async fn next_page(&mut self, limit: u32, out: &mut String) -> Result<usize, crate::store::StoreError> {
        self.query.limit = limit;
        let page = self.state.store.candles(&self.query).await?;
        for candle in &page {
            csv_line(out, candle);
        }
        if let Some(last) = page.last() {
            self.query.after = Some((last.start, last.source.clone()));
        }
        Ok(page.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_named_as_the_store_names_them() {
        assert_eq!(interval(Some("60m")).unwrap().0, "1h");
        assert_eq!(interval(Some("1d")).unwrap().0, "1d");
        let e = interval(None).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.details[0].field.as_str()),
            (400, "query.interval")
        );
        assert!(interval(Some("1500ms")).is_err(), "bars are whole seconds");
        assert!(
            interval(Some("1000ms")).is_err(),
            "written in s, m, h or d, as the document says"
        );
        assert!(interval(Some("01h")).is_err() && interval(Some("1 h")).is_err());
        assert!(interval(Some("hourly")).is_err());
        // Longer than any bar the Candles stage builds (366 days): a length with no bars, not an error.
        assert_eq!(interval(Some("400d")).unwrap().0, "400d");
    }
}
