//! Kafka transport: the source and sink that join workers across processes.
//!
//! Workers are the same binary running different pipeline files; topics are the
//! channels between them. The engine stays generic: an application opts in by
//! implementing [`WireEvent`] for its event type (how an event is keyed and
//! which kind names exist) and registering [`KafkaSourceConfig`],
//! [`KafkaSinkConfig`] and [`KafkaResourceConfig`] under names of its choice.
//!
//! Delivery is at-least-once end to end: the source commits an offset only when
//! every event derived from it and from all earlier offsets of its partition is
//! finalized (see [`offsets`]); the sink acknowledges an event only on a
//! successful delivery report from an idempotent, `acks=all` producer.

pub mod binary;
pub mod checkpoint;
pub mod codec;
pub mod framing;
pub mod offsets;
mod resource;
mod sink;
mod source;
mod state;

pub use checkpoint::{decode_saved, save_timer, Checkpoints, Position, Unconfirmed};
pub use codec::{DecodeError, WireEvent, FORMAT_VERSION};
pub use framing::Framing;
pub use resource::{KafkaResource, KafkaResourceConfig, TopicSpec, KIND as RESOURCE_KIND};
pub use sink::{Compression, KafkaSinkConfig};
pub use source::{Assignment, KafkaSourceConfig, OffsetReset, CONSUMER_LAG};
pub use state::{StateTopic, StateTopicConfig};

/// The header that carries a message's ingest time across workers
/// ([`crate::event::IngestTime`], decimal microseconds since the Unix epoch).
/// A message without it counts as ingested at its Kafka timestamp.
pub const INGEST_TIME_HEADER: &str = "fxflow-ingested-us";

// Choosing among the formats lives above them: `codec` (JSON and the shared types) knows
// neither `binary` nor `framing`, which use it.

/// A wire format, chosen per stage with `codec:` (default `Json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
pub enum Codec {
    /// UTF-8 JSON objects with the version first: `{"v":1,"kind":...}`.
    #[default]
    Json,
    /// Binary frames (`kafka::binary`): exact, several times cheaper to write
    /// and read than JSON, readable only by fxflow workers.
    Binary,
}

impl Codec {
    /// Encode `event` into `out` (cleared first).
    pub fn encode<E: WireEvent>(&self, event: &E, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Codec::Json => codec::encode_json(event, out),
            Codec::Binary => binary::encode(std::iter::once(event), out),
        }
    }

    /// The `content-type` header value messages carry.
    pub fn content_type(&self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Binary => "application/octet-stream",
        }
    }
}

/// Decode one event, in whichever format it came (the writer chose it).
pub fn decode<E: WireEvent>(bytes: &[u8]) -> Result<E, DecodeError> {
    if binary::is_frame(bytes) {
        let mut events = binary::decode(bytes)?;
        return match events.len() {
            1 => Ok(events.remove(0)),
            n => Err(DecodeError::Invalid(format!("expected one event, the frame has {n}"))),
        };
    }
    codec::decode_json(bytes)
}

/// Decode every event of a message, in whichever form it came: a binary frame,
/// a `Partition` batch or one JSON event (what a [`KafkaSourceConfig`] reads).
pub fn decode_all<E: WireEvent>(bytes: &[u8]) -> Result<Vec<E>, DecodeError> {
    if binary::is_frame(bytes) {
        binary::decode(bytes)
    } else if framing::is_batch(bytes) {
        framing::decode_batch(bytes)
    } else {
        codec::decode_json(bytes).map(|event| vec![event])
    }
}
