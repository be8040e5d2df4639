//! The engine's runtime promises, each on a real topology of test stages.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fxflow_engine::channel::{bounded, BufferConfig, WhenFull};
use fxflow_engine::metrics::{install_recorder, StageLabels};
use fxflow_engine::pipeline_file::load_str;
use fxflow_engine::testkit::{assert_stage_metrics, counter_value, probe, test_registry, TestEvent};
use fxflow_engine::{AckStatus, AckToken, Envelope, PipelineSpec, Shape};

fn pipeline(text: &str) -> PipelineSpec<TestEvent> {
    load_str("test.ron", text, &test_registry(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// Wait (up to 10 s) until `condition` holds: tests wait for what they need, not for a time.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn run_to_end(text: &str) {
    let running = fxflow_engine::start(pipeline(text)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("pipeline finished")
        .unwrap();
}

#[tokio::test]
async fn source_hears_its_ack_only_after_every_sink_finished() {
    // Fan-out to a fast and a slow sink; each input is repeated 3 times (derived events share the token).
    let running = fxflow_engine::start(pipeline(
        r#"Pipeline(name: "acks", stages: {
            "src": Counter(probe: "acks-src", count: 5),
            "repeat": Repeat(inputs: ["src"], times: 3),
            "fast": Collect(inputs: ["repeat"], probe: "acks-fast"),
            "slow": Collect(inputs: ["repeat"], probe: "acks-slow", delay_ms: 300),
        })"#,
    ))
    .await
    .unwrap();
    wait_until("the fast sink to have everything", || {
        probe("acks-fast").stored().len() == 15
    })
    .await;
    assert!(probe("acks-slow").stored().len() < 15, "the slow sink is still writing");
    assert!(
        probe("acks-src").acks().is_empty(),
        "no input is finalized while a sink still holds it"
    );
    running.wait().await.unwrap();
    assert_eq!(probe("acks-slow").stored().len(), 15);
    let acks = probe("acks-src").acks();
    assert_eq!(acks, (1..=5).map(|n| (n, AckStatus::Delivered)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_failing_sink_without_error_output_never_delivers() {
    run_to_end(
        r#"Pipeline(name: "fail", stages: {
            "src": Counter(probe: "fail-src", count: 3),
            "good": Collect(inputs: ["src"], probe: "fail-good"),
            "bad": Collect(inputs: ["src"], probe: "fail-bad", fail: true, retry: (attempts: 0)),
        })"#,
    )
    .await;
    assert_eq!(probe("fail-good").stored().len(), 3);
    assert!(
        probe("fail-src").acks().iter().all(|(_, s)| *s == AckStatus::Failed),
        "{:?}",
        probe("fail-src").acks()
    );
    assert_eq!(probe("fail-src").acks().len(), 3);
}

#[tokio::test]
async fn a_failing_sink_with_an_error_output_delivers_dead_letters() {
    run_to_end(
        r#"Pipeline(name: "dlq", stages: {
            "src": Counter(probe: "dlq-src", count: 3),
            "bad": Collect(inputs: ["src"], probe: "dlq-bad", fail: true, retry: (attempts: 1, initial_backoff: "1ms")),
            "dead": Collect(inputs: ["bad.errors"], probe: "dlq-dead"),
        })"#,
    )
    .await;
    let dead = probe("dlq-dead").stored();
    assert_eq!(dead.len(), 3);
    assert!(
        matches!(&dead[0], TestEvent::DeadLetter { stage, reason: "write_failed", event: Some(e), .. } if stage == "bad" && **e == TestEvent::Number(1))
    );
    assert!(probe("dlq-src").acks().iter().all(|(_, s)| *s == AckStatus::Delivered));
}

