//! The rule book: alert rules indexed so a price move costs what it fires.
//!
//! Rules are grouped per (pair, price field). Threshold rules live in ordered
//! maps keyed by threshold, split by direction and by state:
//! - *armed* `Above` rules fire when the price is above their threshold, so a
//!   sample at `p` fires exactly the armed keys `< p`; `Below` mirrors it;
//! - *armed* `CrossingUp` rules fire for keys in `(previous, p]`; `CrossingDown`
//!   for keys in `[p, previous)`;
//! - a rule that fired with trigger `Every` is *disarmed*: it waits in a
//!   re-arm map keyed by `threshold ∓ rearm` and returns to the armed map once
//!   the price goes back past that level (hysteresis).
//!
//! A sample therefore touches `O(log n + k)` entries, where `k` is the number of
//! rules that fire or re-arm — not the number of rules. Every other rule (channels,
//! `Crossing`, `Moving…`, `PctChange`, `ZScore`, and any rule with a per-bar trigger) is
//! *scanned*: judged on every sample of its (pair, price field) by [`judge`], against the
//! book's [`Series`] of recent samples, or, with `OnBarClose`, against the rule's own series
//! of bar closes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::fx::quote::mid;
use crate::fx::{
    AlertFired, AlertRule, Calendar, Channel, Condition, Lookback, Pair, Price, PriceField, SourceName, Trigger,
};
use crate::transforms::{event_time, utc};
use fxflow_engine::fast_hash::FastMap;
use fxflow_engine::window::WindowShape;

type RuleId = usize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule with id `{0}` already exists")]
    Duplicate(String),
    #[error("rule `{0}`: {1}")]
    Invalid(String, String),
}

/// How far back a `Moving…` rule compares (the rule's [`Lookback`] in the book's units).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Over {
    Bars(usize),
    Window(chrono::Duration),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Above(Decimal),
    Below(Decimal),
    CrossingUp(Decimal),
    CrossingDown(Decimal),
    Crossing(Decimal),
    Entering(Channel),
    Exiting(Channel),
    Inside(Channel),
    Outside(Channel),
    /// `MovingUp`, `MovingDown` and their percent forms: a move of at least `size`
    /// (price units, or percent of the reference when `percent`).
    Moving {
        up: bool,
        percent: bool,
        size: Decimal,
        over: Over,
    },
    Pct {
        percent: Decimal,
        window: chrono::Duration,
    },
    ZScore {
        returns: usize,
        k: Decimal,
    },
    /// Not judged per sample: a [`StaleWatch`] and the book's deadline indexes.
    Stale {
        max_age: chrono::Duration,
        calendar: Calendar,
        source: Option<SourceName>,
    },
    Divergence {
        bps: Decimal,
        sources: SourceSet,
    },
}

/// Most sources a `Divergence` rule compares.
pub const MAX_DIVERGENCE_SOURCES: usize = 4;

/// The sources a `Divergence` rule compares (`Copy`, like the rest of [`Kind`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct SourceSet([Option<SourceName>; MAX_DIVERGENCE_SOURCES]);

impl SourceSet {
    fn of(names: &[String]) -> SourceSet {
        let mut set = [None; MAX_DIVERGENCE_SOURCES];
        for (slot, name) in set.iter_mut().zip(names) {
            *slot = SourceName::intern(name).ok();
        }
        SourceSet(set)
    }

    fn iter(&self) -> impl Iterator<Item = SourceName> + '_ {
        self.0.iter().flatten().copied()
    }
}

impl Kind {
    fn of(condition: &Condition) -> Kind {
        let over = |over: &Lookback| match over {
            Lookback::Bars(n) => Over::Bars(*n as usize),
            Lookback::Window(w) => Over::Window(chrono::Duration::from_std(*w).unwrap_or(chrono::Duration::MAX)),
        };
        match condition {
            Condition::Above(t) => Kind::Above(*t),
            Condition::Below(t) => Kind::Below(*t),
            Condition::CrossingUp(t) => Kind::CrossingUp(*t),
            Condition::CrossingDown(t) => Kind::CrossingDown(*t),
            Condition::Crossing(t) => Kind::Crossing(*t),
            Condition::EnteringChannel { low, high } => Kind::Entering(Channel { low: *low, high: *high }),
            Condition::ExitingChannel { low, high } => Kind::Exiting(Channel { low: *low, high: *high }),
            Condition::InsideChannel { low, high } => Kind::Inside(Channel { low: *low, high: *high }),
            Condition::OutsideChannel { low, high } => Kind::Outside(Channel { low: *low, high: *high }),
            Condition::MovingUp { amount, over: o } => Kind::Moving {
                up: true,
                percent: false,
                size: *amount,
                over: over(o),
            },
            Condition::MovingDown { amount, over: o } => Kind::Moving {
                up: false,
                percent: false,
                size: *amount,
                over: over(o),
            },
            Condition::MovingUpPercent { percent, over: o } => Kind::Moving {
                up: true,
                percent: true,
                size: *percent,
                over: over(o),
            },
            Condition::MovingDownPercent { percent, over: o } => Kind::Moving {
                up: false,
                percent: true,
                size: *percent,
                over: over(o),
            },
            Condition::PctChange { percent, window } => Kind::Pct {
                percent: *percent,
                window: chrono::Duration::from_std(*window).unwrap_or(chrono::Duration::MAX),
            },
            Condition::ZScore { returns, k } => Kind::ZScore {
                returns: *returns as usize,
                k: *k,
            },
            Condition::Stale {
                max_age,
                calendar,
                source,
            } => Kind::Stale {
                max_age: chrono::Duration::from_std(*max_age).unwrap_or(chrono::Duration::MAX),
                calendar: *calendar,
                source: source.as_deref().and_then(|s| SourceName::intern(s).ok()),
            },
            Condition::Divergence { bps, sources } => Kind::Divergence {
                bps: *bps,
                sources: SourceSet::of(sources),
            },
        }
    }

    /// A plain threshold: such rules live in the ordered indexes (unless a per-bar trigger
    /// makes them scanned).
    fn threshold_kind(&self) -> bool {
        matches!(
            self,
            Kind::Above(_) | Kind::Below(_) | Kind::CrossingUp(_) | Kind::CrossingDown(_)
        )
    }

    /// A state (true for as long as the price stays put), not a moment: it fires at the
    /// rule's creation when it already holds.
    fn state(&self) -> bool {
        matches!(
            self,
            Kind::Above(_) | Kind::Below(_) | Kind::Inside(_) | Kind::Outside(_)
        )
    }

    /// True for threshold rules that fire on rising prices (they re-arm when the price falls back).
    fn rising(&self) -> bool {
        matches!(self, Kind::Above(_) | Kind::CrossingUp(_))
    }

    /// The same condition with its price constants written at `scale` decimal places where
    /// they have fewer (the same values): a comparison of two decimals of one scale is a
    /// compare of their integers, of two scales a rescaling first — on every sample.
    fn at_scale(self, scale: u32) -> Kind {
        let widen = |d: Decimal| {
            if d.scale() >= scale {
                return d;
            }
            let mut wide = d;
            wide.rescale(scale);
            if wide == d {
                wide
            } else {
                d // too many digits for that scale: left as it is
            }
        };
        let channel = |c: Channel| Channel {
            low: widen(c.low),
            high: widen(c.high),
        };
        match self {
            Kind::Above(t) => Kind::Above(widen(t)),
            Kind::Below(t) => Kind::Below(widen(t)),
            Kind::CrossingUp(t) => Kind::CrossingUp(widen(t)),
            Kind::CrossingDown(t) => Kind::CrossingDown(widen(t)),
            Kind::Crossing(t) => Kind::Crossing(widen(t)),
            Kind::Entering(c) => Kind::Entering(channel(c)),
            Kind::Exiting(c) => Kind::Exiting(channel(c)),
            Kind::Inside(c) => Kind::Inside(channel(c)),
            Kind::Outside(c) => Kind::Outside(channel(c)),
            Kind::Moving {
                up,
                percent: false,
                size,
                over,
            } => Kind::Moving {
                up,
                percent: false,
                size: widen(size),
                over,
            },
            other => other,
        }
    }

    /// The key of a threshold rule in its index.
    fn threshold(&self) -> Decimal {
        match *self {
            Kind::Above(t) | Kind::Below(t) | Kind::CrossingUp(t) | Kind::CrossingDown(t) => t,
            _ => Decimal::ZERO,
        }
    }
}

/// When a rule is judged and how often it may fire, beside `once`/`cooldown`/`rearm`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cadence {
    /// On every sample (`Once`, `Every`).
    Sample,
    /// On every sample, at most one firing per bar.
    OncePerBar(WindowShape),
    /// On each bar's close, when a sample of a later bar arrives.
    OnBarClose(WindowShape),
}

/// Recent samples of one series (a book's samples, or a rule's bar closes), kept as far
/// back as its rules look.
#[derive(Debug, Default, Clone)]
struct Series {
    /// The last sample's time and price.
    last: Option<(DateTime<Utc>, Decimal)>,
    /// (ts, price), oldest first, the current sample included, for the longest window.
    history: VecDeque<(DateTime<Utc>, Decimal)>,
    longest_window: chrono::Duration,
    /// Prices of the last `most_bars + 1` samples, the current one last.
    recent: VecDeque<Decimal>,
    most_bars: usize,
    /// Log returns of the last samples, oldest first, kept for the longest `ZScore` rule
    /// (without the current sample's until [`Series::settle`]).
    returns: VecDeque<f64>,
    most_returns: usize,
    /// The latest price of each source, for `Divergence` rules.
    by_source: Vec<(SourceName, Decimal)>,
    track_sources: bool,
}

impl Series {
    /// Keep enough for a rule of `kind`.
    fn needs(&mut self, kind: &Kind) {
        match *kind {
            Kind::Pct { window, .. }
            | Kind::Moving {
                over: Over::Window(window),
                ..
            } => self.longest_window = self.longest_window.max(window),
            Kind::Moving {
                over: Over::Bars(n), ..
            } => self.most_bars = self.most_bars.max(n),
            Kind::ZScore { returns, .. } => self.most_returns = self.most_returns.max(returns),
            Kind::Divergence { .. } => self.track_sources = true,
            _ => {}
        }
    }

