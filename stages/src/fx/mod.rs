//! The FX domain: currencies, pairs, quotes, cross rates, alerts, and the event type.

pub mod alert;
pub mod calendar;
pub mod candle;
pub mod cross;
pub mod currency;
pub mod event;
pub mod notice;
pub mod pair;
pub mod quote;
pub mod source;
pub mod volatility;
pub mod wire;

pub use alert::{
    AlertFired, AlertRule, AlertRuleChange, Channel, Condition, EmailTarget, Lookback, PriceField, Trigger,
    WebhookFormat, WebhookTarget,
};
pub use calendar::Calendar;
pub use candle::{Candle, Ohlc};
pub use cross::{CrossRate, Leg};
pub use currency::Currency;
pub use event::{kind, DeadLetterRecord, EarlierFailure, FxEvent, Price};
pub use pair::Pair;
pub use quote::{Enrichment, Quote, QuoteSnapshot};
pub use source::SourceName;
pub use volatility::Volatility;

/// JSON schema of an exact decimal config field, written as a RON number
/// (`1.10`) or string (`"1.10"`): `#[schemars(schema_with = "crate::fx::decimal_schema")]`.
pub fn decimal_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["number", "string"], "format": "decimal" })
}
