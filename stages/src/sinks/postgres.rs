//! `Postgres`: rate history, alert history and alert rules in PostgreSQL,
//! batched and idempotent (see [`crate::backends::postgres::store`] for the SQL and
//! [`crate::store::sink`] for the acknowledgement and error contract).

use std::sync::Arc;

use fxflow_engine::{async_trait, BuildContext, Kinds, ResourceUse, Shape, Stage, StageConfig, StageError};
use serde::Deserialize;
use sqlx::PgPool;

use crate::backends::postgres::store::PostgresStore;
use crate::backends::postgres::{migrate, KIND as POSTGRES};
use crate::fx::{kind, FxEvent};
use crate::store::sink::StoreSink;

/// Stores quotes and cross rates in `fx_rates` (monthly partitions), alert
/// firings in `fx_alert_history`, rule changes in `fx_alert_rules`, candles in
/// `fx_candles` and volatility readings in `fx_volatility` (tables from
/// `migrations/postgres`). Idempotent: a redelivered batch adds no rows.
/// Acknowledges after `COMMIT`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Name of a `Postgres` resource.
    pub resource: String,
    /// Apply pending migrations when the stage starts.
    #[serde(default)]
    pub migrate: bool,
}

#[async_trait]
impl StageConfig<FxEvent> for PostgresConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(kind::STORED)
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, POSTGRES)]
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let pool = cx.resources.get::<PgPool>(&self.resource)?;
        if self.migrate {
            migrate(&pool).await?;
        }
        Ok(Stage::Sink(Box::new(sink((*pool).clone()))))
    }
}

/// The sink over a pool (for tests and benchmarks that skip the pipeline file).
pub fn sink(pool: PgPool) -> StoreSink {
    StoreSink::new(Arc::new(PostgresStore::new(pool)))
}
