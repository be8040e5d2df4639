//! Builds a validated pipeline into running tasks, runs it to the end, and
//! applies a new version of it while it runs (reload).
//!
//! One tokio task per stage; one bounded channel in front of every
//! non-source stage, fed by all of its inputs (fan-in); an output with several
//! consumers clones each batch to all of them (fan-out). Shutdown stops the
//! sources only: their outputs close, each stage drains what it holds and
//! ends when its input is empty and closed, so everything in flight reaches
//! the sinks before the process exits.
//!
//! **Reload** applies a new spec by difference (see [`crate::reload`] for the
//! plan): a stage whose fingerprint did not change keeps running, with its
//! state; a changed one is told to stop at its next batch boundary, finishes
//! what it holds (a sink stores its batch, a window flushes), and hands its
//! input buffer — with every batch still queued — and any state it chose to
//! leave to its new version, which starts only then; so nothing queued is lost
//! and nothing is handled twice. A changed source stops first (a Kafka source
//! commits what it finished) and its new version starts after it ended.
//! Producers whose consumers changed take their new targets at their next send.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::channel::{self, Receiver, Sender, WeakSender};
use crate::event::Event;
use crate::health::Readiness;
use crate::metrics::StageLabels;
use crate::pipeline_file::{PipelineSpec, StageSpec, TelemetryConfig};
use crate::registry::{BuildContext, Resources, StageSummary};
use crate::reload::{Change, Plan, ReloadReport};
use crate::stage::{
    self, Input, Output, Outputs, Relay, Rewire, Shape, Shutdown, SourceContext, Stage, StageError, Startup,
    DEFAULT_OUTPUT, ERROR_OUTPUT,
};

const OUTPUTS: [&str; 2] = [DEFAULT_OUTPUT, ERROR_OUTPUT];

/// How long a stage's new version waits for the old one to hand over its
/// input after the old task ended (a stage may read its input in a task of its own).
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// A pipeline whose stages are running.
pub struct RunningPipeline<E: Event> {
    pub name: String,
    shutdown: Arc<watch::Sender<bool>>,
    signal: Shutdown,
    tasks: JoinSet<(String, Result<(), StageError>)>,
    readiness: Readiness,
    telemetry: Option<TelemetryConfig>,
    resources: HashMap<String, LiveResource>,
    stages: Vec<LiveStage<E>>,
}

struct LiveResource {
    fingerprint: String,
    opened: Arc<dyn std::any::Any + Send + Sync>,
}

/// What the running pipeline keeps of each stage to change it later.
struct LiveStage<E> {
    name: String,
    fingerprint: String,
    buffer: channel::BufferConfig,
    /// Consumers of the default and the error output, by name.
    consumers: [Vec<String>; 2],
    /// A handle on the stage's input channel that does not keep it open.
    channel: Option<WeakSender<E>>,
    stop: watch::Sender<bool>,
    baton: Arc<Relay<E>>,
    ended: watch::Receiver<bool>,
    /// The outputs' rewiring slots; weak, so pending targets die with the stage.
    rewire: [Weak<Rewire<E>>; 2],
}

impl<E: Event> RunningPipeline<E> {
    /// Ask the sources to stop; everything already read drains to the sinks.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A handle that can trigger shutdown from elsewhere (a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// The next stage task to end, with its result; `None` when none is left.
    /// Cancel-safe: a supervisor can wait on it and on reload requests at once.
    pub async fn next_finished(&mut self) -> Option<Result<(), StageError>> {
        let joined = self.tasks.join_next().await?;
        Some(match joined {
            Ok((_, Ok(()))) => Ok(()),
            Ok((name, Err(e))) => Err(StageError::new(format!(
                "stage `{name}` of pipeline `{}` failed: {e}",
                self.name
            ))),
            Err(join) => Err(StageError::new(format!(
                "a stage of pipeline `{}` panicked: {join}",
                self.name
            ))),
        })
    }

