//! The worker chain over a real Kafka-protocol broker (tansu, SQLite storage),
//! next to the broker's own ceiling measured in the same run.
//!
//! `FXFLOW_PROFILE=release cargo bench -p fxflow-tests --bench workers`
//!
//! 1. Ceiling: a plain rdkafka producer writes N rate-sized messages (the size
//!    of one encoded CrossRate) to an 8-partition topic, then a plain consumer
//!    reads them back: messages/s each way.
//! 2. Chain: ingest (synthetic, 4 providers, as fast as possible) → process →
//!    alerts as three OS processes; snapshots/s, quotes/s and broker messages/s
//!    until the alerts worker has read every cross.
//! 3. Latency: ingest at `--rate` snapshots/s (default 200: 1,000/s is 29,000 broker
//!    messages/s, above tansu's ceiling here); alert rules at every pip around
//!    EUR/USD fire many times a second; p50/p99 of (arrival on fx.alerts −
//!    the quote's own timestamp).

use std::time::{Duration, Instant};

use fxflow_tests::{free_port, fxflow, http_get, wait_for, Broker, Worker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

const RATE_MESSAGE: &str = r#"{"v":1,"kind":"CrossRate","pair":"GBP/JPY","bid":"210.69800900000000000000000000","ask":"210.69800900000000000000000000","ts":"2026-10-30T00:00:00Z","source":"ecb","via":"EUR"}"#;

fn main() {
    // A fresh broker per phase: tansu 0.6's SQLite storage has failed ("UnableToSend") after a
    // few hundred thousand messages in one run here.
    println!("broker: tansu 0.6.0, SQLite storage, one fresh broker per phase");
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}="))?.parse().ok())
            .unwrap_or(default)
    };
    // `--phases=ceiling,chain,latency` (default: all three, in that order).
    let phases = args
        .iter()
        .find_map(|a| a.strip_prefix("--phases="))
        .unwrap_or("ceiling,chain,latency")
        .to_owned();
    let ceiling_rates = phases.contains("ceiling").then(|| {
        let (dir, broker) = fresh();
        let rates = ceiling(&broker.address(), arg("ceiling", 60_000));
        drop(dir);
        rates
    });
    if phases.contains("chain") {
        let (dir, broker) = fresh();
        let chain_rate = chain(dir.path(), &broker.address(), arg("snapshots", 2_000));
        if let Some((produce, consume)) = ceiling_rates {
            // Every chain message is produced once and consumed once; so is every ceiling
            // message, but in two separate runs: the broker's rate for both is 1/(1/P + 1/C).
            let both = 1.0 / (1.0 / produce + 1.0 / consume);
            println!(
                "chain / ceiling: {chain_rate:.0} / {both:.0} messages produced and consumed per second = {:.0}%",
                100.0 * chain_rate / both
            );
        }
    }
    if phases.contains("latency") {
        let (dir, broker) = fresh();
        latency(
            dir.path(),
            &broker.address(),
            arg("rate", 200) as u32,
            arg("seconds", 15),
            arg("rule-step", 10) as u32,
        );
    }
}

fn fresh() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let created = fxflow(&["topics", "create", "--resource", "kafka"])
        .args(["pipelines/ingest.ron", "pipelines/process.ron", "pipelines/alerts.ron"])
        .env("KAFKA_BROKERS", broker.address())
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    (dir, broker)
}

