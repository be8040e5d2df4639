//! Single-process tests of the Kafka source and sink against librdkafka's mock
//! cluster (a real Kafka protocol implementation inside librdkafka; no broker
//! process). Multi-process tests over a real broker are in `tests/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fxflow_engine::kafka::{Codec, WireEvent};
use fxflow_engine::{
    async_trait, BuildContext, Envelope, Registry, Shape, Sink, SinkError, Stage, StageConfig, StageError,
};
use fxflow_stages::fx::{FxEvent, Quote, SourceName};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;

/// Events a `Record` sink stored, by probe name.
type Probe = Arc<Mutex<Vec<FxEvent>>>;

fn recorded(name: &str) -> Probe {
    static PROBES: OnceLock<Mutex<HashMap<String, Probe>>> = OnceLock::new();
    PROBES
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// A test sink: stores into a probe after `delay_ms` per event, or refuses everything with `fail: true`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RecordConfig {
    probe: String,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    fail: bool,
}

struct Record {
    events: Arc<Mutex<Vec<FxEvent>>>,
    delay: Duration,
    fail: bool,
}

#[async_trait]
impl StageConfig<FxEvent> for RecordConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Sink(Box::new(Record {
            events: recorded(&self.probe),
            delay: Duration::from_millis(self.delay_ms),
            fail: self.fail,
        })))
    }
}

