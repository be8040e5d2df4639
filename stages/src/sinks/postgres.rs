//! `Postgres`: rate history and alert history, batched and idempotent.
//!
//! One transaction per batch (per 2,000 rows, written concurrently, for larger
//! batches) with one `INSERT … SELECT FROM UNNEST($1, $2, …)` per table — a
//! single round trip whatever the size — and
//! `ON CONFLICT DO NOTHING` on the natural keys, so a batch redelivered after a
//! crash adds no rows. Events are acknowledged only after `COMMIT`.
//! Connection trouble (a restarting server, a full pool) is retried by the
//! engine's sink policy; if the database rejects the batch itself, the rows
//! are retried one by one so only the rows it rejects go to the error output,
//! each with the database's message.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use fxflow_engine::{
    async_trait, BuildContext, Envelope, ItemError, Kinds, ResourceUse, Shape, Sink, SinkError, Stage, StageConfig,
    StageError,
};
use rust_decimal::Decimal;
use serde::Deserialize;
use sqlx::PgPool;

use crate::fx::{kind, FxEvent};
use crate::resources::postgres::{migrate, KIND as POSTGRES};

/// Stores quotes and cross rates in `fx_rates` and alert firings in
/// `fx_alert_history` (tables from `migrations/postgres`).
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
        Kinds::only(kind::HISTORY)
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, POSTGRES)]
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let pool = cx.resources.get::<PgPool>(&self.resource)?;
        if self.migrate {
            migrate(&pool).await?;
        }
        Ok(Stage::Sink(Box::new(PostgresSink {
            pool: (*pool).clone(),
            partitions: HashSet::new(),
        })))
    }
}

/// Rows per transaction; larger batches are split and written concurrently.
const ROWS_PER_TRANSACTION: usize = 2000;

pub struct PostgresSink {
    pool: PgPool,
    /// Months whose `fx_rates` partition is known to exist.
    partitions: HashSet<(i32, u32)>,
}

impl PostgresSink {
    pub fn new(pool: PgPool) -> Self {
        PostgresSink {
            pool,
            partitions: HashSet::new(),
        }
    }
}

const INSERT_RATES: &str = "INSERT INTO fx_rates (pair, ts, source, kind, bid, ask, mid) \
     SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::numeric[], $6::numeric[], $7::numeric[]) \
     ON CONFLICT (pair, ts, source) DO NOTHING";

const INSERT_ALERTS: &str = "INSERT INTO fx_alert_history (rule_id, pair, condition, value, previous, fired_at, source) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::timestamptz[], $7::text[]) \
     ON CONFLICT (rule_id, fired_at, source) DO NOTHING";

/// `fx_rates` columns of a batch, one vector per column (what `UNNEST` takes).
#[derive(Default)]
struct RateColumns {
    pair: Vec<String>,
    ts: Vec<DateTime<Utc>>,
    source: Vec<String>,
    kind: Vec<&'static str>,
    bid: Vec<Decimal>,
    ask: Vec<Decimal>,
    mid: Vec<Decimal>,
}

/// `fx_alert_history` columns of a batch.
#[derive(Default)]
struct AlertColumns {
    rule_id: Vec<String>,
    pair: Vec<String>,
    condition: Vec<String>,
    value: Vec<Decimal>,
    previous: Vec<Option<Decimal>>,
    fired_at: Vec<DateTime<Utc>>,
    source: Vec<String>,
}

#[derive(Default)]
struct Rows {
    rates: RateColumns,
    alerts: AlertColumns,
}

