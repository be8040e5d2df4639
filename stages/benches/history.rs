//! History-query latency on a large `fx_rates` (storage issue): p50/p99 of the API's query
//! shapes for one pair over 30 days of 1-second data, on a table of ≥ 50 M rows; and the
//! candles of that history (analytics issue): 30 days of 1-minute bars of one pair from
//! `fx_candles`, through the store and through the `Api` stage's `/rates/{pair}/candles`.
//!
//! Run: `cargo bench -p fxflow-stages --bench history` (needs PostgreSQL on 127.0.0.1:5432;
//! the first run generates the rows into schema `fxbench_history`, ~8 GB, and keeps them, then
//! rolls them up once into 1-minute bars in `fx_candles` — what the `Candles` stage would have
//! stored from those prices).

use std::time::{Duration, Instant};

use fxflow_stages::backends::postgres::{migrate, PostgresResourceConfig};
use sqlx::PgPool;

const SCHEMA: &str = "fxbench_history";
const PAIRS: [&str; 28] = [
    "EUR/USD", "EUR/GBP", "EUR/AUD", "EUR/NZD", "EUR/CAD", "EUR/CHF", "EUR/JPY", "GBP/AUD", "GBP/NZD", "GBP/USD",
    "GBP/CAD", "GBP/CHF", "GBP/JPY", "AUD/NZD", "AUD/USD", "AUD/CAD", "AUD/CHF", "AUD/JPY", "NZD/USD", "NZD/CAD",
    "NZD/CHF", "NZD/JPY", "USD/CAD", "USD/CHF", "USD/JPY", "CAD/CHF", "CAD/JPY", "CHF/JPY",
];

async fn generate(pool: &PgPool) {
    migrate(pool).await.unwrap();
    for month in ["2026-09-01", "2026-10-01"] {
        let (y, m) = (&month[0..4], &month[5..7]);
        let next = if m == "09" { "2026-10-01" } else { "2026-11-01" };
        let sql = format!("CREATE TABLE IF NOT EXISTS fx_rates_y{y}m{m} PARTITION OF fx_rates FOR VALUES FROM ('{month}') TO ('{next}')");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
    }
    // EUR/USD: 31 days of 1-second data (the queried pair); the 27 others: 21 days each
    // (51.7 M rows). Seconds already there are skipped, so a rerun only tops up.
    for (i, pair) in PAIRS.iter().enumerate() {
        let days = if i == 0 { 31 } else { 21 };
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_rates WHERE pair = $1")
            .bind(pair)
            .fetch_one(pool)
            .await
            .unwrap();
        let started = Instant::now();
        let sql = format!(
            "INSERT INTO fx_rates (pair, ts, source, kind, bid, ask, mid) \
             SELECT '{pair}', timestamptz '2026-09-15 00:00:00+00' + s * interval '1 second', 'bench', 'cross', \
                    b, b + 0.0002, b + 0.0001 \
             FROM (SELECT s, round((1.1 + 0.01 * sin(s / 5000.0))::numeric, 6) AS b \
                   FROM generate_series({existing}, {days} * 86400 - 1) AS s) g \
             ON CONFLICT DO NOTHING"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
        eprintln!("generated {pair}: {days} days in {:.1?}", started.elapsed());
    }
    sqlx::query("ANALYZE fx_rates").execute(pool).await.unwrap();
}

/// Fill `fx_candles` with the 1-minute bars of every row (once): open and close by time, high,
/// low, ticks, of mid, bid and ask.
async fn roll_up(pool: &PgPool) {
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_candles WHERE interval_name = '1m'")
        .fetch_one(pool)
        .await
        .unwrap();
    let want = (31 + 27 * 21) * 1440;
    if have >= want {
        return;
    }
    for pair in PAIRS {
        let started = Instant::now();
        sqlx::query(
            "INSERT INTO fx_candles (pair, interval_name, bucket, source, open, high, low, close, \
             bid_open, bid_high, bid_low, bid_close, ask_open, ask_high, ask_low, ask_close, ticks, closed) \
             SELECT pair, '1m', date_trunc('minute', ts), source, \
                 (array_agg(mid ORDER BY ts))[1], max(mid), min(mid), (array_agg(mid ORDER BY ts DESC))[1], \
                 (array_agg(bid ORDER BY ts))[1], max(bid), min(bid), (array_agg(bid ORDER BY ts DESC))[1], \
                 (array_agg(ask ORDER BY ts))[1], max(ask), min(ask), (array_agg(ask ORDER BY ts DESC))[1], \
                 count(*), true \
             FROM fx_rates WHERE pair = $1 GROUP BY pair, date_trunc('minute', ts), source \
             ON CONFLICT DO NOTHING",
        )
        .bind(pair)
        .execute(pool)
        .await
        .unwrap();
        eprintln!("rolled up {pair} into 1-minute bars in {:.1?}", started.elapsed());
    }
    sqlx::query("ANALYZE fx_candles").execute(pool).await.unwrap();
}

/// The `per_mille`/1000 quantile of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() * per_mille).div_ceil(1000).clamp(1, sorted.len()) - 1]
}

