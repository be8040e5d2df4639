//! The worker chain over a real Apache Kafka broker (KRaft, one node, started by
//! `Broker::start` from the Maven jars, on the same 2 cores), next to the broker's
//! own ceiling measured in the same run.
//!
//! `FXFLOW_PROFILE=release cargo bench -p fxflow-tests --bench workers -- [--phases=ceiling,chain,latency,recovery,peer]`
//!
//! 1. `ceiling`: a plain rdkafka producer writes N rate-sized messages (the size
//!    of one encoded CrossRate) to an 8-partition topic, then a plain consumer
//!    reads them back: messages/s each way.
//! 2. `chain`: ingest (synthetic, 4 providers, as fast as possible) → process →
//!    alerts as three OS processes; snapshots/s, quotes/s and broker messages/s
//!    until the alerts worker has read every cross.
//! 3. `latency`: ingest at `--rate` snapshots/s; alert rules every `--rule-step`
//!    pips around EUR/USD fire many times a second; p50/p99 of (arrival on
//!    fx.alerts − the quote's own timestamp).
//! 4. `recovery`: 3 process workers in their group at `--recovery-rate`
//!    snapshots/s; one is `kill -9`ed; the time until the alerts worker's input
//!    rate is back (its 1-second rate at ≥ 90% of the offered rate again after
//!    the dip), and until it has caught up with everything offered.
//! 5. `peer`: the same job in Quix Streams (`tests/benches/quix_peer.py`, Python
//!    in `.cache/peer-venv` from `tests/benches/requirements-peer.txt`) on the
//!    same broker: snapshots → 28 crosses, one message each → a threshold check.

use std::time::{Duration, Instant};

