//! The Postgres sink against the real local PostgreSQL, one fresh schema per test.

mod support;

use std::sync::Arc;

use fxflow_engine::{Envelope, Sink};
use fxflow_stages::backends::postgres::migrate;
use fxflow_stages::fx::{AlertFired, CrossRate, Currency, FxEvent, Pair, SourceName};
use fxflow_stages::sinks::postgres;
use rust_decimal::Decimal;
use support::{fresh_schema, pool, run, CSV, POSTGRES};

const REPLAY: &str = r#"Pipeline(name: "${NAME}",
    resources: { "db": Postgres(url: "${DB}", schema: "${SCHEMA}") },
    stages: {
        "ecb": Replay(path: "${CSV}", from: "2026-09-01", to: "2026-10-30"),
        "enrich": Enrich(inputs: ["ecb"]),
        "cross": CrossRate(inputs: ["enrich"]),
        "db": Postgres(inputs: ["cross"], resource: "db", migrate: true),
        "dead": JsonlFile(inputs: ["db.errors"], path: "${OUT}/dead.jsonl"),
    })"#;

async fn count(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_replay_stored_twice_leaves_one_row_per_pair_day_and_source() {
    let schema = fresh_schema("replay").await;
    let out = tempfile::tempdir().unwrap();
    let vars = [
        ("NAME", "pg-replay".to_owned()),
        ("DB", POSTGRES.to_owned()),
        ("SCHEMA", schema.clone()),
        ("CSV", CSV.to_owned()),
        ("OUT", out.path().display().to_string()),
    ];
    run(REPLAY, &vars).await;
    let pool = pool(&schema).await;
    let rows = count(&pool, "SELECT count(*) FROM fx_rates").await;
    let days = count(&pool, "SELECT count(DISTINCT ts) FROM fx_rates").await;
    assert_eq!(days, 44, "business days of Sep–Oct 2026 in the file");
    assert_eq!(rows, days * 28);
    run(REPLAY, &vars).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fx_rates").await,
        rows,
        "a second replay adds nothing"
    );

    let gbpjpy: String = sqlx::query_scalar(
        "SELECT bid::text FROM fx_rates WHERE pair = 'GBP/JPY' AND ts = '2026-10-30' AND source = 'ecb'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let exact = Decimal::new(17568, 2) / Decimal::new(8338, 4);
    assert_eq!(gbpjpy, exact.to_string(), "numeric keeps every digit");
    // Monthly partitions were made before the inserts; nothing fell into the default partition.
    assert_eq!(count(&pool, "SELECT count(*) FROM fx_rates_default").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM fx_rates_y2026m10").await, 22 * 28);
    assert_eq!(std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(), "");
}

fn crosses(n: usize, offset_ms: i64) -> Vec<Envelope<FxEvent>> {
    let t0: chrono::DateTime<chrono::Utc> = "2026-10-30T00:00:00Z".parse().unwrap();
    let source = SourceName::intern("batch-test").unwrap();
    (0..n)
        .map(|i| {
            let bid = Decimal::new(11_000 + i as i64, 4);
            Envelope::unacked(FxEvent::CrossRate(CrossRate {
                pair: "EUR/USD".parse().unwrap(),
                bid,
                ask: bid + Decimal::new(2, 4),
                ts: t0 + chrono::Duration::milliseconds(offset_ms + i as i64),
                source,
                via: Currency::USD,
            }))
        })
        .collect()
}

#[tokio::test]
async fn batches_of_any_size_are_stored_once() {
    let schema = fresh_schema("batches").await;
    let pool = pool(&schema).await;
    migrate(&pool).await.unwrap();
    let mut sink = postgres::sink(pool.clone());
    for (size, offset) in [(1usize, 0i64), (999, 1), (1000, 1_000), (5000, 2_000)] {
        sink.write(&crosses(size, offset)).await.unwrap();
    }
    // The batches overlap (999 rows from ms 1, then 1000 from ms 1000, …): overlaps are not duplicated.
    assert_eq!(count(&pool, "SELECT count(*) FROM fx_rates").await, 7000);
    let again = crosses(5000, 2_000);
    sink.write(&again).await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fx_rates").await,
        7000,
        "the same batch twice adds nothing"
    );
}

#[tokio::test]
async fn a_row_the_database_rejects_is_reported_alone_with_its_message() {
    let schema = fresh_schema("reject").await;
    let pool = pool(&schema).await;
    migrate(&pool).await.unwrap();
    let mut sink = postgres::sink(pool.clone());
    let mut batch = crosses(5, 0);
    // PostgreSQL refuses NUL bytes in text.
    if let FxEvent::CrossRate(c) = &mut batch[2].event {
        c.source = SourceName::intern("bad\0source").unwrap();
    }
    let error = sink.write(&batch).await.unwrap_err();
    assert_eq!(error.items.len(), 1, "{error:?}");
    assert_eq!(error.items[0].index, 2);
    assert!(!error.items[0].retryable);
    assert!(
        error.items[0].message.contains("0x00"),
        "the database's message: {}",
        error.items[0].message
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fx_rates").await,
        4,
        "the good rows are stored"
    );
}

#[tokio::test]
async fn alert_firings_are_stored_idempotently() {
    let schema = fresh_schema("alerts").await;
    let pool = pool(&schema).await;
    migrate(&pool).await.unwrap();
    let mut sink = postgres::sink(pool.clone());
    let fired = |rule: &str, value: i64, previous: Option<Decimal>| {
        Envelope::unacked(FxEvent::AlertFired(AlertFired {
            rule_id: Arc::from(rule),
            pair: "EUR/USD".parse::<Pair>().unwrap(),
            condition: Arc::from("above 1.1"),
            value: Decimal::new(value, 4),
            previous,
            ts: "2026-10-30T00:00:00Z".parse().unwrap(),
            source: SourceName::intern("ecb").unwrap(),
            tenant: None,
        }))
    };
    let batch = vec![
        fired("a", 11_172, Some(Decimal::new(11_130, 4))),
        fired("b", 11_172, None),
    ];
    sink.write(&batch).await.unwrap();
    sink.write(&batch).await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM fx_alert_history").await, 2);
    let previous: Option<String> =
        sqlx::query_scalar("SELECT previous::text FROM fx_alert_history WHERE rule_id = 'a'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(previous.as_deref(), Some("1.1130"));
}

#[tokio::test]
async fn fxflow_migrate_is_idempotent() {
    let schema = fresh_schema("migrate").await;
    let config = fxflow_stages::backends::postgres::PostgresResourceConfig {
        url: POSTGRES.into(),
        schema: Some(schema.clone()),
        pool: Default::default(),
    };
    use fxflow_engine::ResourceConfig;
    assert!(config.migrate().await.unwrap());
    assert!(config.migrate().await.unwrap(), "running it again is a no-op");
    let pool = pool(&schema).await;
    let tables = count(&pool, "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('fx_rates', 'fx_alert_rules', 'fx_alert_history')").await;
    assert_eq!(tables, 3);
}
