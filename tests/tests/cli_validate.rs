//! A user's story: "I broke my pipeline file; fxflow tells me every mistake and where."

use fxflow_tests::fxflow;

const FIVE_MISTAKES: &str = r#"// Five different mistakes.
Pipeline(
    name: "broken",
    stages: {
        "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", speed: AsFastAsPossible),
        "validate": Enrich(inputs: ["ecbb"]),
        "crosses": CrossRate(inputs: ["ecb"], paralel_above: 8),
        "alerts": Alert(inputs: ["ecb"]),
        "print": Stdot(inputs: ["alerts"]),
        "file": JsonlFile(inputs: ["crosses"], path: "${FXFLOW_TEST_SURELY_UNSET}/x.jsonl"),
    },
)
"#;

/// Line and column (1-based, in characters) of the first `needle` on the line containing `anchor`.
fn position(text: &str, anchor: &str, needle: &str) -> String {
    let (number, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(anchor))
        .expect("anchor present");
    let column = line[..line.find(needle).expect("needle on the line")].chars().count() + 1;
    format!(":{}:{column}: error: ", number + 1)
}

#[test]
fn a_file_with_five_mistakes_gets_five_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.ron");
    std::fs::write(&file, FIVE_MISTAKES).unwrap();
    let output = fxflow(&["validate", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "invalid files exit 2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = file.display().to_string();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&path)).collect();
    let t = FIVE_MISTAKES;
    let expect = [
        position(t, "\"crosses\": CrossRate", "paralel_above") + "unknown field `paralel_above`",
        position(t, "\"validate\"", "\"ecbb\"") + "unknown input `ecbb`",
        position(t, "\"alerts\": Alert", "\"ecb\"")
            + "kind mismatch: `ecb` emits QuoteSnapshot, but `alerts` (Alert) accepts only CrossRate, Quote",
        position(t, "\"print\"", "Stdot") + "unknown stage kind `Stdot`",
        position(t, "\"file\"", "${") + "environment variable `FXFLOW_TEST_SURELY_UNSET` is not set",
    ];
    for want in &expect {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}{want}"))),
            "missing `{want}` in:\n{stderr}"
        );
    }
    assert_eq!(errors.len(), 5, "exactly five errors:\n{stderr}");
    assert!(stderr.contains("hint: did you mean \"ecb\"?"), "hints help: {stderr}");
    assert!(stderr.contains("hint: did you mean `Stdout`?"), "{stderr}");
    assert!(stderr.contains("5 errors found; nothing was started."), "{stderr}");
}

#[test]
fn a_syntax_error_points_at_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("syntax.ron");
    std::fs::write(&file, "Pipeline(\n    name: \"x\"\n    stages: {},\n)\n").unwrap();
    let output = fxflow(&["validate", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3:5: error: expected `,` or `)`", file.display())),
        "{stderr}"
    );
}

#[test]
fn shipped_pipelines_are_valid() {
    let output = fxflow(&[
        "validate",
        "pipelines/local.ron",
        "examples/pipelines/../../pipelines/local.ron",
    ])
    .output()
    .unwrap();
    // The same file twice in one process binds one telemetry address twice: that is an error.
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("listens on `127.0.0.1:9598`"));

    let output = fxflow(&["validate", "pipelines/local.ron"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("pipelines/local.ron: ok — pipeline `local`, 12 stages"));
    // A short key is refused at validation, with a hint to make a good one.
    let output = fxflow(&["validate", "pipelines/api.ron"])
        .env("FXFLOW_API_KEYS", "short")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("an API key has 5 characters; at least 16 are needed"));
    // The worker set (ingest-http is the live alternative to ingest, so it shares its port).
    let workers = ["ingest", "process", "alerts", "analytics", "store", "index", "api"];
    let files: Vec<String> = workers.iter().map(|w| format!("pipelines/{w}.ron")).collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let output = fxflow(&args)
        .env("FXFLOW_API_KEYS", "key-for-validation-0123")
        .output()
        .unwrap();
    // Run together they would bind their default addresses once each: all distinct.
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = fxflow(&["validate", "pipelines/ingest-http.ron"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let output = fxflow(&["graph", "pipelines/local.ron"]).output().unwrap();
    assert!(output.status.success());
    let dot = String::from_utf8_lossy(&output.stdout);
    assert!(dot.starts_with("digraph \"local\" {"), "{dot}");
    assert!(dot.contains("\"ecb\" -> \"validate\";"));
    assert!(dot.contains("\"validate\" -> \"dead-letters\" [style=dashed, label=\"errors\"];"));
    let output = fxflow(&["graph", "--format", "mermaid", "pipelines/local.ron"])
        .output()
        .unwrap();
    let mermaid = String::from_utf8_lossy(&output.stdout);
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("crosses --> alerts"));
}

