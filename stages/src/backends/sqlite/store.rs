//! [`HistoryStore`] on SQLite (tables from `migrations/sqlite`), for the embedded default.
//!
//! One transaction per batch, one prepared `INSERT … ON CONFLICT DO NOTHING`
//! per row: SQLite runs in-process, so a row costs microseconds, not a round
//! trip. Decimals are stored as the text `rust_decimal` prints (exact) and
//! timestamps as fixed-width RFC 3339 UTC, so text order is time order.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::SqliteDatabase;
use crate::fx::{AlertRule, FxEvent, Ohlc, Pair, Price, SourceName};
use crate::store::{
    last_rule_changes, parse_pair, parse_rule, rule_json, AlertQuery, CandleQuery, HistoryStore, PriceKind, RateQuery,
    RuleQuery, StoreError, StoredAlert, StoredCandle, StoredRate, StoredRule, StoredVolatility, TenantUsage,
    VolatilityQuery,
};

/// Rules with their firing counts and status at `?2` (`?1` is a placeholder
/// so both callers number the rest alike).
macro_rules! rule_select {
    () => {
        "SELECT * FROM (SELECT r.id, r.pair, r.rule, r.tenant, r.created_at, \
        (SELECT count(*) FROM fx_alert_history h WHERE h.rule_id = r.id) AS fired_count, \
        (SELECT max(fired_at) FROM fx_alert_history h WHERE h.rule_id = r.id) AS last_fired_at, \
        CASE WHEN json_extract(r.rule, '$.trigger') = 'Once' \
                  AND EXISTS (SELECT 1 FROM fx_alert_history h WHERE h.rule_id = r.id) THEN 'triggered' \
             WHEN r.expires_at IS NOT NULL AND r.expires_at <= ?2 THEN 'expired' \
             ELSE 'active' END AS status \
        FROM fx_alert_rules r WHERE ?1 IS NOT NULL OR ?1 IS NULL)"
    };
}

pub struct SqliteStore {
    pool: SqlitePool,
    writes: SqlitePool,
}

impl SqliteStore {
    pub fn new(database: SqliteDatabase) -> Self {
        SqliteStore {
            pool: database.reads().clone(),
            writes: database.writes().clone(),
        }
    }
}

const INSERT_RATE: &str = "INSERT INTO fx_rates (pair, ts, source, kind, bid, ask, mid) VALUES (?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (pair, ts, source) DO NOTHING";

const INSERT_ALERT: &str =
    "INSERT INTO fx_alert_history (rule_id, pair, condition, value, previous, fired_at, source, tenant) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, (SELECT tenant FROM fx_alert_rules WHERE id = ?1))) \
     ON CONFLICT (rule_id, fired_at, source) DO NOTHING";

const UPSERT_RULE: &str = "INSERT INTO fx_alert_rules (id, pair, rule, expires_at, tenant) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET pair = excluded.pair, rule = excluded.rule, expires_at = excluded.expires_at, \
     tenant = excluded.tenant";

/// A bar replaces the stored one only as [`crate::store::candle_replaces`] says.
const UPSERT_CANDLE: &str = "INSERT INTO fx_candles (pair, interval_name, bucket, source, open, high, low, close, \
     bid_open, bid_high, bid_low, bid_close, ask_open, ask_high, ask_low, ask_close, ticks, closed) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (pair, interval_name, bucket, source) DO UPDATE SET open = excluded.open, high = excluded.high, \
     low = excluded.low, close = excluded.close, bid_open = excluded.bid_open, bid_high = excluded.bid_high, \
     bid_low = excluded.bid_low, bid_close = excluded.bid_close, ask_open = excluded.ask_open, \
     ask_high = excluded.ask_high, ask_low = excluded.ask_low, ask_close = excluded.ask_close, \
     ticks = excluded.ticks, closed = excluded.closed \
     WHERE excluded.closed OR (NOT fx_candles.closed AND excluded.ticks >= fx_candles.ticks)";

