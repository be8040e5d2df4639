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

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::ack::{AckStatus, AckToken};
use crate::channel::{Closed, Receiver, Sender};
use crate::event::{DeadLetter, Envelope, Event};
use crate::metrics::{KindCounters, ProcessingTimer, StageLabels};

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

    /// Called once after the input has closed, before the stage ends.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Why a write failed. With `items` empty the whole batch failed; otherwise
/// exactly the listed items failed and the rest were stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    pub message: String,
    pub retryable: bool,
    pub items: Vec<ItemError>,
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
        }
    }

    /// A failure that retrying will not fix (rejected data).
    pub fn fatal(message: impl fmt::Display) -> Self {
        SinkError {
            message: message.to_string(),
            retryable: false,
            items: Vec::new(),
        }
    }

    /// Only some items failed.
    pub fn items(message: impl fmt::Display, items: Vec<ItemError>) -> Self {
        SinkError {
            message: message.to_string(),
            retryable: items.iter().any(|i| i.retryable),
            items,
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Tells long-running sources to stop.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// A signal that never fires (tests, one-shot runs).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive forever so `wait` never returns.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is signalled.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
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

/// A stage's receiving end: batches from all its inputs, counted as received.
pub struct Input<E> {
    rx: Receiver<E>,
    received: KindCounters,
}

impl<E: Event> Input<E> {
    pub(crate) fn new(rx: Receiver<E>, labels: &StageLabels) -> Self {
        Self {
            rx,
            received: labels.received(),
        }
    }

    /// The next batch; `None` once every upstream stage has finished and the buffer is drained.
    pub async fn next(&mut self) -> Option<Vec<Envelope<E>>> {
        let batch = self.rx.recv().await?;
        self.received.add_batch(batch.iter().map(|e| e.event.kind()));
        Some(batch)
    }

    /// Like [`Input::next`] but never waits.
    pub fn try_next(&mut self) -> Option<Vec<Envelope<E>>> {
        let batch = self.rx.try_recv()?;
        self.received.add_batch(batch.iter().map(|e| e.event.kind()));
        Some(batch)
    }
}

/// One output: the channels of every stage that lists it as an input.
pub struct Output<E> {
    targets: Vec<Sender<E>>,
    sent: KindCounters,
    /// Counts events emitted where nobody listens (an output no stage lists as input).
    unconnected: Option<StageLabels>,
}

impl<E: Event> Output<E> {
    pub(crate) fn new(targets: Vec<Sender<E>>, sent: KindCounters, labels: &StageLabels) -> Self {
        Self {
            targets,
            sent,
            unconnected: Some(labels.clone()),
        }
    }

    pub fn is_connected(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Send a batch to every consumer (fan-out clones it for all but the last).
    pub async fn send(&mut self, batch: Vec<Envelope<E>>) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
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
                };
                Envelope::new(E::dead_letter(letter), f.ack)
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
    pub reason: &'static str,
    pub error: String,
    pub ack: AckToken,
}

impl<E> Failure<E> {
    pub fn new(envelope: Envelope<E>, reason: &'static str, error: impl Into<String>) -> Self {
        Failure {
            event: Some(envelope.event),
            raw: None,
            reason,
            error: error.into(),
            ack: envelope.ack,
        }
    }
}

/// Where a [`FunctionTransform`] puts its results for the current input.
pub struct Emit<E> {
    ack: AckToken,
    events: Vec<Envelope<E>>,
    failures: Vec<Failure<E>>,
}

impl<E> Default for Emit<E> {
    fn default() -> Self {
        Self {
            ack: AckToken::none(),
            events: Vec::new(),
            failures: Vec::new(),
        }
    }
}

impl<E> Emit<E> {
    /// Emit an event derived from the current input.
    pub fn push(&mut self, event: E) {
        self.events.push(Envelope::new(event, self.ack.clone()));
    }

    /// Send an event to the error output with a short reason and a message.
    pub fn reject(&mut self, event: E, reason: &'static str, error: impl Into<String>) {
        self.failures.push(Failure {
            event: Some(event),
            raw: None,
            reason,
            error: error.into(),
            ack: self.ack.clone(),
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
            stage.transform(envelope.event, &mut emit);
        }
        emit.ack = AckToken::none();
        timer.record(started.elapsed());
        let failures = std::mem::take(&mut emit.failures);
        outputs.dead_letter(failures, AckStatus::Rejected).await?;
        let events = std::mem::take(&mut emit.events);
        outputs.send(events).await?;
    }
    Ok(())
}

/// How a sink retries a failed write before giving up on the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts after the first one.
    #[serde(default = "RetryConfig::default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubles on each further one.
    #[serde(default = "RetryConfig::default_initial_backoff", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub initial_backoff: std::time::Duration,
    /// The longest wait between two attempts.
    #[serde(default = "RetryConfig::default_max_backoff", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub max_backoff: std::time::Duration,
}

impl RetryConfig {
    fn default_attempts() -> u32 {
        5
    }
    fn default_initial_backoff() -> std::time::Duration {
        std::time::Duration::from_millis(100)
    }
    fn default_max_backoff() -> std::time::Duration {
        std::time::Duration::from_secs(10)
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: Self::default_attempts(),
            initial_backoff: Self::default_initial_backoff(),
            max_backoff: Self::default_max_backoff(),
        }
    }
}

/// How a sink's writes are sized: a write takes what is waiting, up to
/// `max_events`; with `max_wait` above zero it first waits up to that long
/// for a full batch (fewer, larger writes — e.g. database transactions — at
/// the cost of that much latency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one write.
    #[serde(default = "BatchConfig::default_max_events")]
    pub max_events: usize,
    /// How long a write may wait for `max_events` to arrive once its first event is there.
    #[serde(default, with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub max_wait: std::time::Duration,
}

