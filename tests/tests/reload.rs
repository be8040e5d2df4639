//! A user's story: "I run local.ron with --watch, break the file by mistake
//! (the pipeline keeps going and tells me why), then add an alert rule: it
//! fires without a restart, and the history has every row exactly once."

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, http_get, wait_for, workspace};

mod support;

/// Lines a child writes, collected by a thread.
fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn count(lines: &Mutex<Vec<String>>, pattern: &str) -> usize {
    lines.lock().unwrap().iter().filter(|l| l.contains(pattern)).count()
}

/// A counter's value (counters are whole numbers of events).
fn metric(port: u16, series: &str) -> Option<u64> {
    let (_, body) = http_get(port, "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn editing_local_ron_while_it_runs_applies_a_new_alert_rule_without_losing_or_repeating_a_row() {
    const FROM: &str = "2025-01-01";
    let csv = std::fs::read_to_string(workspace().join("examples/data/ecb-eurofxref-hist.csv")).unwrap();
    let days = csv.lines().skip(1).filter(|l| l[..10] >= *FROM).count();
    let expected = days * 28;

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("local.ron");
    let original = std::fs::read_to_string(workspace().join("pipelines/local.ron")).unwrap();
    std::fs::write(&file, &original).unwrap();
    let (port, api) = (free_port(), free_port());
    let mut child = fxflow_tests::Reaped(
        fxflow(&["run", "--watch", file.to_str().unwrap()])
            .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{port}"))
            .env("FXFLOW_API", format!("127.0.0.1:{api}"))
            .env("FXFLOW_FROM", FROM)
            .env("FXFLOW_DAY", "30ms")
            // Only the crosses: the reference rates (every ECB currency since 1999) have their own test.
            .env("FXFLOW_REFERENCE_FROM", "2100-01-01")
            .env("FXFLOW_OUT", out.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    wait_for("the first days printed", Duration::from_secs(60), || {
        (count(&stdout, " bid ") >= 28 * 20).then_some(())
    });

    // A typo: rejected with its location; the pipeline goes on.
    std::fs::write(&file, original.replace("CrossRate(", "CrossRates(")).unwrap();
    wait_for("the rejection", Duration::from_secs(20), || {
        (count(&stderr, "the running version keeps going") >= 1).then_some(())
    });
    let log = stderr.lock().unwrap().join("\n");
    assert!(
        log.contains("local.ron:")
            && log.contains("unknown stage kind `CrossRates`")
            && log.contains("did you mean `CrossRate`?"),
        "the problem is located and explained:\n{log}"
    );
    let printed = count(&stdout, " bid ");
    wait_for("crosses still flowing", Duration::from_secs(20), || {
        (count(&stdout, " bid ") > printed + 28).then_some(())
    });
    assert!(child.try_wait().unwrap().is_none(), "still running");

    // A new rule that holds for every EUR/USD price since 1.0 < EUR/USD.
    let with_rule = original.replace(
        "rules: [",
        "rules: [\n                (id: \"eurusd-above-1\", pair: \"EUR/USD\", condition: Above(1.0)),",
    );
    assert_ne!(with_rule, original);
    std::fs::write(&file, &with_rule).unwrap();
    wait_for("the new rule firing", Duration::from_secs(30), || {
        (count(&stdout, "ALERT eurusd-above-1 ") >= 1).then_some(())
    });
    let log = stderr.lock().unwrap().join("\n");
    assert!(
        log.contains("Reload applied") && log.contains("replaced: alerts"),
        "only the alerts stage was replaced:\n{log}"
    );

    // The API stage itself, replaced while it serves: it lets its port go, the new version takes it.
    std::fs::write(&file, with_rule.replace("generate_key: true", "generate_key: false")).unwrap();
    wait_for("the API replaced", Duration::from_secs(30), || {
        (count(&stderr, "replaced: api") >= 1).then_some(())
    });
    let (_, body) = wait_for("the new API answering", Duration::from_secs(30), || {
        http_get(api, "/rates?pairs=EUR/USD").ok().filter(|(s, _)| *s == 200)
    });
    assert!(
        body.contains("EUR/USD"),
        "the new version serves the rates it watches: {body}"
    );

    // The replay runs to its end; every cross reached the history sink exactly once.
    let history = "fxflow_stage_received_events_total{pipeline=\"local\",stage=\"history\",kind=\"CrossRate\"}";
    wait_for("the whole replay in the history sink", Duration::from_secs(120), || {
        (metric(port, history)? >= expected as u64).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        metric(port, history),
        Some(expected as u64),
        "no cross reached the sink twice"
    );
    assert_eq!(
        count(&stdout, " bid "),
        expected,
        "the unchanged print stage printed each cross once"
    );
    assert_eq!(
        metric(port, "fxflow_reloads_total{pipeline=\"local\",outcome=\"rejected\"}"),
        Some(1)
    );
    assert_eq!(
        metric(port, "fxflow_reloads_total{pipeline=\"local\",outcome=\"applied\"}"),
        Some(2)
    );

    let exit = support::interrupt(&mut child);
    assert!(exit.success(), "{}", stderr.lock().unwrap().join("\n"));

    let (rows, new_rule, old_rules) = stored(&out.path().join("fx.db"));
    assert_eq!(rows, expected as i64, "every cross is stored");
    assert!(new_rule > 0, "the new rule's firings are stored");
    assert!(old_rules > 0, "the rules from before still fire");
}

/// (rate rows, firings of the new rule, firings of the others).
fn stored(db: &std::path::Path) -> (i64, i64, i64) {
    support::on_sqlite(db, |conn| {
        Box::pin(async move {
            (
                support::count(conn, "SELECT count(*) FROM fx_rates").await,
                support::count(
                    conn,
                    "SELECT count(*) FROM fx_alert_history WHERE rule_id = 'eurusd-above-1'",
                )
                .await,
                support::count(
                    conn,
                    "SELECT count(*) FROM fx_alert_history WHERE rule_id <> 'eurusd-above-1'",
                )
                .await,
            )
        })
    })
}
