use super::*;
use crate::stage::ERROR_OUTPUT;
use crate::testkit::{test_registry, TestEvent};

fn load(text: &str) -> Result<PipelineSpec<TestEvent>, Diagnostics> {
    load_str("p.ron", text, &test_registry(), |name| {
        (name == "PORT").then(|| "9000".to_owned())
    })
}

fn errors(text: &str) -> Vec<String> {
    load(text)
        .unwrap_err()
        .0
        .iter()
        .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
        .collect()
}

#[test]
fn a_good_pipeline_loads() {
    let spec = load(
        r#"Pipeline(
    name: "p",
    telemetry: (address: "127.0.0.1:${PORT}"),
    stages: {
        "numbers": Counter(probe: "x", count: 3),
        "double": Double(inputs: ["numbers"], buffer: (capacity: 8, when_full: drop_newest)),
        "out": Collect(inputs: ["double", "double.errors"], probe: "x", retry: (attempts: 2)),
    },
)"#,
    )
    .unwrap();
    assert_eq!(spec.name, "p");
    assert_eq!(spec.telemetry.as_ref().unwrap().address, "127.0.0.1:9000");
    let double = spec.stage("double").unwrap();
    assert_eq!(double.buffer.capacity, 8);
    assert_eq!(double.buffer.when_full, crate::WhenFull::DropNewest);
    let out = spec.stage("out").unwrap();
    assert_eq!(out.inputs[1].output, ERROR_OUTPUT);
    assert_eq!(out.retry.attempts, 2);
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let text = r#"Pipeline(
    name: "p",
    stages: {
        "numbers": Counter(probe: "x", count: 3, colour: "red"),
        "double": Dubble(inputs: ["numbers"]),
        "text": ToText(inputs: ["numbrs"]),
        "text": ToText(inputs: ["numbers"]),
        "again": Double(inputs: ["text"]),
        "out": Collect(inputs: ["again"], probe: "${MISSING}"),
    },
)"#;
    let errors = errors(text);
    assert_eq!(
        errors,
        vec![
            "4:50 unknown field `colour`, expected one of `probe`, `count`, `per_send`, `pause_ms`",
            "5:19 unknown stage kind `Dubble`",
            "6:33 unknown input `numbrs`",
            "7:9 duplicate name `text`",
            "8:34 kind mismatch: `text` emits Text, but `again` (Double) accepts only Number",
            "9:51 environment variable `MISSING` is not set",
        ]
    );
}

