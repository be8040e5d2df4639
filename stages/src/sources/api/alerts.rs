//! `/alerts` (create, list, get, delete) and `/alerts/history`.
//!
//! Every route needs a key, and answers with the caller's tenant's rules and
//! firings plus the pipeline file's shared ones; another tenant's rule is
//! "not found" (404, not 403: ids are no oracle).
//!
//! A rule is written to the store first (so it is listed at once and
//! survives restarts), then sent downstream as an `AlertRuleChange` and
//! acknowledged there before the answer goes out: 201 means the `Alert`
//! stage has it (in one process) or the rules topic holds it (workers).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Authorized;
use super::context::ApiState;
use super::error::{ApiError, ApiResult, ErrorBody, ErrorCode, FieldError};
use super::extract::{cursor, instant, next_page, page_limit, pair_param, time_range, Params, StrictJson};
use super::model::{
    parse_duration, AlertList, AlertView, BacktestPage, BacktestRequest, ConditionInput, FiringList, FiringView,
    NewAlert, RuleStatusView, TriggerInput,
};
use crate::fx::{AlertRule, AlertRuleChange, Condition, FxEvent, PriceField, Trigger, WebhookTarget};
use crate::store::{AlertQuery, RuleQuery, StoredRule};

/// Default rows per alert page.
const DEFAULT_PAGE: u32 = 100;
/// Longest webhook secret accepted.
const MAX_SECRET: usize = 256;
/// Longest webhook URL accepted.
const MAX_URL: usize = 2048;

/// A new rule id: 64 random bits in hex.
fn new_rule_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    hex::encode(bytes)
}

/// The condition types `POST /alerts` takes, and the fields each needs.
const CONDITIONS: &[(&str, &[&str])] = &[
    ("above", &["threshold"]),
    ("below", &["threshold"]),
    ("crossing", &["threshold"]),
    ("crossing_up", &["threshold"]),
    ("crossing_down", &["threshold"]),
    ("entering_channel", &["low", "high"]),
    ("exiting_channel", &["low", "high"]),
    ("inside_channel", &["low", "high"]),
    ("outside_channel", &["low", "high"]),
    ("moving_up", &["amount", "over"]),
    ("moving_down", &["amount", "over"]),
    ("moving_up_percent", &["percent", "over"]),
    ("moving_down_percent", &["percent", "over"]),
    ("pct_change", &["percent", "window"]),
    ("zscore", &["returns", "k"]),
    ("stale", &["max_age", "calendar", "source"]),
    ("divergence", &["bps", "sources"]),
];

/// A decimal field that must be above zero.
fn positive(
    errors: &mut Vec<FieldError>,
    kind: &str,
    field: &str,
    value: Option<Option<super::model::DecimalJson>>,
    example: &str,
) -> Option<Decimal> {
    match value.flatten() {
        Some(v) if v.0 > Decimal::ZERO => Some(v.0),
        Some(v) => {
            errors.push(FieldError::new(
                format!("condition.{field}"),
                format!("{} must be positive", v.0),
            ));
            None
        }
        None => {
            errors.push(FieldError::new(
                format!("condition.{field}"),
                format!("`{kind}` needs {field}, e.g. {example}"),
            ));
            None
        }
    }
}

/// A duration field that must be longer than zero; `missing` says what to send when absent.
fn positive_duration(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &Option<Option<String>>,
    missing: &str,
) -> Option<std::time::Duration> {
    match value.as_ref().and_then(|w| w.as_deref()).map(parse_duration) {
        Some(Ok(w)) if !w.is_zero() => Some(w),
        Some(Ok(_)) => {
            errors.push(FieldError::new(field, "must be longer than zero"));
            None
        }
        Some(Err(e)) => {
            errors.push(FieldError::new(field, e));
            None
        }
        None => {
            errors.push(FieldError::new(field, missing));
            None
        }
    }
}

