//! Store sink benchmarks against real servers (Redis at 127.0.0.1:6379; `scripts/test.sh` starts it).
//!
//! Run: `cargo bench -p fxflow-stages --bench stores` (figures in BENCHMARKS.md).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fxflow_engine::Sink;
use fxflow_engine::{BuildContext, Envelope, ResourceConfig, Resources, Stage, StageConfig};
use fxflow_stages::backends::redis::RedisResourceConfig;
use fxflow_stages::fx::{CrossRate, Currency, FxEvent, Pair, SourceName};
use fxflow_stages::sinks::redis::RedisConfig;
use rust_decimal::Decimal;

const CODES: [&str; 72] = [
    "EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "TRY", "ZAR",
    "MXN", "SGD", "HKD", "CNY", "INR", "KRW", "BRL", "ILS", "THB", "MYR", "IDR", "PHP", "ISK", "RON", "BGN", "CLP",
    "COP", "PEN", "SAR", "AED", "QAR", "KWD", "EGP", "NGN", "KES", "MAD", "TND", "UAH", "KZT", "GEL", "AMD", "AZN",
    "BDT", "PKR", "LKR", "VND", "TWD", "ARS", "UYU", "PYG", "BOB", "CRC", "DOP", "GTQ", "HNL", "JMD", "TTD", "BHD",
    "OMR", "JOD", "LBP", "IQD", "RSD", "MKD", "ALL", "BAM",
];

/// `n` crosses over distinct pairs (up to 2556), so every one is its own hash write.
fn batch(n: usize) -> Vec<Envelope<FxEvent>> {
    let ts = "2026-10-30T00:00:00Z".parse().unwrap();
    let source = SourceName::intern("bench").unwrap();
    let currencies: Vec<Currency> = CODES.iter().map(|c| c.parse().unwrap()).collect();
    let pairs = currencies
        .iter()
        .enumerate()
        .flat_map(|(i, a)| currencies[i + 1..].iter().map(move |b| Pair::market(*a, *b)));
    pairs
        .take(n)
        .enumerate()
        .map(|(i, pair)| {
            let bid = Decimal::new(11_000 + i as i64, 4);
            Envelope::unacked(FxEvent::CrossRate(CrossRate {
                pair,
                bid,
                ask: bid + Decimal::new(2, 4),
                ts,
                source,
                via: Currency::USD,
            }))
        })
        .collect()
}

fn redis_sink(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut resources = Resources::default();
    let resource = RedisResourceConfig {
        url: "redis://127.0.0.1:6379/0".into(),
    };
    resources.insert(
        "cache".into(),
        runtime.block_on(resource.build()).expect("Redis on 127.0.0.1:6379"),
    );
    let cx = BuildContext {
        pipeline: "bench".into(),
        stage: "redis".into(),
        resources,
        readiness: Default::default(),
        stages: Default::default(),
        replaces_running: false,
    };
    let mut group = c.benchmark_group("redis_sink");
    group.measurement_time(Duration::from_secs(5));
    for (label, channel) in [
        ("hash+ttl", None),
        ("hash+ttl+publish", Some("fxbench:updates".to_owned())),
    ] {
        let config = RedisConfig {
            resource: "cache".into(),
            key_prefix: "fxbench:".into(),
            ttl: Duration::from_secs(60),
            channel,
            rules_prefix: "fxbench:rules:".into(),
        };
        let Stage::Sink(mut sink) = runtime.block_on(config.build(&cx)).unwrap() else {
            unreachable!("a sink")
        };
        for size in [1usize, 100, 1000, 2500] {
            let events = batch(size);
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(BenchmarkId::new(label, size), &events, |b, events| {
                b.iter(|| runtime.block_on(sink.write(events)).unwrap())
            });
        }
        // The live shape: 146 snapshots' crosses (4088 events over 28 pairs) in one batch;
        // the hash gets each pair's newest, the channel every event.
        let live: Vec<_> = (0..146).flat_map(|_| batch(28)).collect();
        group.throughput(Throughput::Elements(live.len() as u64));
        group.bench_with_input(BenchmarkId::new(label, "4088 over 28 pairs"), &live, |b, events| {
            b.iter(|| runtime.block_on(sink.write(events)).unwrap())
        });
    }
    group.finish();
}

/// Distinct EUR/USD crosses starting at millisecond `from` (every row is new to the table).
fn rows(n: usize, from: i64) -> Vec<Envelope<FxEvent>> {
    let t0: chrono::DateTime<chrono::Utc> = "2026-10-01T00:00:00Z".parse().unwrap();
    let source = SourceName::intern("bench").unwrap();
    let pair: Pair = "EUR/USD".parse().unwrap();
    (0..n)
        .map(|i| {
            let bid = Decimal::new(11_000 + (i % 1000) as i64, 4);
            let ts = t0 + chrono::Duration::milliseconds(from + i as i64);
            Envelope::unacked(FxEvent::CrossRate(CrossRate {
                pair,
                bid,
                ask: bid + Decimal::new(2, 4),
                ts,
                source,
                via: Currency::USD,
            }))
        })
        .collect()
}

fn postgres_sink(c: &mut Criterion) {
    use fxflow_stages::backends::postgres::{migrate, PostgresResourceConfig};
    use fxflow_stages::sinks::postgres;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("fxbench_{}", std::process::id());
    let admin = PostgresResourceConfig {
        url: "postgres://postgres@127.0.0.1:5432/test".into(),
        schema: None,
        pool: Default::default(),
    };
    let config = PostgresResourceConfig {
        schema: Some(schema.clone()),
        ..admin.clone()
    };
    let pool = runtime.block_on(async {
        let admin = admin.connect().await.expect("PostgreSQL on 127.0.0.1:5432");
        for sql in [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.unwrap();
        }
        let pool = config.connect().await.unwrap();
        migrate(&pool).await.unwrap();
        pool
    });
    let mut sink = postgres::sink(pool);
    let mut next = 0i64;
    let mut group = c.benchmark_group("postgres_sink");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(20);
    for size in [1usize, 100, 1000, 5000] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::new("rows", size), |b| {
            b.iter_batched(
                || {
                    next += size as i64;
                    rows(size, next)
                },
                |batch| runtime.block_on(sink.write(&batch)).unwrap(),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, redis_sink, postgres_sink);
criterion_main!(benches);
