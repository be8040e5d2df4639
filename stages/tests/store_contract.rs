//! One contract, two databases: the same writes and reads through `HistoryStore`
//! on the real PostgreSQL and on a SQLite file give the same answers, so the
//! API and the sinks don't care which one runs.

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use fxflow_stages::backends::postgres::store::PostgresStore;
use fxflow_stages::backends::sqlite::store::SqliteStore;
use fxflow_stages::backends::sqlite::SqliteResourceConfig;
use fxflow_stages::fx::{
    AlertFired, AlertRule, AlertRuleChange, CrossRate, Currency, FxEvent, Pair, Quote, SourceName,
};
use fxflow_stages::store::{
    AlertQuery, CandleQuery, HistoryStore, PriceKind, RateQuery, RuleQuery, RuleStatus, StoredAlert, StoredCandle,
    StoredRate, StoredVolatility, VolatilityQuery,
};
use rust_decimal::Decimal;
use support::{fresh_schema, pool};

fn t0() -> DateTime<Utc> {
    "2026-10-31T23:59:58Z".parse().unwrap()
}

fn pair(text: &str) -> Pair {
    text.parse().unwrap()
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// The tenant of each rule id of the contract (`once` is a shared rule).
fn tenant_of(id: &str) -> Option<&'static str> {
    match id {
        "up" | "gone" => Some("desk-a"),
        "cable" => Some("desk-b"),
        _ => None,
    }
}

fn rule(id: &str, pair: &str, threshold: &str) -> AlertRule {
    let mut rule: AlertRule = serde_json::from_value(serde_json::json!({
        "id": id, "pair": pair, "condition": {"Above": threshold},
        "trigger": {"Every": {"cooldown": "1m", "rearm": "0.001"}},
        "expires": "2027-01-01T00:00:00Z",
    }))
    .unwrap();
    rule.tenant = tenant_of(id).map(str::to_owned);
    if id == "up" {
        rule.email = Some(fxflow_stages::fx::EmailTarget {
            to: vec!["desk@example.com".into()],
        });
    }
    if id == "cable" {
        rule.webhook = Some(fxflow_stages::fx::WebhookTarget {
            url: "https://hooks.example.com/services/T000/B000/SECRET".into(),
            secret: None,
            format: fxflow_stages::fx::WebhookFormat::Slack,
        });
    }
    rule
}

fn change(id: &str, rule: Option<AlertRule>) -> FxEvent {
    FxEvent::AlertRuleChange(Box::new(AlertRuleChange { id: id.into(), rule }))
}

/// Quotes from two sources and crosses, across a month boundary, with a price
/// that has more digits than a double holds; firings; rule changes.
fn first_batch() -> Vec<FxEvent> {
    let ecb = SourceName::intern("ecb").unwrap();
    let oanda = SourceName::intern("oanda").unwrap();
    let mut events = Vec::new();
    for second in 0..6 {
        let ts = t0() + Duration::seconds(second);
        for source in [ecb, oanda] {
            events.push(FxEvent::Quote(Quote {
                pair: pair("EUR/USD"),
                bid: dec("1.0850") + Decimal::new(second, 4),
                ask: dec("1.0852") + Decimal::new(second, 4),
                ts,
                source,
                enrichment: None,
            }));
        }
        events.push(FxEvent::CrossRate(CrossRate {
            pair: pair("GBP/JPY"),
            bid: dec("199.12345678901234567890123456"),
            ask: dec("199.22345678901234567890123456"),
            ts,
            source: ecb,
            via: Currency::EUR,
        }));
    }
    for (rule_id, second, previous) in [("up", 1, Some(dec("1.0850"))), ("up", 4, None), ("cable", 2, None)] {
        events.push(FxEvent::AlertFired(AlertFired {
            rule_id: Arc::from(rule_id),
            pair: pair(if rule_id == "up" { "EUR/USD" } else { "GBP/USD" }),
            condition: Arc::from("above 1.0850"),
            value: dec("1.08510"),
            previous,
            ts: t0() + Duration::seconds(second),
            source: ecb,
            tenant: tenant_of(rule_id).map(Arc::from),
        }));
    }
    // A one-shot rule that fired: "triggered" from then on.
    events.push(FxEvent::AlertFired(AlertFired {
        rule_id: Arc::from("once"),
        pair: pair("EUR/USD"),
        condition: Arc::from("above 1.0850"),
        value: dec("1.08510"),
        previous: None,
        ts: t0() + Duration::seconds(3),
        source: ecb,
        tenant: None,
    }));
    let mut once = rule("once", "EUR/USD", "1.0850");
    once.trigger = fxflow_stages::fx::Trigger::Once;
    once.expires = None;
    events.push(change("once", Some(once)));
    events.push(change("up", Some(rule("up", "EUR/USD", "1.0850"))));
    events.push(change("cable", Some(rule("cable", "GBP/USD", "1.30"))));
    events.push(change("gone", Some(rule("gone", "EUR/USD", "1.20"))));
    events
}