    /// Wait until every stage has ended. Returns the first stage failure, if any.
    pub async fn wait(mut self) -> Result<(), StageError> {
        let mut first_error = None;
        while let Some(result) = self.next_finished().await {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stop the sources, then wait up to `grace` for the drain; abort after that.
    pub async fn stop(mut self, grace: Duration) -> Result<(), StageError> {
        self.shutdown();
        let name = self.name.clone();
        let mut first_error = None;
        let drained = tokio::time::timeout(grace, async {
            while let Some(result) = self.next_finished().await {
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                }
            }
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            return Err(StageError::new(format!(
                "pipeline `{name}` did not drain within {grace:?}"
            )));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Apply a new version of the pipeline while it runs (see the module docs).
    /// Every changed or new stage is built before anything changes, so a new
    /// version that cannot be built (a file it cannot open) leaves the running
    /// one untouched and returns the error.
    pub async fn reload(&mut self, spec: PipelineSpec<E>) -> Result<ReloadReport, StageError> {
        if *self.shutdown.borrow() {
            return Err(StageError::new("the pipeline is shutting down"));
        }
        if spec.name != self.name {
            return Err(StageError::new(format!(
                "the pipeline's name changed from `{}` to `{}`; a renamed pipeline is a new one: restart",
                self.name, spec.name
            )));
        }
        if spec.telemetry != self.telemetry {
            return Err(StageError::new(
                "`telemetry` changed; the telemetry server's address applies at start: restart",
            ));
        }
        let running: Vec<(&str, &str, bool)> = self
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.fingerprint.as_str(), *s.ended.borrow()))
            .collect();
        let resources: Vec<(&str, &str)> = self
            .resources
            .iter()
            .map(|(name, r)| (name.as_str(), r.fingerprint.as_str()))
            .collect();
        let plan = Plan::new(&spec, &running, &resources);
        let report = plan.report();
        if plan.is_empty() {
            return Ok(report);
        }
        let opened = self.open_resources(&spec, &plan).await?;
        let previous = std::mem::take(&mut self.stages);
        match self.launch(spec, &plan, opened, previous).await {
            Ok(()) => Ok(report),
            Err((previous, e)) => {
                self.stages = previous;
                Err(e)
            }
        }
    }

    /// The resources of `spec`: those whose config did not change as they are,
    /// the others opened anew.
    async fn open_resources(&self, spec: &PipelineSpec<E>, plan: &Plan) -> Result<Resources, StageError> {
        let mut resources = Resources::default();
        for resource in &spec.resources {
            let opened =
                match self.resources.get(&resource.name) {
                    Some(live) if !plan.resource_changed(&resource.name) => live.opened.clone(),
                    _ => resource.config.build().await.map_err(|e| {
                        StageError::new(format!("resource `{}` ({}): {e}", resource.name, resource.kind))
                    })?,
                };
            resources.insert(resource.name.clone(), opened);
        }
        Ok(resources)
    }

    /// Build the stages the plan starts, wire every edge and start them; on a
    /// build failure nothing has changed and `previous` comes back. Four steps:
    /// [`build`](Self::build) (the only one that can fail), then
    /// [`adopt_resources`](Self::adopt_resources), [`wire`] and [`start`](Self::start).
    async fn launch(
        &mut self,
        spec: PipelineSpec<E>,
        plan: &Plan,
        resources: Resources,
        previous: Vec<LiveStage<E>>,
    ) -> Result<(), (Vec<LiveStage<E>>, StageError)> {
        let built = match self.build(&spec, plan, &resources).await {
            Ok(built) => built,
            Err(e) => return Err((previous, e)),
        };
        // From here on nothing fails.
        self.adopt_resources(&spec, &resources);
        let mut previous: HashMap<String, LiveStage<E>> = previous.into_iter().map(|s| (s.name.clone(), s)).collect();
        let channels = wire(&spec, plan, &previous);
        // Stop what goes away or changes: at its next batch boundary.
        for (name, old) in &previous {
            if plan.change(name) != Change::Keep {
                let _ = old.stop.send(true);
            }
        }
        self.stages = self.start(&spec, plan, built, channels, &mut previous);
        self.drain_removed(&spec.name, previous);
        Ok(())
    }

    /// Build every stage the plan adds or replaces. I/O happens here (files, connections);
    /// a failure leaves everything as it was.
    async fn build(
        &self,
        spec: &PipelineSpec<E>,
        plan: &Plan,
        resources: &Resources,
    ) -> Result<HashMap<String, Stage<E>>, StageError> {
        let summaries = Arc::new(
            spec.stages
                .iter()
                .map(|s| StageSummary {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                })
                .collect::<Vec<_>>(),
        );
        let mut built = HashMap::new();
        for stage in spec.stages.iter().filter(|s| plan.change(&s.name) != Change::Keep) {
            let cx = BuildContext {
                pipeline: spec.name.clone(),
                stage: stage.name.clone(),
                resources: resources.clone(),
                readiness: self.readiness.clone(),
                stages: summaries.clone(),
                replaces_running: plan.change(&stage.name) == Change::Replace,
            };
            let runtime =
                stage.config.build(&cx).await.map_err(|e| {
                    StageError::new(format!("cannot build stage `{}` ({}): {e}", stage.name, stage.kind))
                })?;
            built.insert(stage.name.clone(), runtime);
        }
        Ok(built)
    }

    /// The resources of this version replace those of the last.
    fn adopt_resources(&mut self, spec: &PipelineSpec<E>, resources: &Resources) {
        self.resources = spec
            .resources
            .iter()
            .filter_map(|r| {
                let opened = resources.get_any(&r.name)?;
                Some((
                    r.name.clone(),
                    LiveResource {
                        fingerprint: r.fingerprint.clone(),
                        opened,
                    },
                ))
            })
            .collect();
    }

    /// Start each new or replaced stage on its channels and outputs; rewire the kept ones
    /// whose consumers changed. Returns the stages now live.
    fn start(
        &mut self,
        spec: &PipelineSpec<E>,
        plan: &Plan,
        mut built: HashMap<String, Stage<E>>,
        channels: Channels<E>,
        previous: &mut HashMap<String, LiveStage<E>>,
    ) -> Vec<LiveStage<E>> {
        let Channels {
            senders,
            mut fresh,
            mut weak,
        } = channels;
        let consumers_of = |name: &str, output: &str| -> Vec<String> {
            spec.stages
                .iter()
                .filter(|s| s.inputs.iter().any(|i| i.stage == name && i.output == output))
                .map(|s| s.name.clone())
                .collect()
        };
        let targets_of = |consumers: &[String]| -> Vec<Sender<E>> {
            consumers
                .iter()
                .filter_map(|c| senders.get(c.as_str()).cloned())
                .collect()
        };
        let new_bootstraps = spec
            .stages
            .iter()
            .filter(|s| plan.change(&s.name) != Change::Keep && s.shape() == Shape::Source && s.config.bootstrap())
            .count();
        let (remaining_tx, remaining) = watch::channel(new_bootstraps);
        let remaining_tx = Arc::new(remaining_tx);

        let mut live = Vec::with_capacity(spec.stages.len());
        for stage in &spec.stages {
            let consumers = OUTPUTS.map(|output| consumers_of(&stage.name, output));
            if plan.change(&stage.name) == Change::Keep {
                let mut kept = previous.remove(&stage.name).expect("a kept stage is running");
                for (i, output) in consumers.iter().enumerate() {
                    let rewired = output.iter().any(|c| fresh.contains_key(c));
                    if *output != kept.consumers[i] || rewired {
                        if let Some(rewire) = kept.rewire[i].upgrade() {
                            rewire.set(targets_of(output));
                        }
                    }
                }
                kept.consumers = consumers;
                live.push(kept);
                continue;
            }
            let runtime = built.remove(&stage.name).expect("built above");
            let labels = StageLabels::new(&spec.name, &stage.name);
            let rewire = [Arc::new(Rewire::default()), Arc::new(Rewire::default())];
            let output = |i: usize| {
                let targets = targets_of(&consumers[i]);
                if targets.is_empty() && i == 0 && stage.shape() == Shape::Transform {
                    tracing::warn!(pipeline = %spec.name, stage = %stage.name, "No stage reads this stage's output; its events are discarded and counted.");
                }
                let output = Output::new(targets, labels.sent(OUTPUTS[i]), &labels).rewirable(rewire[i].clone());
                // Events enter the pipeline at a source's outputs (dead letters too).
                if stage.shape() == Shape::Source {
                    output.stamping_ingest()
                } else {
                    output
                }
            };
            let outputs = Outputs {
                default: output(0),
                errors: output(1),
                labels: labels.clone(),
            };
            let (stop_tx, stop) = watch::channel(false);
            let (ended_tx, ended) = watch::channel(false);
            let relay = Arc::new(Relay::default());
            // A stage that had ended on its own starts afresh (`Change::Add`); it has nothing to hand over.
            let old = previous.remove(&stage.name);
            let predecessor = match plan.change(&stage.name) {
                // A stage without input (a source) has nothing to hand over: no wait for it.
                Change::Replace => old.map(|old| {
                    let patience = if old.channel.is_some() {
                        HANDOVER_WAIT
                    } else {
                        Duration::ZERO
                    };
                    (old.baton.clone(), old.ended.clone(), patience)
                }),
                _ => None,
            };
            let start = Start {
                pipeline: spec.name.clone(),
                stage,
                runtime,
                outputs,
                labels,
                shutdown: self.signal.or_stage(stop.clone()),
                stop,
                relay: relay.clone(),
                fresh: fresh.remove(&stage.name),
                predecessor,
                startup: if stage.config.bootstrap() {
                    Startup::bootstrap(remaining_tx.clone())
                } else {
                    Startup::default()
                },
                bootstrap_pending: remaining.clone(),
            };
            let future = match start.into_future() {
                Ok(future) => future,
                Err(e) => {
                    tracing::error!(pipeline = %spec.name, error = %e, "Stage cannot start.");
                    let _ = self.shutdown.send(true);
                    continue;
                }
            };
            self.spawn(stage.name.clone(), future, ended_tx);
            live.push(LiveStage {
                name: stage.name.clone(),
                fingerprint: plan.fingerprint(&stage.name).to_owned(),
                buffer: stage.buffer,
                consumers,
                channel: weak.remove(&stage.name),
                stop: stop_tx,
                baton: relay,
                ended,
                rewire: rewire.each_ref().map(Arc::downgrade),
            });
        }
        live
    }

    /// Removed stages: what was queued for them is discarded (and counted) once they
    /// have finished what they held.
    fn drain_removed(&mut self, pipeline: &str, removed: HashMap<String, LiveStage<E>>) {
        for (name, old) in removed {
            let labels = StageLabels::new(pipeline, &name);
            let (ended_tx, _) = watch::channel(false);
            let future = Box::pin(async move {
                let Some(baton) = old.baton.receive(old.ended.clone(), HANDOVER_WAIT).await else {
                    return Ok(());
                };
                let mut rx = baton.rx;
                while let Some(batch) = rx.recv().await {
                    labels.discarded("stage_removed", batch.len() as u64);
                }
                Ok(())
            });
            self.spawn(format!("{name} (removed)"), future, ended_tx);
        }
    }

    fn spawn(&mut self, name: String, future: StageFuture, ended: watch::Sender<bool>) {
        let pipeline = self.name.clone();
        let guard = StopOnFailure {
            shutdown: self.shutdown.clone(),
            finished: false,
        };
        self.tasks.spawn(async move {
            let mut guard = guard;
            let result = future.await;
            match &result {
                Ok(()) => {
                    guard.finished = true;
                    tracing::debug!(%pipeline, stage = %name, "Stage finished.");
                }
                Err(e) => tracing::error!(%pipeline, stage = %name, error = %e, "Stage failed; stopping the pipeline."),
            }
            let _ = ended.send(true);
            (name, result)
        });
    }
}

type StageFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StageError>> + Send>>;

/// Everything one stage task needs to start.
struct Start<'a, E: Event> {
    pipeline: String,
    stage: &'a StageSpec<E>,
    runtime: Stage<E>,
    outputs: Outputs<E>,
    labels: StageLabels,
    shutdown: Shutdown,
    stop: watch::Receiver<bool>,
    relay: Arc<Relay<E>>,
    /// A new input channel (a new stage, or a changed one whose buffer changed).
    fresh: Option<Receiver<E>>,
    /// The running version this one replaces: where it leaves its input, when
    /// it ended, and how long to wait for its input after that.
    predecessor: Option<(Arc<Relay<E>>, watch::Receiver<bool>, Duration)>,
    startup: Startup,
    bootstrap_pending: watch::Receiver<usize>,
}

impl<E: Event> Start<'_, E> {
    fn into_future(self) -> Result<StageFuture, StageError> {
        let Start {
            pipeline,
            stage,
            runtime,
            outputs,
            labels,
            shutdown,
            stop,
            relay,
            fresh,
            predecessor,
            startup,
            bootstrap_pending,
        } = self;
        let shape = stage.shape();
        let has_inputs = !stage.inputs.is_empty();
        if !matches!(
            (&runtime, shape),
            (Stage::Source(_), Shape::Source)
                | (Stage::Function(_), Shape::Transform)
                | (Stage::Task(_), Shape::Transform)
                | (Stage::Sink(_), Shape::Sink)
        ) {
            return Err(StageError::new(format!(
                "stage `{}` built into a different shape than it declared",
                stage.name
            )));
        }
        let (retry, batch, waits_for_bootstrap) = (
            stage.retry,
            stage.batch,
            shape == Shape::Source && !stage.config.bootstrap(),
        );
        let name = stage.name.clone();
        Ok(Box::pin(async move {
            // A new version starts once the old one has finished and handed over.
            let mut inherited = None;
            let mut previous_rx = None;
            if let Some((old, ended, patience)) = predecessor {
                let baton = old.receive(ended, patience).await;
                if let Some(baton) = baton {
                    inherited = baton.state;
                    previous_rx = Some(baton.rx);
                }
            }
            let rx = match (fresh, previous_rx) {
                (Some(fresh), Some(previous)) => Some(channel::merged(previous, fresh)),
                (Some(fresh), None) => Some(fresh),
                (None, Some(previous)) => Some(previous),
                (None, None) if has_inputs => {
                    return Err(StageError::new(
                        "its previous version did not hand over its input; restart the process",
                    ))
                }
                (None, None) => None,
            };
            let input = rx.map(|rx| Input::new(rx, &labels).relayed(stop, relay, inherited));
            let timer = labels.processing();
            match runtime {
                Stage::Source(source) => {
                    let cx = SourceContext {
                        outputs,
                        shutdown: shutdown.clone(),
                        labels,
                        startup,
                        input,
                    };
                    if waits_for_bootstrap && *bootstrap_pending.borrow() > 0 {
                        tracing::info!(%pipeline, stage = %name, "Waiting for the bootstrap sources to catch up.");
                        let mut pending = bootstrap_pending;
                        let caught_up = tokio::select! {
                            _ = pending.wait_for(|n| *n == 0) => true,
                            _ = shutdown.wait() => false,
                        };
                        if !caught_up {
                            // Never started: still let what it watches drain into it.
                            if let Some(mut input) = cx.input {
                                while input.next().await.is_some() {}
                            }
                            return Ok(());
                        }
                    }
                    source.run(cx).await
                }
                Stage::Function(f) => stage::run_function(f, input.expect("checked"), outputs, timer).await,
                Stage::Task(t) => t.run(input.expect("checked"), outputs).await,
                Stage::Sink(s) => stage::run_sink(s, input.expect("checked"), outputs, retry, batch, timer).await,
            }
        }))
    }
}

