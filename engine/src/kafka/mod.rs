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
pub use codec::{decode, decode_all, Codec, DecodeError, WireEvent, FORMAT_VERSION};
pub use framing::Framing;
pub use resource::{KafkaResource, KafkaResourceConfig, TopicSpec, KIND as RESOURCE_KIND};
pub use sink::{Compression, KafkaSinkConfig};
pub use source::{Assignment, KafkaSourceConfig, OffsetReset, CONSUMER_LAG};
pub use state::{StateTopic, StateTopicConfig};

/// The header that carries a message's ingest time across workers
/// ([`crate::event::IngestTime`], decimal microseconds since the Unix epoch).
/// A message without it counts as ingested at its Kafka timestamp.
pub const INGEST_TIME_HEADER: &str = "fxflow-ingested-us";
