//! A schema-driven fuzz run of the query API: schemathesis (PyPI) reads the
//! API's own `/openapi.json`, generates valid and invalid requests for every
//! operation (examples, boundary values, random data, stateful sequences that
//! create and delete rules), and checks that no answer is a 5xx and every
//! answer — status, content type, headers, body — matches the document.

use std::path::PathBuf;
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, http_get, wait_for, workspace};

/// schemathesis from the test command's virtual environment, else from PATH.
fn schemathesis() -> PathBuf {
    let venv = workspace().join(".cache/venv/bin/schemathesis");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("schemathesis")
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let key = "fuzz-key-0123456789abcdef";
    let file = dir.path().join("fuzz.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "fuzz", resources: {{ "history": Sqlite(path: "{db}") }}, stages: {{
                "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2024-01-01", speed: PerDay("100ms")),
                "crosses": CrossRate(inputs: ["ecb"]),
                "api": Api(inputs: ["crosses", "alerts"], listen: "127.0.0.1:{port}", store: "history", keys: "{key}",
                    // The fuzzer sends thousands of requests a minute: no rate limits here.
                    limits: (per_ip: None, per_key: None)),
                "alerts": Alert(inputs: ["crosses", "api"]),
                "history": Sqlite(inputs: ["crosses", "alerts"], resource: "history"),
            }})"#,
            db = dir.path().join("fx.db").display()
        ),
    )
    .unwrap();
    let mut server = fxflow(&["run", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the API", Duration::from_secs(60), || {
        http_get(port, "/rates")
            .ok()
            .filter(|(s, b)| *s == 200 && b.contains("EUR/USD"))
    });
    let output = std::process::Command::new(schemathesis())
        .current_dir(dir.path())
        .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            // Event streams never end; they have their own tests.
            "--exclude-path-regex",
            "^/stream/",
            "--max-examples",
            "40",
            "--request-timeout",
            "10",
            "--seed",
            "20261202",
        ])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs (scripts/test.sh installs it into .cache/venv)");
    let _ = server.kill();
    let _ = server.wait();
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed") && !report.contains(" failed"), "{report}");
}