/// A `moving_…` condition's lookback.
fn lookback(input: &ConditionInput, errors: &mut Vec<FieldError>) -> Option<crate::fx::Lookback> {
    let Some(over) = input.over.as_ref().and_then(|o| o.as_ref()) else {
        errors.push(FieldError::new(
            "condition.over",
            format!(
                "`{}` needs over, e.g. {{\"bars\": 5}} or {{\"window\": \"1h\"}}",
                input.kind
            ),
        ));
        return None;
    };
    let max = crate::transforms::alert::rules::MAX_BARS;
    match (over.bars.flatten(), over.window.as_ref().and_then(|w| w.as_deref())) {
        (Some(n), None) if (1..=max).contains(&n) => Some(crate::fx::Lookback::Bars(n)),
        (Some(n), None) => {
            errors.push(FieldError::new(
                "condition.over.bars",
                format!("{n} is out of range: 1 to {max}"),
            ));
            None
        }
        (None, Some(window)) => match parse_duration(window) {
            Ok(w) if !w.is_zero() => Some(crate::fx::Lookback::Window(w)),
            Ok(_) => {
                errors.push(FieldError::new("condition.over.window", "must be longer than zero"));
                None
            }
            Err(e) => {
                errors.push(FieldError::new("condition.over.window", e));
                None
            }
        },
        _ => {
            errors.push(FieldError::new(
                "condition.over",
                "give exactly one of bars or window, e.g. {\"bars\": 5}",
            ));
            None
        }
    }
}

