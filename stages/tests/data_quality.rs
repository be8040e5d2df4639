//! The data-quality rules through real pipelines: a replay of the ECB history with one
//! business day removed (`Stale` in event time), a live feed that stops (`Stale` by the wall
//! clock), and a second provider 50 bps off the first (`Divergence`).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fxflow_stages::fx::{AlertFired, FxEvent};

async fn start(ron: &str) -> fxflow_engine::RunningPipeline<FxEvent> {
    let spec = fxflow_engine::pipeline_file::load_str("test.ron", ron, &fxflow_stages::registry(), |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    fxflow_engine::start(spec).await.unwrap()
}

fn events(path: &Path) -> Vec<FxEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn firings(path: &Path) -> Vec<AlertFired> {
    events(path)
        .into_iter()
        .filter_map(|e| match e {
            FxEvent::AlertFired(f) => Some(f),
            _ => None,
        })
        .collect()
}

const QUOTED: [&str; 7] = ["GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"];

#[tokio::test]
async fn a_replay_missing_one_ecb_day_fires_stale_once_for_each_quoted_pair() {
    let out = tempfile::tempdir().unwrap();
    // March and April 2024 (Good Friday, Easter Monday and eight weekends inside), without
    // Wednesday 10 April.
    let history = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ecb-eurofxref-hist.csv");
    let text = std::fs::read_to_string(history).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    for line in lines.filter(|l| l.starts_with("2024-03") || l.starts_with("2024-04")) {
        if !line.starts_with("2024-04-10") {
            csv.push_str(line);
            csv.push('\n');
        }
    }
    let path = out.path().join("ecb.csv");
    std::fs::write(&path, csv).unwrap();
    let rules: Vec<String> = QUOTED
        .iter()
        .map(|c| format!(r#"(id: "stale-{c}", pair: "EUR/{c}", condition: Stale(max_age: "1d"), trigger: Every())"#))
        .collect();
    let alerts = out.path().join("alerts.jsonl");
    let ron = format!(
        r#"Pipeline(name: "stale", stages: {{
            "ecb": Replay(path: "{path}", currencies: ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"]),
            "validate": Enrich(inputs: ["ecb"]),
            "crosses": CrossRate(inputs: ["validate"]),
            "alerts": Alert(inputs: ["crosses"], rules: [{rules}]),
            "out": JsonlFile(inputs: ["alerts"], path: "{alerts}"),
        }})"#,
        path = path.display(),
        rules = rules.join(", "),
        alerts = alerts.display(),
    );
    start(&ron).await.wait().await.unwrap();
    let fired = firings(&alerts);
    let mut pairs: Vec<String> = fired.iter().map(|f| f.pair.to_string()).collect();
    pairs.sort();
    let mut expected: Vec<String> = QUOTED.iter().map(|c| format!("EUR/{c}")).collect();
    expected.sort();
    assert_eq!(pairs, expected, "{fired:#?}");
    let tuesday: DateTime<Utc> = "2024-04-09T00:00:00Z".parse().unwrap();
    for f in &fired {
        assert_eq!(f.ts, tuesday + chrono::Duration::days(1), "{f:?}");
        assert!(
            f.condition.contains(&format!("no {} tick since 2024-04-09", f.pair)),
            "the reason: {f:?}"
        );
    }
}

#[tokio::test]
async fn a_live_feed_that_stops_fires_stale_by_the_wall_clock() {
    let out = tempfile::tempdir().unwrap();
    // Keeps the pipeline running without sending a price: a provider that never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(std::future::pending::<&'static str>);
        axum::serve(listener, app).await.unwrap()
    });
    let quotes = out.path().join("quotes.jsonl");
    let alerts = out.path().join("alerts.jsonl");
    let ron = format!(
        r#"Pipeline(name: "live", stages: {{
            "feed": Synthetic(rate: 20, count: 10),
            "silent": HttpPoll(provider: Frankfurter, url: "{silent}", base: "USD", symbols: ["EUR"],
                interval: "1h", timeout: "1h"),
            "validate": Enrich(inputs: ["feed", "silent"]),
            "crosses": CrossRate(inputs: ["validate"]),
            "quotes": JsonlFile(inputs: ["crosses"], path: "{quotes}"),
            "alerts": Alert(inputs: ["crosses"], rules: [
                (id: "eurusd-stale", pair: "EUR/USD",
                    condition: Stale(max_age: "2s", calendar: Continuous)),
            ]),
            "out": JsonlFile(inputs: ["alerts"], path: "{alerts}"),
        }})"#,
        quotes = quotes.display(),
        alerts = alerts.display(),
    );
    let running = start(&ron).await;
    let started = Instant::now();
    let fired = loop {
        let fired = firings(&alerts);
        if !fired.is_empty() {
            break fired;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Stale firing in a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let arrived = Utc::now();
    running.stop(Duration::from_secs(5)).await.unwrap();
    let last_tick = events(&quotes)
        .into_iter()
        .filter_map(|e| match e {
            FxEvent::CrossRate(c) if c.pair.to_string() == "EUR/USD" => Some(c.ts),
            _ => None,
        })
        .max()
        .expect("the feed sent EUR/USD");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        fired[0].ts,
        last_tick + chrono::Duration::seconds(2),
        "stamped at the deadline"
    );
    assert!(fired[0].condition.contains("no EUR/USD tick since"), "{:?}", fired[0]);
    // The event clock never reached the deadline: only the wall clock could fire it.
    eprintln!(
        "Stale fired {} ms after the deadline (by the wall clock)",
        (arrived - fired[0].ts).num_milliseconds()
    );
}

