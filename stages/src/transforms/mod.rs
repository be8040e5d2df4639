//! Transforms: one stage kind per file or folder (`alert/`).

pub mod alert;
pub mod candles;
pub mod cross_rate;
pub mod enrich;
pub mod latest_rates;
pub mod volatility;

use chrono::{DateTime, Utc};
use fxflow_engine::window::EventTime;

/// A price's time as the engine's windows count it (nanoseconds since the
/// Unix epoch; instants outside 1677–2262 are clamped to that range).
pub fn event_time(ts: DateTime<Utc>) -> EventTime {
    EventTime::from_nanos(
        ts.timestamp_nanos_opt()
            .unwrap_or(if ts.timestamp() < 0 { i64::MIN } else { i64::MAX }),
    )
}

/// The instant of an event time.
pub fn utc(time: EventTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(time.as_nanos())
}
