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
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 44 * 28, "44 ECB days of Sep–Oct 2026, 28 crosses each, once");
    let fired: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_alert_history")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fired, 1, "the once-rule fired once, stored once");
    let bid: String = sqlx::query_scalar("SELECT bid FROM fx_rates WHERE pair = 'GBP/JPY' AND ts LIKE '2026-10-30%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        bid,
        (Decimal::new(17568, 2) / Decimal::new(8338, 4)).to_string(),
        "every digit kept"
    );
    let first: String = sqlx::query_scalar("SELECT min(ts) FROM fx_rates")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(first, "2026-09-01T00:00:00.000000Z", "timestamps sort as text");
    assert_eq!(std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(), "");
}
