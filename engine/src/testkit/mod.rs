//! Helpers for testing stages and pipelines, used by the engine's own tests
//! and by stage crates.
//!
//! - [`run_transform`] feeds events through a function-shaped transform exactly
//!   as the engine does and returns what it emitted and rejected.
//! - [`assert_stage_metrics`] is the compliance check (after Vector's
//!   `assert_transform_compliance`): a stage that ran must show the required
//!   metrics.
//! - [`TestEvent`] and the `test_registry` stages (`Counter`, `Readings`, `Double`,
//!   `ToText`, `Repeat`, `WindowSum`, `Collect`, `Listen`, `Echo`) build small real
//!   pipelines whose behaviour tests observe through a named [`Probe`].
//! - [`kafka`]: a wire-ready event type and helpers for tests of the Kafka
//!   transport on librdkafka's mock cluster.

pub mod kafka;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::ack::{AckStatus, AckToken};
use crate::event::{DeadLetter, Envelope, Event, Kinds, DEAD_LETTER_KIND};
use crate::registry::{BuildContext, ConfigProblem, ListenAddress, Registry, StageConfig};
use crate::stage::{
    Emit, FunctionTransform, Shape, Sink, SinkError, Source, SourceContext, Stage, StageError, StartedWrite,
};
use crate::window::{Aggregation, Assigned, Contribution, EventTime, Window, WindowConfig, WindowShape, WindowStage};

