//! The FX application's event type.

use fxflow_engine::{DeadLetter, Event, DEAD_LETTER_KIND};
use serde::{Deserialize, Serialize};

use super::alert::AlertFired;
use super::cross::CrossRate;
use super::quote::{Quote, QuoteSnapshot};

/// Kind names, used in `accepts`/`emits` declarations.
pub mod kind {
    pub const QUOTE: &str = "Quote";
    pub const QUOTE_SNAPSHOT: &str = "QuoteSnapshot";
    pub const CROSS_RATE: &str = "CrossRate";
    pub const ALERT_FIRED: &str = "AlertFired";
    pub const DEAD_LETTER: &str = fxflow_engine::DEAD_LETTER_KIND;
}

/// Every payload that flows through FX pipelines. Serialized with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum FxEvent {
    Quote(Quote),
    QuoteSnapshot(QuoteSnapshot),
    CrossRate(CrossRate),
    AlertFired(AlertFired),
    DeadLetter(DeadLetterRecord),
}

/// An event a stage could not handle, with why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub stage: String,
    pub reason: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<FxEvent>>,
    /// Undecodable input, as (lossy) text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl Event for FxEvent {
    fn kind(&self) -> &'static str {
        match self {
            FxEvent::Quote(_) => kind::QUOTE,
            FxEvent::QuoteSnapshot(_) => kind::QUOTE_SNAPSHOT,
            FxEvent::CrossRate(_) => kind::CROSS_RATE,
            FxEvent::AlertFired(_) => kind::ALERT_FIRED,
            FxEvent::DeadLetter(_) => DEAD_LETTER_KIND,
        }
    }

    fn dead_letter(letter: DeadLetter<Self>) -> Self {
        FxEvent::DeadLetter(DeadLetterRecord {
            stage: letter.stage,
            reason: letter.reason.to_owned(),
            error: letter.error,
            event: letter.event,
            raw: letter.raw.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        })
    }
}