fn condition(input: &ConditionInput, errors: &mut Vec<FieldError>) -> Option<Condition> {
    let kind = input.kind.as_str();
    let Some((_, fields)) = CONDITIONS.iter().find(|(name, _)| *name == kind) else {
        let names: Vec<&str> = CONDITIONS.iter().map(|(name, _)| *name).collect();
        errors.push(FieldError::new(
            "condition.type",
            format!("unknown condition `{kind}`; one of {}", names.join(", ")),
        ));
        return None;
    };
    let sent = [
        ("threshold", input.threshold.is_some()),
        ("percent", input.percent.is_some()),
        ("window", input.window.is_some()),
        ("returns", input.returns.is_some()),
        ("k", input.k.is_some()),
        ("low", input.low.is_some()),
        ("high", input.high.is_some()),
        ("amount", input.amount.is_some()),
        ("over", input.over.is_some()),
        ("max_age", input.max_age.is_some()),
        ("calendar", input.calendar.is_some()),
        ("source", input.source.is_some()),
        ("bps", input.bps.is_some()),
        ("sources", input.sources.is_some()),
    ];
    for (field, present) in sent {
        if present && !fields.contains(&field) {
            errors.push(FieldError::new(
                format!("condition.{field}"),
                format!("`{kind}` takes no {field}"),
            ));
        }
    }
    match kind {
        "above" | "below" | "crossing" | "crossing_up" | "crossing_down" => {
            let t = positive(errors, kind, "threshold", input.threshold, "1.10")?;
            Some(match kind {
                "above" => Condition::Above(t),
                "below" => Condition::Below(t),
                "crossing" => Condition::Crossing(t),
                "crossing_up" => Condition::CrossingUp(t),
                _ => Condition::CrossingDown(t),
            })
        }
        "entering_channel" | "exiting_channel" | "inside_channel" | "outside_channel" => {
            let low = positive(errors, kind, "low", input.low, "1.08");
            let high = positive(errors, kind, "high", input.high, "1.10");
            let (low, high) = (low?, high?);
            if low >= high {
                errors.push(FieldError::new(
                    "condition.high",
                    format!("{high} must be above low {low}"),
                ));
                return None;
            }
            Some(match kind {
                "entering_channel" => Condition::EnteringChannel { low, high },
                "exiting_channel" => Condition::ExitingChannel { low, high },
                "inside_channel" => Condition::InsideChannel { low, high },
                _ => Condition::OutsideChannel { low, high },
            })
        }
        "moving_up" | "moving_down" | "moving_up_percent" | "moving_down_percent" => {
            let percent = kind.ends_with("_percent");
            let size = if percent {
                positive(errors, kind, "percent", input.percent, "1.5")
            } else {
                positive(errors, kind, "amount", input.amount, "0.01")
            };
            let over = lookback(input, errors);
            let (size, over) = (size?, over?);
            Some(match kind {
                "moving_up" => Condition::MovingUp { amount: size, over },
                "moving_down" => Condition::MovingDown { amount: size, over },
                "moving_up_percent" => Condition::MovingUpPercent { percent: size, over },
                _ => Condition::MovingDownPercent { percent: size, over },
            })
        }
        "stale" => {
            let max_age = positive_duration(
                errors,
                "condition.max_age",
                &input.max_age,
                "`stale` needs a max_age such as \"26h\"",
            )
            .and_then(|w| {
                let ok = w <= std::time::Duration::from_secs(366 * 86_400);
                if !ok {
                    errors.push(FieldError::new("condition.max_age", "at most 366 days"));
                }
                ok.then_some(w)
            });
            let source = match input.source.clone() {
                Some(Some(s)) if s.is_empty() || s.len() > 64 => {
                    errors.push(FieldError::new("condition.source", "1 to 64 characters"));
                    None
                }
                Some(None) => {
                    errors.push(FieldError::new(
                        "condition.source",
                        "a source name such as \"ecb\"; leave it out to watch every source",
                    ));
                    None
                }
                source => Some(source.flatten()),
            };
            let calendar = match input.calendar {
                Some(None) => {
                    errors.push(FieldError::new(
                        "condition.calendar",
                        "`target` or `continuous`; leave it out for `target`",
                    ));
                    None
                }
                Some(Some(super::model::CalendarSpec::Continuous)) => Some(crate::fx::Calendar::Continuous),
                _ => Some(crate::fx::Calendar::Target),
            };
            Some(Condition::Stale {
                max_age: max_age?,
                calendar: calendar?,
                source: source?,
            })
        }
        "divergence" => {
            let bps = positive(errors, kind, "bps", input.bps, "25");
            let max = crate::transforms::alert::rules::MAX_DIVERGENCE_SOURCES;
            let sources = match input.sources.clone().flatten() {
                Some(list)
                    if (2..=max).contains(&list.len())
                        && list.iter().all(|s| !s.is_empty() && s.len() <= 64)
                        && list.iter().collect::<std::collections::HashSet<_>>().len() == list.len() =>
                {
                    Some(list)
                }
                Some(_) => {
                    errors.push(FieldError::new(
                        "condition.sources",
                        format!("name 2 to {max} different sources of 1 to 64 characters"),
                    ));
                    None
                }
                None => {
                    errors.push(FieldError::new(
                        "condition.sources",
                        "`divergence` needs sources, e.g. [\"ecb\", \"oanda\"]",
                    ));
                    None
                }
            };
            Some(Condition::Divergence {
                bps: bps?,
                sources: sources?,
            })
        }
        "pct_change" => {
            let percent = match input.percent.flatten() {
                Some(p) if !p.0.is_zero() => Some(p.0),
                Some(_) => {
                    errors.push(FieldError::new("condition.percent", "must not be zero"));
                    None
                }
                None => {
                    errors.push(FieldError::new("condition.percent", "`pct_change` needs a percent"));
                    None
                }
            };
            let window = positive_duration(
                errors,
                "condition.window",
                &input.window,
                "`pct_change` needs a window such as \"7d\"",
            );
            Some(Condition::PctChange {
                percent: percent?,
                window: window?,
            })
        }
        _ => {
            let returns = match input.returns.flatten() {
                Some(n) if n > crate::transforms::alert::rules::MAX_RETURNS => {
                    errors.push(FieldError::new(
                        "condition.returns",
                        format!(
                            "{n} is too many: at most {}",
                            crate::transforms::alert::rules::MAX_RETURNS
                        ),
                    ));
                    None
                }
                Some(n) if n >= 2 => Some(n),
                Some(n) => {
                    errors.push(FieldError::new(
                        "condition.returns",
                        format!("{n} is too few: at least 2 returns give a standard deviation"),
                    ));
                    None
                }
                None => {
                    errors.push(FieldError::new("condition.returns", "`zscore` needs returns, e.g. 20"));
                    None
                }
            };
            let k = match input.k.flatten() {
                Some(k) if k.0 > Decimal::ZERO => Some(k.0),
                Some(k) => {
                    errors.push(FieldError::new("condition.k", format!("{} must be positive", k.0)));
                    None
                }
                None => {
                    errors.push(FieldError::new("condition.k", "`zscore` needs k, e.g. 4"));
                    None
                }
            };
            Some(Condition::ZScore {
                returns: returns?,
                k: k?,
            })
        }
    }
}

