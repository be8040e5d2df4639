//! `Candles`: OHLC bars per pair and source, for every configured interval,
//! on the engine's event-time windows ([`fxflow_engine::window`]).
//!
//! Each price (quote or cross rate) goes into one tumbling window per
//! interval, keyed by (pair, source, interval). A bar keeps the mid's open
//! (the price with the earliest event time), high, low and close (the latest),
//! the same for bid and ask when a price was two-sided, and the tick count —
//! all exact decimals. Bars can also be built from closed lower-interval bars
//! (a `Candles` stage fed by another one): 1-hour bars from 1-minute bars give
//! the same open, high, low, close and count as from the ticks.
//!
//! The prices of one (pair, source) arrive in event-time order (`Enrich`
//! rejects older quotes, Kafka keeps a pair's order), so a price not newer
//! than the last one of its key is a re-delivery from a crashed worker
//! upstream: it is skipped and counted (`discarded{reason="repeated"}`) rather
//! than counted twice. Lateness still matters: it is how far the slowest input
//! (partition) may lag before bars close.

use std::fmt;
use std::time::Duration;

use fxflow_engine::kafka::StateTopicConfig;
use fxflow_engine::window::{
    nanos, Aggregation, Assigned, Contribution, EventTime, Window, WindowConfig, WindowShape, WindowStage,
};
use fxflow_engine::{async_trait, BuildContext, ConfigProblem, Kinds, Shape, Stage, StageConfig, StageError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{event_time, utc};
use crate::fx::quote::mid;
use crate::fx::{kind, Candle, FxEvent, Ohlc, Pair, SourceName};

/// Builds OHLC candles (mid, and bid/ask where prices are two-sided, with the
/// tick count) per pair and source for each interval, from quotes, cross
/// rates, or closed candles of a shorter interval that divides it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CandlesConfig {
    /// Bar lengths, e.g. `["1m", "5m", "1h", "1d"]`, whole seconds up to 366
    /// days. Bars start at multiples of their length since the Unix epoch:
    /// whole minutes and hours, days at 00:00 UTC.
    #[serde(with = "fxflow_engine::duration::list")]
    #[schemars(schema_with = "fxflow_engine::duration::list_schema")]
    pub intervals: Vec<Duration>,
    /// Event time: how late a price may be, what happens to later ones, and
    /// whether bars are also emitted before they close (`emit: Updates`).
    #[serde(default)]
    pub time: WindowConfig,
    /// Keep the open bars in a compacted Kafka topic (one for this stage), so
    /// that a restarted worker continues them: nothing lost, nothing counted
    /// twice, and inputs are committed at each save instead of when the
    /// longest bar closes. Needs the prices to come from a `KafkaSource`.
    #[serde(default)]
    pub state: Option<StateTopicConfig>,
}

/// The longest interval a bar may have.
const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);

#[async_trait]
impl StageConfig<FxEvent> for CandlesConfig {
    fn shape(&self) -> Shape {
        Shape::Transform
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::QUOTE, kind::CROSS_RATE, kind::CANDLE])
    }

    fn emits(&self) -> Kinds {
        Kinds::only(&[kind::CANDLE])
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.intervals.is_empty() {
            problems.push(
                ConfigProblem::field("intervals", "no interval given").with_hint("intervals: [\"1m\", \"1h\", \"1d\"]"),
            );
        }
        for (i, interval) in self.intervals.iter().enumerate() {
            let name = fxflow_engine::duration::format(interval);
            if interval.is_zero() || interval.subsec_nanos() != 0 {
                problems.push(ConfigProblem::field(
                    "intervals",
                    format!("`{name}` is not a whole number of seconds"),
                ));
            } else if *interval > MAX_INTERVAL {
                problems.push(ConfigProblem::field(
                    "intervals",
                    format!("`{name}` is longer than 366 days"),
                ));
            }
            if self.intervals[..i].contains(interval) {
                problems.push(ConfigProblem::field("intervals", format!("`{name}` is listed twice")));
            }
        }
        problems.extend(self.time.check("time"));
        problems.extend(StateTopicConfig::check_optional(self.state.as_ref(), "state"));
        problems
    }

    crate::transforms::state_topic_methods!();

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        WindowStage::build(
            CandleAggregation::new(&self.intervals),
            &self.time,
            self.state.as_ref(),
            cx,
        )
    }
}

