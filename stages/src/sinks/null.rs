//! `Null`: accept and discard (benchmarks, dry runs).

use fxflow_engine::{async_trait, BuildContext, Envelope, Shape, Sink, SinkError, Stage, StageConfig, StageError};
use serde::Deserialize;

use crate::fx::FxEvent;

/// Accepts every event and stores nothing. Events are acknowledged as
/// delivered and counted like any sink's; useful to measure a pipeline
/// without a store, or to terminate a branch on purpose.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {}

#[async_trait]
impl StageConfig<FxEvent> for NullConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Sink(Box::new(Null)))
    }
}

struct Null;

#[async_trait]
impl Sink<FxEvent> for Null {
    async fn write(&mut self, _batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        Ok(())
    }
}