/// What a function transform did with a list of inputs.
#[derive(Debug)]
pub struct Transformed<E> {
    pub events: Vec<E>,
    /// `(reason, error, event)` for each rejected event.
    pub rejected: Vec<(&'static str, String, Option<E>)>,
}

/// Run `stage` over `inputs` the way the engine's function driver does.
pub fn run_transform<E: Event>(
    stage: &mut dyn FunctionTransform<E>,
    inputs: impl IntoIterator<Item = E>,
) -> Transformed<E> {
    let mut emit = Emit::default();
    for event in inputs {
        stage.transform(event, &mut emit);
    }
    let (events, failures) = emit.into_parts();
    Transformed {
        events: events.into_iter().map(|e| e.event).collect(),
        rejected: failures.into_iter().map(|f| (f.reason, f.error, f.event)).collect(),
    }
}

/// Assert that the rendered Prometheus text shows `stage` of `pipeline` received
/// and sent events (sinks: received only), as every stage must.
pub fn assert_stage_metrics(rendered: &str, pipeline: &str, stage: &str, shape: Shape) {
    let has = |metric: &str| {
        rendered.lines().any(|line| {
            line.starts_with(metric)
                && line.contains(&format!("pipeline=\"{pipeline}\""))
                && line.contains(&format!("stage=\"{stage}\""))
                && !line.trim_end().ends_with(" 0")
        })
    };
    if shape != Shape::Source {
        assert!(
            has(crate::metrics::RECEIVED_EVENTS),
            "stage `{stage}` shows no received events in:\n{rendered}"
        );
        assert!(
            has(crate::metrics::PROCESSING_SECONDS),
            "stage `{stage}` shows no processing time in:\n{rendered}"
        );
    }
    if shape != Shape::Sink {
        assert!(
            has(crate::metrics::SENT_EVENTS),
            "stage `{stage}` shows no sent events in:\n{rendered}"
        );
    }
}

/// The value of one counter line in rendered Prometheus text (0 when absent).
pub fn counter_value(rendered: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    rendered
        .lines()
        .filter(|line| line.starts_with(metric) && labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A free loopback port: bound and released, good enough for tests on one
/// machine. The one helper every test crate uses (`fxflow-tests` re-exports it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A minimal event type for engine tests.
#[derive(Clone, Debug, PartialEq)]
pub enum TestEvent {
    Number(i64),
    Text(String),
    /// A keyed measurement at an instant (milliseconds since the Unix epoch).
    Reading {
        key: String,
        at_ms: i64,
        value: i64,
    },
    /// The sum of a key's readings in one window (from `WindowSum`).
    Total {
        key: String,
        start_ms: i64,
        end_ms: i64,
        sum: i64,
        count: u64,
        closed: bool,
    },
    DeadLetter {
        stage: String,
        reason: &'static str,
        error: String,
        event: Option<Box<TestEvent>>,
    },
}

impl Event for TestEvent {
    fn kind(&self) -> &'static str {
        match self {
            TestEvent::Number(_) => "Number",
            TestEvent::Text(_) => "Text",
            TestEvent::Reading { .. } => "Reading",
            TestEvent::Total { .. } => "Total",
            TestEvent::DeadLetter { .. } => DEAD_LETTER_KIND,
        }
    }

    fn dead_letter(letter: DeadLetter<Self>) -> Self {
        TestEvent::DeadLetter {
            stage: letter.stage,
            reason: letter.reason,
            error: letter.error,
            event: letter.event,
        }
    }
}

/// Shared observations of test stages, found by name.
#[derive(Default, Debug)]
pub struct Probe {
    pub emitted: AtomicU64,
    pub acks: Mutex<Vec<(i64, AckStatus)>>,
    pub stored: Mutex<Vec<TestEvent>>,
    /// The size of each write a sink received.
    pub writes: Mutex<Vec<usize>>,
    /// The ingest time (µs) of each event a sink stored.
    pub ingested: Mutex<Vec<u64>>,
    /// Writes a pipelining sink has started and not finished, and the most at once.
    pub in_flight: AtomicU64,
    pub most_in_flight: AtomicU64,
}

impl Probe {
    pub fn stored(&self) -> Vec<TestEvent> {
        self.stored.lock().unwrap().clone()
    }

    pub fn acks(&self) -> Vec<(i64, AckStatus)> {
        let mut acks = self.acks.lock().unwrap().clone();
        acks.sort_by_key(|(n, _)| *n);
        acks
    }
}

/// The probe called `name` (created on first use).
pub fn probe(name: &str) -> Arc<Probe> {
    static PROBES: OnceLock<Mutex<HashMap<String, Arc<Probe>>>> = OnceLock::new();
    PROBES
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .clone()
}

/// (key, start s, sum, count, closed) of every window total (`WindowSum`) the probe `name` stored.
pub fn totals(name: &str) -> Vec<(String, i64, i64, u64, bool)> {
    probe(name)
        .stored()
        .into_iter()
        .filter_map(|e| match e {
            TestEvent::Total {
                key,
                start_ms,
                sum,
                count,
                closed,
                ..
            } => Some((key, start_ms / 1000, sum, count, closed)),
            _ => None,
        })
        .collect()
}

/// A registry of the test stages.
pub fn test_registry() -> Registry<TestEvent> {
    let mut registry = Registry::new();
    registry
        .stage::<CounterConfig>("Counter")
        .stage::<ReadingsConfig>("Readings")
        .stage::<WindowSumConfig>("WindowSum")
        .stage::<DoubleConfig>("Double")
        .stage::<ToTextConfig>("ToText")
        .stage::<RepeatConfig>("Repeat")
        .stage::<CollectConfig>("Collect")
        .stage::<ListenConfig>("Listen")
        .stage::<EchoConfig>("Echo");
    registry
}

/// Source: numbers 1..=count (or until shutdown), each with an ack token recorded in `probe`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    pub probe: String,
    pub count: Option<u64>,
    /// Events per send (one batch downstream).
    #[serde(default = "one")]
    pub per_send: usize,
    #[serde(default)]
    pub pause_ms: u64,
}

fn one() -> usize {
    1
}

struct Counter {
    probe: Arc<Probe>,
    count: Option<u64>,
    batch: usize,
    pause: Duration,
}

#[async_trait]
impl StageConfig<TestEvent> for CounterConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Number"])
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Source(Box::new(Counter {
            probe: probe(&self.probe),
            count: self.count,
            batch: self.per_send.max(1),
            pause: Duration::from_millis(self.pause_ms),
        })))
    }
}

