//! The `KafkaSink` stage: writes events to a topic, acknowledging each only on
//! its delivery report.
//!
//! The producer is idempotent with `acks=all`, so librdkafka's own retries
//! neither lose nor duplicate nor reorder messages within a partition. A write
//! enqueues the whole batch and returns at once ([`Sink::start_write`]): with
//! `batch.max_in_flight` above 1 the engine hands the sink its next batch while
//! this one is on the wire (the default, 1, gathers it meanwhile), and
//! acknowledges the events when their delivery reports arrive, in order. An
//! event whose delivery failed after librdkafka's retries (`message.timeout.ms`)
//! goes to the error output. With `linger` 0 (the default) an idle producer
//! sends at once, and under load the batches that queued in front of the sink
//! during a round trip go out together: batching that adapts to the load
//! instead of a fixed wait. Each message carries its events' ingest time in a
//! header ([`super::INGEST_TIME_HEADER`]), so the next worker's latency
//! histograms count from when the data entered the first worker.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::Deserialize;

use super::binary;
use super::codec::WireEvent;
use super::framing::{encode_batch, partition_of, Framing};
use super::resource::{KafkaResource, KIND as RESOURCE_KIND};
use super::Codec;
use super::INGEST_TIME_HEADER;
use crate::event::{Envelope, IngestTime, Kinds};
use crate::registry::{BuildContext, ConfigProblem, ResourceUse, StageConfig};
use crate::stage::{ItemError, Shape, Sink, SinkError, Stage, StageError, StartedWrite};

/// Writes events to a Kafka topic (key from the event, so one key stays in order).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The `Kafka` resource to write to.
    pub resource: String,
    pub topic: String,
    /// Key messages by the event's natural key (pair, provider, rule id) so
    /// per-key order holds; `false` spreads unkeyed messages over partitions.
    #[serde(default = "default_true")]
    pub keyed: bool,
    /// Batch compression (`None`, `Gzip`, `Snappy`, `Lz4`).
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka waits to fill a batch before sending it. The
    /// default, 0, sends at once when the producer is idle and still batches
    /// under load: a write hands librdkafka everything that queued up in front
    /// of the sink meanwhile, and librdkafka packs what waits behind its
    /// in-flight requests into one. A linger only adds latency on top.
    #[serde(default = "default_linger", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub linger: Duration,
    /// How long librdkafka keeps retrying a message before it reports failure.
    #[serde(default = "default_delivery_timeout", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub delivery_timeout: Duration,
    /// The wire format: `Json` (`{"v":1,"kind":...}`, for topics anyone reads)
    /// or `Binary` (compact frames, for internal topics only fxflow workers read).
    #[serde(default)]
    pub codec: Codec,
    /// Events per message: `Event` (one keyed message each, the default) or
    /// `Partition(max_events: 1000)` (the events of one write bound for one
    /// partition as one message: far fewer, larger messages for a high-rate
    /// topic; per-key order holds, compaction and per-key reads do not — see
    /// `kafka::framing`).
    #[serde(default)]
    pub framing: Framing,
    /// Also label every message with a `content-type` header. Off by default:
    /// the payload names its own format version (`v`), and tansu 0.6 serves
    /// records with headers ~40× slower (one storage query per header), which
    /// starved whole partitions in our measurements.
    #[serde(default)]
    pub content_type_header: bool,
    /// librdkafka producer properties, over the resource's.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Message compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
}

fn default_true() -> bool {
    true
}
fn default_linger() -> Duration {
    Duration::ZERO
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(120)
}

