//! Helpers for tests of the Kafka transport against librdkafka's mock cluster
//! (a real Kafka protocol implementation inside librdkafka, no broker process):
//! a wire-ready test event type, a source of it, a sink that records any event
//! type, and producing, reading and committed-offset helpers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::event::{DeadLetter, Envelope, Event, Kinds, DEAD_LETTER_KIND};
use crate::kafka::{self as transport, Codec, WireEvent};
use crate::pipeline_file::{load_str, PipelineSpec};
use crate::registry::{BuildContext, Registry, StageConfig};
use crate::stage::{Shape, Sink, SinkError, Source, SourceContext, Stage, StageError};

/// An event type that travels over Kafka: keyed readings, unkeyed commands, dead letters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum WireTestEvent {
    /// The `seq`-th reading of `key` (messages are keyed by `key`).
    Reading {
        key: String,
        seq: u64,
    },
    Command {
        id: String,
    },
    DeadLetter {
        stage: String,
        reason: String,
        error: String,
        raw: Option<String>,
    },
}

impl WireTestEvent {
    pub fn reading(key: &str, seq: u64) -> Self {
        WireTestEvent::Reading {
            key: key.to_owned(),
            seq,
        }
    }
}

impl Event for WireTestEvent {
    fn kind(&self) -> &'static str {
        match self {
            WireTestEvent::Reading { .. } => "Reading",
            WireTestEvent::Command { .. } => "Command",
            WireTestEvent::DeadLetter { .. } => DEAD_LETTER_KIND,
        }
    }

    fn dead_letter(letter: DeadLetter<Self>) -> Self {
        WireTestEvent::DeadLetter {
            stage: letter.stage,
            reason: letter.reason.to_owned(),
            error: letter.error,
            raw: letter.raw.map(|raw| String::from_utf8_lossy(&raw).into_owned()),
        }
    }
}

impl WireEvent for WireTestEvent {
    const KINDS: &'static [&'static str] = &["Reading", "Command", DEAD_LETTER_KIND];

    fn write_key(&self, out: &mut String) -> bool {
        match self {
            WireTestEvent::Reading { key, .. } => {
                out.push_str(key);
                true
            }
            _ => false,
        }
    }
}

/// The Kafka stages and resource, `Emit` and `Record`, over [`WireTestEvent`].
pub fn wire_registry() -> Registry<WireTestEvent> {
    let mut registry = Registry::new();
    registry
        .stage::<transport::KafkaSourceConfig>("KafkaSource")
        .stage::<transport::KafkaSinkConfig>("KafkaSink")
        .stage::<EmitConfig>("Emit")
        .stage::<RecordConfig>("Record")
        .resource::<transport::KafkaResourceConfig>(transport::RESOURCE_KIND);
    registry
}

/// A pipeline with a `Kafka` resource named `kafka` on `brokers` and the given stages.
pub fn kafka_pipeline<E: Event>(registry: &Registry<E>, name: &str, brokers: &str, stages: &str) -> PipelineSpec<E> {
    let text = format!(
        r#"Pipeline(
            name: "{name}",
            resources: {{ "kafka": Kafka(brokers: "{brokers}") }},
            stages: {{ {stages} }},
        )"#
    );
    load_str("test.ron", &text, registry, |_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// Source: `count` readings, `seq` 0.. in turn over `keys` keys (`k0`, `k1`, ...), in one batch each.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitConfig {
    pub count: u64,
    #[serde(default = "one_key")]
    pub keys: u64,
    /// Events per batch.
    #[serde(default = "one_key")]
    pub per_send: u64,
}

fn one_key() -> u64 {
    1
}

struct Emit(u64, u64, u64);

#[async_trait]
impl StageConfig<WireTestEvent> for EmitConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Reading"])
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<WireTestEvent>, StageError> {
        Ok(Stage::Source(Box::new(Emit(
            self.count,
            self.keys.max(1),
            self.per_send.max(1),
        ))))
    }
}

