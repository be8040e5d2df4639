//! `/fluctuation`: how much each currency moved against a base over a range —
//! the rate in force at `from`, the one in force at `to`, the change and the
//! change in percent, all exact decimals from the stored history.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::context::ApiState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{currency, instant, time_range, Params};
use crate::fx::{Currency, Pair};
use crate::store::StoredRate;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FluctuationQuery {
    /// Start of the range (RFC 3339): the rates in force at this instant.
    #[param(format = DateTime)]
    pub from: String,
    /// End of the range (RFC 3339, not before `from`); default now (or `from`, if later).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// The currency the others are priced in; default EUR.
    #[param(example = "EUR", pattern = "^[A-Za-z]{3}$")]
    pub base: Option<String>,
    /// Only these currencies, comma-separated; default every monitored one but `base`.
    #[param(example = "USD,JPY", pattern = "^[A-Za-z]{3}(,[A-Za-z]{3})*$")]
    pub symbols: Option<String>,
}

/// One currency's move over the range: the price of one `base` in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Fluctuation {
    #[schema(value_type = String, example = "1.1050")]
    pub start: Decimal,
    #[schema(value_type = String, example = "1.0838")]
    pub end: Decimal,
    /// `end - start`.
    #[schema(value_type = String, example = "-0.0212")]
    pub change: Decimal,
    /// `change / start × 100`.
    #[schema(value_type = String, example = "-1.918552036199095022624434389")]
    pub change_pct: Decimal,
}

/// The moves of every asked currency against `base`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FluctuationResponse {
    #[schema(example = "EUR")]
    pub base: String,
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub to: DateTime<Utc>,
    /// By currency code; a currency with no stored rate at `from` or at `to` is left out.
    pub rates: BTreeMap<String, Fluctuation>,
}

/// How each currency moved against a base between two instants: the rates in
/// force at `from` and at `to` (mids, from the stored history), the change and
/// the change in percent.
#[utoipa::path(get, path = "/fluctuation", operation_id = "getFluctuation", tag = "rates", params(FluctuationQuery),
    responses(
        (status = 200, body = FluctuationResponse),
        (status = 400, description = "Malformed parameter; `invalid_range`: `from` after `to` (a rule across fields)", body = ErrorBody),
        (status = 404, description = "No such currency, or one that is not monitored", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn fluctuation(
    State(state): State<ApiState>,
    Params(q): Params<FluctuationQuery>,
) -> ApiResult<Json<FluctuationResponse>> {
    // Without `to`: up to now (or to `from` itself, when that is later: the rates in force then are the newest).
    let (from, to) = match q.to.as_deref() {
        Some(to) => time_range(Some(&q.from), Some(to))?,
        None => {
            let from = instant("query.from", &q.from)?;
            (from, from.max(Utc::now()))
        }
    };
    let base = match q.base.as_deref() {
        Some(text) => state.monitored_currency("query.base", currency("query.base", text)?)?,
        None => Currency::EUR,
    };
    let symbols: Vec<Currency> = match q.symbols.as_deref() {
        Some(text) => {
            if !super::contract::conforms(super::contract::CURRENCIES, text) {
                return Err(ApiError::invalid_parameter(
                    "query.symbols",
                    format!("`{text}` is not a list of currency codes such as USD,JPY"),
                ));
            }
            let mut list = Vec::new();
            for code in text.split(',') {
                let c = state.monitored_currency("query.symbols", currency("query.symbols", code)?)?;
                if c != base && !list.contains(&c) {
                    list.push(c);
                }
            }
            list
        }
        None => state.currencies.iter().copied().filter(|c| *c != base).collect(),
    };
    let pairs: Vec<Pair> = symbols.iter().map(|s| Pair::market(base, *s)).collect();
    let (starts, ends) = tokio::try_join!(state.store.rates_at(&pairs, from), state.store.rates_at(&pairs, to))?;
    let mut rates = BTreeMap::new();
    for symbol in symbols {
        let pair = Pair::market(base, symbol);
        let price = |rows: &[StoredRate]| rows.iter().find(|r| r.pair == pair).and_then(|r| of_base(r, base));
        if let (Some(start), Some(end)) = (price(&starts), price(&ends)) {
            let change = end - start;
            let change_pct = (change / start * Decimal::ONE_HUNDRED).normalize();
            rates.insert(
                symbol.code().to_owned(),
                Fluctuation {
                    start,
                    end,
                    change,
                    change_pct,
                },
            );
        }
    }
    Ok(Json(FluctuationResponse {
        base: base.code().to_owned(),
        from,
        to,
        rates,
    }))
}

/// The price of one `base` in the pair's other currency: the mid, or its inverse.
fn of_base(rate: &StoredRate, base: Currency) -> Option<Decimal> {
    if rate.pair.base == base {
        Some(rate.mid)
    } else if rate.mid.is_zero() {
        None
    } else {
        Some((Decimal::ONE / rate.mid).normalize())
    }
}