#[tokio::test]
async fn rejected_events_are_counted_and_dead_lettered() {
    let handle = install_recorder();
    run_to_end(
        r#"Pipeline(name: "reject", stages: {
            "src": Counter(probe: "reject-src", count: 20, per_send: 4),
            "double": Double(inputs: ["src"]),
            "out": Collect(inputs: ["double"], probe: "reject-out"),
            "dead": Collect(inputs: ["double.errors"], probe: "reject-dead"),
        })"#,
    )
    .await;
    assert_eq!(probe("reject-out").stored().len(), 18);
    assert_eq!(probe("reject-dead").stored().len(), 2, "7 and 14 are rejected");
    let dead_ingested = probe("reject-dead").ingested.lock().unwrap().clone();
    assert!(
        dead_ingested.iter().all(|t| *t > 0),
        "dead letters keep their input's ingest time: {dead_ingested:?}"
    );
    let rendered = handle.render();
    let errors = counter_value(
        &rendered,
        "fxflow_stage_errors_total",
        &[
            ("pipeline", "reject"),
            ("stage", "double"),
            ("error_type", "multiple_of_seven"),
        ],
    );
    assert_eq!(errors, 2.0);
    let received = counter_value(
        &rendered,
        "fxflow_stage_received_events_total",
        &[("pipeline", "reject"), ("stage", "double"), ("kind", "Number")],
    );
    assert_eq!(received, 20.0);
    let sent = counter_value(
        &rendered,
        "fxflow_stage_sent_events_total",
        &[("pipeline", "reject"), ("stage", "double"), ("kind", "Number")],
    );
    assert_eq!(sent, 18.0);
    for (stage, shape) in [
        ("src", Shape::Source),
        ("double", Shape::Transform),
        ("out", Shape::Sink),
    ] {
        assert_stage_metrics(&rendered, "reject", stage, shape);
    }
    // Rejected without an error output wired would be finalized as Rejected, not Failed.
    assert!(probe("reject-src")
        .acks()
        .iter()
        .all(|(_, s)| *s == AckStatus::Delivered));
}

#[tokio::test]
async fn a_full_buffer_blocks_the_sender() {
    let labels = StageLabels::new("bp", "downstream");
    let (tx, mut rx) = bounded::<TestEvent>(
        BufferConfig {
            capacity: 4,
            when_full: WhenFull::Block,
        },
        &labels,
    );
    let batch = |n: usize| {
        (0..n)
            .map(|i| Envelope::unacked(TestEvent::Number(i as i64)))
            .collect::<Vec<_>>()
    };
    tx.send(batch(4)).await.unwrap();
    let blocked = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(batch(1)).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!blocked.is_finished(), "a fifth event must wait for room");
    assert_eq!(rx.recv().await.unwrap().len(), 4);
    blocked.await.unwrap().unwrap();
    assert_eq!(rx.recv().await.unwrap().len(), 1);
}

#[tokio::test]
async fn drop_newest_drops_counts_and_finalizes() {
    let handle = install_recorder();
    let labels = StageLabels::new("dn", "downstream");
    let (tx, mut rx) = bounded::<TestEvent>(
        BufferConfig {
            capacity: 2,
            when_full: WhenFull::DropNewest,
        },
        &labels,
    );
    let (token, ack) = AckToken::new();
    tx.send(vec![
        Envelope::unacked(TestEvent::Number(1)),
        Envelope::unacked(TestEvent::Number(2)),
    ])
    .await
    .unwrap();
    tx.send(vec![Envelope::new(TestEvent::Number(3), token)]).await.unwrap();
    assert_eq!(
        ack.wait().await,
        AckStatus::Rejected,
        "a dropped event is finalized as rejected"
    );
    let discarded = counter_value(
        &handle.render(),
        "fxflow_stage_discarded_events_total",
        &[("pipeline", "dn"), ("reason", "buffer_full")],
    );
    assert_eq!(discarded, 1.0);
    assert_eq!(rx.recv().await.unwrap().len(), 2);
    drop(tx);
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn shutdown_drains_everything_in_flight() {
    // An endless source, a transform and a slow sink with a small buffer: when
    // shutdown comes, events sit in every channel. All must reach the sink.
    let running = fxflow_engine::start(pipeline(
        r#"Pipeline(name: "drain", stages: {
            "src": Counter(probe: "drain-src", per_send: 10),
            "repeat": Repeat(inputs: ["src"], times: 1, buffer: (capacity: 50)),
            "out": Collect(inputs: ["repeat"], probe: "drain-out", delay_ms: 5, buffer: (capacity: 50)),
        })"#,
    ))
    .await
    .unwrap();
    // Shut down once the sink has stored some and more are in flight behind it.
    wait_until("events stored and more in flight", || {
        let stored = probe("drain-out").stored().len() as u64;
        stored >= 20 && probe("drain-src").emitted.load(Ordering::SeqCst) > stored + 20
    })
    .await;
    let at_signal = probe("drain-out").stored().len() as u64;
    running.stop(Duration::from_secs(20)).await.unwrap();
    let emitted = probe("drain-src").emitted.load(Ordering::SeqCst);
    let stored = probe("drain-out").stored().len() as u64;
    assert!(
        emitted > at_signal,
        "events were in flight at the signal ({emitted} emitted, {at_signal} stored)"
    );
    assert_eq!(
        stored, emitted,
        "every emitted event was stored before the pipeline ended"
    );
    assert_eq!(probe("drain-src").acks().len() as u64, emitted);
}

