//! A user's story: "I test my pipelines like code": `fxflow test` runs the shipped
//! pipelines' tests, and a wrong expectation is reported where it is written.

use fxflow_tests::{fxflow, workspace};

/// Every shipped pipeline with tests passes them, with no server running for it.
#[test]
fn the_shipped_pipelines_pass_their_tests() {
    let output = fxflow(&[
        "test",
        "pipelines/local.ron",
        "pipelines/process.ron",
        "pipelines/alerts.ron",
    ])
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for case in [
        "the 28 crosses of an ECB day, exactly",
        "EUR/USD crossing up through 1.10 fires its rule once",
        "a quote with its bid above its ask is rejected, the rest flows",
    ] {
        assert!(
            stdout.contains(&format!(": ok   {case} (")),
            "{case} not passed:\n{stdout}"
        );
    }
    assert!(stdout.contains("3 files,"), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// `cases` written into a test file of `pipelines/local.ron` in `dir`; its path.
fn test_file(dir: &std::path::Path, name: &str, cases: &str) -> String {
    let pipeline = workspace().join("pipelines/local.ron");
    let text = format!(
        "PipelineTests(\n    pipeline: \"{}\",\n    cases: {{\n{cases}    }},\n)\n",
        pipeline.display()
    );
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_owned()
}

/// A case whose expectation is wrong fails with the check's line and column, the expected and
/// the actual events, and exit code 1; JUnit output says the same for CI.
#[test]
fn a_failing_case_names_the_check_and_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = &test_file(
        dir.path(),
        "wrong.ron",
        r#"        "wrong cross": (
            replace: {
                "ecb": [
                    QuoteSnapshot(source: "ecb", ts: "2024-01-02T00:00:00Z", base: "EUR", quotes: [
                        (pair: "EUR/USD", bid: 1.0956, ask: 1.0956, ts: "2024-01-02T00:00:00Z", source: "ecb"),
                        (pair: "EUR/JPY", bid: 155.68, ask: 155.68, ts: "2024-01-02T00:00:00Z", source: "ecb"),
                    ]),
                ],
            },
            expect: {
                "crosses": [
                    Count(3),
      Contains(CrossRate(pair: "USD/JPY", bid: 142.1)),
                ],
            },
        ),
"#,
    );
    let output = fxflow(&["test", path]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "a failing case exits 1:\n{stdout}");
    // Contains(...) sits on line 16, column 7.
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{path}:16:7: FAIL wrong cross")))
        .unwrap_or_else(|| panic!("no located failure:\n{stdout}"));
    assert!(line.contains("`crosses`"), "{line}");
    // The exact cross, not the expected 142.1, is shown as the actual event.
    assert!(stdout.contains("142.09565534866739686016794451"), "{stdout}");
    assert!(stdout.contains("expected"), "{stdout}");
    // Count(3) passes (EUR/USD, EUR/JPY, USD/JPY), so only one failure.
    assert_eq!(stdout.matches(": FAIL ").count(), 1, "{stdout}");

    let junit = fxflow(&["test", "--format", "junit", path]).output().unwrap();
    assert_eq!(junit.status.code(), Some(1));
    let xml = String::from_utf8_lossy(&junit.stdout);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(r#"<testcase name="wrong cross""#), "{xml}");
    assert!(xml.contains("<failure"), "{xml}");
}

/// A test file with mistakes is reported like a broken pipeline: every problem located, exit 2.
#[test]
fn a_broken_test_file_gets_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = &test_file(
        dir.path(),
        "broken.ron",
        r#"        "typos": (
            replace: { "ecbb": [] },
            expect: { "crosses": [Cont(3)] },
        ),
"#,
    );
    let output = fxflow(&["test", path]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:6:35: error: ")),
        "the unknown check is located:\n{stderr}"
    );
}