const UPSERT_VOLATILITY: &str = "INSERT INTO fx_volatility (pair, window_name, ts, source, volatility, samples) \
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pair, window_name, ts, source) \
     DO UPDATE SET volatility = excluded.volatility, samples = excluded.samples";

const CANDLE_COLUMNS: &str = "pair, interval_name, bucket, source, open, high, low, close, bid_open, bid_high, \
     bid_low, bid_close, ask_open, ask_high, ask_low, ask_close, ticks, closed";

/// Timestamps as fixed-width RFC 3339 in UTC, so text order is time order.
fn ts_text(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn insert(connection: &mut SqliteConnection, event: &FxEvent) -> Result<(), sqlx::Error> {
    if let Some(p) = event.price() {
        sqlx::query(INSERT_RATE)
            .bind(p.pair.to_string())
            .bind(ts_text(p.ts))
            .bind(p.source.as_str())
            .bind(PriceKind::of(event).as_str())
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
            .bind(a.tenant.as_deref())
            .execute(&mut *connection)
            .await?;
    } else if let FxEvent::Candle(c) = event {
        let side = |bar: Option<Ohlc>, pick: fn(&Ohlc) -> Decimal| bar.map(|b| pick(&b).to_string());
        sqlx::query(UPSERT_CANDLE)
            .bind(c.pair.to_string())
            .bind(c.interval_name())
            .bind(ts_text(c.start))
            .bind(c.source.as_str())
            .bind(c.mid.open.to_string())
            .bind(c.mid.high.to_string())
            .bind(c.mid.low.to_string())
            .bind(c.mid.close.to_string())
            .bind(side(c.bid, |b| b.open))
            .bind(side(c.bid, |b| b.high))
            .bind(side(c.bid, |b| b.low))
            .bind(side(c.bid, |b| b.close))
            .bind(side(c.ask, |b| b.open))
            .bind(side(c.ask, |b| b.high))
            .bind(side(c.ask, |b| b.low))
            .bind(side(c.ask, |b| b.close))
            .bind(i64::try_from(c.ticks).unwrap_or(i64::MAX))
            .bind(c.closed)
            .execute(&mut *connection)
            .await?;
    } else if let FxEvent::Volatility(v) = event {
        sqlx::query(UPSERT_VOLATILITY)
            .bind(v.pair.to_string())
            .bind(v.window_name())
            .bind(ts_text(v.ts))
            .bind(v.source.as_str())
            .bind(v.volatility)
            .bind(i64::try_from(v.samples).unwrap_or(i64::MAX))
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

fn classify(error: sqlx::Error) -> StoreError {
    StoreError {
        retryable: retryable(&error),
        message: error.to_string(),
    }
}

fn text<'r>(row: &'r SqliteRow, column: &str) -> Result<&'r str, StoreError> {
    row.try_get(column).map_err(classify)
}

fn decimal(row: &SqliteRow, column: &str) -> Result<Decimal, StoreError> {
    let value = text(row, column)?;
    Decimal::from_str(value).map_err(|e| StoreError::data(format!("stored {column} {value:?}: {e}")))
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let value = text(row, column)?;
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::data(format!("stored {column} {value:?}: {e}")))
}

fn rate_row(row: &SqliteRow) -> Result<StoredRate, StoreError> {
    Ok(StoredRate {
        pair: parse_pair(text(row, "pair")?)?,
        ts: time(row, "ts")?,
        source: text(row, "source")?.to_owned(),
        kind: PriceKind::parse(text(row, "kind")?)?,
        bid: decimal(row, "bid")?,
        ask: decimal(row, "ask")?,
        mid: decimal(row, "mid")?,
    })
}