use fxflow_tests::{free_port, fxflow, http_get, wait_for, Broker, Worker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

const RATE_MESSAGE: &str = r#"{"v":1,"kind":"CrossRate","pair":"GBP/JPY","bid":"210.69800900000000000000000000","ask":"210.69800900000000000000000000","ts":"2026-10-30T00:00:00Z","source":"ecb","via":"EUR"}"#;

fn main() {
    // A fresh broker per phase, so one phase's topics and groups do not weigh on the next.
    println!("broker: Apache Kafka (KRaft, one node, same box), one fresh broker per phase");
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
        .unwrap_or("ceiling,chain,latency,recovery,peer")
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
    if phases.contains("recovery") {
        // As an orchestrator restarts a crashed container (static membership: same name), then
        // a worker that stays down (its partitions move after the session timeout).
        for restart in [true, false] {
            let (dir, broker) = fresh();
            recovery(
                dir.path(),
                &broker.address(),
                arg("recovery-rate", 500) as u32,
                arg("seconds", 15),
                restart,
            );
        }
    }
    if phases.contains("peer") {
        let (dir, broker) = fresh();
        peer(
            dir.path(),
            &broker.address(),
            arg("snapshots", 2_000),
            arg("rate", 1_000) as u32,
            arg("seconds", 15),
        );
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

/// The workers' environment: the shipped defaults unless this process sets FXFLOW_ASSIGNMENT,
/// FXFLOW_LINGER or FXFLOW_RATES_FRAMING (inherited) to compare.
fn env(brokers: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", brokers.to_owned()),
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}")),
        ("RUST_LOG", "warn".to_owned()),
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

/// kill -9 of one of three process workers at a steady input rate: how long until the group's
/// output is back.
fn recovery(dir: &std::path::Path, brokers: &str, rate: u32, seconds: usize, restart: bool) {
    let root = fxflow_tests::workspace().join("pipelines");
    let ap = free_port();
    let mut processes: Vec<(Worker, u16)> = (0..3)
        .map(|i| {
            let port = free_port();
            let mut env = env(brokers, port);
            env.push(("FXFLOW_INSTANCE", format!("process-{i}")));
            // The assignments are logged at info: the victim is chosen from them.
            env.push(("RUST_LOG", "warn,fxflow_engine::kafka::source=info".to_owned()));
            let worker = Worker::start(&format!("process-{i}"), &root.join("process.ron"), &env, dir);
            (worker, port)
        })
        .collect();
    let mut alerts = Worker::start("alerts", &root.join("alerts.ron"), &env(brokers, ap), dir);
    for port in processes.iter().map(|(_, p)| *p).chain([ap]) {
        wait_for("workers up", Duration::from_secs(60), || {
            http_get(port, "/ready").ok().filter(|r| r.0 == 200)
        });
    }
    std::thread::sleep(Duration::from_secs(5)); // three members assigned
                                                // The synthetic sources' keys land on partitions 1 and 2 of fx.snapshots (CRC-32 of the
                                                // source name, modulo 4): kill a worker that holds one, or the kill would cost nothing.
    let victim = processes
        .iter()
        .position(|(w, _)| {
            let logs = w.logs();
            logs.contains("\"fx.snapshots[1]\"") || logs.contains("\"fx.snapshots[2]\"")
        })
        .unwrap_or(0);
    let total = rate as usize * (seconds + 20);
    let ingest_file = synthetic_ingest(dir, brokers, total, rate / 4);
    let mut ingest = Worker::start("ingest", &ingest_file, &env(brokers, free_port()), dir);
    let read = || metric(ap, "fxflow_stage_sent_events_total{pipeline=\"alerts\",stage=\"rates\"");
    let offered = f64::from(rate) * 28.0; // crosses per second
    let started = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new(); // (seconds since start, crosses read)
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(seconds as u64 + 40) {
        let t = started.elapsed().as_secs_f64();
        samples.push((t, read()));
        if killed_at.is_none() && t >= 8.0 {
            processes[victim].0.kill9();
            if restart {
                processes[victim].0.restart();
            }
            killed_at = Some(t);
        }
        if samples.last().is_some_and(|s| s.1 >= (total / 4 * 4 * 28) as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_at = killed_at.unwrap_or(0.0);
    if std::env::var_os("FXFLOW_BENCH_DEBUG").is_some() {
        let assigned: Vec<usize> = processes
            .iter()
            .map(|(w, _)| w.logs().matches("Partitions assigned").count())
            .collect();
        eprintln!("victim {victim}; assignment lines per worker {assigned:?}");
        for w in processes.iter().map(|(w, _)| w) {
            for line in w
                .logs()
                .lines()
                .filter(|l| l.contains("Partitions assigned") || l.contains("revoked"))
            {
                eprintln!("  {}: {line}", w.name);
            }
        }
        let mut last = 0.0;
        for &(t, n) in &samples {
            if t - last >= 1.0 {
                eprintln!("  t={t:.1} read={n}");
                last = t;
            }
        }
    }
    // The 1-second rate at each sample, from the sample a second before.
    let rate_at = |i: usize| -> Option<f64> {
        let (t, n) = samples[i];
        let j = samples.iter().rposition(|s| s.0 <= t - 1.0)?;
        Some((n - samples[j].1) / (t - samples[j].0))
    };
    let before: Vec<f64> = (0..samples.len())
        .filter(|&i| samples[i].0 > 4.0 && samples[i].0 < killed_at)
        .filter_map(rate_at)
        .collect();
    let steady = before.iter().sum::<f64>() / before.len().max(1) as f64;
    let after: Vec<usize> = (0..samples.len()).filter(|&i| samples[i].0 > killed_at).collect();
    let dip = after
        .iter()
        .copied()
        .find(|&i| rate_at(i).is_some_and(|r| r < 0.9 * steady));
    let back = dip.and_then(|d| {
        after
            .iter()
            .copied()
            .find(|&i| i > d && rate_at(i).is_some_and(|r| r >= 0.9 * steady))
    });
    // Caught up: everything read at the kill plus what was offered since (99%), after the dip.
    let at_kill = after.first().map_or(0.0, |&i| samples[i.saturating_sub(1)].1);
    let caught_up = dip.and_then(|d| {
        after
            .iter()
            .copied()
            .find(|&i| i > d && samples[i].1 >= at_kill + offered * (samples[i].0 - killed_at) * 0.99)
    });
    let show = |i: Option<usize>| i.map_or("never".to_owned(), |i| format!("{:.1} s", samples[i].0 - killed_at));
    println!(
        "recovery, 3 process workers (static members) at {rate} snapshots/s ({offered:.0} crosses/s offered, {steady:.0}/s read before): \
         kill -9 of one holding input partitions, {}; output below 90% after {}, back at ≥ 90% {} after the kill, caught up with the offered stream {} after",
        if restart { "restarted at once" } else { "not restarted" },
        show(dip),
        show(back),
        show(caught_up)
    );
    let _ = ingest.wait(Duration::from_secs(60));
    for (mut worker, _) in processes.drain(..) {
        worker.kill9();
    }
    alerts.kill9();
}

/// The peer: the same job in Quix Streams on the same broker. Throughput: N snapshots are
/// written to `fx.snapshots` first, then our process + alerts workers read them all, then the
/// peer does (each timed from its first input to its last output). Latency: the peer reads
/// `--rate` snapshots/s from our ingest worker while they are written (as our `latency` phase).
fn peer(dir: &std::path::Path, brokers: &str, snapshots: usize, rate: u32, seconds: usize) {
    let python = fxflow_tests::workspace().join(".cache/peer-venv/bin/python");
    assert!(
        python.exists(),
        "the peer's Python: python3 -m venv .cache/peer-venv && .cache/peer-venv/bin/pip install -r tests/benches/requirements-peer.txt"
    );
    let script = fxflow_tests::workspace().join("tests/benches/quix_peer.py");
    let run_peer = |input: &str, count: usize, group: &str| {
        let output = std::process::Command::new(&python)
            .arg(&script)
            .args(["--brokers", brokers, "--input", input, "--output", "peer.crosses"])
            .args([
                "--alerts",
                "peer.alerts",
                "--count",
                &count.to_string(),
                "--group",
                group,
            ])
            .arg("--state-dir")
            .arg(dir.join(format!("quix-state-{group}")))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report = String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        report
    };

    let ingest_file = synthetic_ingest(dir, brokers, snapshots, 0);
    let mut ingest = Worker::start("ingest-peer", &ingest_file, &env(brokers, free_port()), dir);
    assert!(ingest.wait(Duration::from_secs(300)).success());
    let count = snapshots / 4 * 4;
    let crosses = (count * 28) as f64;

    // Ours on the backlog: from the process worker's first snapshot to the alerts worker's last cross.
    let root = fxflow_tests::workspace().join("pipelines");
    let (pp, ap) = (free_port(), free_port());
    let mut alerts = Worker::start("alerts-backlog", &root.join("alerts.ron"), &env(brokers, ap), dir);
    wait_for("the alerts worker up", Duration::from_secs(60), || {
        http_get(ap, "/ready").ok().filter(|r| r.0 == 200)
    });
    let mut process = Worker::start("process-backlog", &root.join("process.ron"), &env(brokers, pp), dir);
    let first = wait_for("the process worker's first snapshot", Duration::from_secs(60), || {
        (metric(
            pp,
            "fxflow_stage_received_events_total{pipeline=\"process\",stage=\"crosses\"",
        ) > 0.0)
            .then(Instant::now)
    });
    wait_for(
        "the alerts worker to read every cross",
        Duration::from_secs(600),
        || (metric(ap, "fxflow_stage_sent_events_total{pipeline=\"alerts\",stage=\"rates\"") >= crosses).then_some(()),
    );
    let ours = first.elapsed().as_secs_f64();
    process.kill9();
    alerts.kill9();
    println!(
        "backlog of {count} snapshots on fx.snapshots, ours (process + alerts workers): {:.0} snapshots/s = {:.0} crosses/s",
        count as f64 / ours,
        crosses / ours
    );
    println!(
        "backlog of {count} snapshots on fx.snapshots, peer (Quix Streams, one process): {}",
        run_peer("fx.snapshots", count, "quix-peer")
    );

    // Latency: the peer next to a live ingest at `rate`.
    let total = rate as usize * seconds / 4 * 4;
    let live = dir.join("ingest-peer-live.ron");
    let text = std::fs::read_to_string(synthetic_ingest(dir, brokers, total, rate / 4))
        .unwrap()
        .replace("fx.snapshots", "peer.live")
        .replace(
            &format!(r#"Kafka(brokers: "{brokers}")"#),
            &format!(r#"Kafka(brokers: "{brokers}", topics: {{ "peer.live": (partitions: 8) }})"#),
        );
    std::fs::write(&live, text).unwrap();
    let created = fxflow(&["topics", "create", "--resource", "kafka", live.to_str().unwrap()])
        .env("KAFKA_BROKERS", brokers)
        .env("FXFLOW_TELEMETRY", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let mut ingest = Worker::start("ingest-peer-live", &live, &env(brokers, free_port()), dir);
    let report = run_peer("peer.live", total, "quix-peer-live");
    let _ = ingest.wait(Duration::from_secs(60));
    println!("peer (Quix Streams) at {rate} snapshots/s for {seconds} s, latency from the snapshot's write: {report}");
}