/// Returns (produced, consumed) messages per second.
fn ceiling(brokers: &str, n: usize) -> (f64, f64) {
    let file = std::env::temp_dir().join(format!("ceiling-{}.ron", std::process::id()));
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "ceiling", resources: {{ "kafka": Kafka(brokers: "{brokers}",
                topics: {{ "bench.ceiling": (partitions: 8) }}) }},
                stages: {{ "s": Synthetic(count: 1), "n": Null(inputs: ["s"]) }})"#
        ),
    )
    .unwrap();
    let out = fxflow(&["topics", "create", "--resource", "kafka", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let started = Instant::now();
    for i in 0..n {
        let key = format!("pair-{}", i % 28);
        loop {
            match producer.send(BaseRecord::to("bench.ceiling").key(&key).payload(RATE_MESSAGE)) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let produce = started.elapsed();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-ceiling")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["bench.ceiling"]).unwrap();
    let started = Instant::now();
    let mut read = 0;
    let mut first = None;
    while read < n && started.elapsed() < Duration::from_secs(300) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            read += usize::from(m.payload().is_some());
        }
    }
    let consume = first.map(|f| f.elapsed()).unwrap_or(started.elapsed());
    let (produce, consume) = (n as f64 / produce.as_secs_f64(), read as f64 / consume.as_secs_f64());
    println!(
        "ceiling, plain rdkafka, {n} messages of {} bytes: produce {produce:.0} msg/s, consume {consume:.0} msg/s ({read} read)",
        RATE_MESSAGE.len(),
    );
    (produce, consume)
}

fn metric(port: u16, line_start: &str) -> f64 {
    let Ok((_, body)) = http_get(port, "/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn env(brokers: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}")),
        ("RUST_LOG", "warn".to_owned()),
        // The pipelines' default (consumer groups); `FXFLOW_ASSIGNMENT=AllPartitions` to compare.
        (
            "FXFLOW_ASSIGNMENT",
            std::env::var("FXFLOW_ASSIGNMENT").unwrap_or_else(|_| "Subscribe".into()),
        ),
        (
            "FXFLOW_LINGER",
            std::env::var("FXFLOW_LINGER").unwrap_or_else(|_| "5ms".into()),
        ),
    ]
}

fn synthetic_ingest(dir: &std::path::Path, brokers: &str, count: usize, rate: u32) -> std::path::PathBuf {
    let sources: Vec<String> = ["alpha", "bravo", "charlie", "delta"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                r#""{name}": Synthetic(source: "{name}", seed: {i}, count: {}, rate: {rate}),"#,
                count / 4
            )
        })
        .collect();
    let file = dir.join(format!("ingest-{rate}.ron"));
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "ingest", telemetry: (address: "${{FXFLOW_TELEMETRY}}"),
                resources: {{ "kafka": Kafka(brokers: "{brokers}") }},
                stages: {{ {} "publish": KafkaSink(inputs: ["alpha", "bravo", "charlie", "delta"],
                    resource: "kafka", topic: "fx.snapshots") }})"#,
            sources.join(" ")
        ),
    )
    .unwrap();
    file
}

/// Returns the messages produced (and consumed) per second: snapshots + crosses.
fn chain(dir: &std::path::Path, brokers: &str, snapshots: usize) -> f64 {
    let root = fxflow_tests::workspace().join("pipelines");
    let (pp, ap, ip) = (free_port(), free_port(), free_port());
    let mut process = Worker::start("process", &root.join("process.ron"), &env(brokers, pp), dir);
    let mut alerts = Worker::start("alerts", &root.join("alerts.ron"), &env(brokers, ap), dir);
    for port in [pp, ap] {
        wait_for("workers up", Duration::from_secs(60), || {
            http_get(port, "/ready").ok().filter(|r| r.0 == 200)
        });
    }
    std::thread::sleep(Duration::from_secs(3)); // group assignment
    let ingest_file = synthetic_ingest(dir, brokers, snapshots, 0);
    let started = Instant::now();
    let mut ingest = Worker::start("ingest", &ingest_file, &env(brokers, ip), dir);
    let crosses = (snapshots / 4 * 4 * 28) as f64;
    wait_for(
        "the alerts worker to read every cross",
        Duration::from_secs(600),
        || (metric(ap, "fxflow_stage_sent_events_total{pipeline=\"alerts\",stage=\"rates\"") >= crosses).then_some(()),
    );
    let elapsed = started.elapsed().as_secs_f64();
    let snaps = (snapshots / 4 * 4) as f64;
    println!(
        "chain ingest→process→alerts, {snaps} snapshots (7 quotes, 28 crosses each): {:.0} snapshots/s = {:.0} quotes/s = {:.0} crosses/s; broker messages {:.0}/s",
        snaps / elapsed,
        snaps * 7.0 / elapsed,
        crosses / elapsed,
        (snaps + 2.0 * crosses) / elapsed,
    );
    let _ = ingest.wait(Duration::from_secs(60));
    process.kill9();
    alerts.kill9();
    (snaps + crosses) / elapsed
}

