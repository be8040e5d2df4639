//! `JsonlFile`: append events to a file as JSON lines, fsynced per batch.

use std::path::PathBuf;

use fxflow_engine::{async_trait, BuildContext, Envelope, Shape, Sink, SinkError, Stage, StageConfig, StageError};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::format::{render, Format};
use crate::fx::FxEvent;

/// Appends every event to a file, one JSON object per line. Each batch is
/// written and fsynced before it is acknowledged, so an acknowledged event
/// survives a crash.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlFileConfig {
    /// The file to append to; missing parent directories are created.
    #[schemars(with = "String")]
    pub path: PathBuf,
}

#[async_trait]
impl StageConfig<FxEvent> for JsonlFileConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StageError::new(format!("cannot create {}: {e}", parent.display())))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| StageError::new(format!("cannot open {}: {e}", self.path.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| StageError::new(format!("cannot stat {}: {e}", self.path.display())))?
            .len();
        Ok(Stage::Sink(Box::new(JsonlFile {
            file,
            len,
            buffer: Vec::new(),
        })))
    }
}

struct JsonlFile {
    file: tokio::fs::File,
    /// Length after the last acknowledged batch: a failed write is cut back to it,
    /// so the retry leaves no partial or doubled batch behind.
    len: u64,
    buffer: Vec<u8>,
}

#[async_trait]
impl Sink<FxEvent> for JsonlFile {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        self.buffer.clear();
        render(batch, Format::Json, &mut self.buffer).map_err(SinkError::fatal)?;
        let written = async {
            self.file.write_all(&self.buffer).await?;
            self.file.sync_data().await
        };
        if let Err(e) = written.await {
            // Best effort: if even this fails, the retry may duplicate lines (at-least-once).
            let _ = self.file.set_len(self.len).await;
            return Err(SinkError::retryable(e));
        }
        self.len += self.buffer.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::{CrossRate, Currency, SourceName};

    #[tokio::test]
    async fn appends_json_lines_that_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/out.jsonl");
        let config = JsonlFileConfig { path: path.clone() };
        let cx = BuildContext {
            pipeline: "t".into(),
            stage: "file".into(),
            resources: Default::default(),
            readiness: Default::default(),
            stages: Default::default(),
            replaces_running: false,
        };
        let event = FxEvent::CrossRate(CrossRate {
            pair: "GBP/JPY".parse().unwrap(),
            bid: dec!(175.68) / dec!(0.8338),
            ask: dec!(175.68) / dec!(0.8338),
            ts: "2026-10-30T00:00:00Z".parse().unwrap(),
            source: SourceName::intern("ecb").unwrap(),
            via: Currency::EUR,
        });
        for _ in 0..2 {
            let Stage::Sink(mut sink) = config.build(&cx).await.unwrap() else {
                panic!("a sink")
            };
            sink.write(&[Envelope::unacked(event.clone())]).await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "appends across reopen");
        assert!(lines[0].contains("\"kind\":\"CrossRate\""));
        let full = format!("\"bid\":\"{}\"", dec!(175.68) / dec!(0.8338));
        assert!(lines[0].contains(&full), "full precision as a string: {}", lines[0]);
        let back: FxEvent = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(back, event, "decimals survive the round trip exactly");
    }
}
