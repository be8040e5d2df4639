//! [`HistoryStore`] on PostgreSQL (tables from `migrations/postgres`).
//!
//! Writes: one `INSERT … SELECT FROM UNNEST($1, $2, …)` per table — a single
//! round trip whatever the batch size — with `ON CONFLICT DO NOTHING` on the
//! natural keys; batches over 2,000 rows go in as concurrent transactions so
//! PostgreSQL uses more than one core (each is idempotent, so retrying after a
//! partial failure is safe). Monthly partitions of `fx_rates` are created
//! before the first row of their month.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

use crate::fx::{AlertRule, FxEvent, Ohlc, Pair, Price, SourceName};
use crate::store::{
    candles_of, last_rule_changes, parse_pair, parse_rule, rule_json, volatility_of, AlertQuery, CandleQuery,
    HistoryStore, PriceKind, RateQuery, RuleQuery, StoreError, StoredAlert, StoredCandle, StoredRate, StoredRule,
    StoredVolatility, TenantUsage, VolatilityQuery,
};

/// Rules with their firing counts and their status at `$1`.
macro_rules! rule_select {
    () => {
        "SELECT * FROM (SELECT r.id, r.pair, r.rule::text AS rule, r.tenant, r.created_at, \
        (SELECT count(*) FROM fx_alert_history h WHERE h.rule_id = r.id) AS fired_count, \
        (SELECT max(fired_at) FROM fx_alert_history h WHERE h.rule_id = r.id) AS last_fired_at, \
        CASE WHEN r.rule->>'trigger' = 'Once' \
                  AND EXISTS (SELECT 1 FROM fx_alert_history h WHERE h.rule_id = r.id) THEN 'triggered' \
             WHEN r.expires_at IS NOT NULL AND r.expires_at <= $1 THEN 'expired' \
             ELSE 'active' END AS status \
        FROM fx_alert_rules r) rules"
    };
}

/// Rows per transaction; larger batches are split and written concurrently.
const ROWS_PER_TRANSACTION: usize = 2000;

pub struct PostgresStore {
    pool: PgPool,
    /// Months whose `fx_rates` partition is known to exist.
    partitions: Mutex<HashSet<(i32, u32)>>,
}

impl PostgresStore {
    pub fn new(pool: PgPool) -> Self {
        PostgresStore {
            pool,
            partitions: Mutex::new(HashSet::new()),
        }
    }
}

const INSERT_RATES: &str = "INSERT INTO fx_rates (pair, ts, source, kind, bid, ask, mid) \
     SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::numeric[], $6::numeric[], $7::numeric[]) \
     ON CONFLICT (pair, ts, source) DO NOTHING";

/// A firing without a tenant of its own takes its rule's (a rule from before tenants).
const INSERT_ALERTS: &str = "INSERT INTO fx_alert_history (rule_id, pair, condition, value, previous, fired_at, source, tenant) \
     SELECT a.rule_id, a.pair, a.condition, a.value, a.previous, a.fired_at, a.source, \
            COALESCE(a.tenant, (SELECT r.tenant FROM fx_alert_rules r WHERE r.id = a.rule_id)) \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::timestamptz[], $7::text[], $8::text[]) \
         AS a(rule_id, pair, condition, value, previous, fired_at, source, tenant) \
     ON CONFLICT (rule_id, fired_at, source) DO NOTHING";

const UPSERT_RULES: &str = "INSERT INTO fx_alert_rules (id, pair, rule, expires_at, tenant) \
     SELECT id, pair, rule::jsonb, expires_at, tenant \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS r(id, pair, rule, expires_at, tenant) \
     ON CONFLICT (id) DO UPDATE SET pair = EXCLUDED.pair, rule = EXCLUDED.rule, expires_at = EXCLUDED.expires_at, \
     tenant = EXCLUDED.tenant";

const DELETE_RULES: &str = "DELETE FROM fx_alert_rules WHERE id = ANY($1::text[])";

