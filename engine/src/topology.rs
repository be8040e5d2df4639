//! Builds a validated pipeline into running tasks and runs it to the end.
//!
//! One tokio task per stage; one bounded channel in front of every
//! non-source stage, fed by all of its inputs (fan-in); an output with several
//! consumers clones each batch to all of them (fan-out). Shutdown stops the
//! sources only: their outputs close, each stage drains what it holds and
//! ends when its input is empty and closed, so everything in flight reaches
//! the sinks before the process exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::channel::{self, Sender};
use crate::event::Event;
use crate::health::Readiness;
use crate::metrics::StageLabels;
use crate::registry::{BuildContext, Resources};
use crate::spec::PipelineSpec;
use crate::stage::{
    self, Input, Output, Outputs, Shutdown, SourceContext, Stage, StageError, Startup, DEFAULT_OUTPUT, ERROR_OUTPUT,
};

/// A pipeline whose stages are running.
pub struct RunningPipeline {
    pub name: String,
    shutdown: Arc<watch::Sender<bool>>,
    tasks: Vec<(String, JoinHandle<Result<(), StageError>>)>,
}

impl RunningPipeline {
    /// Ask the sources to stop; everything already read drains to the sinks.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A handle that can trigger shutdown from elsewhere (a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Wait until every stage has ended. Returns the first stage failure, if any.
    pub async fn wait(self) -> Result<(), StageError> {
        let mut first_error = None;
        for (name, task) in self.tasks {
            let result = match task.await {
                Ok(result) => result,
                Err(join) => Err(StageError::new(format!("panicked: {join}"))),
            };
            if let Err(e) = result {
                first_error.get_or_insert_with(|| {
                    StageError::new(format!("stage `{name}` of pipeline `{}` failed: {e}", self.name))
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stop the sources, then wait up to `grace` for the drain; abort after that.
    pub async fn stop(self, grace: Duration) -> Result<(), StageError> {
        self.shutdown();
        let aborts: Vec<_> = self.tasks.iter().map(|(_, t)| t.abort_handle()).collect();
        let name = self.name.clone();
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(result) => result,
            Err(_) => {
                aborts.iter().for_each(|a| a.abort());
                Err(StageError::new(format!(
                    "pipeline `{name}` did not drain within {grace:?}"
                )))
            }
        }
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
pub async fn start<E: Event>(spec: PipelineSpec<E>) -> Result<RunningPipeline, StageError> {
    start_with(spec, &Readiness::default()).await
}

/// [`start`], with stages reporting their dependencies' state to `readiness`
/// (the one the process serves on `/ready`).
pub async fn start_with<E: Event>(spec: PipelineSpec<E>, readiness: &Readiness) -> Result<RunningPipeline, StageError> {
    let mut resources = Resources::default();
    for resource in &spec.resources {
        let opened = resource
            .config
            .build()
            .await
            .map_err(|e| StageError::new(format!("resource `{}` ({}): {e}", resource.name, resource.kind)))?;
        resources.insert(resource.name.clone(), opened);
    }
    let summaries = Arc::new(
        spec.stages
            .iter()
            .map(|s| crate::registry::StageSummary {
                name: s.name.clone(),
                kind: s.kind.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let mut built = Vec::with_capacity(spec.stages.len());
    for stage in &spec.stages {
        let cx = BuildContext {
            pipeline: spec.name.clone(),
            stage: stage.name.clone(),
            resources: resources.clone(),
            readiness: readiness.clone(),
            stages: summaries.clone(),
        };
        let runtime = stage
            .config
            .build(&cx)
            .await
            .map_err(|e| StageError::new(format!("cannot build stage `{}` ({}): {e}", stage.name, stage.kind)))?;
        built.push(runtime);
    }

    let (shutdown_tx, shutdown) = Shutdown::new();
    let shutdown_tx = Arc::new(shutdown_tx);

    // A channel in front of every stage that has inputs.
    let mut senders: HashMap<&str, Sender<E>> = HashMap::new();
    let mut receivers = HashMap::new();
    for stage in &spec.stages {
        if !stage.inputs.is_empty() {
            let labels = StageLabels::new(&spec.name, &stage.name);
            let (tx, rx) = channel::bounded(stage.buffer, &labels);
            senders.insert(stage.name.as_str(), tx);
            receivers.insert(stage.name.clone(), rx);
        }
    }
    // Who consumes each (stage, output).
    let mut consumers: HashMap<(&str, &str), Vec<Sender<E>>> = HashMap::new();
    for stage in &spec.stages {
        for input in &stage.inputs {
            consumers
                .entry((input.stage.as_str(), input.output))
                .or_default()
                .push(senders[stage.name.as_str()].clone());
        }
    }
    drop(senders);

    // Bootstrap sources first: the other sources wait until each has caught up.
    let bootstraps = spec
        .stages
        .iter()
        .filter(|s| s.shape() == crate::Shape::Source && s.config.bootstrap())
        .count();
    let (remaining_tx, remaining) = watch::channel(bootstraps);
    let remaining_tx = Arc::new(remaining_tx);

    let mut tasks = Vec::new();
    for (stage, runtime) in spec.stages.iter().zip(built) {
        let labels = StageLabels::new(&spec.name, &stage.name);
        let mut output = |name: &'static str| {
            let targets = consumers.remove(&(stage.name.as_str(), name)).unwrap_or_default();
            if targets.is_empty() && name == DEFAULT_OUTPUT && stage.shape() == crate::Shape::Transform {
                tracing::warn!(pipeline = %spec.name, stage = %stage.name, "No stage reads this stage's output; its events are discarded and counted.");
            }
            Output::new(targets, labels.sent(name), &labels)
        };
        let outputs = Outputs {
            default: output(DEFAULT_OUTPUT),
            errors: output(ERROR_OUTPUT),
            labels: labels.clone(),
        };
        let input = receivers.remove(&stage.name).map(|rx| Input::new(rx, &labels));
        let timer = labels.processing();
        let future: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StageError>> + Send>> =
            match (runtime, input) {
                (Stage::Source(source), input) if stage.config.bootstrap() => {
                    let cx = SourceContext {
                        outputs,
                        shutdown: shutdown.clone(),
                        labels,
                        startup: Startup::bootstrap(remaining_tx.clone()),
                        input,
                    };
                    Box::pin(source.run(cx))
                }
                (Stage::Source(source), input) => {
                    let cx = SourceContext {
                        outputs,
                        shutdown: shutdown.clone(),
                        labels,
                        startup: Startup::default(),
                        input,
                    };
                    let (mut remaining, shutdown) = (remaining.clone(), shutdown.clone());
                    let (pipeline, name) = (spec.name.clone(), stage.name.clone());
                    Box::pin(async move {
                        if *remaining.borrow() > 0 {
                            tracing::info!(%pipeline, stage = %name, "Waiting for the bootstrap sources to catch up.");
                            let caught_up = tokio::select! {
                                _ = remaining.wait_for(|n| *n == 0) => true,
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
                    })
                }
                (Stage::Function(f), Some(input)) => Box::pin(stage::run_function(f, input, outputs, timer)),
                (Stage::Task(t), Some(input)) => Box::pin(t.run(input, outputs)),
                (Stage::Sink(s), Some(input)) => {
                    Box::pin(stage::run_sink(s, input, outputs, stage.retry, stage.batch, timer))
                }
                _ => {
                    return Err(StageError::new(format!(
                        "stage `{}` built into a different shape than it declared",
                        stage.name
                    )))
                }
            };
        let name = stage.name.clone();
        let pipeline = spec.name.clone();
        let guard = StopOnFailure {
            shutdown: shutdown_tx.clone(),
            finished: false,
        };
        let handle = tokio::spawn(async move {
            let mut guard = guard;
            let result = future.await;
            match &result {
                Ok(()) => {
                    guard.finished = true;
                    tracing::debug!(%pipeline, stage = %name, "Stage finished.");
                }
                Err(e) => tracing::error!(%pipeline, stage = %name, error = %e, "Stage failed; stopping the pipeline."),
            }
            result
        });
        tasks.push((stage.name.clone(), handle));
    }
    tracing::info!(pipeline = %spec.name, stages = spec.stages.len(), "Pipeline started.");
    Ok(RunningPipeline {
        name: spec.name,
        shutdown: shutdown_tx,
        tasks,
    })
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
