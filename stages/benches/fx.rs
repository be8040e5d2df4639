//! FX benchmarks: cross rates, the alert rule book, and the in-process pipeline.
//!
//! Run: `cargo bench -p fxflow-stages --bench fx` (figures in BENCHMARKS.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fxflow_stages::fx::{AlertRule, Condition, Currency, Pair, PriceField, Quote, QuoteSnapshot, SourceName, Trigger};
use fxflow_stages::sources::replay::parse_history;
use fxflow_stages::transforms::alert::rules::{RuleBook, Sample};
use fxflow_stages::transforms::cross_rate::CrossRates;
use rust_decimal::Decimal;

const ECB_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ecb-eurofxref-hist.csv");

/// The ECB day 2026-10-30 for the eight majors (mid-only, EUR base).
fn ecb_day() -> QuoteSnapshot {
    let text = std::fs::read_to_string(ECB_CSV).expect("ECB history");
    let day = "2026-10-30".parse().ok();
    let history = parse_history(&text, &fxflow_stages::fx::currency::majors(), day, day, "ecb").expect("parses");
    history.days.into_iter().next().expect("the day exists")
}

/// A two-sided USD-based snapshot of `n` currencies (USD plus n-1 others).
fn usd_snapshot(n: usize) -> QuoteSnapshot {
    const CODES: [&str; 63] = [
        "EUR", "GBP", "AUD", "NZD", "CAD", "CHF", "JPY", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "TRY", "ZAR", "MXN",
        "SGD", "HKD", "CNY", "INR", "KRW", "BRL", "ILS", "THB", "MYR", "IDR", "PHP", "ISK", "RON", "BGN", "CLP", "COP",
        "PEN", "SAR", "AED", "QAR", "KWD", "EGP", "NGN", "KES", "MAD", "TND", "UAH", "KZT", "GEL", "AMD", "AZN", "BDT",
        "PKR", "LKR", "VND", "TWD", "ARS", "UYU", "PYG", "BOB", "CRC", "DOP", "GTQ", "HNL", "JMD", "TTD", "BHD",
    ];
    let ts = "2026-10-30T00:00:00Z".parse().unwrap();
    let source = SourceName::intern("bench").unwrap();
    let usd = Currency::USD;
    let quotes = CODES[..n - 1]
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let pair = Pair::market(usd, code.parse().unwrap());
            let bid = Decimal::new(10_000 + 731 * i as i64, 4);
            Quote {
                pair,
                bid,
                ask: bid + Decimal::new(2, 4),
                ts,
                source,
                enrichment: None,
            }
        })
        .collect();
    QuoteSnapshot {
        source,
        ts,
        base: usd,
        quotes,
    }
}

fn cross_rates(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_rate");
    group.measurement_time(Duration::from_secs(3));
    let sequential = CrossRates::new(None, usize::MAX);
    let ecb = ecb_day();
    group.throughput(Throughput::Elements(28));
    group.bench_function("28 crosses from 8 ECB quotes (mid only)", |b| {
        b.iter(|| black_box(sequential.compute(black_box(&ecb))))
    });
    let two_sided = usd_snapshot(8);
    group.bench_function("28 crosses from 8 two-sided quotes", |b| {
        b.iter(|| black_box(sequential.compute(black_box(&two_sided))))
    });
    let parallel = CrossRates::new(None, 0);
    for n in [8usize, 16, 24, 32, 40, 64] {
        let snapshot = usd_snapshot(n);
        group.throughput(Throughput::Elements((n * (n - 1) / 2) as u64));
        group.bench_with_input(BenchmarkId::new("sequential", n), &snapshot, |b, s| {
            b.iter(|| black_box(sequential.compute(s)))
        });
        group.bench_with_input(BenchmarkId::new("rayon", n), &snapshot, |b, s| {
            b.iter(|| black_box(parallel.compute(s)))
        });
    }
    group.finish();
}

/// `total` CrossingUp rules on EUR/USD with thresholds evenly over 1.0000..2.0000,
/// re-arming at once (trigger Every, no cooldown, no band). A tick pair
/// 1.50000 → 1.50000 + step fires every threshold in between and re-arms them
/// on the way back, so `fired` per up-tick is set by `step`, not by `total`.
fn rule_book(total: usize) -> RuleBook {
    let mut book = RuleBook::new();
    let pair: Pair = "EUR/USD".parse().unwrap();
    for i in 0..total {
        let threshold = Decimal::ONE + Decimal::from(i as u64) / Decimal::from(total as u64);
        let rule = AlertRule {
            id: format!("r{i}"),
            pair,
            condition: Condition::CrossingUp(threshold),
            trigger: Trigger::Every {
                cooldown: Duration::ZERO,
                rearm: Decimal::ZERO,
            },
            price: PriceField::Mid,
            expires: None,
            webhook: None,
        };
        book.add(&rule).expect("valid rule");
    }
    book
}