/// A bar replaces the stored one only as [`crate::store::candle_replaces`] says.
const UPSERT_CANDLES: &str = "INSERT INTO fx_candles (pair, interval_name, bucket, source, open, high, low, close, \
     bid_open, bid_high, bid_low, bid_close, ask_open, ask_high, ask_low, ask_close, ticks, closed) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::numeric[], $6::numeric[], \
     $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[], \
     $14::numeric[], $15::numeric[], $16::numeric[], $17::bigint[], $18::boolean[]) \
     ON CONFLICT (pair, interval_name, bucket, source) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, \
     low = EXCLUDED.low, close = EXCLUDED.close, bid_open = EXCLUDED.bid_open, bid_high = EXCLUDED.bid_high, \
     bid_low = EXCLUDED.bid_low, bid_close = EXCLUDED.bid_close, ask_open = EXCLUDED.ask_open, \
     ask_high = EXCLUDED.ask_high, ask_low = EXCLUDED.ask_low, ask_close = EXCLUDED.ask_close, \
     ticks = EXCLUDED.ticks, closed = EXCLUDED.closed \
     WHERE EXCLUDED.closed OR (NOT fx_candles.closed AND EXCLUDED.ticks >= fx_candles.ticks)";

const UPSERT_VOLATILITY: &str = "INSERT INTO fx_volatility (pair, window_name, ts, source, volatility, samples) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::float8[], $6::bigint[]) \
     ON CONFLICT (pair, window_name, ts, source) DO UPDATE SET volatility = EXCLUDED.volatility, samples = EXCLUDED.samples";

/// In this order: `candle_row` reads them by position. Prices come as text, parsed with
/// `Decimal::from_str` (exact): decoding NUMERIC's binary form cost ~0.4 µs per value, and a bar
/// has twelve.
const CANDLE_COLUMNS: &str = "pair, interval_name, bucket, source, open::text, high::text, low::text, close::text, \
     bid_open::text, bid_high::text, bid_low::text, bid_close::text, ask_open::text, ask_high::text, ask_low::text, \
     ask_close::text, ticks, closed";

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
    tenant: Vec<Option<String>>,
}

/// `fx_alert_rules` changes of a batch.
#[derive(Default)]
struct RuleColumns {
    id: Vec<String>,
    pair: Vec<String>,
    rule: Vec<String>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    tenant: Vec<Option<String>>,
    deleted: Vec<String>,
}

/// Open, high, low, close columns (`T`: a decimal, or an optional one for bid and ask).
#[derive(Default)]
struct OhlcColumns<T> {
    open: Vec<T>,
    high: Vec<T>,
    low: Vec<T>,
    close: Vec<T>,
}

impl OhlcColumns<Decimal> {
    fn push(&mut self, bar: Ohlc) {
        self.open.push(bar.open);
        self.high.push(bar.high);
        self.low.push(bar.low);
        self.close.push(bar.close);
    }
}

impl OhlcColumns<Option<Decimal>> {
    fn push(&mut self, bar: Option<Ohlc>) {
        self.open.push(bar.map(|b| b.open));
        self.high.push(bar.map(|b| b.high));
        self.low.push(bar.map(|b| b.low));
        self.close.push(bar.map(|b| b.close));
    }
}

/// `fx_candles` columns of a batch.
#[derive(Default)]
struct CandleColumns {
    pair: Vec<String>,
    interval: Vec<String>,
    bucket: Vec<DateTime<Utc>>,
    source: Vec<String>,
    mid: OhlcColumns<Decimal>,
    bid: OhlcColumns<Option<Decimal>>,
    ask: OhlcColumns<Option<Decimal>>,
    ticks: Vec<i64>,
    closed: Vec<bool>,
}

/// `fx_volatility` columns of a batch.
#[derive(Default)]
struct VolatilityColumns {
    pair: Vec<String>,
    window: Vec<String>,
    ts: Vec<DateTime<Utc>>,
    source: Vec<String>,
    volatility: Vec<f64>,
    samples: Vec<i64>,
}

#[derive(Default)]
struct Rows {
    rates: RateColumns,
    alerts: AlertColumns,
    rules: RuleColumns,
    candles: CandleColumns,
    volatility: VolatilityColumns,
}

