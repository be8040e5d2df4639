//! Worker processes joined by a real Apache Kafka broker (KRaft, from Maven
//! Central jars; `scripts/broker.sh`): ingest → process → alerts → store as
//! separate OS processes in consumer groups, scale-out and scale-in of
//! `process`, a group that loses and regains members by `kill -9` under load
//! (and a broker SIGKILL), the API worker changing rules across processes, and
//! an analytics worker killed in the middle of its windows. None of it may lose
//! anything.
//!
//! What "expected" means: the same inputs run in one process (Replay → Enrich →
//! CrossRate → Alert with the rules of `pipelines/alerts.ron`), written as JSON
//! lines. The distributed run must produce exactly those lines (the JSON codec
//! round-trips every event exactly), in order per pair; a crash may repeat
//! lines on the topics (at-least-once), never in the database (idempotent rows).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fxflow_tests::{free_port, fxflow, tail, wait_for, workspace, Broker, Worker};

/// One broker-backed test at a time: each runs a broker and several workers on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(240);

struct Cluster {
    dir: tempfile::TempDir,
    broker: Broker,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path());
        let cluster = Cluster { dir, broker };
        let output = fxflow(&["topics", "create", "--resource", "kafka"])
            .args([
                "pipelines/ingest.ron",
                "pipelines/process.ron",
                "pipelines/alerts.ron",
                "pipelines/analytics.ron",
                "pipelines/store.ron",
                "pipelines/api.ron",
            ])
            .env("KAFKA_BROKERS", cluster.broker.address())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "topics create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_BROKERS", self.broker.address()),
            ("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", free_port())),
            // A killed member's partitions move after the session timeout (Kafka's minimum).
            ("KAFKA_SESSION_TIMEOUT_MS", "6000".into()),
            ("KAFKA_MAX_POLL_INTERVAL_MS", "60000".into()),
            (
                "KAFKA_ASSIGNMENT_STRATEGY",
                std::env::var("KAFKA_ASSIGNMENT_STRATEGY").unwrap_or_else(|_| "cooperative-sticky".into()),
            ),
        ]
    }

    fn worker(&self, name: &str, file: &Path, extra: &[(&'static str, String)]) -> Worker {
        let mut env = self.env();
        env.extend(extra.iter().cloned());
        Worker::start(name, file, &env, self.dir.path())
    }

    /// A worker that copies `fx.rates` and `fx.alerts` into JSON-lines files.
    fn collector(&self) -> Worker {
        self.collector_of(
            "collect",
            &[
                ("fx.rates", r#""CrossRate", "Quote""#, "rates.jsonl"),
                ("fx.alerts", r#""AlertFired""#, "alerts.jsonl"),
            ],
        )
    }

    /// A worker `name` that copies each (topic, kinds, file) into that JSON-lines file.
    fn collector_of(&self, name: &str, streams: &[(&str, &str, &str)]) -> Worker {
        let mut stages = String::new();
        for (i, (topic, kinds, file)) in streams.iter().enumerate() {
            stages.push_str(&format!(
                r#""in-{i}": KafkaSource(resource: "kafka", topics: ["{topic}"], group: "{name}-{i}",
                    kinds: [{kinds}], options: {{"session.timeout.ms": "6000"}}),
                "out-{i}": JsonlFile(inputs: ["in-{i}"], path: "{dir}/{file}"),
"#,
                dir = self.dir.path().display()
            ));
        }
        let file = self.path(&format!("{name}.ron"));
        std::fs::write(
            &file,
            format!(
                r#"Pipeline(
                    name: "{name}",
                    resources: {{ "kafka": Kafka(brokers: "${{KAFKA_BROKERS}}") }},
                    stages: {{ {stages} }},
                )"#
            ),
        )
        .unwrap();
        self.worker(name, &file, &[])
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The alert stage of `pipelines/alerts.ron`, rewired to read `crosses`.
fn alert_stage_of_the_worker_file() -> String {
    let text = std::fs::read_to_string(workspace().join("pipelines/alerts.ron")).unwrap();
    let start = text.find("\"alerts\": Alert(").expect("alerts.ron has an Alert stage");
    let end = start + text[start..].find("\n        ),\n").expect("stage ends") + "\n        ),\n".len();
    text[start..end]
        .replace(r#"inputs: ["rates", "rules"]"#, r#"inputs: ["crosses"]"#)
        .lines()
        // One process, no broker: the state lives in memory.
        .filter(|line| !line.trim_start().starts_with("state:") && !line.trim_start().starts_with("// Saved per pair"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Run the replay in one process: what the worker chain must reproduce.
fn expected(dir: &Path, from: &str) -> (Vec<String>, Vec<String>) {
    expected_with(dir, from, &Synthetics::none())
}

/// Synthetic random-walk sources on currencies no alert rule watches (so the
/// order in which the workers interleave them with the ECB replay cannot change
/// a firing): `count` snapshots each at `rate` per second, deterministic by seed.
struct Synthetics {
    names: Vec<String>,
    rate: u32,
    count: u64,
}

impl Synthetics {
    fn none() -> Synthetics {
        Synthetics {
            names: Vec::new(),
            rate: 0,
            count: 0,
        }
    }

    fn stages(&self) -> String {
        self.names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    r#""{name}": Synthetic(source: "{name}", seed: {i}, count: {count}, rate: {rate},
                        start_time: "2026-11-02T09:00:00Z", base: "USD",
                        start: {{"USD/SEK": "10.61", "USD/NOK": "10.92", "USD/DKK": "6.68", "USD/PLN": "3.81",
                                 "USD/CZK": "21.9", "USD/HUF": "352.4", "USD/ZAR": "17.96"}}),
"#,
                    count = self.count,
                    rate = self.rate
                )
            })
            .collect()
    }

    fn inputs(&self) -> String {
        self.names.iter().map(|n| format!(", \"{n}\"")).collect()
    }

    fn snapshots(&self) -> u64 {
        self.names.len() as u64 * self.count
    }
}

/// The ingest worker for `from` at `day` per day of history, plus `synthetics`.
fn ingest_file(cluster: &Cluster, from: &str, day: &str, synthetics: &Synthetics) -> PathBuf {
    let file = cluster.path("ingest-load.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(
                name: "ingest",
                telemetry: (address: "${{FXFLOW_TELEMETRY}}"),
                resources: {{ "kafka": Kafka(brokers: "${{KAFKA_BROKERS}}") }},
                stages: {{
                    "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "{from}",
                        currencies: ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"], speed: PerDay("{day}")),
                    {synthetic}
                    "publish": KafkaSink(inputs: ["ecb"{inputs}], resource: "kafka", topic: "fx.snapshots"),
                }},
            )"#,
            synthetic = synthetics.stages(),
            inputs = synthetics.inputs(),
        ),
    )
    .unwrap();
    file
}

/// [`expected`], with synthetic sources beside the replay.
fn expected_with(dir: &Path, from: &str, synthetics: &Synthetics) -> (Vec<String>, Vec<String>) {
    let file = dir.join("expected.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(
                name: "expected",
                stages: {{
                    "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "{from}",
                        currencies: ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"]),
                    {synthetic}
                    "validate": Enrich(inputs: ["ecb"{inputs}]),
                    "crosses": CrossRate(inputs: ["validate"]),
                    {alerts}
                    "rates-file": JsonlFile(inputs: ["crosses"], path: "{dir}/expected-rates.jsonl"),
                    "alerts-file": JsonlFile(inputs: ["alerts"], path: "{dir}/expected-alerts.jsonl"),
                }},
            )"#,
            alerts = alert_stage_of_the_worker_file(),
            dir = dir.display(),
            synthetic = synthetics.stages(),
            inputs = synthetics.inputs(),
        ),
    )
    .unwrap();
    let output = fxflow(&["run", file.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    (read("expected-rates.jsonl"), read("expected-alerts.jsonl"))
}

fn field<'a>(value: &'a serde_json::Value, name: &str) -> &'a str {
    value[name].as_str().unwrap_or_else(|| panic!("no `{name}` in {value}"))
}