/// What bars are kept per: one pair from one source at one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CandleKey {
    pub pair: Pair,
    pub source: SourceName,
    #[serde(with = "fxflow_engine::duration")]
    pub interval: Duration,
}

impl fmt::Display for CandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.pair,
            self.source,
            fxflow_engine::duration::format(&self.interval)
        )
    }
}

/// The newest input of a key (inputs of a key arrive in time order; see the module docs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Newest(Option<EventTime>);

/// A bar in the making. Bid and ask bars are kept only once a price was
/// two-sided (before that they equal the mid's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Event time of the open and of the close.
    pub first: EventTime,
    pub last: EventTime,
    pub mid: Ohlc,
    /// Bid and ask, once a price was two-sided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<[Ohlc; 2]>,
    pub ticks: u64,
}

impl Bar {
    fn of_tick(time: EventTime, bid: Decimal, ask: Decimal) -> Bar {
        Bar {
            first: time,
            last: time,
            mid: Ohlc::at(mid(bid, ask)),
            sides: (bid != ask).then(|| [Ohlc::at(bid), Ohlc::at(ask)]),
            ticks: 1,
        }
    }

    fn of_candle(time: EventTime, c: &Candle) -> Bar {
        Bar {
            first: time,
            last: time,
            mid: c.mid,
            sides: c.bid.zip(c.ask).map(|(bid, ask)| [bid, ask]),
            ticks: c.ticks,
        }
    }

    fn sides_or_mid(&mut self) -> &mut [Ohlc; 2] {
        let mid = self.mid;
        self.sides.get_or_insert([mid, mid])
    }

    /// One more price (the hot path: a few comparisons, nothing built).
    fn add_tick(&mut self, time: EventTime, bid: Decimal, ask: Decimal) {
        let (earlier, later) = (time < self.first, time >= self.last);
        self.mid.merge(&Ohlc::at(mid(bid, ask)), earlier, later);
        if bid != ask || self.sides.is_some() {
            let [b, a] = self.sides_or_mid();
            b.merge(&Ohlc::at(bid), earlier, later);
            a.merge(&Ohlc::at(ask), earlier, later);
        }
        self.first = self.first.min(time);
        self.last = self.last.max(time);
        self.ticks += 1;
    }

    fn merge(&mut self, other: &Bar) {
        let earlier = other.first < self.first;
        let later = other.last >= self.last;
        self.mid.merge(&other.mid, earlier, later);
        if self.sides.is_some() || other.sides.is_some() {
            let theirs = other.sides.unwrap_or([other.mid, other.mid]);
            let [b, a] = self.sides_or_mid();
            b.merge(&theirs[0], earlier, later);
            a.merge(&theirs[1], earlier, later);
        }
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.ticks += other.ticks;
    }
}

/// What one input adds to a bar: a price, or a closed bar of a shorter interval.
pub enum BarPart {
    Tick { bid: Decimal, ask: Decimal },
    Bar(Box<Bar>),
}

/// One window's bar (none before its first price).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenBar(Option<Bar>);

/// Candles as an [`Aggregation`].
pub struct CandleAggregation {
    /// Shortest first.
    intervals: Vec<Duration>,
}

impl CandleAggregation {
    pub fn new(intervals: &[Duration]) -> Self {
        let mut intervals = intervals.to_vec();
        intervals.sort();
        intervals.dedup();
        Self { intervals }
    }
}

impl Aggregation<FxEvent> for CandleAggregation {
    type Key = CandleKey;
    type KeyState = Newest;
    type Acc = OpenBar;
    type Value = BarPart;