#[tokio::test]
async fn fan_in_merges_every_input() {
    run_to_end(
        r#"Pipeline(name: "fanin", stages: {
            "a": Counter(probe: "fanin-a", count: 10),
            "b": Counter(probe: "fanin-b", count: 7),
            "out": Collect(inputs: ["a", "b"], probe: "fanin-out"),
        })"#,
    )
    .await;
    assert_eq!(probe("fanin-out").stored().len(), 17);
}

#[tokio::test]
async fn a_crashing_stage_stops_the_pipeline_and_nothing_hangs() {
    // An endless source into a stage that panics on its fifth event, with a tiny
    // buffer so the source is blocked on a full channel when the crash happens.
    let running = fxflow_engine::start(pipeline(
        r#"Pipeline(name: "crash", stages: {
            "src": Counter(probe: "crash-src", per_send: 1),
            "double": Double(inputs: ["src"], panic_on: 5, buffer: (capacity: 1)),
            "out": Collect(inputs: ["double"], probe: "crash-out"),
        })"#,
    ))
    .await
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("the pipeline ends by itself");
    let error = result.unwrap_err().to_string();
    assert!(error.contains("panicked"), "{error}");
    let acks = probe("crash-src").acks();
    assert!(
        acks.iter().any(|(_, s)| *s == AckStatus::Failed),
        "events lost in the crash are not reported delivered: {acks:?}"
    );
    assert!(probe("crash-out").stored().len() < 5);
}

#[tokio::test]
async fn a_stage_that_cannot_be_built_leaves_nothing_running() {
    let spec = pipeline(
        r#"Pipeline(name: "nobuild", stages: {
            "src": Counter(probe: "nobuild-src"),
            "out": Collect(inputs: ["src"], probe: "nobuild-out", fail_build: true),
        })"#,
    );
    // No sleep to show nothing happens: a task spawned and still waiting to run would be
    // alive, one that ran would have emitted.
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let before = tasks();
    let error = fxflow_engine::start(spec).await.err().expect("the build fails");
    assert!(error.to_string().contains("cannot build stage `out`"), "{error}");
    assert_eq!(tasks(), before, "no stage task was spawned");
    assert_eq!(
        probe("nobuild-src").emitted.load(Ordering::SeqCst),
        0,
        "the source never started"
    );
}

#[tokio::test]
async fn a_sink_waits_up_to_max_wait_to_fill_a_batch_of_max_events() {
    // 10 events, one every 20 ms: the sink gathers 4, 4, then the last 2 when the input ends.
    run_to_end(
        r#"Pipeline(name: "batching", stages: {
            "src": Counter(probe: "batching-src", count: 10, pause_ms: 20),
            "out": Collect(inputs: ["src"], probe: "batching-out", batch: (max_events: 4, max_wait: "5s")),
        })"#,
    )
    .await;
    assert_eq!(*probe("batching-out").writes.lock().unwrap(), vec![4, 4, 2]);
    assert_eq!(probe("batching-out").stored().len(), 10);
}