/// Later rule changes: one rule moves pair, one is deleted, one is set twice (the last wins).
fn second_batch() -> Vec<FxEvent> {
    vec![
        change("cable", Some(rule("cable", "GBP/USD", "1.31"))),
        change("gone", None),
        change("up", Some(rule("up", "USD/JPY", "150"))),
        change("cable", Some(rule("cable", "GBP/USD", "1.32"))),
    ]
}

/// Everything the API will ask, as plain values to compare between databases.
#[derive(Debug, PartialEq)]
struct Answers {
    all_eur_usd: Vec<StoredRate>,
    pages: Vec<Vec<StoredRate>>,
    oanda_only: Vec<StoredRate>,
    november: Vec<StoredRate>,
    latest_gbp_jpy: Option<StoredRate>,
    latest_nzd_usd: Option<StoredRate>,
    rule_up: Vec<StoredAlert>,
    two_newest: Vec<StoredAlert>,
    gbp_usd_alerts: Vec<StoredAlert>,
    rules_before: Vec<AlertRule>,
    rules_after: Vec<AlertRule>,
    rules_usd_jpy: Vec<AlertRule>,
    /// Pages of one firing, newest first, by the `before` cursor.
    alert_pages: Vec<Vec<StoredAlert>>,
    /// (id, fired count, last firing) of one rule, and of a deleted one.
    rule_up_stored: Option<(String, i64, Option<DateTime<Utc>>)>,
    rule_gone: bool,
    /// (id, status) of every rule now, and a year on (when `expires` has passed).
    statuses_now: Vec<(String, RuleStatus)>,
    statuses_later: Vec<(String, RuleStatus)>,
    triggered: Vec<String>,
    /// Pages of one rule by the `after` cursor.
    rule_pages: Vec<Vec<String>>,
    /// The rates in force two seconds in.
    rates_at: Vec<StoredRate>,
    /// Rule ids a tenant sees (its own and shared ones), with their owners.
    desk_a_rules: Vec<(String, Option<String>)>,
    /// Firings a tenant sees: (rule id, owner).
    desk_b_firings: Vec<(String, Option<String>)>,
    /// (rules, webhooks) stored by desk-a, desk-b and a tenant with none.
    usage: Vec<(u64, u64)>,
}

