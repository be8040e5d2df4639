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

/// A SQLite file as one process uses it: readers share a pool; writers queue, in order, for
/// a single connection.
///
/// Why one writer connection: SQLite lets one writer in at a time and makes the others poll
/// for the lock (the busy timeout), which is not a queue. Beside a sink committing batch
/// after batch, the API's rule write could miss the lock for the whole timeout and answer
/// 503 `database is locked`. The pool's semaphore is fair, so a writer waits its turn instead.
#[derive(Debug, Clone)]
pub struct SqliteDatabase {
    reads: SqlitePool,
    writes: SqlitePool,
}

impl SqliteDatabase {
    /// The pool for queries (WAL: they never wait for the writer).
    pub fn reads(&self) -> &SqlitePool {
        &self.reads
    }

    /// The one connection that writes, for `BEGIN IMMEDIATE` transactions and migrations.
    pub fn writes(&self) -> &SqlitePool {
        &self.writes
    }
}

impl SqliteResourceConfig {
    /// Open (creating if needed) the database in WAL mode: readers never block the writer,
    /// and a committed batch survives a crash.
    pub async fn connect(&self) -> Result<SqliteDatabase, StageError> {
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
        let open = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(options.clone())
        };
        let failed = |e: sqlx::Error| StageError::new(format!("cannot open {}: {e}", self.path.display()));
        // The writer first: it creates the file and turns WAL on before the readers open it.
        let writes = open(1).await.map_err(failed)?;
        let reads = open(4).await.map_err(failed)?;
        Ok(SqliteDatabase { reads, writes })
    }
}

/// Apply every pending migration.
pub async fn migrate(database: &SqliteDatabase) -> Result<(), StageError> {
    MIGRATOR
        .run(database.writes())
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
        let database = self.connect().await?;
        let tracked = "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
        Ok(Some(super::unapplied(database.reads(), &MIGRATOR, tracked).await?))
    }
}