    /// Take a new sample in; returns the previous price and, when a `ZScore` rule wants
    /// it, the log return from it.
    fn observe(&mut self, ts: DateTime<Utc>, price: Decimal, source: SourceName) -> (Option<Decimal>, Option<f64>) {
        let previous = self.last.replace((ts, price)).map(|(_, p)| p);
        self.note_source(source, price);
        if self.longest_window > chrono::Duration::zero() {
            self.history.push_back((ts, price));
            let horizon = ts - self.longest_window;
            while self.history.front().is_some_and(|(t, _)| *t < horizon) {
                self.history.pop_front();
            }
        }
        if self.most_bars > 0 {
            self.recent.push_back(price);
            while self.recent.len() > self.most_bars + 1 {
                self.recent.pop_front();
            }
        }
        let latest_return = match previous {
            Some(prev) if self.most_returns > 0 => log_return(prev, price),
            _ => None,
        };
        (previous, latest_return)
    }

    /// The latest price of `source`, when a `Divergence` rule compares sources.
    fn note_source(&mut self, source: SourceName, price: Decimal) {
        if self.track_sources {
            match self.by_source.iter_mut().find(|(s, _)| *s == source) {
                Some((_, latest)) => *latest = price,
                None => self.by_source.push((source, price)),
            }
        }
    }

    /// After the rules judged the sample: its return joins the ones `ZScore` measures against.
    fn settle(&mut self, latest_return: Option<f64>) {
        if let Some(r) = latest_return {
            self.returns.push_back(r);
            while self.returns.len() > self.most_returns {
                self.returns.pop_front();
            }
        }
    }

    /// The oldest price within `window` of `ts` (the current one at least).
    fn window_start(&self, ts: DateTime<Utc>, window: chrono::Duration) -> Option<Decimal> {
        let first = self.history.partition_point(|(t, _)| *t < ts - window);
        self.history.get(first).map(|(_, p)| *p)
    }

    /// The price `n` samples before the current one.
    fn bars_ago(&self, n: usize) -> Option<Decimal> {
        let len = self.recent.len();
        (len > n).then(|| self.recent[len - 1 - n])
    }

    fn state(&self) -> SeriesState {
        SeriesState {
            last: self.last,
            history: self.history.iter().copied().collect(),
            recent: self.recent.iter().copied().collect(),
            returns: self.returns.iter().copied().collect(),
            sources: self.by_source.clone(),
        }
    }

    fn restore(&mut self, state: SeriesState) {
        self.last = state.last;
        self.history = state.history.into_iter().collect();
        self.recent = state.recent.into_iter().collect();
        self.returns = state.returns.into_iter().collect();
        self.by_source = state.sources;
    }
}

/// What a scanned rule's condition says of one sample.
#[derive(Debug, Clone)]
struct Judged {
    holds: bool,
    /// How far the price is back from the condition's edge, in the condition's units
    /// (price, percent, standard deviations): a disarmed `Every` rule re-arms once this
    /// reaches its `rearm` and the condition no longer holds.
    margin: Option<Decimal>,
    /// The firing's `previous`: the price the condition compared against.
    previous: Option<Decimal>,
    /// Why it fired, when the rule's condition in words does not say it all (the firing's
    /// `condition`).
    reason: Option<Arc<str>>,
}

/// Judge a scanned rule's condition on `price` at `ts`, the series having observed it,
/// `previous` being the sample before. `None` when the series cannot tell yet (a `Moving`
/// lookback or a `ZScore` history not filled).
fn judge(
    kind: Kind,
    series: &Series,
    ts: DateTime<Utc>,
    price: Decimal,
    previous: Option<Decimal>,
    latest_return: Option<f64>,
    need_margin: bool,
) -> Option<Judged> {
    // The margin matters only to a disarmed rule: an armed one is not charged for it.
    let plain = |holds: bool, margin: &dyn Fn() -> Decimal| Judged {
        holds,
        margin: need_margin.then(margin),
        previous,
        reason: None,
    };
    // Distance outside (positive) or inside (negative) a channel, and the reverse.
    let outside = |c: Channel| move || (c.low - price).max(price - c.high);
    let inside = |c: Channel| move || (price - c.low).min(c.high - price);
    Some(match kind {
        Kind::Above(t) => plain(price > t, &|| t - price),
        Kind::Below(t) => plain(price < t, &|| price - t),
        Kind::CrossingUp(t) => plain(previous.is_some_and(|q| q < t && t <= price), &|| t - price),
        Kind::CrossingDown(t) => plain(previous.is_some_and(|q| q > t && t >= price), &|| price - t),
        Kind::Crossing(t) => plain(
            previous.is_some_and(|q| (q < t && t <= price) || (q > t && t >= price)),
            &|| (price - t).abs(),
        ),
        Kind::Entering(c) => plain(
            previous.is_some_and(|q| !c.contains(q)) && c.contains(price),
            &outside(c),
        ),
        Kind::Exiting(c) => plain(
            previous.is_some_and(|q| c.contains(q)) && !c.contains(price),
            &inside(c),
        ),
        Kind::Inside(c) => plain(c.contains(price), &outside(c)),
        Kind::Outside(c) => plain(!c.contains(price), &inside(c)),
        Kind::Moving {
            up,
            percent,
            size,
            over,
        } => {
            let reference = match over {
                Over::Bars(n) => series.bars_ago(n)?,
                Over::Window(window) => series.window_start(ts, window)?,
            };
            let moved = if up { price - reference } else { reference - price };
            if percent && reference <= Decimal::ZERO {
                return None;
            }
            // moved / reference × 100 ≥ size, compared without the division (exact, and the
            // hot path); only the margin, for re-arming, divides.
            let holds = match percent {
                true => moved * Decimal::ONE_HUNDRED >= size * reference,
                false => moved >= size,
            };
            let margin = need_margin.then(|| match percent {
                true => size - moved / reference * Decimal::ONE_HUNDRED,
                false => size - moved,
            });
            Judged {
                holds,
                margin,
                previous: Some(reference),
                reason: None,
            }
        }
        Kind::Pct { percent, window } => {
            let reference = series.window_start(ts, window)?;
            if reference.is_zero() {
                return None;
            }
            let change = (price - reference) / reference * Decimal::ONE_HUNDRED;
            let rising = percent >= Decimal::ZERO;
            Judged {
                holds: if rising { change >= percent } else { change <= percent },
                margin: Some(if rising { percent - change } else { change - percent }),
                previous: Some(reference),
                reason: None,
            }
        }
        Kind::ZScore { returns, k } => {
            let z = zscore(&series.returns, returns, latest_return?)?;
            let k = k.to_f64().unwrap_or(f64::INFINITY);
            Judged {
                holds: z.abs() >= k,
                // Statistics are f64; the margin only decides re-arming.
                margin: Decimal::from_f64_retain(k - z.abs()),
                previous,
                reason: None,
            }
        }
        Kind::Divergence { bps, sources } => divergence(bps, sources, series, price, need_margin)?,
        Kind::Stale { .. } => return None,
    })
}

/// How far apart the latest prices of `sources` are: more than `bps` basis points of the
/// mean of the highest and lowest holds. `None` until every source has sent a price.
fn divergence(bps: Decimal, sources: SourceSet, series: &Series, price: Decimal, need_margin: bool) -> Option<Judged> {
    let mut prices = Vec::with_capacity(MAX_DIVERGENCE_SOURCES);
    for source in sources.iter() {
        let (_, p) = series.by_source.iter().find(|(s, _)| *s == source)?;
        prices.push((source, *p));
    }
    let (low_source, low) = prices.iter().copied().min_by_key(|(_, p)| *p)?;
    let (high_source, high) = prices.iter().copied().max_by_key(|(_, p)| *p)?;
    let sum = low + high;
    if sum <= Decimal::ZERO {
        return None;
    }
    let spread = high - low;
    // spread / ((high + low) / 2) × 10 000 > bps, without the division (exact).
    let holds = spread * Decimal::from(20_000) > bps * sum;
    let apart = || spread * Decimal::from(20_000) / sum;
    // The firing's previous: the price farthest from this sample's.
    let other = if (price - low).abs() >= (high - price).abs() {
        low
    } else {
        high
    };
    Some(Judged {
        holds,
        margin: need_margin.then(|| bps - apart()),
        previous: Some(other),
        reason: (holds && !need_margin).then(|| {
            Arc::from(format!(
                "{low_source} {low} and {high_source} {high} are {} bps apart (more than {bps})",
                apart().round_dp(1)
            ))
        }),
    })
}

/// What a `Stale` rule knows of its pair's feed.
#[derive(Debug, Clone, Copy)]
struct StaleWatch {
    /// The newest sample watched: its time, price (the rule's field) and source.
    last: (DateTime<Utc>, Decimal, SourceName),
    /// When the feed turns stale without another sample (with `OnBarClose`: the close of
    /// the bar it turns stale in).
    deadline: Option<DateTime<Utc>>,
    /// The newest sample arrived before its deadline by the wall clock: the feed is live,
    /// and the wall clock judges it too.
    live: bool,
}

/// A bar an `OnBarClose` rule has open, and the closes of the bars before it.
#[derive(Debug, Clone)]
struct OpenBar {
    window: fxflow_engine::window::Window,
    close: Decimal,
    source: SourceName,
    closes: Series,
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    pair: Pair,
    field: PriceField,
    kind: Kind,
    once: bool,
    cooldown: chrono::Duration,
    rearm: Decimal,
    expires: Option<DateTime<Utc>>,
    condition: Arc<str>,
    /// The owner's tenant, carried by every firing.
    tenant: Option<Arc<str>>,
    /// The rule as JSON: restored state and retirements apply only to the same definition.
    definition: Arc<str>,
    last_fired: Option<DateTime<Utc>>,
    /// Disarmed rules wait for the price to go back past `threshold ∓ rearm`.
    armed: bool,
    cadence: Cadence,
    /// `OnBarClose`: the bar being built.
    bar: Option<OpenBar>,
    /// `Stale`: the feed watched (none before its first sample).
    watch: Option<StaleWatch>,
}

