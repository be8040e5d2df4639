//! The stage traits, and the handles stages use to receive and emit events.
//!
//! Three runtime shapes are enough (Vector has the same):
//! - [`Source`]: produces events until its input ends or shutdown is signalled;
//! - transforms: [`FunctionTransform`] (one event in, zero or more out — the
//!   engine handles batching, acks, metrics) and [`TaskTransform`] (a stream in,
//!   a stream out — for timers, windows and state that outlives one event);
//! - [`Sink`]: stores batches; the engine acknowledges, retries and routes
//!   failures to the stage's error output.
//!
//! Every stage has a default output (referred to by the stage name) and an
//! `errors` output (`name.errors`) carrying dead letters.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::ack::{AckStatus, AckToken};
use crate::channel::{Closed, Receiver, Sender};
use crate::event::{DeadLetter, Envelope, Event, IngestTime};
use crate::metrics::{EventAge, KindCounters, ProcessingTimer, StageLabels};

/// The name of a stage's main output.
pub const DEFAULT_OUTPUT: &str = "default";
/// The name of every stage's dead-letter output (`stage.errors` in `inputs`).
pub const ERROR_OUTPUT: &str = "errors";

/// A stage failed in a way it cannot recover from; the pipeline stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

impl StageError {
    pub fn new(message: impl fmt::Display) -> Self {
        StageError(message.to_string())
    }
}

impl From<Closed> for StageError {
    fn from(_: Closed) -> Self {
        StageError("a downstream stage stopped unexpectedly".into())
    }
}

/// A running stage, as built from its config.
pub enum Stage<E> {
    Source(Box<dyn Source<E>>),
    Function(Box<dyn FunctionTransform<E>>),
    Task(Box<dyn TaskTransform<E>>),
    Sink(Box<dyn Sink<E>>),
}

/// What a stage is, for graph checks made before anything is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Source,
    Transform,
    Sink,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Source => "source",
            Shape::Transform => "transform",
            Shape::Sink => "sink",
        })
    }
}

/// Produces events. Returns when its input is exhausted or when shutdown is
/// signalled; the engine then drains everything downstream.
#[async_trait]
pub trait Source<E: Event>: Send {
    async fn run(self: Box<Self>, cx: SourceContext<E>) -> Result<(), StageError>;
}

/// One event in, zero or more out. Emitted events inherit the input's ack token.
pub trait FunctionTransform<E: Event>: Send {
    fn transform(&mut self, event: E, emit: &mut Emit<E>);
}

/// A stream in, a stream out: for stages that keep time (expiry, windows).
/// The stage must forward each input envelope's `ack` to the events it emits
/// for it (or drop it when the input produces nothing).
#[async_trait]
pub trait TaskTransform<E: Event>: Send {
    async fn run(self: Box<Self>, input: Input<E>, outputs: Outputs<E>) -> Result<(), StageError>;
}

/// Stores batches of events.
#[async_trait]
pub trait Sink<E: Event>: Send {
    /// Store the batch. `Ok` means every event is stored (durably, where the
    /// store allows); the engine then acknowledges them.
    async fn write(&mut self, batch: &[Envelope<E>]) -> Result<(), SinkError>;

    /// Start a write without waiting for its outcome, for sinks whose client
    /// keeps several requests in flight (a Kafka producer): the engine hands
    /// the sink its next batch while earlier ones are still on the wire, and
    /// finishes (acknowledges, retries, dead-letters) the writes in order. A
    /// sink that waits for every write returns [`StartedWrite::Done`] (the
    /// default, through [`Sink::write`]).
    async fn start_write(&mut self, batch: &[Envelope<E>]) -> StartedWrite {
        StartedWrite::Done(self.write(batch).await)
    }

    /// Called once after the input has closed, before the stage ends.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A write the sink has started (see [`Sink::start_write`]).
pub enum StartedWrite {
    /// Already finished.
    Done(Result<(), SinkError>),
    /// Finishes when the future does; it must not need the sink any more.
    Pending(PendingWrite),
}

/// The rest of a started write.
pub type PendingWrite = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send>>;

/// Why a write failed. With `items` empty the whole batch failed; otherwise
/// exactly the listed items failed and the rest were stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    pub message: String,
    pub retryable: bool,
    pub items: Vec<ItemError>,
    /// How long the other side asked to be left alone (`Retry-After`): the
    /// next retry waits at least that long.
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub index: usize,
    pub message: String,
    pub retryable: bool,
}

