//! The Kafka source in a consumer group on a real Apache Kafka broker
//! (`fxflow_tests::Broker`: the Maven Central jars `scripts/test.sh` fetches).
//!
//! Why not librdkafka's mock cluster, like `kafka_mock.rs`: its group
//! coordinator refuses every commit while a join is pending, which real brokers
//! accept from a member of the current generation, and on a loaded machine it
//! held a member's heartbeat and commit for its whole 5 s join window, so the
//! drain's commit failed and a partition was read twice (3 runs in 8 under
//! load). That tested the mock, not the source.

use std::time::Duration;

use fxflow_engine::testkit::kafka::{
    committed, encoded, kafka_pipeline, produce, recorded, wait_until, wire_registry, WireTestEvent as Ev,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

fn pipeline(name: &str, brokers: &str, stages: &str) -> fxflow_engine::PipelineSpec<Ev> {
    kafka_pipeline(&wire_registry(), name, brokers, stages)
}

async fn create_topic(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_drains_and_commits_before_giving_partitions_up() {
    let dir = tempfile::tempdir().unwrap();
    let broker = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || fxflow_tests::Broker::start(&path)
    })
    .await
    .unwrap();
    let brokers = broker.address();
    create_topic(&brokers, "in", 4).await;
    let total = 400u64;
    produce(
        &brokers,
        "in",
        (0..total).map(|i| encoded(&Ev::reading(&format!("k{i}"), i))),
    )
    .await;

    // Worker A starts alone with a slow sink, so events are in flight when B joins.
    let stages = |probe: &str| {
        format!(
            r#""in": KafkaSource(resource: "kafka", topics: ["in"], group: "r", kinds: ["Reading"], max_batch: 10,
                   options: {{"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}}),
               "store": Record(inputs: ["in"], probe: "{probe}", delay_ms: 20, buffer: (capacity: 10)),"#
        )
    };
    let (a, b) = (recorded::<Ev>("rebalance-a"), recorded::<Ev>("rebalance-b"));
    let worker_a = fxflow_engine::start(pipeline("a", &brokers, &stages("rebalance-a")))
        .await
        .unwrap();
    wait_until("A to start storing", || a.lock().unwrap().len() >= 20).await;
    let worker_b = fxflow_engine::start(pipeline("b", &brokers, &stages("rebalance-b")))
        .await
        .unwrap();
    wait_until("A and B to store every event", || {
        a.lock().unwrap().len() + b.lock().unwrap().len() >= total as usize
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // any duplicate would arrive by now
    worker_a.stop(Duration::from_secs(30)).await.unwrap();
    worker_b.stop(Duration::from_secs(30)).await.unwrap();

    let (a, b) = (a.lock().unwrap().clone(), b.lock().unwrap().clone());
    assert!(!b.is_empty(), "B took partitions over");
    let mut all: Vec<Ev> = a.into_iter().chain(b).collect();
    all.sort_by_key(|e| format!("{e:?}"));
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