#[async_trait]
impl Source<TestEvent> for Counter {
    async fn run(self: Box<Self>, mut cx: SourceContext<TestEvent>) -> Result<(), StageError> {
        let mut next = 1i64;
        loop {
            if cx.shutdown.is_triggered() || self.count.is_some_and(|c| next as u64 > c) {
                return Ok(());
            }
            let mut batch = Vec::with_capacity(self.batch);
            while batch.len() < self.batch && self.count.is_none_or(|c| next as u64 <= c) {
                let probe = self.probe.clone();
                let n = next;
                let token = AckToken::with_callback(move |status| probe.acks.lock().unwrap().push((n, status)));
                batch.push(Envelope::new(TestEvent::Number(n), token));
                next += 1;
            }
            self.probe.emitted.fetch_add(batch.len() as u64, Ordering::SeqCst);
            cx.outputs.send(batch).await?;
            if !self.pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(self.pause) => {}
                    _ = cx.shutdown.wait() => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Transform: doubles numbers; rejects anything else.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoubleConfig {
    /// Panic on this number (to test how the engine handles a crashing stage).
    #[serde(default)]
    pub panic_on: Option<i64>,
}

struct Double {
    panic_on: Option<i64>,
}

impl FunctionTransform<TestEvent> for Double {
    fn transform(&mut self, event: TestEvent, emit: &mut Emit<TestEvent>) {
        if let (TestEvent::Number(n), Some(p)) = (&event, self.panic_on) {
            assert!(*n != p, "Double was told to panic on {p}");
        }
        match event {
            TestEvent::Number(n) if n % 7 == 0 => emit.reject(
                TestEvent::Number(n),
                "multiple_of_seven",
                format!("{n} is a multiple of 7"),
            ),
            TestEvent::Number(n) => emit.push(TestEvent::Number(n * 2)),
            other => emit.reject(other, "not_a_number", "only numbers can be doubled"),
        }
    }
}

#[async_trait]
impl StageConfig<TestEvent> for DoubleConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }
    fn accepts(&self) -> Kinds {
        Kinds::only(&["Number"])
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Number"])
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Function(Box::new(Double {
            panic_on: self.panic_on,
        })))
    }
}

/// Transform: numbers to text.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToTextConfig {}

struct ToText;

impl FunctionTransform<TestEvent> for ToText {
    fn transform(&mut self, event: TestEvent, emit: &mut Emit<TestEvent>) {
        if let TestEvent::Number(n) = event {
            emit.push(TestEvent::Text(n.to_string()));
        }
    }
}

#[async_trait]
impl StageConfig<TestEvent> for ToTextConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }
    fn accepts(&self) -> Kinds {
        Kinds::only(&["Number"])
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Text"])
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Function(Box::new(ToText)))
    }
}

/// Transform: each event `times` times (derived events share the input's token).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatConfig {
    pub times: usize,
}

struct Repeat(usize);

impl FunctionTransform<TestEvent> for Repeat {
    fn transform(&mut self, event: TestEvent, emit: &mut Emit<TestEvent>) {
        for _ in 0..self.0 {
            emit.push(event.clone());
        }
    }
}

#[async_trait]
impl StageConfig<TestEvent> for RepeatConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }
    fn emits(&self) -> Kinds {
        Kinds::Any
    }
    fn emits_given(&self, inputs: &Kinds) -> Kinds {
        inputs.clone()
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Function(Box::new(Repeat(self.times))))
    }
}

/// Sink: stores events into `probe` after `delay_ms`; with `fail` it rejects every write.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    pub probe: String,
    /// Fail at build time (to test that a pipeline that cannot start leaves nothing running).
    #[serde(default)]
    pub fail_build: bool,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub fail: bool,
    /// Start writes without waiting for them (`Sink::start_write`): the delay
    /// runs in the returned future.
    #[serde(default)]
    pub pipelined: bool,
}

struct Collect {
    probe: Arc<Probe>,
    delay: Duration,
    fail: bool,
    pipelined: bool,
}

impl Collect {
    fn store(probe: &Probe, fail: bool, events: Vec<TestEvent>, ingested: Vec<u64>) -> Result<(), SinkError> {
        if fail {
            return Err(SinkError::fatal("this sink rejects everything"));
        }
        probe.writes.lock().unwrap().push(events.len());
        probe.ingested.lock().unwrap().extend(ingested);
        probe.stored.lock().unwrap().extend(events);
        Ok(())
    }
}

