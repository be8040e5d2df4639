//! Backends: one module per external system — its resource kind (a named
//! connection shared by stages: `resources: { "cache": Redis(...) }`) and,
//! for PostgreSQL and SQLite, the history store's queries (`store.rs`). The
//! sinks that write to them live in `sinks/`.

pub mod elasticsearch;
pub mod postgres;
pub mod redis;
pub mod sqlite;

/// The resource kinds a history store can be opened from.
pub const STORE_KINDS: &[&str] = &[crate::backends::postgres::KIND, crate::backends::sqlite::KIND];

/// The history store behind a `Postgres` or `Sqlite` resource, with its
/// migrations applied first when `migrate` is set. It lives here, not in `store`,
/// so that the store's trait knows no backend (the backends depend on it, not back).
pub async fn open_store(
    resources: &fxflow_engine::Resources,
    name: &str,
    migrate: bool,
) -> Result<std::sync::Arc<dyn crate::store::HistoryStore>, fxflow_engine::StageError> {
    if let Ok(database) = resources.get::<crate::backends::sqlite::SqliteDatabase>(name) {
        if migrate {
            crate::backends::sqlite::migrate(&database).await?;
        }
        return Ok(std::sync::Arc::new(crate::backends::sqlite::store::SqliteStore::new(
            (*database).clone(),
        )));
    }
    let pool = resources.get::<sqlx::PgPool>(name).map_err(|_| {
        fxflow_engine::StageError::new(format!("resource `{name}` is neither a Postgres nor a Sqlite store"))
    })?;
    if migrate {
        crate::backends::postgres::migrate(&pool).await?;
    }
    Ok(std::sync::Arc::new(
        crate::backends::postgres::store::PostgresStore::new((*pool).clone()),
    ))
}

/// The migrations of `migrator` not yet applied to `pool` (`fxflow migrate --check`), named.
/// `tracked` asks whether sqlx's tracking table exists (each database spells that its own way).
pub async fn unapplied<DB>(
    pool: &sqlx::Pool<DB>,
    migrator: &sqlx::migrate::Migrator,
    tracked: &'static str,
) -> Result<Vec<String>, fxflow_engine::StageError>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    (bool,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let failed = |e: sqlx::Error| fxflow_engine::StageError::new(format!("reading the applied migrations: {e}"));
    let exists: bool = sqlx::query_scalar(tracked).fetch_one(pool).await.map_err(failed)?;
    let applied: Vec<i64> = match exists {
        true => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(failed)?,
        false => Vec::new(),
    };
    Ok(migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| format!("migration {} ({})", m.version, m.description))
        .collect())
}
