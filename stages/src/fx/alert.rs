//! Alert rules and fired alerts.

use std::sync::Arc;

use super::source::SourceName;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::pair::Pair;

/// When a rule's condition holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Condition {
    /// True while the price is above the threshold (a state: true at creation fires at once).
    Above(#[schemars(schema_with = "crate::fx::decimal_schema")] Decimal),
    /// True while the price is below the threshold.
    Below(#[schemars(schema_with = "crate::fx::decimal_schema")] Decimal),
    /// The previous sample was below the threshold and this one is at or above it.
    CrossingUp(#[schemars(schema_with = "crate::fx::decimal_schema")] Decimal),
    /// The previous sample was above the threshold and this one is at or below it.
    CrossingDown(#[schemars(schema_with = "crate::fx::decimal_schema")] Decimal),
    /// The previous sample was on one side of the threshold and this one is at or past it
    /// (`CrossingUp` or `CrossingDown`, whichever happened).
    Crossing(#[schemars(schema_with = "crate::fx::decimal_schema")] Decimal),
    /// The previous sample was outside `[low, high]` and this one is inside (bounds
    /// included). A jump from below the channel to above it does not enter it.
    EnteringChannel {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        low: Decimal,
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        high: Decimal,
    },
    /// The previous sample was inside `[low, high]` and this one is outside.
    ExitingChannel {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        low: Decimal,
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        high: Decimal,
    },
    /// True while the price is within `[low, high]` (a state, like `Above`).
    InsideChannel {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        low: Decimal,
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        high: Decimal,
    },
    /// True while the price is below `low` or above `high` (a state).
    OutsideChannel {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        low: Decimal,
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        high: Decimal,
    },
    /// The price rose by at least `amount` (price units) from the sample `over` ago.
    MovingUp {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        amount: Decimal,
        over: Lookback,
    },
    /// The price fell by at least `amount` (price units) from the sample `over` ago.
    MovingDown {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        amount: Decimal,
        over: Lookback,
    },
    /// The price rose by at least `percent` % from the sample `over` ago.
    MovingUpPercent {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        percent: Decimal,
        over: Lookback,
    },
    /// The price fell by at least `percent` % (a positive number) from the sample `over` ago.
    MovingDownPercent {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        percent: Decimal,
        over: Lookback,
    },
    /// The price moved by at least `percent` (negative: fell by at least) within `window`.
    /// Kept for the rules already stored: `MovingUpPercent`/`MovingDownPercent` with
    /// `over: Window(..)` say the same and are what new rules use.
    PctChange {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        percent: Decimal,
        #[serde(with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        window: Duration,
    },
    /// An anomaly: the log return of the latest sample is at least `k` standard
    /// deviations from the mean of the previous `returns` returns (either way).
    /// Re-arms (trigger `Every`) once |z| is back below `k - rearm`.
    ZScore {
        /// How many previous returns the mean and σ are taken over (at least 2).
        returns: u32,
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        k: Decimal,
    },
    /// Data quality: the pair (from `source`, or from any source) has not ticked for
    /// `max_age` of business time (closed days of `calendar` do not count). Judged in event
    /// time for history (a gap between two samples, or samples of other pairs moving on), and
    /// by the wall clock for a live feed, so one that simply stops fires too. Fires once per
    /// gap, stamped when the pair became stale; `Every` fires again for the next gap,
    /// `OncePerBar` at most once a bar, and `OnBarClose` judges it at each bar's close.
    Stale {
        #[serde(with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        max_age: Duration,
        #[serde(default)]
        calendar: super::calendar::Calendar,
        /// Watch only this source's samples (default: any source's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// Data quality: the latest prices of two to four sources of the pair differ by more
    /// than `bps` basis points (of the mean of the highest and lowest). Judged on every
    /// sample of a listed source once each has sent one (`OnBarClose`: on their latest prices
    /// as each bar closes).
    Divergence {
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        bps: Decimal,
        sources: Vec<String>,
    },
}

/// A price channel `[low, high]`, bounds included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub low: Decimal,
    pub high: Decimal,
}

impl Condition {
    /// The channel of a channel condition.
    pub fn channel(&self) -> Option<Channel> {
        match *self {
            Condition::EnteringChannel { low, high }
            | Condition::ExitingChannel { low, high }
            | Condition::InsideChannel { low, high }
            | Condition::OutsideChannel { low, high } => Some(Channel { low, high }),
            _ => None,
        }
    }
}

impl Channel {
    pub fn contains(&self, price: Decimal) -> bool {
        self.low <= price && price <= self.high
    }
}

/// How far back a `Moving…` condition compares: a number of samples (bars, when the
/// trigger is `OnBarClose`), or the oldest sample within a duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Lookback {
    /// The sample this many samples before the current one (1 = the previous one).
    Bars(u32),
    /// The oldest sample at most this long before the current one, e.g. `Window("1h")`.
    Window(
        #[serde(with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        Duration,
    ),
}

impl Lookback {
    pub fn describe(&self) -> String {
        match self {
            Lookback::Bars(1) => "1 bar".to_owned(),
            Lookback::Bars(n) => format!("{n} bars"),
            Lookback::Window(d) => fxflow_engine::duration::format(d),
        }
    }
}

impl Condition {
    /// Human text, e.g. `above 1.1200`.
    pub fn describe(&self) -> String {
        let channel = |low: &Decimal, high: &Decimal| format!("[{low}, {high}]");
        match self {
            Condition::Above(t) => format!("above {t}"),
            Condition::Below(t) => format!("below {t}"),
            Condition::CrossingUp(t) => format!("crossing up {t}"),
            Condition::CrossingDown(t) => format!("crossing down {t}"),
            Condition::Crossing(t) => format!("crossing {t}"),
            Condition::EnteringChannel { low, high } => format!("entering {}", channel(low, high)),
            Condition::ExitingChannel { low, high } => format!("exiting {}", channel(low, high)),
            Condition::InsideChannel { low, high } => format!("inside {}", channel(low, high)),
            Condition::OutsideChannel { low, high } => format!("outside {}", channel(low, high)),
            Condition::MovingUp { amount, over } => format!("up {amount} within {}", over.describe()),
            Condition::MovingDown { amount, over } => format!("down {amount} within {}", over.describe()),
            Condition::MovingUpPercent { percent, over } => format!("up {percent}% within {}", over.describe()),
            Condition::MovingDownPercent { percent, over } => {
                format!("down {percent}% within {}", over.describe())
            }
            Condition::PctChange { percent, window } => {
                format!(
                    "change of {percent}% within {}",
                    fxflow_engine::duration::format(window)
                )
            }
            Condition::ZScore { returns, k } => format!("return z-score of {k} over {returns} returns"),
            Condition::Stale { max_age, source, .. } => format!(
                "no tick{} within {}",
                source.as_ref().map(|s| format!(" from {s}")).unwrap_or_default(),
                fxflow_engine::duration::format(max_age)
            ),
            Condition::Divergence { bps, sources } => {
                format!("{} more than {bps} bps apart", sources.join(" and "))
            }
        }
    }
}

/// How often a rule fires.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Trigger {
    /// Fire the first time the condition holds, then retire the rule.
    #[default]
    Once,
    /// Fire each time the condition holds again, but not within `cooldown` of
    /// the last firing, and only after the price went back past the threshold
    /// by `rearm` (hysteresis: a price hovering at the threshold fires once).
    Every {
        #[serde(default, with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        cooldown: Duration,
        /// In price units (percentage points for `PctChange`, standard deviations for `ZScore`).
        #[serde(default)]
        #[schemars(schema_with = "crate::fx::decimal_schema")]
        rearm: Decimal,
    },
    /// Fire when the condition holds, at most once per bar of this interval (bars are
    /// aligned to the Unix epoch in event time, e.g. `OncePerBar("1h")` once per clock hour).
    OncePerBar(
        #[serde(with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        Duration,
    ),
    /// Judge the condition on each bar's closing price (the last sample in the bar, in
    /// event time) against the previous bar's close, and fire when the bar closes: when the
    /// first sample of a later bar arrives. `Moving…(over: Bars(n))` then counts bars.
    OnBarClose(
        #[serde(with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        Duration,
    ),
}

impl Trigger {
    /// The bar length of a per-bar trigger.
    pub fn bar(&self) -> Option<Duration> {
        match self {
            Trigger::OncePerBar(d) | Trigger::OnBarClose(d) => Some(*d),
            _ => None,
        }
    }
}

/// Which side of a quote a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceField {
    #[default]
    Mid,
    Bid,
    Ask,
}

/// A user's alert rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique id; firings name it.
    pub id: String,
    pub pair: Pair,
    pub condition: Condition,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default)]
    pub price: PriceField,
    /// The rule never fires for a sample stamped at or after this instant (RFC 3339).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub expires: Option<DateTime<Utc>>,
    /// Where the `Webhook` stage POSTs each firing (signed with `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTarget>,
    /// Addresses the `Email` stage mails each firing to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTarget>,
    /// The tenant that owns the rule (set by the API from the caller's key);
    /// its firings carry it. None: a rule of the pipeline file, shared by all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An HTTP endpoint notified of a rule's firings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// `http://` or `https://` URL that receives a POST per firing.
    pub url: String,
    /// Key of the `X-Fxflow-Signature: sha256=<hex HMAC of the body>` header
    /// (unsigned without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The body's shape: fxflow's own JSON, or a chat tool's incoming-webhook message.
    #[serde(default, skip_serializing_if = "WebhookFormat::is_json")]
    pub format: WebhookFormat,
}