#[tokio::test]
async fn a_pipelining_sink_gets_its_next_batch_while_earlier_writes_are_in_flight() {
    // Each write takes 200 ms to finish; the source offers a batch every 20 ms.
    run_to_end(
        r#"Pipeline(name: "pipelined", stages: {
            "src": Counter(probe: "pipelined-src", count: 6, pause_ms: 20),
            "out": Collect(inputs: ["src"], probe: "pipelined-out", pipelined: true, delay_ms: 200,
                batch: (max_in_flight: 8)),
        })"#,
    )
    .await;
    let out = probe("pipelined-out");
    assert!(
        out.most_in_flight.load(Ordering::SeqCst) > 1,
        "the next write started before the last one finished"
    );
    assert_eq!(out.in_flight.load(Ordering::SeqCst), 0, "every write finished");
    let stored: Vec<i64> = out
        .stored()
        .iter()
        .map(|e| match e {
            TestEvent::Number(n) => *n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(stored, (1..=6).collect::<Vec<_>>(), "finished in order");
    let acks = probe("pipelined-src").acks();
    assert_eq!(acks, (1..=6).map(|n| (n, AckStatus::Delivered)).collect::<Vec<_>>());

    // `batch.max_in_flight: 1`: each write waits for the one before it.
    run_to_end(
        r#"Pipeline(name: "one-at-a-time", stages: {
            "src": Counter(probe: "one-at-a-time-src", count: 4, pause_ms: 20),
            "out": Collect(inputs: ["src"], probe: "one-at-a-time-out", pipelined: true, delay_ms: 100,
                batch: (max_in_flight: 1)),
        })"#,
    )
    .await;
    let out = probe("one-at-a-time-out");
    assert_eq!(out.most_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(out.stored().len(), 4);
}

#[tokio::test]
async fn a_failed_pipelined_write_is_dead_lettered_not_acknowledged() {
    run_to_end(
        r#"Pipeline(name: "pipelined-fail", stages: {
            "src": Counter(probe: "pipelined-fail-src", count: 3),
            "out": Collect(inputs: ["src"], probe: "pipelined-fail-out", pipelined: true, fail: true),
            "dlq": Collect(inputs: ["out.errors"], probe: "pipelined-fail-dlq"),
        })"#,
    )
    .await;
    assert!(probe("pipelined-fail-out").stored().is_empty());
    assert_eq!(probe("pipelined-fail-dlq").stored().len(), 3);
    let acks = probe("pipelined-fail-src").acks();
    assert_eq!(
        acks,
        (1..=3).map(|n| (n, AckStatus::Delivered)).collect::<Vec<_>>(),
        "stored as dead letters"
    );
}

#[tokio::test]
async fn events_carry_their_ingest_time_from_the_source_and_every_stage_reports_their_age() {
    let handle = install_recorder();
    let before = fxflow_engine::IngestTime::now().as_micros();
    run_to_end(
        r#"Pipeline(name: "ingest-time", stages: {
            "src": Counter(probe: "ingest-src", count: 4, pause_ms: 10),
            "repeat": Repeat(inputs: ["src"], times: 3),
            "out": Collect(inputs: ["repeat"], probe: "ingest-out"),
        })"#,
    )
    .await;
    let after = fxflow_engine::IngestTime::now().as_micros();
    let ingested = probe("ingest-out").ingested.lock().unwrap().clone();
    assert_eq!(ingested.len(), 12);
    assert!(ingested.iter().all(|t| (before..=after).contains(t)), "{ingested:?}");
    // The three events derived from one input share its ingest time; inputs sent apart differ.
    for repeats in ingested.chunks(3) {
        assert!(repeats.iter().all(|t| *t == repeats[0]), "{ingested:?}");
    }
    assert!(ingested[0] < ingested[11], "{ingested:?}");
    let rendered = handle.render();
    for stage in ["repeat", "out"] {
        let count = counter_value(
            &rendered,
            "fxflow_stage_event_age_seconds_count",
            &[("pipeline", "ingest-time"), ("stage", stage)],
        );
        assert!(count >= 1.0, "{stage}: {count}\n{rendered}");
    }
    assert!(
        rendered.contains(r#"fxflow_stage_event_age_seconds_bucket{pipeline="ingest-time",stage="out",le="0.0001"}"#),
        "buckets from 100 µs"
    );
}

