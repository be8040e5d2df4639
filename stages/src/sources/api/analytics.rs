//! `/analytics/volatility`: the readings the `Volatility` stage stores.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::context::ApiState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{page_limit, time_range, Params};
use super::model::{VolatilityResponse, VolatilityView};
use super::rates::{pair_filter, DEFAULT_PAGE};
use crate::store::VolatilityQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VolatilityParams {
    /// Only these pairs, comma-separated: `EUR/USD,USD/JPY`. Default: every monitored pair.
    #[param(pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}(,[A-Za-z]{3}[-_/]?[A-Za-z]{3})*$")]
    pub pairs: Option<String>,
    /// The span the readings cover, as the `Volatility` stage's `window` names it. Default `30d`.
    #[param(example = "30d", pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
    pub window: Option<String>,
    /// With `from` and/or `to`: every reading whose window ends in the range (RFC 3339), by
    /// pair and time; without: the newest reading of each pair.
    #[param(format = DateTime)]
    pub from: Option<String>,
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Most readings in a range, 1 to the stage's `limits.max_page`; default 1,000.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
}

/// Realised volatility: the annualised standard deviation of each pair's log
/// returns over `window` — the newest reading per pair, or a range of them.
#[utoipa::path(get, path = "/analytics/volatility", operation_id = "getVolatility", tag = "analytics", params(VolatilityParams),
    responses(
        (status = 200, description = "Readings by pair (and time)", body = VolatilityResponse),
        (status = 400, description = "A malformed parameter or range", body = ErrorBody),
        (status = 404, description = "A pair that is not monitored", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn volatility(
    State(state): State<ApiState>,
    Params(q): Params<VolatilityParams>,
) -> ApiResult<Json<VolatilityResponse>> {
    let pairs = pair_filter(&state, q.pairs.as_deref())?.unwrap_or_else(|| state.pairs.clone());
    let window = match q.window.as_deref() {
        None => "30d".to_owned(),
        Some(text) => match super::model::parse_duration(text) {
            Ok(w) if !w.is_zero() => fxflow_engine::duration::format(&w),
            Ok(_) => return Err(ApiError::invalid_parameter("query.window", "must be longer than zero")),
            Err(e) => return Err(ApiError::invalid_parameter("query.window", e)),
        },
    };
    let range = if q.from.is_some() || q.to.is_some() {
        Some(time_range(q.from.as_deref(), q.to.as_deref())?)
    } else {
        None
    };
    let limit = page_limit(q.limit, DEFAULT_PAGE, state.limits.max_page)?;
    let readings = state
        .store
        .volatility(&VolatilityQuery {
            pairs,
            window: window.clone(),
            range,
            limit,
        })
        .await?;
    Ok(Json(VolatilityResponse {
        window,
        volatility: readings.iter().map(VolatilityView::from).collect(),
    }))
}