impl Rows {
    fn of(events: &[&FxEvent]) -> Result<Rows, StoreError> {
        let mut rows = Rows::default();
        for event in events {
            if let Some(price) = event.price() {
                let r = &mut rows.rates;
                r.pair.push(price.pair.to_string());
                r.ts.push(price.ts);
                r.source.push(price.source.to_string());
                r.kind.push(PriceKind::of(event).as_str());
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
                r.tenant.push(a.tenant.as_deref().map(str::to_owned));
            }
        }
        for c in candles_of(events) {
            let r = &mut rows.candles;
            r.pair.push(c.pair.to_string());
            r.interval.push(c.interval_name());
            r.bucket.push(c.start);
            r.source.push(c.source.to_string());
            r.mid.push(c.mid);
            r.bid.push(c.bid);
            r.ask.push(c.ask);
            r.ticks.push(i64::try_from(c.ticks).unwrap_or(i64::MAX));
            r.closed.push(c.closed);
        }
        for v in volatility_of(events) {
            let r = &mut rows.volatility;
            r.pair.push(v.pair.to_string());
            r.window.push(v.window_name());
            r.ts.push(v.ts);
            r.source.push(v.source.to_string());
            r.volatility.push(v.volatility);
            r.samples.push(i64::try_from(v.samples).unwrap_or(i64::MAX));
        }
        for (id, rule) in last_rule_changes(events) {
            let r = &mut rows.rules;
            match rule {
                Some(rule) => {
                    r.id.push(id.to_owned());
                    r.pair.push(rule.pair.to_string());
                    r.rule.push(rule_json(id, rule)?);
                    r.expires_at.push(rule.expires);
                    r.tenant.push(rule.tenant.clone());
                }
                None => r.deleted.push(id.to_owned()),
            }
        }
        Ok(rows)
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
                .bind(a.tenant)
                .execute(&mut *executor)
                .await?;
        }
        let r = self.rules;
        if !r.id.is_empty() {
            sqlx::query(UPSERT_RULES)
                .bind(r.id)
                .bind(r.pair)
                .bind(r.rule)
                .bind(r.expires_at)
                .bind(r.tenant)
                .execute(&mut *executor)
                .await?;
        }
        if !r.deleted.is_empty() {
            sqlx::query(DELETE_RULES)
                .bind(r.deleted)
                .execute(&mut *executor)
                .await?;
        }
        let c = self.candles;
        if !c.pair.is_empty() {
            sqlx::query(UPSERT_CANDLES)
                .bind(c.pair)
                .bind(c.interval)
                .bind(c.bucket)
                .bind(c.source)
                .bind(c.mid.open)
                .bind(c.mid.high)
                .bind(c.mid.low)
                .bind(c.mid.close)
                .bind(c.bid.open)
                .bind(c.bid.high)
                .bind(c.bid.low)
                .bind(c.bid.close)
                .bind(c.ask.open)
                .bind(c.ask.high)
                .bind(c.ask.low)
                .bind(c.ask.close)
                .bind(c.ticks)
                .bind(c.closed)
                .execute(&mut *executor)
                .await?;
        }
        let v = self.volatility;
        if !v.pair.is_empty() {
            sqlx::query(UPSERT_VOLATILITY)
                .bind(v.pair)
                .bind(v.window)
                .bind(v.ts)
                .bind(v.source)
                .bind(v.volatility)
                .bind(v.samples)
                .execute(&mut *executor)
                .await?;
        }
        Ok(())
    }
}

/// Connection-level trouble is worth retrying; anything the database says about the data is not.
pub fn retryable(error: &sqlx::Error) -> bool {
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

fn classify(error: sqlx::Error) -> StoreError {
    StoreError {
        retryable: retryable(&error),
        message: error.to_string(),
    }
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("valid month")
}

impl PostgresStore {
    /// Create the monthly partitions of `fx_rates` that `events` need (once per month per process).
    async fn ensure_partitions(&self, events: &[&FxEvent]) -> Result<(), StoreError> {
        let months: HashSet<(i32, u32)> = {
            let known = self.partitions.lock().expect("partition cache");
            events
                .iter()
                .filter_map(|e| e.price())
                .map(|p| (p.ts.year(), p.ts.month()))
                .filter(|m| !known.contains(m))
                .collect()
        };
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
                    return Err(classify(e));
                }
                // Another writer created it at the same moment, or rows of that month already sit
                // in the default partition: either way inserts still succeed.
                tracing::warn!(year, month, error = %e, "Could not create the month's partition; rows go to the default partition.");
            }
            self.partitions.lock().expect("partition cache").insert((year, month));
        }
        Ok(())
    }
}

fn rate_row(row: &sqlx::postgres::PgRow) -> Result<StoredRate, StoreError> {
    let pair: String = row.try_get("pair").map_err(classify)?;
    let kind: String = row.try_get("kind").map_err(classify)?;
    Ok(StoredRate {
        pair: parse_pair(&pair)?,
        ts: row.try_get("ts").map_err(classify)?,
        source: row.try_get("source").map_err(classify)?,
        kind: PriceKind::parse(&kind)?,
        bid: row.try_get("bid").map_err(classify)?,
        ask: row.try_get("ask").map_err(classify)?,
        mid: row.try_get("mid").map_err(classify)?,
    })
}

