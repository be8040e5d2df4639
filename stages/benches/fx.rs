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
            email: None,
            tenant: None,
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

/// Every day of the ECB history.
fn ecb_days() -> Vec<QuoteSnapshot> {
    let text = std::fs::read_to_string(ECB_CSV).unwrap();
    parse_history(&text, &fxflow_stages::fx::currency::majors(), None, None, "ecb")
        .unwrap()
        .days
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    let days = ecb_days();
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
                    fxflow_engine::pipeline_file::load_str("bench.ron", ron, &registry, |_| Some(ECB_CSV.to_owned()))
                        .unwrap();
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
                let spec = fxflow_engine::pipeline_file::load_str("bench.ron", synthetic, &registry, |_| None).unwrap();
                runtime.block_on(async { fxflow_engine::start(spec).await.unwrap().wait().await.unwrap() });
            })
        },
    );
    group.finish();
}

/// A branch that forwards every event as it is (bench only): in the analytics' place, the
/// cost of one more branch alone (a clone of each cross into its channel, a task, the events
/// out to `Null`) — the floor under what any analytics stage can cost.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PassThroughConfig {}

struct PassThrough;

impl fxflow_engine::FunctionTransform<fxflow_stages::fx::FxEvent> for PassThrough {
    fn transform(
        &mut self,
        event: fxflow_stages::fx::FxEvent,
        emit: &mut fxflow_engine::Emit<fxflow_stages::fx::FxEvent>,
    ) {
        emit.push(event);
    }
}

#[fxflow_engine::async_trait]
impl fxflow_engine::StageConfig<fxflow_stages::fx::FxEvent> for PassThroughConfig {
    fn shape(&self) -> fxflow_engine::Shape {
        fxflow_engine::Shape::Transform
    }

    fn accepts(&self) -> fxflow_engine::Kinds {
        fxflow_engine::Kinds::only(&[fxflow_stages::fx::kind::CROSS_RATE])
    }

    fn emits(&self) -> fxflow_engine::Kinds {
        fxflow_engine::Kinds::only(&[fxflow_stages::fx::kind::CROSS_RATE])
    }

    async fn build(
        &self,
        _cx: &fxflow_engine::BuildContext,
    ) -> Result<fxflow_engine::Stage<fxflow_stages::fx::FxEvent>, fxflow_engine::StageError> {
        Ok(fxflow_engine::Stage::Function(Box::new(PassThrough)))
    }
}

/// The seven rules of `pipelines/local.ron`, as RON.
const LOCAL_RULES: &str = r#"
    (id: "eurusd-above-1.15", pair: "EUR/USD", condition: Above(1.15)),
    (id: "eurusd-up-1.10", pair: "EUR/USD", condition: CrossingUp(1.10), trigger: Every(cooldown: "7d", rearm: 0.005)),
    (id: "eurusd-down-1.05", pair: "EUR/USD", condition: CrossingDown(1.05), trigger: Every(cooldown: "7d", rearm: 0.005)),
    (id: "usdjpy-above-155", pair: "USD/JPY", condition: Above(155), trigger: Every(cooldown: "30d", rearm: 2)),
    (id: "gbpjpy-up-200", pair: "GBP/JPY", condition: CrossingUp(200), trigger: Every(cooldown: "14d", rearm: 1)),
    (id: "audusd-drop-3pct", pair: "AUD/USD", condition: PctChange(percent: -3, window: "30d"), trigger: Every(cooldown: "30d", rearm: 1)),
    (id: "chfjpy-above-190", pair: "CHF/JPY", condition: Above(190)),
"#;

/// 1,000 crossing rules per pair (28,000), half up and half down, thresholds evenly spread
/// over ±30% of the pair's price on the replay's first day; `Every` with a 1-day cooldown and
/// a re-arm band of 1% of that price.
fn many_rules(days: &[QuoteSnapshot]) -> String {
    let (crosses, _) = CrossRates::new(None, usize::MAX).compute(&days[0]);
    let mut rules = String::new();
    for cross in &crosses {
        let price = cross.bid;
        for i in 0..1_000i64 {
            let threshold = (price * (Decimal::new(70, 2) + Decimal::new(60 * i, 5))).round_dp(6);
            let condition = if i % 2 == 0 { "CrossingUp" } else { "CrossingDown" };
            rules.push_str(&format!(
                "(id: \"{}-{i}\", pair: \"{}\", condition: {condition}({threshold}), trigger: Every(cooldown: \"1d\", rearm: {})),\n",
                cross.pair,
                cross.pair,
                (price / Decimal::ONE_HUNDRED).round_dp(6)
            ));
        }
    }
    rules
}