async fn exercise(store: &dyn HistoryStore) -> Answers {
    let first = first_batch();
    let refs: Vec<&FxEvent> = first.iter().collect();
    store.write(&refs).await.unwrap();
    store.write(&refs).await.unwrap(); // redelivered: nothing new
    let rules_before = store.rules(None).await.unwrap();

    let second = second_batch();
    store.write(&second.iter().collect::<Vec<_>>()).await.unwrap();

    let all = RateQuery {
        pair: pair("EUR/USD"),
        from: t0(),
        to: t0() + Duration::seconds(60),
        source: None,
        after: None,
        limit: 1000,
    };
    let all_eur_usd = store.rates(&all).await.unwrap();
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .rates(&RateQuery {
                after: after.clone(),
                limit: 5,
                ..all.clone()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.ts, last.source.clone()));
        pages.push(page);
    }
    let oanda_only = store
        .rates(&RateQuery {
            source: Some("oanda".into()),
            ..all.clone()
        })
        .await
        .unwrap();
    let november = store
        .rates(&RateQuery {
            from: "2026-11-01T00:00:00Z".parse().unwrap(),
            ..all.clone()
        })
        .await
        .unwrap();
    let alerts = AlertQuery {
        tenant: None,
        rule_id: None,
        pair: None,
        from: t0(),
        to: t0() + Duration::seconds(60),
        before: None,
        limit: 100,
    };
    Answers {
        all_eur_usd,
        pages,
        oanda_only,
        november,
        latest_gbp_jpy: store.latest_rate(pair("GBP/JPY")).await.unwrap(),
        latest_nzd_usd: store.latest_rate(pair("NZD/USD")).await.unwrap(),
        rule_up: store
            .alerts(&AlertQuery {
                rule_id: Some("up".into()),
                ..alerts.clone()
            })
            .await
            .unwrap(),
        two_newest: store
            .alerts(&AlertQuery {
                limit: 2,
                ..alerts.clone()
            })
            .await
            .unwrap(),
        gbp_usd_alerts: store
            .alerts(&AlertQuery {
                pair: Some(pair("GBP/USD")),
                ..alerts.clone()
            })
            .await
            .unwrap(),
        rules_before,
        rules_after: store.rules(None).await.unwrap(),
        rules_usd_jpy: store.rules(Some(pair("USD/JPY"))).await.unwrap(),
        alert_pages: {
            let mut pages = Vec::new();
            let mut before = None;
            loop {
                let page = store
                    .alerts(&AlertQuery {
                        before: before.clone(),
                        limit: 1,
                        ..alerts.clone()
                    })
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                before = Some((last.fired_at, last.rule_id.clone(), last.source.clone()));
                pages.push(page);
            }
            pages
        },
        rule_up_stored: store
            .rule("up")
            .await
            .unwrap()
            .map(|r| (r.rule.id, r.fired_count, r.last_fired_at)),
        rule_gone: store.rule("gone").await.unwrap().is_some(),
        statuses_now: statuses(store, t0(), None).await,
        statuses_later: statuses(store, t0() + Duration::days(400), None).await,
        triggered: statuses(store, t0(), Some(RuleStatus::Triggered))
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect(),
        rule_pages: {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .rules_page(&RuleQuery {
                        tenant: None,
                        pair: None,
                        status: None,
                        after: after.clone(),
                        limit: 2,
                        now: t0(),
                    })
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.rule.id.clone());
                pages.push(page.into_iter().map(|r| r.rule.id).collect());
            }
            pages
        },
        rates_at: {
            store.ping().await.unwrap();
            store
                .rates_at(
                    &[pair("EUR/USD"), pair("GBP/JPY"), pair("NZD/USD")],
                    t0() + Duration::seconds(2),
                )
                .await
                .unwrap()
        },
        desk_a_rules: store
            .rules_page(&RuleQuery {
                tenant: Some("desk-a".into()),
                pair: None,
                status: None,
                after: None,
                limit: 100,
                now: t0(),
            })
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.rule.id, r.tenant))
            .collect(),
        desk_b_firings: store
            .alerts(&AlertQuery {
                tenant: Some("desk-b".into()),
                ..alerts.clone()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.rule_id, a.tenant))
            .collect(),
        usage: {
            let mut usage = Vec::new();
            for tenant in ["desk-a", "desk-b", "nobody"] {
                let u = store.tenant_usage(tenant).await.unwrap();
                usage.push((u.rules, u.webhooks));
            }
            usage
        },
    }
}

async fn statuses(
    store: &dyn HistoryStore,
    now: DateTime<Utc>,
    status: Option<RuleStatus>,
) -> Vec<(String, RuleStatus)> {
    store
        .rules_page(&RuleQuery {
            tenant: None,
            pair: None,
            status,
            after: None,
            limit: 100,
            now,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let status = RuleStatus::of(&r.rule, r.fired_count, now);
            (r.rule.id, status)
        })
        .collect()
}

