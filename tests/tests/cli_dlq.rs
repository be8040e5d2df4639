//! A user's story: "a provider sent garbage and a bad quote; I find them in the dead letters,
//! filter them, and see exactly what arrived and where it was read" (`fxflow dlq`, on a real
//! Apache Kafka broker, from the topic and from a JSON-lines file).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use fxflow_tests::{fxflow, wait_for, Broker, Worker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// A snapshot whose EUR/USD bid is above its ask (the validation rejects it).
const CROSSED: &str = r#"{"v":1,"kind":"QuoteSnapshot","source":"desk","ts":"2026-12-07T10:00:00Z","base":"EUR","quotes":[{"pair":"EUR/USD","bid":"1.1010","ask":"1.1000","ts":"2026-12-07T10:00:00Z","source":"desk"},{"pair":"EUR/JPY","bid":"160.10","ask":"160.20","ts":"2026-12-07T10:00:00Z","source":"desk"}]}"#;

#[test]
fn dead_letters_keep_the_exact_input_and_its_position_and_are_listed_filtered_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let brokers = broker.address();
    let file = dir.path().join("validate.ron");
    let jsonl = dir.path().join("dlq.jsonl");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(
    name: "validate",
    resources: {{ "kafka": Kafka(brokers: "${{KAFKA_BROKERS}}", topics: {{
        "fx.snapshots": (partitions: 1), "fx.dlq": (partitions: 1) }}) }},
    stages: {{
        "snapshots": KafkaSource(resource: "kafka", topics: ["fx.snapshots"], group: "dlq-test", kinds: ["QuoteSnapshot"]),
        "validate": Enrich(inputs: ["snapshots"]),
        "crosses": CrossRate(inputs: ["validate"]),
        "out": Null(inputs: ["crosses"]),
        "dlq-file": JsonlFile(inputs: ["snapshots.errors", "validate.errors"], path: "{}"),
        "dlq-topic": KafkaSink(inputs: ["snapshots.errors", "validate.errors"], resource: "kafka", topic: "fx.dlq"),
    }},
)"#,
            jsonl.display()
        ),
    )
    .unwrap();
    let created = fxflow(&["topics", "create", "--resource", "kafka", file.to_str().unwrap()])
        .env("KAFKA_BROKERS", &brokers)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // Garbage that is not even UTF-8, with a key and a header; then a crossed quote.
    let garbage: Vec<u8> = vec![0xff, 0x00, b'{', 0xc3, 0x28, b'x'];
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    producer
        .send(BaseRecord::to("fx.snapshots").key("desk").payload(&garbage).headers(
            rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "trace",
                value: Some("abc"),
            }),
        ))
        .unwrap();
    producer
        .send(BaseRecord::to("fx.snapshots").key("desk").payload(CROSSED))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let env = [
        ("KAFKA_BROKERS", brokers.clone()),
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", fxflow_tests::free_port())),
    ];
    let mut worker = Worker::start("validate", &file, &env, dir.path());
    wait_for("two dead letters in the file", Duration::from_secs(60), || {
        (std::fs::read_to_string(&jsonl).unwrap_or_default().lines().count() >= 2).then_some(())
    });
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.logs());

    let dlq = |args: &[&str]| {
        let output = fxflow(&[&["dlq"], args].concat()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let from_topic = ["--brokers", brokers.as_str()];
    let from_file = ["--file", jsonl.to_str().unwrap()];
    for from in [&from_topic[..], &from_file[..]] {
        let listed: Vec<serde_json::Value> = dlq(&[&["list", "--json"], from].concat())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(listed.len(), 2, "{listed:?}");
        let undecodable = &listed
            .iter()
            .find(|l| l["letter"]["reason"] == "decode_failed")
            .unwrap()["letter"];
        assert_eq!(
            STANDARD.decode(undecodable["payload"].as_str().unwrap()).unwrap(),
            garbage,
            "the exact bytes"
        );
        assert_eq!(STANDARD.decode(undecodable["key"].as_str().unwrap()).unwrap(), b"desk");
        let headers = undecodable["headers"].as_array().unwrap();
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "trace" && STANDARD.decode(h[1].as_str().unwrap()).unwrap() == b"abc"),
            "{headers:?}"
        );
        assert_eq!(undecodable["origin"]["topic"], "fx.snapshots");
        assert_eq!(undecodable["origin"]["offset"], 0);
        assert_eq!(undecodable["stage"], "snapshots");
        let crossed = &listed.iter().find(|l| l["letter"]["stage"] == "validate").unwrap()["letter"];
        assert_eq!(
            crossed["origin"]["offset"], 1,
            "a rejected event keeps where its input was read"
        );
        assert!(crossed["event"]["kind"].is_string(), "{crossed}");
        assert!(crossed["at"].is_string());

        // Filters, and the table.
        let only = dlq(&[&["list", "--json", "--stage", "validate"], from].concat());
        assert_eq!(only.lines().count(), 1);
        assert!(dlq(&[&["list", "--json", "--reason", "nope"], from].concat()).is_empty());
        assert!(dlq(&[&["list", "--json", "--since", "2999-01-01T00:00:00Z"], from].concat()).is_empty());
        let table = dlq(&[&["list"], from].concat());
        assert!(table.starts_with("ID"), "{table}");
        assert!(
            table.contains("decode_failed") && table.contains("fx.snapshots[0]@0"),
            "{table}"
        );

        // Show, by the id list printed.
        let id = listed[0]["id"].as_str().unwrap();
        let shown: serde_json::Value = serde_json::from_str(&dlq(&[&["show"], from, &[id]].concat())).unwrap();
        assert_eq!(shown, listed[0]["letter"]);
    }
    let missing = fxflow(&["dlq", "show", "--brokers", &brokers, "fx.dlq[0]@99"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter `fx.dlq[0]@99`"));
}