fn alert_ticks(c: &mut Criterion) {
    let mut group = c.benchmark_group("alert_tick");
    group.measurement_time(Duration::from_secs(3));
    let pair: Pair = "EUR/USD".parse().unwrap();
    let source = SourceName::intern("bench").unwrap();
    let low = Decimal::new(150_000_003, 8); // between two thresholds, so nothing sits exactly on it
    for total in [1_000usize, 1_000_000] {
        let mut book = rule_book(total);
        let spacing = Decimal::ONE / Decimal::from(total as u64);
        for fired in [0u64, 1, 10, 100] {
            // Up-ticks cross `fired` thresholds; 0 means a move that crosses none.
            let high = if fired == 0 {
                low + spacing / Decimal::from(10)
            } else {
                low + spacing * Decimal::from(fired)
            };
            let mut ts: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
            let mut up = false;
            group.bench_function(
                BenchmarkId::new(format!("{total} rules"), format!("{fired} fired per up-tick")),
                |b| {
                    b.iter(|| {
                        up = !up;
                        ts += chrono::Duration::milliseconds(1);
                        let price = if up { high } else { low };
                        let sample = Sample {
                            pair,
                            bid: price,
                            ask: price,
                            ts,
                            source,
                        };
                        black_box(book.on_sample(sample))
                    })
                },
            );
        }
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    let text = std::fs::read_to_string(ECB_CSV).unwrap();
    let days = parse_history(&text, &fxflow_stages::fx::currency::majors(), None, None, "ecb")
        .unwrap()
        .days;
    let quotes: usize = days.iter().map(|d| d.quotes.len()).sum();
    let ron = r#"Pipeline(name: "bench", stages: {
        "ecb": Replay(path: "${CSV}", speed: AsFastAsPossible),
        "enrich": Enrich(inputs: ["ecb"]),
        "cross": CrossRate(inputs: ["enrich"]),
        "alert": Alert(inputs: ["cross"], rules: [
            (id: "a", pair: "EUR/USD", condition: CrossingUp(1.10), trigger: Every(rearm: 0.01)),
            (id: "b", pair: "USD/JPY", condition: Above(150), trigger: Every(cooldown: "30d", rearm: 1)),
            (id: "c", pair: "GBP/JPY", condition: PctChange(percent: -3, window: "30d"), trigger: Every(rearm: 1)),
        ]),
        "null": Null(inputs: ["alert", "cross"]),
    })"#;
    let registry = fxflow_stages::registry();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    group.throughput(Throughput::Elements(quotes as u64));
    group.bench_function(
        format!("replay→enrich→cross→alert→null, {quotes} ECB quotes"),
        |b| {
            b.iter(|| {
                let spec =
                    fxflow_engine::spec::load_str("bench.ron", ron, &registry, |_| Some(ECB_CSV.to_owned())).unwrap();
                runtime.block_on(async { fxflow_engine::start(spec).await.unwrap().wait().await.unwrap() });
            })
        },
    );
    let synthetic = r#"Pipeline(name: "bench-synthetic", stages: {
        "walk": Synthetic(rate: 0, count: 50000, seed: 1, start_time: "2026-01-01T00:00:00Z"),
        "enrich": Enrich(inputs: ["walk"]),
        "cross": CrossRate(inputs: ["enrich"]),
        "alert": Alert(inputs: ["cross"], rules: [
            (id: "a", pair: "EUR/USD", condition: CrossingUp(1.12), trigger: Every(rearm: 0.001)),
            (id: "b", pair: "USD/JPY", condition: Above(158), trigger: Every(cooldown: "1s", rearm: 0.1)),
        ]),
        "null": Null(inputs: ["alert", "cross"]),
    })"#;
    group.throughput(Throughput::Elements(50_000 * 7));
    group.bench_function(
        "synthetic→enrich→cross→alert→null, 350000 two-sided quotes",
        |b| {
            b.iter(|| {
                let spec = fxflow_engine::spec::load_str("bench.ron", synthetic, &registry, |_| None).unwrap();
                runtime.block_on(async { fxflow_engine::start(spec).await.unwrap().wait().await.unwrap() });
            })
        },
    );
    group.finish();
}

criterion_group!(benches, cross_rates, alert_ticks, pipeline);
criterion_main!(benches);
