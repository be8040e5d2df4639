//! [`StateTopic`]: a compacted topic used as a stage's keyed state store.
//!
//! A stateful stage saves one value per key (its state for that key) and, when
//! it gains inputs — at start, or when a rebalance hands it partitions — reads
//! the newest value of every key back. Each save carries the ack tokens of the
//! inputs the saved state covers and finalizes them only on the delivery
//! report, so a source commits an input only after the state that includes it
//! is durable: the state read back always covers at least everything
//! committed. The stage skips re-delivered inputs its state already covers
//! (by [`Origin`](crate::Origin)). This is the changelog scheme of Kafka
//! Streams without transactions: at-least-once outputs, exact state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::resource::{KafkaResource, KIND as RESOURCE_KIND};
use crate::ack::{AckStatus, AckToken};
use crate::registry::{BuildContext, ConfigProblem, ResourceUse};
use crate::stage::StageError;

/// Where a stage keeps its state: a `Kafka` resource and a compacted topic.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateTopicConfig {
    /// The `Kafka` resource.
    pub resource: String,
    /// A topic with `cleanup.policy: compact` (declare it on the resource so
    /// `fxflow topics create` makes it).
    pub topic: String,
    /// How often the stage saves the keys whose state changed. Inputs are
    /// committed only after the save covering them, so this adds to the
    /// commit delay, not to latency.
    #[serde(default = "default_save_interval", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub interval: Duration,
}

fn default_save_interval() -> Duration {
    Duration::from_millis(500)
}

impl StateTopicConfig {
    pub fn check(&self, field: &'static str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.topic.trim().is_empty() {
            problems.push(ConfigProblem::field(field, "no state topic given"));
        }
        if self.interval.is_zero() {
            problems.push(ConfigProblem::field(field, "interval must be longer than zero"));
        }
        problems
    }

    /// The resource this uses, for validation (`field`: the stage field holding this config).
    pub fn resource_use(&self, field: &'static str) -> ResourceUse {
        ResourceUse::new(field, &self.resource, RESOURCE_KIND)
    }

    /// A stage's optional `state` field: its problems (none when unset).
    pub fn check_optional(state: Option<&Self>, field: &'static str) -> Vec<ConfigProblem> {
        state.map(|s| s.check(field)).unwrap_or_default()
    }

    /// A stage's optional `state` field: the resource it uses, if set.
    pub fn resources_of(state: Option<&Self>, field: &'static str) -> Vec<ResourceUse> {
        state.map(|s| s.resource_use(field)).into_iter().collect()
    }

    pub fn open(&self, cx: &BuildContext) -> Result<StateTopic, StageError> {
        let kafka = cx.resources.get::<KafkaResource>(&self.resource)?;
        StateTopic::open(&kafka, &self.topic, &format!("{}.{}", cx.pipeline, cx.stage))
    }
}

/// A compacted topic read and written as a key → latest value map.
pub struct StateTopic {
    kafka: KafkaResource,
    topic: String,
    client_id: String,
    producer: FutureProducer,
}

impl StateTopic {
    pub fn open(kafka: &KafkaResource, topic: &str, client_id: &str) -> Result<Self, StageError> {
        let producer: FutureProducer = kafka
            .client_config([
                ("client.id", client_id),
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
            ])
            .create()
            .map_err(|e| StageError::new(format!("kafka producer for state topic `{topic}`: {e}")))?;
        Ok(Self {
            kafka: kafka.clone(),
            topic: topic.to_string(),
            client_id: client_id.to_string(),
            producer,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The newest value of every key, read up to the end the topic has now
    /// (a tombstone deletes its key). Blocking: call it off the async workers.
    pub fn load(&self, timeout: Duration) -> Result<HashMap<String, Vec<u8>>, StageError> {
        let deadline = Instant::now() + timeout;
        let group = format!("{}.state-reader", self.client_id);
        let consumer: BaseConsumer = self
            .kafka
            .client_config([
                ("client.id", self.client_id.as_str()),
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "10"),
            ])
            .create()
            .map_err(|e| StageError::new(format!("kafka consumer for state topic `{}`: {e}", self.topic)))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| StageError::new(format!("reading metadata of state topic `{}`: {e}", self.topic)))?;
        let mut ends = HashMap::new();
        let mut list = TopicPartitionList::new();
        for t in metadata.topics() {
            if let Some(error) = t.error() {
                return Err(StageError::new(format!(
                    "state topic `{}`: {:?} (create it on the broker first, e.g. with the `topics create` command)",
                    self.topic,
                    RDKafkaErrorCode::from(error)
                )));
            }
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(&self.topic, p.id(), timeout)
                    .map_err(|e| StageError::new(format!("reading the end of `{}`[{}]: {e}", self.topic, p.id())))?;
                if high > low {
                    ends.insert(p.id(), high);
                    list.add_partition_offset(&self.topic, p.id(), Offset::Beginning)
                        .map_err(|e| StageError::new(e.to_string()))?;
                }
            }
        }
        let mut values = HashMap::new();
        if ends.is_empty() {
            return Ok(values);
        }
        consumer
            .assign(&list)
            .map_err(|e| StageError::new(format!("assigning state topic `{}`: {e}", self.topic)))?;
        while !ends.is_empty() {
            if Instant::now() >= deadline {
                return Err(StageError::new(format!(
                    "reading state topic `{}` did not reach its end within {timeout:?}",
                    self.topic
                )));
            }
            let message = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(e)) => return Err(StageError::new(format!("reading state topic `{}`: {e}", self.topic))),
                Some(Ok(message)) => message,
            };
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            match message.payload() {
                Some(value) => values.insert(key, value.to_vec()),
                None => values.remove(&key),
            };
            if ends
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&message.partition());
            }
        }
        Ok(values)
    }

    /// Save `value` under `key`. The `covers` tokens finalize when the broker
    /// has the value (`Failed` if it never gets it, so their inputs stay
    /// uncommitted and are re-delivered after a restart). Writes are enqueued
    /// in call order, so the newest save of a key is the last one in the log.
    pub async fn write(&self, key: &str, value: &[u8], covers: Vec<AckToken>) {
        loop {
            let record = FutureRecord::to(&self.topic).key(key).payload(value);
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    let topic = self.topic.clone();
                    tokio::spawn(async move {
                        let status = match delivery.await {
                            Ok(Ok(_)) => AckStatus::Delivered,
                            Ok(Err((e, _))) => {
                                tracing::warn!(topic = %topic, error = %e, "State save not delivered.");
                                AckStatus::Failed
                            }
                            Err(_) => AckStatus::Failed,
                        };
                        for token in &covers {
                            token.mark(status);
                        }
                    });
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "State save could not be enqueued.");
                    for token in &covers {
                        token.mark(AckStatus::Failed);
                    }
                    return;
                }
            }
        }
    }
}