#[tokio::test]
async fn without_max_wait_a_sink_writes_what_is_there_and_never_more_than_max_events() {
    run_to_end(
        r#"Pipeline(name: "eager", stages: {
            "src": Counter(probe: "eager-src", count: 5, pause_ms: 20),
            "out": Collect(inputs: ["src"], probe: "eager-out"),
        })"#,
    )
    .await;
    assert_eq!(
        *probe("eager-out").writes.lock().unwrap(),
        vec![1; 5],
        "each event written as it arrives"
    );
    // Upstream batches of 5 are split to honour max_events: 3.
    run_to_end(
        r#"Pipeline(name: "split", stages: {
            "src": Counter(probe: "split-src", count: 10, per_send: 5),
            "out": Collect(inputs: ["src"], probe: "split-out", batch: (max_events: 3)),
        })"#,
    )
    .await;
    let writes = probe("split-out").writes.lock().unwrap().clone();
    assert!(writes.iter().all(|&n| n <= 3), "{writes:?}");
    assert_eq!(writes.iter().sum::<usize>(), 10);
    let acks = probe("split-src").acks();
    assert_eq!(acks, (1..=10).map(|n| (n, AckStatus::Delivered)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_watching_source_feeds_back_and_everything_drains_on_shutdown() {
    // counter → total ⇄ echo: echo watches `total` and sends 1000 + n back into it.
    let running = fxflow_engine::start(pipeline(
        r#"Pipeline(name: "echo", stages: {
            "src": Counter(probe: "echo-src", pause_ms: 1),
            "total": Repeat(inputs: ["src", "echo"], times: 1, buffer: (capacity: 4)),
            "echo": Echo(inputs: ["total"], probe: "echo-watched", below: 1000, buffer: (capacity: 4)),
            "out": Collect(inputs: ["total"], probe: "echo-out"),
        })"#,
    ))
    .await
    .unwrap();
    // Stop once echoes flow back through the loop.
    wait_until("echoes back in `total`", || {
        let out = probe("echo-out").stored();
        out.iter()
            .filter(|e| matches!(e, TestEvent::Number(n) if *n >= 1000))
            .count()
            > 0
            && out
                .iter()
                .filter(|e| matches!(e, TestEvent::Number(n) if *n < 1000))
                .count()
                > 10
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), running.stop(Duration::from_secs(5)))
        .await
        .expect("a loop through a watching source does not hold the drain")
        .unwrap();
    let out = probe("echo-out").stored();
    let numbers: Vec<i64> = out
        .iter()
        .map(|e| match e {
            TestEvent::Number(n) => *n,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let counted = numbers.iter().filter(|n| **n < 1000).count();
    let echoed = numbers.iter().filter(|n| **n >= 1000).count();
    assert!(counted > 10, "the counter ran: {counted}");
    assert!(echoed > 0, "echoes came back into `total`");
    assert!(echoed <= counted, "at most one echo per number");
    for n in numbers.iter().filter(|n| **n >= 1000) {
        assert!(numbers.contains(&(n - 1000)), "{n} echoes a number that was counted");
    }
    assert_eq!(
        probe("echo-watched").stored().len(),
        out.len(),
        "the watcher saw everything `total` emitted, to the end"
    );
}
