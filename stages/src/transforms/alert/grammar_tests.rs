//! The alert grammar beyond thresholds — `Crossing`, the channels, `Moving…`, and the
//! per-bar triggers — at its edges, and against a plain reference implementation over
//! random walks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::rules::tests::rule;
use super::rules::{PairRules, RuleBook, Sample};
use crate::fx::{AlertFired, AlertRule, Channel, Condition, Lookback, SourceName, Trigger};

fn t0() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// An EUR/USD sample with mid `price`, `seconds` after 2026-01-01 (a multiple of every bar).
fn at(seconds: i64, price: Decimal) -> Sample {
    Sample {
        pair: "EUR/USD".parse().unwrap(),
        bid: price,
        ask: price,
        ts: t0() + chrono::Duration::seconds(seconds),
        source: SourceName::intern("t").unwrap(),
    }
}

fn every() -> Trigger {
    Trigger::Every {
        cooldown: Duration::ZERO,
        rearm: Decimal::ZERO,
    }
}

fn channel(low: Decimal, high: Decimal) -> Channel {
    Channel { low, high }
}

/// `EnteringChannel` etc. of a channel.
fn entering(c: Channel) -> Condition {
    Condition::EnteringChannel {
        low: c.low,
        high: c.high,
    }
}
fn exiting(c: Channel) -> Condition {
    Condition::ExitingChannel {
        low: c.low,
        high: c.high,
    }
}
fn inside_of(c: Channel) -> Condition {
    Condition::InsideChannel {
        low: c.low,
        high: c.high,
    }
}
fn outside_of(c: Channel) -> Condition {
    Condition::OutsideChannel {
        low: c.low,
        high: c.high,
    }
}

/// Feed `prices` at one-second steps; firings as `id@step`.
fn steps(book: &mut RuleBook, prices: &[Decimal]) -> Vec<String> {
    let mut fired: Vec<String> = Vec::new();
    for (i, p) in prices.iter().enumerate() {
        let mut ids: Vec<String> = book
            .on_sample(at(i as i64, *p))
            .iter()
            .map(|f| format!("{}@{i}", f.rule_id))
            .collect();
        ids.sort();
        fired.extend(ids);
    }
    fired
}

fn book_of(rules: &[AlertRule]) -> RuleBook {
    let mut book = RuleBook::new();
    for rule in rules {
        book.add(rule).unwrap();
    }
    book
}

#[test]
fn crossing_fires_either_way_and_counts_reaching_the_threshold() {
    let mut book = book_of(&[rule("x", Condition::Crossing(dec!(1.10)), every())]);
    // Reaching 1.10 from below crosses; leaving it does not; reaching it from above
    // crosses; a gap over it crosses.
    let prices = [dec!(1.09), dec!(1.10), dec!(1.11), dec!(1.10), dec!(1.09), dec!(1.12)];
    assert_eq!(steps(&mut book, &prices), ["x@1", "x@3", "x@5"]);
}

#[test]
fn channels_include_their_bounds_and_a_gap_through_enters_nothing() {
    let c = channel(dec!(1.08), dec!(1.10));
    let mut book = book_of(&[
        rule("enter", entering(c), every()),
        rule("exit", exiting(c), every()),
        rule("inside", inside_of(c), every()),
        rule("outside", outside_of(c), every()),
    ]);
    // 1.08 is inside; 1.12 → 1.07 jumps across the channel; 1.10 is inside again.
    let prices = [
        dec!(1.07),
        dec!(1.08),
        dec!(1.09),
        dec!(1.11),
        dec!(1.12),
        dec!(1.07),
        dec!(1.10),
    ];
    assert_eq!(
        steps(&mut book, &prices),
        [
            "outside@0",
            "enter@1",
            "inside@1",
            "exit@3",
            "outside@3",
            "enter@6",
            "inside@6"
        ]
    );
}