/// A row of [`HistoryStore::rate_stream`] as the sample the rules take, borrowing the text
/// columns (no allocation per row).
/// A row of `rate_stream`'s query: pair, ts, source, bid and ask as text. Read by position,
/// the prices parsed from their text (exact): a backtest reads millions of these, and
/// sqlx's binary `NUMERIC` decoding and column lookup by name cost three times as much.
fn price_row(row: &sqlx::postgres::PgRow) -> Result<Price, StoreError> {
    let pair: &str = row.try_get(0).map_err(classify)?;
    let source: &str = row.try_get(2).map_err(classify)?;
    let decimal = |index: usize| -> Result<Decimal, StoreError> {
        let text: &str = row.try_get(index).map_err(classify)?;
        Decimal::from_str_exact(text).map_err(|e| StoreError::data(format!("price `{text}`: {e}")))
    };
    Ok(Price {
        pair: parse_pair(pair)?,
        ts: row.try_get(1).map_err(classify)?,
        source: SourceName::intern(source).map_err(|e| StoreError::data(e.to_string()))?,
        bid: decimal(3)?,
        ask: decimal(4)?,
    })
}

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn write(&self, events: &[&FxEvent]) -> Result<(), StoreError> {
        self.ensure_partitions(events).await?;
        let mut in_flight = tokio::task::JoinSet::new();
        for chunk in events.chunks(ROWS_PER_TRANSACTION) {
            let rows = Rows::of(chunk)?;
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
                Ok(Err(e)) => failure = Some(classify(e)),
                Err(e) => return Err(StoreError::retryable(e)),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn rates(&self, q: &RateQuery) -> Result<Vec<StoredRate>, StoreError> {
        // The primary key (pair, ts, source) serves both the range and the order.
        let (after_ts, after_source) = q.after.clone().unzip();
        let rows = sqlx::query(
            "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates \
             WHERE pair = $1 AND ts >= $2 AND ts < $3 AND ($4::text IS NULL OR source = $4) \
               AND ($5::timestamptz IS NULL OR (ts, source) > ($5, $6)) \
             ORDER BY ts, source LIMIT $7",
        )
        .bind(q.pair.to_string())
        .bind(q.from)
        .bind(q.to)
        .bind(q.source.as_deref())
        .bind(after_ts)
        .bind(after_source)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(rate_row).collect()
    }

    fn rate_stream<'a>(
        &'a self,
        pairs: &'a [String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        source: Option<&'a str>,
    ) -> futures_util::stream::BoxStream<'a, Result<Price, StoreError>> {
        use futures_util::StreamExt as _;
        sqlx::query(
            "SELECT pair, ts, source, bid::text, ask::text FROM fx_rates \
             WHERE pair = ANY($1) AND ts >= $2 AND ts < $3 AND ($4::text IS NULL OR source = $4) \
             ORDER BY ts, pair, source",
        )
        .bind(pairs)
        .bind(from)
        .bind(to)
        .bind(source)
        .fetch(&self.pool)
        .map(|row| row.map_err(classify).and_then(|row| price_row(&row)))
        .boxed()
    }

    async fn source_rates(
        &self,
        source: &str,
        pairs: &[Pair],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredRate>, StoreError> {
        // One probe of the primary key (pair, ts, source) per pair, in each month's partition.
        let pairs: Vec<String> = pairs.iter().map(Pair::to_string).collect();
        let rows = sqlx::query(
            "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates \
             WHERE pair = ANY($1) AND source = $2 AND ts >= $3 AND ts <= $4 ORDER BY ts, pair",
        )
        .bind(&pairs)
        .bind(source)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(rate_row).collect()
    }

    async fn last_ts(&self, source: &str, pair: Pair, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar(
            "SELECT ts FROM fx_rates WHERE pair = $1 AND source = $2 AND ts <= $3 ORDER BY ts DESC LIMIT 1",
        )
        .bind(pair.to_string())
        .bind(source)
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)
    }

    async fn latest_rate(&self, pair: Pair) -> Result<Option<StoredRate>, StoreError> {
        let row = sqlx::query(
            "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates WHERE pair = $1 ORDER BY ts DESC, source DESC LIMIT 1",
        )
        .bind(pair.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(rate_row).transpose()
    }

    async fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        // fired_at index for the time range; the primary key's rule_id prefix for one rule.
        let rows = sqlx::query(
            "SELECT rule_id, pair, condition, value, previous, fired_at, source, tenant FROM fx_alert_history \
             WHERE fired_at >= $1 AND fired_at < $2 AND ($3::text IS NULL OR rule_id = $3) \
               AND ($4::text IS NULL OR pair = $4) \
               AND ($9::text IS NULL OR tenant IS NULL OR tenant = $9) \
               AND ($6::timestamptz IS NULL OR (fired_at, rule_id, source) < ($6, $7, $8)) \
             ORDER BY fired_at DESC, rule_id DESC, source DESC LIMIT $5",
        )
        .bind(q.from)
        .bind(q.to)
        .bind(q.rule_id.as_deref())
        .bind(q.pair.map(|p| p.to_string()))
        .bind(i64::from(q.limit))
        .bind(q.before.as_ref().map(|b| b.0))
        .bind(q.before.as_ref().map(|b| b.1.as_str()))
        .bind(q.before.as_ref().map(|b| b.2.as_str()))
        .bind(q.tenant.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let pair: String = row.try_get("pair").map_err(classify)?;
                Ok(StoredAlert {
                    rule_id: row.try_get("rule_id").map_err(classify)?,
                    pair: parse_pair(&pair)?,
                    condition: row.try_get("condition").map_err(classify)?,
                    value: row.try_get("value").map_err(classify)?,
                    previous: row.try_get("previous").map_err(classify)?,
                    fired_at: row.try_get("fired_at").map_err(classify)?,
                    source: row.try_get("source").map_err(classify)?,
                    tenant: row.try_get("tenant").map_err(classify)?,
                })
            })
            .collect()
    }

    async fn rules(&self, pair: Option<Pair>) -> Result<Vec<AlertRule>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT rule::text FROM fx_alert_rules WHERE ($1::text IS NULL OR pair = $1) ORDER BY id",
        )
        .bind(pair.map(|p| p.to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(|json| parse_rule(json)).collect()
    }

    async fn rule(&self, id: &str) -> Result<Option<StoredRule>, StoreError> {
        let row = sqlx::query(concat!(rule_select!(), " WHERE id = $2"))
            .bind(Utc::now())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(rule_row).transpose()
    }

    async fn rules_page(&self, q: &RuleQuery) -> Result<Vec<StoredRule>, StoreError> {
        let rows = sqlx::query(concat!(
            rule_select!(),
            " WHERE ($2::text IS NULL OR pair = $2) AND ($3::text IS NULL OR id > $3) \
               AND ($4::text IS NULL OR status = $4) \
               AND ($6::text IS NULL OR tenant IS NULL OR tenant = $6) ORDER BY id LIMIT $5"
        ))
        .bind(q.now)
        .bind(q.pair.map(|p| p.to_string()))
        .bind(q.after.as_deref())
        .bind(q.status.map(|s| s.as_str()))
        .bind(i64::from(q.limit))
        .bind(q.tenant.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(rule_row).collect()
    }

    async fn tenant_usage(&self, tenant: &str) -> Result<TenantUsage, StoreError> {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE rule ? 'webhook') FROM fx_alert_rules WHERE tenant = $1",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(TenantUsage::from_counts(counts))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)
            .map(|_| ())
    }

    async fn candles(&self, q: &CandleQuery) -> Result<Vec<StoredCandle>, StoreError> {
        // The primary key (pair, interval_name, bucket, source) serves the range and the order.
        let (after_bucket, after_source) = q.after.clone().unzip();
        let sql = format!(
            "SELECT {CANDLE_COLUMNS} FROM fx_candles \
             WHERE pair = $1 AND interval_name = $2 AND bucket >= $3 AND bucket < $4 AND ($5::text IS NULL OR source = $5) \
               AND ($6::timestamptz IS NULL OR (bucket, source) > ($6, $7)) \
             ORDER BY bucket, source LIMIT $8"
        );
        // Audited: only the fixed column list is formatted into the statement.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.pair.to_string())
            .bind(&q.interval)
            .bind(q.from)
            .bind(q.to)
            .bind(q.source.as_deref())
            .bind(after_bucket)
            .bind(after_source)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(candle_row).collect()
    }

    async fn volatility(&self, q: &VolatilityQuery) -> Result<Vec<StoredVolatility>, StoreError> {
        let pairs: Vec<String> = q.pairs.iter().map(|p| p.to_string()).collect();
        let rows = match q.range {
            // Per pair, a backward scan of the primary key that stops at the first row.
            None => {
                sqlx::query(
                    "SELECT v.pair, v.window_name, v.ts, v.source, v.volatility, v.samples FROM unnest($1::text[]) AS p(pair) \
                     CROSS JOIN LATERAL (SELECT pair, window_name, ts, source, volatility, samples FROM fx_volatility \
                         WHERE pair = p.pair AND window_name = $2 ORDER BY ts DESC, source DESC LIMIT 1) v \
                     ORDER BY v.pair",
                )
                .bind(pairs)
                .bind(&q.window)
                .fetch_all(&self.pool)
                .await
            }
            Some((from, to)) => {
                sqlx::query(
                    "SELECT pair, window_name, ts, source, volatility, samples FROM fx_volatility \
                     WHERE pair = ANY($1::text[]) AND window_name = $2 AND ts >= $3 AND ts < $4 \
                     ORDER BY pair, ts, source LIMIT $5",
                )
                .bind(pairs)
                .bind(&q.window)
                .bind(from)
                .bind(to)
                .bind(i64::from(q.limit))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(classify)?;
        rows.iter().map(volatility_row).collect()
    }

    async fn rates_at(&self, pairs: &[Pair], at: DateTime<Utc>) -> Result<Vec<StoredRate>, StoreError> {
        // Per pair, a backward scan of the (pair, ts, source) index that stops at the first row.
        let names: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
        let rows = sqlx::query(
            "SELECT r.pair, r.ts, r.source, r.kind, r.bid, r.ask, r.mid FROM unnest($1::text[]) AS p(pair) \
             CROSS JOIN LATERAL (SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates \
                 WHERE pair = p.pair AND ts <= $2 ORDER BY ts DESC, source DESC LIMIT 1) r",
        )
        .bind(names)
        .bind(at)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(rate_row).collect()
    }
}

/// The four prices of a bar from columns `first..first + 4` (by position: looking 16 columns up
/// by name per row cost more than reading them).
fn ohlc(row: &sqlx::postgres::PgRow, first: usize) -> Result<Option<Ohlc>, StoreError> {
    let get = |i: usize| -> Result<Option<Decimal>, StoreError> {
        let text: Option<&str> = row.try_get(first + i).map_err(classify)?;
        text.map(|t| Decimal::from_str(t).map_err(|e| StoreError::data(format!("a stored price {t:?}: {e}"))))
            .transpose()
    };
    Ok(match (get(0)?, get(1)?, get(2)?, get(3)?) {
        (Some(open), Some(high), Some(low), Some(close)) => Some(Ohlc { open, high, low, close }),
        _ => None,
    })
}

/// A row of `SELECT {CANDLE_COLUMNS}`, by column position.
fn candle_row(row: &sqlx::postgres::PgRow) -> Result<StoredCandle, StoreError> {
    let pair: String = row.try_get(0).map_err(classify)?;
    Ok(StoredCandle {
        pair: parse_pair(&pair)?,
        interval: row.try_get(1).map_err(classify)?,
        start: row.try_get(2).map_err(classify)?,
        source: row.try_get(3).map_err(classify)?,
        mid: ohlc(row, 4)?.ok_or_else(|| StoreError::data("a stored candle without its mid"))?,
        bid: ohlc(row, 8)?,
        ask: ohlc(row, 12)?,
        ticks: row.try_get(16).map_err(classify)?,
        closed: row.try_get(17).map_err(classify)?,
    })
}

fn volatility_row(row: &sqlx::postgres::PgRow) -> Result<StoredVolatility, StoreError> {
    let pair: String = row.try_get("pair").map_err(classify)?;
    Ok(StoredVolatility {
        pair: parse_pair(&pair)?,
        source: row.try_get("source").map_err(classify)?,
        window: row.try_get("window_name").map_err(classify)?,
        ts: row.try_get("ts").map_err(classify)?,
        volatility: row.try_get("volatility").map_err(classify)?,
        samples: row.try_get("samples").map_err(classify)?,
    })
}

fn rule_row(row: &sqlx::postgres::PgRow) -> Result<StoredRule, StoreError> {
    let rule: String = row.try_get("rule").map_err(classify)?;
    Ok(StoredRule {
        rule: parse_rule(&rule)?,
        tenant: row.try_get("tenant").map_err(classify)?,
        created_at: row.try_get("created_at").map_err(classify)?,
        fired_count: row.try_get("fired_count").map_err(classify)?,
        last_fired_at: row.try_get("last_fired_at").map_err(classify)?,
    })
}