/// The in-process pipeline with the analytics beside the alert stage, against the same pipeline
/// without them, and with 28,000 rules instead of 7 — one group, one run. Two inputs: the ECB
/// replay with `local.ron`'s analytics (daily candles, 30-day volatility: one price per pair and
/// window, so every price opens and closes a window in both stages) and the synthetic walk with
/// the analytics worker's (1m/5m/1h/1d candles, 30-day volatility: a window takes many prices).
fn analytics_pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("analytics_pipeline");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    let days = ecb_days();
    let quotes: usize = days.iter().map(|d| d.quotes.len()).sum();
    const ECB: &str = r#""ecb": Replay(path: "${CSV}", speed: AsFastAsPossible),"#;
    const WALK: &str = r#""ecb": Synthetic(rate: 0, count: 50000, seed: 1, start_time: "2026-01-01T00:00:00Z"),"#;
    const LOCAL_ANALYTICS: &str = r#""candles": Candles(inputs: ["cross"], intervals: ["1d"]),
        "volatility": Volatility(inputs: ["cross"], window: "30d", every: "1d", annualise: ReturnsPerYear(252)),"#;
    const WORKER_ANALYTICS: &str = r#""candles": Candles(inputs: ["cross"], intervals: ["1m", "5m", "1h", "1d"]),
        "volatility": Volatility(inputs: ["cross"], window: "30d", every: "1d"),"#;
    // The floor: two branches that only forward the crosses, where the analytics were.
    const PASS_THROUGH: &str = r#""candles": PassThrough(inputs: ["cross"]),
        "volatility": PassThrough(inputs: ["cross"]),"#;
    let ron = |source: &str, rules: &str, analytics: &str, stages: &[&str]| {
        let inputs: Vec<String> = stages.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            r#"Pipeline(name: "bench-analytics", stages: {{
                {source}
                "enrich": Enrich(inputs: ["ecb"]),
                "cross": CrossRate(inputs: ["enrich"]),
                "alert": Alert(inputs: ["cross"], rules: [{rules}]),
                {analytics}
                "null": Null(inputs: [{}]),
            }})"#,
            inputs.join(", ")
        )
    };
    let without = ["alert", "cross"];
    let with = ["alert", "cross", "candles", "volatility"];
    let many = many_rules(&days);
    let mut registry = fxflow_stages::registry();
    registry.stage::<PassThroughConfig>("PassThrough");
    let load = |text: &str| {
        fxflow_engine::pipeline_file::load_str("bench.ron", text, &registry, |_| Some(ECB_CSV.to_owned())).unwrap()
    };
    let started = std::time::Instant::now();
    let _ = load(&ron(ECB, &many, LOCAL_ANALYTICS, &with));
    eprintln!(
        "loading the pipeline file with 28,000 rules takes {:.1?} (inside each iteration below)",
        started.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = fxflow_engine::metrics::install_recorder();
    let variants = [
        (
            format!("ECB, 7 rules, {quotes} quotes"),
            ron(ECB, LOCAL_RULES, "", &without),
            quotes,
        ),
        (
            format!("ECB, 7 rules + two pass-through branches (the floor), {quotes} quotes"),
            ron(ECB, LOCAL_RULES, PASS_THROUGH, &with),
            quotes,
        ),
        (
            format!("ECB, 7 rules + daily candles + volatility, {quotes} quotes"),
            ron(ECB, LOCAL_RULES, LOCAL_ANALYTICS, &with),
            quotes,
        ),
        (
            format!("ECB, 28,000 rules + daily candles + volatility, {quotes} quotes"),
            ron(ECB, &many, LOCAL_ANALYTICS, &with),
            quotes,
        ),
        (
            "synthetic, 7 rules, 350000 quotes".to_owned(),
            ron(WALK, LOCAL_RULES, "", &without),
            350_000,
        ),
        (
            "synthetic, 7 rules + two pass-through branches (the floor), 350000 quotes".to_owned(),
            ron(WALK, LOCAL_RULES, PASS_THROUGH, &with),
            350_000,
        ),
        (
            "synthetic, 7 rules + 1m/5m/1h/1d candles + volatility, 350000 quotes".to_owned(),
            ron(WALK, LOCAL_RULES, WORKER_ANALYTICS, &with),
            350_000,
        ),
    ];
    for (name, text, quotes) in &variants {
        // One run first: how often the rules fired, and each stage's share of the work.
        let sum = |rendered: &str, metric: &str, stage: &str| {
            fxflow_engine::testkit::counter_value(
                rendered,
                metric,
                &[("pipeline", "bench-analytics"), ("stage", stage)],
            )
        };
        let before = metrics.render();
        runtime.block_on(async { fxflow_engine::start(load(text)).await.unwrap().wait().await.unwrap() });
        let after = metrics.render();
        let firings =
            sum(&after, "fxflow_alerts_fired_total", "alert") - sum(&before, "fxflow_alerts_fired_total", "alert");
        let busy: Vec<String> = ["cross", "alert", "candles", "volatility"]
            .iter()
            .map(|stage| {
                let seconds = sum(&after, "fxflow_stage_processing_seconds_sum", stage)
                    - sum(&before, "fxflow_stage_processing_seconds_sum", stage);
                format!("{stage} {:.1} ms", seconds * 1e3)
            })
            .collect();
        eprintln!("{name}: {firings} firings; busy {}", busy.join(", "));
        group.throughput(Throughput::Elements(*quotes as u64));
        group.bench_function(name.as_str(), |b| {
            b.iter(|| runtime.block_on(async { fxflow_engine::start(load(text)).await.unwrap().wait().await.unwrap() }))
        });
    }
    group.finish();
}

criterion_group!(benches, cross_rates, alert_ticks, pipeline, analytics_pipeline);
criterion_main!(benches);