#[test]
fn a_channel_state_rule_fires_at_creation_when_it_already_holds() {
    let mut book = RuleBook::new();
    book.on_sample(at(0, dec!(1.09)));
    let fired = book
        .add(&rule("in", inside_of(channel(dec!(1.08), dec!(1.10))), Trigger::Once))
        .unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].value, dec!(1.09));
    // A moment (entering) does not fire at creation.
    let fired = book
        .add(&rule("enter", entering(channel(dec!(1.08), dec!(1.10))), Trigger::Once))
        .unwrap();
    assert!(fired.is_empty());
}

#[test]
fn moving_over_bars_compares_with_the_sample_n_back_and_equal_counts() {
    let mut book = book_of(&[rule(
        "up",
        Condition::MovingUp {
            amount: dec!(0.02),
            over: Lookback::Bars(2),
        },
        every(),
    )]);
    let prices = [dec!(1.00), dec!(1.01), dec!(1.02), dec!(1.02), dec!(1.05), dec!(1.03)];
    let fired = steps(&mut book, &prices);
    assert_eq!(
        fired,
        ["up@2", "up@4"],
        "1.02 − 1.00 = 0.02 fires; 1.05 − 1.02 fires again"
    );
}

#[test]
fn moving_down_percent_over_a_window_reports_the_reference_price() {
    let mut book = book_of(&[rule(
        "fall",
        Condition::MovingDownPercent {
            percent: dec!(2),
            over: Lookback::Window(Duration::from_secs(2)),
        },
        every(),
    )]);
    let mut fired = Vec::new();
    for (i, p) in [dec!(1.00), dec!(0.99), dec!(0.98), dec!(0.98), dec!(0.97)]
        .iter()
        .enumerate()
    {
        fired.extend(book.on_sample(at(i as i64, *p)));
    }
    assert_eq!(fired.len(), 1, "exactly 2% at step 2, then less than 2% within any 2 s");
    assert_eq!((fired[0].value, fired[0].previous), (dec!(0.98), Some(dec!(1.00))));
    assert_eq!(fired[0].ts, t0() + chrono::Duration::seconds(2));
}

#[test]
fn once_per_bar_fires_at_most_once_in_each_bar() {
    let mut book = book_of(&[rule(
        "hourly",
        Condition::Above(dec!(1.10)),
        Trigger::OncePerBar(Duration::from_secs(10)),
    )]);
    // Above all the time for 25 s, except at 10..=12: the second bar fires at 13.
    let prices: Vec<Decimal> = (0..25)
        .map(|i| if (10..=12).contains(&i) { dec!(1.09) } else { dec!(1.11) })
        .collect();
    assert_eq!(steps(&mut book, &prices), ["hourly@0", "hourly@13", "hourly@20"]);
}

#[test]
fn on_bar_close_judges_the_close_and_fires_at_the_bar_end_even_for_a_one_tick_bar() {
    let mut book = book_of(&[
        rule(
            "above",
            Condition::Above(dec!(1.10)),
            Trigger::OnBarClose(Duration::from_secs(10)),
        ),
        rule(
            "up",
            Condition::MovingUp {
                amount: dec!(0.03),
                over: Lookback::Bars(1),
            },
            Trigger::OnBarClose(Duration::from_secs(10)),
        ),
    ]);
    let mut fired: Vec<AlertFired> = Vec::new();
    for (s, p) in [
        (0, dec!(1.09)),
        (5, dec!(1.11)),
        (9, dec!(1.11)),  // [0, 10) closes at 1.11 …
        (12, dec!(1.09)), // … when this arrives: `above` fires, stamped 10 s
        (15, dec!(1.13)),
        (19, dec!(1.09)), // [10, 20) closes at 1.09: nothing
        (8, dec!(1.50)),  // late, for a closed bar: ignored
        (31, dec!(1.12)), // [20, 30) had no sample: no bar; [30, 40) has one tick
        (45, dec!(1.08)), // closes [30, 40) at 1.12: above, and up 0.03 from the last close
    ] {
        fired.extend(book.on_sample(at(s, p)));
    }
    let got: Vec<(String, i64, Decimal, Option<Decimal>)> = fired
        .iter()
        .map(|f| (f.rule_id.to_string(), (f.ts - t0()).num_seconds(), f.value, f.previous))
        .collect();
    assert_eq!(
        got,
        [
            ("above".to_owned(), 10, dec!(1.11), None),
            ("above".to_owned(), 40, dec!(1.12), Some(dec!(1.09))),
            ("up".to_owned(), 40, dec!(1.12), Some(dec!(1.09))),
        ]
    );
}

