//! A user's story: "before I trust these rules, would they have fired, and when?" —
//! `fxflow backtest` over the ECB file and over a pipeline's PostgreSQL store fires, firing
//! for firing, what the same rules fired live in a pipeline replaying the same days.

use std::collections::BTreeSet;

use fxflow_tests::{fxflow, workspace};

/// A handful of rules: states, crossings, channels, moves; every trigger.
const RULES: &str = r#"// Rules to try on history (the same syntax as an Alert stage's `rules:`).
[
    (id: "eur-above", pair: "EUR/USD", condition: Above(1.12), trigger: Every(cooldown: "10d", rearm: 0.01)),
    (id: "cable-cross", pair: "GBP/USD", condition: Crossing(1.45), trigger: Every(rearm: 0.005)),
    (id: "yen-enter", pair: "USD/JPY", condition: EnteringChannel(low: 110, high: 115), trigger: Every()),
    (id: "yen-outside", pair: "USD/JPY", condition: OutsideChannel(low: 100, high: 125), trigger: OnBarClose("7d")),
    (id: "yen-drop", pair: "USD/JPY", condition: MovingDownPercent(percent: 2, over: Bars(5)), trigger: OncePerBar("30d")),
    (id: "eur-up", pair: "EUR/USD", condition: MovingUp(amount: 0.03, over: Window("10d")), trigger: Every()),
    (id: "chf-once", pair: "EUR/CHF", condition: Below(1.05), trigger: Once),
]
"#;

/// (rule, time, value, previous, condition) of each firing in a JSON-lines file's text.
fn firings(jsonl: &str) -> BTreeSet<(String, String, String, String, String)> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let text = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
            (
                text("rule_id"),
                text("ts"),
                text("value"),
                text("previous"),
                text("condition"),
            )
        })
        .collect()
}