#[async_trait]
impl Sink<TestEvent> for Collect {
    async fn write(&mut self, batch: &[Envelope<TestEvent>]) -> Result<(), SinkError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let events = batch.iter().map(|e| e.event.clone()).collect();
        let ingested = batch.iter().map(|e| e.ingested.as_micros()).collect();
        Collect::store(&self.probe, self.fail, events, ingested)
    }

    async fn start_write(&mut self, batch: &[Envelope<TestEvent>]) -> StartedWrite {
        if !self.pipelined {
            return StartedWrite::Done(self.write(batch).await);
        }
        let (probe, delay, fail) = (self.probe.clone(), self.delay, self.fail);
        let events: Vec<TestEvent> = batch.iter().map(|e| e.event.clone()).collect();
        let ingested = batch.iter().map(|e| e.ingested.as_micros()).collect();
        let now = probe.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        probe.most_in_flight.fetch_max(now, Ordering::SeqCst);
        StartedWrite::Pending(Box::pin(async move {
            tokio::time::sleep(delay).await;
            probe.in_flight.fetch_sub(1, Ordering::SeqCst);
            Collect::store(&probe, fail, events, ingested)
        }))
    }
}

#[async_trait]
impl StageConfig<TestEvent> for CollectConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        if self.fail_build {
            return Err(StageError::new("told to fail at build"));
        }
        Ok(Stage::Sink(Box::new(Collect {
            probe: probe(&self.probe),
            delay: Duration::from_millis(self.delay_ms),
            fail: self.fail,
            pipelined: self.pipelined,
        })))
    }
}

/// Sink that declares a listening address (for address-conflict checks); it stores nothing.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    pub address: String,
}

#[async_trait]
impl StageConfig<TestEvent> for ListenConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }
    fn listen_addresses(&self) -> Vec<ListenAddress> {
        vec![ListenAddress {
            field: "address",
            address: self.address.clone(),
        }]
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Sink(Box::new(Collect {
            probe: probe(&self.address),
            delay: Duration::ZERO,
            fail: false,
            pipelined: false,
        })))
    }
}

/// Watching source: for every number below `below` it watches, emits that
/// number plus `below` — feedback into the stages it watches (the shape of a
/// server that shows a stream and changes it). Counts what it watched in `probe`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {
    pub probe: String,
    pub below: i64,
}

struct Echo {
    probe: Arc<Probe>,
    below: i64,
}

#[async_trait]
impl StageConfig<TestEvent> for EchoConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }
    fn watches_inputs(&self) -> bool {
        true
    }
    fn accepts(&self) -> Kinds {
        Kinds::only(&["Number"])
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Number"])
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Source(Box::new(Echo {
            probe: probe(&self.probe),
            below: self.below,
        })))
    }
}

#[async_trait]
impl Source<TestEvent> for Echo {
    async fn run(self: Box<Self>, cx: SourceContext<TestEvent>) -> Result<(), StageError> {
        let SourceContext {
            mut outputs,
            shutdown,
            input,
            ..
        } = cx;
        // The watcher never waits on the output: it hands echoes over an unbounded queue.
        let (echo_tx, mut echoes) = tokio::sync::mpsc::unbounded_channel();
        let (probe, below) = (self.probe.clone(), self.below);
        let watcher = tokio::spawn(async move {
            let Some(mut input) = input else { return };
            while let Some(batch) = input.next().await {
                for envelope in batch {
                    probe.stored.lock().unwrap().push(envelope.event.clone());
                    if let TestEvent::Number(n) = envelope.event {
                        if n < below {
                            let _ = echo_tx.send(TestEvent::Number(n + below));
                        }
                    }
                }
            }
        });
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                echo = echoes.recv() => match echo {
                    Some(event) => outputs.send(vec![Envelope::unacked(event)]).await?,
                    None => break,
                },
            }
        }
        drop(outputs);
        let _ = watcher.await;
        Ok(())
    }
}

/// Source: the given readings `(key, at_ms, value)` in order, `per_send` per
/// batch, each with an ack token recorded in `probe` under its index (from 1).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingsConfig {
    pub probe: String,
    pub readings: Vec<(String, i64, i64)>,
    #[serde(default = "one")]
    pub per_send: usize,
    /// Wait between two sends.
    #[serde(default)]
    pub pause_ms: u64,
}

struct Readings {
    probe: Arc<Probe>,
    readings: Vec<(String, i64, i64)>,
    per_send: usize,
    pause: Duration,
}

