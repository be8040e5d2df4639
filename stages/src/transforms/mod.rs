//! Transforms: one stage kind per file or folder (`alert/`).

pub mod alert;
pub mod candles;
pub mod cross_rate;
pub mod enrich;
pub mod latest_rates;
pub mod volatility;

use chrono::{DateTime, Utc};
use fxflow_engine::window::EventTime;

/// The `StageConfig` methods of a stage with an optional `state:` topic (a field `state:
/// Option<StateTopicConfig>` on a `Clone` config): the topic's resource, and in a pipeline
/// test (`offline`) a copy whose state lives in memory. One place for what `Alert`,
/// `Candles` and `Volatility` share.
macro_rules! state_topic_methods {
    () => {
        fn resources(&self) -> Vec<fxflow_engine::ResourceUse> {
            fxflow_engine::kafka::StateTopicConfig::resources_of(self.state.as_ref(), "state")
        }

        /// In a pipeline test the state lives in memory (nothing is saved to Kafka).
        fn offline(&self) -> Option<Box<dyn fxflow_engine::StageConfig<crate::fx::FxEvent>>> {
            self.state.as_ref()?;
            Some(Box::new(Self {
                state: None,
                ..self.clone()
            }))
        }
    };
}
pub(crate) use state_topic_methods;

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