#[test]
fn an_open_bar_and_the_bars_lookback_survive_a_save_and_restore() {
    let rules = [
        rule(
            "close",
            Condition::MovingUp {
                amount: dec!(0.02),
                over: Lookback::Bars(2),
            },
            Trigger::OnBarClose(Duration::from_secs(10)),
        ),
        rule(
            "bars",
            Condition::MovingDown {
                amount: dec!(0.02),
                over: Lookback::Bars(3),
            },
            every(),
        ),
    ];
    let walk: Vec<Decimal> = (0..120)
        .map(|i: i64| dec!(1.10) + Decimal::new(((i * 37) % 11) - 5, 2))
        .collect();
    let run = |book: &mut RuleBook, range: std::ops::Range<usize>| -> Vec<String> {
        range
            .flat_map(|i| {
                book.on_sample(at(i as i64 * 3, walk[i]))
                    .into_iter()
                    .map(move |f| format!("{}@{i}", f.rule_id))
            })
            .collect()
    };
    let mut straight = book_of(&rules);
    let expected = run(&mut straight, 0..120);
    assert!(expected.len() > 4, "the walk fires both rules: {expected:?}");

    let mut first = book_of(&rules);
    let mut fired = run(&mut first, 0..47);
    let pair = "EUR/USD".parse().unwrap();
    let saved: PairRules = serde_json::from_str(&serde_json::to_string(&first.export(pair).unwrap()).unwrap()).unwrap();
    let mut second = book_of(&rules);
    second.import(pair, saved);
    fired.extend(run(&mut second, 47..120));
    assert_eq!(fired, expected);
}

#[test]
fn rules_and_state_saved_before_the_new_grammar_still_load() {
    // A rule and a pair state as the previous release wrote them (no `bar`, no `recent`).
    let old_rule = r#"{"id":"r","pair":"EUR/USD","condition":{"PctChange":{"percent":"-2","window":"5s"}},
        "trigger":{"Every":{"cooldown":"3s","rearm":"0.5"}},"price":"mid","expires":null}"#;
    let rule: AlertRule = serde_json::from_str(old_rule).unwrap();
    let old_state = r#"{"books":[{"field":"mid","last":["2026-01-01T00:00:04Z","1.07"],
        "history":[["2026-01-01T00:00:00Z","1.10"],["2026-01-01T00:00:04Z","1.07"]],"returns":[],
        "newest":[["t","2026-01-01T00:00:04Z"]]}],
        "rules":[],"retired":[]}"#;
    let state: PairRules = serde_json::from_str(old_state).unwrap();
    let mut book = book_of(&[rule]);
    book.import("EUR/USD".parse().unwrap(), state);
    // 1.10 → 1.078 within 5 s is −2%: the restored window is what it measures against.
    let fired = book.on_sample(at(5, dec!(1.078)));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].previous, Some(dec!(1.10)));
}

#[test]
fn invalid_new_rules_are_refused_with_the_reason() {
    let mut book = RuleBook::new();
    for (condition, trigger, reason) in [
        (entering(channel(dec!(1.10), dec!(1.10))), Trigger::Once, "below high"),
        (
            Condition::MovingUp {
                amount: dec!(0.01),
                over: Lookback::Bars(0),
            },
            Trigger::Once,
            "at least 1 bar",
        ),
        (
            Condition::MovingDownPercent {
                percent: dec!(-1),
                over: Lookback::Bars(2),
            },
            Trigger::Once,
            "positive",
        ),
        (
            Condition::Crossing(dec!(1.1)),
            Trigger::OnBarClose(Duration::ZERO),
            "longer than zero",
        ),
    ] {
        let error = book.add(&rule("bad", condition, trigger)).unwrap_err().to_string();
        assert!(error.contains(reason), "{error}");
    }
}

// ---- The property test: the book against a plain reference -------------------------

