//! Reload: a running pipeline takes a new version of its file by difference,
//! without losing or repeating an event.

use std::time::Duration;

use fxflow_engine::pipeline_file::load_str;
use fxflow_engine::testkit::{probe, test_registry, totals, TestEvent};
use fxflow_engine::{AckStatus, PipelineSpec};

fn pipeline(text: &str) -> PipelineSpec<TestEvent> {
    load_str("test.ron", text, &test_registry(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn numbers(events: &[TestEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| match e {
            TestEvent::Number(n) => *n,
            other => panic!("not a number: {other:?}"),
        })
        .collect()
}

/// Wait until `probe` stored at least `n` events.
async fn stored_at_least(name: &str, n: usize) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while probe(name).stored().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} stored {} events, not {n}", probe(name).stored().len()));
}

fn chain(prefix: &str, repeat: &str) -> String {
    format!(
        r#"Pipeline(name: "{prefix}", stages: {{
            "src": Counter(probe: "{prefix}-src", count: 3000, pause_ms: 1),
            "x": Repeat(inputs: ["src"], {repeat}),
            "sink": Collect(inputs: ["x"], probe: "{prefix}-sink"),
        }})"#
    )
}

/// Every number once before the switch and `times` times after it, in order,
/// with every one of `count` inputs delivered.
fn assert_switched_once(prefix: &str, count: i64, times: usize) {
    let stored = numbers(&probe(&format!("{prefix}-sink")).stored());
    let first_repeated = stored
        .windows(2)
        .position(|w| w[0] == w[1])
        .map(|i| stored[i])
        .expect("the new version repeats");
    let mut expected: Vec<i64> = (1..first_repeated).collect();
    for n in first_repeated..=count {
        expected.extend(std::iter::repeat_n(n, times));
    }
    assert!(first_repeated > 1, "the old version handled the first events");
    assert_eq!(
        stored, expected,
        "each number once before the switch, {times} times after"
    );
    let acks = probe(&format!("{prefix}-src")).acks();
    assert_eq!(acks.len(), count as usize, "every input finalized once");
    assert!(
        acks.iter().all(|(_, status)| *status == AckStatus::Delivered),
        "{acks:?}"
    );
}

#[tokio::test]
async fn a_changed_stage_hands_over_what_was_queued_and_the_rest_keep_running() {
    let mut running = fxflow_engine::start(pipeline(&chain("swap", "times: 1")))
        .await
        .unwrap();
    stored_at_least("swap-sink", 200).await;
    let report = running.reload(pipeline(&chain("swap", "times: 2"))).await.unwrap();
    assert_eq!(report.replaced, ["x"]);
    assert_eq!(
        report.kept,
        ["src", "sink"],
        "an unchanged source and sink keep running"
    );
    assert!(report.added.is_empty() && report.removed.is_empty(), "{report:?}");
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("finished")
        .unwrap();
    // The source kept running (a restarted one would count from 1 again).
    assert_switched_once("swap", 3000, 2);
}

#[tokio::test]
async fn a_changed_buffer_gives_the_stage_a_new_channel_and_keeps_the_queued_events() {
    let mut running = fxflow_engine::start(pipeline(&chain("buffer", "times: 1")))
        .await
        .unwrap();
    stored_at_least("buffer-sink", 200).await;
    let report = running
        .reload(pipeline(&chain("buffer", "times: 3, buffer: (capacity: 8)")))
        .await
        .unwrap();
    assert_eq!(report.replaced, ["x"]);
    running.wait().await.unwrap();
    assert_switched_once("buffer", 3000, 3);
}

#[tokio::test]
async fn a_reload_adds_a_consumer_to_a_running_producer_and_removes_another() {
    let version = |sinks: &[&str]| {
        let sinks: String = sinks
            .iter()
            .map(|s| format!(r#""{s}": Collect(inputs: ["src"], probe: "rewire-{s}"),"#))
            .collect();
        pipeline(&format!(
            r#"Pipeline(name: "rewire", stages: {{
                "src": Counter(probe: "rewire-src", count: 3000, pause_ms: 1), {sinks} }})"#
        ))
    };
    let mut running = fxflow_engine::start(version(&["a"])).await.unwrap();
    stored_at_least("rewire-a", 100).await;
    let report = running.reload(version(&["a", "b"])).await.unwrap();
    assert_eq!((report.added.as_slice(), report.kept.len()), (&["b".to_owned()][..], 2));
    stored_at_least("rewire-b", 100).await;
    let report = running.reload(version(&["b"])).await.unwrap();
    assert_eq!(report.removed, ["a"]);
    running.wait().await.unwrap();

    let a = numbers(&probe("rewire-a").stored());
    let b = numbers(&probe("rewire-b").stored());
    let (a_last, b_first) = (*a.last().unwrap(), b[0]);
    assert_eq!(
        a,
        (1..=a_last).collect::<Vec<_>>(),
        "`a` got a gapless head until it was removed"
    );
    assert_eq!(
        b,
        (b_first..=3000).collect::<Vec<_>>(),
        "`b` got a gapless tail from when it was added"
    );
    assert!(
        b_first > 1 && b_first <= a_last,
        "both were wired in between: {b_first} ≤ {a_last}"
    );
    let acks = probe("rewire-src").acks();
    assert_eq!(acks.len(), 3000);
    assert!(acks.iter().all(|(_, s)| *s == AckStatus::Delivered));
}