/// Triggers a pipeline's shutdown.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// Open resources, build every stage, wire the channels and start the tasks.
///
/// Every stage is built before any task starts, so a stage that fails to build
/// (a file it cannot open) leaves nothing running behind it.
pub async fn start<E: Event>(spec: PipelineSpec<E>) -> Result<RunningPipeline<E>, StageError> {
    start_with(spec, &Readiness::default()).await
}

/// [`start`], with stages reporting their dependencies' state to `readiness`
/// (the one the process serves on `/ready`).
pub async fn start_with<E: Event>(
    spec: PipelineSpec<E>,
    readiness: &Readiness,
) -> Result<RunningPipeline<E>, StageError> {
    let (shutdown_tx, signal) = Shutdown::new();
    let mut pipeline = RunningPipeline {
        name: spec.name.clone(),
        shutdown: Arc::new(shutdown_tx),
        signal,
        tasks: JoinSet::new(),
        readiness: readiness.clone(),
        telemetry: spec.telemetry.clone(),
        resources: HashMap::new(),
        stages: Vec::new(),
    };
    let plan = Plan::new(&spec, &[], &[]);
    let resources = pipeline.open_resources(&spec, &plan).await?;
    let stages = spec.stages.len();
    let name = spec.name.clone();
    pipeline
        .launch(spec, &plan, resources, Vec::new())
        .await
        .map_err(|(_, e)| e)?;
    tracing::info!(pipeline = %name, stages, "Pipeline started.");
    Ok(pipeline)
}

