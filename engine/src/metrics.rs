//! The metrics every stage emits, defined once so no stage can forget one.
//!
//! Names follow Prometheus conventions and Vector's component specification.
//! Stages never register these themselves: the engine's input/output/sink
//! drivers count for them. Stages add only domain metrics of their own.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const RECEIVED_EVENTS: &str = "fxflow_stage_received_events_total";
pub const SENT_EVENTS: &str = "fxflow_stage_sent_events_total";
pub const ERRORS: &str = "fxflow_stage_errors_total";
pub const DISCARDED_EVENTS: &str = "fxflow_stage_discarded_events_total";
pub const PROCESSING_SECONDS: &str = "fxflow_stage_processing_seconds";
pub const CHANNEL_UTILIZATION: &str = "fxflow_channel_utilization";
pub const RELOADS: &str = "fxflow_reloads_total";
/// How long ago the events a stage receives entered the first worker
/// (`now − ingest time`, one observation per received batch: its oldest event).
pub const EVENT_AGE_SECONDS: &str = "fxflow_stage_event_age_seconds";
/// [`EVENT_AGE_SECONDS`]' buckets: 100 µs to 10 s, fine enough around the
/// millisecond hops of a worker chain to tell one hop from the next.
const EVENT_AGE_BUCKETS: [f64; 24] = [
    0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02,
    0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Count one reload attempt of a pipeline: `applied`, `unchanged`, `rejected`
/// (the new file is invalid) or `failed` (it could not be built).
pub fn reload(pipeline: &str, outcome: &'static str) {
    counter!(RELOADS, "pipeline" => pipeline.to_owned(), "outcome" => outcome).increment(1);
}

/// Install the Prometheus recorder for this process (once; later calls return the same handle).
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_001, 0.000_005, 0.000_025, 0.000_1, 0.000_5, 0.002_5, 0.01, 0.05, 0.25, 1.0, 5.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(EVENT_AGE_SECONDS.into()), &EVENT_AGE_BUCKETS)
                .expect("static bucket list is not empty")
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application's); then
            // our handle renders nothing, which is the embedder's choice.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Counters of one stage, keyed by event kind, cached so the hot path is an atomic add.
pub struct KindCounters {
    name: &'static str,
    pipeline: String,
    stage: String,
    by_kind: Vec<(&'static str, Counter)>,
}

impl KindCounters {
    fn new(name: &'static str, pipeline: &str, stage: &str) -> Self {
        Self {
            name,
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
            by_kind: Vec::new(),
        }
    }

    pub fn add(&mut self, kind: &'static str, n: u64) {
        if let Some((_, counter)) = self.by_kind.iter().find(|(k, _)| std::ptr::eq(*k, kind) || *k == kind) {
            counter.increment(n);
            return;
        }
        let counter =
            counter!(self.name, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone(), "kind" => kind);
        counter.increment(n);
        self.by_kind.push((kind, counter));
    }

    /// Count a batch, grouping runs of the same kind into one increment.
    pub fn add_batch(&mut self, kinds: impl Iterator<Item = &'static str>) {
        let mut current: Option<(&'static str, u64)> = None;
        for kind in kinds {
            match &mut current {
                Some((k, n)) if std::ptr::eq(*k, kind) || *k == kind => *n += 1,
                _ => {
                    if let Some((k, n)) = current.take() {
                        self.add(k, n);
                    }
                    current = Some((kind, 1));
                }
            }
        }
        if let Some((k, n)) = current {
            self.add(k, n);
        }
    }
}

/// Labels that identify one stage in every metric.
#[derive(Clone, Debug)]
pub struct StageLabels {
    pub pipeline: String,
    pub stage: String,
}

impl StageLabels {
    pub fn new(pipeline: &str, stage: &str) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
        }
    }

    pub fn received(&self) -> KindCounters {
        KindCounters::new(RECEIVED_EVENTS, &self.pipeline, &self.stage)
    }

    pub fn sent(&self, output: &'static str) -> KindCounters {
        let stage = if output == crate::DEFAULT_OUTPUT {
            self.stage.clone()
        } else {
            format!("{}.{output}", self.stage)
        };
        KindCounters::new(SENT_EVENTS, &self.pipeline, &stage)
    }

    /// Count events the stage could not handle. `error_type` is a short stable reason.
    pub fn error(&self, error_type: &'static str, n: u64) {
        counter!(ERRORS, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone(), "error_type" => error_type)
            .increment(n);
    }

    /// Count events dropped on purpose (buffer policy, filters).
    pub fn discarded(&self, reason: &'static str, n: u64) {
        counter!(DISCARDED_EVENTS, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone(), "reason" => reason)
            .increment(n);
    }

    pub fn processing(&self) -> ProcessingTimer {
        ProcessingTimer(
            histogram!(PROCESSING_SECONDS, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone()),
        )
    }

    pub fn event_age(&self) -> EventAge {
        EventAge(histogram!(EVENT_AGE_SECONDS, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone()))
    }

    pub fn channel_utilization(&self) -> Gauge {
        gauge!(CHANNEL_UTILIZATION, "pipeline" => self.pipeline.clone(), "stage" => self.stage.clone())
    }
}

/// The processing-time histogram of a stage (one observation per batch).
#[derive(Clone)]
pub struct ProcessingTimer(Histogram);

impl ProcessingTimer {
    pub fn record(&self, elapsed: Duration) {
        self.0.record(elapsed.as_secs_f64());
    }
}

/// The event-age histogram of a stage's input ([`EVENT_AGE_SECONDS`]).
#[derive(Clone)]
pub struct EventAge(Histogram);

impl EventAge {
    /// Observe a received batch: the age of its first event whose ingest time is known.
    pub fn observe<E>(&self, batch: &[crate::event::Envelope<E>]) {
        let Some(oldest) = batch.iter().map(|e| e.ingested).find(|t| t.is_known()) else {
            return;
        };
        if let Some(age) = oldest.age_at(crate::event::IngestTime::now()) {
            self.0.record(age.as_secs_f64());
        }
    }
}
