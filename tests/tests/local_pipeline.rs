//! A user's story: "I run the embedded default, watch its metrics, press Ctrl-C,
//! and everything it printed is also safely in the history file."

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, http_get, wait_for};

#[test]
fn the_local_pipeline_prints_crosses_and_alerts_serves_metrics_and_drains_on_ctrl_c() {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = fxflow(&["run", "pipelines/local.ron"])
        .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}"))
        .env("FXFLOW_API", format!("127.0.0.1:{}", free_port()))
        .env("FXFLOW_FROM", "2025-06-01")
        .env("FXFLOW_DAY", "10ms")
        .env("FXFLOW_OUT", out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };

    let (status, body) = wait_for("/ready", Duration::from_secs(60), || {
        http_get(port, "/ready").ok().filter(|(s, _)| *s == 200)
    });
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true, "{body}");
    assert_eq!(
        ready["components"]["api: store"]["ready"], true,
        "the API's store answers: {body}"
    );
    let (status, _) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200);
    let (status, body) = http_get(port, "/nope").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "JSON error body: {body}");

    // An alert from June 2025 (EUR/USD above 1.15) shows the whole chain works.
    wait_for("an alert on stdout", Duration::from_secs(60), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ALERT eurusd-above-1.15 EUR/USD above 1.15"))
            .then_some(())
    });
    let metrics = wait_for("per-stage counters", Duration::from_secs(30), || {
        let (_, body) = http_get(port, "/metrics").ok()?;
        body.contains("fxflow_stage_sent_events_total{pipeline=\"local\",stage=\"alerts\",kind=\"AlertFired\"}")
            .then_some(body)
    });
    for expected in [
        "fxflow_stage_received_events_total{pipeline=\"local\",stage=\"validate\",kind=\"QuoteSnapshot\"}",
        "fxflow_stage_sent_events_total{pipeline=\"local\",stage=\"crosses\",kind=\"CrossRate\"}",
        "fxflow_stage_received_events_total{pipeline=\"local\",stage=\"history\",kind=\"CrossRate\"}",
        "fxflow_stage_processing_seconds_bucket{pipeline=\"local\",stage=\"crosses\"",
        "fxflow_channel_utilization{pipeline=\"local\",stage=\"print\"}",
        "fxflow_alerts_fired_total{pipeline=\"local\",stage=\"alerts\",pair=\"EUR/USD\"}",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in:\n{metrics}");
    }

    // Ctrl-C: the replay stops, in-flight events drain, the process exits 0.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_for("exit after SIGINT", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(exit.success(), "exit {exit:?}, stderr:\n{stderr}");
    assert!(stderr.contains("Shutting down"), "{stderr}");

    let printed = lines.lock().unwrap().clone();
    let crosses = printed.iter().filter(|l| l.contains(" bid ")).count();
    let alerts = printed.iter().filter(|l| l.contains(" ALERT ")).count();
    assert!(
        crosses > 28 && crosses % 28 == 0,
        "whole days of 28 crosses were printed: {crosses}"
    );
    let (stored_crosses, stored_alerts, first_bid) = stored(&out.path().join("fx.db"));
    assert_eq!(
        (stored_crosses, stored_alerts),
        (crosses as i64, alerts as i64),
        "both sinks got every event before exit"
    );
    assert!(
        first_bid.contains('.') && first_bid.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "decimals stored as exact text: {first_bid}"
    );
    let dead = std::fs::read_to_string(out.path().join("dead-letters.jsonl")).unwrap_or_default();
    assert_eq!(dead, "", "clean ECB history produces no dead letters");
}

/// (crosses, alerts, one bid) in the SQLite history the pipeline wrote.
fn stored(db: &std::path::Path) -> (i64, i64, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let crosses: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_rates WHERE kind = 'cross'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_alert_history")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let bid: String = sqlx::query_scalar("SELECT bid FROM fx_rates ORDER BY ts LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (crosses, alerts, bid)
    })
}

#[test]
fn a_taken_telemetry_port_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = tempfile::tempdir().unwrap();
    let output = fxflow(&["run", "pipelines/local.ron"])
        .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}"))
        .env("FXFLOW_API", format!("127.0.0.1:{}", free_port()))
        .env("FXFLOW_OUT", out.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("pipeline `local`: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}
