//! The FX domain: currencies, pairs, quotes, cross rates, alerts, and the event type.

pub mod alert;
pub mod cross;
pub mod currency;
pub mod event;
pub mod pair;
pub mod quote;
pub mod source;

pub use alert::{AlertFired, AlertRule, Condition, PriceField, Trigger};
pub use cross::{CrossRate, Leg};
pub use currency::Currency;
pub use event::{kind, DeadLetterRecord, FxEvent};
pub use pair::Pair;
pub use quote::{Enrichment, Quote, QuoteSnapshot};
pub use source::SourceName;
