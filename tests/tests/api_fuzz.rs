//! The API's contract, checked from outside with standard tools (PyPI, in the
//! test command's virtual environment):
//! - openapi-spec-validator accepts the OpenAPI document;
//! - schemathesis reads the API's own `/openapi.json`, generates valid and
//!   invalid requests for every operation (examples, boundary values, random
//!   data, and create → read → delete through the document's links) with every
//!   check on: no 5xx; every answer's status, content type, headers and body as
//!   documented; every request the schema refuses refused; every request it
//!   admits accepted — except the rules across fields or deployments that no
//!   schema can state, named one by one in `tests/fuzz/fxflow_fuzz_hooks.py`;
//! - a client generated from the document by openapi-python-client reads
//!   rates and a history page and creates, reads and deletes a rule
//!   (`tests/fuzz/generated_client.py`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, http_get, wait_for, workspace};

const KEY: &str = "fuzz-key-0123456789abcdef";

/// A tool from the test command's virtual environment, else from PATH.
fn tool(name: &str) -> PathBuf {
    let venv = workspace().join(".cache/venv/bin").join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

/// The API over an ECB replay on SQLite, until dropped.
struct Served {
    server: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let file = dir.path().join("fuzz.ron");
        std::fs::write(
            &file,
            format!(
                r#"Pipeline(name: "fuzz", resources: {{ "history": Sqlite(path: "{db}") }}, stages: {{
                "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2024-01-01", speed: PerDay("100ms")),
                "crosses": CrossRate(inputs: ["ecb"]),
                "api": Api(inputs: ["crosses", "alerts"], listen: "127.0.0.1:{port}", store: "history", keys: "{KEY}",
                    // The fuzzer sends thousands of requests a minute: no rate limits here.
                    limits: (per_ip: None, per_key: None)),
                "alerts": Alert(inputs: ["crosses", "api"]),
                "history": Sqlite(inputs: ["crosses", "alerts"], resource: "history"),
            }})"#,
                db = dir.path().join("fx.db").display()
            ),
        )
        .unwrap();
        let server = fxflow(&["run", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the API", Duration::from_secs(60), || {
            http_get(port, "/rates/EURUSD/history?limit=10")
                .ok()
                .filter(|(s, b)| *s == 200 && b.matches("\"ts\"").count() == 10)
        });
        Served {
            server,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} runs (scripts/test.sh installs it into .cache/venv): {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{report}");
    assert!(output.status.success(), "{what} failed:\n{report}");
    report
}

/// The document `fxflow docs --openapi` prints (the one every API serves), in a file.
fn document_file(dir: &std::path::Path) -> PathBuf {
    let output = fxflow(&["docs", "--openapi"]).output().unwrap();
    assert!(output.status.success());
    let path = dir.join("openapi.json");
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

#[test]
fn the_openapi_document_is_valid_with_one_operation_id_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = document_file(dir.path());
    let report = run(
        Command::new(tool("openapi-spec-validator")).arg(&path),
        "openapi-spec-validator",
    );
    assert!(report.contains("OK"), "{report}");
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut ids = Vec::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            ids.push(
                operation["operationId"]
                    .as_str()
                    .expect("every operation has an id")
                    .to_owned(),
            );
        }
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    assert!(ids
        .iter()
        .all(|id| id.chars().next().unwrap().is_ascii_lowercase() && !id.contains('_')));
}

#[test]
fn schemathesis_with_every_check_finds_nothing() {
    let served = Served::start();
    let fuzz = workspace().join("tests/fuzz");
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        Command::new(tool("schemathesis"))
            .current_dir(dir.path())
            .arg("--config-file")
            .arg(fuzz.join("schemathesis.toml"))
            .args(["run", &format!("http://127.0.0.1:{}/openapi.json", served.port)])
            // Every check; positive data acceptance as the hook module refines it.
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                // Event streams never end; they have their own tests.
                "--exclude-path-regex",
                "^/stream/",
                "--max-examples",
                "60",
                "--request-timeout",
                "10",
                "--seed",
                "20261202",
            ])
            .args(["-H", &format!("Authorization: Bearer {KEY}")])
            .env("PYTHONPATH", &fuzz)
            .env("SCHEMATHESIS_HOOKS", "fxflow_fuzz_hooks")
            .env("NO_COLOR", "1"),
        "schemathesis",
    );
    assert!(report.contains("No issues found"), "{report}");
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            report.contains(&format!("✅ {phase}")),
            "phase {phase} ran and passed:\n{report}"
        );
    }
}

#[test]
fn a_client_generated_from_the_document_drives_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let document = document_file(dir.path());
    run(
        Command::new(tool("openapi-python-client"))
            .current_dir(dir.path())
            .args(["generate", "--meta", "none", "--path"])
            .arg(&document)
            // Its formatter (ruff) comes with it; found on PATH.
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    workspace().join(".cache/venv/bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
        "openapi-python-client",
    );
    assert!(dir.path().join("fxflow_api_client/api/alerts/create_alert.py").exists());
    let served = Served::start();
    let report = run(
        Command::new(tool("python"))
            .arg(workspace().join("tests/fuzz/generated_client.py"))
            .arg(format!("http://127.0.0.1:{}", served.port))
            .arg(KEY)
            .arg(dir.path()),
        "the generated client",
    );
    assert!(report.trim_end().ends_with("ok"), "{report}");
    assert!(report.contains("then 404 unknown_rule"), "{report}");
}
