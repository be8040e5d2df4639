//! The FX application's event type.

use chrono::{DateTime, Utc};
use std::fmt::Write as _;

use fxflow_engine::kafka::WireEvent;
use fxflow_engine::{DeadLetter, Event, DEAD_LETTER_KIND};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::alert::{AlertFired, AlertRuleChange};
use super::candle::Candle;
use super::cross::CrossRate;
use super::pair::Pair;
use super::quote::{Quote, QuoteSnapshot};
use super::source::SourceName;
use super::volatility::Volatility;

/// Kind names, used in `accepts`/`emits` declarations.
pub mod kind {
    pub const QUOTE: &str = "Quote";
    pub const QUOTE_SNAPSHOT: &str = "QuoteSnapshot";
    pub const CROSS_RATE: &str = "CrossRate";
    pub const ALERT_FIRED: &str = "AlertFired";
    pub const ALERT_RULE_CHANGE: &str = "AlertRuleChange";
    pub const CANDLE: &str = "Candle";
    pub const VOLATILITY: &str = "Volatility";
    pub const DEAD_LETTER: &str = fxflow_engine::DEAD_LETTER_KIND;
    /// What the history stores take: prices, alert firings, candles and volatility.
    pub const HISTORY: &[&str] = &[QUOTE, CROSS_RATE, ALERT_FIRED, CANDLE, VOLATILITY];
    /// What the history store (`Postgres`, `Sqlite`) takes: the history plus rule changes.
    pub const STORED: &[&str] = &[QUOTE, CROSS_RATE, ALERT_FIRED, CANDLE, VOLATILITY, ALERT_RULE_CHANGE];
    /// What the analytics stages compute from prices.
    pub const ANALYTICS: &[&str] = &[CANDLE, VOLATILITY];
}

/// Every payload that flows through FX pipelines. Serialized with a `kind` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum FxEvent {
    Quote(Quote),
    QuoteSnapshot(QuoteSnapshot),
    CrossRate(CrossRate),
    AlertFired(AlertFired),
    /// Boxed, like `Candle` and `DeadLetter`: rare and over twice the size of a price, and
    /// every event in flight is as large as the largest variant (moved and cloned on every
    /// hop: an event is 128 bytes with these boxed, 264 without).
    AlertRuleChange(Box<AlertRuleChange>),
    Candle(Box<Candle>),
    Volatility(Volatility),
    DeadLetter(Box<DeadLetterRecord>),
}

/// An event a stage could not handle, with why, and what replaying it needs: where its
/// input was read and, for input no stage could decode, that message's exact bytes, key and
/// headers (base64; `raw` keeps a readable copy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub stage: String,
    pub reason: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<FxEvent>>,
    /// Undecodable input, as (lossy) text, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Undecodable input, its exact bytes (standard base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The undecodable message's key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The undecodable message's headers: (name, base64 value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Where the input was read: a Kafka source's topic, partition and offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<LetterOrigin>,
    /// When the stage gave up on it (absent in letters written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// For a replayed letter that failed again: its earlier failures, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<EarlierFailure>,
}

/// One earlier failure of a replayed dead letter (`fxflow dlq replay`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierFailure {
    /// The letter's id when it was replayed (`fx.dlq[0]@12`, `dlq.jsonl:3`).
    pub letter: String,
    pub stage: String,
    pub reason: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

impl DeadLetterRecord {
    /// Its failures as a replay's note: the earlier ones, then this one, under `id`.
    pub fn replay_note(&self, id: &str) -> String {
        let mut failures = self.previous.clone();
        failures.push(EarlierFailure {
            letter: id.to_owned(),
            stage: self.stage.clone(),
            reason: self.reason.clone(),
            error: self.error.clone(),
            at: self.at,
        });
        serde_json::to_string(&failures).unwrap_or_default()
    }
}

/// A message's place in a topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LetterOrigin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The event's place among those of its message (a framed batch), 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The two-sided price a quote or a cross rate carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub pair: Pair,
    pub bid: Decimal,
    pub ask: Decimal,
    pub ts: DateTime<Utc>,
    pub source: SourceName,
}

impl Price {
    pub fn mid(&self) -> Decimal {
        super::quote::mid(self.bid, self.ask)
    }
}

impl FxEvent {
    /// The price of a quote or cross rate; `None` for other kinds.
    pub fn price(&self) -> Option<Price> {
        match self {
            FxEvent::Quote(q) => Some(Price {
                pair: q.pair,
                bid: q.bid,
                ask: q.ask,
                ts: q.ts,
                source: q.source,
            }),
            FxEvent::CrossRate(c) => Some(Price {
                pair: c.pair,
                bid: c.bid,
                ask: c.ask,
                ts: c.ts,
                source: c.source,
            }),
            _ => None,
        }
    }
}