impl Rule {
    /// Whether the rule lives in a threshold index (else it is scanned, or watches staleness).
    fn indexed(&self) -> bool {
        self.kind.threshold_kind() && self.cadence == Cadence::Sample
    }

    fn stale(&self) -> bool {
        matches!(self.kind, Kind::Stale { .. })
    }

    fn rearm_level(&self) -> Decimal {
        let t = self.kind.threshold();
        if self.kind.rising() {
            t - self.rearm
        } else {
            t + self.rearm
        }
    }
}

type Index = BTreeMap<Decimal, Vec<RuleId>>;

fn index_insert(index: &mut Index, key: Decimal, id: RuleId) {
    index.entry(key).or_default().push(id);
}

fn index_remove(index: &mut Index, key: Decimal, id: RuleId) {
    if let Some(ids) = index.get_mut(&key) {
        ids.retain(|r| *r != id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

/// Remove and return every id under keys in `range`.
fn drain_range(index: &mut Index, range: (Bound<Decimal>, Bound<Decimal>)) -> Vec<RuleId> {
    let keys: Vec<Decimal> = index.range(range).map(|(k, _)| *k).collect();
    keys.into_iter()
        .flat_map(|k| index.remove(&k).unwrap_or_default())
        .collect()
}

/// Rules and recent prices of one (pair, price field).
#[derive(Debug, Default)]
struct Book {
    /// The recent samples.
    series: Series,
    above: Index,
    below: Index,
    up: Index,
    down: Index,
    /// Disarmed rising rules, keyed by re-arm level: re-arm when price ≤ key.
    rearm_falling: Index,
    /// Disarmed falling rules: re-arm when price ≥ key.
    rearm_rising: Index,
    /// Rules that are not indexed: judged on every sample.
    scanned: Vec<RuleId>,
    /// `Stale` rules: their watch is renewed by every sample.
    stale: Vec<RuleId>,
    /// The scale the scanned rules' constants are written at (see [`Kind::at_scale`]):
    /// the scale of the samples so far, which rarely changes.
    scale: Option<u32>,
    /// The newest sample time per source: an older or equal one from the same
    /// source is a re-delivery (at-least-once upstream) and changes nothing.
    newest: Vec<(SourceName, DateTime<Utc>)>,
}

impl Book {
    /// Every live rule of this book, armed or not.
    fn slots(&self) -> impl Iterator<Item = RuleId> + '_ {
        [
            &self.above,
            &self.below,
            &self.up,
            &self.down,
            &self.rearm_falling,
            &self.rearm_rising,
        ]
        .into_iter()
        .flat_map(|index| index.values().flatten().copied())
        .chain(self.scanned.iter().copied())
        .chain(self.stale.iter().copied())
    }
}

impl Book {
    fn armed_index(&mut self, kind: &Kind) -> Option<&mut Index> {
        match kind {
            Kind::Above(_) => Some(&mut self.above),
            Kind::Below(_) => Some(&mut self.below),
            Kind::CrossingUp(_) => Some(&mut self.up),
            Kind::CrossingDown(_) => Some(&mut self.down),
            _ => None,
        }
    }

    fn rearm_index(&mut self, rising: bool) -> &mut Index {
        if rising {
            &mut self.rearm_falling
        } else {
            &mut self.rearm_rising
        }
    }
}

/// A price sample: one quote or cross rate.
pub type Sample = Price;

/// Where and when a scanned rule fires: the sample (or, with `OnBarClose`, the bar's
/// close, stamped with the bar's end).
struct Observation {
    pair: Pair,
    price: Decimal,
    ts: DateTime<Utc>,
    source: SourceName,
}

/// The log return from `previous` to `price` (statistics: `f64`).
fn log_return(previous: Decimal, price: Decimal) -> Option<f64> {
    let (a, b) = (previous.to_f64()?, price.to_f64()?);
    (a > 0.0 && b > 0.0).then(|| (b / a).ln())
}

/// How many sample standard deviations `r` is from the mean of the last `n`
/// of `returns`; `None` with fewer than `n`, or when they are all equal.
fn zscore(returns: &VecDeque<f64>, n: usize, r: f64) -> Option<f64> {
    if n < 2 || returns.len() < n {
        return None;
    }
    let recent = returns.range(returns.len() - n..);
    let mean = recent.clone().sum::<f64>() / n as f64;
    let variance = recent.map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = variance.sqrt();
    (sd > 0.0 && sd.is_finite()).then(|| (r - mean) / sd)
}

/// Every rule, indexed per (pair, price field).
#[derive(Debug, Default)]
pub struct RuleBook {
    rules: Vec<Option<Rule>>,
    free: Vec<RuleId>,
    by_id: HashMap<Arc<str>, RuleId>,
    books: FastMap<Pair, [Option<Box<Book>>; 3]>,
    expiries: BTreeMap<DateTime<Utc>, Vec<RuleId>>,
    /// Samples ignored as re-deliveries since the last [`RuleBook::take_repeats`].
    repeats: u64,
    /// `Once` rules that fired, by id: re-adding the same definition (a
    /// restart re-reading the rule changelog) keeps them retired.
    retired: HashMap<Arc<str>, RetiredRule>,
    /// Restored rule state whose rule has not been added yet.
    restored: HashMap<Arc<str>, RuleState>,
    /// The newest sample of each pair that has no rules yet, so a rule added
    /// later starts from it: a state rule that already holds fires at once,
    /// a crossing has its previous price.
    unwatched: FastMap<Pair, Sample>,
    /// The newest sample time of any pair: the event clock `Stale` rules are judged by.
    clock: Option<DateTime<Utc>>,
    /// `Stale` rules by deadline; those of live feeds also in `live_deadlines`.
    deadlines: std::collections::BTreeSet<(DateTime<Utc>, RuleId)>,
    live_deadlines: std::collections::BTreeSet<(DateTime<Utc>, RuleId)>,
}

/// A retired `Once` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredRule {
    pub id: Arc<str>,
    pub pair: Pair,
    pub definition: Arc<str>,
}

/// The state of one rule that differs from a new rule's (armed, never fired, no bar open).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub id: Arc<str>,
    pub definition: Arc<str>,
    pub armed: bool,
    pub last_fired: Option<DateTime<Utc>>,
    /// An `OnBarClose` rule's open bar (absent in states saved before the trigger existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bar: Option<BarState>,
}

/// An `OnBarClose` rule's open bar and the closes before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarState {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub close: Decimal,
    pub source: SourceName,
    pub closes: SeriesState,
}

/// A series of recent prices, saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    pub last: Option<(DateTime<Utc>, Decimal)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<(DateTime<Utc>, Decimal)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Decimal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<(SourceName, Decimal)>,
}

/// The recent prices one (pair, price field) keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookState {
    pub field: PriceField,
    pub last: Option<(DateTime<Utc>, Decimal)>,
    /// The `PctChange` window, oldest first.
    pub history: Vec<(DateTime<Utc>, Decimal)>,
    /// The log returns `ZScore` rules measure against, oldest first.
    #[serde(default)]
    pub returns: Vec<f64>,
    /// The last prices `Moving…(over: Bars(n))` rules look back over, oldest first
    /// (absent in states saved before those rules existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Decimal>,
    /// The latest price of each source, for `Divergence` rules (absent before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<(SourceName, Decimal)>,
    /// The newest sample time per source.
    #[serde(default)]
    pub newest: Vec<(SourceName, DateTime<Utc>)>,
}

/// Everything the rule book knows about one pair beyond the rule definitions:
/// enough to continue exactly where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairRules {
    pub books: Vec<BookState>,
    pub rules: Vec<RuleState>,
    pub retired: Vec<RetiredRule>,
}

/// The JSON a rule is compared by.
fn definition_of(rule: &AlertRule) -> Arc<str> {
    Arc::from(serde_json::to_string(rule).expect("an alert rule always serializes"))
}

fn field_index(field: PriceField) -> usize {
    match field {
        PriceField::Mid => 0,
        PriceField::Bid => 1,
        PriceField::Ask => 2,
    }
}

const FIELDS: [PriceField; 3] = [PriceField::Mid, PriceField::Bid, PriceField::Ask];

/// Checks a rule's settings; used by the stage config's validation too.
/// Most returns a z-score rule measures against (each is kept in memory per book).
pub const MAX_RETURNS: u32 = 100_000;

/// Scanned rules' constants are widened to the samples' scale up to this many places.
const MAX_WIDENED_SCALE: u32 = 12;

/// Most samples (or bars) a `Moving…` rule looks back over.
pub const MAX_BARS: u32 = 100_000;

/// The longest quiet a `Stale` rule waits for.
const MAX_STALE_AGE: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