impl BatchConfig {
    pub const DEFAULT_MAX_EVENTS: usize = 8192;

    fn default_max_events() -> usize {
        Self::DEFAULT_MAX_EVENTS
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: Self::DEFAULT_MAX_EVENTS,
            max_wait: std::time::Duration::ZERO,
        }
    }
}

/// Runs a sink: gather a batch (see [`BatchConfig`]), write, retry with backoff,
/// then acknowledge (drop) what was stored and dead-letter what was not.
pub(crate) async fn run_sink<E: Event>(
    mut sink: Box<dyn Sink<E>>,
    mut input: Input<E>,
    mut outputs: Outputs<E>,
    retry: RetryConfig,
    batching: BatchConfig,
    timer: ProcessingTimer,
) -> Result<(), StageError> {
    let max = batching.max_events.max(1);
    while let Some(mut batch) = input.next().await {
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
            write_with_retry(sink.as_mut(), batch, &mut outputs, &retry).await?;
            timer.record(started.elapsed());
            batch = rest;
        }
    }
    if let Err(error) = sink.flush().await {
        outputs.labels.error("flush_failed", 1);
        return Err(StageError::new(format!("flush failed: {error}")));
    }
    Ok(())
}

async fn write_with_retry<E: Event>(
    sink: &mut dyn Sink<E>,
    mut pending: Vec<Envelope<E>>,
    outputs: &mut Outputs<E>,
    retry: &RetryConfig,
) -> Result<(), Closed> {
    let mut attempt = 0;
    let mut backoff = retry.initial_backoff;
    loop {
        let error = match sink.write(&pending).await {
            Ok(()) => return Ok(()), // dropping `pending` acknowledges it
            Err(error) => error,
        };
        let mut give_up = Vec::new();
        if error.items.is_empty() {
            if !(error.retryable && attempt < retry.attempts) {
                let failures = pending
                    .into_iter()
                    .map(|e| Failure::new(e, "write_failed", error.message.clone()))
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
            let can_retry = attempt < retry.attempts;
            let mut keep = Vec::new();
            for (envelope, item) in pending.into_iter().zip(failed) {
                match item {
                    None => {}
                    Some(item) if item.retryable && can_retry => keep.push(envelope),
                    Some(item) => give_up.push(Failure::new(envelope, "item_rejected", item.message.clone())),
                }
            }
            outputs.dead_letter(give_up, AckStatus::Failed).await?;
            if keep.is_empty() {
                return Ok(());
            }
            pending = keep;
        }
        attempt += 1;
        outputs.labels.error("write_retried", 1);
        tracing::warn!(stage = %outputs.labels.stage, attempt, error = %error.message, "Write failed, retrying.");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(retry.max_backoff);
    }
}
