//! fxflow-engine: a small typed dataflow engine.
//!
//! Pipelines are declared in RON files (see [`pipeline_file`]), validated with every
//! problem reported at its line and column, and run as one tokio task per
//! stage joined by bounded channels ([`topology`]). Events carry
//! acknowledgement tokens ([`ack`]) so a source learns when everything derived
//! from its input has been stored. The engine is generic over the
//! application's event type ([`Event`]) and knows nothing about its domain.

pub mod ack;
pub mod channel;
pub mod docs;
pub mod duration;
pub mod event;
pub mod fast_hash;
pub mod graph;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod pipeline_file;
pub mod pipeline_test;
pub mod registry;
pub mod reload;
pub mod retry;
pub mod ron;
pub mod stage;
pub mod telemetry;
/// Test event type, test stages and helpers (the `testkit` feature).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod topology;
pub mod window;

pub use ack::{AckReceiver, AckStatus, AckToken};
pub use channel::{BufferConfig, WhenFull};
pub use event::{DeadLetter, Envelope, Event, IngestTime, Kinds, Origin, DEAD_LETTER_KIND};
pub use health::{Readiness, ReadyReporter};
pub use pipeline_file::{Diagnostic, Diagnostics, PipelineSpec};
pub use registry::{
    BuildContext, ConfigProblem, ListenAddress, Registry, ResourceConfig, ResourceUse, Resources, StageConfig,
    StageSummary,
};
pub use reload::ReloadReport;
pub use stage::{
    BatchConfig, Emit, Failure, FunctionTransform, Input, ItemError, Outputs, PendingWrite, RetryConfig, Shape,
    Shutdown, Sink, SinkError, Source, SourceContext, Stage, StageError, StartedWrite, Startup, TaskTransform,
    DEFAULT_OUTPUT, ERROR_OUTPUT,
};
pub use topology::{start, start_with, RunningPipeline, ShutdownHandle};

/// Re-exported so stage crates use the same `async_trait` as the traits.
pub use async_trait::async_trait;