pub fn validate(rule: &AlertRule) -> Result<(), String> {
    let lookback = |over: &Lookback| match over {
        Lookback::Bars(0) => Err("the lookback must be at least 1 bar".to_owned()),
        Lookback::Bars(n) if *n > MAX_BARS => Err(format!("{n} bars is too many: at most {MAX_BARS}")),
        Lookback::Window(w) if w.is_zero() => Err("the lookback window must be longer than zero".to_owned()),
        _ => Ok(()),
    };
    let channel = |c: &Channel| {
        if c.low <= Decimal::ZERO {
            Err(format!("low {} must be positive", c.low))
        } else if c.low >= c.high {
            Err(format!("low {} must be below high {}", c.low, c.high))
        } else {
            Ok(())
        }
    };
    match &rule.condition {
        Condition::Above(t)
        | Condition::Below(t)
        | Condition::CrossingUp(t)
        | Condition::CrossingDown(t)
        | Condition::Crossing(t)
            if *t <= Decimal::ZERO =>
        {
            Err(format!("threshold {t} must be positive"))
        }
        Condition::EnteringChannel { .. }
        | Condition::ExitingChannel { .. }
        | Condition::InsideChannel { .. }
        | Condition::OutsideChannel { .. } => channel(&rule.condition.channel().expect("a channel condition")),
        Condition::MovingUp { amount, .. } | Condition::MovingDown { amount, .. } if *amount <= Decimal::ZERO => {
            Err(format!("amount {amount} must be positive"))
        }
        Condition::MovingUpPercent { percent, .. } | Condition::MovingDownPercent { percent, .. }
            if *percent <= Decimal::ZERO =>
        {
            Err(format!(
                "percent {percent} must be positive (the direction is in the name)"
            ))
        }
        Condition::MovingUp { over, .. }
        | Condition::MovingDown { over, .. }
        | Condition::MovingUpPercent { over, .. }
        | Condition::MovingDownPercent { over, .. } => lookback(over),
        _ => Ok(()),
    }?;
    match &rule.condition {
        Condition::PctChange { window, .. } if window.is_zero() => Err("the window must be longer than zero".into()),
        Condition::PctChange { percent, .. } if percent.is_zero() => Err("percent must not be zero".into()),
        Condition::ZScore { returns, .. } if *returns < 2 => Err(format!(
            "a z-score needs at least 2 returns to measure against, not {returns}"
        )),
        Condition::ZScore { returns, .. } if *returns > MAX_RETURNS => Err(format!(
            "a z-score over {returns} returns is too many: at most {MAX_RETURNS}"
        )),
        Condition::ZScore { k, .. } if *k <= Decimal::ZERO => Err(format!("k {k} must be positive")),
        Condition::Stale { max_age, .. } if max_age.is_zero() => Err("max_age must be longer than zero".into()),
        Condition::Stale { max_age, .. } if *max_age > MAX_STALE_AGE => Err(format!(
            "max_age of {} is too long: at most 366 days",
            fxflow_engine::duration::format(max_age)
        )),
        Condition::Stale { source: Some(s), .. } if s.is_empty() => Err("source must not be empty".into()),
        Condition::Divergence { bps, .. } if *bps <= Decimal::ZERO => Err(format!("bps {bps} must be positive")),
        Condition::Divergence { sources, .. }
            if sources.len() < 2
                || sources.len() > MAX_DIVERGENCE_SOURCES
                || sources.iter().any(|s| s.is_empty())
                || sources.iter().collect::<std::collections::HashSet<_>>().len() != sources.len() =>
        {
            Err(format!(
                "sources must name 2 to {MAX_DIVERGENCE_SOURCES} different sources, not {sources:?}"
            ))
        }
        _ => match &rule.trigger {
            Trigger::Every { rearm, .. } if *rearm < Decimal::ZERO => {
                Err(format!("rearm {rearm} must not be negative"))
            }
            Trigger::OncePerBar(bar) | Trigger::OnBarClose(bar) if bar.is_zero() => {
                Err("the bar must be longer than zero".into())
            }
            _ => Ok(()),
        },
    }
}

impl RuleBook {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Whether samples of `pair` change the book's state (it has, or had, rules for it).
    pub fn knows(&self, pair: Pair) -> bool {
        self.books.contains_key(&pair)
    }

    /// Add a rule. A state rule (`Above`/`Below`) that already holds against
    /// the pair's last price fires at once; those firings are returned.
    pub fn add(&mut self, rule: &AlertRule) -> Result<Vec<AlertFired>, RuleError> {
        if self.by_id.contains_key(rule.id.as_str()) {
            return Err(RuleError::Duplicate(rule.id.clone()));
        }
        validate(rule).map_err(|e| RuleError::Invalid(rule.id.clone(), e))?;
        let definition = definition_of(rule);
        match self.retired.get(rule.id.as_str()) {
            Some(retired) if retired.definition == definition => return Ok(Vec::new()),
            Some(_) => {
                self.retired.remove(rule.id.as_str());
            }
            None => {}
        }
        let restored = self
            .restored
            .remove(rule.id.as_str())
            .filter(|state| state.definition == definition);
        let kind = Kind::of(&rule.condition);
        let (once, cooldown, rearm, cadence) = match &rule.trigger {
            Trigger::Once => (true, chrono::Duration::zero(), Decimal::ZERO, Cadence::Sample),
            Trigger::Every { cooldown, rearm } => (
                false,
                chrono::Duration::from_std(*cooldown).unwrap_or(chrono::Duration::MAX),
                *rearm,
                Cadence::Sample,
            ),
            Trigger::OncePerBar(bar) => (
                false,
                chrono::Duration::zero(),
                Decimal::ZERO,
                Cadence::OncePerBar(WindowShape::tumbling(*bar)),
            ),
            Trigger::OnBarClose(bar) => (
                false,
                chrono::Duration::zero(),
                Decimal::ZERO,
                Cadence::OnBarClose(WindowShape::tumbling(*bar)),
            ),
        };
        let id: Arc<str> = Arc::from(rule.id.as_str());
        let state = Rule {
            id: id.clone(),
            pair: rule.pair,
            field: rule.price,
            kind,
            once,
            cooldown,
            rearm,
            expires: rule.expires,
            condition: Arc::from(rule.condition.describe()),
            tenant: rule.tenant.as_deref().map(Arc::from),
            definition,
            last_fired: None,
            armed: true,
            cadence,
            bar: None,
            watch: None,
        };
        let indexed = state.indexed();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.rules[slot] = Some(state);
                slot
            }
            None => {
                self.rules.push(Some(state));
                self.rules.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        if let Some(expires) = rule.expires {
            self.expiries.entry(expires).or_default().push(slot);
        }
        let latest = self.unwatched.remove(&rule.pair);
        let pair_books = self.books.entry(rule.pair).or_default();
        if let Some(sample) = latest {
            // The pair's first rules: every field's book starts from the newest sample seen.
            for field in FIELDS {
                let price = match field {
                    PriceField::Mid => mid(sample.bid, sample.ask),
                    PriceField::Bid => sample.bid,
                    PriceField::Ask => sample.ask,
                };
                let book = pair_books[field_index(field)].get_or_insert_with(Default::default);
                book.series.last = Some((sample.ts, price));
                book.newest = vec![(sample.source, sample.ts)];
            }
        }
        let book = pair_books[field_index(rule.price)].get_or_insert_with(Default::default);
        if let Kind::Stale { .. } = kind {
            book.stale.push(slot);
            if let Some(state) = restored {
                self.set_state(slot, state.armed, state.last_fired, None);
            }
            self.watch_from_book(slot);
            return Ok(Vec::new());
        }
        if indexed {
            let index = book.armed_index(&kind).expect("threshold kinds have an index");
            index_insert(index, kind.threshold(), slot);
        } else {
            book.scanned.push(slot);
            if let (Some(scale), Some(rule)) = (book.scale, self.rules[slot].as_mut()) {
                rule.kind = rule.kind.at_scale(scale);
            }
            if !matches!(cadence, Cadence::OnBarClose(_)) {
                book.series.needs(&kind);
            }
        }
        if let Some(state) = restored {
            // It existed before a restart: it continues, and does not fire at creation again.
            self.set_state(slot, state.armed, state.last_fired, state.bar);
            return Ok(Vec::new());
        }
        // A state rule that is already true fires at creation (a bar close is judged at the close).
        let Some((ts, price)) = book.series.last else {
            return Ok(Vec::new());
        };
        if !indexed {
            if !kind.state() || matches!(cadence, Cadence::OnBarClose(_)) {
                return Ok(Vec::new());
            }
            let mut fired = Vec::new();
            if let Some(judged) = judge(kind, &book.series, ts, price, Some(price), None, false) {
                let at = Observation {
                    pair: rule.pair,
                    price,
                    ts,
                    source: SourceName::intern("rule-created").expect("one fixed name"),
                };
                self.decide(slot, judged, &at, &mut fired);
            }
            return Ok(fired);
        }
        let holds = match kind {
            Kind::Above(t) => price > t,
            Kind::Below(t) => price < t,
            _ => false,
        };
        if !holds {
            return Ok(Vec::new());
        }
        let source = SourceName::intern("rule-created").expect("one fixed name");
        // The rule fires against the last sample: its price is both value and previous.
        let mut fired = Vec::new();
        let book = self.book_mut(rule.pair, rule.price);
        let index = book.armed_index(&kind).expect("threshold kinds have an index");
        index_remove(index, kind.threshold(), slot);
        self.fire_or_keep(slot, price, Some(price), ts, source, &mut fired);
        Ok(fired)
    }