/// Per pair and source, the first appearance of each rate comes in time order (a
/// re-delivery repeats earlier lines, which is allowed; going back is not).
fn assert_per_pair_order(lines: &[String]) {
    let mut seen = HashSet::new();
    let mut last: HashMap<(String, String), chrono::DateTime<chrono::Utc>> = HashMap::new();
    for line in lines {
        if !seen.insert(line.as_str()) {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (field(&value, "pair").to_owned(), field(&value, "source").to_owned());
        let ts: chrono::DateTime<chrono::Utc> = field(&value, "ts").parse().unwrap();
        if let Some(previous) = last.get(&key) {
            assert!(*previous < ts, "{key:?}: {ts} arrived after {previous}");
        }
        last.insert(key, ts);
    }
}

fn counts(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    counts
}

/// Every expected line arrived, nothing unexpected did; returns how many lines came more than once.
fn assert_same_set(what: &str, got: &[String], expected: &[String]) -> usize {
    let got_counts = counts(got);
    let expected_set: HashSet<&str> = expected.iter().map(String::as_str).collect();
    let missing: Vec<_> = expected_set
        .iter()
        .filter(|l| !got_counts.contains_key(**l))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} expected lines missing, e.g. {missing:?}",
        expected_set.iter().filter(|l| !got_counts.contains_key(**l)).count()
    );
    let extra: Vec<_> = got_counts
        .keys()
        .filter(|l| !expected_set.contains(**l))
        .take(3)
        .collect();
    assert!(extra.is_empty(), "{what}: unexpected lines, e.g. {extra:?}");
    got.len() - got_counts.len()
}

