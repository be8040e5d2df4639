//! The data-quality rules at their edges: `Stale` (event time, the TARGET calendar, the wall
//! clock of a live feed, save and restore) and `Divergence` (exactly at the limit, re-arming).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::rules::tests::rule;
use super::rules::{validate, RuleBook, Sample};
use crate::fx::{AlertRule, Calendar, Condition, Pair, SourceName, Trigger};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn sample(pair: &str, ts: DateTime<Utc>, price: Decimal, source: &str) -> Sample {
    Sample {
        pair: pair.parse().unwrap(),
        bid: price,
        ask: price,
        ts,
        source: SourceName::intern(source).unwrap(),
    }
}

fn stale(id: &str, max_age: Duration, trigger: Trigger) -> AlertRule {
    rule(
        id,
        Condition::Stale {
            max_age,
            calendar: Calendar::Target,
            source: None,
        },
        trigger,
    )
}

const DAY: Duration = Duration::from_secs(86_400);

fn every() -> Trigger {
    Trigger::Every {
        cooldown: Duration::ZERO,
        rearm: Decimal::ZERO,
    }
}

/// EUR/USD at midnight of each day, as the ECB replay stamps it; returns the firings.
fn days(book: &mut RuleBook, days: &[&str]) -> Vec<(String, DateTime<Utc>, String)> {
    days.iter()
        .flat_map(|d| book.on_sample(sample("EUR/USD", at(&format!("{d}T00:00:00Z")), dec!(1.08), "ecb")))
        .map(|f| (f.rule_id.to_string(), f.ts, f.condition.to_string()))
        .collect()
}

#[test]
fn a_missing_business_day_is_stale_and_weekends_and_holidays_are_not() {
    let mut book = RuleBook::new();
    book.add(&stale("once", DAY, Trigger::Once)).unwrap();
    book.add(&stale("every", DAY, every())).unwrap();
    // Thu 28 Mar 2024, then Good Friday, the weekend and Easter Monday closed: Tue 2 Apr is
    // the next business day. Wed 3 Apr is missing.
    let fired = days(
        &mut book,
        &["2024-03-27", "2024-03-28", "2024-04-02", "2024-04-04", "2024-04-05"],
    );
    let ids: Vec<&str> = fired.iter().map(|(id, _, _)| id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["every", "once"], "{fired:?}");
    // Stamped when the pair became stale: one business day after Tuesday's fixing.
    assert!(
        fired.iter().all(|(_, ts, _)| *ts == at("2024-04-03T00:00:00Z")),
        "{fired:?}"
    );
    assert!(
        fired[0].2.contains("no EUR/USD tick since 2024-04-02T00:00:00Z"),
        "{fired:?}"
    );
    // A second gap: `every` fires again, `once` is retired.
    let fired = days(&mut book, &["2024-04-09"]);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, "every");
    assert_eq!(fired[0].1, at("2024-04-09T00:00:00Z") - chrono::Duration::days(1));
}

#[test]
fn a_sample_exactly_at_the_deadline_is_in_time() {
    let mut book = RuleBook::new();
    book.add(&stale("s", DAY, every())).unwrap();
    assert!(days(&mut book, &["2024-04-08", "2024-04-09", "2024-04-10", "2024-04-11"]).is_empty());
}

#[test]
fn other_pairs_moving_on_reveal_a_pair_that_stopped() {
    let mut book = RuleBook::new();
    book.add(&stale("s", Duration::from_secs(60), Trigger::Once)).unwrap();
    let t0 = at("2026-01-05T10:00:00Z");
    assert!(book.on_sample(sample("EUR/USD", t0, dec!(1.08), "a")).is_empty());
    let second = chrono::Duration::seconds(1);
    for i in 1..=60 {
        assert!(book
            .on_sample(sample("GBP/USD", t0 + second * i, dec!(1.27), "a"))
            .is_empty());
    }
    let fired = book.on_sample(sample("GBP/USD", t0 + second * 61, dec!(1.27), "a"));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].ts, t0 + second * 60);
    assert_eq!(fired[0].value, dec!(1.08), "the last price of the pair that stopped");
    assert_eq!(fired[0].pair, "EUR/USD".parse::<Pair>().unwrap());
}