impl SinkError {
    /// A failure worth retrying (connection lost, overloaded).
    pub fn retryable(message: impl fmt::Display) -> Self {
        SinkError {
            message: message.to_string(),
            retryable: true,
            items: Vec::new(),

            retry_after: None,
        }
    }

    /// A failure that retrying will not fix (rejected data).
    pub fn fatal(message: impl fmt::Display) -> Self {
        SinkError {
            message: message.to_string(),
            retryable: false,
            items: Vec::new(),

            retry_after: None,
        }
    }

    /// The other side asked to wait this long before trying again.
    pub fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// Only some items failed.
    pub fn items(message: impl fmt::Display, items: Vec<ItemError>) -> Self {
        SinkError {
            message: message.to_string(),
            retryable: items.iter().any(|i| i.retryable),
            items,

            retry_after: None,
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Tells long-running sources to stop: the whole pipeline's shutdown, or
/// (after a reload replaced the source) this stage's own stop.
#[derive(Clone, Debug)]
pub struct Shutdown {
    pipeline: watch::Receiver<bool>,
    stage: Option<watch::Receiver<bool>>,
}

impl Shutdown {
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (
            tx,
            Shutdown {
                pipeline: rx,
                stage: None,
            },
        )
    }

    /// The same pipeline signal, plus the stop of one stage.
    pub(crate) fn or_stage(&self, stop: watch::Receiver<bool>) -> Self {
        Shutdown {
            pipeline: self.pipeline.clone(),
            stage: Some(stop),
        }
    }

    /// A signal that never fires (tests, one-shot runs).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever so `wait` never returns.
        std::mem::forget(tx);
        Shutdown {
            pipeline: rx,
            stage: None,
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.pipeline.borrow() || self.stage.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Resolves once shutdown is signalled.
    pub async fn wait(&self) {
        let mut pipeline = self.pipeline.clone();
        match self.stage.clone() {
            None => {
                let _ = pipeline.wait_for(|stop| *stop).await;
            }
            Some(mut stage) => {
                tokio::select! {
                    _ = pipeline.wait_for(|stop| *stop) => {}
                    _ = stage.wait_for(|stop| *stop) => {}
                }
            }
        }
    }
}

/// What a source gets to run with.
pub struct SourceContext<E> {
    pub outputs: Outputs<E>,
    pub shutdown: Shutdown,
    pub labels: StageLabels,
    /// For a bootstrap source: where to say it caught up.
    pub startup: Startup,
    /// What a watching source watches (`inputs` on a source, see
    /// `StageConfig::watches_inputs`); `None` for the others. Read it to its
    /// end: the watched stages drain into it.
    pub input: Option<Input<E>>,
}

/// Start-up order: the pipeline's other sources start once every bootstrap
/// source has said it caught up (or has ended, so a failure cannot hold the
/// rest forever).
#[derive(Clone, Default)]
pub struct Startup(Option<Arc<CatchUp>>);

struct CatchUp {
    remaining: Arc<tokio::sync::watch::Sender<usize>>,
    done: std::sync::atomic::AtomicBool,
}

impl CatchUp {
    fn signal(&self) {
        if !self.done.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.remaining.send_modify(|n| *n = n.saturating_sub(1));
        }
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        self.signal();
    }
}

impl Startup {
    /// The handle of one bootstrap source, counted in `remaining`.
    pub fn bootstrap(remaining: Arc<tokio::sync::watch::Sender<usize>>) -> Self {
        Startup(Some(Arc::new(CatchUp {
            remaining,
            done: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    /// The backlog is read and processed: the other sources may start.
    pub fn caught_up(&self) {
        if let Some(catch_up) = &self.0 {
            catch_up.signal();
        }
    }
}

/// What a stage that a reload replaces hands its successor: its input buffer
/// (with every batch it had not taken yet) and, if the stage left one, its state.
pub(crate) struct Baton<E> {
    pub rx: Receiver<E>,
    pub state: Option<Box<dyn Any + Send>>,
}

/// Where a replaced stage leaves its [`Baton`], and a bell for whoever waits for it.
pub(crate) struct Relay<E> {
    baton: Mutex<Option<Baton<E>>>,
    filled: tokio::sync::Notify,
}

impl<E> Default for Relay<E> {
    fn default() -> Self {
        Self {
            baton: Mutex::new(None),
            filled: tokio::sync::Notify::new(),
        }
    }
}

impl<E> Relay<E> {
    fn leave(&self, baton: Baton<E>) {
        *self.baton.lock().unwrap_or_else(|p| p.into_inner()) = Some(baton);
        self.filled.notify_one();
    }

    fn take(&self) -> Option<Baton<E>> {
        self.baton.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The baton, waiting for it up to `patience` once `ended` says the stage
    /// finished (its input may live in a task of its own a little longer).
    pub async fn receive(&self, mut ended: watch::Receiver<bool>, patience: std::time::Duration) -> Option<Baton<E>> {
        let _ = ended.wait_for(|ended| *ended).await;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(baton) = self.take() {
                return Some(baton);
            }
            // `Notify` keeps a permit for a fill that happens before this wait.
            if tokio::time::timeout_at(deadline, self.filled.notified()).await.is_err() {
                return self.take();
            }
        }
    }
}

/// A stage's receiving end: batches from all its inputs, counted as received.
pub struct Input<E> {
    /// `None` only while dropping.
    rx: Option<Receiver<E>>,
    received: KindCounters,
    age: EventAge,
    /// Set by a reload that replaces this stage.
    stop: Option<watch::Receiver<bool>>,
    baton: Option<Arc<Relay<E>>>,
    inherited: Option<Box<dyn Any + Send>>,
    bequest: Option<Box<dyn Any + Send>>,
}

impl<E: Event> Input<E> {
    pub(crate) fn new(rx: Receiver<E>, labels: &StageLabels) -> Self {
        Self {
            rx: Some(rx),
            received: labels.received(),
            age: labels.event_age(),
            stop: None,
            baton: None,
            inherited: None,
            bequest: None,
        }
    }

    /// An input a reload can take over: once `stop` fires, [`Input::next`]
    /// ends at the next batch boundary and the buffer, with what is still
    /// queued, goes to `baton` for the successor.
    pub(crate) fn relayed(
        mut self,
        stop: watch::Receiver<bool>,
        baton: Arc<Relay<E>>,
        inherited: Option<Box<dyn Any + Send>>,
    ) -> Self {
        self.stop = Some(stop);
        self.baton = Some(baton);
        self.inherited = inherited;
        self
    }

    /// The next batch; `None` once every upstream stage has finished and the
    /// buffer is drained — or once a reload replaces this stage (see
    /// [`Input::is_replaced`]); either way the stage finishes what it holds and ends.
    pub async fn next(&mut self) -> Option<Vec<Envelope<E>>> {
        let rx = self.rx.as_mut()?;
        let batch = match &mut self.stop {
            None => rx.recv().await?,
            Some(stop) => {
                if *stop.borrow() {
                    return None;
                }
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => return None,
                    batch = rx.recv() => batch?,
                }
            }
        };
        self.received.add_batch(batch.iter().map(|e| e.event.kind()));
        self.age.observe(&batch);
        Some(batch)
    }

    /// Like [`Input::next`] but never waits.
    pub fn try_next(&mut self) -> Option<Vec<Envelope<E>>> {
        if self.is_replaced() {
            return None;
        }
        let batch = self.rx.as_mut()?.try_recv()?;
        self.received.add_batch(batch.iter().map(|e| e.event.kind()));
        self.age.observe(&batch);
        Some(batch)
    }

    /// Whether a reload is replacing this stage with a new version of it. A
    /// stage with state worth keeping (rules, windows) passes it on with
    /// [`Input::bequeath`] before it ends.
    pub fn is_replaced(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| *stop.borrow())
    }

    /// Leave `state` to the stage's next version (taken there by [`Input::inherit`]).
    /// Only a replaced stage has a successor; otherwise the state is dropped.
    pub fn bequeath<T: Any + Send>(&mut self, state: T) {
        self.bequest = Some(Box::new(state));
    }

    /// What the stage's previous version left with [`Input::bequeath`], if it
    /// was of type `T`. Each version decides what of it still applies to its config.
    pub fn inherit<T: Any + Send>(&mut self) -> Option<T> {
        let state = self.inherited.take()?;
        state.downcast::<T>().ok().map(|state| *state)
    }
}

impl<E> Drop for Input<E> {
    fn drop(&mut self) {
        let replaced = self.stop.as_ref().is_some_and(|stop| *stop.borrow());
        if let (true, Some(baton), Some(rx)) = (replaced, self.baton.take(), self.rx.take()) {
            let state = self.bequest.take();
            baton.leave(Baton { rx, state });
        }
    }
}

/// New consumers for a running stage's output, set by a reload and taken by
/// the output at its next send.
pub(crate) struct Rewire<E> {
    changed: AtomicBool,
    targets: Mutex<Option<Vec<Sender<E>>>>,
}

impl<E> Default for Rewire<E> {
    fn default() -> Self {
        Self {
            changed: AtomicBool::new(false),
            targets: Mutex::new(None),
        }
    }
}

impl<E> Rewire<E> {
    pub(crate) fn set(&self, targets: Vec<Sender<E>>) {
        *self.targets.lock().unwrap_or_else(|p| p.into_inner()) = Some(targets);
        self.changed.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<Vec<Sender<E>>> {
        if !self.changed.load(Ordering::Acquire) {
            return None;
        }
        self.changed.store(false, Ordering::Release);
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// One output: the channels of every stage that lists it as an input.
pub struct Output<E> {
    targets: Vec<Sender<E>>,
    sent: KindCounters,
    /// Counts events emitted where nobody listens (an output no stage lists as input).
    unconnected: Option<StageLabels>,
    rewire: Option<Arc<Rewire<E>>>,
    /// A source's output: stamps the ingest time of events that have none.
    stamps_ingest: bool,
}

impl<E: Event> Output<E> {
    pub(crate) fn new(targets: Vec<Sender<E>>, sent: KindCounters, labels: &StageLabels) -> Self {
        Self {
            targets,
            sent,
            unconnected: Some(labels.clone()),
            rewire: None,
            stamps_ingest: false,
        }
    }

    /// A source's output: events enter the pipeline here (see [`IngestTime`]).
    pub(crate) fn stamping_ingest(mut self) -> Self {
        self.stamps_ingest = true;
        self
    }

    /// An output whose consumers a reload can change.
    pub(crate) fn rewirable(mut self, rewire: Arc<Rewire<E>>) -> Self {
        self.rewire = Some(rewire);
        self
    }

    /// Take the consumers a reload set, if it did (an atomic load otherwise).
    fn refresh(&mut self) {
        if let Some(targets) = self.rewire.as_ref().and_then(|r| r.take()) {
            self.targets = targets;
        }
    }

    pub fn is_connected(&mut self) -> bool {
        self.refresh();
        !self.targets.is_empty()
    }

    /// Send a batch to every consumer (fan-out clones it for all but the last).
    pub async fn send(&mut self, mut batch: Vec<Envelope<E>>) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.stamps_ingest {
            let now = IngestTime::now();
            for envelope in batch.iter_mut().filter(|e| !e.ingested.is_known()) {
                envelope.ingested = now;
            }
        }
        self.refresh();
        if self.targets.is_empty() {
            if let Some(labels) = &self.unconnected {
                labels.discarded("unconnected_output", batch.len() as u64);
            }
            return Ok(());
        }
        self.sent.add_batch(batch.iter().map(|e| e.event.kind()));
        let (last, rest) = self.targets.split_last().expect("checked non-empty");
        for target in rest {
            target.send(batch.clone()).await?;
        }
        last.send(batch).await
    }
}

/// A stage's outputs: the default one and the dead-letter one.
pub struct Outputs<E> {
    pub default: Output<E>,
    pub errors: Output<E>,
    pub labels: StageLabels,
}

impl<E: Event> Outputs<E> {
    pub async fn send(&mut self, batch: Vec<Envelope<E>>) -> Result<(), Closed> {
        self.default.send(batch).await
    }

    /// Route events the stage could not handle. They are always counted in
    /// `fxflow_stage_errors_total{error_type=reason}`; with an error output wired
    /// they travel on as dead letters (keeping their ack token), otherwise their
    /// token is marked `unrouted` (`Rejected` for bad data, `Failed` for a sink
    /// that could not store them).
    pub async fn dead_letter(&mut self, failures: Vec<Failure<E>>, unrouted: AckStatus) -> Result<(), Closed> {
        if failures.is_empty() {
            return Ok(());
        }
        for failure in &failures {
            self.labels.error(failure.reason, 1);
        }
        if !self.errors.is_connected() {
            for failure in &failures {
                tracing::debug!(stage = %self.labels.stage, reason = failure.reason, error = %failure.error, "Event not handled.");
                failure.ack.mark(unrouted);
            }
            return Ok(());
        }
        let stage = self.labels.stage.clone();
        let letters = failures
            .into_iter()
            .map(|f| {
                let letter = DeadLetter {
                    stage: stage.clone(),
                    reason: f.reason,
                    error: f.error,
                    event: f.event.map(Box::new),
                    raw: f.raw,
                    origin: f.origin,
                    key: f.key,
                    headers: f.headers,
                    at: std::time::SystemTime::now(),
                    note: f.ack.note().cloned(),
                };
                Envelope::new(E::dead_letter(letter), f.ack).with_ingested(f.ingested)
            })
            .collect();
        self.errors.send(letters).await
    }
}

/// An event (or raw input) a stage could not handle.
#[derive(Debug)]
pub struct Failure<E> {
    pub event: Option<E>,
    pub raw: Option<Vec<u8>>,
    /// Where its input was read (see [`DeadLetter::origin`](crate::DeadLetter)).
    pub origin: Option<crate::event::Origin>,
    /// The undecodable message's key and headers (a source's failure).
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub reason: &'static str,
    pub error: String,
    pub ack: AckToken,
    /// When its input entered the pipeline ([`IngestTime::UNKNOWN`] where a source
    /// fails before it has an event: its output stamps it).
    pub ingested: IngestTime,
}

impl<E> Failure<E> {
    pub fn new(envelope: Envelope<E>, reason: &'static str, error: impl Into<String>) -> Self {
        Failure {
            event: Some(envelope.event),
            raw: None,
            origin: envelope.origin,
            key: None,
            headers: Vec::new(),
            reason,
            error: error.into(),
            ack: envelope.ack,
            ingested: envelope.ingested,
        }
    }
}

/// Where a [`FunctionTransform`] puts its results for the current input.
pub struct Emit<E> {
    ack: AckToken,
    ingested: IngestTime,
    /// The current input's origin, for a rejection's dead letter.
    origin: Option<crate::event::Origin>,
    events: Vec<Envelope<E>>,
    failures: Vec<Failure<E>>,
}

impl<E> Default for Emit<E> {
    fn default() -> Self {
        Self {
            ack: AckToken::none(),
            ingested: IngestTime::UNKNOWN,
            origin: None,
            events: Vec::new(),
            failures: Vec::new(),
        }
    }
}

impl<E> Emit<E> {
    /// Emit an event derived from the current input.
    pub fn push(&mut self, event: E) {
        self.events
            .push(Envelope::new(event, self.ack.clone()).with_ingested(self.ingested));
    }

    /// Send an event to the error output with a short reason and a message.
    pub fn reject(&mut self, event: E, reason: &'static str, error: impl Into<String>) {
        self.failures.push(Failure {
            event: Some(event),
            raw: None,
            origin: self.origin.clone(),
            key: None,
            headers: Vec::new(),
            reason,
            error: error.into(),
            ack: self.ack.clone(),
            ingested: self.ingested,
        });
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// What was emitted and rejected so far (for test helpers).
    pub fn into_parts(self) -> (Vec<Envelope<E>>, Vec<Failure<E>>) {
        (self.events, self.failures)
    }
}

/// Runs a function-shaped transform: the engine's half of the contract.
pub(crate) async fn run_function<E: Event>(
    mut stage: Box<dyn FunctionTransform<E>>,
    mut input: Input<E>,
    mut outputs: Outputs<E>,
    timer: ProcessingTimer,
) -> Result<(), StageError> {
    let mut emit = Emit::default();
    while let Some(batch) = input.next().await {
        let started = Instant::now();
        emit.events.reserve(batch.len());
        for envelope in batch {
            emit.ack = envelope.ack;
            emit.ingested = envelope.ingested;
            emit.origin = envelope.origin;
            stage.transform(envelope.event, &mut emit);
        }
        emit.ack = AckToken::none();
        emit.origin = None;
        timer.record(started.elapsed());
        let failures = std::mem::take(&mut emit.failures);
        outputs.dead_letter(failures, AckStatus::Rejected).await?;
        let events = std::mem::take(&mut emit.events);
        outputs.send(events).await?;
    }
    Ok(())
}

pub use crate::retry::RetryConfig;

/// How a sink's writes are sized: a write takes what is waiting, up to
/// `max_events`; with `max_wait` above zero it first waits up to that long
/// for a full batch (fewer, larger writes — e.g. database transactions — at
/// the cost of that much latency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one write.
    #[serde(default = "BatchConfig::default_max_events")]
    pub max_events: usize,
    /// How long a write may wait for `max_events` to arrive once its first event is there.
    #[serde(default, with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub max_wait: std::time::Duration,
    /// Writes a pipelining sink (`KafkaSink`) may have on the wire at once. 1
    /// (the default) makes each write wait for the last one's acknowledgements
    /// and gather what queued meanwhile: sent at once when idle, batched under
    /// load. On a broker next door that moved 10% more than 8 and was no slower
    /// (BENCHMARKS.md); raise it to hide a long round trip to a remote broker.
    #[serde(default = "BatchConfig::default_max_in_flight")]
    pub max_in_flight: usize,
}

impl BatchConfig {
    pub const DEFAULT_MAX_EVENTS: usize = 8192;
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 1;

    fn default_max_events() -> usize {
        Self::DEFAULT_MAX_EVENTS
    }

    fn default_max_in_flight() -> usize {
        Self::DEFAULT_MAX_IN_FLIGHT
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: Self::DEFAULT_MAX_EVENTS,
            max_wait: std::time::Duration::ZERO,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Runs a sink: gather a batch (see [`BatchConfig`]), write, retry with backoff,
/// then acknowledge (drop) what was stored and dead-letter what was not. A sink
/// that pipelines ([`Sink::start_write`]) gets its next batch while up to
/// `batch.max_in_flight` writes are on the wire, so a write need not wait for
/// the round trip of the one before it; their outcomes are taken in order.
pub(crate) async fn run_sink<E: Event>(
    mut sink: Box<dyn Sink<E>>,
    mut input: Input<E>,
    mut outputs: Outputs<E>,
    retry: RetryConfig,
    batching: BatchConfig,
    timer: ProcessingTimer,
) -> Result<(), StageError> {
    let max = batching.max_events.max(1);
    let mut in_flight: VecDeque<(Vec<Envelope<E>>, Instant, PendingWrite)> = VecDeque::new();
    loop {
        let step = tokio::select! {
            biased;
            finished = async {
                match in_flight.front_mut() {
                    Some((_, _, pending)) => pending.await,
                    None => std::future::pending().await,
                }
            } => SinkStep::Finished(finished),
            next = input.next(), if in_flight.len() < batching.max_in_flight.max(1) => SinkStep::Next(next),
        };
        let mut batch = match step {
            SinkStep::Finished(result) => {
                let (batch, started, _) = in_flight.pop_front().expect("a write was in flight");
                settle_write(sink.as_mut(), batch, result, &mut outputs, &retry).await?;
                timer.record(started.elapsed());
                continue;
            }
            SinkStep::Next(None) => break,
            SinkStep::Next(Some(batch)) => batch,
        };
        let deadline = tokio::time::Instant::now() + batching.max_wait;
        loop {
            while batch.len() < max {
                match input.try_next() {
                    Some(more) => batch.extend(more),
                    None => break,
                }
            }
            if batch.len() >= max || batching.max_wait.is_zero() {
                break;
            }
            match tokio::time::timeout_at(deadline, input.next()).await {
                Ok(Some(more)) => batch.extend(more),
                Ok(None) | Err(_) => break, // input closed, or waited long enough
            }
        }
        // Upstream batches arrive whole, so the gathered batch may overshoot: write it in pieces.
        while !batch.is_empty() {
            let rest = if batch.len() > max {
                batch.split_off(max)
            } else {
                Vec::new()
            };
            let started = Instant::now();
            match sink.start_write(&batch).await {
                StartedWrite::Pending(pending) => in_flight.push_back((batch, started, pending)),
                StartedWrite::Done(result) => {
                    settle_write(sink.as_mut(), batch, result, &mut outputs, &retry).await?;
                    timer.record(started.elapsed());
                }
            }
            batch = rest;
        }
    }
    while let Some((batch, started, pending)) = in_flight.pop_front() {
        let result = pending.await;
        settle_write(sink.as_mut(), batch, result, &mut outputs, &retry).await?;
        timer.record(started.elapsed());
    }
    if let Err(error) = sink.flush().await {
        outputs.labels.error("flush_failed", 1);
        return Err(StageError::new(format!("flush failed: {error}")));
    }
    Ok(())
}

enum SinkStep<E> {
    Finished(Result<(), SinkError>),
    Next(Option<Vec<Envelope<E>>>),
}

/// Finish a write that returned `result`: acknowledge what was stored, retry
/// what may succeed later (with backoff), dead-letter the rest.
async fn settle_write<E: Event>(
    sink: &mut dyn Sink<E>,
    mut pending: Vec<Envelope<E>>,
    mut result: Result<(), SinkError>,
    outputs: &mut Outputs<E>,
    retry: &RetryConfig,
) -> Result<(), Closed> {
    let mut waits = retry.waits();
    let mut attempt: u32 = 1;
    loop {
        let error = match result {
            Ok(()) => return Ok(()), // dropping `pending` acknowledges it
            Err(error) => error,
        };
        // The wait before the next attempt, if one may help and any are left.
        let wait = if error.retryable {
            waits.next_after(error.retry_after)
        } else {
            None
        };
        let gave_up = |message: &str| format!("{message} (gave up after {attempt} attempts)");
        if error.items.is_empty() {
            if wait.is_none() {
                let message = if error.retryable {
                    gave_up(&error.message)
                } else {
                    error.message.clone()
                };
                let failures = pending
                    .into_iter()
                    .map(|e| Failure::new(e, "write_failed", message.clone()))
                    .collect();
                return outputs.dead_letter(failures, AckStatus::Failed).await;
            }
        } else {
            // Stored items are done; keep only the failed ones, split by whether a retry can help.
            let mut failed: Vec<Option<&ItemError>> = vec![None; pending.len()];
            for item in &error.items {
                if let Some(slot) = failed.get_mut(item.index) {
                    *slot = Some(item);
                }
            }
            let mut keep = Vec::new();
            let mut give_up = Vec::new();
            for (envelope, item) in pending.into_iter().zip(failed) {
                match item {
                    None => {}
                    Some(item) if item.retryable && wait.is_some() => keep.push(envelope),
                    Some(item) if item.retryable => {
                        give_up.push(Failure::new(envelope, "item_rejected", gave_up(&item.message)))
                    }
                    Some(item) => give_up.push(Failure::new(envelope, "item_rejected", item.message.clone())),
                }
            }
            outputs.dead_letter(give_up, AckStatus::Failed).await?;
            if keep.is_empty() {
                return Ok(());
            }
            pending = keep;
        }
        let wait = wait.unwrap_or_default();
        outputs.labels.error("write_retried", 1);
        tracing::warn!(stage = %outputs.labels.stage, attempt, error = %error.message, wait_ms = wait.as_millis() as u64, "Write failed, retrying.");
        tokio::time::sleep(wait).await;
        attempt += 1;
        result = sink.write(&pending).await;
    }
}
