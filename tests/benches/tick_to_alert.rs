//! Tick to alert over the worker set, on a real Apache Kafka broker on the same 2 cores, next
//! to the floor of three plain-client hops and to Quix Streams, each measured the same way in
//! one run:
//!
//! `FXFLOW_PROFILE=release cargo bench -p fxflow-tests --bench tick_to_alert -- [--rates=20,1000] [--seconds=20] [--runs=1] [--phases=floor,ours,quix]`
//!
//! A snapshot of 7 quotes (8 currencies, 28 crosses) is stamped with the wall clock and
//! written to the input topic by a plain producer (linger 0). EUR/USD alternates between
//! 1.0990 and 1.1010, and two rules (`CrossingUp(1.1)`, `CrossingDown(1.1)`, `Every`) fire on
//! alternate snapshots: one firing per snapshot. A plain consumer reads the firing back from
//! the output topic; latency = its arrival − the snapshot's own timestamp (`ts`), over every
//! firing of a snapshot stamped after a 3 s warm-up.
//!
//! - `floor`: three plain hops — producer → `floor.a` → relay → `floor.b` → relay → `floor.c`
//!   → consumer; each relay a librdkafka consumer and producer tuned for latency (linger 0,
//!   Nagle off, `acks=all`, idempotent), passing each message on unchanged.
//! - `ours`: the shipped `pipelines/process.ron` and `pipelines/alerts.ron` (one worker each,
//!   consumer groups), `fx.snapshots` → `fx.rates` → `fx.alerts`; the rules arrive as
//!   `AlertRuleChange`s on `fx.alert-rules`, as the API sends them.
//! - `quix`: `tests/benches/quix_peer.py` (Quix Streams, one process: snapshots → 28 crosses
//!   on a topic → a threshold check → alerts on a topic: two broker hops after the input),
//!   rule `EUR/USD>0` (one firing per snapshot); its alerts read back the same way. Needs
//!   `.cache/peer-venv` (see `requirements-peer.txt`); skipped with a note without it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fxflow_tests::{free_port, fxflow, http_get, wait_for, Broker, Worker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

const WARM_UP: Duration = Duration::from_secs(3);
const CURRENCIES: [(&str, &str); 6] = [
    ("GBP", "0.86645"),
    ("AUD", "1.64170"),
    ("NZD", "1.80550"),
    ("CAD", "1.47630"),
    ("CHF", "0.94120"),
    ("JPY", "155.680"),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned))
    };
    let rates: Vec<u32> = arg("rates")
        .unwrap_or_else(|| "20,1000".into())
        .split(',')
        .filter_map(|r| r.parse().ok())
        .collect();
    let seconds: u64 = arg("seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let runs: usize = arg("runs").and_then(|s| s.parse().ok()).unwrap_or(1);
    let phases = arg("phases").unwrap_or_else(|| "floor,ours,quix".into());
    println!(
        "tick to alert: Apache Kafka (KRaft, one node, same 2 cores), a fresh broker per measurement; \
         {seconds} s per run after a {} s warm-up; latency = alert read back − snapshot ts",
        WARM_UP.as_secs()
    );
    for &rate in &rates {
        for run in 1..=runs {
            for phase in phases.split(',') {
                let dir = tempfile::tempdir().unwrap();
                let broker = Broker::start(dir.path());
                let brokers = broker.address();
                let result = match phase {
                    "floor" => Some(floor(&brokers, rate, seconds)),
                    "ours" => Some(ours(dir.path(), &brokers, rate, seconds)),
                    "quix" => quix(dir.path(), &brokers, rate, seconds),
                    other => panic!("unknown phase `{other}`"),
                };
                if let Some(samples) = result {
                    println!("{phase:>5} {rate:>5} snapshots/s run {run}: {}", summary(samples));
                }
            }
        }
    }
}

/// `n, p50, p99, p99.9, max` in milliseconds.
fn summary(mut samples: Vec<i64>) -> String {
    samples.sort_unstable();
    if samples.is_empty() {
        return "no samples".into();
    }
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)] as f64 / 1000.0;
    format!(
        "{} firings, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        *samples.last().unwrap() as f64 / 1000.0
    )
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn iso(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The `i`th snapshot, stamped `micros`: EUR against 7 currencies; EUR/USD below 1.1 on even
/// `i`, above on odd.
fn snapshot(i: u64, micros: i64) -> String {
    let ts = iso(micros);
    let usd = if i.is_multiple_of(2) { "1.09900" } else { "1.10100" };
    let mut quotes = vec![format!(
        r#"{{"pair":"EUR/USD","bid":"{usd}","ask":"{usd}","ts":"{ts}","source":"bench"}}"#
    )];
    for (currency, mid) in CURRENCIES {
        quotes.push(format!(
            r#"{{"pair":"EUR/{currency}","bid":"{mid}","ask":"{mid}","ts":"{ts}","source":"bench"}}"#
        ));
    }
    format!(
        r#"{{"v":1,"kind":"QuoteSnapshot","source":"bench","ts":"{ts}","base":"EUR","quotes":[{}]}}"#,
        quotes.join(",")
    )
}

/// The latency-tuned client settings every plain client here uses.
fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.nagle.disable", "true")
        .set("linger.ms", "0")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "latest");
    config
}