#[tokio::test]
async fn a_version_that_cannot_be_built_or_is_renamed_changes_nothing() {
    let v1 = r#"Pipeline(name: "keep", stages: {
        "src": Counter(probe: "keep-src", count: 2000, pause_ms: 1),
        "sink": Collect(inputs: ["src"], probe: "keep-sink"),
    })"#;
    let broken = r#"Pipeline(name: "keep", stages: {
        "src": Counter(probe: "keep-src", count: 2000, pause_ms: 1),
        "sink": Collect(inputs: ["src"], probe: "keep-sink", fail_build: true),
    })"#;
    let mut running = fxflow_engine::start(pipeline(v1)).await.unwrap();
    stored_at_least("keep-sink", 50).await;
    let e = running.reload(pipeline(broken)).await.unwrap_err();
    assert!(e.to_string().contains("cannot build stage `sink`"), "{e}");
    let e = running
        .reload(pipeline(&v1.replace("\"keep\"", "\"other\"")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("name changed"), "{e}");
    let report = running.reload(pipeline(v1)).await.unwrap();
    assert!(report.is_empty(), "the same file again changes nothing: {report:?}");
    running.wait().await.unwrap();
    assert_eq!(
        numbers(&probe("keep-sink").stored()),
        (1..=2000).collect::<Vec<_>>(),
        "the running version went on untouched"
    );
}

fn windowed(prefix: &str, sum: &str) -> PipelineSpec<TestEvent> {
    // One reading a second for a minute, value 1: six whole windows of 10 s.
    let readings: String = (0..60).map(|s| format!("(\"a\", {}, 1),", s * 1000)).collect();
    pipeline(&format!(
        r#"Pipeline(name: "{prefix}", stages: {{
            "src": Readings(probe: "{prefix}-src", readings: [{readings}], pause_ms: 20),
            "sum": WindowSum(inputs: ["src"], size: "10s", {sum}),
            "out": Collect(inputs: ["sum"], probe: "{prefix}-out"),
        }})"#
    ))
}

#[tokio::test]
async fn a_replaced_window_stage_takes_the_open_windows_over() {
    let mut running = fxflow_engine::start(windowed("win", "")).await.unwrap();
    // Inside the second window: one is closed, one is open.
    stored_at_least("win-out", 1).await;
    let report = running.reload(windowed("win", "buffer: (capacity: 64)")).await.unwrap();
    assert_eq!(report.replaced, ["sum"]);
    running.wait().await.unwrap();
    let mut want: Vec<_> = (0..5).map(|w| ("a".to_owned(), w * 10, 10, 10, true)).collect();
    want.push(("a".to_owned(), 50, 10, 10, false)); // the input ended inside it
    assert_eq!(totals("win-out"), want, "no window split in two by the reload");
    assert_eq!(probe("win-src").acks().len(), 60);
}

#[tokio::test]
async fn a_window_stage_whose_time_settings_changed_ends_the_old_windows_as_not_final() {
    let mut running = fxflow_engine::start(windowed("wint", "")).await.unwrap();
    stored_at_least("wint-out", 1).await;
    running
        .reload(windowed("wint", "time: (lateness: \"1s\")"))
        .await
        .unwrap();
    running.wait().await.unwrap();
    let totals = totals("wint-out");
    let summed: i64 = totals.iter().map(|t| t.2).sum();
    assert_eq!(
        summed, 60,
        "every reading counted once, in the old or the new windows: {totals:?}"
    );
    assert!(
        totals.iter().any(|t| !t.4 && t.1 < 50),
        "the window open at the reload ended as not final: {totals:?}"
    );
}
