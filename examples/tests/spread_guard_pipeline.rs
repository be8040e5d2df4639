//! Runs `pipelines/spread-guard.ron` end to end with the extended registry and
//! checks what the guard let through and what it dead-lettered.

use std::path::Path;

use fxflow_engine::pipeline_file::load_str;
use fxflow_examples::spread_guard::{reason, spread_pips};
use fxflow_stages::fx::{Currency, FxEvent};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// `max_pips` of the guard in the pipeline file.
const MAX_PIPS: Decimal = dec!(2);
/// 50 snapshots of 8 currencies, 28 crosses each.
const CROSSES: usize = 50 * 28;

fn read_events(path: &Path) -> Vec<FxEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn the_guard_splits_crosses_by_spread() {
    let out = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/spread-guard.ron");
    let text = std::fs::read_to_string(&file).unwrap();
    let out_dir = out.path().to_str().unwrap().to_owned();
    let spec = load_str(
        &file.display().to_string(),
        &text,
        &fxflow_examples::registry(),
        |var| (var == "FXFLOW_EXAMPLES_OUT").then(|| out_dir.clone()),
    )
    .unwrap_or_else(|problems| panic!("{problems}"));

    fxflow_engine::start(spec).await.unwrap().wait().await.unwrap();

    let tight = read_events(&out.path().join("tight-crosses.jsonl"));
    let wide = read_events(&out.path().join("wide-crosses.jsonl"));
    let others = read_events(&out.path().join("dead-letters.jsonl"));
    assert!(others.is_empty(), "nothing upstream of the guard fails: {others:?}");
    assert_eq!(
        tight.len() + wide.len(),
        CROSSES,
        "every cross is either passed or dead-lettered"
    );

    let mut tight_pairs = std::collections::BTreeSet::new();
    for event in &tight {
        let FxEvent::CrossRate(c) = event else {
            panic!("only crosses pass: {event:?}")
        };
        let spread = spread_pips(c.pair, c.bid, c.ask);
        assert!(spread <= MAX_PIPS, "{} passed with {spread} pips", c.pair);
        tight_pairs.insert(c.pair.to_string());
    }
    let mut wide_pairs = std::collections::BTreeSet::new();
    for event in &wide {
        let FxEvent::DeadLetter(letter) = event else {
            panic!("the error output carries dead letters: {event:?}")
        };
        assert_eq!(
            (letter.stage.as_str(), letter.reason.as_str()),
            ("guard", reason::WIDE_SPREAD)
        );
        let Some(FxEvent::CrossRate(c)) = letter.event.as_deref() else {
            panic!("the dead letter keeps the cross: {letter:?}")
        };
        let spread = spread_pips(c.pair, c.bid, c.ask);
        assert!(spread > MAX_PIPS, "{} rejected with only {spread} pips", c.pair);
        assert!(letter.error.contains(&c.pair.to_string()), "{}", letter.error);
        wide_pairs.insert(c.pair.to_string());
    }

    // The quoted pairs (0.8 pips each), EUR/GBP (≈ 1.2) and AUD/JPY (≈ 1.8) pass;
    // EUR/JPY (≈ 2.15), GBP/JPY (≈ 2.3) and AUD/NZD (≈ 3.2) are too wide.
    for pair in ["EUR/USD", "USD/JPY", "AUD/USD", "EUR/GBP", "AUD/JPY"] {
        assert!(tight_pairs.contains(pair), "{pair} should pass: {tight_pairs:?}");
    }
    for pair in ["EUR/JPY", "GBP/JPY", "AUD/NZD"] {
        assert!(wide_pairs.contains(pair), "{pair} should be rejected: {wide_pairs:?}");
    }
    // Pairs quoted against USD pass through CrossRate untouched: exactly the feed's spread.
    for event in &tight {
        if let FxEvent::CrossRate(c) = event {
            if c.pair.involves(Currency::USD) {
                assert_eq!(spread_pips(c.pair, c.bid, c.ask), dec!(0.8), "{}", c.pair);
            }
        }
    }
}