    fn shape(&self, key: &CandleKey) -> WindowShape {
        WindowShape::tumbling(key.interval)
    }

    fn assign(&self, event: &FxEvent, keys: &mut Vec<CandleKey>) -> Assigned {
        if let Some(price) = event.price() {
            keys.extend(self.intervals.iter().map(|interval| CandleKey {
                pair: price.pair,
                source: price.source,
                interval: *interval,
            }));
            return Assigned::At(event_time(price.ts));
        }
        let FxEvent::Candle(candle) = event else {
            return Assigned::Reject(
                "unexpected_kind",
                "Candles takes quotes, cross rates and candles".into(),
            );
        };
        if !candle.closed {
            return Assigned::Ignore("candle_not_final");
        }
        let sub = nanos(candle.interval);
        keys.extend(
            self.intervals
                .iter()
                .filter(|i| sub > 0 && nanos(**i) > sub && nanos(**i) % sub == 0)
                .map(|interval| CandleKey {
                    pair: candle.pair,
                    source: candle.source,
                    interval: *interval,
                }),
        );
        if keys.is_empty() {
            let names: Vec<String> = self.intervals.iter().map(fxflow_engine::duration::format).collect();
            return Assigned::Reject(
                "candle_interval",
                format!(
                    "a {} candle is not a part of any of the intervals {}: each must be a longer multiple of it",
                    candle.interval_name(),
                    names.join(", ")
                ),
            );
        }
        Assigned::At(event_time(candle.start))
    }

    fn contribution(
        &self,
        _key: &CandleKey,
        newest: &mut Newest,
        event: &FxEvent,
        time: EventTime,
    ) -> Contribution<BarPart> {
        if newest.0.is_some_and(|n| time <= n) {
            return Contribution::Repeat;
        }
        newest.0 = Some(time);
        if let Some(price) = event.price() {
            return Contribution::Value(BarPart::Tick {
                bid: price.bid,
                ask: price.ask,
            });
        }
        match event {
            FxEvent::Candle(c) => Contribution::Value(BarPart::Bar(Box::new(Bar::of_candle(time, c)))),
            _ => Contribution::StateOnly,
        }
    }

    fn add(&self, acc: &mut OpenBar, part: &BarPart, time: EventTime) {
        match (&mut acc.0, part) {
            (Some(bar), BarPart::Tick { bid, ask }) => bar.add_tick(time, *bid, *ask),
            (Some(bar), BarPart::Bar(other)) => bar.merge(other),
            (None, BarPart::Tick { bid, ask }) => acc.0 = Some(Bar::of_tick(time, *bid, *ask)),
            (None, BarPart::Bar(other)) => acc.0 = Some((**other).clone()),
        }
    }

    fn merge(&self, acc: &mut OpenBar, later: &OpenBar) {
        match (&mut acc.0, &later.0) {
            (Some(bar), Some(other)) => bar.merge(other),
            (None, Some(other)) => acc.0 = Some(other.clone()),
            (_, None) => {}
        }
    }

    fn result(&self, key: &CandleKey, _state: &Newest, window: Window, acc: &OpenBar, closed: bool) -> Option<FxEvent> {
        let bar = acc.0.as_ref()?;
        Some(FxEvent::Candle(Box::new(Candle {
            pair: key.pair,
            source: key.source,
            interval: key.interval,
            start: utc(window.start),
            mid: bar.mid,
            bid: bar.sides.map(|[bid, _]| bid),
            ask: bar.sides.map(|[_, ask]| ask),
            ticks: bar.ticks,
            closed,
        })))
    }
}

#[cfg(test)]
mod tests {
    use fxflow_engine::window::{Out, WindowSet};
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    use super::*;
    use crate::fx::Quote;

    fn quote(second: i64, bid: Decimal, ask: Decimal) -> FxEvent {
        FxEvent::Quote(Quote {
            pair: "EUR/USD".parse().unwrap(),
            bid,
            ask,
            ts: chrono::DateTime::from_timestamp(1_767_225_600 + second, 0).unwrap(), // 2026-01-01
            source: SourceName::intern("test").unwrap(),
            enrichment: None,
        })
    }

