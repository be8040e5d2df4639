//! PostgreSQL is down for 30 s mid-stream and comes back: nothing is lost, nothing is doubled.
//! Alone in its own test binary, because it stops the shared local server.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{fresh_schema, pool, run, POSTGRES};

fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL version");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

#[tokio::test]
async fn thirty_seconds_without_postgres_lose_no_row_and_duplicate_none() {
    let metrics = fxflow_engine::metrics::install_recorder();
    let schema = fresh_schema("restart").await;
    let out = tempfile::tempdir().unwrap();
    let vars = vec![
        ("DB", POSTGRES.to_owned()),
        ("SCHEMA", schema.clone()),
        ("OUT", out.path().display().to_string()),
    ];
    let ron = r#"Pipeline(name: "pg-restart",
        resources: { "db": Postgres(url: "${DB}", schema: "${SCHEMA}", pool: (max_connections: 2, acquire_timeout: "1s")) },
        stages: {
            "walk": Synthetic(rate: 100, count: 800, seed: 5, start_time: "2026-01-01T00:00:00Z"),
            "cross": CrossRate(inputs: ["walk"]),
            "db": Postgres(inputs: ["cross"], resource: "db", migrate: true,
                retry: (attempts: 200, initial_backoff: "50ms", max_backoff: "1s")),
            "dead": JsonlFile(inputs: ["db.errors"], path: "${OUT}/dead.jsonl"),
        })"#;
    let pipeline = tokio::spawn(async move { run(ron, &vars).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tokio::task::spawn_blocking(|| {
        pg_ctl("stop");
        std::thread::sleep(Duration::from_secs(30));
        pg_ctl("start");
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(180), pipeline)
        .await
        .expect("the pipeline finishes")
        .unwrap();

    let pool = pool(&schema).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_rates")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 800 * 28, "every cross of every snapshot, once");
    assert_eq!(std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap(), "");
    let retried = fxflow_engine::testkit::counter_value(
        &metrics.render(),
        "fxflow_stage_errors_total",
        &[
            ("pipeline", "pg-restart"),
            ("stage", "db"),
            ("error_type", "write_retried"),
        ],
    );
    assert!(retried > 0.0, "the outage was real: the sink retried");
}
