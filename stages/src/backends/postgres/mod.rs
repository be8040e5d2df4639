//! `Postgres` resource: a connection pool shared by every stage that names it, and its migrations.

pub mod store;

use std::any::Any;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use fxflow_engine::{async_trait, ConfigProblem, ResourceConfig, StageError};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// A PostgreSQL database, e.g. `Postgres(url: "postgres://fx@127.0.0.1/fx", pool: (max_connections: 8))`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresResourceConfig {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: String,
    /// Schema for fxflow's tables (sets `search_path`); default: the server's default (`public`).
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub pool: PoolConfig,
}

/// Connection pool settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Most connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a write waits for a free (or new) connection before it counts as failed (and is retried).
    #[serde(default = "default_acquire_timeout", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub acquire_timeout: Duration,
}

fn default_max_connections() -> u32 {
    8
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: default_max_connections(),
            acquire_timeout: default_acquire_timeout(),
        }
    }
}

/// The resource kind name in pipeline files.
pub const KIND: &str = "Postgres";

/// The migrations in `migrations/postgres`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl PostgresResourceConfig {
    fn options(&self) -> Result<PgConnectOptions, String> {
        let options = PgConnectOptions::from_str(&self.url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        Ok(match &self.schema {
            Some(schema) => options.options([("search_path", schema.as_str())]),
            None => options,
        })
    }

    /// Open the pool (connecting once, so a wrong address fails at start).
    pub async fn connect(&self) -> Result<PgPool, StageError> {
        let options = self.options().map_err(StageError::new)?;
        PgPoolOptions::new()
            .max_connections(self.pool.max_connections)
            .acquire_timeout(self.pool.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| StageError::new(format!("cannot connect to PostgreSQL: {e}")))
    }
}

/// Apply every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), StageError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StageError::new(format!("migrations failed: {e}")))
}

#[async_trait]
impl ResourceConfig for PostgresResourceConfig {
    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Err(e) = self.options() {
            problems.push(ConfigProblem::field("url", e).with_hint("postgres://user@127.0.0.1:5432/database"));
        }
        if self.pool.max_connections == 0 {
            problems.push(ConfigProblem::field("pool", "max_connections must be at least 1"));
        }
        problems
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
        let tracked = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";
        Ok(Some(super::unapplied(&pool, &MIGRATOR, tracked).await?))
    }
}