#[test]
fn a_misspelt_field_is_matched_against_the_kinds_and_the_shared_fields() {
    let hint = |stage: &str| {
        let text = format!(r#"Pipeline(name: "p", stages: {{ "n": Counter(probe: "x", count: 1), "out": {stage} }})"#);
        load(&text).unwrap_err().0[0].hint.clone().unwrap_or_default()
    };
    // A shared field, which serde's own message does not list.
    assert!(hint(r#"Collect(inptus: ["n"], probe: "x")"#).starts_with("did you mean `inputs`?"));
    // The kind's own field.
    assert!(hint(r#"Collect(inputs: ["n"], prob: "x")"#).starts_with("did you mean `probe`?"));
    // Nothing near: the pointer to the reference alone.
    assert!(hint(r#"Collect(inputs: ["n"], probe: "x", zzzzzzzz: 1)"#).starts_with("see the `Collect` section"));
    // A kind's own retry settings, from before they moved into the shared `retry`.
    for old in ["retries: 3", "initial_backoff: \"1s\"", "max_backoff: \"9s\""] {
        let hint = hint(&format!(r#"Collect(inputs: ["n"], probe: "x", {old})"#));
        assert!(
            hint.starts_with("did you mean `retry`?") && hint.contains("retry: (attempts:"),
            "{hint}"
        );
    }
}

#[test]
fn a_retry_policy_that_shrinks_is_refused() {
    let text = r#"Pipeline(name: "p", stages: { "n": Counter(probe: "x", count: 1),
        "out": Collect(inputs: ["n"], probe: "y", retry: (initial_backoff: "5s", max_backoff: "1s")) })"#;
    let err = load(text).unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|p| p.message.contains("max_backoff must not be shorter")),
        "{err:?}"
    );
}

#[test]
fn hints_suggest_the_near_name() {
    let err = load(r#"Pipeline(name: "p", stages: { "a": Countr(probe: "x") })"#).unwrap_err();
    assert_eq!(
        err.0[0]
            .hint
            .as_deref()
            .map(|h| h.starts_with("did you mean `Counter`?")),
        Some(true)
    );
}

#[test]
fn cycles_are_rejected() {
    let errors = errors(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "a": Double(inputs: ["src", "b"]),
    "b": Double(inputs: ["a"]),
    "out": Collect(inputs: ["b"], probe: "x"),
})"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("cycle: "), "{errors:?}");
}

#[test]
fn a_watching_source_may_close_a_loop_but_other_cycles_are_still_rejected() {
    let ok = load(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "total": Repeat(inputs: ["src", "echo"], times: 1),
    "echo": Echo(inputs: ["total"], probe: "x", below: 100),
    "out": Collect(inputs: ["total"], probe: "x"),
})"#,
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
    let errors = errors(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "echo": Echo(inputs: ["text"], probe: "x", below: 100),
    "text": ToText(inputs: ["src", "echo"]),
    "a": Double(inputs: ["src", "b"]),
    "b": Double(inputs: ["a"]),
    "out": Collect(inputs: ["b", "text"], probe: "x"),
})"#,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("kind mismatch: `text` emits Text, but `echo` (Echo) accepts only Number"),
        "{errors:?}"
    );
    assert!(errors[1].contains("cycle: "), "{errors:?}");
}

#[test]
fn shape_rules() {
    let errors = errors(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x", inputs: ["out"]),
    "lonely": Double(),
    "out": Collect(inputs: ["src"], probe: "x"),
    "after": Collect(inputs: ["out", "src.nope"], probe: "x"),
    "d": Double(inputs: ["src"], retry: (attempts: 1)),
})"#,
    );
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors[0].contains("is a source and takes no `inputs`"));
    assert!(errors[1].contains("needs `inputs`"));
    assert!(errors[2].contains("is a sink and has no output"));
    assert!(errors[3].contains("has no output `nope`"));
    assert!(errors[4].contains("`retry` applies to sinks"));
}

#[test]
fn two_stages_cannot_bind_one_address() {
    let errors = errors(
        r#"Pipeline(name: "p", telemetry: (address: "127.0.0.1:9000"), stages: {
    "src": Counter(probe: "x"),
    "a": Listen(inputs: ["src"], address: "127.0.0.1:9000"),
})"#,
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("listens on `127.0.0.1:9000`, which the telemetry server of `p` already uses"),
        "{errors:?}"
    );
}

#[test]
fn port_zero_is_any_free_port_and_never_clashes() {
    let spec = load(
        r#"Pipeline(name: "p", telemetry: (address: "127.0.0.1:0"), stages: {
    "src": Counter(probe: "x"),
    "a": Listen(inputs: ["src"], address: "127.0.0.1:0"),
    "b": Listen(inputs: ["src"], address: "127.0.0.1:0"),
})"#,
    )
    .expect("port 0 never clashes");
    assert_eq!(spec.addresses.len(), 3);
    assert!(check_together(&[spec]).0.is_empty());
}

#[test]
fn syntax_errors_have_positions() {
    let errors = errors("Pipeline(\n  name: \"p\"\n  stages: {},\n)");
    assert_eq!(errors, vec!["3:3 expected `,` or `)`, found `s`"]);
}