fn consumer(brokers: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client(brokers).set("group.id", group).create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

fn producer(brokers: &str) -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    client(brokers).create().unwrap()
}

fn create_topics(brokers: &str, dir: &std::path::Path, topics: &[(&str, u32)]) {
    let declared: Vec<String> = topics
        .iter()
        .map(|(t, p)| format!(r#""{t}": (partitions: {p})"#))
        .collect();
    let file = dir.join("bench-topics.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "topics", resources: {{ "kafka": Kafka(brokers: "{brokers}", topics: {{ {} }}) }},
                stages: {{ "s": Synthetic(count: 1), "n": Null(inputs: ["s"]) }})"#,
            declared.join(", ")
        ),
    )
    .unwrap();
    let out = fxflow(&["topics", "create", "--resource", "kafka", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Reads until `stop`; sets `seen` at the first message, and for each message whose `ts` is at
/// or after `from` (µs) records its arrival − `ts` in µs.
fn collect(
    consumer: BaseConsumer,
    from: Arc<Mutex<Option<i64>>>,
    seen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let arrived = now_micros();
            seen.store(true, Ordering::Release);
            let Some(ts) = message.payload().and_then(ts_of) else {
                continue;
            };
            if from.lock().unwrap().is_some_and(|from| ts >= from) {
                samples.push(arrived - ts);
            }
        }
        samples
    })
}

fn ts_of(payload: &[u8]) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let ts: chrono::DateTime<chrono::Utc> = value["ts"].as_str()?.parse().ok()?;
    Some(ts.timestamp_micros())
}

/// Offer `rate` snapshots/s to `topic` until something arrives at the end (`ready`), then for
/// the warm-up and `seconds` more; `from` is set to the end of the warm-up.
fn offer(
    brokers: &str,
    topic: &str,
    rate: u32,
    seconds: u64,
    ready: impl Fn() -> bool,
    from: &Mutex<Option<i64>>,
) -> u64 {
    let producer = producer(brokers);
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut i = 0u64;
    let send = |i: u64| {
        let payload = snapshot(i, now_micros());
        producer
            .send(BaseRecord::to(topic).key("bench").payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    };
    // Prime: a snapshot every 100 ms until the chain answers (groups joined, rules loaded).
    let primed = Instant::now();
    while !ready() {
        assert!(primed.elapsed() < Duration::from_secs(120), "the chain never answered");
        send(i);
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let mut next = started;
    let mut marked = false;
    while started.elapsed() < WARM_UP + Duration::from_secs(seconds) {
        if !marked && started.elapsed() >= WARM_UP {
            *from.lock().unwrap() = Some(now_micros());
            marked = true;
        }
        send(i);
        i += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    i
}

/// Offer snapshots to `input` (see [`offer`]) and collect the latency of what arrives on
/// `output`, read by a plain consumer of group `group`.
fn measure(brokers: &str, input: &str, output: &str, group: &str, rate: u32, seconds: u64) -> Vec<i64> {
    let from = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicBool::new(false));
    let collector = collect(
        consumer(brokers, group, output),
        from.clone(),
        seen.clone(),
        stop.clone(),
    );
    offer(brokers, input, rate, seconds, || seen.load(Ordering::Acquire), &from);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Release);
    collector.join().unwrap()
}

/// Three plain hops.
fn floor(brokers: &str, rate: u32, seconds: u64) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    create_topics(brokers, dir.path(), &[("floor.a", 4), ("floor.b", 8), ("floor.c", 4)]);
    let stop = Arc::new(AtomicBool::new(false));
    let relays: Vec<_> = [("floor.a", "floor.b"), ("floor.b", "floor.c")]
        .into_iter()
        .map(|(from, to)| {
            let (consumer, producer) = (consumer(brokers, &format!("relay-{from}"), from), producer(brokers));
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let mut record = BaseRecord::<[u8], [u8]>::to(to).payload(m.payload().unwrap_or_default());
                    if let Some(key) = m.key() {
                        record = record.key(key);
                    }
                    producer.send(record).map_err(|(e, _)| e).unwrap();
                }
            })
        })
        .collect();
    let samples = measure(brokers, "floor.a", "floor.c", "floor-end", rate, seconds);
    stop.store(true, Ordering::Release);
    for relay in relays {
        relay.join().unwrap();
    }
    samples
}