fn trigger(input: Option<&TriggerInput>, errors: &mut Vec<FieldError>) -> Option<Trigger> {
    let Some(input) = input else {
        return Some(Trigger::Once);
    };
    let kind = input.kind.as_str();
    let fields: &[&str] = match kind {
        "every" => &["cooldown", "rearm"],
        "once_per_bar" | "on_bar_close" => &["interval"],
        _ => &[],
    };
    let sent = [
        ("cooldown", input.cooldown.is_some()),
        ("rearm", input.rearm.is_some()),
        ("interval", input.interval.is_some()),
    ];
    if matches!(kind, "once" | "every" | "once_per_bar" | "on_bar_close") {
        for (field, present) in sent {
            if present && !fields.contains(&field) {
                errors.push(FieldError::new(
                    format!("trigger.{field}"),
                    format!("`{kind}` takes no {field}"),
                ));
            }
        }
    }
    match kind {
        "once" => Some(Trigger::Once),
        "once_per_bar" | "on_bar_close" => {
            let interval = positive_duration(
                errors,
                "trigger.interval",
                &input.interval,
                &format!("`{kind}` needs an interval such as \"1h\""),
            )?;
            Some(match kind {
                "once_per_bar" => Trigger::OncePerBar(interval),
                _ => Trigger::OnBarClose(interval),
            })
        }
        "every" => {
            let cooldown = match input.cooldown.as_ref().and_then(|c| c.as_deref()).map(parse_duration) {
                None => Some(std::time::Duration::ZERO),
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    errors.push(FieldError::new("trigger.cooldown", e));
                    None
                }
            };
            let rearm = match input.rearm.flatten() {
                None => Some(Decimal::ZERO),
                Some(r) if r.0 >= Decimal::ZERO => Some(r.0),
                Some(r) => {
                    errors.push(FieldError::new(
                        "trigger.rearm",
                        format!("{} must not be negative", r.0),
                    ));
                    None
                }
            };
            Some(Trigger::Every {
                cooldown: cooldown?,
                rearm: rearm?,
            })
        }
        other => {
            errors.push(FieldError::new(
                "trigger.type",
                format!("unknown trigger `{other}`; one of once, every, once_per_bar, on_bar_close"),
            ));
            None
        }
    }
}

