//! The SQLite sink on a real database file: idempotent, exact, and still there after a reopen.

mod support;

use fxflow_stages::backends::sqlite::SqliteResourceConfig;
use rust_decimal::Decimal;
use support::{run, CSV};

const REPLAY: &str = r#"Pipeline(name: "${NAME}",
    resources: { "db": Sqlite(path: "${DB}") },
    stages: {
        "ecb": Replay(path: "${CSV}", from: "2026-09-01", to: "2026-10-30"),
        "enrich": Enrich(inputs: ["ecb"]),
        "cross": CrossRate(inputs: ["enrich"]),
        "alerts": Alert(inputs: ["cross"], rules: [(id: "up", pair: "EUR/USD", condition: Above(1.10))]),
        "db": Sqlite(inputs: ["cross", "alerts"], resource: "db"),
        "dead": JsonlFile(inputs: ["db.errors"], path: "${OUT}/dead.jsonl"),
    })"#;

#[tokio::test]
async fn a_replay_stored_twice_leaves_one_row_per_pair_day_and_source_and_survives_a_reopen() {
    let out = tempfile::tempdir().unwrap();
    let db = out.path().join("nested/fx.db");
    let vars = [
        ("NAME", "sqlite-replay".to_owned()),
        ("DB", db.display().to_string()),
        ("CSV", CSV.to_owned()),
        ("OUT", out.path().display().to_string()),
    ];
    run(REPLAY, &vars).await;
    run(REPLAY, &vars).await;
    // A new pool on the same file: what is there was committed, not cached.
    let pool = SqliteResourceConfig { path: db }.connect().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_rates")
        .fetch_one(pool.reads())
        .await
        .unwrap();
    assert_eq!(rows, 44 * 28, "44 ECB days of Sep–Oct 2026, 28 crosses each, once");
    let fired: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_alert_history")
        .fetch_one(pool.reads())
        .await
        .unwrap();
    assert_eq!(fired, 1, "the once-rule fired once, stored once");
    let bid: String = sqlx::query_scalar("SELECT bid FROM fx_rates WHERE pair = 'GBP/JPY' AND ts LIKE '2026-10-30%'")
        .fetch_one(pool.reads())
        .await
        .unwrap();
    assert_eq!(
        bid,
        (Decimal::new(17568, 2) / Decimal::new(8338, 4)).to_string(),
        "every digit kept"
    );
    let first: String = sqlx::query_scalar("SELECT min(ts) FROM fx_rates")
        .fetch_one(pool.reads())
        .await
        .unwrap();
    assert_eq!(first, "2026-09-01T00:00:00.000000Z", "timestamps sort as text");
    assert_eq!(std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(), "");
}

/// The embedded default's writers share one file: the history sink commits batch after
/// batch while the API stores a rule. SQLite lets one writer in at a time and does not
/// queue the others fairly (each polls the lock), so a rule write could starve past the
/// busy timeout and the API answered 503 (`database is locked`). Writers in one process
/// now queue for the file in order: under a sink writing as fast as it can, every rule
/// write succeeds.
#[tokio::test]
async fn a_rule_write_beside_a_sink_writing_flat_out_never_finds_the_database_locked() {
    use chrono::{Duration, TimeZone, Utc};
    use fxflow_stages::backends::sqlite::store::SqliteStore;
    use fxflow_stages::fx::{AlertRuleChange, FxEvent, Quote, SourceName};
    use fxflow_stages::store::HistoryStore;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let database = SqliteResourceConfig {
        path: dir.path().join("fx.db"),
    }
    .connect()
    .await
    .unwrap();
    fxflow_stages::backends::sqlite::migrate(&database).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let source = SourceName::intern("ecb").unwrap();
    let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    // Three sinks (history, candles, firings in the embedded default) writing flat out.
    let sinks: Vec<_> = (0..3i64)
        .map(|sink| {
            let store = SqliteStore::new(database.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut batches = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let events: Vec<FxEvent> = (0..400i64)
                        .map(|i| {
                            FxEvent::Quote(Quote {
                                pair: "EUR/USD".parse().unwrap(),
                                bid: Decimal::new(10850 + i, 4),
                                ask: Decimal::new(10852 + i, 4),
                                ts: t0 + Duration::seconds((batches * 400 + i) * 3 + sink),
                                source,
                                enrichment: None,
                            })
                        })
                        .collect();
                    let refs: Vec<&FxEvent> = events.iter().collect();
                    store.write(&refs).await.expect("a sink batch");
                    batches += 1;
                }
                batches
            })
        })
        .collect();
    let api = SqliteStore::new(database.clone());
    let mut failures = Vec::new();
    for n in 0..40 {
        let rule = serde_json::from_value(serde_json::json!({
            "id": format!("r{n}"), "pair": "EUR/USD", "condition": {"Above": "1.2"},
        }))
        .unwrap();
        let change = FxEvent::AlertRuleChange(Box::new(AlertRuleChange {
            id: format!("r{n}"),
            rule: Some(rule),
        }));
        if let Err(error) = api.write(&[&change]).await {
            failures.push(error.to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut batches = 0;
    for sink in sinks {
        batches += sink.await.unwrap();
    }
    assert!(failures.is_empty(), "rule writes failed: {failures:?}");
    assert!(batches > 3, "the sinks kept writing ({batches} batches)");
    let rules: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_alert_rules")
        .fetch_one(database.reads())
        .await
        .unwrap();
    assert_eq!(rules, 40);
}