/// The shipped worker files.
fn ours(dir: &std::path::Path, brokers: &str, rate: u32, seconds: u64) -> Vec<i64> {
    let root = fxflow_tests::workspace().join("pipelines");
    let created = fxflow(&["topics", "create", "--resource", "kafka"])
        .args([root.join("process.ron"), root.join("alerts.ron")])
        .env("KAFKA_BROKERS", brokers)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    // The two rules, as the API writes them.
    let rules = producer(brokers);
    for (id, condition) in [("tta-up", "CrossingUp"), ("tta-down", "CrossingDown")] {
        let payload = format!(
            r#"{{"v":1,"kind":"AlertRuleChange","id":"{id}","rule":{{"id":"{id}","pair":"EUR/USD","condition":{{"{condition}":"1.1"}},"trigger":{{"Every":{{}}}}}}}}"#
        );
        rules
            .send(BaseRecord::to("fx.alert-rules").key(id).payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    rules.flush(Duration::from_secs(30)).unwrap();
    let env = |port: u16| {
        vec![
            ("KAFKA_BROKERS", brokers.to_owned()),
            ("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}")),
            ("RUST_LOG", "warn".to_owned()),
        ]
    };
    let (pp, ap) = (free_port(), free_port());
    let mut process = Worker::start("process", &root.join("process.ron"), &env(pp), dir);
    let mut alerts = Worker::start("alerts", &root.join("alerts.ron"), &env(ap), dir);
    for port in [pp, ap] {
        wait_for("workers up", Duration::from_secs(60), || {
            http_get(port, "/ready").ok().filter(|r| r.0 == 200)
        });
    }
    let samples = measure(brokers, "fx.snapshots", "fx.alerts", "tta-probe", rate, seconds);
    for port in [pp, ap] {
        println!("{}", event_ages(port));
    }
    process.kill9();
    alerts.kill9();
    samples
}

/// Where the time goes: the median age of events at each stage's input (since they entered
/// the first worker), from a worker's `fxflow_stage_event_age_seconds` buckets (interpolated).
fn event_ages(port: u16) -> String {
    let Ok((_, body)) = http_get(port, "/metrics") else {
        return format!("(no metrics on {port})");
    };
    // stage -> [(le, cumulative count)]
    let mut buckets = std::collections::BTreeMap::<String, Vec<(f64, f64)>>::new();
    for line in body
        .lines()
        .filter(|l| l.starts_with("fxflow_stage_event_age_seconds_bucket"))
    {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |key: &str| {
            name.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        let (Some(stage), Some(le), Ok(count)) = (label("stage"), label("le"), value.parse::<f64>()) else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        buckets.entry(stage).or_default().push((le, count));
    }
    // The q-quantile of a cumulative histogram, interpolated inside its bucket.
    let quantile = |b: &[(f64, f64)], q: f64| -> Option<f64> {
        let total = b.last()?.1;
        let target = total * q;
        let mut below = (0.0, 0.0);
        for &(le, count) in b {
            if count >= target && total > 0.0 {
                let share = if count > below.1 {
                    (target - below.1) / (count - below.1)
                } else {
                    1.0
                };
                return Some(if le.is_finite() {
                    below.0 + share * (le - below.0)
                } else {
                    below.0
                });
            }
            below = (le, count);
        }
        None
    };
    let parts: Vec<String> = buckets
        .into_iter()
        .filter_map(|(stage, mut b)| {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (p50, p99) = (quantile(&b, 0.5)?, quantile(&b, 0.99)?);
            Some(format!("{stage} {:.2}/{:.1} ms", p50 * 1000.0, p99 * 1000.0))
        })
        .collect();
    format!(
        "    event age at each stage input, p50/p99 (port {port}; p99 from the histogram's buckets): {}",
        parts.join(", ")
    )
}

/// Quix Streams on the same job; `None` without its virtual environment.
fn quix(dir: &std::path::Path, brokers: &str, rate: u32, seconds: u64) -> Option<Vec<i64>> {
    let python = fxflow_tests::workspace().join(".cache/peer-venv/bin/python");
    if !python.exists() {
        println!(
            " quix: skipped (python3 -m venv .cache/peer-venv && .cache/peer-venv/bin/pip install -r tests/benches/requirements-peer.txt)"
        );
        return None;
    }
    create_topics(
        brokers,
        dir,
        &[("peer.snapshots", 4), ("peer.crosses", 8), ("peer.alerts", 4)],
    );
    let script = fxflow_tests::workspace().join("tests/benches/quix_peer.py");
    let count = u64::from(rate) * (seconds + 10) + 10_000;
    let mut job = std::process::Command::new(&python)
        .arg(&script)
        .args([
            "--brokers",
            brokers,
            "--input",
            "peer.snapshots",
            "--output",
            "peer.crosses",
        ])
        .args(["--alerts", "peer.alerts", "--group", "quix-tta", "--rule", "EUR/USD>0"])
        .args(["--count", &count.to_string(), "--idle-timeout", "5"])
        .arg("--state-dir")
        .arg(dir.join("quix-state"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let samples = measure(brokers, "peer.snapshots", "peer.alerts", "quix-probe", rate, seconds);
    let _ = job.kill();
    let _ = job.wait();
    Some(samples)
}
