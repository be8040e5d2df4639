//! `Sqlite` resource: an embedded database file (WAL mode), for pipelines that need no server.

pub mod store;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use fxflow_engine::{async_trait, ConfigProblem, ResourceConfig, StageError};
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions as _;

/// A SQLite database file, e.g. `Sqlite(path: "data/local/fx.db")`; created if missing.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteResourceConfig {
    /// The database file; missing parent directories are created.
    #[schemars(with = "String")]
    pub path: PathBuf,
}

/// The resource kind name in pipeline files.
pub const KIND: &str = "Sqlite";

/// The migrations in `migrations/sqlite`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl SqliteResourceConfig {
    /// Open (creating if needed) the database in WAL mode: readers never block the writer,
    /// and a committed batch survives a crash.
    pub async fn connect(&self) -> Result<SqlitePool, StageError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StageError::new(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5))
            // Writers in one process wait for each other's transactions (the reference-rate
            // backfill beside the live sinks): a statement that waited is no news for the log.
            .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
        SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StageError::new(format!("cannot open {}: {e}", self.path.display())))
    }
}

/// Apply every pending migration.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StageError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StageError::new(format!("migrations failed: {e}")))
}

#[async_trait]
impl ResourceConfig for SqliteResourceConfig {
    fn check(&self) -> Vec<ConfigProblem> {
        if self.path.as_os_str().is_empty() {
            return vec![ConfigProblem::field("path", "needs a file name")];
        }
        Vec::new()
    }

    async fn build(&self) -> Result<Arc<dyn Any + Send + Sync>, StageError> {
        Ok(Arc::new(self.connect().await?))
    }

    async fn migrate(&self) -> Result<bool, StageError> {
        migrate(&self.connect().await?).await?;
        Ok(true)
    }

    async fn pending(&self) -> Result<Option<Vec<String>>, StageError> {
        let pool = self.connect().await?;
        let tracked = "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
        Ok(Some(super::unapplied(&pool, &MIGRATOR, tracked).await?))
    }
}