/// What a webhook's body looks like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WebhookFormat {
    /// The firing as fxflow's JSON (`event`, `delivery`, `rule_id`, `pair`, `value`, …).
    #[default]
    Json,
    /// A Slack-compatible message: `text` and `blocks` (also Mattermost, Rocket.Chat, Discord's `/slack`).
    Slack,
    /// A Microsoft Teams message card (`@type: MessageCard`, with the firing as facts).
    Teams,
}

impl WebhookFormat {
    pub fn is_json(&self) -> bool {
        *self == WebhookFormat::Json
    }
}

/// Email addresses notified of a rule's firings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    pub to: Vec<String>,
}

/// One firing of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertFired {
    pub rule_id: Arc<str>,
    pub pair: Pair,
    /// The condition, in words.
    pub condition: Arc<str>,
    /// The price that fired it.
    pub value: Decimal,
    /// The previous sample's price (for `PctChange`: the price at the start of the window).
    pub previous: Option<Decimal>,
    /// The sample's time.
    pub ts: DateTime<Utc>,
    pub source: SourceName,
    /// The rule's tenant (None: a shared rule of the pipeline file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Arc<str>>,
}

/// A change to the alert rules: the rule as it now is, or `None` when deleted.
/// Travels on the compacted `fx.alert-rules` topic keyed by rule id (a deletion
/// is a tombstone there), so a worker that reads the topic from the start ends
/// up with the current rule set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleChange {
    pub id: String,
    #[serde(default)]
    pub rule: Option<AlertRule>,
}
