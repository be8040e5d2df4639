//! The Kafka source and sink against librdkafka's mock cluster (a real Kafka
//! protocol implementation inside librdkafka; no broker process), over the
//! engine's own wire test event. A group rebalance is tested on a real broker
//! (`kafka_broker.rs`: the mock's group coordinator is not faithful enough for
//! it); multi-process tests are in `tests/`, the FX stages' state topics in
//! `stages/tests/kafka_state.rs`.

use std::collections::HashMap;
use std::time::Duration;

use fxflow_engine::kafka::Codec;
use fxflow_engine::testkit::counter_value;
use fxflow_engine::testkit::kafka::{
    committed, encoded, kafka_pipeline, mock_cluster, produce, recorded, wait_until, wire_registry, WireTestEvent as Ev,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn pipeline(name: &str, brokers: &str, stages: &str) -> fxflow_engine::PipelineSpec<Ev> {
    kafka_pipeline(&wire_registry(), name, brokers, stages)
}

fn reading(i: u64) -> Ev {
    Ev::reading(if i.is_multiple_of(2) { "even" } else { "odd" }, i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_after_the_sink_stored_the_events() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).unwrap();
    produce(&brokers, "in", (0..50).map(|i| encoded(&reading(i)))).await;

    // A sink that refuses everything and has no error output: nothing may be committed.
    let source = r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "g", kinds: ["Reading"], commit_interval: "100ms",
        options: {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}),"#;
    let refusing = pipeline(
        "refusing",
        &brokers,
        &format!(r#"{source} "store": Record(inputs: ["in"], probe: "refused", fail: true, retry: (attempts: 0)),"#),
    );
    let running = fxflow_engine::start(refusing).await.unwrap();
    wait_until("the refusing run to read the topic", || {
        let text = fxflow_engine::metrics::install_recorder().render();
        counter_value(
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
    let stored = recorded::<Ev>("stored");
    let running = fxflow_engine::start(storing).await.unwrap();
    wait_until("all 50 re-delivered", || stored.lock().unwrap().len() >= 50).await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        *stored.lock().unwrap(),
        (0..50).map(reading).collect::<Vec<_>>(),
        "every event, in order"
    );
    assert_eq!(committed(&brokers, "g", "in", 1), vec![Some(50)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_go_to_the_error_output_and_are_committed() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).unwrap();
    let messages = vec![
        encoded(&reading(0)),
        (None, br#"{"v":1,"kind":"Reading","key":"no-seq"}"#.to_vec()),
        (None, b"\xff\xfe not json at all".to_vec()),
        (None, br#"{"v":7,"kind":"Reading"}"#.to_vec()),
        encoded(&Ev::Command { id: "c".into() }), // decodes, but is not a declared kind
        encoded(&reading(1)),
    ];
    produce(&brokers, "in", messages).await;

    let spec = pipeline(
        "dlq",
        &brokers,
        r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "d", kinds: ["Reading"], commit_interval: "100ms"),
           "good": Record(inputs: ["in"], probe: "dlq-good"),
           "bad": Record(inputs: ["in.errors"], probe: "dlq-bad"),"#,
    );
    let (good, bad) = (recorded::<Ev>("dlq-good"), recorded::<Ev>("dlq-bad"));
    let running = fxflow_engine::start(spec).await.unwrap();
    wait_until("2 good and 4 dead letters", || {
        good.lock().unwrap().len() == 2 && bad.lock().unwrap().len() == 4
    })
    .await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    assert_eq!(*good.lock().unwrap(), vec![reading(0), reading(1)]);
    let letters: Vec<(String, String, String, Option<String>)> = bad
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            Ev::DeadLetter {
                stage,
                reason,
                error,
                raw,
            } => (stage.clone(), reason.clone(), error.clone(), raw.clone()),
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect();
    let reasons: Vec<&str> = letters.iter().map(|(_, reason, _, _)| reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["decode_failed", "decode_failed", "decode_failed", "unexpected_kind"]
    );
    for ((stage, _, error, raw), offset) in letters.iter().zip(1..) {
        assert_eq!(stage, "in");
        assert!(error.starts_with(&format!("in[0]@{offset}: ")), "{error}");
        assert!(raw.is_some(), "the original bytes travel with the letter");
    }
    assert!(letters[0].3.as_deref().unwrap().contains("no-seq"));
    assert!(letters[2].2.contains("version 7"), "{}", letters[2].2);
    assert_eq!(
        committed(&brokers, "d", "in", 1),
        vec![Some(6)],
        "bad messages are not retried forever"
    );
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
async fn the_sink_keys_messages_carries_the_ingest_time_and_adds_a_content_type_header_only_when_asked() {
    let before = fxflow_engine::IngestTime::now().as_micros();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("plain", 1, 1).unwrap();
    cluster.create_topic("labelled", 1, 1).unwrap();
    let spec = pipeline(
        "sink-headers",
        &brokers,
        r#""emit": Emit(count: 3),
           "plain": KafkaSink(inputs: ["emit"], resource: "kafka", topic: "plain"),
           "labelled": KafkaSink(inputs: ["emit"], resource: "kafka", topic: "labelled", content_type_header: true),"#,
    );
    fxflow_engine::start(spec).await.unwrap().wait().await.unwrap();
    let plain = read_all(&brokers, "plain", 3);
    let labelled = read_all(&brokers, "labelled", 3);
    assert_eq!(plain.len(), 3, "{plain:?}");
    assert_eq!(labelled.len(), 3, "{labelled:?}");
    let after = fxflow_engine::IngestTime::now().as_micros();
    for ((key, payload, headers), (_, labelled_payload, labelled_headers)) in plain.iter().zip(&labelled) {
        assert_eq!(key.as_deref(), Some("k0"), "keyed by the event's key");
        assert!(payload.starts_with(r#"{"v":1,"kind":"Reading""#), "{payload}");
        // The one header by default: when the event entered the pipeline (the Emit source's send).
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers[0].0, fxflow_engine::kafka::INGEST_TIME_HEADER);
        let ingested: u64 = headers[0].1.parse().unwrap();
        assert!(
            (before..=after).contains(&ingested),
            "{before} <= {ingested} <= {after}"
        );
        assert_eq!(payload, labelled_payload);
        assert_eq!(labelled_headers.len(), 2, "{labelled_headers:?}");
        assert_eq!(labelled_headers[0].0, fxflow_engine::kafka::INGEST_TIME_HEADER);
        assert_eq!(
            labelled_headers[1],
            ("content-type".to_owned(), Codec::Json.content_type().to_owned())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_source_is_processed_before_the_other_sources_start() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("commands", 1, 1).unwrap();
    cluster.create_topic("readings", 1, 1).unwrap();
    // A long changelog; without `bootstrap` the readings, read at once, would overtake it.
    produce(
        &brokers,
        "commands",
        (0..20_000).map(|i| encoded(&Ev::Command { id: format!("c{i}") })),
    )
    .await;
    produce(&brokers, "readings", (0..8).map(|i| encoded(&reading(i)))).await;
    let stages = r#""commands": KafkaSource(resource: "kafka", topics: ["commands"], kinds: ["Command"], bootstrap: true),
        "readings": KafkaSource(resource: "kafka", topics: ["readings"], group: "bootstrap", assignment: AllPartitions,
            kinds: ["Reading"], commit_interval: "100ms"),
        "store": Record(inputs: ["commands", "readings"], probe: "bootstrap"),"#;
    let running = fxflow_engine::start(pipeline("bootstrap", &brokers, stages))
        .await
        .unwrap();
    wait_until("the readings to be committed", || {
        committed(&brokers, "bootstrap", "readings", 1) == vec![Some(8)]
    })
    .await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    let stored = recorded::<Ev>("bootstrap").lock().unwrap().clone();
    let first_reading = stored
        .iter()
        .position(|e| matches!(e, Ev::Reading { .. }))
        .expect("readings stored");
    assert_eq!(
        first_reading, 20_000,
        "every command was stored before the first reading"
    );
    assert_eq!(stored.len(), 20_008);
}

/// `Partition` framing: a write goes out as one message per partition (at most
/// `max_events` each; a write is what the sink's `batch` gathers), and a
/// `KafkaSource` reads back every event, each key in its order, committing every
/// message — in JSON and in binary frames (the source tells them apart itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_framing_batches_messages_and_keeps_every_keys_order() {
    framed_round_trip("Json").await;
    framed_round_trip("Binary").await;
}

async fn framed_round_trip(codec: &str) {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("framed", 4, 1).unwrap();
    let writer = pipeline(
        &format!("framing-writer-{codec}"),
        &brokers,
        &format!(
            r#""emit": Emit(count: 2800, keys: 28, per_send: 28),
           "truth": Record(inputs: ["emit"], probe: "framing-truth-{codec}"),
           "publish": KafkaSink(inputs: ["emit"], resource: "kafka", topic: "framed", framing: Partition(max_events: 50),
               codec: {codec}, batch: (max_events: 2800, max_wait: "200ms")),"#
        ),
    );
    fxflow_engine::start(writer).await.unwrap().wait().await.unwrap();
    let truth = recorded::<Ev>(&format!("framing-truth-{codec}"))
        .lock()
        .unwrap()
        .clone();
    assert_eq!(truth.len(), 2_800);

    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let messages: i64 = (0..4)
        .map(|p| {
            consumer
                .fetch_watermarks("framed", p, Duration::from_secs(5))
                .unwrap()
                .1
        })
        .sum();
    assert!(
        messages * 10 < truth.len() as i64,
        "{messages} messages for {} events: not batched",
        truth.len()
    );
    // (read back as lossy text: a binary frame starts with a NUL byte, JSON with its version)
    let (_, payload, _) = read_all(&brokers, "framed", 1).remove(0);
    let written = if payload.starts_with('\0') {
        "Binary"
    } else if payload.starts_with(r#"{"v":1,"events":["#) {
        "Json"
    } else {
        "?"
    };
    assert_eq!(written, codec, "{codec} frames on the topic");

    let reader = pipeline(
        &format!("framing-reader-{codec}"),
        &brokers,
        &format!(
            r#""in": KafkaSource(resource: "kafka", topics: ["framed"], group: "framing", kinds: ["Reading"], commit_interval: "100ms"),
           "store": Record(inputs: ["in"], probe: "framing-read-{codec}"),"#
        ),
    );
    let read = recorded::<Ev>(&format!("framing-read-{codec}"));
    let running = fxflow_engine::start(reader).await.unwrap();
    wait_until("every event read back", || read.lock().unwrap().len() >= truth.len()).await;
    let committed_total = || -> i64 {
        committed(&brokers, "framing", "framed", 4)
            .into_iter()
            .map(|o| o.unwrap_or(0))
            .sum()
    };
    // The periodic commits (every 100 ms) reach the end while it runs, not only the final one.
    wait_until("every message committed", || committed_total() == messages).await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    let got = read.lock().unwrap().clone();
    assert_eq!(got.len(), truth.len(), "nothing lost or read twice");
    let by_key = |events: &[Ev]| {
        let mut keys: HashMap<String, Vec<u64>> = HashMap::new();
        for event in events {
            if let Ev::Reading { key, seq } = event {
                keys.entry(key.clone()).or_default().push(*seq);
            }
        }
        keys
    };
    assert_eq!(by_key(&got), by_key(&truth), "every key's events, in order");
    assert_eq!(committed_total(), messages, "every message committed");
}

/// A reload that changes a `KafkaSource`: the old consumer finishes and
/// commits what it read before its new version joins the group, so the sink
/// gets every message once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_source_commits_what_it_finished_before_its_new_version_reads() {
    // RUST_LOG=info shows the consumers' hand-over.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).unwrap();
    let total = 2_000u64;
    produce(&brokers, "in", (0..total).map(|i| encoded(&Ev::reading("k", i)))).await;
    let version = |max_batch: u32| {
        pipeline(
            "reload-source",
            &brokers,
            &format!(
                r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "reload", kinds: ["Reading"], max_batch: {max_batch},
                    commit_interval: "100ms", options: {{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}),
                   "store": Record(inputs: ["in"], probe: "reload-source", delay_ms: 1, buffer: (capacity: 50)),"#
            ),
        )
    };
    let stored = recorded::<Ev>("reload-source");
    let mut running = fxflow_engine::start(version(10)).await.unwrap();
    wait_until("the first events stored", || stored.lock().unwrap().len() >= 200).await;
    let report = running.reload(version(50)).await.unwrap();
    assert_eq!(report.replaced, ["in"]);
    assert!(
        stored.lock().unwrap().len() < total as usize / 2,
        "reloaded while messages were still to read"
    );
    wait_until("every message stored and committed", || {
        stored.lock().unwrap().len() >= total as usize && committed(&brokers, "reload", "in", 1) == vec![Some(2_000)]
    })
    .await;
    // A sentinel, not a sleep: the one partition is read in order, so once a message produced
    // now is stored, any re-read of older ones (a duplicate) has been stored before it.
    produce(&brokers, "in", std::iter::once(encoded(&Ev::reading("k", total)))).await;
    wait_until("the sentinel stored", || stored.lock().unwrap().len() > total as usize).await;
    running.stop(Duration::from_secs(30)).await.unwrap();
    let seqs: Vec<u64> = stored
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            Ev::Reading { seq, .. } => *seq,
            other => panic!("{other:?}"),
        })
        .collect();
    let repeated: Vec<(usize, u64)> = seqs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] != w[0] + 1)
        .map(|(i, w)| (i, w[1]))
        .collect();
    assert_eq!(
        seqs,
        (0..=total).collect::<Vec<_>>(),
        "every message once, in order, across the reload, then the sentinel (breaks at {repeated:?})"
    );
}
