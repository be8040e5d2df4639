//! The Redis sink against a real Redis server (127.0.0.1:6379, started by scripts/test.sh),
//! and against a private redis-server this test kills and restarts.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use fxflow_stages::fx::FxEvent;
use redis::AsyncCommands;

const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";

/// A key prefix no other test run uses.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("fxtest:{tag}:{}:{nanos}:", std::process::id())
}

/// Run a pipeline to the end with `${VAR}` taken from `vars`.
async fn run(ron: &str, vars: &[(&str, String)]) {
    let vars: HashMap<&str, String> = vars.iter().cloned().collect();
    let spec = fxflow_engine::pipeline_file::load_str("test.ron", ron, &fxflow_stages::registry(), |name| {
        vars.get(name).cloned()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fxflow_engine::start(spec).await.unwrap().wait().await.unwrap();
}

/// The last cross of every pair in a JSON-lines file.
fn last_per_pair(path: &std::path::Path) -> HashMap<String, (String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut last = HashMap::new();
    for line in text.lines() {
        if let FxEvent::CrossRate(c) = serde_json::from_str(line).unwrap() {
            last.insert(
                c.pair.to_string(),
                (c.bid.to_string(), c.ask.to_string(), c.ts.to_rfc3339()),
            );
        }
    }
    last
}

async fn assert_hashes_match(url: &str, prefix: &str, expected: &HashMap<String, (String, String, String)>) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(expected.len(), 28);
    for (pair, (bid, ask, ts)) in expected {
        let key = format!("{prefix}{pair}");
        let hash: HashMap<String, String> = conn.hgetall(&key).await.unwrap();
        assert_eq!(hash.get("bid"), Some(bid), "{key}");
        assert_eq!(hash.get("ask"), Some(ask), "{key}");
        assert_eq!(hash.get("ts"), Some(ts), "{key}");
        assert_eq!(hash.get("source").map(String::as_str), Some("synthetic"));
        let ttl_ms: i64 = conn.pttl(&key).await.unwrap();
        assert!((50_000..=60_000).contains(&ttl_ms), "{key} ttl {ttl_ms}");
    }
}

const PIPELINE: &str = r#"Pipeline(name: "${NAME}",
    resources: { "cache": Redis(url: "${URL}") },
    stages: {
        "walk": Synthetic(rate: ${RATE}, count: ${COUNT}, seed: 3, start_time: "2026-01-01T00:00:00Z"),
        "cross": CrossRate(inputs: ["walk"]),
        "redis": Redis(inputs: ["cross"], resource: "cache", key_prefix: "${PREFIX}", ttl: "60s", channel: "${PREFIX}updates",
            retry: (attempts: 100, initial_backoff: "20ms", max_backoff: "200ms")),
        "file": JsonlFile(inputs: ["cross"], path: "${OUT}/crosses.jsonl"),
        "dead": JsonlFile(inputs: ["redis.errors"], path: "${OUT}/dead.jsonl"),
    })"#;

#[tokio::test]
async fn keeps_the_newest_rate_per_pair_with_a_ttl_and_publishes_every_update() {
    let prefix = unique("current");
    let out = tempfile::tempdir().unwrap();
    let client = redis::Client::open(SHARED_REDIS).unwrap();
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .expect("Redis runs on 127.0.0.1:6379 (scripts/test.sh starts it)");
    pubsub.subscribe(format!("{prefix}updates")).await.unwrap();
    run(
        PIPELINE,
        &[
            ("NAME", "redis-current".into()),
            ("URL", SHARED_REDIS.into()),
            ("RATE", "0".into()),
            ("COUNT", "5".into()),
            ("PREFIX", prefix.clone()),
            ("OUT", out.path().display().to_string()),
        ],
    )
    .await;
    assert_hashes_match(SHARED_REDIS, &prefix, &last_per_pair(&out.path().join("crosses.jsonl"))).await;
    let mut messages = pubsub.on_message();
    let mut received = Vec::new();
    while received.len() < 140 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("an update")
            .unwrap();
        let payload: String = message.get_payload().unwrap();
        received.push(serde_json::from_str::<FxEvent>(&payload).unwrap());
    }
    assert!(
        received.iter().all(|e| matches!(e, FxEvent::CrossRate(_))),
        "5 snapshots × 28 crosses, each published"
    );
    assert_eq!(std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(), "");
}

/// A redis-server of our own, on a port nobody else uses, that we can kill.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh needs it)");
        let redis = OwnRedis { port, child };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test]
