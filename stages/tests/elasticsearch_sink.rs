//! The Elasticsearch sink against a real search engine: OpenSearch 2.19 — Lucene with real
//! mappings, `_bulk` and per-item errors — started from Maven Central jars by our launcher
//! (`scripts/search.sh run`, deployments/opensearch). The sink speaks the Elasticsearch 8/9
//! REST API that users run with Kibana; OpenSearch answers that same API for everything the
//! sink uses (index templates, `_bulk`, `_count`, `_search`), as these tests show. What it
//! cannot show: Elasticsearch's own product check header and `document_parsing_exception`
//! naming (OpenSearch says `mapper_parsing_exception`); the sink relies on neither.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fxflow_engine::{Envelope, Stage, StageConfig};
use fxflow_stages::fx::{CrossRate, Currency, FxEvent, SourceName};
use fxflow_stages::sinks::elasticsearch::ElasticsearchConfig;
use rust_decimal::Decimal;
use serde_json::Value;
use support::{run, unique, CSV};

/// A single-node OpenSearch on a free port, with its own data folder; killed on drop.
struct SearchNode {
    port: u16,
    child: Child,
    _data: tempfile::TempDir,
}

impl SearchNode {
    fn start() -> SearchNode {
        let data = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/search.sh");
        let child = Command::new(script)
            .args(["run", "--http-port", "0", "--data"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scripts/search.sh runs (Java 17 and Maven; scripts/test.sh builds it)");
        let port_file = data.path().join("http.port");
        let start = Instant::now();
        // Built first, so a failed start still kills the process (Drop).
        let mut node = SearchNode {
            port: 0,
            child,
            _data: data,
        };
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                node.port = port;
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("OpenSearch exited at start: {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(120), "OpenSearch did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn get(&self, path: &str) -> Value {
        http("GET", &format!("{}{path}", self.url()), None).await
    }
}

impl Drop for SearchNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny HTTP/1.1 client (the tests need three calls; no extra dependency).
async fn http(method: &str, url: &str, body: Option<&str>) -> Value {
    serde_json::from_str(&http_text(method, url, body).await).unwrap_or(Value::Null)
}

async fn http_text(method: &str, url: &str, body: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, payload) = response.split_once("\r\n\r\n").unwrap();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

const PIPELINE: &str = r#"Pipeline(name: "${NAME}",
    resources: { "es": Elasticsearch(url: "${URL}") },
    stages: {
        "ecb": Replay(path: "${CSV}", from: "2026-09-01", to: "2026-10-30"),
        "enrich": Enrich(inputs: ["ecb"]),
        "cross": CrossRate(inputs: ["enrich"]),
        "alerts": Alert(inputs: ["cross"], rules: [(id: "up", pair: "EUR/USD", condition: Above(1.10))]),
        "candles": Candles(inputs: ["cross"], intervals: ["1d"]),
        "volatility": Volatility(inputs: ["cross"], window: "30d", annualise: ReturnsPerYear(252)),
        "es": Elasticsearch(inputs: ["cross", "alerts", "candles", "volatility"], resource: "es", index: "${INDEX}",
            alerts_index: "${INDEX}-alerts", candles_index: "${INDEX}-candles", volatility_index: "${INDEX}-volatility",
            max_events: 300),
        "dead": JsonlFile(inputs: ["es.errors"], path: "${OUT}/dead.jsonl"),
    })"#;

/// One node for both stories (a node is ~250 MB and a few seconds of two cores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_search_engine() {
    let es = SearchNode::start();
    a_replay_indexed_twice_leaves_one_document_per_pair_day_and_source(&es).await;
    documents_a_mapping_refuses_are_reported_each_with_the_reason(&es).await;
}

async fn a_replay_indexed_twice_leaves_one_document_per_pair_day_and_source(es: &SearchNode) {
    let index = unique("rates").to_lowercase().replace('_', "-");
    let out = tempfile::tempdir().unwrap();
    let vars = [
        ("NAME", "es-replay".to_owned()),
        ("URL", es.url()),
        ("CSV", CSV.to_owned()),
        ("INDEX", index.clone()),
        ("OUT", out.path().display().to_string()),
    ];
    run(PIPELINE, &vars).await;
    run(PIPELINE, &vars).await;
    let template = es.get(&format!("/_index_template/fxflow-{index}")).await;
    assert_eq!(
        template["index_templates"][0]["index_template"]["template"]["mappings"]["properties"]["pair"]["type"],
        "keyword"
    );
    http("POST", &format!("{}/{index}/_refresh", es.url()), None).await;
    http("POST", &format!("{}/{index}-alerts/_refresh", es.url()), None).await;
    let count = es.get(&format!("/{index}/_count")).await;
    assert_eq!(
        count["count"],
        44 * 28,
        "ids are natural keys: the second run overwrote, not added"
    );
    let alerts = es.get(&format!("/{index}-alerts/_count")).await;
    assert_eq!(alerts["count"], 1);
    // A bar per pair and ECB day (the last one emitted as not final when the replay ended), and a
    // volatility reading per pair and calendar day from 2026-09-04 (the first window with two
    // returns) to 2026-10-30: 57 days.
    for kind in ["candles", "volatility"] {
        http("POST", &format!("{}/{index}-{kind}/_refresh", es.url()), None).await;
    }
    assert_eq!(es.get(&format!("/{index}-candles/_count")).await["count"], 44 * 28);
    assert_eq!(es.get(&format!("/{index}-volatility/_count")).await["count"], 57 * 28);
    let template = es.get(&format!("/_index_template/fxflow-{index}-volatility")).await;
    assert_eq!(
        template["index_templates"][0]["index_template"]["template"]["mappings"]["properties"]["volatility"]["type"],
        "double"
    );
    let newest = r#"{"query":{"term":{"pair":"EUR/USD"}},"sort":[{"ts":"desc"}],"size":1}"#;
    let hit = http(
        "POST",
        &format!("{}/{index}-volatility/_search", es.url()),
        Some(newest),
    )
    .await;
    let reading = &hit["hits"]["hits"][0]["_source"];
    assert_eq!(
        (reading["window"].as_str(), reading["ts"].as_str()),
        (Some("30d"), Some("2026-10-30T00:00:00.000000Z"))
    );
    assert!(reading["volatility"].as_f64().unwrap() > 0.0 && reading["samples"].as_u64().unwrap() >= 20);
    let query = r#"{"query":{"term":{"pair":"GBP/JPY"}},"size":100}"#;
    let hits = http("POST", &format!("{}/{index}/_search", es.url()), Some(query)).await;
    assert_eq!(hits["hits"]["total"]["value"], 44);
    // Lucene keeps `_source` as sent: every digit of the exact cross survives (read as text:
    // a JSON parser would round the number through a double).
    let raw = http_text("POST", &format!("{}/{index}/_search", es.url()), Some(query)).await;
    let bid = raw
        .split("\"bid\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .unwrap();
    let digits = bid.chars().filter(char::is_ascii_digit).count();
    assert!(
        digits >= 25 && bid.parse::<Decimal>().is_ok(),
        "exact digits in _source: {bid}"
    );
    // Aggregations work on the mapped fields (what Kibana's panels ask).
    let agg = r#"{"size":0,"aggs":{"pairs":{"terms":{"field":"pair","size":50}},"avg_mid":{"avg":{"field":"mid"}}}}"#;
    let answer = http("POST", &format!("{}/{index}/_search", es.url()), Some(agg)).await;
    assert_eq!(answer["aggregations"]["pairs"]["buckets"].as_array().unwrap().len(), 28);
    assert!(answer["aggregations"]["avg_mid"]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(), "");
}

fn crosses(n: usize) -> Vec<Envelope<FxEvent>> {
    let t0: chrono::DateTime<chrono::Utc> = "2026-10-30T00:00:00Z".parse().unwrap();
    (0..n)
        .map(|i| {
            let bid = Decimal::new(17568, 2) / Decimal::new(8338, 4);
            Envelope::unacked(FxEvent::CrossRate(CrossRate {
                pair: "GBP/JPY".parse().unwrap(),
                bid,
                ask: bid,
                ts: t0 + chrono::Duration::seconds(i as i64),
                source: SourceName::intern("es-test").unwrap(),
                via: Currency::EUR,
            }))
        })
        .collect()
}

async fn documents_a_mapping_refuses_are_reported_each_with_the_reason(es: &SearchNode) {
    let index = unique("bad").to_lowercase().replace('_', "-");
    // An index made elsewhere whose mapping cannot take our prices.
    let created = http(
        "PUT",
        &format!("{}/{index}", es.url()),
        Some(r#"{"mappings":{"properties":{"bid":{"type":"boolean"}}}}"#),
    )
    .await;
    assert_eq!(created["acknowledged"], true);
    let mut resources = fxflow_engine::Resources::default();
    let resource = fxflow_stages::backends::elasticsearch::ElasticsearchResourceConfig {
        url: es.url(),
        auth: None,
    };
    resources.insert("es".into(), std::sync::Arc::new(resource.client().unwrap()));
    let cx = fxflow_engine::BuildContext {
        pipeline: "t".into(),
        stage: "es".into(),
        resources,
        readiness: Default::default(),
        stages: Default::default(),
        replaces_running: false,
    };
    let config = ElasticsearchConfig {
        resource: "es".into(),
        index: index.clone(),
        alerts_index: format!("{index}-alerts"),
        candles_index: format!("{index}-candles"),
        volatility_index: format!("{index}-volatility"),
        install_templates: false,
        max_events: 2,
        max_bytes: 1 << 20,
    };
    let Stage::Sink(mut sink) = config.build(&cx).await.unwrap() else {
        panic!("a sink")
    };
    let error = sink.write(&crosses(5)).await.unwrap_err();
    assert_eq!(
        error.items.iter().map(|i| i.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4],
        "every item, across 3 bulk requests"
    );
    assert!(
        error.items.iter().all(|i| !i.retryable),
        "a mapping conflict is not retried"
    );
    assert!(
        error.items[0].message.contains("(400)") && error.items[0].message.contains("bid"),
        "{}",
        error.items[0].message
    );
}

#[tokio::test]
async fn prices_are_sent_with_every_decimal_digit() {
    // What goes over the wire, checked on our side too.
    let config = ElasticsearchConfig {
        resource: "es".into(),
        index: "fx-rates".into(),
        alerts_index: "fx-alerts".into(),
        candles_index: "fx-candles".into(),
        volatility_index: "fx-volatility".into(),
        install_templates: false,
        max_events: 10,
        max_bytes: 1 << 20,
    };
    let doc = fxflow_stages::sinks::elasticsearch::document_lines(&config, &crosses(1)[0].event).unwrap();
    let exact = (Decimal::new(17568, 2) / Decimal::new(8338, 4)).to_string();
    assert!(
        doc.0.contains(r#""_id":"GBP/JPY|2026-10-30T00:00:00.000000Z|es-test""#),
        "{}",
        doc.0
    );
    assert!(doc.1.contains(&format!(r#""bid":{exact}"#)), "{}", doc.1);
    let parsed: Value = serde_json::from_str(&doc.1).expect("valid JSON");
    assert_eq!(parsed["pair"], "GBP/JPY");
}
