//! How many events one Kafka message carries.
//!
//! `Event` framing (the default) writes one message per event, keyed by the
//! event's key: any Kafka client can read it, and a compacted topic keeps the
//! newest event per key. `Partition` framing writes the events of one sink
//! write that land on one partition as one message,
//! `{"v":1,"events":[{...},{...}]}`: the broker then handles a few large
//! messages instead of many small ones, so it stops being what limits a
//! high-rate topic. Per-key order still holds — a key always maps to the same
//! partition (chosen from the key as librdkafka's default partitioner does:
//! CRC-32 of the key modulo the partition count), and a message keeps its
//! events in order — but a message no longer stands for one key, so log
//! compaction by key and consumers that fetch single keys do not work on such
//! a topic. [`KafkaSource`](super::KafkaSourceConfig) reads both framings, so a
//! topic can switch without its readers noticing; each event of a batch gets
//! its own position (`Origin::index`), so saved state skips exactly the events
//! it covers.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{DecodeError, FORMAT_VERSION};

/// Events per message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
pub enum Framing {
    /// One message per event, keyed by the event's key.
    #[default]
    Event,
    /// The events of one write that go to one partition, as one unkeyed message
    /// (at most `max_events` each: keep a message under the broker's
    /// `message.max.bytes`, 1 MiB by default; an encoded event is ~200 bytes).
    Partition {
        #[serde(default = "default_max_events")]
        max_events: usize,
    },
}

fn default_max_events() -> usize {
    1000
}

/// The partition of `key` among `partitions`: librdkafka's `consistent_random`
/// for a non-empty key (CRC-32 of the key, modulo the partition count), so a key
/// lands where either framing puts it.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    (crc32fast::hash(key) % partitions as u32) as i32
}

/// `{"v":1,"events":[e1,e2,...]}` into `out` (cleared first).
pub fn encode_batch<'a, E: Serialize + 'a>(
    events: impl IntoIterator<Item = &'a E>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    out.extend_from_slice(format!("{{\"v\":{FORMAT_VERSION},\"events\":[").as_bytes());
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, event).map_err(|e| e.to_string())?;
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// Whether a payload is a batch (`{"v":N,"events":[`), told without parsing it.
pub fn is_batch(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(b"{\"v\":") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(b",\"events\":[")
}

/// The events of a batch payload, in order.
pub fn decode_batch<E: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<E>, DecodeError> {
    #[derive(serde::Deserialize)]
    struct Batch<E> {
        v: u64,
        events: Vec<E>,
    }
    let batch: Batch<E> = serde_json::from_slice(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if batch.v != u64::from(FORMAT_VERSION) {
        return Err(DecodeError::Version(batch.v));
    }
    Ok(batch.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_partitions_like_librdkafka() {
        // librdkafka's rd_crc32 is the standard CRC-32 (zlib's): its check value.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(partition_of(b"anything", 1), 0);
        let spread: std::collections::HashSet<i32> =
            (0..100).map(|i| partition_of(format!("k{i}").as_bytes(), 8)).collect();
        assert_eq!(spread.len(), 8, "keys spread over every partition");
    }

    #[test]
    fn batches_round_trip_and_are_told_apart_from_single_events() {
        let events = vec![
            serde_json::json!({"kind": "X", "n": "1.10"}),
            serde_json::json!({"kind": "Y"}),
        ];
        let mut out = Vec::new();
        encode_batch(&events, &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"v":1,"events":[{"kind":"X","n":"1.10"},{"kind":"Y"}]}"#
        );
        assert!(is_batch(&out));
        assert_eq!(decode_batch::<serde_json::Value>(&out).unwrap(), events);
        assert!(!is_batch(br#"{"v":1,"kind":"X"}"#));
        assert!(!is_batch(b"garbage"));
        assert_eq!(
            decode_batch::<serde_json::Value>(br#"{"v":2,"events":[]}"#),
            Err(DecodeError::Version(2))
        );
    }
}