    /// Remove a rule by id; returns whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let retired = self.retired.remove(id).is_some();
        self.restored.remove(id);
        let Some(slot) = self.by_id.remove(id) else {
            return retired;
        };
        if let Some(rule) = self.rules[slot].take() {
            if let Some(expires) = rule.expires {
                if let Some(ids) = self.expiries.get_mut(&expires) {
                    ids.retain(|r| *r != slot);
                }
            }
            let indexed = rule.indexed();
            self.unwatch(slot, rule.watch.as_ref());
            let book = self.book_mut(rule.pair, rule.field);
            match rule.kind {
                Kind::Stale { .. } => book.stale.retain(|r| *r != slot),
                _ if !indexed => book.scanned.retain(|r| *r != slot),
                kind if rule.armed => {
                    index_remove(book.armed_index(&kind).expect("threshold kind"), kind.threshold(), slot)
                }
                kind => index_remove(book.rearm_index(kind.rising()), rule.rearm_level(), slot),
            }
        }
        self.free.push(slot);
        true
    }

    /// Drop rules whose expiry is at or before `now`; returns how many.
    pub fn expire(&mut self, now: DateTime<Utc>) -> usize {
        let later = self.expiries.split_off(&(now + chrono::Duration::nanoseconds(1)));
        let due = std::mem::replace(&mut self.expiries, later);
        let ids: Vec<Arc<str>> = due
            .into_values()
            .flatten()
            .filter_map(|slot| self.rules[slot].as_ref().map(|r| r.id.clone()))
            .collect();
        ids.iter().filter(|id| self.remove(id)).count()
    }

    fn book_mut(&mut self, pair: Pair, field: PriceField) -> &mut Book {
        self.books
            .get_mut(&pair)
            .and_then(|b| b[field_index(field)].as_deref_mut())
            .expect("a rule's book exists while the rule does")
    }

    /// How many samples were ignored as re-deliveries since the last call.
    pub fn take_repeats(&mut self) -> u64 {
        std::mem::take(&mut self.repeats)
    }

    /// Evaluate one price sample; returns the firings. A sample not newer than
    /// the last one of its source for this pair is a re-delivery (a crashed
    /// worker upstream produced it again) and is ignored, so duplicates cannot
    /// move time backwards for the rules.
    pub fn on_sample(&mut self, sample: Sample) -> Vec<AlertFired> {
        let mut fired = Vec::new();
        // Time moved on for every pair: feeds quiet since before it may be stale (this
        // sample's own pair included, before the sample renews it).
        if self.clock.is_none_or(|clock| clock < sample.ts) {
            self.clock = Some(sample.ts);
            if !self.deadlines.is_empty() {
                self.fire_stale(sample.ts, false, &mut fired);
            }
        }
        let Some(books) = self.books.get(&sample.pair) else {
            match self.unwatched.get(&sample.pair) {
                Some(newest) if newest.ts >= sample.ts => {}
                _ => {
                    self.unwatched.insert(sample.pair, sample);
                }
            }
            return fired;
        };
        let present: Vec<PriceField> = FIELDS
            .iter()
            .copied()
            .filter(|f| books[field_index(*f)].is_some())
            .collect();
        let Some(first) = present.first().and_then(|f| books[field_index(*f)].as_deref()) else {
            return fired;
        };
        let repeated = first
            .newest
            .iter()
            .any(|(source, ts)| *source == sample.source && sample.ts <= *ts);
        if repeated {
            self.repeats += 1;
            return fired;
        }
        for field in present {
            let price = match field {
                PriceField::Mid => mid(sample.bid, sample.ask),
                PriceField::Bid => sample.bid,
                PriceField::Ask => sample.ask,
            };
            self.evaluate(sample.pair, field, price, sample.ts, sample.source, &mut fired);
        }
        fired
    }

    fn evaluate(
        &mut self,
        pair: Pair,
        field: PriceField,
        price: Decimal,
        ts: DateTime<Utc>,
        source: SourceName,
        fired: &mut Vec<AlertFired>,
    ) {
        let book = self.book_mut(pair, field);
        match book.newest.iter_mut().find(|(s, _)| *s == source) {
            Some((_, newest)) => *newest = ts,
            None => book.newest.push((source, ts)),
        }
        let (previous, latest_return) = book.series.observe(ts, price, source);
        if !book.stale.is_empty() {
            let watching: Vec<RuleId> = book.stale.clone();
            for slot in watching {
                self.renew_watch(slot, ts, price, source);
            }
        }
        let book = self.book_mut(pair, field);
        // Candidates: armed rules whose condition now holds.
        let mut candidates = drain_range(&mut book.above, (Bound::Unbounded, Bound::Excluded(price)));
        candidates.extend(drain_range(&mut book.below, (Bound::Excluded(price), Bound::Unbounded)));
        if let Some(prev) = previous {
            if price > prev {
                candidates.extend(drain_range(
                    &mut book.up,
                    (Bound::Excluded(prev), Bound::Included(price)),
                ));
            } else if price < prev {
                candidates.extend(drain_range(
                    &mut book.down,
                    (Bound::Included(price), Bound::Excluded(prev)),
                ));
            }
        }
        // Disarmed rules whose price went back past their re-arm level.
        let rearmed_up = drain_range(&mut book.rearm_falling, (Bound::Included(price), Bound::Unbounded));
        let rearmed_down = drain_range(&mut book.rearm_rising, (Bound::Unbounded, Bound::Included(price)));
        if book.scale != Some(price.scale()) && price.scale() <= MAX_WIDENED_SCALE {
            book.scale = Some(price.scale());
            let RuleBook { rules, books, .. } = &mut *self;
            let book = books.get(&pair).and_then(|b| b[field_index(field)].as_deref());
            for slot in book.map(|b| b.scanned.as_slice()).unwrap_or_default() {
                if let Some(rule) = rules[*slot].as_mut() {
                    rule.kind = rule.kind.at_scale(price.scale());
                }
            }
        }
        for slot in rearmed_up.into_iter().chain(rearmed_down) {
            self.rearm(slot);
        }
        for slot in candidates {
            self.fire_or_keep(slot, price, previous, ts, source, fired);
        }
        let at = Observation {
            pair,
            price,
            ts,
            source,
        };
        // Judge every scanned rule against the book's series first (one lookup, nothing
        // mutable but an open bar's close), keeping only the rules whose trigger has
        // something to do: most samples fire and re-arm nothing.
        let mut due: Vec<(RuleId, Option<Judged>)> = Vec::new();
        {
            let RuleBook { rules, books, .. } = &mut *self;
            let book = books[&pair][field_index(field)].as_ref().expect("book exists");
            let series = &book.series;
            let now = event_time(ts);
            for &slot in &book.scanned {
                let Some(rule) = rules[slot].as_mut() else {
                    continue;
                };
                if let Cadence::OnBarClose(_) = rule.cadence {
                    match rule.bar.as_mut() {
                        // Within the open bar, only its close moves.
                        Some(bar) if bar.window.start <= now && now < bar.window.end => {
                            bar.close = price;
                            bar.source = source;
                            bar.closes.note_source(source, price);
                        }
                        _ => due.push((slot, None)),
                    }
                    continue;
                }
                let Some(judged) = judge(rule.kind, series, ts, price, previous, latest_return, !rule.armed) else {
                    continue;
                };
                let acts = if rule.armed {
                    judged.holds
                } else {
                    !judged.holds && judged.margin.is_some_and(|m| m >= rule.rearm)
                };
                if acts {
                    due.push((slot, Some(judged)));
                }
            }
        }
        for (slot, judged) in due {
            match (judged, self.rules[slot].as_ref().map(|r| r.cadence)) {
                (Some(judged), _) => self.decide(slot, judged, &at, fired),
                (None, Some(Cadence::OnBarClose(shape))) => self.on_bar_sample(slot, shape, &at, fired),
                _ => {}
            }
        }
        // The new return joins the z-scores' history after they measured it against the old one.
        self.book_mut(pair, field).series.settle(latest_return);
    }

    /// A sample for an `OnBarClose` rule: it extends the open bar, or closes it (the
    /// rule is judged on its close) and opens the next. A sample of a bar already closed
    /// (late, out of order) changes nothing.
    fn on_bar_sample(&mut self, slot: RuleId, shape: WindowShape, at: &Observation, fired: &mut Vec<AlertFired>) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        let window = shape.last_window(event_time(at.ts));
        let bar = match rule.bar.as_mut() {
            None => {
                let mut closes = Series::default();
                closes.needs(&rule.kind);
                closes.note_source(at.source, at.price);
                rule.bar = Some(OpenBar {
                    window,
                    close: at.price,
                    source: at.source,
                    closes,
                });
                return;
            }
            Some(bar) if window.start < bar.window.start => return,
            Some(bar) if window == bar.window => {
                bar.close = at.price;
                bar.source = at.source;
                bar.closes.note_source(at.source, at.price);
                return;
            }
            Some(bar) => bar,
        };
        let (close, source, end) = (bar.close, bar.source, utc(bar.window.end));
        bar.window = window;
        bar.close = at.price;
        bar.source = at.source;
        let (previous, latest_return) = bar.closes.observe(end, close, source);
        let judged = judge(rule.kind, &bar.closes, end, close, previous, latest_return, !rule.armed);
        bar.closes.settle(latest_return);
        // The sample that closed the bar opens the next one.
        bar.closes.note_source(at.source, at.price);
        if let Some(judged) = judged {
            let closed = Observation {
                pair: at.pair,
                price: close,
                ts: end,
                source,
            };
            self.decide(slot, judged, &closed, fired);
        }
    }

    fn rearm(&mut self, slot: RuleId) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        rule.armed = true;
        let (pair, field, kind) = (rule.pair, rule.field, rule.kind);
        let book = self.book_mut(pair, field);
        if let Some(index) = book.armed_index(&kind) {
            index_insert(index, kind.threshold(), slot);
        }
    }

    /// A threshold rule whose condition holds (already taken out of its armed index):
    /// fire it, or put it back where it belongs.
    fn fire_or_keep(
        &mut self,
        slot: RuleId,
        price: Decimal,
        previous: Option<Decimal>,
        ts: DateTime<Utc>,
        source: SourceName,
        fired: &mut Vec<AlertFired>,
    ) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        if rule.expires.is_some_and(|e| ts >= e) {
            let id = rule.id.clone();
            self.forget(slot, &id);
            return;
        }
        let cooling = rule.last_fired.is_some_and(|last| ts < last + rule.cooldown);
        if cooling {
            // Still armed: an `Above`/`Below` rule fires once the cooldown is over
            // if its condition still holds; a crossing is a moment and is missed.
            let (pair, field, kind) = (rule.pair, rule.field, rule.kind);
            let book = self.book_mut(pair, field);
            index_insert(book.armed_index(&kind).expect("threshold kind"), kind.threshold(), slot);
            return;
        }
        fired.push(AlertFired {
            rule_id: rule.id.clone(),
            pair: rule.pair,
            condition: rule.condition.clone(),
            value: price,
            previous,
            ts,
            source,
            tenant: rule.tenant.clone(),
        });
        if rule.once {
            self.retire(slot);
            return;
        }
        rule.last_fired = Some(ts);
        rule.armed = false;
        let (pair, field, rising, level) = (rule.pair, rule.field, rule.kind.rising(), rule.rearm_level());
        index_insert(self.book_mut(pair, field).rearm_index(rising), level, slot);
    }

    /// The trigger of a scanned rule, given what its condition says of the sample `at`:
    /// re-arm it, or fire it unless it expired, cools down or already fired in this bar.
    fn decide(&mut self, slot: RuleId, judged: Judged, at: &Observation, fired: &mut Vec<AlertFired>) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        if !rule.armed {
            if judged.margin.is_some_and(|m| m >= rule.rearm) && !judged.holds {
                rule.armed = true;
            }
            return;
        }
        if !judged.holds {
            return;
        }
        if rule.expires.is_some_and(|e| at.ts >= e) {
            let id = rule.id.clone();
            self.forget(slot, &id);
            return;
        }
        if rule.last_fired.is_some_and(|last| at.ts < last + rule.cooldown) {
            return;
        }
        if let (Cadence::OncePerBar(shape), Some(last)) = (rule.cadence, rule.last_fired) {
            if shape.last_window(event_time(last)) == shape.last_window(event_time(at.ts)) {
                return;
            }
        }
        fired.push(AlertFired {
            rule_id: rule.id.clone(),
            pair: at.pair,
            condition: judged.reason.unwrap_or_else(|| rule.condition.clone()),
            value: at.price,
            previous: judged.previous,
            ts: at.ts,
            source: at.source,
            tenant: rule.tenant.clone(),
        });
        if rule.once {
            self.retire(slot);
            return;
        }
        rule.last_fired = Some(at.ts);
        // `Every` waits for the price to come back (hysteresis); per-bar triggers stay armed.
        rule.armed = rule.cadence != Cadence::Sample;
    }

    /// Whether any `Stale` rule watches a live feed: then [`RuleBook::on_wall_clock`] has
    /// work to do.
    pub fn watches_live_feeds(&self) -> bool {
        !self.live_deadlines.is_empty()
    }

    /// The wall clock reads `now`: live feeds quiet past their deadline are stale (a feed
    /// that stops sends nothing that would move the event clock).
    pub fn on_wall_clock(&mut self, now: DateTime<Utc>) -> Vec<AlertFired> {
        let mut fired = Vec::new();
        self.fire_stale(now, true, &mut fired);
        fired
    }

    /// Fire the `Stale` rules whose deadline lies before `now` (only the live feeds' when
    /// `now` is the wall clock's).
    fn fire_stale(&mut self, now: DateTime<Utc>, wall: bool, fired: &mut Vec<AlertFired>) {
        loop {
            let index = if wall { &self.live_deadlines } else { &self.deadlines };
            let Some(&(deadline, slot)) = index.first() else {
                return;
            };
            if deadline >= now {
                return;
            }
            self.deadlines.remove(&(deadline, slot));
            self.live_deadlines.remove(&(deadline, slot));
            let Some(rule) = self.rules[slot].as_mut() else {
                continue;
            };
            let (Some(watch), Kind::Stale { max_age, calendar, .. }) = (rule.watch.as_mut(), rule.kind) else {
                continue;
            };
            watch.deadline = None;
            let (since, price, source) = watch.last;
            let age = max_age
                .to_std()
                .map(|d| fxflow_engine::duration::format(&d))
                .unwrap_or_default();
            let reason = format!(
                "no {} tick since {} ({age}{})",
                rule.pair,
                since.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                match calendar {
                    Calendar::Target => " of TARGET business time",
                    Calendar::Continuous => "",
                }
            );
            let judged = Judged {
                holds: true,
                margin: None,
                previous: None,
                reason: Some(Arc::from(reason)),
            };
            let at = Observation {
                pair: rule.pair,
                price,
                ts: deadline,
                source,
            };
            self.decide(slot, judged, &at, fired);
        }
    }

    /// A `Stale` rule's pair ticked: its feed is fresh again, with a new deadline.
    fn renew_watch(&mut self, slot: RuleId, ts: DateTime<Utc>, price: Decimal, source: SourceName) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        let Kind::Stale {
            max_age,
            calendar,
            source: only,
        } = rule.kind
        else {
            return;
        };
        if only.is_some_and(|only| only != source) || rule.watch.is_some_and(|w| w.last.0 >= ts) {
            return;
        }
        let old = rule.watch.take();
        let mut deadline = calendar.deadline(ts, max_age);
        if let (Cadence::OnBarClose(shape), Some(stale_from)) = (rule.cadence, deadline) {
            // Judged at each bar's close: stale at the close of the bar it turned stale in.
            deadline = Some(utc(shape.last_window(event_time(stale_from)).end));
        }
        let watch = StaleWatch {
            last: (ts, price, source),
            deadline,
            live: deadline.is_some_and(|d| Utc::now() < d),
        };
        rule.watch = Some(watch);
        // Fresh again: the next gap may fire (after the cooldown, for `Every`).
        rule.armed = true;
        self.unwatch(slot, old.as_ref());
        if let Some(deadline) = deadline {
            self.deadlines.insert((deadline, slot));
            if watch.live {
                self.live_deadlines.insert((deadline, slot));
            }
        }
    }

    fn unwatch(&mut self, slot: RuleId, watch: Option<&StaleWatch>) {
        if let Some(deadline) = watch.and_then(|w| w.deadline) {
            self.deadlines.remove(&(deadline, slot));
            self.live_deadlines.remove(&(deadline, slot));
        }
    }

    /// Start a `Stale` rule's watch from what its book knows: the newest sample of the
    /// sources it watches (a rule added later, or restored, continues from there).
    fn watch_from_book(&mut self, slot: RuleId) {
        let Some(rule) = self.rules[slot].as_ref() else {
            return;
        };
        let Kind::Stale { source: only, .. } = rule.kind else {
            return;
        };
        let armed = rule.armed;
        let book = self.book_mut(rule.pair, rule.field);
        let Some((_, price)) = book.series.last else {
            return;
        };
        let newest = book
            .newest
            .iter()
            .filter(|(s, _)| only.is_none_or(|only| only == *s))
            .max_by_key(|(_, ts)| *ts)
            .copied();
        if let Some((source, ts)) = newest {
            if let Some(rule) = self.rules[slot].as_mut() {
                let old = rule.watch.take();
                self.unwatch(slot, old.as_ref());
            }
            self.renew_watch(slot, ts, price, source);
            if let Some(rule) = self.rules[slot].as_mut() {
                rule.armed = armed;
            }
        }
    }

    /// Whether this exact rule is already in the book (live or retired): a
    /// re-delivered rule change then changes nothing.
    pub fn is_current(&self, rule: &AlertRule) -> bool {
        let definition = definition_of(rule);
        let live = self
            .by_id
            .get(rule.id.as_str())
            .and_then(|slot| self.rules[*slot].as_ref());
        live.is_some_and(|r| r.definition == definition)
            || self
                .retired
                .get(rule.id.as_str())
                .is_some_and(|r| r.definition == definition)
    }

    /// Put a live rule into the given state, moving it between its armed and re-arm indexes.
    fn set_state(&mut self, slot: RuleId, armed: bool, last_fired: Option<DateTime<Utc>>, bar: Option<BarState>) {
        let Some(rule) = self.rules[slot].as_mut() else {
            return;
        };
        let was_armed = std::mem::replace(&mut rule.armed, armed);
        rule.last_fired = last_fired;
        rule.bar = bar.map(|saved| {
            let mut closes = Series::default();
            closes.needs(&rule.kind);
            closes.restore(saved.closes);
            OpenBar {
                window: fxflow_engine::window::Window {
                    start: event_time(saved.start),
                    end: event_time(saved.end),
                },
                close: saved.close,
                source: saved.source,
                closes,
            }
        });
        let (pair, field, kind, level) = (rule.pair, rule.field, rule.kind, rule.rearm_level());
        if was_armed == armed || !rule.indexed() {
            return;
        }
        let book = self.book_mut(pair, field);
        let armed_index = book.armed_index(&kind).expect("threshold kind");
        if armed {
            index_insert(armed_index, kind.threshold(), slot);
            index_remove(book.rearm_index(kind.rising()), level, slot);
        } else {
            index_remove(armed_index, kind.threshold(), slot);
            index_insert(book.rearm_index(kind.rising()), level, slot);
        }
    }

    /// Every live rule as it was added (definitions are the rules' JSON).
    pub fn rules(&self) -> Vec<AlertRule> {
        self.rules
            .iter()
            .flatten()
            .filter_map(|r| serde_json::from_str(&r.definition).ok())
            .collect()
    }

    /// Every pair the book keeps something of (prices or retired rules).
    pub fn pairs(&self) -> Vec<Pair> {
        let mut pairs: Vec<Pair> = self
            .books
            .keys()
            .copied()
            .chain(self.retired.values().map(|r| r.pair))
            .collect();
        pairs.sort_by_key(|p| p.to_string());
        pairs.dedup();
        pairs
    }

    /// The state of one pair, to be saved; `None` when the book knows nothing of it.
    pub fn export(&self, pair: Pair) -> Option<PairRules> {
        let mut state = PairRules {
            books: Vec::new(),
            rules: Vec::new(),
            retired: self.retired.values().filter(|r| r.pair == pair).cloned().collect(),
        };
        for (field, book) in self.books.get(&pair).into_iter().flat_map(|books| {
            FIELDS
                .iter()
                .filter_map(|f| books[field_index(*f)].as_deref().map(|b| (*f, b)))
        }) {
            let series = book.series.state();
            state.books.push(BookState {
                field,
                last: series.last,
                history: series.history,
                returns: series.returns,
                recent: series.recent,
                sources: series.sources,
                newest: book.newest.clone(),
            });
            state.rules.extend(
                book.slots()
                    .filter_map(|slot| self.rules[slot].as_ref())
                    .filter(|r| !r.armed || r.last_fired.is_some() || r.bar.is_some())
                    .map(|r| RuleState {
                        id: r.id.clone(),
                        definition: r.definition.clone(),
                        armed: r.armed,
                        last_fired: r.last_fired,
                        bar: r.bar.as_ref().map(|bar| BarState {
                            start: utc(bar.window.start),
                            end: utc(bar.window.end),
                            close: bar.close,
                            source: bar.source,
                            closes: bar.closes.state(),
                        }),
                    }),
            );
        }
        if state.books.is_empty() && state.retired.is_empty() {
            return None;
        }
        state.rules.sort_by(|a, b| a.id.cmp(&b.id));
        state.retired.sort_by(|a, b| a.id.cmp(&b.id));
        Some(state)
    }

    /// Replace what the book knows of `pair` by a saved state. Rules of the
    /// same definition take their saved state; saved rules not added yet get it
    /// when they are; live rules the state does not name start afresh.
    pub fn import(&mut self, pair: Pair, state: PairRules) {
        for retired in state.retired {
            let live = self
                .by_id
                .get(&retired.id)
                .and_then(|slot| self.rules[*slot].as_ref())
                .map(|r| r.definition.clone());
            match live {
                Some(definition) if definition != retired.definition => continue, // redefined since
                Some(_) => {
                    self.remove(&retired.id);
                }
                None => {}
            }
            self.retired.insert(retired.id.clone(), retired);
        }
        for saved in state.books {
            let book =
                self.books.entry(pair).or_default()[field_index(saved.field)].get_or_insert_with(Default::default);
            book.series.restore(SeriesState {
                last: saved.last,
                history: saved.history,
                recent: saved.recent,
                returns: saved.returns,
                sources: saved.sources,
            });
            book.newest = saved.newest;
        }
        let live: Vec<RuleId> = self
            .books
            .get(&pair)
            .into_iter()
            .flat_map(|books| books.iter().flatten().flat_map(|b| b.slots()).collect::<Vec<_>>())
            .collect();
        for slot in live {
            self.set_state(slot, true, None, None);
        }
        for rule in state.rules {
            let slot = self.by_id.get(&rule.id).copied();
            let same = slot
                .and_then(|s| self.rules[s].as_ref())
                .is_some_and(|r| r.definition == rule.definition && r.pair == pair);
            match slot {
                Some(slot) if same => self.set_state(slot, rule.armed, rule.last_fired, rule.bar),
                Some(_) => {} // redefined since: starts afresh
                None => {
                    self.restored.insert(rule.id.clone(), rule);
                }
            }
        }
        let watching: Vec<RuleId> = self
            .books
            .get(&pair)
            .into_iter()
            .flat_map(|books| books.iter().flatten().flat_map(|b| b.stale.clone()))
            .collect();
        for slot in watching {
            self.watch_from_book(slot);
        }
    }

    /// Retire a `Once` rule that fired (it is no longer in any threshold index).
    fn retire(&mut self, slot: RuleId) {
        let Some(rule) = self.rules[slot].as_ref() else {
            return;
        };
        let (id, pair, definition) = (rule.id.clone(), rule.pair, rule.definition.clone());
        self.forget(slot, &id);
        self.retired.insert(id.clone(), RetiredRule { id, pair, definition });
    }

    /// Drop a rule that is no longer in any threshold index (fired once, or expired while firing).
    fn forget(&mut self, slot: RuleId, id: &Arc<str>) {
        if let Some(rule) = self.rules[slot].take() {
            self.unwatch(slot, rule.watch.as_ref());
            if rule.stale() {
                self.book_mut(rule.pair, rule.field).stale.retain(|r| *r != slot);
            } else if !rule.indexed() {
                let book = self.book_mut(rule.pair, rule.field);
                book.scanned.retain(|r| *r != slot);
            }
            if let Some(expires) = rule.expires {
                if let Some(ids) = self.expiries.get_mut(&expires) {
                    ids.retain(|r| *r != slot);
                }
            }
        }
        self.by_id.remove(id);
        self.free.push(slot);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use rust_decimal_macros::dec;

    use super::*;

    pub(crate) fn rule(id: &str, condition: Condition, trigger: Trigger) -> AlertRule {
        AlertRule {
            id: id.into(),
            pair: "EUR/USD".parse().unwrap(),
            condition,
            trigger,
            price: PriceField::Mid,
            expires: None,
            webhook: None,
            email: None,
            tenant: None,
        }
    }

    fn every(cooldown_s: u64, rearm: Decimal) -> Trigger {
        Trigger::Every {
            cooldown: Duration::from_secs(cooldown_s),
            rearm,
        }
    }

    /// An EUR/USD sample with mid `price`, `step` seconds after 2026-01-01.
    pub(crate) fn mid_at(step: usize, price: Decimal) -> Sample {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        Sample {
            pair: "EUR/USD".parse().unwrap(),
            bid: price,
            ask: price,
            ts: t0 + chrono::Duration::seconds(step as i64),
            source: SourceName::intern("t").unwrap(),
        }
    }

    /// Feed mids at one-second steps; returns the ids fired at each step.
    fn feed(book: &mut RuleBook, prices: &[Decimal]) -> Vec<Vec<String>> {
        prices
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut ids: Vec<String> = book
                    .on_sample(mid_at(i, *p))
                    .iter()
                    .map(|f| f.rule_id.to_string())
                    .collect();
                ids.sort();
                ids
            })
            .collect()
    }

    /// Feed mids at one-second steps starting at step `first`; returns the firings as `id@step`.
    fn feed_from(book: &mut RuleBook, first: usize, prices: &[Decimal]) -> Vec<String> {
        let mut fired = Vec::new();
        for (i, p) in prices.iter().enumerate() {
            let step = first + i;
            let mut ids: Vec<String> = book
                .on_sample(mid_at(step, *p))
                .iter()
                .map(|f| format!("{}@{step}", f.rule_id))
                .collect();
            ids.sort();
            fired.extend(ids);
        }
        fired
    }

    /// One of each kind of state: crossings (previous price), hysteresis,
    /// cooldowns, a window, one-shot retirement.
    fn stateful_rules() -> Vec<AlertRule> {
        vec![
            rule("up", Condition::CrossingUp(dec!(1.10)), every(4, dec!(0.01))),
            rule("down", Condition::CrossingDown(dec!(1.08)), every(0, dec!(0))),
            rule("above", Condition::Above(dec!(1.11)), every(6, dec!(0.02))),
            rule("once", Condition::Below(dec!(1.07)), Trigger::Once),
            rule(
                "pct",
                Condition::PctChange {
                    percent: dec!(-2),
                    window: Duration::from_secs(5),
                },
                every(3, dec!(0.5)),
            ),
        ]
    }

    fn wave() -> Vec<Decimal> {
        // A seesaw between 1.06 and 1.13 with uneven steps.
        (0..60)
            .map(|i| {
                let phase = (i * 7) % 24;
                let up = if phase < 12 { phase } else { 24 - phase };
                dec!(1.06) + Decimal::new(up as i64 * 6, 3)
            })
            .collect()
    }

    #[test]
    fn re_delivered_samples_change_nothing() {
        let mut book = RuleBook::new();
        book.add(&rule("up", Condition::CrossingUp(dec!(1.10)), every(0, dec!(0))))
            .unwrap();
        let run = [dec!(1.09), dec!(1.11)];
        assert_eq!(feed_from(&mut book, 0, &run), vec!["up@1"]);
        // A crashed worker upstream produces the same samples again: time does not go back.
        assert_eq!(feed_from(&mut book, 0, &run), Vec::<String>::new());
        assert_eq!(book.take_repeats(), 2);
        assert_eq!(feed_from(&mut book, 2, &run), vec!["up@3"]);
        assert_eq!(book.take_repeats(), 0);
    }

    #[test]
    fn a_saved_and_restored_book_fires_exactly_as_one_that_never_stopped() {
        let prices = wave();
        let mut whole = RuleBook::new();
        for r in stateful_rules() {
            whole.add(&r).unwrap();
        }
        let expected = feed_from(&mut whole, 0, &prices);
        assert!(expected.len() >= 10, "the wave exercises the rules: {expected:?}");
        assert!(expected.iter().any(|f| f.starts_with("pct@")) && expected.iter().any(|f| f.starts_with("once@")));
        let pair: Pair = "EUR/USD".parse().unwrap();
        for split in 1..prices.len() {
            let mut before = RuleBook::new();
            for r in stateful_rules() {
                before.add(&r).unwrap();
            }
            let mut fired = feed_from(&mut before, 0, &prices[..split]);
            // Saved as JSON, as the state topic holds it.
            let saved = serde_json::to_string(&before.export(pair).unwrap()).unwrap();
            let mut after = RuleBook::new();
            for r in stateful_rules() {
                after.add(&r).unwrap();
            }
            after.import(pair, serde_json::from_str(&saved).unwrap());
            fired.extend(feed_from(&mut after, split, &prices[split..]));
            assert_eq!(fired, expected, "restored after {split} samples");
        }
    }

    #[test]
    fn restored_state_waits_for_rules_added_later_and_retired_rules_stay_retired() {
        let pair: Pair = "EUR/USD".parse().unwrap();
        let mut before = RuleBook::new();
        for r in stateful_rules() {
            before.add(&r).unwrap();
        }
        let fired = feed_from(&mut before, 0, &[dec!(1.09), dec!(1.12), dec!(1.06)]);
        assert!(fired.contains(&"once@2".to_string()) && fired.contains(&"up@1".to_string()));
        let saved = before.export(pair).unwrap();
        // A restarted worker restores first; its rules arrive afterwards (from the changelog).
        let mut after = RuleBook::new();
        after.import(pair, saved);
        for r in stateful_rules() {
            assert_eq!(after.add(&r).unwrap(), vec![], "no fire-at-creation for restored rules");
            assert!(after.is_current(&r));
        }
        assert_eq!(after.len(), 4, "`once` fired before: it stays retired");
        // Afresh, `once` would fire at 3 (1.065 < 1.07) and `up` at 4 (crossing 1.10). Restored,
        // `once` is retired and `up` (fired at 1, cooldown 4 s) is still cooling at 4.
        assert_eq!(
            feed_from(&mut after, 3, &[dec!(1.065), dec!(1.101)]),
            Vec::<String>::new()
        );
        let mut fresh = RuleBook::new();
        for r in stateful_rules() {
            fresh.add(&r).unwrap();
        }
        assert_eq!(
            feed_from(&mut fresh, 3, &[dec!(1.065), dec!(1.101)]),
            vec!["once@3", "up@4"]
        );
        // A changed definition is a new rule: it starts afresh.
        assert!(after.remove("once"));
        let mut changed = rule("once", Condition::Below(dec!(1.07)), Trigger::Once);
        changed.price = PriceField::Bid;
        assert!(!after.is_current(&changed));
        after.add(&changed).unwrap();
        assert_eq!(after.len(), 5);
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn crossing_needs_a_previous_sample_on_the_other_side() {
        let mut book = RuleBook::new();
        book.add(&rule("up", Condition::CrossingUp(dec!(1.10)), Trigger::Once))
            .unwrap();
        book.add(&rule("down", Condition::CrossingDown(dec!(1.10)), Trigger::Once))
            .unwrap();
        // First sample already above: no previous, so no crossing.
        let fired = feed(&mut book, &[dec!(1.12), dec!(1.11), dec!(1.09), dec!(1.10), dec!(1.11)]);
        assert_eq!(fired, vec![vec![], vec![], ids(&["down"]), ids(&["up"]), vec![]]);
        assert!(book.is_empty(), "once-rules retire after firing");
    }

    #[test]
    fn state_rules_fire_at_once_when_true() {
        let mut book = RuleBook::new();
        book.add(&rule("above", Condition::Above(dec!(1.10)), Trigger::Once))
            .unwrap();
        book.add(&rule("below", Condition::Below(dec!(1.20)), Trigger::Once))
            .unwrap();
        let fired = feed(&mut book, &[dec!(1.15)]);
        assert_eq!(fired, vec![ids(&["above", "below"])], "true on the first sample fires");
        // Added while the last price already satisfies it: fires at creation.
        let now = book
            .add(&rule("late", Condition::Above(dec!(1.00)), Trigger::Once))
            .unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].value, dec!(1.15));
    }

    #[test]
    fn every_with_rearm_band_is_hysteresis() {
        let mut book = RuleBook::new();
        book.add(&rule("a", Condition::Above(dec!(1.1000)), every(0, dec!(0.0010))))
            .unwrap();
        let prices = [dec!(1.1005), dec!(1.0999), dec!(1.1003), dec!(1.0989), dec!(1.1001)];
        // Fires at 1.1005; dips to 1.0999 (not below 1.0990): stays disarmed, 1.1003 does not fire;
        // 1.0989 re-arms; 1.1001 fires again.
        assert_eq!(
            feed(&mut book, &prices),
            vec![ids(&["a"]), vec![], vec![], vec![], ids(&["a"])]
        );
    }

    #[test]
    fn cooldown_delays_a_state_rule_and_drops_a_crossing() {
        let mut book = RuleBook::new();
        book.add(&rule("state", Condition::Above(dec!(1.10)), every(3, dec!(0))))
            .unwrap();
        book.add(&rule("cross", Condition::CrossingUp(dec!(1.10)), every(3, dec!(0))))
            .unwrap();
        // t0 1.11: state fires (the crossing has no previous sample).
        // t1 1.09: state re-arms.
        // t2 1.11: state holds but cools until t3, so it waits armed; the crossing fires.
        // t3 1.09: the crossing re-arms.
        // t4 1.11: state fires (cooldown over); the crossing is inside its cooldown and is missed.
        // t5, t6 1.12: state disarmed, no new crossing.
        let prices = [
            dec!(1.11),
            dec!(1.09),
            dec!(1.11),
            dec!(1.09),
            dec!(1.11),
            dec!(1.12),
            dec!(1.12),
        ];
        let fired = feed(&mut book, &prices);
        assert_eq!(
            fired,
            vec![
                ids(&["state"]),
                vec![],
                ids(&["cross"]),
                vec![],
                ids(&["state"]),
                vec![],
                vec![]
            ]
        );
    }

    #[test]
    fn pct_change_over_a_window() {
        let mut book = RuleBook::new();
        book.add(&rule(
            "jump",
            Condition::PctChange {
                percent: dec!(1),
                window: Duration::from_secs(2),
            },
            Trigger::Once,
        ))
        .unwrap();
        book.add(&rule(
            "drop",
            Condition::PctChange {
                percent: dec!(-2),
                window: Duration::from_secs(10),
            },
            Trigger::Once,
        ))
        .unwrap();
        // +0.5% per step: 2 s window sees at most ~1% (steps 0→2: 1.0 → 1.01 = +1%).
        // Falls 2.5% from the window's first sample at t4.
        let fired = feed(
            &mut book,
            &[dec!(1.000), dec!(1.005), dec!(1.010), dec!(0.990), dec!(0.975)],
        );
        assert_eq!(fired, vec![vec![], vec![], ids(&["jump"]), vec![], ids(&["drop"])]);
    }

    /// A calm walk: steps of ±0.0001..0.0003 around 1.1000 (seeded, deterministic).
    fn calm(n: usize) -> Vec<Decimal> {
        let mut price = dec!(1.1000);
        let mut seed = 11u64;
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let step = Decimal::new(((seed >> 40) % 3) as i64 + 1, 4);
                price += if (seed >> 20).is_multiple_of(2) { step } else { -step };
                price
            })
            .collect()
    }

    #[test]
    fn a_zscore_rule_fires_on_a_jump_and_not_on_a_calm_series() {
        let zscore = |trigger| {
            let mut book = RuleBook::new();
            let condition = Condition::ZScore {
                returns: 20,
                k: dec!(4),
            };
            book.add(&rule("anomaly", condition, trigger)).unwrap();
            book
        };
        // A calm walk, and the same walk with a jump of 1% (some 40 calm steps at once) at step 300.
        let series = calm(400);
        let mut book = zscore(Trigger::Once);
        assert_eq!(
            feed_from(&mut book, 0, &series),
            Vec::<String>::new(),
            "no anomaly in a calm series"
        );
        let jumped: Vec<Decimal> = series
            .iter()
            .enumerate()
            .map(|(i, p)| if i >= 300 { *p * dec!(1.01) } else { *p })
            .collect();
        let mut book = zscore(Trigger::Once);
        assert_eq!(feed_from(&mut book, 0, &jumped), vec!["anomaly@300"]);
        assert!(book.is_empty(), "a Once rule retired");

        // `Every`: a second jump fires again once |z| went back under k - rearm.
        let twice: Vec<Decimal> = series
            .iter()
            .enumerate()
            .map(|(i, p)| match i {
                0..100 => *p,
                100..250 => *p * dec!(0.99),
                _ => *p * dec!(0.99) * dec!(1.012),
            })
            .collect();
        let mut book = zscore(every(0, dec!(1)));
        assert_eq!(feed_from(&mut book, 0, &twice), vec!["anomaly@100", "anomaly@250"]);
    }

    #[test]
    fn a_restored_zscore_rule_measures_against_the_saved_returns() {
        let pair: Pair = "EUR/USD".parse().unwrap();
        let rules = || {
            let mut book = RuleBook::new();
            let condition = Condition::ZScore {
                returns: 10,
                k: dec!(3),
            };
            book.add(&rule("z", condition, every(5, dec!(1)))).unwrap();
            book
        };
        // Jumps at 30 and 60 on a calm walk.
        let path: Vec<Decimal> = calm(80)
            .iter()
            .enumerate()
            .map(|(i, p)| match i {
                0..30 => *p,
                30..60 => *p * dec!(1.005),
                _ => *p * dec!(1.005) * dec!(0.995),
            })
            .collect();
        let expected = feed_from(&mut rules(), 0, &path);
        assert_eq!(expected, vec!["z@30", "z@60"]);
        for split in 1..path.len() {
            let mut before = rules();
            let mut fired = feed_from(&mut before, 0, &path[..split]);
            let saved = serde_json::to_string(&before.export(pair).unwrap()).unwrap();
            let mut after = rules();
            after.import(pair, serde_json::from_str(&saved).unwrap());
            fired.extend(feed_from(&mut after, split, &path[split..]));
            assert_eq!(fired, expected, "restored after {split} samples");
        }
    }

    #[test]
    fn zscore_rules_need_enough_returns_and_a_positive_k() {
        let mut book = RuleBook::new();
        let bad = rule("z", Condition::ZScore { returns: 1, k: dec!(3) }, Trigger::Once);
        assert!(matches!(book.add(&bad), Err(RuleError::Invalid(..))));
        let bad = rule(
            "z",
            Condition::ZScore {
                returns: 10,
                k: dec!(0),
            },
            Trigger::Once,
        );
        assert!(matches!(book.add(&bad), Err(RuleError::Invalid(..))));
        // Fewer than `returns` returns so far: nothing to measure against, however big the move.
        let z = rule(
            "z",
            Condition::ZScore {
                returns: 10,
                k: dec!(3),
            },
            Trigger::Once,
        );
        book.add(&z).unwrap();
        assert_eq!(
            feed_from(&mut book, 0, &[dec!(1.0), dec!(1.001), dec!(1.5)]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn expiry_and_removal() {
        let mut book = RuleBook::new();
        let mut r = rule("soon", Condition::Above(dec!(1.10)), Trigger::Once);
        r.expires = Some("2026-01-01T00:00:01Z".parse().unwrap());
        book.add(&r).unwrap();
        book.add(&rule("gone", Condition::Below(dec!(1.00)), Trigger::Once))
            .unwrap();
        assert!(book.remove("gone"));
        assert!(!book.remove("gone"));
        // t0 below threshold, t1 (= expiry) above: expired, no firing.
        assert_eq!(
            feed(&mut book, &[dec!(1.05), dec!(1.15)]),
            vec![Vec::<String>::new(), vec![]]
        );
        assert!(book.is_empty());
        let mut r = rule("wall", Condition::Above(dec!(9)), Trigger::Once);
        r.expires = Some("2026-01-01T00:00:00Z".parse().unwrap());
        book.add(&r).unwrap();
        assert_eq!(book.expire("2026-01-02T00:00:00Z".parse().unwrap()), 1);
        assert!(book.is_empty());
    }

    #[test]
    fn duplicates_and_invalid_rules_are_refused() {
        let mut book = RuleBook::new();
        book.add(&rule("a", Condition::Above(dec!(1)), Trigger::Once)).unwrap();
        assert!(matches!(
            book.add(&rule("a", Condition::Above(dec!(2)), Trigger::Once)),
            Err(RuleError::Duplicate(_))
        ));
        assert!(matches!(
            book.add(&rule("b", Condition::Above(dec!(-1)), Trigger::Once)),
            Err(RuleError::Invalid(..))
        ));
    }

    #[test]
    fn a_move_only_touches_rules_between_the_two_prices() {
        // 100,000 crossing rules spread over 1.0000..1.9999; a move of 1.5000 → 1.5003
        // fires exactly the three thresholds in between.
        let mut book = RuleBook::new();
        for i in 0..100_000 {
            let t = Decimal::new(10_000 + (i % 10_000), 4);
            book.add(&rule(&format!("r{i}"), Condition::CrossingUp(t), Trigger::Once))
                .unwrap();
        }
        let fired = feed(&mut book, &[dec!(1.5000), dec!(1.5003)]);
        assert_eq!(fired[0].len(), 0);
        assert_eq!(fired[1].len(), 30, "thresholds 1.5001..=1.5003, ten rules each");
    }
}