impl Event for FxEvent {
    fn kind(&self) -> &'static str {
        match self {
            FxEvent::Quote(_) => kind::QUOTE,
            FxEvent::QuoteSnapshot(_) => kind::QUOTE_SNAPSHOT,
            FxEvent::CrossRate(_) => kind::CROSS_RATE,
            FxEvent::AlertFired(_) => kind::ALERT_FIRED,
            FxEvent::AlertRuleChange(_) => kind::ALERT_RULE_CHANGE,
            FxEvent::Candle(_) => kind::CANDLE,
            FxEvent::Volatility(_) => kind::VOLATILITY,
            FxEvent::DeadLetter(_) => DEAD_LETTER_KIND,
        }
    }

    fn dead_letter(letter: DeadLetter<Self>) -> Self {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        FxEvent::DeadLetter(Box::new(DeadLetterRecord {
            stage: letter.stage,
            reason: letter.reason.to_owned(),
            error: letter.error,
            event: letter.event,
            raw: letter
                .raw
                .as_ref()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned()),
            payload: letter.raw.as_ref().map(|bytes| STANDARD.encode(bytes)),
            key: letter.key.as_ref().map(|key| STANDARD.encode(key)),
            headers: letter
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), STANDARD.encode(value)))
                .collect(),
            origin: letter.origin.map(|o| LetterOrigin {
                topic: o.topic.to_string(),
                partition: o.partition,
                offset: o.offset,
                index: o.index,
            }),
            at: Some(DateTime::<Utc>::from(letter.at)),
            // A note that is not a list of failures is someone else's: not ours to keep.
            previous: letter
                .note
                .as_deref()
                .and_then(|note| serde_json::from_str(note).ok())
                .unwrap_or_default(),
        }))
    }
}

/// How FX events cross process boundaries (Kafka topics): JSON, keyed so that
/// everything about one pair stays in order on one partition.
impl WireEvent for FxEvent {
    const KINDS: &'static [&'static str] = &[
        kind::QUOTE,
        kind::QUOTE_SNAPSHOT,
        kind::CROSS_RATE,
        kind::ALERT_FIRED,
        kind::ALERT_RULE_CHANGE,
        kind::CANDLE,
        kind::VOLATILITY,
        DEAD_LETTER_KIND,
    ];

    /// Rates, alerts, candles and volatility by pair, snapshots by provider, rule changes by rule id.
    fn write_key(&self, out: &mut String) -> bool {
        match self {
            FxEvent::Quote(q) => write!(out, "{}", q.pair).is_ok(),
            FxEvent::CrossRate(c) => write!(out, "{}", c.pair).is_ok(),
            FxEvent::AlertFired(a) => write!(out, "{}", a.pair).is_ok(),
            FxEvent::Candle(c) => write!(out, "{}", c.pair).is_ok(),
            FxEvent::Volatility(v) => write!(out, "{}", v.pair).is_ok(),
            FxEvent::QuoteSnapshot(s) => {
                out.push_str(s.source.as_str());
                true
            }
            FxEvent::AlertRuleChange(c) => {
                out.push_str(&c.id);
                true
            }
            FxEvent::DeadLetter(d) => {
                out.push_str(&d.stage);
                true
            }
        }
    }

    /// Cross rates have a compact form (`fx::wire`); other kinds travel as JSON in the frame.
    fn write_binary(&self, out: &mut Vec<u8>) -> bool {
        super::wire::write(self, out)
    }

    fn read_binary(bytes: &[u8]) -> Result<Self, String> {
        super::wire::read(bytes)
    }

    /// A tombstone on the rules changelog deletes the rule named by its key.
    fn tombstone(key: &[u8]) -> Option<Self> {
        let id = std::str::from_utf8(key).ok()?;
        Some(FxEvent::AlertRuleChange(Box::new(AlertRuleChange {
            id: id.to_owned(),
            rule: None,
        })))
    }
}

#[cfg(test)]
mod size {
    /// Every event in flight is as large as the largest variant: keep the rare, large ones boxed.
    #[test]
    fn an_event_is_no_larger_than_a_firing() {
        assert!(
            std::mem::size_of::<super::FxEvent>() <= 128,
            "{}",
            std::mem::size_of::<super::FxEvent>()
        );
    }
}