#[async_trait]
impl Source<WireTestEvent> for Emit {
    async fn run(self: Box<Self>, mut cx: SourceContext<WireTestEvent>) -> Result<(), StageError> {
        let Emit(count, keys, per_send) = *self;
        let mut next = 0;
        while next < count && !cx.shutdown.is_triggered() {
            let end = (next + per_send).min(count);
            let batch = (next..end)
                .map(|i| Envelope::unacked(WireTestEvent::reading(&format!("k{}", i % keys), i / keys)))
                .collect();
            cx.outputs.send(batch).await?;
            next = end;
        }
        Ok(())
    }
}

/// What `Record` sinks stored, by probe name and event type.
pub fn recorded<E: Clone + Send + 'static>(probe: &str) -> Arc<Mutex<Vec<E>>> {
    type Probes = HashMap<(TypeId, String), Box<dyn Any + Send>>;
    static PROBES: OnceLock<Mutex<Probes>> = OnceLock::new();
    let mut probes = PROBES.get_or_init(Default::default).lock().unwrap();
    probes
        .entry((TypeId::of::<E>(), probe.to_owned()))
        .or_insert_with(|| Box::new(Arc::new(Mutex::new(Vec::<E>::new()))))
        .downcast_ref::<Arc<Mutex<Vec<E>>>>()
        .expect("one type per key")
        .clone()
}

/// Sink for any event type: stores into the probe `probe` after `delay_ms` per
/// event, or refuses everything with `fail: true`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    pub probe: String,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub fail: bool,
}

struct Record<E> {
    events: Arc<Mutex<Vec<E>>>,
    delay: Duration,
    fail: bool,
}

#[async_trait]
impl<E: Event> StageConfig<E> for RecordConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<E>, StageError> {
        Ok(Stage::Sink(Box::new(Record {
            events: recorded::<E>(&self.probe),
            delay: Duration::from_millis(self.delay_ms),
            fail: self.fail,
        })))
    }
}

#[async_trait]
impl<E: Event> Sink<E> for Record<E> {
    async fn write(&mut self, batch: &[Envelope<E>]) -> Result<(), SinkError> {
        tokio::time::sleep(self.delay * batch.len() as u32).await;
        if self.fail {
            return Err(SinkError::fatal("this store refuses everything"));
        }
        self.events
            .lock()
            .unwrap()
            .extend(batch.iter().map(|e| e.event.clone()));
        Ok(())
    }
}

/// A one-broker mock cluster.
pub fn mock_cluster() -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(1).unwrap()
}

/// A message as the codec writes it: (key, payload).
pub fn encoded<E: WireEvent>(event: &E) -> (Option<String>, Vec<u8>) {
    let mut payload = Vec::new();
    Codec::Json.encode(event, &mut payload).unwrap();
    let mut key = String::new();
    let keyed = event.write_key(&mut key);
    (keyed.then_some(key), payload)
}

/// Produce in order: everything is enqueued first (librdkafka keeps a partition's order), then
/// every delivery is awaited.
pub async fn produce(brokers: &str, topic: &str, messages: impl IntoIterator<Item = (Option<String>, Vec<u8>)>) {
    produce_to(brokers, topic, messages.into_iter().map(|(k, v)| (None, k, v))).await
}

/// Like [`produce`], each message to the given partition (`None`: by key).
pub async fn produce_to(
    brokers: &str,
    topic: &str,
    messages: impl IntoIterator<Item = (Option<i32>, Option<String>, Vec<u8>)>,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for (partition, key, payload) in messages {
        let mut record = FutureRecord::to(topic).payload(&payload);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
    producer.flush(Duration::from_secs(5)).unwrap();
}

/// The group's committed offset per partition (`None` where nothing is committed).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let offsets = consumer.committed_offsets(list, Duration::from_secs(5)).unwrap();
    offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Poll `done` every 100 ms for up to 30 s (panics naming `what` after that).
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