/// Check a new rule completely; every problem is reported at its field.
fn to_rule(state: &ApiState, id: String, tenant: &str, body: &NewAlert) -> Result<AlertRule, ApiError> {
    let mut errors = Vec::new();
    let pair = match body.pair.parse::<crate::fx::Pair>() {
        _ if !super::contract::conforms(super::contract::PAIR, &body.pair) => {
            errors.push(FieldError::new(
                "pair",
                format!("`{}` is not a currency pair; write it as EUR/USD", body.pair),
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new("pair", e.to_string()));
            None
        }
        Ok(pair) if !pair.is_market_convention() => {
            errors.push(FieldError::new(
                "pair",
                format!("write it in market convention: {}", pair.inverse()),
            ));
            None
        }
        Ok(pair) if !state.is_monitored(pair) => {
            errors.push(FieldError::new(
                "pair",
                format!(
                    "{pair} is not monitored; the monitored currencies are {}",
                    state.currency_list()
                ),
            ));
            None
        }
        Ok(pair) => Some(pair),
    };
    let condition = condition(&body.condition, &mut errors);
    let trigger = trigger(body.trigger.as_ref(), &mut errors);
    let expires = match body.expires_at.as_deref().map(|t| instant("expires_at", t)) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "expires_at",
                "not an RFC 3339 time, e.g. 2027-01-01T00:00:00Z",
            ));
            None
        }
    };
    let webhook = match &body.webhook {
        None => None,
        Some(hook) => {
            if hook.url.len() > MAX_URL || !super::contract::conforms(super::contract::WEBHOOK_URL, &hook.url) {
                errors.push(FieldError::new(
                    "webhook.url",
                    format!(
                        "write an http:// or https:// URL to a host name or IPv4 address (at most {MAX_URL} characters), \
                         e.g. https://hooks.example.com/fx"
                    ),
                ));
            } else if let Err(e) = crate::sinks::webhook::check_url(&hook.url, state.allow_private_webhooks) {
                errors.push(FieldError::new("webhook.url", e));
            }
            if hook
                .secret
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.len() > MAX_SECRET)
            {
                errors.push(FieldError::new(
                    "webhook.secret",
                    format!("must be 1 to {MAX_SECRET} characters"),
                ));
            }
            Some(WebhookTarget {
                url: hook.url.clone(),
                secret: hook.secret.clone(),
                format: hook.format.map(Into::into).unwrap_or_default(),
            })
        }
    };
    let email = body.email.as_ref().map(|email| {
        let count = email.to.len();
        if count == 0 || count > super::contract::MAX_EMAILS {
            errors.push(FieldError::new(
                "email.to",
                format!("give 1 to {} addresses, not {count}", super::contract::MAX_EMAILS),
            ));
        }
        for (i, address) in email.to.iter().enumerate() {
            if address.len() > 254 || !super::contract::conforms(super::contract::EMAIL, address) {
                errors.push(FieldError::new(
                    format!("email.to[{i}]"),
                    format!("`{address}` is not an email address such as desk@example.com"),
                ));
            }
        }
        crate::fx::EmailTarget { to: email.to.clone() }
    });
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (Some(pair), Some(condition), Some(trigger)) = (pair, condition, trigger) else {
        return Err(ApiError::validation(vec![FieldError::new("body", "invalid rule")]));
    };
    let rule = AlertRule {
        id,
        pair,
        condition,
        trigger,
        price: body.price.map(PriceField::from).unwrap_or_default(),
        expires,
        webhook,
        email,
        tenant: Some(tenant.to_owned()),
    };
    crate::transforms::alert::rules::validate(&rule)
        .map_err(|e| ApiError::validation(vec![FieldError::new("condition", e)]))?;
    Ok(rule)
}