#[async_trait]
impl StageConfig<TestEvent> for ReadingsConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Reading"])
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        Ok(Stage::Source(Box::new(Readings {
            probe: probe(&self.probe),
            readings: self.readings.clone(),
            per_send: self.per_send.max(1),
            pause: Duration::from_millis(self.pause_ms),
        })))
    }
}

#[async_trait]
impl Source<TestEvent> for Readings {
    async fn run(self: Box<Self>, mut cx: SourceContext<TestEvent>) -> Result<(), StageError> {
        let mut numbered = self.readings.into_iter().enumerate().peekable();
        while numbered.peek().is_some() {
            let mut batch = Vec::new();
            for (i, (key, at_ms, value)) in numbered.by_ref().take(self.per_send) {
                let probe = self.probe.clone();
                let n = i as i64 + 1;
                let token = AckToken::with_callback(move |status| probe.acks.lock().unwrap().push((n, status)));
                batch.push(Envelope::new(TestEvent::Reading { key, at_ms, value }, token));
            }
            self.probe.emitted.fetch_add(batch.len() as u64, Ordering::SeqCst);
            cx.outputs.send(batch).await?;
            if self.pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(self.pause).await;
            }
        }
        Ok(())
    }
}

/// The running sum of a window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct Sum {
    pub sum: i64,
    pub count: u64,
}

/// Sums readings per key over windows of one shape: the engine's test aggregation.
pub struct SumAggregation {
    shape: WindowShape,
}

impl SumAggregation {
    pub fn new(shape: WindowShape) -> Self {
        Self { shape }
    }
}

fn millis(time: EventTime) -> i64 {
    time.as_nanos().div_euclid(1_000_000)
}

impl Aggregation<TestEvent> for SumAggregation {
    type Key = String;
    type KeyState = ();
    type Acc = Sum;
    type Value = i64;

    fn shape(&self, _key: &String) -> WindowShape {
        self.shape
    }

    fn assign(&self, event: &TestEvent, keys: &mut Vec<String>) -> Assigned {
        match event {
            TestEvent::Reading { key, at_ms, .. } => {
                keys.push(key.clone());
                Assigned::At(EventTime::from_nanos(at_ms.saturating_mul(1_000_000)))
            }
            _ => Assigned::Reject("not_a_reading", "only readings are windowed".into()),
        }
    }

    fn contribution(&self, _key: &String, _state: &mut (), event: &TestEvent, _time: EventTime) -> Contribution<i64> {
        match event {
            TestEvent::Reading { value, .. } => Contribution::Value(*value),
            _ => Contribution::Repeat,
        }
    }

    fn add(&self, acc: &mut Sum, value: &i64, _time: EventTime) {
        acc.sum += value;
        acc.count += 1;
    }

    fn merge(&self, acc: &mut Sum, later: &Sum) {
        acc.sum += later.sum;
        acc.count += later.count;
    }

    fn result(&self, key: &String, _state: &(), window: Window, acc: &Sum, closed: bool) -> Option<TestEvent> {
        Some(TestEvent::Total {
            key: key.clone(),
            start_ms: millis(window.start),
            end_ms: millis(window.end),
            sum: acc.sum,
            count: acc.count,
            closed,
        })
    }
}

/// Transform: sums of readings per key over tumbling (or, with `slide`, sliding) windows.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSumConfig {
    #[serde(with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub size: Duration,
    #[serde(default, with = "crate::duration::option")]
    #[schemars(schema_with = "crate::duration::option_schema")]
    pub slide: Option<Duration>,
    #[serde(default)]
    pub time: WindowConfig,
}

#[async_trait]
impl StageConfig<TestEvent> for WindowSumConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }
    fn accepts(&self) -> Kinds {
        Kinds::only(&["Reading"])
    }
    fn emits(&self) -> Kinds {
        Kinds::only(&["Total"])
    }
    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = self.time.check("time");
        if !WindowShape::fits(self.size, self.slide.unwrap_or(self.size)) {
            problems.push(ConfigProblem::field("slide", "`size` must be a multiple of `slide`"));
        }
        problems
    }
    async fn build(&self, cx: &BuildContext) -> Result<Stage<TestEvent>, StageError> {
        let shape = WindowShape::sliding(self.size, self.slide.unwrap_or(self.size));
        WindowStage::build(SumAggregation::new(shape), &self.time, None, cx)
    }
}