#[tokio::test]
async fn a_second_provider_50_bps_off_fires_divergence() {
    let out = tempfile::tempdir().unwrap();
    let alerts = out.path().join("alerts.jsonl");
    // Two flat feeds 50 bps apart (the sources run at their own pace, so random walks would
    // not stay in step).
    let ron = format!(
        r#"Pipeline(name: "divergence", stages: {{
            "a": Synthetic(rate: 0, count: 200, volatility_bp: 0, source: "primary", start_time: "2026-01-05T10:00:00Z",
                start: {{ "EUR/USD": "1.0000" }}),
            "b": Synthetic(rate: 0, count: 200, volatility_bp: 0, source: "backup", start_time: "2026-01-05T10:00:00Z",
                start: {{ "EUR/USD": "1.0050" }}),
            "validate": Enrich(inputs: ["a", "b"]),
            "crosses": CrossRate(inputs: ["validate"]),
            "alerts": Alert(inputs: ["crosses"], rules: [
                (id: "apart-45", pair: "EUR/USD",
                    condition: Divergence(bps: 45, sources: ["primary", "backup"])),
                (id: "apart-55", pair: "EUR/USD",
                    condition: Divergence(bps: 55, sources: ["primary", "backup"])),
            ]),
            "out": JsonlFile(inputs: ["alerts"], path: "{alerts}"),
        }})"#,
        alerts = alerts.display(),
    );
    start(&ron).await.wait().await.unwrap();
    let fired = firings(&alerts);
    let ids: Vec<&str> = fired.iter().map(|f| &*f.rule_id).collect();
    assert_eq!(ids, ["apart-45"], "{fired:#?}");
    assert!(
        fired[0].condition.contains("bps apart (more than 45)"),
        "{:?}",
        fired[0]
    );
    let (value, previous) = (fired[0].value, fired[0].previous.unwrap());
    let bps = (value - previous).abs() / ((value + previous) / rust_decimal::Decimal::TWO)
        * rust_decimal::Decimal::from(10_000);
    assert!(
        bps > rust_decimal::Decimal::from(45) && bps < rust_decimal::Decimal::from(55),
        "{bps}"
    );
}