fn wait_until_collected(cluster: &Cluster, rates: usize, alerts: usize, workers: &mut [&mut Worker]) {
    let start = Instant::now();
    loop {
        let (r, a) = (cluster.lines("rates.jsonl"), cluster.lines("alerts.jsonl"));
        let unique_rates = r.iter().collect::<HashSet<_>>().len();
        let unique_alerts = a.iter().collect::<HashSet<_>>().len();
        if unique_rates >= rates && unique_alerts >= alerts {
            // Let anything still in flight land, so duplicates and extras are seen too.
            std::thread::sleep(Duration::from_secs(2));
            return;
        }
        if start.elapsed() > WAIT {
            let logs: Vec<String> = workers
                .iter()
                .map(|w| format!("--- {} ---\n{}", w.name, tail(&w.logs(), 40)))
                .collect();
            panic!(
                "timed out: {unique_rates}/{rates} rates and {unique_alerts}/{alerts} alerts collected\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Write rule changes to `fx.alert-rules` as the API will: JSON with the format
/// version, keyed by rule id; `None` is a tombstone (deleted).
fn publish_rule_changes(brokers: &str, changes: &[(&str, Option<&str>)]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (id, rule) in changes {
        let payload = rule.map(|rule| format!(r#"{{"v":1,"kind":"AlertRuleChange","id":"{id}","rule":{rule}}}"#));
        let mut record = BaseRecord::<str, String>::to("fx.alert-rules").key(id);
        if let Some(payload) = &payload {
            record = record.payload(payload);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// The store worker's databases: a fresh PostgreSQL database and Redis database 7 (flushed).
struct StoreDatabases {
    url: String,
    runtime: tokio::runtime::Runtime,
}

const REDIS_URL: &str = "redis://127.0.0.1:6379/7";

impl StoreDatabases {
    fn create() -> StoreDatabases {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = fxflow_tests::create_database("fxtest_store");
        let databases = StoreDatabases {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            runtime,
        };
        databases.redis(&["FLUSHDB"]);
        databases
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("DATABASE_URL", self.url.clone()), ("REDIS_URL", REDIS_URL.into())]
    }

    /// The first column of the first row, as text.
    fn query(&self, sql: &'static str) -> Option<String> {
        self.runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.url).await.ok()?;
            sqlx::query_scalar::<_, Option<String>>(sql)
                .fetch_one(&mut connection)
                .await
                .ok()
                .flatten()
        })
    }

    /// The first column of the first row of a query built at run time (test-made SQL only).
    fn query_text(&self, sql: &str) -> Option<String> {
        self.runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.url).await.ok()?;
            sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut connection)
                .await
                .ok()
                .flatten()
        })
    }

    fn redis(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-u", REDIS_URL])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Wait until the history holds `rates` rate rows and `alerts` firings, then
    /// a little longer to see that no more arrive.
    fn wait_for_rows(&self, rates: i64, alerts: i64, store: &Worker) {
        let counts = || {
            let count = |sql| self.query(sql).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
            (
                count("SELECT count(*)::text FROM fx_rates"),
                count("SELECT count(*)::text FROM fx_alert_history"),
            )
        };
        let start = Instant::now();
        while counts() < (rates, alerts) {
            assert!(
                start.elapsed() < WAIT,
                "store: {:?} of ({rates}, {alerts}) rows\n{}",
                counts(),
                tail(&store.logs(), 40)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(counts(), (rates, alerts), "one row per cross and per firing");
    }
}

fn pipeline(name: &str) -> PathBuf {
    workspace().join("pipelines").join(name)
}

#[test]
fn ingest_process_and_alerts_workers_deliver_every_cross_and_alert_in_pair_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new();
    let from = "2025-09-01";
    let (expected_rates, expected_alerts) = expected(cluster.dir.path(), from);
    assert!(expected_rates.len() > 5_000 && !expected_alerts.is_empty());

    // Two rules through the compacted changelog: one stays (it never fires), one is deleted.
    publish_rule_changes(
        &cluster.broker.address(),
        &[
            (
                "never",
                Some(r#"{"id":"never","pair":"EUR/USD","condition":{"Above":"1000"}}"#),
            ),
            (
                "dropped",
                Some(r#"{"id":"dropped","pair":"GBP/USD","condition":{"Below":"0.01"}}"#),
            ),
            ("dropped", None),
        ],
    );
    let store_db = StoreDatabases::create();
    let mut process = cluster.worker("process", &pipeline("process.ron"), &[]);
    let mut alerts = cluster.worker("alerts", &pipeline("alerts.ron"), &[]);
    let mut store = cluster.worker("store", &pipeline("store.ron"), &store_db.env());
    let mut collect = cluster.collector();
    let mut ingest = cluster.worker(
        "ingest",
        &pipeline("ingest.ron"),
        &[("FXFLOW_FROM", from.into()), ("FXFLOW_DAY", "1ms".into())],
    );
    assert!(ingest.wait(WAIT).success(), "{}", ingest.logs());
    wait_until_collected(
        &cluster,
        expected_rates.len(),
        expected_alerts.len(),
        &mut [&mut process, &mut alerts, &mut collect],
    );

    let (rates, fired) = (cluster.lines("rates.jsonl"), cluster.lines("alerts.jsonl"));
    assert_eq!(
        assert_same_set("rates", &rates, &expected_rates),
        0,
        "no crash, no duplicate"
    );
    assert_eq!(rates.len(), expected_rates.len());
    assert_per_pair_order(&rates);
    assert_eq!(assert_same_set("alerts", &fired, &expected_alerts), 0);
    assert!(alerts.logs().contains("ALERT"), "the alerts worker prints firings");

    // The store worker: one row per cross and per firing in PostgreSQL, the
    // surviving rule in PostgreSQL and in Redis, the newest rate of each pair in Redis.
    store_db.wait_for_rows(expected_rates.len() as i64, expected_alerts.len() as i64, &store);
    assert_eq!(
        store_db.query("SELECT string_agg(id || ' ' || pair, ',') FROM fx_alert_rules"),
        Some("never EUR/USD".into())
    );
    assert_eq!(store_db.redis(&["HKEYS", "fx:rules:EUR/USD"]), "never");
    assert_eq!(store_db.redis(&["HKEYS", "fx:rules:GBP/USD"]), "");
    let newest_eur_usd = expected_rates
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["pair"] == "EUR/USD")
        .map(|v| {
            v["ts"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        })
        .max()
        .unwrap();
    let cached: chrono::DateTime<chrono::Utc> = store_db.redis(&["HGET", "fx:rate:EUR/USD", "ts"]).parse().unwrap();
    assert_eq!(cached, newest_eur_usd, "Redis holds the newest EUR/USD rate");

    // Every worker drains and exits cleanly on SIGTERM.
    for worker in [&mut process, &mut alerts, &mut store, &mut collect] {
        let status = worker.terminate(Duration::from_secs(60));
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            worker.name,
            tail(&worker.logs(), 30)
        );
    }
}

/// Samples the collector's output every 100 ms: the longest stretch with no
/// new line while lines were still expected.
struct PauseMeter {
    longest: Duration,
    since: Instant,
    last: usize,
}

impl PauseMeter {
    fn new() -> PauseMeter {
        PauseMeter {
            longest: Duration::ZERO,
            since: Instant::now(),
            last: 0,
        }
    }

    fn sample(&mut self, lines: usize) {
        if lines != self.last {
            self.last = lines;
            self.since = Instant::now();
        }
        self.longest = self.longest.max(self.since.elapsed());
    }
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map(|b| bytecount_newlines(&b)).unwrap_or(0)
}

fn bytecount_newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// Partition assignments seen by the workers (every incarnation's first one, and
/// each rebalance that handed a survivor or a newcomer partitions).
fn assignments(workers: &[&Worker]) -> usize {
    workers
        .iter()
        .map(|w| w.logs().matches("Partitions assigned").count())
        .sum()
}

/// The acceptance scenario of the scale-out issue: three `process` and two
/// `alerts` workers in their groups (`Subscribe`, cooperative-sticky) and a
/// store worker, during the full ECB history plus synthetic sources at 1,000
/// snapshots/s; a random worker `kill -9`ed every few seconds, 20 times, and
/// restarted; one SIGKILL of the broker. Every expected cross and firing is
/// in PostgreSQL exactly once, per-pair order holds on the topics. The workers
/// are static members (`FXFLOW_INSTANCE` = their name), as the shipped
/// deployments run them: a member the broker outage makes fence itself rejoins.
#[test]
fn a_group_that_loses_and_regains_members_under_load_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new();
    let from = "1999-01-04";
    let synthetics = Synthetics {
        names: ["alpha", "bravo", "charlie", "delta"].map(String::from).to_vec(),
        rate: 250,
        count: 2_500,
    };
    let (expected_rates, expected_alerts) = expected_with(cluster.dir.path(), from, &synthetics);
    let ecb_days = std::fs::read_to_string(workspace().join("examples/data/ecb-eurofxref-hist.csv"))
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    assert_eq!(
        expected_rates.len() as u64,
        (ecb_days + synthetics.snapshots()) * 28,
        "every ECB day and every synthetic snapshot gives 28 crosses"
    );

    let store_db = StoreDatabases::create();
    // Static members, as compose and Kubernetes run them: each worker's name is its instance.
    let named = |name: &str| ("FXFLOW_INSTANCE", name.to_owned());
    let mut workers: Vec<Worker> = Vec::new();
    for i in 1..=3 {
        let name = format!("process-{i}");
        workers.push(cluster.worker(&name, &pipeline("process.ron"), &[named(&name)]));
    }
    for i in 1..=2 {
        let name = format!("alerts-{i}");
        workers.push(cluster.worker(&name, &pipeline("alerts.ron"), &[named(&name)]));
    }
    let mut store_env = store_db.env();
    store_env.push(named("store"));
    workers.push(cluster.worker("store", &pipeline("store.ron"), &store_env));
    let mut collect = cluster.collector();
    let started = Instant::now();
    let file = ingest_file(&cluster, from, "4ms", &synthetics);
    let mut ingest = cluster.worker("ingest", &file, &[]);

    // 20 kills at pseudo-random times and victims (seeded from the clock; printed to reproduce).
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut pauses = PauseMeter::new();
    let rates_file = cluster.path("rates.jsonl");
    let mut during_load = 0;
    let mut killed: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..20 {
        let wait = Duration::from_millis(1_500 + next() % 1_500);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            pauses.sample(line_count(&rates_file));
            std::thread::sleep(Duration::from_millis(100));
        }
        if ingest.is_running() {
            during_load += 1;
        }
        let victim = (next() % workers.len() as u64) as usize;
        let worker = &mut workers[victim];
        worker.kill9();
        worker.restart();
        *killed.entry(worker.name.clone()).or_default() += 1;
        if round == 9 {
            cluster.broker.kill();
            cluster.broker.restart();
            eprintln!("broker SIGKILLed and restarted after round {round}");
        }
    }
    eprintln!("kills: {killed:?}; {during_load} of 20 while the ingest was still producing");
    assert!(ingest.wait(WAIT).success(), "{}", ingest.logs());
    // Collect, watching for the longest pause in output.
    let deadline = Instant::now() + WAIT;
    loop {
        pauses.sample(line_count(&rates_file));
        let unique = cluster.lines("rates.jsonl").iter().collect::<HashSet<_>>().len();
        if unique >= expected_rates.len() {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = workers
                .iter()
                .map(|w| format!("--- {} ---\n{}", w.name, tail(&w.logs(), 30)))
                .collect();
            panic!(
                "timed out: {unique}/{} rates collected\n{}",
                expected_rates.len(),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until_collected(
        &cluster,
        expected_rates.len(),
        expected_alerts.len(),
        &mut [&mut collect],
    );
    let elapsed = started.elapsed();

    let rates = cluster.lines("rates.jsonl");
    let rate_duplicates = assert_same_set("rates", &rates, &expected_rates);
    assert_per_pair_order(&rates);
    let fired = cluster.lines("alerts.jsonl");
    let alert_duplicates = assert_same_set("alerts", &fired, &expected_alerts);
    let refs: Vec<&Worker> = workers.iter().collect();
    eprintln!(
        "group crash test: {} crosses and {} firings, all present; duplicates on fx.rates {rate_duplicates}, on fx.alerts {alert_duplicates}; \
         {} partition assignments; longest pause in output {:.1} s; {:.0} s in all",
        expected_rates.len(),
        expected_alerts.len(),
        assignments(&refs),
        pauses.longest.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    // PostgreSQL: exactly one row per expected cross and per expected firing.
    let store = workers.iter().find(|w| w.name == "store").unwrap();
    store_db.wait_for_rows(expected_rates.len() as i64, expected_alerts.len() as i64, store);
    for worker in workers.iter_mut() {
        let status = worker.terminate(Duration::from_secs(60));
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            worker.name,
            tail(&worker.logs(), 30)
        );
    }
}

/// Scale-out and scale-in mid-run: one `process` worker, then three, then one
/// again (SIGTERM: the leavers drain and commit before their partitions move).
/// Clean handoffs repeat nothing: every cross once on the topic, once in PostgreSQL.
#[test]
fn scaling_process_workers_out_and_back_in_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new();
    let from = "2016-01-01";
    let synthetics = Synthetics {
        names: ["alpha", "bravo", "charlie"].map(String::from).to_vec(),
        rate: 100,
        count: 1_500,
    };
    let (expected_rates, _) = expected_with(cluster.dir.path(), from, &synthetics);
    let store_db = StoreDatabases::create();
    let mut first = cluster.worker("process-1", &pipeline("process.ron"), &[]);
    let mut store = cluster.worker("store", &pipeline("store.ron"), &store_db.env());
    let mut collect = cluster.collector();
    wait_for("the first worker to own every partition", WAIT, || {
        first.logs().contains("Partitions assigned").then_some(())
    });
    let file = ingest_file(&cluster, from, "5ms", &synthetics);
    let mut ingest = cluster.worker("ingest", &file, &[]);
    std::thread::sleep(Duration::from_secs(4));
    let mut second = cluster.worker("process-2", &pipeline("process.ron"), &[]);
    let mut third = cluster.worker("process-3", &pipeline("process.ron"), &[]);
    for worker in [&second, &third] {
        wait_for("the new workers to take partitions", WAIT, || {
            worker.logs().contains("partitions=[\"fx.snapshots[").then_some(())
        });
    }
    eprintln!("scaled out to 3 process workers");
    std::thread::sleep(Duration::from_secs(3));
    assert!(ingest.is_running(), "scaled out while the replay still produces");
    for worker in [&mut second, &mut third] {
        let status = worker.terminate(Duration::from_secs(60));
        assert!(status.success(), "{}: {}", worker.name, tail(&worker.logs(), 20));
    }
    eprintln!("scaled back in to 1 process worker");
    assert!(ingest.wait(WAIT).success(), "{}", ingest.logs());
    wait_until_collected(&cluster, expected_rates.len(), 0, &mut [&mut first, &mut collect]);
    let rates = cluster.lines("rates.jsonl");
    let duplicates = assert_same_set("rates", &rates, &expected_rates);
    assert_per_pair_order(&rates);
    assert_eq!(
        duplicates, 0,
        "clean handoffs (drain, commit, then move) repeat nothing"
    );
    store_db.wait_for_rows(expected_rates.len() as i64, 0, &store);
    for worker in [&mut first, &mut store, &mut collect] {
        assert!(worker.terminate(Duration::from_secs(60)).success());
    }
}

/// The partitions a worker's log says it was handed, in its latest assignment line.
fn assignment_lines(worker: &Worker) -> usize {
    worker.logs().matches("Partitions assigned").count()
}

/// Static membership (`FXFLOW_INSTANCE`), with a session timeout of 60 s so that
/// waiting it out would show: a member killed with `-9` and restarted at once
/// takes its partitions back without the other member noticing (no rebalance);
/// a member stopped with SIGTERM leaves the group, and the other one owns every
/// partition within seconds; a worker started under a name already in use
/// fences the older one, which exits with an error naming the instance.
#[test]
fn static_members_survive_a_crash_leave_on_a_deliberate_stop_and_refuse_a_twin() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new();
    let named = |name: &str| {
        [
            ("KAFKA_SESSION_TIMEOUT_MS", "60000".to_owned()),
            ("FXFLOW_INSTANCE", name.to_owned()),
        ]
    };
    let mut one = cluster.worker("process-1", &pipeline("process.ron"), &named("process-1"));
    wait_for("process-1 to own fx.snapshots", WAIT, || {
        one.logs().contains("Partitions assigned").then_some(())
    });
    let mut two = cluster.worker("process-2", &pipeline("process.ron"), &named("process-2"));
    wait_for("process-2 to get its share", WAIT, || {
        two.logs().contains("partitions=[\"fx.snapshots[").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3)); // the cooperative rebalance settles
    let before = assignment_lines(&two);

    // Crash and immediate restart: back under the same name, partitions returned at once.
    let first_life = assignment_lines(&one);
    let crashed = Instant::now();
    one.kill9();
    one.restart();
    wait_for(
        "the restarted process-1 to hold partitions again",
        Duration::from_secs(30),
        || {
            one.logs()
                .split("Partitions assigned")
                .skip(first_life + 1)
                .any(|after| after.lines().next().is_some_and(|line| line.contains("fx.snapshots[")))
                .then_some(())
        },
    );
    let back_after = crashed.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        assignment_lines(&two),
        before,
        "a static member's crash and restart moved no partition to the other member:\n{}",
        tail(&two.logs(), 20)
    );
    assert!(
        back_after < Duration::from_secs(20),
        "back after {back_after:?}, not after the 60 s session timeout"
    );

    // A deliberate stop: the member leaves, the other one takes everything well inside 60 s.
    let stopped = Instant::now();
    assert!(
        one.terminate(Duration::from_secs(60)).success(),
        "{}",
        tail(&one.logs(), 20)
    );
    assert!(
        one.logs().contains("Left the consumer group"),
        "{}",
        tail(&one.logs(), 20)
    );
    wait_for(
        "process-2 to be handed the leaver's partitions",
        Duration::from_secs(30),
        || (assignment_lines(&two) > before).then_some(()),
    );
    let handed_over = stopped.elapsed();
    assert!(
        handed_over < Duration::from_secs(20),
        "handed over after {handed_over:?}: the stop did not leave the group"
    );

    // A twin: a second worker named process-2 fences the first, which stops with a clear error.
    let mut twin = cluster.worker("process-2", &pipeline("process.ron"), &named("process-2"));
    let status = two.wait(Duration::from_secs(60));
    assert!(!status.success(), "the fenced worker exits with an error");
    let logs = two.logs();
    assert!(
        logs.contains("fenced") && logs.contains("`process-2`"),
        "the error names the instance:\n{}",
        tail(&logs, 20)
    );
    assert!(
        logs.contains("rejoining once"),
        "fenced first, it rejoined before it stopped:\n{}",
        tail(&logs, 20)
    );
    assert!(twin.is_running(), "the newer twin runs on: {}", tail(&twin.logs(), 20));
    assert!(twin.terminate(Duration::from_secs(60)).success());
    eprintln!("static membership: back after a crash in {back_after:?}, handed over on SIGTERM in {handed_over:?}");
}

/// A static member through a broker outage longer than its session timeout (6 s): the
/// group forgets its membership, and the member may be fenced by its own rejoin (librdkafka
/// rejoins under the same name with a new member id while a request still carries the old
/// one). Either way it keeps working: fenced once, the source rejoins with a new consumer
/// instead of stopping the worker.
#[test]
fn a_static_member_works_on_after_a_broker_outage_longer_than_its_session_and_a_fence() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new();
    let mut worker = cluster.worker(
        "process-1",
        &pipeline("process.ron"),
        &[("FXFLOW_INSTANCE", "process-1".to_owned())],
    );
    let mut collect = cluster.collector();
    wait_for("process-1 to own fx.snapshots", WAIT, || {
        worker.logs().contains("Partitions assigned").then_some(())
    });
    let send = |broker: &str, day: u32| {
        let ts = format!("2026-11-{day:02}T10:00:00Z");
        let snapshot = format!(
            r#"{{"v":1,"kind":"QuoteSnapshot","source":"desk","ts":"{ts}","base":"EUR","quotes":[{{"pair":"EUR/USD","bid":"1.1000","ask":"1.1002","ts":"{ts}","source":"desk"}},{{"pair":"EUR/JPY","bid":"160.10","ask":"160.20","ts":"{ts}","source":"desk"}}]}}"#
        );
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker)
            .create()
            .unwrap();
        producer
            .send(BaseRecord::to("fx.snapshots").key("desk").payload(&snapshot))
            .unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    let rates = |cluster: &Cluster| cluster.lines("rates.jsonl").len();
    send(&cluster.broker.address(), 1);
    wait_for("the first snapshot's 3 crosses", WAIT, || {
        (rates(&cluster) >= 3).then_some(())
    });

    cluster.broker.kill();
    std::thread::sleep(Duration::from_secs(12));
    cluster.broker.restart();
    send(&cluster.broker.address(), 2);
    wait_for("the second snapshot's crosses, after the outage", WAIT, || {
        (rates(&cluster) >= 6).then_some(())
    });
    assert!(worker.is_running(), "{}", tail(&worker.logs(), 30));
    let logs = worker.logs();
    eprintln!(
        "broker outage of 12 s with a 6 s session: the static member {}",
        if logs.contains("rejoining once") {
            "was fenced by its own rejoin and rejoined"
        } else {
            "was not fenced"
        }
    );

    // Whether the outage fenced it depends on timing; this fence does not: a consumer joins
    // once under the worker's name and goes away, as the worker's own stale membership does.
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let stale: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", cluster.broker.address())
            .set("group.id", "fxflow-process")
            .set("group.instance.id", "process-1")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        stale.subscribe(&["fx.snapshots"]).unwrap();
        // Counted: the outage may have logged a rejoin already.
        let before = worker.logs().matches("rejoining once").count();
        let started = std::time::Instant::now();
        while worker.logs().matches("rejoining once").count() <= before {
            // The worker's log says what it saw if this never comes (it passed alone and
            // failed once under the full run's load: the log tells why next time).
            assert!(
                started.elapsed() < WAIT,
                "timed out after {:?} waiting for the worker to be fenced and rejoin; its log:\n{}",
                WAIT,
                tail(&worker.logs(), 60)
            );
            let _ = stale.poll(Duration::from_millis(100));
        }
    }
    send(&cluster.broker.address(), 3);
    wait_for("the third snapshot's crosses, after the fence", WAIT, || {
        (rates(&cluster) >= 9).then_some(())
    });
    assert!(
        worker.is_running(),
        "fenced once, it rejoined: {}",
        tail(&worker.logs(), 30)
    );
    assert!(worker.terminate(WAIT).success(), "{}", tail(&worker.logs(), 30));
    assert!(collect.terminate(WAIT).success());
}

