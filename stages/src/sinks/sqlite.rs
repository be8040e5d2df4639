//! `Sqlite`: the same history as the `Postgres` sink, in an embedded file
//! (see [`crate::backends::sqlite::store`] for the SQL and [`crate::store::sink`] for
//! the acknowledgement and error contract).

use std::sync::Arc;

use fxflow_engine::{async_trait, BuildContext, Kinds, ResourceUse, Shape, Stage, StageConfig, StageError};
use serde::Deserialize;

use crate::backends::sqlite::store::SqliteStore;
use crate::backends::sqlite::{migrate, SqliteDatabase, KIND as SQLITE};
use crate::fx::{kind, FxEvent};
use crate::store::sink::StoreSink;

/// Stores quotes and cross rates in `fx_rates`, alert firings in
/// `fx_alert_history`, rule changes in `fx_alert_rules`, candles in
/// `fx_candles` and volatility readings in `fx_volatility` of a SQLite file
/// (tables from `migrations/sqlite`). Idempotent; acknowledges after `COMMIT`.
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
        Kinds::only(kind::STORED)
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, SQLITE)]
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let database = cx.resources.get::<SqliteDatabase>(&self.resource)?;
        if self.migrate {
            migrate(&database).await?;
        }
        Ok(Stage::Sink(Box::new(sink((*database).clone()))))
    }
}

/// The sink over an open database (for tests and benchmarks that skip the pipeline file).
pub fn sink(database: SqliteDatabase) -> StoreSink {
    StoreSink::new(Arc::new(SqliteStore::new(database)))
}
