//! The sink half of the history store: `Postgres` and `Sqlite` both write
//! through [`HistoryStore`], so they share one contract.
//!
//! A batch is written at once and acknowledged only after the store commits.
//! Connection trouble (a restarting server, a busy file, a full pool) is
//! retried by the engine's sink policy; if the store refuses the batch itself,
//! the events are written one by one so only the ones it refuses go to the
//! error output, each with the database's message.

use std::sync::Arc;

use fxflow_engine::{async_trait, Envelope, ItemError, Sink, SinkError};

use crate::fx::FxEvent;
use crate::store::{HistoryStore, StoreError};

pub struct StoreSink {
    store: Arc<dyn HistoryStore>,
}

impl StoreSink {
    pub fn new(store: Arc<dyn HistoryStore>) -> Self {
        StoreSink { store }
    }
}

fn sink_error(e: StoreError) -> SinkError {
    if e.retryable {
        SinkError::retryable(e)
    } else {
        SinkError::fatal(e)
    }
}

#[async_trait]
impl Sink<FxEvent> for StoreSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let events: Vec<&FxEvent> = batch.iter().map(|e| &e.event).collect();
        match self.store.write(&events).await {
            Ok(()) => Ok(()),
            Err(e) if e.retryable => Err(sink_error(e)),
            Err(e) => {
                tracing::warn!(error = %e, events = batch.len(), "Batch refused; writing one by one to isolate the refused events.");
                let mut failed = Vec::new();
                for (index, event) in events.iter().enumerate() {
                    if let Err(e) = self.store.write(&[event]).await {
                        if e.retryable {
                            // The connection went away meanwhile: retry the whole (idempotent) batch.
                            return Err(sink_error(e));
                        }
                        failed.push(ItemError {
                            index,
                            message: e.message,
                            retryable: false,
                        });
                    }
                }
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(SinkError::items(
                        format!("{} of {} events refused", failed.len(), batch.len()),
                        failed,
                    ))
                }
            }
        }
    }
}