/// A row of [`HistoryStore::rate_stream`] as the sample the rules take.
fn price_row(row: &SqliteRow) -> Result<Price, StoreError> {
    Ok(Price {
        pair: parse_pair(text(row, "pair")?)?,
        ts: time(row, "ts")?,
        source: SourceName::intern(text(row, "source")?).map_err(|e| StoreError::data(e.to_string()))?,
        bid: decimal(row, "bid")?,
        ask: decimal(row, "ask")?,
    })
}

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn write(&self, events: &[&FxEvent]) -> Result<(), StoreError> {
        let rules = last_rule_changes(events)
            .into_iter()
            .map(|(id, rule)| {
                Ok((
                    id,
                    rule.map(|r| Ok::<_, StoreError>((r, rule_json(id, r)?))).transpose()?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // IMMEDIATE: take the write lock at BEGIN, where the busy timeout applies, rather than
        // upgrading later (another process writing the file would then fail it at once).
        let mut tx = self.writes.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        for event in events {
            insert(&mut tx, event).await.map_err(classify)?;
        }
        for (id, rule) in rules {
            let result = match rule {
                Some((rule, json)) => {
                    sqlx::query(UPSERT_RULE)
                        .bind(id)
                        .bind(rule.pair.to_string())
                        .bind(json)
                        .bind(rule.expires.map(ts_text))
                        .bind(rule.tenant.as_deref())
                        .execute(&mut *tx)
                        .await
                }
                None => {
                    sqlx::query("DELETE FROM fx_alert_rules WHERE id = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                }
            };
            result.map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn rates(&self, q: &RateQuery) -> Result<Vec<StoredRate>, StoreError> {
        // The primary key (pair, ts, source) serves both the range and the order.
        let (after_ts, after_source) = q.after.clone().unzip();
        let rows = sqlx::query(
            "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates \
             WHERE pair = ?1 AND ts >= ?2 AND ts < ?3 AND (?4 IS NULL OR source = ?4) \
               AND (?5 IS NULL OR (ts, source) > (?5, ?6)) \
             ORDER BY ts, source LIMIT ?7",
        )
        .bind(q.pair.to_string())
        .bind(ts_text(q.from))
        .bind(ts_text(q.to))
        .bind(q.source.as_deref())
        .bind(after_ts.map(ts_text))
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
        // The pairs as a JSON array (one parameter whatever their number).
        let pairs = serde_json::to_string(pairs).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "SELECT pair, ts, source, bid, ask FROM fx_rates \
             WHERE pair IN (SELECT value FROM json_each(?1)) AND ts >= ?2 AND ts < ?3 \
               AND (?4 IS NULL OR source = ?4) \
             ORDER BY ts, pair, source",
        )
        .bind(pairs)
        .bind(ts_text(from))
        .bind(ts_text(to))
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
        // One primary-key range per pair (in-process: cheap), merged in (ts, pair) order.
        let mut rates = Vec::new();
        for pair in pairs {
            let rows = sqlx::query(
                "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates \
                 WHERE pair = ?1 AND ts >= ?2 AND ts <= ?3 AND source = ?4 ORDER BY ts",
            )
            .bind(pair.to_string())
            .bind(ts_text(from))
            .bind(ts_text(to))
            .bind(source)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            for row in &rows {
                rates.push(rate_row(row)?);
            }
        }
        rates.sort_by_key(|r| (r.ts, r.pair));
        Ok(rates)
    }

    async fn last_ts(&self, source: &str, pair: Pair, at: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row =
            sqlx::query("SELECT ts FROM fx_rates WHERE pair = ? AND source = ? AND ts <= ? ORDER BY ts DESC LIMIT 1")
                .bind(pair.to_string())
                .bind(source)
                .bind(ts_text(at))
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        row.as_ref().map(|row| time(row, "ts")).transpose()
    }

    async fn latest_rate(&self, pair: Pair) -> Result<Option<StoredRate>, StoreError> {
        let row = sqlx::query(
            "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates WHERE pair = ? ORDER BY ts DESC, source DESC LIMIT 1",
        )
        .bind(pair.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(rate_row).transpose()
    }

    async fn alerts(&self, q: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let (before_ts, before_rule, before_source) = match &q.before {
            Some((ts, rule, source)) => (Some(ts_text(*ts)), Some(rule.as_str()), Some(source.as_str())),
            None => (None, None, None),
        };
        let rows = sqlx::query(
            "SELECT rule_id, pair, condition, value, previous, fired_at, source, tenant FROM fx_alert_history \
             WHERE fired_at >= ?1 AND fired_at < ?2 AND (?3 IS NULL OR rule_id = ?3) AND (?4 IS NULL OR pair = ?4) \
               AND (?6 IS NULL OR (fired_at, rule_id, source) < (?6, ?7, ?8)) \
               AND (?9 IS NULL OR tenant IS NULL OR tenant = ?9) \
             ORDER BY fired_at DESC, rule_id DESC, source DESC LIMIT ?5",
        )
        .bind(ts_text(q.from))
        .bind(ts_text(q.to))
        .bind(q.rule_id.as_deref())
        .bind(q.pair.map(|p| p.to_string()))
        .bind(i64::from(q.limit))
        .bind(before_ts)
        .bind(before_rule)
        .bind(before_source)
        .bind(q.tenant.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let previous: Option<&str> = row.try_get("previous").map_err(classify)?;
                Ok(StoredAlert {
                    rule_id: text(row, "rule_id")?.to_owned(),
                    pair: parse_pair(text(row, "pair")?)?,
                    condition: text(row, "condition")?.to_owned(),
                    value: decimal(row, "value")?,
                    previous: previous
                        .map(|p| {
                            Decimal::from_str(p).map_err(|e| StoreError::data(format!("stored previous {p:?}: {e}")))
                        })
                        .transpose()?,
                    fired_at: time(row, "fired_at")?,
                    source: text(row, "source")?.to_owned(),
                    tenant: row.try_get("tenant").map_err(classify)?,
                })
            })
            .collect()
    }

    async fn rules(&self, pair: Option<Pair>) -> Result<Vec<AlertRule>, StoreError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT rule FROM fx_alert_rules WHERE (?1 IS NULL OR pair = ?1) ORDER BY id")
                .bind(pair.map(|p| p.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        rows.iter().map(|json| parse_rule(json)).collect()
    }

    async fn rule(&self, id: &str) -> Result<Option<StoredRule>, StoreError> {
        let row = sqlx::query(concat!(rule_select!(), " WHERE id = ?1"))
            .bind(id)
            .bind(ts_text(Utc::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(rule_row).transpose()
    }

    async fn rules_page(&self, q: &RuleQuery) -> Result<Vec<StoredRule>, StoreError> {
        let rows = sqlx::query(concat!(
            rule_select!(),
            " WHERE (?3 IS NULL OR pair = ?3) AND (?4 IS NULL OR id > ?4) AND (?5 IS NULL OR status = ?5) \
               AND (?7 IS NULL OR tenant IS NULL OR tenant = ?7) ORDER BY id LIMIT ?6"
        ))
        .bind("")
        .bind(ts_text(q.now))
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
            "SELECT count(*), count(json_extract(rule, '$.webhook')) FROM fx_alert_rules WHERE tenant = ?1",
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
             WHERE pair = ?1 AND interval_name = ?2 AND bucket >= ?3 AND bucket < ?4 AND (?5 IS NULL OR source = ?5) \
               AND (?6 IS NULL OR (bucket, source) > (?6, ?7)) \
             ORDER BY bucket, source LIMIT ?8"
        );
        // Audited: only the fixed column list is formatted into the statement.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.pair.to_string())
            .bind(&q.interval)
            .bind(ts_text(q.from))
            .bind(ts_text(q.to))
            .bind(q.source.as_deref())
            .bind(after_bucket.map(ts_text))
            .bind(after_source)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(candle_row).collect()
    }

    async fn volatility(&self, q: &VolatilityQuery) -> Result<Vec<StoredVolatility>, StoreError> {
        let mut pairs: Vec<String> = q.pairs.iter().map(|p| p.to_string()).collect();
        pairs.sort();
        let mut readings = Vec::new();
        for pair in &pairs {
            let rows = match q.range {
                // One primary-key probe per pair (in-process: microseconds each).
                None => {
                    sqlx::query(
                        "SELECT pair, window_name, ts, source, volatility, samples FROM fx_volatility \
                         WHERE pair = ?1 AND window_name = ?2 ORDER BY ts DESC, source DESC LIMIT 1",
                    )
                    .bind(pair)
                    .bind(&q.window)
                    .fetch_all(&self.pool)
                    .await
                }
                Some((from, to)) => {
                    sqlx::query(
                        "SELECT pair, window_name, ts, source, volatility, samples FROM fx_volatility \
                         WHERE pair = ?1 AND window_name = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts, source LIMIT ?5",
                    )
                    .bind(pair)
                    .bind(&q.window)
                    .bind(ts_text(from))
                    .bind(ts_text(to))
                    .bind(i64::from(q.limit) - readings.len() as i64)
                    .fetch_all(&self.pool)
                    .await
                }
            }
            .map_err(classify)?;
            for row in &rows {
                readings.push(volatility_row(row)?);
            }
            if readings.len() >= q.limit as usize {
                break;
            }
        }
        Ok(readings)
    }

    async fn rates_at(&self, pairs: &[Pair], at: DateTime<Utc>) -> Result<Vec<StoredRate>, StoreError> {
        // One primary-key probe per pair (in-process: microseconds each).
        let mut rates = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let row = sqlx::query(
                "SELECT pair, ts, source, kind, bid, ask, mid FROM fx_rates WHERE pair = ? AND ts <= ? \
                 ORDER BY ts DESC, source DESC LIMIT 1",
            )
            .bind(pair.to_string())
            .bind(ts_text(at))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
            if let Some(row) = row {
                rates.push(rate_row(&row)?);
            }
        }
        Ok(rates)
    }
}

fn optional_decimal(row: &SqliteRow, column: &str) -> Result<Option<Decimal>, StoreError> {
    let value: Option<&str> = row.try_get(column).map_err(classify)?;
    value
        .map(|v| Decimal::from_str(v).map_err(|e| StoreError::data(format!("stored {column} {v:?}: {e}"))))
        .transpose()
}

fn ohlc(row: &SqliteRow, prefix: &str) -> Result<Option<Ohlc>, StoreError> {
    let get = |name: &str| optional_decimal(row, &format!("{prefix}{name}"));
    Ok(match (get("open")?, get("high")?, get("low")?, get("close")?) {
        (Some(open), Some(high), Some(low), Some(close)) => Some(Ohlc { open, high, low, close }),
        _ => None,
    })
}

fn candle_row(row: &SqliteRow) -> Result<StoredCandle, StoreError> {
    Ok(StoredCandle {
        pair: parse_pair(text(row, "pair")?)?,
        interval: text(row, "interval_name")?.to_owned(),
        start: time(row, "bucket")?,
        source: text(row, "source")?.to_owned(),
        mid: ohlc(row, "")?.ok_or_else(|| StoreError::data("a stored candle without its mid"))?,
        bid: ohlc(row, "bid_")?,
        ask: ohlc(row, "ask_")?,
        ticks: row.try_get("ticks").map_err(classify)?,
        closed: row.try_get("closed").map_err(classify)?,
    })
}

fn volatility_row(row: &SqliteRow) -> Result<StoredVolatility, StoreError> {
    Ok(StoredVolatility {
        pair: parse_pair(text(row, "pair")?)?,
        source: text(row, "source")?.to_owned(),
        window: text(row, "window_name")?.to_owned(),
        ts: time(row, "ts")?,
        volatility: row.try_get("volatility").map_err(classify)?,
        samples: row.try_get("samples").map_err(classify)?,
    })
}

fn rule_row(row: &SqliteRow) -> Result<StoredRule, StoreError> {
    let last: Option<&str> = row.try_get("last_fired_at").map_err(classify)?;
    Ok(StoredRule {
        rule: parse_rule(text(row, "rule")?)?,
        tenant: row.try_get("tenant").map_err(classify)?,
        created_at: time(row, "created_at")?,
        fired_count: row.try_get("fired_count").map_err(classify)?,
        last_fired_at: last
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| StoreError::data(format!("stored fired_at {t:?}: {e}")))
            })
            .transpose()?,
    })
}