fn check(answers: &Answers, database: &str) {
    let a = answers;
    assert_eq!(a.all_eur_usd.len(), 12, "{database}: 6 seconds × 2 sources, once each");
    let keys: Vec<_> = a.all_eur_usd.iter().map(|r| (r.ts, r.source.as_str())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{database}: ordered by (ts, source)");
    assert!(a.all_eur_usd.iter().all(|r| r.kind == PriceKind::Quote));
    assert_eq!(a.all_eur_usd[2].bid, dec("1.0851"), "{database}");
    assert_eq!(a.all_eur_usd[2].mid, dec("1.0852"), "{database}");
    assert_eq!(
        a.pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![5, 5, 2],
        "{database}: keyset pages"
    );
    assert_eq!(a.pages.concat(), a.all_eur_usd, "{database}: pages add up to the whole");
    assert_eq!(a.oanda_only.len(), 6, "{database}");
    assert!(a.oanda_only.iter().all(|r| r.source == "oanda"));
    assert_eq!(
        a.november.len(),
        8,
        "{database}: from the month boundary on (4 seconds × 2 sources)"
    );
    let gbp_jpy = a.latest_gbp_jpy.as_ref().expect("a GBP/JPY price");
    assert_eq!(gbp_jpy.ts, t0() + Duration::seconds(5), "{database}");
    assert_eq!(gbp_jpy.kind, PriceKind::Cross);
    assert_eq!(
        gbp_jpy.bid.to_string(),
        "199.12345678901234567890123456",
        "{database}: every digit kept"
    );
    assert_eq!(a.latest_nzd_usd, None, "{database}");
    assert_eq!(
        a.rule_up.iter().map(|r| r.fired_at).collect::<Vec<_>>(),
        vec![t0() + Duration::seconds(4), t0() + Duration::seconds(1)],
        "{database}: newest first"
    );
    assert_eq!(a.rule_up[1].previous, Some(dec("1.0850")), "{database}");
    assert_eq!(a.rule_up[0].previous, None, "{database}");
    assert_eq!(a.two_newest.len(), 2, "{database}");
    assert_eq!(a.two_newest[1].rule_id, "once", "{database}");
    assert_eq!(a.gbp_usd_alerts.len(), 1, "{database}");
    assert_eq!(
        a.rules_before.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["cable", "gone", "once", "up"],
        "{database}"
    );
    assert_eq!(
        a.rules_before[3],
        rule("up", "EUR/USD", "1.0850"),
        "{database}: the rule round-trips"
    );
    assert_eq!(
        a.rules_after,
        vec![
            rule("cable", "GBP/USD", "1.32"),
            a.rules_before[2].clone(),
            rule("up", "USD/JPY", "150")
        ],
        "{database}: deleted, moved, last change wins"
    );
    assert_eq!(a.rules_usd_jpy, vec![rule("up", "USD/JPY", "150")], "{database}");
    assert_eq!(a.alert_pages.len(), 4, "{database}: four firings, one per page");
    assert_eq!(
        a.alert_pages[..2].concat(),
        a.two_newest,
        "{database}: pages agree with one query"
    );
    let fired: Vec<_> = a
        .alert_pages
        .iter()
        .map(|p| (p[0].fired_at, p[0].rule_id.as_str()))
        .collect();
    let mut newest_first = fired.clone();
    newest_first.sort_by(|x, y| y.cmp(x));
    assert_eq!(fired, newest_first, "{database}: pages go back in time");
    assert_eq!(
        a.rule_up_stored,
        Some(("up".into(), 2, Some(t0() + Duration::seconds(4)))),
        "{database}: two firings of `up`"
    );
    assert!(!a.rule_gone, "{database}: a deleted rule is gone");
    assert_eq!(
        a.statuses_now,
        vec![
            ("cable".into(), RuleStatus::Active),
            ("once".into(), RuleStatus::Triggered),
            ("up".into(), RuleStatus::Active)
        ],
        "{database}"
    );
    assert_eq!(
        a.statuses_later,
        vec![
            ("cable".into(), RuleStatus::Expired),
            ("once".into(), RuleStatus::Triggered),
            ("up".into(), RuleStatus::Expired)
        ],
        "{database}: past `expires`"
    );
    assert_eq!(
        a.triggered,
        vec!["once".to_owned()],
        "{database}: the status filter is the store's"
    );
    assert_eq!(
        a.rule_pages,
        vec![vec!["cable".to_owned(), "once".to_owned()], vec!["up".to_owned()]],
        "{database}"
    );
    let at: Vec<_> = a
        .rates_at
        .iter()
        .map(|r| (r.pair.to_string(), r.ts, r.source.as_str()))
        .collect();
    assert_eq!(
        at,
        vec![
            ("EUR/USD".into(), t0() + Duration::seconds(2), "oanda"),
            ("GBP/JPY".into(), t0() + Duration::seconds(2), "ecb"),
        ],
        "{database}: newest at or before, NZD/USD has none"
    );
    let owned = |id: &str, tenant: Option<&str>| (id.to_owned(), tenant.map(str::to_owned));
    assert_eq!(
        a.desk_a_rules,
        vec![owned("once", None), owned("up", Some("desk-a"))],
        "{database}: a tenant sees its own rules and shared ones, not desk-b's `cable`"
    );
    assert_eq!(
        a.desk_b_firings,
        vec![owned("once", None), owned("cable", Some("desk-b"))],
        "{database}: a tenant sees its own firings and shared ones, not desk-a's"
    );
    assert_eq!(
        a.usage,
        vec![(1, 0), (1, 1), (0, 0)],
        "{database}: rules and webhooks per tenant"
    );
}

/// Both stores, migrated: PostgreSQL in a fresh schema, SQLite in a file in the returned folder.
async fn two_stores(name: &str) -> (PostgresStore, SqliteStore, tempfile::TempDir) {
    let schema = fresh_schema(name).await;
    let pg_pool = pool(&schema).await;
    fxflow_stages::backends::postgres::migrate(&pg_pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteResourceConfig {
        path: dir.path().join("fx.db"),
    }
    .connect()
    .await
    .unwrap();
    fxflow_stages::backends::sqlite::migrate(&sqlite).await.unwrap();
    (PostgresStore::new(pg_pool), SqliteStore::new(sqlite), dir)
}

#[tokio::test]
async fn postgres_and_sqlite_answer_the_same() {
    let (postgres, sqlite, _dir) = two_stores("contract").await;
    let from_postgres = exercise(&postgres).await;
    check(&from_postgres, "PostgreSQL");
    let from_sqlite = exercise(&sqlite).await;
    check(&from_sqlite, "SQLite");
    assert_eq!(from_postgres, from_sqlite);
}

fn candle(
    pair_text: &str,
    source: &str,
    minute: i64,
    close: &str,
    ticks: u64,
    closed: bool,
    two_sided: bool,
) -> FxEvent {
    let mid = fxflow_stages::fx::Ohlc {
        open: dec("1.08500000000000000000000001"),
        high: dec(close).max(dec("1.0851")),
        low: dec("1.0849"),
        close: dec(close),
    };
    let side = |d: &str| fxflow_stages::fx::Ohlc {
        open: mid.open - dec(d),
        high: mid.high - dec(d),
        low: mid.low - dec(d),
        close: mid.close - dec(d),
    };
    FxEvent::Candle(Box::new(fxflow_stages::fx::Candle {
        pair: pair(pair_text),
        source: SourceName::intern(source).unwrap(),
        interval: std::time::Duration::from_secs(60),
        start: t0() - Duration::seconds(58) + Duration::minutes(minute),
        mid,
        bid: two_sided.then(|| side("0.0001")),
        ask: two_sided.then(|| side("-0.0001")),
        ticks,
        closed,
    }))
}

fn volatility(pair_text: &str, day: i64, value: f64) -> FxEvent {
    FxEvent::Volatility(fxflow_stages::fx::Volatility {
        pair: pair(pair_text),
        source: SourceName::intern("ecb").unwrap(),
        window: std::time::Duration::from_secs(30 * 86_400),
        ts: t0() + Duration::seconds(2) + Duration::days(day),
        volatility: value,
        samples: 20 + day as u64,
    })
}

/// Candle and volatility reads, as plain values to compare between databases.
#[derive(Debug, PartialEq)]
struct AnalyticsAnswers {
    minutes: Vec<StoredCandle>,
    pages: Vec<Vec<StoredCandle>>,
    oanda: Vec<StoredCandle>,
    hours: Vec<StoredCandle>,
    latest: Vec<StoredVolatility>,
    range: Vec<StoredVolatility>,
}

async fn exercise_analytics(store: &dyn HistoryStore) -> AnalyticsAnswers {
    let batch = vec![
        // Minute 0: an update, then its final bar, then a stale update re-delivered: the final stays.
        candle("EUR/USD", "ecb", 0, "1.0850", 3, false, false),
        candle("EUR/USD", "ecb", 0, "1.0852", 5, true, false),
        candle("EUR/USD", "ecb", 0, "1.0851", 4, false, false),
        // Minute 1 from two sources, one two-sided; minute 2 still open.
        candle("EUR/USD", "ecb", 1, "1.0853", 2, true, false),
        candle("EUR/USD", "oanda", 1, "1.0854", 9, true, true),
        candle("EUR/USD", "ecb", 2, "1.0855", 1, false, false),
        candle("GBP/USD", "ecb", 1, "1.3000", 2, true, false),
        volatility("EUR/USD", 0, 0.071),
        volatility("EUR/USD", 1, 0.0725),
        volatility("EUR/USD", 2, 0.123456789012345),
        volatility("USD/JPY", 1, 0.1),
    ];
    let refs: Vec<&FxEvent> = batch.iter().collect();
    store.write(&refs).await.unwrap();
    // Redelivered, and later emissions of minute 2 (an update with more ticks, then an older one).
    store.write(&refs).await.unwrap();
    let later = [
        candle("EUR/USD", "ecb", 2, "1.0856", 3, false, false),
        candle("EUR/USD", "ecb", 2, "1.0857", 2, false, false),
    ];
    store.write(&later.iter().collect::<Vec<_>>()).await.unwrap();

    let minutes = CandleQuery {
        pair: pair("EUR/USD"),
        interval: "1m".into(),
        from: t0() - Duration::hours(1),
        to: t0() + Duration::hours(1),
        source: None,
        after: None,
        limit: 100,
    };
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .candles(&CandleQuery {
                after: after.clone(),
                limit: 2,
                ..minutes.clone()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.start, last.source.clone()));
        pages.push(page);
    }
    let pairs = [pair("EUR/USD"), pair("GBP/USD"), pair("USD/JPY")];
    AnalyticsAnswers {
        pages,
        oanda: store
            .candles(&CandleQuery {
                source: Some("oanda".into()),
                ..minutes.clone()
            })
            .await
            .unwrap(),
        hours: store
            .candles(&CandleQuery {
                interval: "1h".into(),
                ..minutes.clone()
            })
            .await
            .unwrap(),
        minutes: store.candles(&minutes).await.unwrap(),
        latest: store
            .volatility(&VolatilityQuery {
                pairs: pairs.to_vec(),
                window: "30d".into(),
                range: None,
                limit: 100,
            })
            .await
            .unwrap(),
        range: store
            .volatility(&VolatilityQuery {
                pairs: pairs.to_vec(),
                window: "30d".into(),
                range: Some((t0() + Duration::days(1), t0() + Duration::days(10))),
                limit: 2,
            })
            .await
            .unwrap(),
    }
}

fn check_analytics(a: &AnalyticsAnswers, database: &str) {
    let bars: Vec<(i64, &str, String, i64, bool)> = a
        .minutes
        .iter()
        .map(|c| {
            let minute = (c.start - (t0() - Duration::seconds(58))).num_minutes();
            (minute, c.source.as_str(), c.mid.close.to_string(), c.ticks, c.closed)
        })
        .collect();
    assert_eq!(
        bars,
        vec![
            (0, "ecb", "1.0852".to_owned(), 5, true),
            (1, "ecb", "1.0853".to_owned(), 2, true),
            (1, "oanda", "1.0854".to_owned(), 9, true),
            (2, "ecb", "1.0856".to_owned(), 3, false),
        ],
        "{database}: one row per bar; a final bar is kept, an open one takes the update with most ticks"
    );
    assert_eq!(
        a.minutes[0].mid.open.to_string(),
        "1.08500000000000000000000001",
        "{database}: every digit kept"
    );
    assert_eq!(a.minutes[0].bid, None, "{database}");
    let oanda = &a.minutes[2];
    assert_eq!(oanda.bid.unwrap().close, dec("1.0853"), "{database}");
    assert_eq!(oanda.ask.unwrap().close, dec("1.0855"), "{database}");
    assert_eq!(a.pages.concat(), a.minutes, "{database}: pages add up to the whole");
    assert_eq!(a.pages.len(), 2, "{database}");
    assert_eq!(a.oanda, vec![a.minutes[2].clone()], "{database}");
    assert!(a.hours.is_empty(), "{database}: no hourly bars were written");
    let latest: Vec<(String, f64)> = a.latest.iter().map(|v| (v.pair.to_string(), v.volatility)).collect();
    assert_eq!(
        latest,
        vec![("EUR/USD".into(), 0.123456789012345), ("USD/JPY".into(), 0.1)],
        "{database}: the newest reading of each pair; GBP/USD has none"
    );
    assert_eq!(a.latest[0].samples, 22, "{database}");
    assert_eq!(a.latest[0].window, "30d", "{database}");
    let range: Vec<(String, f64)> = a.range.iter().map(|v| (v.pair.to_string(), v.volatility)).collect();
    assert_eq!(
        range,
        vec![("EUR/USD".into(), 0.0725), ("EUR/USD".into(), 0.123456789012345)],
        "{database}: by pair and time, limited"
    );
}

#[tokio::test]
async fn candles_and_volatility_are_stored_and_read_alike() {
    let (postgres, sqlite, _dir) = two_stores("analytics").await;

    let from_postgres = exercise_analytics(&postgres).await;
    check_analytics(&from_postgres, "PostgreSQL");
    let from_sqlite = exercise_analytics(&sqlite).await;
    check_analytics(&from_sqlite, "SQLite");
    assert_eq!(from_postgres, from_sqlite);
}

/// `rate_stream` (what `fxflow backtest` reads): every price of the pairs in the range, in
/// (ts, pair, source) order, one source when asked, the same from both stores.
#[tokio::test]
async fn both_stores_stream_rates_in_time_order() {
    use futures_util::StreamExt as _;
    let (postgres, sqlite, _dir) = two_stores("stream").await;
    let mut answers = Vec::new();
    for store in [&postgres as &dyn HistoryStore, &sqlite] {
        let first = first_batch();
        store.write(&first.iter().collect::<Vec<_>>()).await.unwrap();
        let pairs = vec!["EUR/USD".to_owned(), "GBP/JPY".to_owned()];
        let (from, to) = (t0() + Duration::seconds(1), t0() + Duration::seconds(5));
        let all: Vec<_> = store
            .rate_stream(&pairs, from, to, None)
            .map(|r| r.unwrap())
            .map(|p| (p.ts, p.pair.to_string(), p.source.as_str().to_owned(), p.bid, p.ask))
            .collect()
            .await;
        let ecb: Vec<_> = store
            .rate_stream(&pairs[..1], from, to, Some("ecb"))
            .map(|r| r.unwrap().ts)
            .collect()
            .await;
        // `source_rates` (the Frankfurter routes' read) over the same range: the stored rows whole.
        let whole: Vec<_> = store
            .source_rates("ecb", &[pair("EUR/USD"), pair("GBP/JPY")], from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.ts, r.pair.to_string(), r.source, r.kind.as_str(), r.bid, r.mid))
            .collect();
        assert_eq!(whole.len(), 5 * 2, "seconds 1..=5 inclusive, two pairs: {whole:?}");
        assert!(whole.iter().any(|r| r.3 == "cross") && whole.iter().any(|r| r.3 == "quote"));
        answers.push((all, ecb, format!("{whole:?}")));
    }
    let (all, ecb, _) = &answers[0];
    // Seconds 1..=4: EUR/USD from ecb and oanda, GBP/JPY from ecb.
    assert_eq!(all.len(), 4 * 3, "{all:?}");
    assert!(
        all.windows(2)
            .all(|w| (&w[0].0, &w[0].1, &w[0].2) < (&w[1].0, &w[1].1, &w[1].2)),
        "{all:?}"
    );
    assert_eq!(
        all[2].3,
        dec("199.12345678901234567890123456"),
        "every digit: {:?}",
        all[2]
    );
    assert_eq!(ecb.len(), 4);
    assert_eq!(answers[0], answers[1], "PostgreSQL and SQLite stream the same");
}