async fn measure(pool: &PgPool, label: &str, sql: &'static str, runs: usize) {
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for i in 0..runs {
        // Windows start at different hours so no two runs read the same first page.
        let start = chrono::DateTime::parse_from_rfc3339("2026-09-15T00:00:00Z").unwrap()
            + chrono::Duration::minutes((i % 1440) as i64);
        let end = start + chrono::Duration::days(30);
        let started = Instant::now();
        let result = sqlx::query(sql)
            .bind("EUR/USD")
            .bind(start)
            .bind(end)
            .fetch_all(pool)
            .await
            .unwrap();
        times.push(started.elapsed());
        rows = result.len();
    }
    times.sort();
    println!(
        "{label}: {runs} runs, {rows} rows each — p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        percentile(&times, 500),
        percentile(&times, 990),
        times[times.len() - 1]
    );
}

/// p50/p99/max of `runs` runs of `one(i)`, printed with `label` and what each run returned.
async fn timed<F, Fut>(label: &str, runs: usize, mut one: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut times = Vec::with_capacity(runs);
    let mut what = String::new();
    for i in 0..runs {
        let started = Instant::now();
        what = one(i).await;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{label}: {runs} runs, {what} — p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        percentile(&times, 500),
        percentile(&times, 990),
        times[times.len() - 1]
    );
}

/// 30-day windows of EUR/USD, the n-th moved on by n minutes.
fn month(i: usize) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-09-15T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
        + chrono::Duration::minutes((i % 1440) as i64);
    (start, start + chrono::Duration::days(30))
}

/// The candles of 30 days of EUR/USD: from the store, and from a running `Api` stage.
async fn candles(pool: &PgPool) {
    use fxflow_stages::store::{CandleQuery, HistoryStore};
    roll_up(pool).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_candles")
        .fetch_one(pool)
        .await
        .unwrap();
    println!("fx_candles holds {total} rows (1-minute bars of the history above)");
    let store = fxflow_stages::backends::postgres::store::PostgresStore::new(pool.clone());
    let query = |i: usize, limit: u32| {
        let (from, to) = month(i);
        CandleQuery {
            pair: "EUR/USD".parse().unwrap(),
            interval: "1m".into(),
            from,
            to,
            source: None,
            after: None,
            limit,
        }
    };
    timed(
        "store: 30 days of 1-minute EUR/USD bars (HistoryStore::candles)",
        200,
        |i| {
            let (store, q) = (&store, query(i, 50_000));
            async move { format!("{} bars", store.candles(&q).await.unwrap().len()) }
        },
    )
    .await;
    timed("store: first page (1,000 bars) of 30 days", 1000, |i| {
        let (store, q) = (&store, query(i, 1001));
        async move { format!("{} bars", store.candles(&q).await.unwrap().len()) }
    })
    .await;

    // The endpoint, as served: an Api stage on the same schema.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        r#"Pipeline(name: "bench-candles",
            resources: {{ "history": Postgres(url: "postgres://postgres@127.0.0.1:5432/test", schema: "{SCHEMA}") }},
            stages: {{
                "api": Api(listen: "127.0.0.1:{port}", store: "history", migrate: false, replay_rules: false,
                    limits: (per_ip: None, per_key: None, max_page: 50000)),
            }})"#
    );
    let spec =
        fxflow_engine::pipeline_file::load_str("bench.ron", &text, &fxflow_stages::registry(), |_| None).unwrap();
    let running = fxflow_engine::start(spec).await.unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = |i: usize, rest: &str| {
        let (from, to) = month(i);
        format!(
            "{base}/rates/EURUSD/candles?interval=1m&from={}&to={}&{rest}",
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        )
    };
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let body = response.bytes().await.unwrap();
            format!("{} KB", body.len() / 1024)
        }
    };
    timed(
        "GET /rates/EURUSD/candles?interval=1m, 30 days (43,200 bars, JSON, one response)",
        100,
        |i| get(url(i, "limit=43200")),
    )
    .await;
    timed(
        "GET /rates/EURUSD/candles?interval=1m, 30 days, first page of 1,000 bars (JSON)",
        1000,
        |i| get(url(i, "limit=1000")),
    )
    .await;
    timed(
        "GET /rates/EURUSD/candles?interval=1m, 30 days as CSV (streamed)",
        100,
        |i| get(url(i, "format=csv")),
    )
    .await;
    running.stop(Duration::from_secs(10)).await.unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let admin = PostgresResourceConfig { url: "postgres://postgres@127.0.0.1:5432/test".into(), schema: None, pool: Default::default() };
        let admin_pool = admin.connect().await.expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))).execute(&admin_pool).await.unwrap();
        let pool = PostgresResourceConfig { schema: Some(SCHEMA.into()), ..admin }.connect().await.unwrap();
        migrate(&pool).await.unwrap();
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_rates").fetch_one(&pool).await.unwrap();
        if total < 50_000_000 {
            generate(&pool).await;
        }
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM fx_rates").fetch_one(&pool).await.unwrap();
        println!("fx_rates holds {total} rows");
        measure(
            &pool,
            "first page (1,000 rows) of EUR/USD over 30 days",
            "SELECT ts, bid, ask FROM fx_rates WHERE pair = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT 1000",
            1000,
        )
        .await;
        measure(
            &pool,
            "hourly bars (open/high/low/close of mid) of EUR/USD over 30 days",
            "SELECT date_bin('1 hour', ts, $2) AS hour, (array_agg(mid ORDER BY ts))[1], max(mid), min(mid), \
             (array_agg(mid ORDER BY ts DESC))[1] FROM fx_rates WHERE pair = $1 AND ts >= $2 AND ts < $3 GROUP BY hour ORDER BY hour",
            10,
        )
        .await;
        candles(&pool).await;
    });
}