/// A process worker whose file is edited while the replay flows, applied
/// with SIGHUP: its Kafka consumer and its cross stage are replaced (the old
/// consumer drains and commits before the new one joins the group; the cross
/// stage hands its queue over), and the output has every cross once, in per-pair order.
#[test]
fn reloading_a_process_worker_under_load_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new();
    let from = "2016-01-01";
    let synthetics = Synthetics {
        names: ["alpha", "bravo"].map(String::from).to_vec(),
        rate: 100,
        count: 1_500,
    };
    let (expected_rates, _) = expected_with(cluster.dir.path(), from, &synthetics);
    let original = std::fs::read_to_string(pipeline("process.ron")).unwrap();
    let file = cluster.path("process.ron");
    std::fs::write(&file, &original).unwrap();
    let mut process = cluster.worker("process", &file, &[]);
    let mut collect = cluster.collector();
    wait_for("the worker to own every partition", WAIT, || {
        process.logs().contains("Partitions assigned").then_some(())
    });
    let ingest_file = ingest_file(&cluster, from, "5ms", &synthetics);
    let mut ingest = cluster.worker("ingest", &ingest_file, &[]);
    std::thread::sleep(Duration::from_secs(4));

    let edited = original
        .replace(
            r#"fetch_wait: "${KAFKA_FETCH_WAIT:-10ms}","#,
            r#"fetch_wait: "${KAFKA_FETCH_WAIT:-20ms}","#,
        )
        .replace(
            "\"crosses\": CrossRate(\n            inputs: [\"validate\"],",
            "\"crosses\": CrossRate(\n            inputs: [\"validate\"],\n            buffer: (capacity: 2048),",
        );
    assert_eq!(edited.matches("20ms").count(), 1, "the edit applies to process.ron");
    assert!(edited.contains("capacity: 2048"), "the edit applies to process.ron");
    std::fs::write(&file, edited).unwrap();
    process.hangup();
    wait_for("the reload", WAIT, || {
        process.logs().contains("Reload applied").then_some(())
    });
    assert!(ingest.is_running(), "reloaded while the replay still produces");
    let log = process.logs();
    assert!(
        // validate, publish, latest, publish-latest and dead-letters keep running.
        log.contains("replaced: snapshots, crosses; 5 kept running"),
        "{}",
        tail(&log, 20)
    );

    assert!(ingest.wait(WAIT).success(), "{}", ingest.logs());
    wait_until_collected(&cluster, expected_rates.len(), 0, &mut [&mut process, &mut collect]);
    let rates = cluster.lines("rates.jsonl");
    assert_eq!(
        assert_same_set("rates", &rates, &expected_rates),
        0,
        "the reload repeats nothing"
    );
    assert_eq!(rates.len(), expected_rates.len());
    assert_per_pair_order(&rates);
    for worker in [&mut process, &mut collect] {
        assert!(worker.terminate(Duration::from_secs(60)).success());
    }
}