#[async_trait]
impl<E: WireEvent> StageConfig<E> for KafkaSinkConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::Any
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.topic.trim().is_empty() {
            problems.push(ConfigProblem::field("topic", "no topic given"));
        }
        if let Framing::Partition { max_events: 0 } = self.framing {
            problems.push(ConfigProblem::field("framing", "max_events must be at least 1"));
        }
        if self.delivery_timeout < Duration::from_millis(1) {
            problems.push(ConfigProblem::field("delivery_timeout", "must be at least 1ms"));
        }
        problems
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, RESOURCE_KIND)]
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<E>, StageError> {
        let kafka = cx.resources.get::<KafkaResource>(&self.resource)?;
        let client_id = format!("{}.{}", cx.pipeline, cx.stage);
        let linger = self.linger.as_millis().to_string();
        let timeout = self.delivery_timeout.as_millis().to_string();
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        };
        let mut config = kafka.client_config([
            ("client.id", client_id.as_str()),
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("compression.type", compression),
            ("linger.ms", linger.as_str()),
            ("message.timeout.ms", timeout.as_str()),
        ]);
        for (k, v) in &self.options {
            config.set(k, v);
        }
        let producer: FutureProducer = config
            .create()
            .map_err(|e| StageError::new(format!("kafka producer: {e}")))?;
        Ok(Stage::Sink(Box::new(KafkaSink {
            producer,
            topic: self.topic.clone(),
            keyed: self.keyed,
            codec: self.codec,
            content_type_header: self.content_type_header,
            framing: self.framing,
            partitions: None,
            payload: Vec::new(),
            key: String::new(),
        })))
    }
}

struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    keyed: bool,
    codec: Codec,
    content_type_header: bool,
    framing: Framing,
    /// The topic's partition count, read once (`Framing::Partition` picks partitions itself).
    partitions: Option<i32>,
    payload: Vec<u8>,
    key: String,
}

impl KafkaSink {
    /// The message's headers: its events' ingest time (the oldest, for a batch)
    /// so the next worker carries it on, and the content type if asked for.
    fn headers(&self, ingested: IngestTime, digits: &mut String) -> Option<OwnedHeaders> {
        let mut headers = None::<OwnedHeaders>;
        if ingested.is_known() {
            use std::fmt::Write as _;
            digits.clear();
            let _ = write!(digits, "{}", ingested.as_micros());
            headers = Some(OwnedHeaders::new_with_capacity(2).insert(Header {
                key: INGEST_TIME_HEADER,
                value: Some(digits.as_str()),
            }));
        }
        if self.content_type_header {
            headers = Some(headers.unwrap_or_default().insert(Header {
                key: "content-type",
                value: Some(self.codec.content_type()),
            }));
        }
        headers
    }
}

impl KafkaSink {
    /// The topic's partition count, from the broker's metadata (once).
    async fn partitions(&mut self) -> Result<i32, SinkError> {
        if let Some(n) = self.partitions {
            return Ok(n);
        }
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let found = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            match metadata.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
                _ => Err(format!("the broker knows no topic `{topic}`")),
            }
        })
        .await
        .map_err(|e| SinkError::fatal(e.to_string()))?
        .map_err(|e| SinkError::retryable(format!("reading the partitions of `{}`: {e}", self.topic)))?;
        self.partitions = Some(found);
        Ok(found)
    }

    /// The messages of a write: the event indexes in sending order, and per message the range
    /// of them it carries and its partition. With `Event` framing one message per event (the
    /// producer's partitioner picks); with `Partition`, the events bound for one partition,
    /// `max_events` at a time, sent to that partition.
    async fn messages<E: WireEvent>(&mut self, batch: &[Envelope<E>]) -> Result<Messages, SinkError> {
        let Framing::Partition { max_events } = self.framing else {
            return Ok(Messages {
                order: (0..batch.len()).collect(),
                messages: (0..batch.len()).map(|i| (i..i + 1, None)).collect(),
            });
        };
        let partitions = self.partitions().await?;
        let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); partitions as usize];
        for (index, envelope) in batch.iter().enumerate() {
            self.key.clear();
            let partition = if self.keyed && envelope.event.write_key(&mut self.key) {
                partition_of(self.key.as_bytes(), partitions)
            } else {
                (index as i32) % partitions
            };
            by_partition[partition as usize].push(index);
        }
        let mut out = Messages {
            order: Vec::with_capacity(batch.len()),
            messages: Vec::new(),
        };
        for (partition, indexes) in by_partition.into_iter().enumerate() {
            for chunk in indexes.chunks(max_events.max(1)) {
                let start = out.order.len();
                out.order.extend_from_slice(chunk);
                out.messages.push((start..out.order.len(), Some(partition as i32)));
            }
        }
        Ok(out)
    }
}

/// How a write's events are framed into messages (see [`KafkaSink::messages`]).
struct Messages {
    order: Vec<usize>,
    messages: Vec<(std::ops::Range<usize>, Option<i32>)>,
}

