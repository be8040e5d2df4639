//! Windows in a running topology: results, late events, acknowledgements.

use std::time::Duration;

use fxflow_engine::metrics::install_recorder;
use fxflow_engine::pipeline_file::load_str;
use fxflow_engine::testkit::{assert_stage_metrics, counter_value, probe, test_registry, totals, TestEvent};
use fxflow_engine::{AckStatus, PipelineSpec, Shape};

fn pipeline(text: &str) -> PipelineSpec<TestEvent> {
    load_str("test.ron", text, &test_registry(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

async fn run_to_end(text: &str) {
    install_recorder();
    let running = fxflow_engine::start(pipeline(text)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("pipeline finished")
        .unwrap();
}

#[tokio::test]
async fn an_input_is_finalized_when_the_windows_it_fed_are_delivered() {
    run_to_end(
        r#"Pipeline(name: "window-acks", stages: {
            "src": Readings(probe: "wa-src", readings: [
                ("a", 1000, 1), ("b", 2000, 2), ("a", 11000, 3), ("a", 12000, 4), ("b", 25000, 5),
            ]),
            "sum": WindowSum(inputs: ["src"], size: "10s"),
            "out": Collect(inputs: ["sum"], probe: "wa-out", delay_ms: 20),
        })"#,
    )
    .await;
    assert_eq!(
        totals("wa-out"),
        vec![
            ("a".into(), 0, 1, 1, true),
            ("b".into(), 0, 2, 1, true),
            ("a".into(), 10, 7, 2, true),
            // The input ended inside [20, 30): emitted, not final.
            ("b".into(), 20, 5, 1, false),
        ]
    );
    // Inputs of closed windows are delivered with their result; the one in the
    // window the input ended inside is not done (a log would re-deliver it).
    assert_eq!(
        probe("wa-src").acks(),
        vec![
            (1, AckStatus::Delivered),
            (2, AckStatus::Delivered),
            (3, AckStatus::Delivered),
            (4, AckStatus::Delivered),
            (5, AckStatus::Failed),
        ]
    );
    let rendered = install_recorder().render();
    assert_stage_metrics(&rendered, "window-acks", "sum", Shape::Transform);
    assert_eq!(
        counter_value(&rendered, "fxflow_window_open", &[("pipeline", "window-acks")]),
        0.0
    );
}

#[tokio::test]
async fn late_events_are_counted_or_dead_lettered() {
    let readings = r#"[("a", 1000, 1), ("a", 15000, 2), ("a", 9000, 4), ("a", 12000, 8)]"#;
    run_to_end(&format!(
        r#"Pipeline(name: "window-late-drop", stages: {{
            "src": Readings(probe: "wl-src", readings: {readings}),
            "sum": WindowSum(inputs: ["src"], size: "10s", time: (lateness: "4s")),
            "out": Collect(inputs: ["sum"], probe: "wl-out"),
        }})"#
    ))
    .await;
    // 9 s arrives when the watermark is 15 - 4 = 11: [0, 10) has closed. 12 s is within.
    assert_eq!(
        totals("wl-out"),
        vec![("a".into(), 0, 1, 1, true), ("a".into(), 10, 10, 2, false)]
    );
    let rendered = install_recorder().render();
    let late = counter_value(
        &rendered,
        "fxflow_stage_discarded_events_total",
        &[("pipeline", "window-late-drop"), ("reason", "late")],
    );
    assert_eq!(late, 1.0);
    assert_eq!(probe("wl-src").acks()[2], (3, AckStatus::Rejected));

    run_to_end(&format!(
        r#"Pipeline(name: "window-late-error", stages: {{
            "src": Readings(probe: "wle-src", readings: {readings}),
            "sum": WindowSum(inputs: ["src"], size: "10s", time: (lateness: "4s", late: Error)),
            "out": Collect(inputs: ["sum"], probe: "wle-out"),
            "dead": Collect(inputs: ["sum.errors"], probe: "wle-dead"),
        }})"#
    ))
    .await;
    let dead = probe("wle-dead").stored();
    assert_eq!(dead.len(), 1);
    match &dead[0] {
        TestEvent::DeadLetter {
            reason: "late",
            error,
            event: Some(event),
            ..
        } => {
            assert!(
                error.contains("1970-01-01T00:00:09Z")
                    && error.contains("[1970-01-01T00:00:00Z, 1970-01-01T00:00:10Z)"),
                "{error}"
            );
            assert!(matches!(**event, TestEvent::Reading { at_ms: 9000, .. }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        probe("wle-src").acks()[2],
        (3, AckStatus::Delivered),
        "stored as a dead letter"
    );
}

#[test]
fn window_settings_are_checked_before_anything_runs() {
    let text = r#"Pipeline(name: "bad-window", stages: {
        "src": Readings(probe: "x", readings: []),
        "sum": WindowSum(inputs: ["src"], size: "10s", time: (late: Later)),
        "sums": WindowSum(inputs: ["src"], size: "10s", time: (max_open: 0, emit: Every("0s"))),
        "out": Collect(inputs: ["sum", "sums"], probe: "x"),
    })"#;
    let Err(errors) = load_str("test.ron", text, &test_registry(), |_| None) else {
        panic!("the file is invalid")
    };
    let errors = errors.to_string();
    assert!(errors.contains("unknown variant `Later`"), "{errors}");
    assert!(errors.contains("max_open must be at least 1"), "{errors}");
    assert!(
        errors.contains("emit: Every(...) needs a duration above zero"),
        "{errors}"
    );
}