#[test]
fn the_reference_names_the_file_or_folder_of_every_stage_kind() {
    let output = fxflow(&["docs"]).output().unwrap();
    let generated = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<(&str, &str)> = generated
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| [`")?;
            let (kind, rest) = rest.split_once('`')?;
            let location = rest.split('`').nth(1)?;
            Some((kind, location))
        })
        .collect();
    for kind in [
        "Api",
        "KafkaSource",
        "KafkaSink",
        "Alert",
        "HttpPoll",
        "LatestRates",
        "Postgres",
    ] {
        assert!(
            rows.iter().any(|(k, _)| *k == kind),
            "{kind} is in the kind table: {rows:?}"
        );
    }
    let root = fxflow_tests::workspace();
    for (kind, location) in rows {
        let file = root.join(format!("{location}.rs"));
        let folder = root.join(location);
        assert!(
            file.is_file() || folder.join("mod.rs").is_file(),
            "{kind}: neither {} nor {}/mod.rs exists",
            file.display(),
            folder.display()
        );
    }
}

#[test]
fn docs_are_the_checked_in_reference() {
    let output = fxflow(&["docs"]).output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8_lossy(&output.stdout);
    let checked_in = std::fs::read_to_string(fxflow_tests::workspace().join("PIPELINES.md")).unwrap();
    assert!(
        generated == checked_in,
        "PIPELINES.md is out of date: run `cargo run -- docs > PIPELINES.md`"
    );
    for kind in [
        "Replay",
        "Synthetic",
        "Enrich",
        "CrossRate",
        "Alert",
        "Stdout",
        "JsonlFile",
        "Null",
    ] {
        assert!(generated.contains(&format!("### `{kind}`")), "{kind} is documented");
    }
}

#[test]
fn the_api_reference_is_the_checked_in_one_and_matches_the_openapi_document() {
    let output = fxflow(&["docs", "--api"]).output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8_lossy(&output.stdout);
    let checked_in = std::fs::read_to_string(fxflow_tests::workspace().join("docs/API.md")).unwrap_or_default();
    assert!(
        generated == checked_in,
        "docs/API.md is out of date: run `cargo run -- docs --api > docs/API.md`"
    );
    let openapi = fxflow(&["docs", "--openapi"]).output().unwrap();
    let document: serde_json::Value = serde_json::from_slice(&openapi.stdout).expect("the OpenAPI document is JSON");
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                generated.contains(&format!("### {} `{path}`", method.to_uppercase())),
                "{method} {path} is in docs/API.md"
            );
        }
    }
}

#[test]
fn the_readme_quotes_the_real_validate_output() {
    let readme = std::fs::read_to_string(fxflow_tests::workspace().join("README.md")).unwrap();
    let start = readme
        .find("$ cargo run --release -- validate examples/pipelines/broken.ron\n")
        .expect("the README shows validate on broken.ron");
    let quoted = &readme[start..];
    let quoted = &quoted[quoted.find('\n').unwrap() + 1..quoted.find("\n```").unwrap() + 1];
    let output = fxflow(&["validate", "examples/pipelines/broken.ron"])
        .env_remove("FXFLOW_OUT")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        quoted,
        String::from_utf8_lossy(&output.stderr),
        "README.md's quoted `validate` output is not what the program prints"
    );
}
