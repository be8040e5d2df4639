//! A user's story: "I run the embedded default, watch its metrics, press Ctrl-C,
//! and everything it printed is also safely in the history file."

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, http_get, wait_for};

mod support;

#[test]
fn the_local_pipeline_prints_crosses_and_alerts_serves_metrics_and_drains_on_ctrl_c() {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = fxflow_tests::Reaped(
        fxflow(&["run", "pipelines/local.ron"])
            .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}"))
            .env("FXFLOW_API", format!("127.0.0.1:{}", free_port()))
            .env("FXFLOW_FROM", "2025-06-01")
            .env("FXFLOW_DAY", "10ms")
            // Only the crosses: the reference rates (every ECB currency since 1999) have their own test.
            .env("FXFLOW_REFERENCE_FROM", "2100-01-01")
            .env("FXFLOW_OUT", out.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
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
    let exit = support::interrupt(&mut child);
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
    support::on_sqlite(db, |conn| {
        Box::pin(async move {
            // Every cross rate printed is a row (those of EUR pairs are the ECB's quotes: kind 'quote').
            let crosses = support::count(conn, "SELECT count(*) FROM fx_rates").await;
            let alerts = support::count(conn, "SELECT count(*) FROM fx_alert_history").await;
            let bid: String = sqlx::query_scalar("SELECT bid FROM fx_rates ORDER BY ts LIMIT 1")
                .fetch_one(conn)
                .await
                .unwrap();
            (crosses, alerts, bid)
        })
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

/// Compare two non-negative decimals written as text, exactly (no float in between).
fn decimal_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> (String, String) {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        (
            int.trim_start_matches('0').to_owned(),
            frac.trim_end_matches('0').to_owned(),
        )
    };
    let ((ai, af), (bi, bf)) = (split(a), split(b));
    ai.len().cmp(&bi.len()).then_with(|| ai.cmp(&bi)).then_with(|| {
        let width = af.len().max(bf.len());
        format!("{af:0<width$}").cmp(&format!("{bf:0<width$}"))
    })
}

/// A user's story: "the embedded default keeps daily candles and the 30-day volatility of
/// every pair, and they are what the raw history says".
#[test]
fn the_local_pipeline_stores_daily_candles_and_volatility_that_agree_with_the_raw_history() {
    let out = tempfile::tempdir().unwrap();
    let db = out.path().join("fx.db");
    let mut child = fxflow_tests::Reaped(
        fxflow(&["run", "pipelines/local.ron"])
            .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", free_port()))
            .env("FXFLOW_API", format!("127.0.0.1:{}", free_port()))
            .env("FXFLOW_FROM", "2024-01-01")
            .env("FXFLOW_DAY", "1ms")
            .env("FXFLOW_REFERENCE_FROM", "2100-01-01")
            .env("FXFLOW_OUT", out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let query = |sql: &'static str| -> Vec<sqlx::sqlite::SqliteRow> {
        runtime.block_on(async {
            use sqlx::Connection;
            let Ok(mut conn) = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await else {
                return Vec::new();
            };
            sqlx::query(sql).fetch_all(&mut conn).await.unwrap_or_default()
        })
    };
    // The replay's end: the bar of its last day, still open, is stored for each of the 28 pairs.
    wait_for("the replay to end", Duration::from_secs(180), || {
        let rows = query("SELECT count(*) AS n FROM fx_candles WHERE closed = 0");
        use sqlx::Row;
        rows.first().and_then(|r| (r.get::<i64, _>("n") == 28).then_some(()))
    });
    let exit = support::interrupt(&mut child);
    assert!(exit.success());

    use sqlx::Row;
    // The raw history: (pair, ts, mid) in time order.
    let rates: Vec<(String, String, String)> = query("SELECT pair, ts, mid FROM fx_rates ORDER BY pair, ts")
        .iter()
        .map(|r| (r.get("pair"), r.get("ts"), r.get("mid")))
        .collect();
    assert!(
        rates.len() > 28 * 600,
        "two years and more of ECB days: {}",
        rates.len()
    );
    let mut by_pair: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for (pair, ts, mid) in rates {
        by_pair.entry(pair).or_default().push((ts, mid));
    }
    assert_eq!(by_pair.len(), 28);

    // Candles: one per pair and day, open = first, close = last, high and low, ticks = rows.
    type Bar = (String, String, String, String, i64, bool);
    let mut expected: Vec<(String, String, Bar)> = Vec::new();
    for (pair, rows) in &by_pair {
        let mut days: Vec<(String, Vec<&String>)> = Vec::new();
        for (ts, mid) in rows {
            let day = format!("{}T00:00:00.000000Z", &ts[..10]);
            match days.last_mut() {
                Some((d, mids)) if *d == day => mids.push(mid),
                _ => days.push((day, vec![mid])),
            }
        }
        let last = days.len() - 1;
        for (i, (day, mids)) in days.into_iter().enumerate() {
            let high = mids.iter().copied().max_by(|a, b| decimal_cmp(a, b)).unwrap().clone();
            let low = mids.iter().copied().min_by(|a, b| decimal_cmp(a, b)).unwrap().clone();
            let bar = (
                mids[0].clone(),
                high,
                low,
                mids[mids.len() - 1].clone(),
                mids.len() as i64,
                i != last,
            );
            expected.push((pair.clone(), day, bar));
        }
    }
    let stored: Vec<(String, String, Bar)> = query(
        "SELECT pair, bucket, open, high, low, close, ticks, closed, bid_open FROM fx_candles \
         WHERE interval_name = '1d' ORDER BY pair, bucket",
    )
    .iter()
    .map(|r| {
        assert!(
            r.get::<Option<String>, _>("bid_open").is_none(),
            "ECB prices are mid-only"
        );
        let bar = (
            r.get("open"),
            r.get("high"),
            r.get("low"),
            r.get("close"),
            r.get("ticks"),
            r.get("closed"),
        );
        (r.get("pair"), r.get("bucket"), bar)
    })
    .collect();
    assert_eq!(stored.len(), expected.len(), "a bar per pair and ECB day");
    assert_eq!(stored, expected, "every daily bar is what the raw rows say");

    // Volatility: for every day D with at least two returns in [D - 30 days, D), the sample
    // standard deviation of the log returns of the mid stamped in that span, × √252.
    let day_seconds = |ts: &str| chrono::DateTime::parse_from_rfc3339(ts).unwrap().timestamp();
    let mut reference: Vec<(String, i64, f64, i64)> = Vec::new();
    for (pair, rows) in &by_pair {
        let returns: Vec<(i64, f64)> = rows
            .windows(2)
            .map(|w| {
                let (a, b): (f64, f64) = (w[0].1.parse().unwrap(), w[1].1.parse().unwrap());
                (day_seconds(&w[1].0), (b / a).ln())
            })
            .collect();
        let (first, last) = (day_seconds(&rows[0].0), day_seconds(&rows[rows.len() - 1].0));
        let mut end = first + 86_400;
        while end <= last {
            let inside: Vec<f64> = returns
                .iter()
                .filter(|(t, _)| *t >= end - 30 * 86_400 && *t < end)
                .map(|(_, r)| *r)
                .collect();
            if inside.len() >= 2 {
                let n = inside.len() as f64;
                let mean = inside.iter().sum::<f64>() / n;
                let variance = inside.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
                reference.push((pair.clone(), end, variance.sqrt() * 252f64.sqrt(), inside.len() as i64));
            }
            end += 86_400;
        }
    }
    let readings: Vec<(String, i64, f64, i64)> =
        query("SELECT pair, ts, volatility, samples FROM fx_volatility WHERE window_name = '30d' ORDER BY pair, ts")
            .iter()
            .map(|r| {
                (
                    r.get("pair"),
                    day_seconds(r.get("ts")),
                    r.get("volatility"),
                    r.get("samples"),
                )
            })
            .collect();
    assert!(
        reference.len() > 28 * 900,
        "about 1,000 days of readings per pair: {}",
        reference.len()
    );
    assert_eq!(readings.len(), reference.len(), "a reading per pair and calendar day");
    for (got, want) in readings.iter().zip(&reference) {
        assert_eq!(
            (&got.0, got.1, got.3),
            (&want.0, want.1, want.3),
            "the same pair, day and number of returns"
        );
        assert!(
            (got.2 - want.2).abs() <= 1e-9 * want.2,
            "{} on {}: stored {} vs reference {}",
            got.0,
            got.1,
            got.2,
            want.2
        );
    }
}

/// A user's story: "I run the embedded default and point my Frankfurter client at it: the
/// ECB's rates are there, every currency since 1999, beside the crosses of the replay".
#[test]
fn the_embedded_default_serves_the_frankfurter_routes_from_its_own_sqlite_file() {
    let out = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut child = fxflow_tests::Reaped(
        fxflow(&["run", "pipelines/local.ron"])
            .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", free_port()))
            .env("FXFLOW_API", format!("127.0.0.1:{api}"))
            .env("FXFLOW_FROM", "2026-10-01")
            .env("FXFLOW_DAY", "1ms")
            .env("FXFLOW_OUT", out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The whole history is in once the oldest day answers with every currency of its day.
    let first: serde_json::Value = wait_for("1999 in the store", Duration::from_secs(120), || {
        let (status, body) = http_get(api, "/v1/1999-01-04").ok()?;
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && body["rates"].as_object()?.len() == 27).then_some(body)
    });
    assert_eq!(first["rates"]["CYP"], serde_json::json!(0.58231), "{first}");
    assert_eq!(first["rates"]["USD"], serde_json::json!(1.1789));
    // The newest day with every currency of the file (29 then) means the backfill is through.
    let latest: serde_json::Value = wait_for("the newest day", Duration::from_secs(120), || {
        let (_, body) = http_get(api, "/v1/latest").ok()?;
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        (body["date"] == "2026-10-30" && body["rates"].as_object()?.len() == 29).then_some(body)
    });
    assert_eq!(latest["rates"]["USD"], serde_json::json!(1.1172));
    assert_eq!(latest["rates"]["JPY"], serde_json::json!(175.68));
    let (status, body) = http_get(api, "/v2/rate/GBP/JPY?date=2016-06-24").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(r#"{"date":"2016-06-24","base":"GBP","quote":"JPY","rate":"#),
        "{body}"
    );
    assert!(support::interrupt(&mut child).success());
}