/// Create a rule. It is checked against the next sample of its pair; a state
/// condition (`above`, `below`) that already holds fires at once.
#[utoipa::path(post, path = "/alerts", operation_id = "createAlert", tag = "alerts", request_body = NewAlert,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created; `Location` names the rule", body = AlertView,
            headers(("Location" = String, description = "/alerts/{id}"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 409, description = "The tenant holds `limits.rules_per_tenant` rules (or `webhooks_per_tenant` webhooks) already", body = ErrorBody),
        (status = 422, description = "Invalid rule; `details` names each field. Rules across fields: a channel's `high` not above its `low` (`condition.high`); a `stale` `max_age` over 366 days (`condition.max_age`)", body = ErrorBody),
        (status = 429, description = "Rate limited (per address, per key, or failed authentications)", body = ErrorBody),
        (status = 503, description = "The store or the pipeline does not answer", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<ApiState>,
    key: Authorized,
    StrictJson(body): StrictJson<NewAlert>,
) -> ApiResult<Response> {
    let rule = to_rule(&state, new_rule_id(), &key.tenant, &body)?;
    let usage = state.store.tenant_usage(&key.tenant).await?;
    let limits = &state.limits;
    if usage.rules >= u64::from(limits.rules_per_tenant) {
        return Err(ApiError::quota_exceeded(format!(
            "tenant `{}` has {} rules, the most it may keep; delete one first",
            key.tenant, usage.rules
        )));
    }
    if rule.webhook.is_some() && usage.webhooks >= u64::from(limits.webhooks_per_tenant) {
        return Err(ApiError::quota_exceeded(format!(
            "tenant `{}` has {} rules with a webhook, the most it may keep; delete one first",
            key.tenant, usage.webhooks
        )));
    }
    let id = rule.id.clone();
    let change = AlertRuleChange {
        id: id.clone(),
        rule: Some(rule),
    };
    state
        .store
        .write(&[&FxEvent::AlertRuleChange(Box::new(change.clone()))])
        .await?;
    if let Err(e) = state.emit(change).await {
        // Not accepted in time: take it back out of the store and, since the
        // change may still arrive, send its delete after it, so what is listed
        // is what runs (no rule left firing that nobody can see).
        let undo = AlertRuleChange {
            id: id.clone(),
            rule: None,
        };
        let _ = state
            .store
            .write(&[&FxEvent::AlertRuleChange(Box::new(undo.clone()))])
            .await;
        state.retract(undo).await;
        return Err(e);
    }
    let stored = state.store.rule(&id).await?.ok_or_else(|| {
        ApiError::unavailable(
            ErrorCode::StoreUnavailable,
            "the rule was stored but cannot be read back",
        )
    })?;
    tracing::info!(rule = %id, tenant = %key.tenant, pair = %stored.rule.pair, "Alert rule created over HTTP.");
    let location = format!("/alerts/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AlertView::new(&stored, Utc::now())),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only rules of this pair.
    #[param(pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$")]
    pub pair: Option<String>,
    /// Only rules in this state.
    pub status: Option<RuleStatusView>,
    /// Rules per page, 1 to the stage's `limits.max_page`; default 100.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The cursor from the previous page's `next`.
    pub after: Option<String>,
}

/// The caller's tenant's rules, by id.
/// Longest range one backtest request covers.
const BACKTEST_DAYS: i64 = 366;
/// Most stored samples one backtest request reads (about a second of work).
const BACKTEST_SAMPLES: u64 = 3_000_000;

#[utoipa::path(post, path = "/alerts/backtest", operation_id = "backtestAlerts", tag = "alerts",
    request_body = BacktestRequest,
    description = "Would these rules have fired, and when? Runs them as the `Alert` stage does, in the data's \
        time, over the store's history of their pairs, and answers every firing, a page at a time. \
        Rules across fields: `from` after `to` is `invalid_range`; more than 366 days, or more than \
        3,000,000 stored samples, is `backtest_too_large`.",
    security(("api_key" = [])),
    responses(
        (status = 200, body = BacktestPage),
        (status = 400, description = "Malformed JSON, `from` after `to`, a range too large, or a cursor the API never issued", body = ErrorBody),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid rules; `details` names each field (`rules[0].condition.threshold`)", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn backtest(
    State(state): State<ApiState>,
    key: Authorized,
    StrictJson(body): StrictJson<BacktestRequest>,
) -> ApiResult<Json<BacktestPage>> {
    let mut rules = Vec::new();
    let mut details = Vec::new();
    if body.rules.is_empty() || body.rules.len() > 20 {
        details.push(FieldError::new("rules", "give 1 to 20 rules"));
    }
    for (i, new) in body.rules.iter().enumerate() {
        match to_rule(&state, format!("r{}", i + 1), &key.tenant, new) {
            Ok(rule) => rules.push(rule),
            Err(e) => details.extend(e.details.into_iter().map(|d| FieldError {
                field: format!("rules[{i}].{}", d.field),
                message: d.message,
            })),
        }
    }
    let from = instant("from", &body.from);
    let to = instant("to", &body.to);
    let limit = match body.limit {
        None => Some(DEFAULT_PAGE),
        Some(n @ 1..=1000) => Some(n),
        Some(n) => {
            details.push(FieldError::new("limit", format!("{n} is out of range: 1 to 1000")));
            None
        }
    };
    let skip = match body.after.as_deref() {
        None => Some(0u64),
        Some(after) => match after.strip_prefix('f').and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => Some(n),
            None => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidCursor,
                    "`after` is not a cursor this API issued: send a page's `next` back as it came",
                )
                .with_details(vec![FieldError::new("after", "not an issued cursor")]))
            }
        },
    };
    let (from, to) = match (from, to) {
        (Ok(from), Ok(to)) => (from, to),
        (from, to) => {
            for e in [from.err(), to.err()].into_iter().flatten() {
                details.extend(e.details);
            }
            return Err(ApiError::validation(details));
        }
    };
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    let (Some(limit), Some(skip)) = (limit, skip) else {
        unreachable!("a bad limit or cursor was reported")
    };
    if from > to {
        return Err(
            ApiError::bad_request(ErrorCode::InvalidRange, format!("`from` ({from}) is after `to` ({to})"))
                .with_details(vec![FieldError::new("from", "must not be after `to`")]),
        );
    }
    if to - from > chrono::Duration::days(BACKTEST_DAYS) {
        return Err(ApiError::bad_request(
            ErrorCode::BacktestTooLarge,
            format!("a backtest covers at most {BACKTEST_DAYS} days; split the range (or run `fxflow backtest`)"),
        )
        .with_details(vec![FieldError::new(
            "to",
            format!("at most {BACKTEST_DAYS} days after `from`"),
        )]));
    }
    let mut firings = Vec::new();
    let mut total = 0u64;
    let summary = crate::backtest::over_store(&rules, state.store.clone(), from, to, None, BACKTEST_SAMPLES, |f| {
        if total >= skip && firings.len() < limit as usize {
            firings.push(FiringView {
                rule_id: f.rule_id.to_string(),
                pair: f.pair.to_string(),
                condition: f.condition.to_string(),
                value: f.value,
                previous: f.previous,
                fired_at: f.ts,
                source: f.source.as_str().to_owned(),
                shared: false,
            });
        }
        total += 1;
    })
    .await
    .map_err(|e| match e {
        crate::backtest::Stopped::TooManySamples => ApiError::bad_request(
            ErrorCode::BacktestTooLarge,
            format!("the range holds more than {BACKTEST_SAMPLES} samples of these pairs; narrow it (or run `fxflow backtest`)"),
        ),
        crate::backtest::Stopped::Failed(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable, e),
    })?;
    let shown = skip + firings.len() as u64;
    Ok(Json(BacktestPage {
        firings,
        samples: summary.samples,
        total,
        next: (shown < total).then(|| format!("f{shown}")),
    }))
}