#[async_trait]
impl<E: WireEvent> Sink<E> for KafkaSink {
    async fn write(&mut self, batch: &[Envelope<E>]) -> Result<(), SinkError> {
        match self.start_write(batch).await {
            StartedWrite::Done(result) => result,
            StartedWrite::Pending(pending) => pending.await,
        }
    }

    /// Enqueue the batch with librdkafka and return at once; the delivery
    /// reports are awaited by the returned future, so the next batch is
    /// enqueued while this one is on the wire (the engine keeps order).
    async fn start_write(&mut self, batch: &[Envelope<E>]) -> StartedWrite {
        let Messages { order, messages } = match self.messages(batch).await {
            Ok(messages) => messages,
            Err(e) => return StartedWrite::Done(Err(e)),
        };
        // (the message's entry in `messages`, its delivery)
        let mut deliveries: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(messages.len());
        let mut failed: Vec<ItemError> = Vec::new();
        let mut waited = 0; // deliveries[..waited] already resolved into `failed`
        let mut digits = String::new();
        for (m, (range, partition)) in messages.iter().enumerate() {
            let indexes = &order[range.clone()];
            let events = indexes.iter().map(|&i| &batch[i].event);
            let encoded = match (partition, self.codec) {
                (None, _) => self.codec.encode(&batch[indexes[0]].event, &mut self.payload),
                (Some(_), Codec::Json) => encode_batch(events, &mut self.payload),
                (Some(_), Codec::Binary) => binary::encode(events, &mut self.payload),
            };
            if let Err(e) = encoded {
                for &index in indexes {
                    failed.push(ItemError {
                        index,
                        message: format!("cannot encode: {e}"),
                        retryable: false,
                    });
                }
                continue;
            }
            self.key.clear();
            let keyed = partition.is_none() && self.keyed && batch[indexes[0]].event.write_key(&mut self.key);
            let ingested = indexes
                .iter()
                .map(|&i| batch[i].ingested)
                .filter(|t| t.is_known())
                .min()
                .unwrap_or(IngestTime::UNKNOWN);
            loop {
                let mut record = FutureRecord::to(&self.topic).payload(&self.payload[..]);
                if let Some(headers) = self.headers(ingested, &mut digits) {
                    record = record.headers(headers);
                }
                if keyed {
                    record = record.key(self.key.as_str());
                }
                if let Some(partition) = partition {
                    record = record.partition(*partition);
                }
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push((m, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // librdkafka's queue is full: wait for the oldest outstanding delivery, then retry.
                        match deliveries.get_mut(waited) {
                            Some((sent, future)) => {
                                let sent = *sent;
                                settle(&order[messages[sent].0.clone()], future.await, &mut failed);
                                waited += 1;
                            }
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        for &index in indexes {
                            failed.push(ItemError {
                                index,
                                message: format!("cannot enqueue: {e}"),
                                retryable: true,
                            });
                        }
                        break;
                    }
                }
            }
        }
        let (topic, total) = (self.topic.clone(), batch.len());
        StartedWrite::Pending(Box::pin(async move {
            for (m, future) in deliveries.drain(..).skip(waited) {
                settle(&order[messages[m].0.clone()], future.await, &mut failed);
            }
            if failed.is_empty() {
                Ok(())
            } else {
                failed.sort_by_key(|f| f.index);
                Err(SinkError::items(
                    format!("{} of {total} events not delivered to `{topic}`", failed.len()),
                    failed,
                ))
            }
        }))
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .map_err(|e| SinkError::fatal(e.to_string()))?
            .map_err(|e| SinkError::fatal(format!("flushing the producer: {e}")))
    }
}

/// Record a message's delivery failure against every event it carried.
fn settle<C>(indexes: &[usize], outcome: Result<OwnedDeliveryResult, C>, failed: &mut Vec<ItemError>) {
    let (message, retryable) = match outcome {
        Ok(Ok(_)) => return,
        // librdkafka already retried until `delivery_timeout`; more retries would reorder.
        Ok(Err((e, _))) => (format!("delivery failed: {e}"), false),
        Err(_) => ("the producer was dropped before reporting delivery".to_owned(), true),
    };
    for &index in indexes {
        failed.push(ItemError {
            index,
            message: message.clone(),
            retryable,
        });
    }
}