#[derive(Debug, Clone)]
enum Cadence {
    Once,
    Every,
    PerBar,
    OnClose,
}

const BAR: i64 = 10;

/// Whether `condition` holds at index `i` of `series` (ts, price), and its re-arm margin:
/// written plainly from the documented meaning, looking at the whole series each time.
fn reference_judge(condition: &Condition, series: &[(i64, Decimal)], i: usize) -> Option<(bool, Decimal)> {
    let p = series[i].1;
    let prev = i.checked_sub(1).map(|j| series[j].1);
    let inside = |c: &Channel, x: Decimal| c.low <= x && x <= c.high;
    let reference = |over: &Lookback| -> Option<Decimal> {
        match over {
            Lookback::Bars(n) => i.checked_sub(*n as usize).map(|j| series[j].1),
            Lookback::Window(w) => {
                let from = series[i].0 - w.as_secs() as i64;
                series[..=i].iter().find(|(t, _)| *t >= from).map(|(_, x)| *x)
            }
        }
    };
    Some(match condition {
        Condition::Above(t) => (p > *t, t - p),
        Condition::Crossing(t) => {
            let up = prev.is_some_and(|q| q < *t && p >= *t);
            let down = prev.is_some_and(|q| q > *t && p <= *t);
            (up || down, (p - t).abs())
        }
        Condition::EnteringChannel { .. } => {
            let c = condition.channel().unwrap();
            (
                prev.is_some_and(|q| !inside(&c, q)) && inside(&c, p),
                (c.low - p).max(p - c.high),
            )
        }
        Condition::ExitingChannel { .. } => {
            let c = condition.channel().unwrap();
            (
                prev.is_some_and(|q| inside(&c, q)) && !inside(&c, p),
                (p - c.low).min(c.high - p),
            )
        }
        Condition::InsideChannel { .. } => {
            let c = condition.channel().unwrap();
            (inside(&c, p), (c.low - p).max(p - c.high))
        }
        Condition::OutsideChannel { .. } => {
            let c = condition.channel().unwrap();
            (!inside(&c, p), (p - c.low).min(c.high - p))
        }
        Condition::MovingUp { amount, over } => {
            let r = reference(over)?;
            (p - r >= *amount, amount - (p - r))
        }
        Condition::MovingDown { amount, over } => {
            let r = reference(over)?;
            (r - p >= *amount, amount - (r - p))
        }
        Condition::MovingUpPercent { percent, over } => {
            let r = reference(over)?;
            let moved = (p - r) / r * dec!(100);
            ((p - r) * dec!(100) >= percent * r, percent - moved)
        }
        Condition::MovingDownPercent { percent, over } => {
            let r = reference(over)?;
            let moved = (r - p) / r * dec!(100);
            ((r - p) * dec!(100) >= percent * r, percent - moved)
        }
        _ => unreachable!("not generated"),
    })
}