    /// Run `events` through the aggregation as the stage does; the candles that come out, then
    /// those still open at the end (as not final).
    fn candles(intervals: &[&str], config: WindowConfig, events: &[FxEvent]) -> Vec<Candle> {
        let intervals: Vec<Duration> = intervals
            .iter()
            .map(|i| fxflow_engine::duration::parse(i).unwrap())
            .collect();
        let mut set = WindowSet::new(CandleAggregation::new(&intervals), &config);
        let mut out = Vec::new();
        let mut keys = Vec::new();
        let take = |set: &mut WindowSet<FxEvent, CandleAggregation>, out: &mut Vec<FxEvent>| {
            for o in set.take_out() {
                match o {
                    Out::Closed { event, .. } => out.extend(event),
                    Out::Update { event, .. } => out.push(event),
                }
            }
        };
        for event in events {
            keys.clear();
            let Assigned::At(time) = set.aggregation().assign(event, &mut keys) else {
                continue;
            };
            let (input, _) = set.watermarks.observe(None, time);
            for key in &keys {
                set.add(key, event, time, input, None);
            }
            set.advance();
            take(&mut set, &mut out);
        }
        for (key, window, acc) in set.drain().0 {
            out.extend(set.result(&key, window, &acc, false));
        }
        out.into_iter()
            .map(|e| match e {
                FxEvent::Candle(c) => *c,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn mids(c: &Candle) -> (Decimal, Decimal, Decimal, Decimal, u64) {
        (c.mid.open, c.mid.high, c.mid.low, c.mid.close, c.ticks)
    }

    #[test]
    fn open_is_the_first_and_close_the_last_price_by_event_time() {
        let config = WindowConfig {
            lateness: Duration::from_secs(30),
            ..WindowConfig::default()
        };
        // Minute 0: 1.10 at 0 s, 1.13 at 20 s, 1.09 at 40 s, 1.11 at 59 s. Minute 1: 1.12, 1.125.
        let p = |s, v| quote(s, v, v);
        let bars = candles(
            &["1m"],
            config,
            &[
                p(0, dec!(1.10)),
                p(20, dec!(1.13)),
                p(40, dec!(1.09)),
                p(59, dec!(1.11)),
                p(61, dec!(1.12)),
                p(95, dec!(1.125)),
            ],
        );
        assert_eq!(bars.len(), 2);
        assert_eq!(mids(&bars[0]), (dec!(1.10), dec!(1.13), dec!(1.09), dec!(1.11), 4));
        assert!(bars[0].closed, "closed once the watermark (95 - 30 s) passed 60 s");
        assert_eq!(bars[0].start.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(bars[0].bid, None, "mid-only prices: no bid/ask bars");
        assert_eq!(mids(&bars[1]), (dec!(1.12), dec!(1.125), dec!(1.12), dec!(1.125), 2));
        assert!(!bars[1].closed, "the input ended inside it");
    }

    #[test]
    fn bars_merge_by_event_time_whatever_order_they_come_in() {
        let mut open = Bar::of_tick(EventTime(20), dec!(1.2), dec!(1.2));
        open.add_tick(EventTime(30), dec!(1.3), dec!(1.3));
        open.add_tick(EventTime(10), dec!(1.0), dec!(1.0)); // earlier: the new open
        open.merge(&Bar::of_tick(EventTime(25), dec!(1.5), dec!(1.5))); // inside: only the high
        assert_eq!(
            open.mid,
            Ohlc {
                open: dec!(1.0),
                high: dec!(1.5),
                low: dec!(1.0),
                close: dec!(1.3)
            }
        );
        assert_eq!((open.first, open.last, open.ticks), (EventTime(10), EventTime(30), 4));
        assert_eq!(open.sides, None, "mid-only prices");
        // A two-sided price later: the sides start from the mid bar so far.
        open.add_tick(EventTime(40), dec!(1.29), dec!(1.31));
        let [bid, ask] = open.sides.unwrap();
        assert_eq!((bid.open, bid.low, bid.close), (dec!(1.0), dec!(1.0), dec!(1.29)));
        assert_eq!((ask.high, ask.close), (dec!(1.5), dec!(1.31)));
    }

    #[test]
    fn two_sided_prices_make_bid_and_ask_bars_and_every_interval_gets_its_own() {
        let bars = candles(
            &["1m", "5m"],
            WindowConfig::default(),
            &[
                quote(0, dec!(1.1000), dec!(1.1002)),
                quote(30, dec!(1.1010), dec!(1.1014)),
                quote(70, dec!(1.0990), dec!(1.0992)),
                quote(301, dec!(1.1000), dec!(1.1001)),
            ],
        );
        let minute = &bars[0];
        assert_eq!(minute.interval, Duration::from_secs(60));
        assert_eq!(
            mids(minute),
            (dec!(1.1001), dec!(1.1012), dec!(1.1001), dec!(1.1012), 2)
        );
        let bid = minute.bid.unwrap();
        let ask = minute.ask.unwrap();
        assert_eq!(
            (bid.open, bid.high, bid.low, bid.close),
            (dec!(1.1000), dec!(1.1010), dec!(1.1000), dec!(1.1010))
        );
        assert_eq!((ask.open, ask.close), (dec!(1.1002), dec!(1.1014)));
        let five = bars
            .iter()
            .find(|c| c.interval == Duration::from_secs(300) && c.closed)
            .unwrap();
        assert_eq!(mids(five), (dec!(1.1001), dec!(1.1012), dec!(1.0991), dec!(1.0991), 3));
    }

    #[test]
    fn higher_intervals_from_lower_ones_equal_those_from_the_ticks() {
        // A random-ish walk of 2 hours of ticks every 7 s, and one more tick a minute later
        // (which closes the last minute, so the hours built from minutes close too).
        let mut ticks: Vec<FxEvent> = (0..1030)
            .map(|i| {
                let p = dec!(1.1) + Decimal::new((i * 7919) % 200 - 100, 5);
                quote(i * 7, p, p + dec!(0.0002))
            })
            .collect();
        ticks.push(quote(7300, dec!(1.1), dec!(1.1)));
        let direct = candles(&["1h"], WindowConfig::default(), &ticks);
        let minutes: Vec<FxEvent> = candles(&["1m"], WindowConfig::default(), &ticks)
            .into_iter()
            .filter(|c| c.closed)
            .map(|c| FxEvent::Candle(Box::new(c)))
            .collect();
        let built = candles(&["1h"], WindowConfig::default(), &minutes);
        let closed = |bars: Vec<Candle>| bars.into_iter().filter(|c| c.closed).collect::<Vec<_>>();
        let direct = closed(direct);
        assert_eq!(direct.len(), 2);
        assert_eq!(closed(built), direct);
    }

    #[test]
    fn a_re_delivered_price_is_not_counted_twice() {
        let p = |s, v| quote(s, v, v);
        let bars = candles(
            &["1m"],
            WindowConfig::default(),
            &[
                p(1, dec!(1.1)),
                p(2, dec!(1.2)),
                p(1, dec!(1.1)),
                p(2, dec!(1.2)),
                p(3, dec!(1.0)),
            ],
        );
        assert_eq!(mids(&bars[0]), (dec!(1.1), dec!(1.2), dec!(1.0), dec!(1.0), 3));
    }

    #[test]
    fn settings_are_checked() {
        let config: CandlesConfig = serde_json::from_value(serde_json::json!({
            "intervals": ["1m", "1500ms", "1m", "400d"]
        }))
        .unwrap();
        let problems: Vec<String> = config.check().into_iter().map(|p| p.message).collect();
        assert_eq!(
            problems,
            vec![
                "`1500ms` is not a whole number of seconds",
                "`1m` is listed twice",
                "`400d` is longer than 366 days"
            ]
        );
    }
}