impl Rows {
    fn of<'a>(events: impl IntoIterator<Item = &'a FxEvent>) -> Rows {
        let mut rows = Rows::default();
        for event in events {
            if let Some(price) = event.price() {
                let r = &mut rows.rates;
                r.pair.push(price.pair.to_string());
                r.ts.push(price.ts);
                r.source.push(price.source.to_string());
                r.kind.push(if matches!(event, FxEvent::Quote(_)) {
                    "quote"
                } else {
                    "cross"
                });
                r.bid.push(price.bid);
                r.ask.push(price.ask);
                r.mid.push(price.mid());
            } else if let FxEvent::AlertFired(a) = event {
                let r = &mut rows.alerts;
                r.rule_id.push(a.rule_id.to_string());
                r.pair.push(a.pair.to_string());
                r.condition.push(a.condition.to_string());
                r.value.push(a.value);
                r.previous.push(a.previous);
                r.fired_at.push(a.ts);
                r.source.push(a.source.to_string());
            }
        }
        rows
    }

    async fn insert(self, executor: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        let r = self.rates;
        if !r.pair.is_empty() {
            sqlx::query(INSERT_RATES)
                .bind(r.pair)
                .bind(r.ts)
                .bind(r.source)
                .bind(r.kind)
                .bind(r.bid)
                .bind(r.ask)
                .bind(r.mid)
                .execute(&mut *executor)
                .await?;
        }
        let a = self.alerts;
        if !a.rule_id.is_empty() {
            sqlx::query(INSERT_ALERTS)
                .bind(a.rule_id)
                .bind(a.pair)
                .bind(a.condition)
                .bind(a.value)
                .bind(a.previous)
                .bind(a.fired_at)
                .bind(a.source)
                .execute(&mut *executor)
                .await?;
        }
        Ok(())
    }
}

/// Connection-level trouble is worth retrying; anything the database says about the data is not.
fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 57P0x: server shutting down; 40001/40P01: serialization/deadlock; 53: resources.
            code.starts_with("08")
                || code.starts_with("57P0")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("53")
        }
        _ => false,
    }
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("valid month")
}

impl PostgresSink {
    /// Create the monthly partitions of `fx_rates` that `batch` needs (once per month per process).
    async fn ensure_partitions(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), sqlx::Error> {
        let months: HashSet<(i32, u32)> = batch
            .iter()
            .filter_map(|e| e.event.price())
            .map(|p| (p.ts.year(), p.ts.month()))
            .filter(|m| !self.partitions.contains(m))
            .collect();
        for (year, month) in months {
            let from = first_of_month(year, month);
            let to = if month == 12 {
                first_of_month(year + 1, 1)
            } else {
                first_of_month(year, month + 1)
            };
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS fx_rates_y{year:04}m{month:02} PARTITION OF fx_rates FOR VALUES FROM ('{from}') TO ('{to}')"
            );
            // Audited: only integers and dates formatted by us go into this DDL (identifiers cannot be bound).
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await {
                if retryable(&e) {
                    return Err(e);
                }
                // Another writer created it at the same moment, or rows of that month already sit
                // in the default partition: either way inserts still succeed.
                tracing::warn!(year, month, error = %e, "Could not create the month's partition; rows go to the default partition.");
            }
            self.partitions.insert((year, month));
        }
        Ok(())
    }

    /// The batch was refused as a whole: store row by row and report the rows the database rejects.
    async fn row_by_row(&self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let mut failed = Vec::new();
        let mut connection = self.pool.acquire().await.map_err(SinkError::retryable)?;
        for (index, envelope) in batch.iter().enumerate() {
            if let Err(e) = Rows::of([&envelope.event]).insert(&mut connection).await {
                failed.push(ItemError {
                    index,
                    message: e.to_string(),
                    retryable: retryable(&e),
                });
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(SinkError::items(
                format!("{} of {} rows rejected", failed.len(), batch.len()),
                failed,
            ))
        }
    }
}

#[async_trait]
impl Sink<FxEvent> for PostgresSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        self.ensure_partitions(batch).await.map_err(SinkError::retryable)?;
        // Large batches go in as a few transactions at once: PostgreSQL then uses more than
        // one core. Each chunk is idempotent, so a retry after a partial failure is safe.
        let mut in_flight = tokio::task::JoinSet::new();
        for chunk in batch.chunks(ROWS_PER_TRANSACTION) {
            let rows = Rows::of(chunk.iter().map(|e| &e.event));
            let pool = self.pool.clone();
            in_flight.spawn(async move {
                let mut tx = pool.begin().await?;
                rows.insert(&mut tx).await?;
                tx.commit().await
            });
        }
        let mut failure = None;
        while let Some(done) = in_flight.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(e),
                Err(e) => return Err(SinkError::retryable(e)),
            }
        }
        match failure {
            None => Ok(()),
            Some(e) if retryable(&e) => Err(SinkError::retryable(e)),
            Some(e) => {
                tracing::warn!(error = %e, rows = batch.len(), "Batch refused; retrying row by row to isolate the bad rows.");
                self.row_by_row(batch).await
            }
        }
    }
}