async fn a_redis_restart_mid_stream_loses_no_update() {
    let metrics = fxflow_engine::metrics::install_recorder();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = OwnRedis::start(port);
    let url = redis.url();
    let prefix = unique("restart");
    let out = tempfile::tempdir().unwrap();
    let vars = vec![
        ("NAME", "redis-restart".into()),
        ("URL", url.clone()),
        ("RATE", "100".into()),
        ("COUNT", "150".into()),
        ("PREFIX", prefix.clone()),
        ("OUT", out.path().display().to_string()),
    ];
    let pipeline = tokio::spawn(async move { run(PIPELINE, &vars).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let restarted = OwnRedis::start(port);
    tokio::time::timeout(Duration::from_secs(30), pipeline)
        .await
        .expect("the pipeline finishes")
        .unwrap();
    // The restarted server started empty; every update after it came back, including the last
    // of every pair, is there, and nothing was given up on.
    assert_hashes_match(&url, &prefix, &last_per_pair(&out.path().join("crosses.jsonl"))).await;
    assert_eq!(
        std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(),
        "",
        "no dead letters"
    );
    let retried = fxflow_engine::testkit::counter_value(
        &metrics.render(),
        "fxflow_stage_errors_total",
        &[
            ("pipeline", "redis-restart"),
            ("stage", "redis"),
            ("error_type", "write_retried"),
        ],
    );
    assert!(retried > 0.0, "the outage was real: the sink retried");
    restarted.kill();
}

#[test]
fn a_redis_sink_must_name_a_declared_redis_resource() {
    let ron = r#"Pipeline(name: "p", resources: { "cache": Redis(url: "redis://127.0.0.1:6379") }, stages: {
        "walk": Synthetic(count: 1),
        "cross": CrossRate(inputs: ["walk"]),
        "redis": Redis(inputs: ["cross"], resource: "cahce"),
    })"#;
    let err = fxflow_engine::pipeline_file::load_str("p.ron", ron, &fxflow_stages::registry(), |_| None).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].message, "no resource named `cahce`");
    assert_eq!(err.0[0].hint.as_deref(), Some("did you mean `cache`?"));
    assert_eq!((err.0[0].line, err.0[0].column), (4, 53));
}

fn rule_change(id: &str, pair_and_threshold: Option<(&str, &str)>) -> fxflow_engine::Envelope<FxEvent> {
    let rule = pair_and_threshold.map(|(pair, threshold)| {
        serde_json::from_value(serde_json::json!({"id": id, "pair": pair, "condition": {"Above": threshold}})).unwrap()
    });
    fxflow_engine::Envelope::unacked(FxEvent::AlertRuleChange(Box::new(fxflow_stages::fx::AlertRuleChange {
        id: id.into(),
        rule,
    })))
}

#[tokio::test]
async fn rule_changes_keep_a_cache_of_the_rules_of_each_pair() {
    use fxflow_engine::{ResourceConfig, Stage, StageConfig};
    let prefix = unique("rules");
    let handle = fxflow_stages::backends::redis::RedisResourceConfig {
        url: SHARED_REDIS.into(),
    }
    .build()
    .await
    .unwrap();
    let mut resources = fxflow_engine::Resources::default();
    resources.insert("cache".into(), handle);
    let cx = fxflow_engine::BuildContext {
        pipeline: "t".into(),
        stage: "current".into(),
        resources,
        readiness: Default::default(),
        stages: Default::default(),
        replaces_running: false,
    };
    let config: fxflow_stages::sinks::redis::RedisConfig =
        serde_json::from_value(serde_json::json!({"resource": "cache", "rules_prefix": prefix})).unwrap();
    let Stage::Sink(mut sink) = config.build(&cx).await.unwrap() else {
        panic!("a sink")
    };
    sink.write(&[
        rule_change("a", Some(("EUR/USD", "1.10"))),
        rule_change("b", Some(("EUR/USD", "1.20"))),
        rule_change("c", Some(("GBP/USD", "1.30"))),
    ])
    .await
    .unwrap();
    // `a` moves to GBP/USD, `b` is deleted, `c` changes twice in one batch (the last wins).
    let second = [
        rule_change("a", Some(("GBP/USD", "1.25"))),
        rule_change("b", None),
        rule_change("c", Some(("GBP/USD", "1.31"))),
        rule_change("c", Some(("GBP/USD", "1.32"))),
    ];
    sink.write(&second).await.unwrap();
    sink.write(&second).await.unwrap(); // redelivered: same state

    let client = redis::Client::open(SHARED_REDIS).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let eur_usd: HashMap<String, String> = redis.hgetall(format!("{prefix}EUR/USD")).await.unwrap();
    assert!(eur_usd.is_empty(), "a moved away, b deleted: {eur_usd:?}");
    let gbp_usd: HashMap<String, String> = redis.hgetall(format!("{prefix}GBP/USD")).await.unwrap();
    let thresholds: HashMap<&str, serde_json::Value> = gbp_usd
        .iter()
        .map(|(id, json)| {
            let rule: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(rule["id"], id.as_str());
            (id.as_str(), rule["condition"]["Above"].clone())
        })
        .collect();
    assert_eq!(thresholds.len(), 2, "{gbp_usd:?}");
    assert_eq!(thresholds["a"], "1.25");
    assert_eq!(thresholds["c"], "1.32");
    let index: HashMap<String, String> = redis.hgetall(format!("{prefix}index")).await.unwrap();
    assert_eq!(
        index,
        HashMap::from([("a".into(), "GBP/USD".into()), ("c".into(), "GBP/USD".into())])
    );
    let ttl: i64 = redis.ttl(format!("{prefix}GBP/USD")).await.unwrap();
    assert_eq!(ttl, -1, "rules are state: no TTL");
}
