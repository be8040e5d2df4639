//! `fxflow dlq`: the dead letters of a worker set, from a JSON-lines file (a `JsonlFile`
//! dead-letter sink) or a Kafka topic (`fx.dlq`), listed, filtered, shown and
//! replayed ([`replay`]).
//!
//! Each letter gets an id a user can pass back: `file:LINE` for a file, `TOPIC[P]@OFFSET` for a
//! topic. Reading a topic takes every partition from its start to its end as they are when the
//! command starts, without a consumer group, so listing changes nothing on the broker.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::fx::{DeadLetterRecord, FxEvent};

pub mod replay;

/// Where the dead letters are.
#[derive(Debug, Clone)]
pub enum Letters {
    File(PathBuf),
    Topic { brokers: String, topic: String },
}

/// Which letters to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn keeps(&self, letter: &DeadLetterRecord) -> bool {
        self.stage.as_ref().is_none_or(|s| *s == letter.stage)
            && self.reason.as_ref().is_none_or(|r| *r == letter.reason)
            && self.since.is_none_or(|since| letter.at.is_some_and(|at| at >= since))
            && self.until.is_none_or(|until| letter.at.is_some_and(|at| at < until))
    }
}

/// Every dead letter at `from`, with its id, in order (file order; topic by partition, offset).
pub fn read(from: &Letters) -> Result<Vec<(String, DeadLetterRecord)>, String> {
    match from {
        Letters::File(path) => read_file(path),
        Letters::Topic { brokers, topic } => read_topic(brokers, topic),
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<(String, DeadLetterRecord)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut letters = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<FxEvent>(line) {
            Ok(FxEvent::DeadLetter(letter)) => letters.push((format!("{}:{}", path.display(), n + 1), *letter)),
            Ok(other) => {
                return Err(format!(
                    "{}:{}: a {} event, not a dead letter",
                    path.display(),
                    n + 1,
                    fxflow_engine::Event::kind(&other)
                ))
            }
            Err(e) => return Err(format!("{}:{}: not a dead letter: {e}", path.display(), n + 1)),
        }
    }
    Ok(letters)
}

fn read_topic(brokers: &str, topic: &str) -> Result<Vec<(String, DeadLetterRecord)>, String> {
    let mut letters = Vec::new();
    for message in read_raw(brokers, topic)? {
        let id = format!("{topic}[{}]@{}", message.partition, message.offset);
        match message.payload.as_deref().map(fxflow_engine::kafka::decode::<FxEvent>) {
            Some(Ok(FxEvent::DeadLetter(letter))) => letters.push((id, *letter)),
            Some(Ok(other)) => {
                return Err(format!(
                    "{id}: a {} event, not a dead letter",
                    fxflow_engine::Event::kind(&other)
                ))
            }
            Some(Err(e)) => return Err(format!("{id}: {e}")),
            None => {}
        }
    }
    Ok(letters)
}

/// One message as read.
pub(crate) struct RawMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Every message of `topic`, from each partition's start to its end as they are
/// now, by partition and offset, without a consumer group.
pub(crate) fn read_raw(brokers: &str, topic: &str) -> Result<Vec<RawMessage>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "fxflow-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| format!("kafka client: {e}"))?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("reading `{topic}` on {brokers}: {e}"))?;
    let partitions: Vec<i32> = match metadata.topics().first() {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => return Err(format!("the broker {brokers} has no topic `{topic}`")),
    };
    let mut list = TopicPartitionList::new();
    let mut ends = std::collections::BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| format!("reading `{topic}`[{p}]: {e}"))?;
        if high > low {
            ends.insert(p, high);
            list.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| e.to_string())?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let mut messages = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "timed out reading `{topic}`: partitions {:?} not read to their end",
                ends.keys()
            ));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = match message {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                ends.remove(&p);
                continue;
            }
            Err(e) => return Err(format!("reading `{topic}`: {e}")),
        };
        let (p, offset) = (message.partition(), message.offset());
        if !ends.contains_key(&p) {
            continue;
        }
        if ends.get(&p).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&p);
        }
        messages.push(RawMessage {
            partition: p,
            offset,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        });
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    Ok(messages)
}

/// Create `topic` (one partition, compacted: one record per key) unless it exists.
pub(crate) async fn ensure_topic(brokers: &str, topic: &str) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("kafka client: {e}"))?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .map_err(|e| format!("creating `{topic}` on {brokers}: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("creating `{topic}` on {brokers}: {code}")),
        }
    }
    Ok(())
}

/// One line per letter: id, time, stage, reason, where its input came from, the error.
pub fn table(letters: &[(String, DeadLetterRecord)]) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "AT".to_owned(),
        "STAGE".to_owned(),
        "REASON".to_owned(),
        "INPUT".to_owned(),
        "ERROR".to_owned(),
    ]];
    for (id, letter) in letters {
        let at = letter
            .at
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "-".into());
        let input = match &letter.origin {
            Some(o) => format!("{}[{}]@{}", o.topic, o.partition, o.offset),
            None => "-".into(),
        };
        let mut error: String = letter.error.chars().take(80).collect();
        if letter.error.chars().count() > 80 {
            error.push('…');
        }
        rows.push([
            id.clone(),
            at,
            letter.stage.clone(),
            letter.reason.clone(),
            input,
            error,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            if c < 5 {
                out.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(stage: &str, reason: &str, at: &str) -> DeadLetterRecord {
        DeadLetterRecord {
            stage: stage.into(),
            reason: reason.into(),
            error: "bid above ask".into(),
            at: Some(at.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_stage_reason_and_time() {
        let l = letter("validate", "bid_above_ask", "2026-12-07T10:00:00Z");
        assert!(Filter::default().keeps(&l));
        let by = |stage: Option<&str>, reason: Option<&str>, since: Option<&str>, until: Option<&str>| Filter {
            stage: stage.map(Into::into),
            reason: reason.map(Into::into),
            since: since.map(|s| s.parse().unwrap()),
            until: until.map(|s| s.parse().unwrap()),
        };
        assert!(by(Some("validate"), Some("bid_above_ask"), None, None).keeps(&l));
        assert!(!by(Some("publish"), None, None, None).keeps(&l));
        assert!(!by(None, Some("decode_failed"), None, None).keeps(&l));
        assert!(by(None, None, Some("2026-12-07T10:00:00Z"), Some("2026-12-07T10:00:01Z")).keeps(&l));
        assert!(!by(None, None, Some("2026-12-07T10:00:01Z"), None).keeps(&l));
        assert!(!by(None, None, None, Some("2026-12-07T10:00:00Z")).keeps(&l));
    }

    #[test]
    fn the_table_lines_up_and_cuts_long_errors() {
        let mut long = letter("snapshots", "decode_failed", "2026-12-07T10:00:00Z");
        long.error = "x".repeat(100);
        let text = table(&[
            (
                "f:1".into(),
                letter("validate", "bid_above_ask", "2026-12-07T10:00:00Z"),
            ),
            ("f:2".into(), long),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID   AT"));
        assert_eq!(lines[1].find("validate"), lines[2].find("snapshots"));
        assert!(lines[2].ends_with(&format!("{}…", "x".repeat(80))));
    }
}