#[test]
fn a_rule_on_one_source_ignores_the_others() {
    let mut book = RuleBook::new();
    let mut r = stale("s", Duration::from_secs(10), Trigger::Once);
    r.condition = Condition::Stale {
        max_age: Duration::from_secs(10),
        calendar: Calendar::Continuous,
        source: Some("primary".into()),
    };
    book.add(&r).unwrap();
    let t0 = at("2026-01-03T10:00:00Z"); // a Saturday: the continuous calendar counts it
    book.on_sample(sample("EUR/USD", t0, dec!(1.08), "primary"));
    let mut fired = Vec::new();
    for i in 1..=20 {
        fired.extend(book.on_sample(sample(
            "EUR/USD",
            t0 + chrono::Duration::seconds(i),
            dec!(1.08),
            "backup",
        )));
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].ts, t0 + chrono::Duration::seconds(10));
}

#[test]
fn a_live_feed_that_stops_is_judged_by_the_wall_clock() {
    let mut book = RuleBook::new();
    book.add(&stale("s", Duration::from_secs(2), every())).unwrap();
    let now = Utc::now();
    // History (older than max_age when it arrives) is judged in event time only.
    book.on_sample(sample("EUR/USD", now - chrono::Duration::days(400), dec!(1.08), "a"));
    assert!(!book.watches_live_feeds());
    // A live sample: the gap before it was stale (event time); the wall clock judges it now.
    assert_eq!(book.on_sample(sample("EUR/USD", now, dec!(1.09), "a")).len(), 1);
    assert!(book.watches_live_feeds());
    assert!(
        book.on_wall_clock(now + chrono::Duration::seconds(2)).is_empty(),
        "at the deadline"
    );
    let fired = book.on_wall_clock(now + chrono::Duration::milliseconds(2_001));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].ts, now + chrono::Duration::seconds(2));
    assert_eq!(fired[0].value, dec!(1.09));
    assert!(
        book.on_wall_clock(now + chrono::Duration::seconds(60)).is_empty(),
        "once per gap"
    );
}

#[test]
fn a_restored_stale_rule_keeps_its_deadline() {
    let pair: Pair = "EUR/USD".parse().unwrap();
    let r = stale("s", DAY, Trigger::Once);
    let mut book = RuleBook::new();
    book.add(&r).unwrap();
    days(&mut book, &["2024-04-08", "2024-04-09"]);
    let saved = book.export(pair).unwrap();
    // Restored into a book whose rule is added before or after the state.
    let mut before = RuleBook::new();
    before.add(&r).unwrap();
    before.import(pair, saved.clone());
    let mut after = RuleBook::new();
    after.import(pair, saved);
    after.add(&r).unwrap();
    for book in [&mut before, &mut after] {
        let fired = days(book, &["2024-04-11"]);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].1, at("2024-04-10T00:00:00Z"));
    }
}

fn divergence(bps: Decimal, trigger: Trigger) -> AlertRule {
    rule(
        "d",
        Condition::Divergence {
            bps,
            sources: vec!["a".into(), "b".into()],
        },
        trigger,
    )
}

#[test]
fn divergence_fires_past_the_limit_not_at_it() {
    let t0 = at("2026-01-05T10:00:00Z");
    let s = |i: i64, price: Decimal, source: &str| sample("EUR/USD", t0 + chrono::Duration::seconds(i), price, source);
    let mut book = RuleBook::new();
    // 0.9975 and 1.0025: 0.005 of their mean 1.0000, exactly 50 bps.
    book.add(&divergence(dec!(50), Trigger::Once)).unwrap();
    assert!(
        book.on_sample(s(0, dec!(0.9975), "a")).is_empty(),
        "one source alone says nothing"
    );
    assert!(
        book.on_sample(s(1, dec!(1.0025), "b")).is_empty(),
        "50 bps is not more than 50"
    );
    let mut book = RuleBook::new();
    book.add(&divergence(dec!(49.99), Trigger::Once)).unwrap();
    book.on_sample(s(0, dec!(0.9975), "a"));
    let fired = book.on_sample(s(1, dec!(1.0025), "b"));
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0].value, fired[0].previous), (dec!(1.0025), Some(dec!(0.9975))));
    assert!(
        fired[0].condition.starts_with("a 0.9975 and b 1.0025 are 50")
            && fired[0].condition.ends_with("bps apart (more than 49.99)"),
        "{}",
        fired[0].condition
    );
    // A third source is not compared.
    let mut book = RuleBook::new();
    book.add(&divergence(dec!(10), Trigger::Once)).unwrap();
    book.on_sample(s(0, dec!(1.0000), "a"));
    assert!(book.on_sample(s(1, dec!(1.5), "c")).is_empty());
    assert!(book.on_sample(s(2, dec!(1.0001), "b")).is_empty());
}