/// The firings (ts, value) of one rule over the walk, by the reference.
fn reference_firings(condition: &Condition, cadence: &Cadence, walk: &[(i64, Decimal)]) -> Vec<(i64, Decimal)> {
    let mut out = Vec::new();
    match cadence {
        Cadence::OnClose => {
            // Closes of the bars that had samples, stamped with the bar's end, each known
            // once a sample of a later bar arrived.
            let mut closes: Vec<(i64, Decimal)> = Vec::new();
            for w in walk.windows(2) {
                if w[1].0.div_euclid(BAR) != w[0].0.div_euclid(BAR) {
                    closes.push((w[0].0.div_euclid(BAR) * BAR + BAR, w[0].1));
                }
            }
            for i in 0..closes.len() {
                if let Some((true, _)) = reference_judge(condition, &closes, i) {
                    out.push(closes[i]);
                }
            }
        }
        _ => {
            let mut armed = true;
            let mut last_bar: Option<i64> = None;
            for i in 0..walk.len() {
                let Some((holds, margin)) = reference_judge(condition, walk, i) else {
                    continue;
                };
                match cadence {
                    Cadence::Once if holds => {
                        out.push(walk[i]);
                        break;
                    }
                    Cadence::Every if armed && holds => {
                        out.push(walk[i]);
                        armed = false;
                    }
                    Cadence::Every if !armed && !holds && margin >= Decimal::ZERO => armed = true,
                    Cadence::PerBar if holds && last_bar != Some(walk[i].0.div_euclid(BAR)) => {
                        out.push(walk[i]);
                        last_bar = Some(walk[i].0.div_euclid(BAR));
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

fn condition_strategy() -> impl Strategy<Value = Condition> {
    let level = (10_800i64..11_200).prop_map(|n| Decimal::new(n, 4));
    let size = (1i64..60).prop_map(|n| Decimal::new(n, 4));
    let pct = (1i64..60).prop_map(|n| Decimal::new(n, 2));
    let over = prop_oneof![
        (1u32..8).prop_map(Lookback::Bars),
        (1u64..30).prop_map(|s| Lookback::Window(Duration::from_secs(s))),
    ];
    let chan = (10_800i64..11_150, 1i64..60).prop_map(|(lo, w)| Channel {
        low: Decimal::new(lo, 4),
        high: Decimal::new(lo + w, 4),
    });
    prop_oneof![
        level.clone().prop_map(Condition::Above),
        level.prop_map(Condition::Crossing),
        chan.clone().prop_map(entering),
        chan.clone().prop_map(exiting),
        chan.clone().prop_map(inside_of),
        chan.prop_map(outside_of),
        (size.clone(), over.clone()).prop_map(|(amount, over)| Condition::MovingUp { amount, over }),
        (size, over.clone()).prop_map(|(amount, over)| Condition::MovingDown { amount, over }),
        (pct.clone(), over.clone()).prop_map(|(percent, over)| Condition::MovingUpPercent { percent, over }),
        (pct, over).prop_map(|(percent, over)| Condition::MovingDownPercent { percent, over }),
    ]
}

fn cadence_strategy() -> impl Strategy<Value = Cadence> {
    prop_oneof![
        Just(Cadence::Once),
        Just(Cadence::Every),
        Just(Cadence::PerBar),
        Just(Cadence::OnClose)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every rule of a random set fires, over a random walk with random gaps, exactly
    /// where the plain reference says: same instants, same values.
    #[test]
    fn the_book_fires_as_the_reference_over_random_walks(
        rules in prop::collection::vec((condition_strategy(), cadence_strategy()), 1..12),
        moves in prop::collection::vec((-30i64..=30, 1i64..7, 0u32..4), 20..160),
    ) {
        let mut walk = Vec::new();
        let (mut ts, mut price) = (0i64, dec!(1.1000));
        for (step, gap, extra_places) in moves {
            walk.push((ts, price));
            ts += gap;
            price = (price + Decimal::new(step, 4)).max(dec!(1.0500));
            // The same value at 4 to 7 places: the book widens its constants to the
            // samples' scale (`Kind::at_scale`), and must judge alike at any scale.
            price.rescale(4 + extra_places);
        }
        let mut book = RuleBook::new();
        for (i, (condition, cadence)) in rules.iter().enumerate() {
            let trigger = match cadence {
                Cadence::Once => Trigger::Once,
                Cadence::Every => every(),
                Cadence::PerBar => Trigger::OncePerBar(Duration::from_secs(BAR as u64)),
                Cadence::OnClose => Trigger::OnBarClose(Duration::from_secs(BAR as u64)),
            };
            book.add(&rule(&format!("r{i}"), condition.clone(), trigger)).unwrap();
        }
        let mut got: Vec<Vec<(i64, Decimal)>> = vec![Vec::new(); rules.len()];
        for (t, p) in &walk {
            for f in book.on_sample(at(*t, *p)) {
                let i: usize = f.rule_id[1..].parse().unwrap();
                got[i].push(((f.ts - t0()).num_seconds(), f.value));
            }
        }
        for (i, (condition, cadence)) in rules.iter().enumerate() {
            prop_assert_eq!(&got[i], &reference_firings(condition, cadence, &walk), "rule {} {:?} {:?}", i, condition, cadence);
        }
    }
}