#[async_trait]
impl Sink<FxEvent> for Record {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
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

fn registry() -> Registry<FxEvent> {
    let mut registry = fxflow_stages::registry();
    registry.stage::<RecordConfig>("Record");
    registry
}

fn quote(i: u32) -> FxEvent {
    FxEvent::Quote(Quote {
        pair: if i.is_multiple_of(2) { "EUR/USD" } else { "USD/JPY" }.parse().unwrap(),
        bid: rust_decimal::Decimal::new(11_000 + i as i64, 4),
        ask: rust_decimal::Decimal::new(11_002 + i as i64, 4),
        ts: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
        source: SourceName::intern("test").unwrap(),
        enrichment: None,
    })
}

/// Produce in order: everything is enqueued first (librdkafka keeps a partition's order), then
/// every delivery is awaited.
async fn produce(brokers: &str, topic: &str, messages: impl IntoIterator<Item = (Option<String>, Vec<u8>)>) {
    produce_to(brokers, topic, messages.into_iter().map(|(k, v)| (None, k, v))).await
}

/// Like [`produce`], each message to the given partition (`None`: by key).
async fn produce_to(
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

fn encoded(event: &FxEvent) -> (Option<String>, Vec<u8>) {
    let mut payload = Vec::new();
    Codec::Json.encode(event, &mut payload).unwrap();
    let mut key = String::new();
    event.write_key(&mut key);
    (Some(key), payload)
}

/// The group's committed offset per partition (`None` where nothing is committed).
fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
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

fn pipeline(name: &str, brokers: &str, body: &str) -> fxflow_engine::PipelineSpec<FxEvent> {
    let text = format!(
        r#"Pipeline(
            name: "{name}",
            resources: {{ "kafka": Kafka(brokers: "{brokers}") }},
            stages: {{ {body} }},
        )"#
    );
    fxflow_engine::pipeline_file::load_str("test.ron", &text, &registry(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn mock() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    MockCluster::new(1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_after_the_sink_stored_the_events() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).unwrap();
    produce(&brokers, "in", (0..50).map(|i| encoded(&quote(i)))).await;

    // A sink that refuses everything and has no error output: nothing may be committed.
    let source = r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "g", kinds: ["Quote"], commit_interval: "100ms",
        options: {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}),"#;
    let refusing = pipeline(
        "refusing",
        &brokers,
        &format!(r#"{source} "store": Record(inputs: ["in"], probe: "refused", fail: true, retry: (attempts: 0)),"#),
    );
    let running = fxflow_engine::start(refusing).await.unwrap();
    // Wait until the source has read everything (the messages reached the sink and failed).
    wait_for("the refusing run to read the topic", || {
        let text = fxflow_engine::metrics::install_recorder().render();
        fxflow_engine::testkit::counter_value(
            &text,
            "fxflow_stage_errors_total",
            &[("pipeline", "refusing"), ("error_type", "write_failed")],
        ) >= 50.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // several commit intervals
    running.stop(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        committed(&brokers, "g", "in", 1),
        vec![None],
        "a failed input must not be committed"
    );

    // The same group with a working sink gets every message again, then commits them all.
    let storing = pipeline(
        "storing",
        &brokers,
        &format!(r#"{source} "store": Record(inputs: ["in"], probe: "stored"),"#),
    );
    let stored = recorded("stored");
    let running = fxflow_engine::start(storing).await.unwrap();
    wait_for("all 50 re-delivered", || stored.lock().unwrap().len() >= 50).await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    let got = stored.lock().unwrap().clone();
    assert_eq!(got, (0..50).map(quote).collect::<Vec<_>>(), "every event, in order");
    assert_eq!(committed(&brokers, "g", "in", 1), vec![Some(50)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_go_to_the_error_output_and_are_committed() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).unwrap();
    let mut messages = vec![encoded(&quote(0))];
    messages.push((None, b"{\"v\":1,\"kind\":\"Quote\",\"pair\":\"EUR/XXX\"}".to_vec()));
    messages.push((None, b"\xff\xfe not json at all".to_vec()));
    messages.push((None, b"{\"v\":7,\"kind\":\"Quote\"}".to_vec()));
    let mut alert = Vec::new();
    Codec::Json
        .encode(
            &FxEvent::AlertRuleChange(fxflow_stages::fx::AlertRuleChange {
                id: "r".into(),
                rule: None,
            }),
            &mut alert,
        )
        .unwrap();
    messages.push((None, alert)); // decodes, but is not a declared kind
    messages.push(encoded(&quote(1)));
    produce(&brokers, "in", messages).await;

    let spec = pipeline(
        "dlq",
        &brokers,
        r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "d", kinds: ["Quote"], commit_interval: "100ms"),
           "good": Record(inputs: ["in"], probe: "dlq-good"),
           "bad": Record(inputs: ["in.errors"], probe: "dlq-bad"),"#,
    );
    let (good, bad) = (recorded("dlq-good"), recorded("dlq-bad"));
    let running = fxflow_engine::start(spec).await.unwrap();
    wait_for("2 good and 4 dead letters", || {
        good.lock().unwrap().len() == 2 && bad.lock().unwrap().len() == 4
    })
    .await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    assert_eq!(*good.lock().unwrap(), vec![quote(0), quote(1)]);
    let letters: Vec<_> = bad
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            FxEvent::DeadLetter(d) => d.clone(),
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect();
    let reasons: Vec<&str> = letters.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["decode_failed", "decode_failed", "decode_failed", "unexpected_kind"]
    );
    for (letter, offset) in letters.iter().zip(1..) {
        assert_eq!(letter.stage, "in");
        assert!(
            letter.error.starts_with(&format!("in[0]@{offset}: ")),
            "{}",
            letter.error
        );
        assert!(letter.raw.is_some(), "the original bytes travel with the letter");
    }
    assert!(letters[0].raw.as_deref().unwrap().contains("EUR/XXX"));
    assert!(letters[2].error.contains("version 7"), "{}", letters[2].error);
    assert_eq!(
        committed(&brokers, "d", "in", 1),
        vec![Some(6)],
        "bad messages are not retried forever"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_drains_and_commits_before_giving_partitions_up() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 4, 1).unwrap();
    let total = 400u32;
    produce(
        &brokers,
        "in",
        (0..total).map(|i| (Some(format!("k{i}")), encoded(&quote(i)).1)),
    )
    .await;

    // Worker A starts alone with a slow sink, so events are in flight when B joins.
    let body = |probe: &str| {
        format!(
            r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "r", kinds: ["Quote"], max_batch: 10,
                   options: {{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}),
               "store": Record(inputs: ["in"], probe: "{probe}", delay_ms: 20, buffer: (capacity: 10)),"#
        )
    };
    let (a, b) = (recorded("rebalance-a"), recorded("rebalance-b"));
    let worker_a = fxflow_engine::start(pipeline("a", &brokers, &body("rebalance-a")))
        .await
        .unwrap();
    wait_for("A to start storing", || a.lock().unwrap().len() >= 20).await;
    let worker_b = fxflow_engine::start(pipeline("b", &brokers, &body("rebalance-b")))
        .await
        .unwrap();
    wait_for("A and B to store every event", || {
        a.lock().unwrap().len() + b.lock().unwrap().len() >= total as usize
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // any duplicate would arrive by now
    worker_a.stop(Duration::from_secs(30)).await.unwrap();
    worker_b.stop(Duration::from_secs(30)).await.unwrap();

    let (a, b) = (a.lock().unwrap().clone(), b.lock().unwrap().clone());
    assert!(!b.is_empty(), "B took partitions over");
    let mut all: Vec<String> = a.iter().chain(&b).map(|e| format!("{e:?}")).collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(
        before,
        all.len(),
        "A committed what it finished before releasing: nothing stored twice"
    );
    assert_eq!(all.len(), total as usize);
    let offsets: i64 = committed(&brokers, "r", "in", 4)
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    assert_eq!(offsets, total as i64, "every partition committed to its end");
}

/// A message as (key, payload, headers).
type Read = (Option<String>, String, Vec<(String, String)>);

/// Every message of `topic` (one partition).
fn read_all(brokers: &str, topic: &str, expected: usize) -> Vec<Read> {
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "reader")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&list).unwrap();
    let mut messages = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while messages.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers,
            ));
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_keys_messages_and_adds_a_content_type_header_only_when_asked() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("plain", 1, 1).unwrap();
    cluster.create_topic("labelled", 1, 1).unwrap();
    let spec = pipeline(
        "sink-headers",
        &brokers,
        r#""walk": Synthetic(count: 3, seed: 1),
           "plain": KafkaSink(inputs: ["walk"], resource: "kafka", topic: "plain"),
           "labelled": KafkaSink(inputs: ["walk"], resource: "kafka", topic: "labelled", content_type_header: true),"#,
    );
    fxflow_engine::start(spec).await.unwrap().wait().await.unwrap();
    let plain = read_all(&brokers, "plain", 3);
    let labelled = read_all(&brokers, "labelled", 3);
    assert_eq!(plain.len(), 3, "{plain:?}");
    assert_eq!(labelled.len(), 3, "{labelled:?}");
    for ((key, payload, headers), (_, labelled_payload, labelled_headers)) in plain.iter().zip(&labelled) {
        assert_eq!(key.as_deref(), Some("synthetic"), "snapshots are keyed by provider");
        assert!(payload.starts_with(r#"{"v":1,"kind":"QuoteSnapshot""#), "{payload}");
        assert!(headers.is_empty(), "no header by default: {headers:?}");
        assert_eq!(payload, labelled_payload);
        assert_eq!(
            labelled_headers,
            &vec![("content-type".to_owned(), Codec::Json.content_type().to_owned())]
        );
    }
}

/// (rule id, sample step) of each firing a probe recorded.
fn firings(probe: &Probe) -> Vec<(String, i64)> {
    probe
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            FxEvent::AlertFired(f) => Some((f.rule_id.to_string(), f.ts.timestamp() - 1_700_000_000)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_state_survives_a_restart() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("rates", 1, 1).unwrap();
    cluster.create_topic("alert-state", 1, 1).unwrap();
    // EUR/USD (even steps) rises 0.0002 every 2 s from mid 1.1001.
    produce(&brokers, "rates", (0..20).map(|i| encoded(&quote(i)))).await;
    let body = |probe: &str| {
        format!(
            r#""rates": KafkaSource(resource: "kafka", topics: ["rates"], group: "alerting", kinds: ["Quote"],
                commit_interval: "100ms", options: {{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}),
            "alerts": Alert(inputs: ["rates"], state: (resource: "kafka", topic: "alert-state", interval: "100ms"),
                rules: [
                    (id: "above", pair: "EUR/USD", condition: Above(1.1005)),
                    (id: "jump", pair: "EUR/USD", condition: PctChange(percent: 0.25, window: "30s")),
                ]),
            "store": Record(inputs: ["alerts"], probe: "{probe}"),"#
        )
    };
    // One worker's life: run until `rates` is committed up to `end`, then stop.
    let run = |name: &'static str, end: i64| {
        let (brokers, spec) = (brokers.clone(), pipeline(name, &brokers, &body(name)));
        async move {
            let running = fxflow_engine::start(spec).await.unwrap();
            wait_for("every rate committed", || {
                committed(&brokers, "alerting", "rates", 1) == vec![Some(end)]
            })
            .await;
            running.stop(Duration::from_secs(30)).await.unwrap();
            recorded(name)
        }
    };
    let first = run("alert-state-first", 20).await;
    // `above` fires once (mid 1.1007 at step 6); the 30 s window has risen 0.16% by step 18.
    assert_eq!(firings(&first), vec![("above".to_string(), 6)]);

    // The saved state: one key per pair, with the position and the retired one-shot rule.
    let kafka = fxflow_engine::kafka::KafkaResource {
        brokers: brokers.clone(),
        options: Default::default(),
        topics: Default::default(),
    };
    let saved = fxflow_engine::kafka::StateTopic::open(&kafka, "alert-state", "test")
        .unwrap()
        .load(Duration::from_secs(10))
        .unwrap();
    assert_eq!(saved.keys().collect::<Vec<_>>(), vec!["EUR/USD"]);
    let state: serde_json::Value = serde_json::from_slice(&saved["EUR/USD"]).unwrap();
    assert_eq!(state["position"]["offset"], 18, "the last EUR/USD input: {state}");
    assert_eq!(state["retired"][0]["id"], "above", "{state}");

    // A new process continues: `above` stays retired (afresh it would fire at once: the price is
    // still above), and `jump` fires at step 28 against the window start saved at step 0
    // (afresh, its window would start at step 20 and never reach +0.25%).
    produce(&brokers, "rates", (20..40).map(|i| encoded(&quote(i)))).await;
    let second = run("alert-state-second", 40).await;
    // (A firing whose delivery was not yet confirmed when a save was written is emitted again
    // after the restart — the same firing, step 6 — which is allowed; a new one is not.)
    let new: Vec<_> = firings(&second)
        .into_iter()
        .filter(|f| *f != ("above".to_string(), 6))
        .collect();
    assert_eq!(new, vec![("jump".to_string(), 28)]);
}

/// Quotes `steps` (EUR/USD on even steps into partition 0, USD/JPY on odd ones into partition 1).
async fn produce_by_pair(brokers: &str, topic: &str, steps: std::ops::Range<u32>) {
    let messages = steps.map(|i| {
        let (key, payload) = encoded(&quote(i));
        (Some((i % 2) as i32), key, payload)
    });
    produce_to(brokers, topic, messages).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_hands_a_pair_over_with_its_alert_state() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("rates-2", 2, 1).unwrap();
    cluster.create_topic("alert-state-2", 1, 1).unwrap();
    produce_by_pair(&brokers, "rates-2", 0..20).await;
    let body = |probe: &str| {
        format!(
            r#""rates": KafkaSource(resource: "kafka", topics: ["rates-2"], group: "alerting-2", kinds: ["Quote"],
                commit_interval: "100ms", options: {{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}),
            "alerts": Alert(inputs: ["rates"], state: (resource: "kafka", topic: "alert-state-2", interval: "100ms"),
                rules: [
                    (id: "eur-above", pair: "EUR/USD", condition: Above(1.1005)),
                    (id: "eur-jump", pair: "EUR/USD", condition: PctChange(percent: 0.25, window: "30s")),
                    (id: "jpy-above", pair: "USD/JPY", condition: Above(1.1005)),
                    (id: "jpy-jump", pair: "USD/JPY", condition: PctChange(percent: 0.25, window: "30s")),
                ]),
            "store": Record(inputs: ["alerts"], probe: "{probe}"),"#
        )
    };
    // A alone reads both partitions: each pair's one-shot `above` fires.
    let a = recorded("handover-a");
    let worker_a = fxflow_engine::start(pipeline("handover-a", &brokers, &body("handover-a")))
        .await
        .unwrap();
    wait_for("A to commit both partitions", || {
        committed(&brokers, "alerting-2", "rates-2", 2) == vec![Some(10), Some(10)]
    })
    .await;
    let mut first = firings(&a);
    first.sort();
    assert_eq!(first, vec![("eur-above".to_string(), 6), ("jpy-above".to_string(), 5)]);
    // B joins; one partition moves to it (cooperative rebalance: A saves and commits first).
    let b = recorded("handover-b");
    let worker_b = fxflow_engine::start(pipeline("handover-b", &brokers, &body("handover-b")))
        .await
        .unwrap();
    wait_for("B to be assigned a partition", || {
        fxflow_engine::metrics::install_recorder()
            .render()
            .lines()
            .any(|l| l.starts_with("fxflow_kafka_consumer_lag") && l.contains(r#"pipeline="handover-b""#))
    })
    .await;
    produce_by_pair(&brokers, "rates-2", 20..40).await;
    wait_for("A and B to commit everything", || {
        committed(&brokers, "alerting-2", "rates-2", 2) == vec![Some(20), Some(20)]
    })
    .await;
    worker_a.stop(Duration::from_secs(30)).await.unwrap();
    worker_b.stop(Duration::from_secs(30)).await.unwrap();
    // Each window reaches +0.25% against its start saved before the handover (steps 28 and 29);
    // no one-shot rule fires again on either side (exact re-emissions aside).
    let before = [("jpy-above".to_string(), 5), ("eur-above".to_string(), 6)];
    let (a, b) = (firings(&a), firings(&b));
    let mut all: Vec<_> = a.iter().chain(&b).filter(|f| !before.contains(f)).cloned().collect();
    all.sort();
    assert_eq!(
        all,
        vec![("eur-jump".to_string(), 28), ("jpy-jump".to_string(), 29)],
        "A: {a:?}, B: {b:?}"
    );
    assert!(
        b.iter().any(|f| f.0.ends_with("-jump")),
        "B fired with the state it took over: {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_source_is_processed_before_the_other_sources_start() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("rules-3", 1, 1).unwrap();
    cluster.create_topic("rates-3", 1, 1).unwrap();
    // A long rule changelog whose last rule is the one the rates cross.
    let change = |id: String, threshold: &str| {
        let rule: fxflow_stages::fx::AlertRule = serde_json::from_value(serde_json::json!({
            "id": id, "pair": "EUR/USD", "condition": {"CrossingUp": threshold}
        }))
        .unwrap();
        encoded(&FxEvent::AlertRuleChange(fxflow_stages::fx::AlertRuleChange {
            id: rule.id.clone(),
            rule: Some(rule),
        }))
    };
    let changes: Vec<_> = (0..20_000)
        .map(|i| change(format!("far-{i}"), "9"))
        .chain([change("near".into(), "1.1005")])
        .collect();
    produce(&brokers, "rules-3", changes).await;
    // EUR/USD mids 1.1001, 1.1003, 1.1005 (steps 0, 2, 4): `near` fires at step 4 if it is in
    // the book by then. (Without `bootstrap` the rates, read at once, beat 20,000 rule changes.)
    produce(&brokers, "rates-3", (0..8).map(|i| encoded(&quote(i)))).await;
    let body = r#""rules": KafkaSource(resource: "kafka", topics: ["rules-3"], kinds: ["AlertRuleChange"], bootstrap: true),
        "rates": KafkaSource(resource: "kafka", topics: ["rates-3"], group: "alerting-3", assignment: AllPartitions,
            kinds: ["Quote"], commit_interval: "100ms"),
        "alerts": Alert(inputs: ["rules", "rates"]),
        "store": Record(inputs: ["alerts"], probe: "bootstrap"),"#;
    let running = fxflow_engine::start(pipeline("bootstrap", &brokers, body))
        .await
        .unwrap();
    wait_for("the rates to be committed", || {
        committed(&brokers, "alerting-3", "rates-3", 1) == vec![Some(8)]
    })
    .await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    assert_eq!(firings(&recorded("bootstrap")), vec![("near".to_string(), 4)]);
}

/// (pair, minute start as seconds after the first quote, ticks, closed) of every candle a probe recorded.
fn candles(probe: &Probe) -> Vec<(String, i64, u64, bool)> {
    probe
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            FxEvent::Candle(c) => Some((
                c.pair.to_string(),
                c.start.timestamp() - 1_700_000_000,
                c.ticks,
                c.closed,
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_candle_loses_and_double_counts_nothing() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("rates-c", 2, 1).unwrap();
    cluster.create_topic("candle-state", 1, 1).unwrap();
    // One quote a second, EUR/USD (partition 0) and USD/JPY (partition 1) in turn; the first at
    // second 20 of a minute, so minutes start at steps 40, 100, 160, 220.
    produce_by_pair(&brokers, "rates-c", 0..70).await;
    let body = |probe: &str| {
        format!(
            r#""rates": KafkaSource(resource: "kafka", topics: ["rates-c"], group: "candling", kinds: ["Quote"],
                commit_interval: "100ms", options: {{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}),
            "candles": Candles(inputs: ["rates"], intervals: ["1m"],
                state: (resource: "kafka", topic: "candle-state", interval: "100ms")),
            "store": Record(inputs: ["candles"], probe: "{probe}"),"#
        )
    };
    let run = |name: &'static str, end: i64| {
        let (brokers, spec) = (brokers.clone(), pipeline(name, &brokers, &body(name)));
        async move {
            let running = fxflow_engine::start(spec).await.unwrap();
            wait_for("every quote committed", || {
                committed(&brokers, "candling", "rates-c", 2) == vec![Some(end), Some(end)]
            })
            .await;
            running.stop(Duration::from_secs(30)).await.unwrap();
            recorded(name)
        }
    };
    // The first process stops in the middle of the minute of steps 40..100.
    let first = run("candles-first", 35).await;
    let mut closed = candles(&first);
    closed.sort();
    assert_eq!(
        closed,
        vec![("EUR/USD".into(), -20, 20, true), ("USD/JPY".into(), -20, 20, true)],
        "the first minute closed; the second is open in the saved state"
    );
    let kafka = fxflow_engine::kafka::KafkaResource {
        brokers: brokers.clone(),
        options: Default::default(),
        topics: Default::default(),
    };
    let saved = fxflow_engine::kafka::StateTopic::open(&kafka, "candle-state", "test")
        .unwrap()
        .load(Duration::from_secs(10))
        .unwrap();
    let mut names: Vec<&String> = saved.keys().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "watermark:rates-c[0]",
            "watermark:rates-c[1]",
            "window:EUR/USD test 1m",
            "window:USD/JPY test 1m"
        ]
    );
    let state: serde_json::Value = serde_json::from_slice(&saved["window:EUR/USD test 1m"]).unwrap();
    assert_eq!(
        state["state"]["panes"][0]["acc"]["ticks"], 15,
        "steps 40..70 of EUR/USD: {state}"
    );

    // A new process continues the open minute: 30 ticks each, none counted twice, none lost.
    produce_by_pair(&brokers, "rates-c", 70..230).await;
    let second = run("candles-second", 115).await;
    let mut got = candles(&second);
    got.sort();
    got.dedup(); // a bar emitted again after the restart is the same bar
    let mut want = Vec::new();
    for pair in ["EUR/USD", "USD/JPY"] {
        for start in [40, 100, 160] {
            want.push((pair.to_owned(), start, 30, true));
        }
    }
    assert_eq!(got.into_iter().filter(|c| c.1 >= 40).collect::<Vec<_>>(), want);
}

/// `Partition` framing: the crosses of a write go out as one message per partition (at most
/// `max_events` each; a write is what the sink's `batch` gathers), and a `KafkaSource` reads
/// back every event, each pair in its order, committing every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_framing_batches_messages_and_keeps_every_pairs_order() {
    let cluster = mock();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("crosses", 4, 1).unwrap();
    let writer = pipeline(
        "framing-writer",
        &brokers,
        r#""walk": Synthetic(count: 100, seed: 3),
           "cross": CrossRate(inputs: ["walk"]),
           "truth": Record(inputs: ["cross"], probe: "framing-truth"),
           "publish": KafkaSink(inputs: ["cross"], resource: "kafka", topic: "crosses", framing: Partition(max_events: 50),
               batch: (max_events: 2800, max_wait: "200ms")),"#,
    );
    fxflow_engine::start(writer).await.unwrap().wait().await.unwrap();
    let truth = recorded("framing-truth").lock().unwrap().clone();
    assert_eq!(truth.len(), 2_800, "100 snapshots, 28 crosses each");

    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let messages: i64 = (0..4)
        .map(|p| {
            consumer
                .fetch_watermarks("crosses", p, Duration::from_secs(5))
                .unwrap()
                .1
        })
        .sum();
    assert!(
        messages * 10 < truth.len() as i64,
        "{messages} messages for {} events: not batched",
        truth.len()
    );

    let reader = pipeline(
        "framing-reader",
        &brokers,
        r#""in": KafkaSource(resource: "kafka", topics: ["crosses"], group: "framing", kinds: ["CrossRate"], commit_interval: "100ms"),
           "store": Record(inputs: ["in"], probe: "framing-read"),"#,
    );
    let read = recorded("framing-read");
    let running = fxflow_engine::start(reader).await.unwrap();
    wait_for("every cross read back", || read.lock().unwrap().len() >= truth.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // commit intervals
    running.stop(Duration::from_secs(30)).await.unwrap();
    let got = read.lock().unwrap().clone();
    assert_eq!(got.len(), truth.len(), "nothing lost or read twice");
    let by_pair = |events: &[FxEvent]| {
        let mut pairs: HashMap<String, Vec<FxEvent>> = HashMap::new();
        for event in events {
            if let FxEvent::CrossRate(c) = event {
                pairs.entry(c.pair.to_string()).or_default().push(event.clone());
            }
        }
        pairs
    };
    assert_eq!(by_pair(&got), by_pair(&truth), "every pair's crosses, in order");
    let committed_total: i64 = committed(&brokers, "framing", "crosses", 4)
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    assert_eq!(committed_total, messages, "every message committed");
}