#[utoipa::path(get, path = "/alerts", operation_id = "listAlerts", tag = "alerts", params(AlertsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = AlertList),
        (status = 400, description = "Malformed parameter", body = ErrorBody),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 404, description = "Not a monitored pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<ApiState>,
    key: Authorized,
    Params(q): Params<AlertsQuery>,
) -> ApiResult<Json<AlertList>> {
    let pair = match q.pair.as_deref() {
        Some(text) => Some(state.monitored(pair_param("query.pair", text)?)?),
        None => None,
    };
    let limit = page_limit(q.limit, DEFAULT_PAGE, state.limits.max_page)?;
    let after = q
        .after
        .as_deref()
        .map(|c| cursor::decode("query.after", c, 1).map(|mut parts| parts.remove(0)))
        .transpose()?;
    let now = Utc::now();
    let mut rules = state
        .store
        .rules_page(&RuleQuery {
            tenant: Some(key.tenant.to_string()),
            pair,
            status: q.status.map(Into::into),
            after,
            limit: limit + 1,
            now,
        })
        .await?;
    let pair_text = pair.map(|p| p.to_string());
    let filters = [
        ("pair", pair_text.as_deref()),
        ("status", q.status.map(RuleStatusView::as_str)),
    ];
    let next = next_page(&mut rules, limit, "/alerts", &filters, |last| {
        ("after", cursor::encode(&[&last.rule.id]))
    });
    Ok(Json(AlertList {
        alerts: rules.iter().map(|r| AlertView::new(r, now)).collect(),
        next,
    }))
}

impl RuleStatusView {
    pub fn as_str(self) -> &'static str {
        crate::store::RuleStatus::from(self).as_str()
    }
}

