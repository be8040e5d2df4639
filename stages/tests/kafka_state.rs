//! The FX stages' state in compacted Kafka topics (`Alert` and `Candles` with
//! `state:`), against librdkafka's mock cluster: a restart or a rebalance
//! continues exactly. The Kafka transport itself is tested in the engine
//! (`engine/tests/kafka_mock.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fxflow_engine::testkit::kafka::{
    committed, encoded, kafka_pipeline, mock_cluster, produce, produce_to, recorded, wait_until, RecordConfig,
};
use fxflow_engine::Registry;
use fxflow_stages::fx::{FxEvent, Quote, SourceName};

/// Events a `Record` sink stored.
type Probe = Arc<Mutex<Vec<FxEvent>>>;

fn registry() -> Registry<FxEvent> {
    let mut registry = fxflow_stages::registry();
    registry.stage::<RecordConfig>("Record");
    registry
}

fn pipeline(name: &str, brokers: &str, stages: &str) -> fxflow_engine::PipelineSpec<FxEvent> {
    kafka_pipeline(&registry(), name, brokers, stages)
}

/// Step `i`: EUR/USD on even steps, USD/JPY on odd ones, one second apart, rising.
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
    let cluster = mock_cluster();
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
            wait_until("every rate committed", || {
                committed(&brokers, "alerting", "rates", 1) == vec![Some(end)]
            })
            .await;
            running.stop(Duration::from_secs(30)).await.unwrap();
            recorded::<FxEvent>(name)
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
    let cluster = mock_cluster();
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
    let a = recorded::<FxEvent>("handover-a");
    let worker_a = fxflow_engine::start(pipeline("handover-a", &brokers, &body("handover-a")))
        .await
        .unwrap();
    wait_until("A to commit both partitions", || {
        committed(&brokers, "alerting-2", "rates-2", 2) == vec![Some(10), Some(10)]
    })
    .await;
    let mut first = firings(&a);
    first.sort();
    assert_eq!(first, vec![("eur-above".to_string(), 6), ("jpy-above".to_string(), 5)]);
    // B joins; one partition moves to it (cooperative rebalance: A saves and commits first).
    let b = recorded::<FxEvent>("handover-b");
    let worker_b = fxflow_engine::start(pipeline("handover-b", &brokers, &body("handover-b")))
        .await
        .unwrap();
    wait_until("B to be assigned a partition", || {
        fxflow_engine::metrics::install_recorder()
            .render()
            .lines()
            .any(|l| l.starts_with("fxflow_kafka_consumer_lag") && l.contains(r#"pipeline="handover-b""#))
    })
    .await;
    produce_by_pair(&brokers, "rates-2", 20..40).await;
    wait_until("A and B to commit everything", || {
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
    let cluster = mock_cluster();
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
            wait_until("every quote committed", || {
                committed(&brokers, "candling", "rates-c", 2) == vec![Some(end), Some(end)]
            })
            .await;
            running.stop(Duration::from_secs(30)).await.unwrap();
            recorded::<FxEvent>(name)
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