#[test]
fn divergence_with_every_rearms_once_the_sources_agree_again() {
    let t0 = at("2026-01-05T10:00:00Z");
    let mut book = RuleBook::new();
    book.add(&divergence(
        dec!(20),
        Trigger::Every {
            cooldown: Duration::ZERO,
            rearm: dec!(10),
        },
    ))
    .unwrap();
    let steps = [
        ("a", dec!(1.0000)),
        ("b", dec!(1.0030)), // 30 bps: fires
        ("b", dec!(1.0040)), // still apart: disarmed
        ("b", dec!(1.0015)), // 15 bps: not back by 10 bps from 20
        ("b", dec!(1.0030)), // apart again, never re-armed
        ("b", dec!(1.0005)), // 5 bps: re-armed
        ("b", dec!(1.0025)), // 25 bps: fires again
    ];
    let fired: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(i, (source, price))| {
            !book
                .on_sample(sample(
                    "EUR/USD",
                    t0 + chrono::Duration::seconds(*i as i64),
                    *price,
                    source,
                ))
                .is_empty()
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(fired, [1, 6]);
}

#[test]
fn data_quality_rules_refuse_what_they_cannot_mean() {
    let refused = |r: AlertRule| validate(&r).unwrap_err();
    assert!(refused(stale("s", Duration::ZERO, Trigger::Once)).contains("max_age"));
    assert!(refused(stale("s", DAY * 400, Trigger::Once)).contains("366 days"));
    let mut r = divergence(dec!(10), Trigger::Once);
    r.condition = Condition::Divergence {
        bps: dec!(10),
        sources: vec!["a".into(), "a".into()],
    };
    assert!(refused(r).contains("different sources"));
    assert!(refused(divergence(dec!(0), Trigger::Once)).contains("positive"));
    assert!(validate(&divergence(dec!(10), Trigger::OncePerBar(DAY))).is_ok());
}

#[test]
fn on_bar_close_judges_staleness_and_divergence_at_each_close() {
    // Stale at the close of the daily bar it turned stale in, stamped with that close.
    let mut book = RuleBook::new();
    book.add(&stale("s", Duration::from_secs(12 * 3600), Trigger::OnBarClose(DAY)))
        .unwrap();
    let t0 = at("2024-04-09T10:00:00Z");
    let h = |n: i64| t0 + chrono::Duration::hours(n);
    assert!(book.on_sample(sample("EUR/USD", t0, dec!(1.08), "a")).is_empty());
    // Stale from 22:00; the bar closes at midnight. A sample at 23:00 saves it.
    assert!(book.on_sample(sample("EUR/USD", h(13), dec!(1.08), "a")).is_empty());
    // Now stale from 11:00 on the 10th; that bar closes at midnight on the 11th, and the
    // clock passes it an hour later.
    assert!(book.on_sample(sample("GBP/USD", h(38), dec!(1.27), "a")).is_empty());
    let fired = book.on_sample(sample("GBP/USD", h(39), dec!(1.27), "a"));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].ts, at("2024-04-11T00:00:00Z"), "stamped at the close");

    // Divergence at the close: the sources' latest prices when the bar closes.
    let mut book = RuleBook::new();
    book.add(&divergence(dec!(20), Trigger::OnBarClose(DAY))).unwrap();
    let d = |day: u32, hour: u32| at(&format!("2024-04-{day:02}T{hour:02}:00:00Z"));
    book.on_sample(sample("EUR/USD", d(9, 1), dec!(1.0000), "a"));
    book.on_sample(sample("EUR/USD", d(9, 2), dec!(1.0050), "b")); // apart within the bar...
    book.on_sample(sample("EUR/USD", d(9, 3), dec!(1.0001), "b")); // ...together at its close
    assert!(book
        .on_sample(sample("EUR/USD", d(10, 1), dec!(1.0040), "b"))
        .is_empty());
    // The 10th closes with a at 1.0000 and b at 1.0040: 40 bps.
    let fired = book.on_sample(sample("EUR/USD", d(11, 1), dec!(1.0040), "a"));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].ts, d(11, 0));
}