/// The API worker and the alerts worker as separate processes: a rule created
/// over HTTP travels the compacted rules topic, fires in the alerts worker,
/// and shows in `/alerts/history` (store worker → PostgreSQL) and on the API
/// worker's `/stream/alerts`; deleted, it stops firing.
#[test]
fn a_rule_made_on_the_api_worker_fires_in_the_alerts_worker() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new();
    let store_db = StoreDatabases::create();
    let key = "workers-api-key-0123456789";
    let api_port = free_port();
    let mut store = cluster.worker("store", &pipeline("store.ron"), &store_db.env());
    let mut api_env = store_db.env();
    api_env.push(("FXFLOW_API", format!("127.0.0.1:{api_port}")));
    api_env.push(("FXFLOW_API_KEYS", key.into()));
    let mut api = cluster.worker("api", &pipeline("api.ron"), &api_env);
    let mut process = cluster.worker("process", &pipeline("process.ron"), &[]);
    let mut alerts = cluster.worker("alerts", &pipeline("alerts.ron"), &[]);
    wait_for("the API worker", WAIT, || {
        fxflow_tests::http_get(api_port, "/health")
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    let mut ingest = cluster.worker(
        "ingest",
        &pipeline("ingest.ron"),
        &[("FXFLOW_FROM", "2024-01-01".into()), ("FXFLOW_DAY", "40ms".into())],
    );
    // Current rates come from Redis (the store worker keeps them), not from the API's own view.
    let rates = wait_for("28 rates from Redis", WAIT, || {
        let (status, body) = fxflow_tests::http_get(api_port, "/rates").ok()?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && value["rates"].as_array()?.len() == 28).then_some(value)
    });
    assert!(rates["rates"].as_array().unwrap().iter().all(|r| r["source"] == "ecb"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{api_port}");
    let (id, streamed, history) = runtime.block_on(async {
        let http = HttpClient::new();
        let stream = http.get(&format!("{base}/stream/alerts"), key).await;
        let created = http
            .post_json(
                &format!("{base}/alerts"),
                key,
                r#"{"pair": "EUR/USD", "condition": {"type": "crossing_up", "threshold": "1.09"},
                    "trigger": {"type": "every", "cooldown": "1d", "rearm": "0.001"}}"#,
            )
            .await;
        assert_eq!(created.0, 201, "{}", created.1);
        let id = serde_json::from_str::<serde_json::Value>(&created.1).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let streamed = stream.until_contains(&id, Duration::from_secs(120)).await;
        let history = http
            .wait_json(&format!("{base}/alerts/history?rule={id}"), key, |v| {
                v["firings"].as_array().is_some_and(|f| !f.is_empty())
            })
            .await;
        assert_eq!(http.delete(&format!("{base}/alerts/{id}"), key).await, 204);
        (id, streamed, history)
    });
    assert!(streamed.contains("crossing up 1.09"), "{streamed}");
    assert_eq!(history["firings"][0]["pair"], "EUR/USD");
    // Deleted: the alerts worker drops it; later crossings of 1.09 do not fire it.
    wait_for("the alerts worker to drop the rule", WAIT, || {
        alerts
            .logs()
            .contains(&format!("Alert rule deleted. rule={id}"))
            .then_some(())
    });
    let fired_before: Vec<String> = cluster_alert_lines(&store_db, &id);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        cluster_alert_lines(&store_db, &id),
        fired_before,
        "no firing after the delete"
    );
    for worker in [&mut ingest, &mut process, &mut alerts, &mut api, &mut store] {
        worker.kill9();
    }
}

