//! Every cross of every ECB day, through the real pipeline, equals exact-decimal
//! triangulation computed independently from the CSV text.

use std::collections::HashMap;

use fxflow_stages::fx::{FxEvent, Pair};
use rust_decimal::Decimal;

const CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ecb-eurofxref-hist.csv");
const MAJORS: [&str; 8] = ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"];

/// date → currency → rate (units per EUR), read with nothing but `str::split`.
fn expected_rates() -> HashMap<String, HashMap<String, Decimal>> {
    let text = std::fs::read_to_string(CSV).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let mut rates: HashMap<String, Decimal> = header
                .iter()
                .zip(&cells)
                .skip(1)
                .filter(|(c, v)| MAJORS.contains(c) && !v.is_empty() && **v != "N/A")
                .map(|(c, v)| (c.to_string(), v.parse().unwrap()))
                .collect();
            rates.insert("EUR".into(), Decimal::ONE);
            (cells[0].to_owned(), rates)
        })
        .collect()
}

#[tokio::test]
async fn every_cross_of_every_day_is_exact_triangulation() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("crosses.jsonl");
    let ron = r#"Pipeline(name: "ecb-history", stages: {
        "ecb": Replay(path: "${CSV}"),
        "enrich": Enrich(inputs: ["ecb"]),
        "cross": CrossRate(inputs: ["enrich"]),
        "file": JsonlFile(inputs: ["cross"], path: "${OUT}"),
        "dead": JsonlFile(inputs: ["ecb.errors", "enrich.errors", "cross.errors"], path: "${OUT}.dead"),
    })"#;
    let registry = fxflow_stages::registry();
    let out_path = path.display().to_string();
    let spec = fxflow_engine::pipeline_file::load_str("ecb.ron", ron, &registry, |name| match name {
        "CSV" => Some(CSV.to_owned()),
        "OUT" => Some(out_path.clone()),
        _ => None,
    })
    .unwrap();
    fxflow_engine::start(spec).await.unwrap().wait().await.unwrap();

    let expected = expected_rates();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut per_day: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let FxEvent::CrossRate(cross) = serde_json::from_str(line).unwrap() else {
            panic!("only crosses: {line}")
        };
        let day = cross.ts.date_naive().to_string();
        let rates = &expected[&day];
        let (base, quote) = (cross.pair.base.code(), cross.pair.quote.code());
        // EUR/X = x; X/Y = (EUR/Y) / (EUR/X): one exact decimal division.
        let want = if base == "EUR" {
            rates[quote]
        } else {
            rates[quote] / rates[base]
        };
        assert_eq!((cross.bid, cross.ask), (want, want), "{day} {}", cross.pair);
        assert_eq!(
            cross.pair,
            Pair::market(cross.pair.base, cross.pair.quote),
            "market convention"
        );
        *per_day.entry(day).or_default() += 1;
    }
    assert_eq!(per_day.len(), expected.len(), "every day of the file");
    assert!(per_day.values().all(|n| *n == 28), "28 crosses a day");
    assert_eq!(
        std::fs::read_to_string(format!("{out_path}.dead")).unwrap(),
        "",
        "no dead letters"
    );
}