/// One rule of the caller's tenant.
#[utoipa::path(get, path = "/alerts/{id}", operation_id = "getAlert", tag = "alerts",
    params(("id" = String, Path, description = "The rule's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = AlertView),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 404, description = "No such rule of this tenant (or deleted)", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn get(State(state): State<ApiState>, key: Authorized, Path(id): Path<String>) -> ApiResult<Json<AlertView>> {
    let stored = visible_rule(&state, &key, &id).await?;
    Ok(Json(AlertView::new(&stored, Utc::now())))
}

/// The rule `id` if the caller's tenant may see it (its own, or shared); else 404.
async fn visible_rule(state: &ApiState, key: &Authorized, id: &str) -> Result<StoredRule, ApiError> {
    match state.store.rule(id).await? {
        Some(stored) if stored.tenant.as_deref().is_none_or(|t| t == &*key.tenant) => Ok(stored),
        _ => Err(no_rule(id)),
    }
}

fn no_rule(id: &str) -> ApiError {
    ApiError::not_found(
        ErrorCode::UnknownRule,
        format!("there is no rule `{id}` (never created, or deleted)"),
    )
}

/// Delete a rule: it stops firing within a second. Its firings stay in the history.
#[utoipa::path(delete, path = "/alerts/{id}", operation_id = "deleteAlert", tag = "alerts",
    params(("id" = String, Path, description = "The rule's id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 404, description = "No such rule of this tenant (or already deleted)", body = ErrorBody),
        (status = 409, description = "A shared rule of the pipeline file: change it there", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store or the pipeline does not answer", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<ApiState>, key: Authorized, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let stored = visible_rule(&state, &key, &id).await?;
    if stored.tenant.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::SharedRule,
            format!("rule `{id}` is shared by every tenant; change it in the pipeline file"),
        ));
    }
    let change = AlertRuleChange {
        id: id.clone(),
        rule: None,
    };
    state
        .store
        .write(&[&FxEvent::AlertRuleChange(Box::new(change.clone()))])
        .await?;
    state.emit(change).await?;
    tracing::info!(rule = %id, tenant = %key.tenant, "Alert rule deleted over HTTP.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FiringsQuery {
    /// Only firings of this rule.
    pub rule: Option<String>,
    /// Only firings on this pair.
    #[param(pattern = r"^[A-Za-z]{3}[-_/]?[A-Za-z]{3}$")]
    pub pair: Option<String>,
    /// Fired at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Fired before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// Firings per page, 1 to the stage's `limits.max_page`; default 100.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The cursor from the previous page's `next`.
    pub before: Option<String>,
}

/// The firings of the caller's tenant's rules and of shared ones, newest first:
/// the rule, the pair, the value and the previous value.
#[utoipa::path(get, path = "/alerts/history", operation_id = "listFirings", tag = "alerts", params(FiringsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = FiringList),
        (status = 400, description = "Malformed parameter, or `from` after `to`", body = ErrorBody),
        (status = 401, description = "No API key, or a malformed Authorization header", body = ErrorBody),
        (status = 403, description = "Unknown API key", body = ErrorBody),
        (status = 404, description = "Not a monitored pair", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<ApiState>,
    key: Authorized,
    Params(q): Params<FiringsQuery>,
) -> ApiResult<Json<FiringList>> {
    let pair = match q.pair.as_deref() {
        Some(text) => Some(state.monitored(pair_param("query.pair", text)?)?),
        None => None,
    };
    let (from, to) = time_range(q.from.as_deref(), q.to.as_deref())?;
    let limit = page_limit(q.limit, DEFAULT_PAGE, state.limits.max_page)?;
    let before = match q.before.as_deref() {
        Some(text) => {
            let parts = cursor::decode("query.before", text, 3)?;
            Some((instant("query.before", &parts[0])?, parts[1].clone(), parts[2].clone()))
        }
        None => None,
    };
    let mut firings = state
        .store
        .alerts(&AlertQuery {
            tenant: Some(key.tenant.to_string()),
            rule_id: q.rule.clone(),
            pair,
            from,
            to,
            before,
            limit: limit + 1,
        })
        .await?;
    let filters = [
        ("rule", q.rule.as_deref()),
        ("pair", q.pair.as_deref()),
        ("from", q.from.as_deref()),
        ("to", q.to.as_deref()),
    ];
    let next = next_page(&mut firings, limit, "/alerts/history", &filters, |last| {
        (
            "before",
            cursor::encode(&[&ts_text(last.fired_at), &last.rule_id, &last.source]),
        )
    });
    Ok(Json(FiringList {
        firings: firings.iter().map(FiringView::from).collect(),
        next,
    }))
}

fn ts_text(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}