fn cluster_alert_lines(store_db: &StoreDatabases, rule: &str) -> Vec<String> {
    store_db
        .query_text(&format!(
            "SELECT string_agg(fired_at::text, ',' ORDER BY fired_at) FROM fx_alert_history WHERE rule_id = '{rule}'"
        ))
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A small HTTP/1.1 client over tokio (the tests crate has no HTTP client dependency).
struct HttpClient;

struct Stream {
    socket: tokio::net::TcpStream,
}

impl Stream {
    /// Read until the stream's text contains `needle`; returns what was read.
    async fn until_contains(mut self, needle: &str, timeout: Duration) -> String {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buffer = [0u8; 8192];
        while !text.contains(needle) {
            match tokio::time::timeout_at(deadline, self.socket.read(&mut buffer)).await {
                Ok(Ok(n)) if n > 0 => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
                _ => panic!("no `{needle}` on the stream within {timeout:?}; read:\n{text}"),
            }
        }
        text
    }
}

impl HttpClient {
    fn new() -> HttpClient {
        HttpClient
    }

    async fn request(&self, method: &str, url: &str, key: Option<&str>, body: Option<&str>) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap();
        let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(key) = key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        socket.write_all(head.as_bytes()).await.unwrap();
        socket
    }

    async fn answer(mut socket: tokio::net::TcpStream) -> (u16, String) {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        socket.read_to_string(&mut text).await.unwrap();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    async fn get(&self, url: &str, key: &str) -> Stream {
        Stream {
            socket: self.request("GET", url, Some(key), None).await,
        }
    }

    async fn post_json(&self, url: &str, key: &str, body: &str) -> (u16, String) {
        Self::answer(self.request("POST", url, Some(key), Some(body)).await).await
    }

    async fn delete(&self, url: &str, key: &str) -> u16 {
        Self::answer(self.request("DELETE", url, Some(key), None).await).await.0
    }

    async fn wait_json(&self, url: &str, key: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let (status, body) = Self::answer(self.request("GET", url, Some(key), None).await).await;
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) {
                if status == 200 && done(&value) {
                    return value;
                }
            }
            assert!(start.elapsed() < WAIT, "timed out waiting on {url}: {status} {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A stage of `pipelines/analytics.ron`, rewired to read `crosses`, its state in memory.
fn analytics_stage_of_the_worker_file(name: &str) -> String {
    let text = std::fs::read_to_string(workspace().join("pipelines/analytics.ron")).unwrap();
    let start = text
        .find(&format!("\"{name}\": "))
        .expect("analytics.ron has the stage");
    let end = start + text[start..].find("\n        ),\n").expect("stage ends") + "\n        ),\n".len();
    text[start..end]
        .replace(r#"inputs: ["rates"]"#, r#"inputs: ["crosses"]"#)
        .lines()
        .filter(|line| !line.trim_start().starts_with("state:"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The analytics worker's final results for the replay from `from`, computed in one process:
/// closed candles and volatility readings, as JSON lines.
fn expected_analytics(dir: &Path, from: &str) -> Vec<String> {
    let file = dir.join("expected-analytics.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(
                name: "expected-analytics",
                stages: {{
                    "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "{from}",
                        currencies: ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"]),
                    "validate": Enrich(inputs: ["ecb"]),
                    "crosses": CrossRate(inputs: ["validate"]),
                    {candles}
                    {volatility}
                    "file": JsonlFile(inputs: ["candles", "volatility"], path: "{dir}/expected-analytics.jsonl"),
                }},
            )"#,
            candles = analytics_stage_of_the_worker_file("candles"),
            volatility = analytics_stage_of_the_worker_file("volatility"),
            dir = dir.display(),
        ),
    )
    .unwrap();
    let output = fxflow(&["run", file.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Bars the input ended inside are emitted by this stateless run as not final; the worker
    // keeps them open (in its state) for the next prices instead.
    std::fs::read_to_string(dir.join("expected-analytics.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.contains(r#""closed":false"#))
        .map(str::to_owned)
        .collect()
}

/// The analytics worker, `kill -9`ed four times while the replay runs (every daily bar and
/// 30-day window is open at each kill), restarts from its saved windows: every bar and every
/// volatility reading on `fx.analytics` is what one uninterrupted process computes — none
/// missing, none with a tick counted twice — and PostgreSQL holds one row for each.
#[test]
fn a_killed_analytics_worker_loses_and_double_counts_no_window() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new();
    let from = "2024-01-01";
    let expected = expected_analytics(cluster.dir.path(), from);
    let candles = expected.iter().filter(|l| l.contains(r#""kind":"Candle""#)).count();
    let readings = expected.len() - candles;
    assert!(
        candles > 28 * 700 * 4 && readings > 28 * 900,
        "{candles} bars, {readings} readings"
    );

    let store_db = StoreDatabases::create();
    let mut collect = cluster.collector_of(
        "collect-analytics",
        &[("fx.analytics", r#""Candle", "Volatility""#, "analytics.jsonl")],
    );
    let mut process = cluster.worker("process", &pipeline("process.ron"), &[]);
    let mut store = cluster.worker("store", &pipeline("store.ron"), &store_db.env());
    let one_member = [("FXFLOW_ASSIGNMENT", "AllPartitions".to_owned())];
    let mut analytics = cluster.worker("analytics", &pipeline("analytics.ron"), &one_member);
    let mut ingest = cluster.worker(
        "ingest",
        &pipeline("ingest.ron"),
        &[("FXFLOW_FROM", from.into()), ("FXFLOW_DAY", "12ms".into())],
    );
    let mut kills = 0;
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1_800));
        if !ingest.is_running() {
            break;
        }
        analytics.kill9();
        analytics.restart();
        kills += 1;
    }
    assert!(kills >= 3, "the replay ended before the kills ({kills})");
    assert!(ingest.wait(WAIT).success(), "{}", ingest.logs());
    let start = Instant::now();
    loop {
        let got = cluster.lines("analytics.jsonl");
        let unique = got.iter().collect::<HashSet<_>>().len();
        if unique >= expected.len() {
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        if start.elapsed() > WAIT {
            let have: HashSet<&String> = got.iter().collect();
            let missing: Vec<&String> = expected.iter().filter(|l| !have.contains(l)).collect();
            let wanted: HashSet<&String> = expected.iter().collect();
            let extra: Vec<&&String> = have.iter().filter(|l| !wanted.contains(**l)).take(5).collect();
            panic!(
                "{unique}/{} results collected; {} missing, e.g. {:?}\nextra, e.g. {extra:?}\n--- analytics ---\n{}",
                expected.len(),
                missing.len(),
                &missing[..missing.len().min(5)],
                tail(&analytics.logs(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = cluster.lines("analytics.jsonl");
    let repeated = assert_same_set("fx.analytics", &got, &expected);
    assert!(
        analytics.logs().matches("Window state restored.").count() >= kills as usize,
        "every restart restored the saved windows"
    );
    eprintln!(
        "analytics crash test: {kills} kills; {candles} bars and {readings} volatility readings, all exact; {repeated} emitted again after a restart"
    );
    // One row per bar and per reading in PostgreSQL.
    let count = |sql: &'static str| store_db.query(sql).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    let rows = wait_for("the analytics rows", WAIT, || {
        let rows = (
            count("SELECT count(*)::text FROM fx_candles"),
            count("SELECT count(*)::text FROM fx_volatility"),
        );
        (rows == (candles, readings)).then_some(rows)
    });
    assert_eq!(rows, (candles, readings));
    assert_eq!(count("SELECT count(*)::text FROM fx_candles WHERE NOT closed"), 0);
    for worker in [&mut analytics, &mut process, &mut store, &mut collect] {
        let status = worker.terminate(Duration::from_secs(60));
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            worker.name,
            tail(&worker.logs(), 30)
        );
    }
}

/// The signal KEDA scales a grouped worker on (its `kafka` trigger): committed lag, the sum
/// over the group's partitions of (end offset − committed offset). A member made slow on
/// purpose — its `Stdout` sink writes into a pipe this test reads at ~100 lines a second, with
/// small buffers in between — gets 160 messages a second: the lag rises. A second member joins
/// (as KEDA would add one): the group reads ~200 a second and the lag falls while the burst
/// goes on, then drains to zero once it ends.
#[test]
fn committed_lag_rises_under_a_burst_and_falls_once_a_second_member_joins() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::ClientConfig;
    use std::io::BufRead;

    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let brokers = broker.address();
    let file = dir.path().join("slow.ron");
    std::fs::write(
        &file,
        r#"Pipeline(
    name: "slow",
    resources: { "kafka": Kafka(brokers: "${KAFKA_BROKERS}", topics: { "lag.burst": (partitions: 4) }) },
    stages: {
        "in": KafkaSource(resource: "kafka", topics: ["lag.burst"], group: "lag-test", instance: "${FXFLOW_INSTANCE}",
            kinds: ["AlertRuleChange"], max_batch: 10, options: {"session.timeout.ms": "6000"}),
        "out": Stdout(inputs: ["in"], format: json, batch: (max_events: 10), buffer: (capacity: 10)),
    },
)"#,
    )
    .unwrap();
    let created = fxflow(&["topics", "create", "--resource", "kafka", file.to_str().unwrap()])
        .env("KAFKA_BROKERS", &brokers)
        .env("FXFLOW_INSTANCE", "topics")
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // A member whose output this test reads at 100 lines a second (the pipe's back-pressure
    // reaches its consumer).
    let member = |name: &str| {
        let mut child = fxflow(&["--log-format", "text", "run", file.to_str().unwrap()])
            .env("KAFKA_BROKERS", &brokers)
            .env("FXFLOW_INSTANCE", name)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        child
    };
    let lag = || -> i64 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "lag-test")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..4 {
            list.add_partition("lag.burst", p);
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
        (0..4)
            .map(|p| {
                let (_, end) = consumer
                    .fetch_watermarks("lag.burst", p, Duration::from_secs(10))
                    .unwrap();
                let done = match committed.find_partition("lag.burst", p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                end - done
            })
            .sum()
    };

    let first = member("member-1");
    std::thread::sleep(Duration::from_secs(5)); // joined, partitions assigned
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut samples: Vec<(f64, i64)> = Vec::new();
    let mut second = None;
    let mut joined_at = 0.0;
    while started.elapsed() < Duration::from_secs(30) {
        // 160 messages a second for 26 s, keys spread over the 4 partitions; long ids, so a
        // few hundred lines fill the pipe and its reading sets the member's pace.
        let due = (started.elapsed().as_secs_f64().min(26.0) * 160.0) as u64;
        while sent < due {
            let key = format!("rule-{}", sent % 16);
            let payload = format!(r#"{{"v":1,"kind":"AlertRuleChange","id":"{key}-{}"}}"#, "x".repeat(600));
            while let Err((e, _)) = producer.send(BaseRecord::to("lag.burst").key(&key).payload(&payload)) {
                assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(_)), "{e}");
                producer.poll(Duration::from_millis(10));
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        let t = started.elapsed().as_secs_f64();
        if t >= 14.0 && second.is_none() {
            second = Some(member("member-2"));
            joined_at = t;
        }
        if samples.last().is_none_or(|s| t - s.0 >= 1.0) {
            samples.push((t, lag()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let at = |t: f64| samples.iter().find(|s| s.0 >= t).map(|s| s.1).unwrap();
    let (rising_from, rising_to) = (at(3.0), at(joined_at));
    let peak = samples
        .iter()
        .filter(|s| s.0 >= joined_at && s.0 <= joined_at + 6.0)
        .map(|s| s.1)
        .max()
        .unwrap();
    let late = at(25.0);
    eprintln!("committed lag (s, messages): {samples:?}; second member at {joined_at:.1} s");
    assert!(
        rising_to > rising_from + 200,
        "one slow member: the lag rises under the burst ({rising_from} at 3 s, {rising_to} at {joined_at:.1} s)"
    );
    assert!(
        late < peak - 200,
        "two members: the lag falls while the burst goes on (peak {peak} after the join, {late} at 25 s)"
    );
    wait_for("the lag to drain", Duration::from_secs(120), || {
        (lag() == 0).then_some(())
    });
    for mut child in [Some(first), second].into_iter().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
