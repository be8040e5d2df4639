//! `Sqlite`: the same history as the `Postgres` sink, in an embedded file.
//!
//! One transaction per batch, one prepared `INSERT … ON CONFLICT DO NOTHING`
//! per row (SQLite runs in-process, so a row costs microseconds, not a round
//! trip); acknowledged after `COMMIT`. A busy or locked database is retried by
//! the engine's sink policy; a batch SQLite refuses is retried row by row so only
//! the refused rows go to the error output.

use fxflow_engine::{
    async_trait, BuildContext, Envelope, ItemError, Kinds, ResourceUse, Shape, Sink, SinkError, Stage, StageConfig,
    StageError,
};
use serde::Deserialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::fx::{kind, FxEvent};
use crate::resources::sqlite::{migrate, KIND as SQLITE};

/// Stores quotes and cross rates in `fx_rates` and alert firings in
/// `fx_alert_history` of a SQLite file (tables from `migrations/sqlite`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Name of a `Sqlite` resource.
    pub resource: String,
    /// Apply pending migrations when the stage starts.
    #[serde(default = "yes")]
    pub migrate: bool,
}

fn yes() -> bool {
    true
}

#[async_trait]
impl StageConfig<FxEvent> for SqliteConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(kind::HISTORY)
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, SQLITE)]
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let pool = cx.resources.get::<SqlitePool>(&self.resource)?;
        if self.migrate {
            migrate(&pool).await?;
        }
        Ok(Stage::Sink(Box::new(SqliteSink { pool: (*pool).clone() })))
    }
}

pub struct SqliteSink {
    pool: SqlitePool,
}

impl SqliteSink {
    pub fn new(pool: SqlitePool) -> Self {
        SqliteSink { pool }
    }
}

const INSERT_RATE: &str = "INSERT INTO fx_rates (pair, ts, source, kind, bid, ask, mid) VALUES (?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (pair, ts, source) DO NOTHING";

const INSERT_ALERT: &str =
    "INSERT INTO fx_alert_history (rule_id, pair, condition, value, previous, fired_at, source) \
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id, fired_at, source) DO NOTHING";

/// Timestamps as fixed-width RFC 3339 in UTC, so text order is time order.
fn ts_text(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn insert(connection: &mut SqliteConnection, event: &FxEvent) -> Result<(), sqlx::Error> {
    if let Some(p) = event.price() {
        let kind = if matches!(event, FxEvent::Quote(_)) {
            "quote"
        } else {
            "cross"
        };
        sqlx::query(INSERT_RATE)
            .bind(p.pair.to_string())
            .bind(ts_text(p.ts))
            .bind(p.source.as_str())
            .bind(kind)
            .bind(p.bid.to_string())
            .bind(p.ask.to_string())
            .bind(p.mid().to_string())
            .execute(&mut *connection)
            .await?;
    } else if let FxEvent::AlertFired(a) = event {
        sqlx::query(INSERT_ALERT)
            .bind(a.rule_id.as_ref())
            .bind(a.pair.to_string())
            .bind(a.condition.as_ref())
            .bind(a.value.to_string())
            .bind(a.previous.map(|p| p.to_string()))
            .bind(ts_text(a.ts))
            .bind(a.source.as_str())
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// SQLITE_BUSY / SQLITE_LOCKED and I/O trouble pass; constraint or type errors do not.
fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("5" | "6" | "261" | "262" | "517")),
        _ => false,
    }
}

#[async_trait]
impl Sink<FxEvent> for SqliteSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let result = async {
            let mut tx = self.pool.begin().await?;
            for envelope in batch {
                insert(&mut tx, &envelope.event).await?;
            }
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if retryable(&e) => Err(SinkError::retryable(e)),
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), "Batch refused; retrying row by row to isolate the bad rows.");
                let mut connection = self.pool.acquire().await.map_err(SinkError::retryable)?;
                let mut failed = Vec::new();
                for (index, envelope) in batch.iter().enumerate() {
                    if let Err(e) = insert(&mut connection, &envelope.event).await {
                        failed.push(ItemError {
                            index,
                            message: e.to_string(),
                            retryable: retryable(&e),
                        });
                    }
                }
                match failed.is_empty() {
                    true => Ok(()),
                    false => Err(SinkError::items(
                        format!("{} of {} rows rejected", failed.len(), batch.len()),
                        failed,
                    )),
                }
            }
        }
    }
}
