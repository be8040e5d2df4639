//! `Stdout`: print events, one line each.

use fxflow_engine::{async_trait, BuildContext, Envelope, Shape, Sink, SinkError, Stage, StageConfig, StageError};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::format::{render, Format};
use crate::fx::FxEvent;

/// Prints every event to standard output, one line each.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// `text` (for people, display precision) or `json` (full precision, one object per line).
    #[serde(default)]
    pub format: Format,
}

#[async_trait]
impl StageConfig<FxEvent> for StdoutConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Sink(Box::new(Stdout {
            format: self.format,
            out: tokio::io::stdout(),
            buffer: Vec::new(),
        })))
    }
}

struct Stdout {
    format: Format,
    out: tokio::io::Stdout,
    buffer: Vec<u8>,
}

#[async_trait]
impl Sink<FxEvent> for Stdout {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        self.buffer.clear();
        render(batch, self.format, &mut self.buffer).map_err(SinkError::fatal)?;
        self.out.write_all(&self.buffer).await.map_err(SinkError::fatal)?;
        self.out.flush().await.map_err(SinkError::fatal)
    }
}