/// The channel in front of every stage with inputs.
struct Channels<E> {
    /// Where to send to each stage, by name.
    senders: HashMap<String, Sender<E>>,
    /// The receiving ends of new channels, for the stages that start on them.
    fresh: HashMap<String, Receiver<E>>,
    /// A handle on each channel that does not keep it open (the next reload's `reuse`).
    weak: HashMap<String, WeakSender<E>>,
}

/// The channel in front of every stage with inputs: the running one where the stage
/// keeps it (kept, or replaced with the same buffer), a new one otherwise.
fn wire<E: Event>(spec: &PipelineSpec<E>, plan: &Plan, previous: &HashMap<String, LiveStage<E>>) -> Channels<E> {
    let mut channels = Channels {
        senders: HashMap::new(),
        fresh: HashMap::new(),
        weak: HashMap::new(),
    };
    for stage in spec.stages.iter().filter(|s| !s.inputs.is_empty()) {
        let old = previous.get(&stage.name);
        let reuse = match plan.change(&stage.name) {
            Change::Keep => true,
            Change::Replace => old.is_some_and(|o| o.buffer == stage.buffer),
            Change::Add => false,
        };
        let running = old.and_then(|o| o.channel.as_ref()).and_then(|c| c.upgrade());
        match running {
            Some(tx) if reuse => {
                channels.weak.insert(stage.name.clone(), tx.downgrade());
                channels.senders.insert(stage.name.clone(), tx);
            }
            // A stage that keeps running but whose channel closed has ended: nothing to feed.
            _ if plan.change(&stage.name) == Change::Keep => {}
            _ => {
                let labels = StageLabels::new(&spec.name, &stage.name);
                let (tx, rx) = channel::bounded(stage.buffer, &labels);
                channels.weak.insert(stage.name.clone(), tx.downgrade());
                channels.senders.insert(stage.name.clone(), tx);
                channels.fresh.insert(stage.name.clone(), rx);
            }
        }
    }
    channels
}

/// Stops the pipeline's sources when a stage task ends without success —
/// by an error or by a panic (the guard is dropped while unwinding).
struct StopOnFailure {
    shutdown: Arc<watch::Sender<bool>>,
    finished: bool,
}

impl Drop for StopOnFailure {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.shutdown.send(true);
        }
    }
}