#[test]
fn a_backtest_fires_exactly_what_the_rules_fired_live_over_the_same_days() {
    let dir = tempfile::tempdir().unwrap();
    let database = fxflow_tests::create_database("fxtest_backtest");
    let rules = dir.path().join("rules.ron");
    std::fs::write(&rules, RULES).unwrap();
    let live_out = dir.path().join("live.jsonl");
    let pipeline = dir.path().join("live.ron");
    let rule_list = RULES
        .lines()
        .filter(|l| !l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &pipeline,
        format!(
            r#"Pipeline(name: "backtest-live",
    resources: {{ "history": Postgres(url: "postgres://postgres@127.0.0.1:5432/{database}") }},
    stages: {{
        "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2015-01-01", to: "2016-12-31", speed: AsFastAsPossible),
        "cross": CrossRate(inputs: ["ecb"]),
        "alerts": Alert(inputs: ["cross"], rules: {rule_list}),
        "history": Postgres(inputs: ["cross"], resource: "history", migrate: true),
        "out": JsonlFile(inputs: ["alerts"], path: "{out}"),
    }})"#,
            out = live_out.display()
        ),
    )
    .unwrap();
    let run = fxflow(&["run", pipeline.to_str().unwrap()]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let live = firings(&std::fs::read_to_string(&live_out).unwrap());
    let fired_rules: BTreeSet<&str> = live.iter().map(|f| f.0.as_str()).collect();
    assert!(
        fired_rules.len() >= 6 && live.len() >= 20,
        "the rules fire in 2015–2016: {fired_rules:?}, {} firings",
        live.len()
    );

    let backtest = |source: &[&str]| {
        let mut args = vec!["backtest", rules.to_str().unwrap()];
        args.extend_from_slice(source);
        args.extend_from_slice(&["--from", "2015-01-01", "--to", "2016-12-31", "--format", "jsonl"]);
        let out = fxflow(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{} firing(s) of 7 rule(s)", live.len())),
            "summary: {stderr}"
        );
        firings(&String::from_utf8(out.stdout).unwrap())
    };
    let csv = workspace().join("examples/data/ecb-eurofxref-hist.csv");
    assert_eq!(backtest(&["--csv", csv.to_str().unwrap()]), live, "over the ECB file");
    assert_eq!(
        backtest(&["--pipeline", pipeline.to_str().unwrap(), "--store", "history"]),
        live,
        "over the pipeline's PostgreSQL store"
    );

    // The same over the API: POST /alerts/backtest on an Api stage reading that store, paged.
    let key = "backtest-key-0123456789abcdef";
    let port = fxflow_tests::free_port();
    let api_file = dir.path().join("api.ron");
    std::fs::write(
        &api_file,
        format!(
            r#"Pipeline(name: "backtest-api",
    resources: {{ "history": Postgres(url: "postgres://postgres@127.0.0.1:5432/{database}") }},
    stages: {{
        "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2016-12-30", to: "2016-12-31"),
        "cross": CrossRate(inputs: ["ecb"]),
        "api": Api(inputs: ["cross", "alerts"], listen: "127.0.0.1:{port}", store: "history", keys: "{key}"),
        "alerts": Alert(inputs: ["cross", "api"]),
    }})"#
        ),
    )
    .unwrap();
    let _api = fxflow_tests::Reaped(
        fxflow(&["run", api_file.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    fxflow_tests::wait_for("the API", std::time::Duration::from_secs(60), || {
        fxflow_tests::http_get(port, "/health")
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    let auth = format!("Authorization: Bearer {key}");
    let request = |after: Option<&str>, from: &str, to: &str| {
        let body = serde_json::json!({
            "rules": [
                {"pair": "GBP/USD", "condition": {"type": "crossing", "threshold": "1.52"},
                 "trigger": {"type": "every", "rearm": "0.005"}},
                {"pair": "USD/JPY", "condition": {"type": "entering_channel", "low": "118", "high": "121"},
                 "trigger": {"type": "every"}},
                {"pair": "USD/JPY", "condition": {"type": "moving_down_percent", "percent": "1", "over": {"bars": 5}},
                 "trigger": {"type": "once_per_bar", "interval": "30d"}},
            ],
            "from": from, "to": to, "limit": 5, "after": after,
        });
        let (status, text) =
            fxflow_tests::http_request(port, "POST", "/alerts/backtest", &[&auth], Some(&body.to_string())).unwrap();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    };
    let mut by_api = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let (status, page) = request(after.as_deref(), "2015-01-01T00:00:00Z", "2016-01-01T00:00:00Z");
        assert_eq!(status, 200, "{page}");
        let firings = page["firings"].as_array().unwrap();
        assert!(firings.len() <= 5, "a page holds at most `limit`");
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_owned(),
            other => other.to_string(),
        };
        for f in firings {
            by_api.insert((
                text(&f["rule_id"]),
                text(&f["fired_at"]),
                text(&f["value"]),
                text(&f["previous"]),
                text(&f["condition"]),
            ));
        }
        pages += 1;
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => {
                assert_eq!(page["total"].as_u64(), Some(by_api.len() as u64), "{page}");
                break;
            }
        }
    }
    let three = dir.path().join("three.ron");
    std::fs::write(
        &three,
        r#"[
    (id: "r1", pair: "GBP/USD", condition: Crossing(1.52), trigger: Every(rearm: 0.005)),
    (id: "r2", pair: "USD/JPY", condition: EnteringChannel(low: 118, high: 121), trigger: Every()),
    (id: "r3", pair: "USD/JPY", condition: MovingDownPercent(percent: 1, over: Bars(5)), trigger: OncePerBar("30d")),
]"#,
    )
    .unwrap();
    let out = fxflow(&[
        "backtest",
        three.to_str().unwrap(),
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--from",
        "2015-01-01",
        "--to",
        "2015-12-31",
        "--format",
        "jsonl",
    ])
    .output()
    .unwrap();
    let by_cli = firings(&String::from_utf8(out.stdout).unwrap());
    assert!(by_cli.len() > 5 && pages > 1, "several pages: {} firings", by_cli.len());
    assert_eq!(by_api, by_cli, "the API's backtest fires as the command's");
    let (status, page) = request(None, "2015-01-01T00:00:00Z", "2016-06-01T00:00:00Z");
    assert_eq!(
        (status, page["error"]["code"].as_str()),
        (400, Some("backtest_too_large")),
        "{page}"
    );
    let (status, page) = request(Some("nonsense"), "2015-01-01T00:00:00Z", "2016-01-01T00:00:00Z");
    assert_eq!(
        (status, page["error"]["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{page}"
    );

    // The table for people: a header, one line per firing.
    let table = fxflow(&[
        "backtest",
        rules.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--from",
        "2016-06-01",
        "--to",
        "2016-06-30",
    ])
    .output()
    .unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("TIME"), "{text}");
    let june = live.iter().filter(|f| f.1.starts_with("2016-06")).count();
    assert_eq!(text.lines().count(), 1 + june, "{text}");
}

#[test]
fn a_bad_rules_file_names_every_problem_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.ron");
    std::fs::write(
        &rules,
        "[\n    (id: \"a\", pair: \"EUR/USD\", condition: InsideChannel(low: 1.2, high: 1.1)),\n    (id: \"a\", pair: \"EUR/USD\", condition: Above(1.1)),\n]\n",
    )
    .unwrap();
    let csv = workspace().join("examples/data/ecb-eurofxref-hist.csv");
    let out = fxflow(&["backtest", rules.to_str().unwrap(), "--csv", csv.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Each at the place it was written: the first rule's condition, the second rule's id.
    assert!(
        stderr.contains("rules.ron:2:43: rule `a`: low 1.2 must be below high 1.1"),
        "{stderr}"
    );
    assert!(stderr.contains("rules.ron:3:10: rule id `a` is used twice"), "{stderr}");
    assert!(out.stdout.is_empty());

    std::fs::write(
        &rules,
        "[\n    (id: \"a\", pair: \"EUR/USD\", condition: Abov(1.1)),\n]\n",
    )
    .unwrap();
    let out = fxflow(&["backtest", rules.to_str().unwrap(), "--csv", csv.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rules.ron:2:"), "a position: {stderr}");
}