fn latency(dir: &std::path::Path, brokers: &str, rate: u32, seconds: usize, rule_step: u32) {
    // Rules every `rule_step` pips from 1.0900 to 1.1400 in both directions: a random walk
    // crosses one every few steps (every pip would publish ~50 alerts per snapshot and turn
    // this into a broker-throughput run).
    let rules: Vec<String> = (10_900..=11_400)
        .step_by(rule_step.max(1) as usize)
        .flat_map(|t| {
            let t = format!("1.{:04}", t - 10_000);
            [
                format!(
                    r#"(id: "up-{t}", pair: "EUR/USD", condition: CrossingUp({t}), trigger: Every(rearm: 0.0001)),"#
                ),
                format!(
                    r#"(id: "down-{t}", pair: "EUR/USD", condition: CrossingDown({t}), trigger: Every(rearm: 0.0001)),"#
                ),
            ]
        })
        .collect();
    let alerts_file = dir.join("alerts-latency.ron");
    std::fs::write(
        &alerts_file,
        format!(
            r#"Pipeline(name: "alerts", telemetry: (address: "${{FXFLOW_TELEMETRY}}"),
                resources: {{ "kafka": Kafka(brokers: "{brokers}") }},
                stages: {{
                    "rates": KafkaSource(resource: "kafka", topics: ["fx.rates"], group: "latency-alerts", kinds: ["CrossRate"],
                        auto_offset_reset: Latest, fetch_wait: "${{KAFKA_FETCH_WAIT:-10ms}}"),
                    "alerts": Alert(inputs: ["rates"], rules: [{}]),
                    "publish": KafkaSink(inputs: ["alerts"], resource: "kafka", topic: "fx.alerts", linger: "1ms"),
                }})"#,
            rules.join("\n")
        ),
    )
    .unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "latency-probe")
        // The same as the workers' sources (KafkaSource `fetch_wait`), so the probe adds no more than a hop.
        .set(
            "fetch.wait.max.ms",
            std::env::var("KAFKA_FETCH_WAIT").map_or("10".into(), |w| w.trim_end_matches("ms").to_owned()),
        )
        .set("auto.offset.reset", "latest")
        .create()
        .unwrap();
    consumer.subscribe(&["fx.alerts"]).unwrap();
    let root = fxflow_tests::workspace().join("pipelines");
    let (pp, ap, ip) = (free_port(), free_port(), free_port());
    let mut process_env = env(brokers, pp);
    process_env.push(("FXFLOW_GROUP", "latency-process".into()));
    let mut process = Worker::start("process-latency", &root.join("process.ron"), &process_env, dir);
    let mut alerts = Worker::start("alerts-latency", &alerts_file, &env(brokers, ap), dir);
    for port in [pp, ap] {
        wait_for("workers up", Duration::from_secs(60), || {
            http_get(port, "/ready").ok().filter(|r| r.0 == 200)
        });
    }
    // Let the groups settle and the probe get its partitions before the clock starts.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(8) {
        consumer.poll(Duration::from_millis(100));
    }
    let ingest_file = synthetic_ingest(dir, brokers, rate as usize * seconds, rate / 4);
    let mut ingest = Worker::start("ingest-latency", &ingest_file, &env(brokers, ip), dir);
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds as u64 + 10) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let now = chrono::Utc::now();
            let Some(payload) = m.payload() else { continue };
            let value: serde_json::Value = serde_json::from_slice(payload).unwrap();
            let ts: chrono::DateTime<chrono::Utc> = value["ts"].as_str().unwrap().parse().unwrap();
            samples.push((now - ts).num_microseconds().unwrap_or(i64::MAX));
        }
    }
    samples.sort_unstable();
    let pct = |p: usize| samples.get(samples.len() * p / 100).copied().unwrap_or(0) as f64 / 1000.0;
    // Skip nothing: the first seconds (cold caches, group joins) count too.
    println!(
        "latency quote timestamp → alert on fx.alerts, {rate} snapshots/s for {seconds} s: {} alerts, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        pct(50),
        pct(99),
        samples.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    let _ = ingest.wait(Duration::from_secs(60));
    process.kill9();
    alerts.kill9();
}