#[test]
fn positions_survive_interpolation() {
    // The value of ${PORT} is longer than the reference; the error after it must still point at the original column.
    let errors = errors(r#"Pipeline(name: "${PORT:-a-long-default-value}", stages: { "a": Nope() })"#);
    assert_eq!(errors, vec!["1:64 unknown stage kind `Nope`"]);
}

#[test]
fn engine_fields_set_twice_are_reported() {
    let errors = errors(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "out": Collect(inputs: ["src"], probe: "x", inputs: ["src"]),
})"#,
    );
    assert_eq!(errors, vec!["3:49 `inputs` is set twice"]);
}

#[test]
fn top_level_mistakes() {
    let errors = errors(r#"Pipeline(nme: "p", stages: [])"#);
    assert_eq!(errors.len(), 3, "{errors:?}");
}

proptest::proptest! {
    /// Mutating a valid file anywhere never panics the loader.
    #[test]
    fn mutated_pipelines_never_panic(pos in 0usize..400, byte in proptest::sample::select(vec![b'(', b')', b'{', b'}', b'[', b']', b'"', b',', b':', b'.', b'$', b'x', b'0', b'\n'])) {
        let text = r#"Pipeline(
    name: "p",
    telemetry: (address: "${ADDR:-127.0.0.1:1}"),
    stages: {
        "numbers": Counter(probe: "x", count: 3),
        "double": Double(inputs: ["numbers"], buffer: (capacity: 8, when_full: drop_newest)),
        "out": Collect(inputs: ["double", "double.errors"], probe: "x"),
    },
)"#;
        let mut bytes = text.as_bytes().to_vec();
        let at = pos % bytes.len();
        bytes[at] = byte;
        if let Ok(mutated) = String::from_utf8(bytes) {
            let _ = load(&mutated);
        }
        let mut deleted = text.as_bytes().to_vec();
        deleted.remove(at);
        if let Ok(mutated) = String::from_utf8(deleted) {
            let _ = load(&mutated);
        }
    }
}

#[test]
fn batch_is_a_sink_field_with_at_least_one_event() {
    let errors = errors(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "d": Double(inputs: ["src"], batch: (max_events: 10)),
    "out": Collect(inputs: ["d"], probe: "x", batch: (max_events: 0, max_wait: "10ms")),
    "slow": Collect(inputs: ["d"], probe: "x", batch: (max_wait: "soon")),
})"#,
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("3:34 `batch` applies to sinks"), "{errors:?}");
    assert!(
        errors[1].starts_with("4:54 batch max_events must be at least 1"),
        "{errors:?}"
    );
    assert!(errors[2].starts_with("5:66 `soon` is not a duration"), "{errors:?}");
    let spec = load(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "out": Collect(inputs: ["src"], probe: "x", batch: (max_events: 500, max_wait: "50ms")),
})"#,
    )
    .unwrap();
    let out = spec.stages.iter().find(|s| s.name == "out").unwrap();
    assert_eq!(out.batch.max_events, 500);
    assert_eq!(out.batch.max_wait, std::time::Duration::from_millis(50));
}

#[test]
fn the_shared_stage_fields_come_from_one_struct() {
    // Every field of `StageFields` is a row of the reference and no kind may claim it.
    let table = stage_fields_table();
    let names = StageFields::names();
    assert_eq!(names.len(), StageFields::fields().len());
    for name in ["inputs", "buffer", "retry", "batch"] {
        assert!(names.contains(&name), "{names:?}");
        assert!(table.contains(&format!("| `{name}` |")), "{table}");
    }
    assert!(
        table.contains("| `retry` | sinks | `(attempts: 5, initial_backoff: \"100ms\", max_backoff: \"10s\")` |"),
        "defaults are written as RON from `Default`: {table}"
    );
    // A malformed field is reported at its value with the field's example as the hint.
    let problems = load(
        r#"Pipeline(name: "p", stages: {
    "src": Counter(probe: "x"),
    "out": Collect(inputs: ["src"], probe: "x", buffer: (capacity: "many")),
})"#,
    )
    .unwrap_err();
    let d = &problems.0[0];
    assert_eq!((d.line, d.column), (3, 68), "{problems}");
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.starts_with("buffer: (capacity: 4096")),
        "{problems}"
    );
}
