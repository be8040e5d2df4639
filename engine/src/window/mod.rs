//! Event-time windows: tumbling and sliding (hopping) windows per key, closed
//! by a watermark, with late events dropped or dead-lettered, optional early
//! results, bounded state, and checkpoints that survive restarts.
//!
//! A windowed stage is an [`Aggregation`] (what a key is, what one event
//! contributes, what a window's result is) run by [`WindowStage`], the
//! engine's task-shaped driver. The stage gives the key; the engine does the
//! time:
//!
//! - **Windows.** [`WindowShape`]: every `slide` a window of length `size`
//!   starts, aligned to the Unix epoch (`slide == size`: tumbling). A window is
//!   the half-open span `[start, end)`.
//! - **Watermarks.** Per *input* — each partition of a log the events were
//!   read from ([`crate::Origin`]), or the one in-process stream — the newest
//!   event time seen minus the allowed `lateness`, never going back. A key's
//!   window closes, and its result is emitted, once the watermark of the
//!   inputs feeding that key reaches its end (the oldest of them if several
//!   do). So a key that goes quiet still has its windows closed by the other
//!   keys of its input, and a slow partition (or one not read yet after a
//!   start) neither holds back nor makes late the keys of the others. See [`set`].
//! - **Late events.** An event whose windows have all closed is `late`:
//!   dropped and counted (`fxflow_stage_discarded_events_total{reason="late"}`)
//!   or sent to the error output (reason `late`).
//! - **Early results.** `emit: Updates` emits a window's result after each
//!   event, `Every(d)` each time the watermark passes a multiple of `d`; the
//!   final result follows when it closes (results say whether they are final).
//! - **Bounded state.** Closed windows are dropped. Beyond `max_open` open
//!   windows the one that ends first is closed early (counted in
//!   `fxflow_window_evictions_total`); events for it later are late.
//! - **Acknowledgements.** Without a state topic, a window holds a clone of the
//!   ack token of every input it absorbed and its result carries them all
//!   (one joined token): an input is finalized when the windows it fed are
//!   delivered. With `state` (a compacted topic, as the alert rule state), the
//!   windows of each key are saved every `interval` with the position of the
//!   last input, and the save's delivery releases the held tokens — a 1-day
//!   window does not hold a day of offsets uncommitted. See
//!   [`crate::kafka::Checkpoints`] and [`stage`].

pub mod set;
pub mod stage;

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::registry::ConfigProblem;

pub use set::{Added, Out, SavedKey, SavedPane, SavedWindow, Watermarks, WindowSet};
pub use stage::{WindowStage, EVICTIONS, OPEN_WINDOWS, WATERMARK_SECONDS};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// An instant in the data's own time: nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Before every real instant: the watermark of a stage that has seen nothing.
    pub const MIN: EventTime = EventTime(i64::MIN);

    pub fn from_nanos(nanos: i64) -> Self {
        EventTime(nanos)
    }

    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Seconds since the Unix epoch, for gauges.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SECOND as f64
    }

    pub fn plus(self, duration: Duration) -> Self {
        EventTime(self.0.saturating_add(nanos(duration)))
    }

    pub fn minus(self, duration: Duration) -> Self {
        EventTime(self.0.saturating_sub(nanos(duration)))
    }
}

/// RFC 3339 in UTC, e.g. `2024-01-02T00:00:00Z` (nanoseconds when there are any).
impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == EventTime::MIN {
            return f.write_str("-infinity");
        }
        let seconds = self.0.div_euclid(NANOS_PER_SECOND);
        let nanos = self.0.rem_euclid(NANOS_PER_SECOND);
        let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )?;
        if nanos != 0 {
            write!(f, ".{nanos:09}")?;
        }
        f.write_str("Z")
    }
}

/// A duration in nanoseconds (saturating at about 292 years).
pub fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// One window: the half-open span `[start, end)` of event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: EventTime,
    pub end: EventTime,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// Which windows an instant falls into: every `slide` a window of `size`
/// starts (at multiples of `slide` since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowShape {
    size: i64,
    slide: i64,
}

impl WindowShape {
    /// Back-to-back windows of `size` (1-minute candles).
    pub fn tumbling(size: Duration) -> Self {
        Self::sliding(size, size)
    }

    /// Windows of `size` starting every `slide` (30 days, every day). Each
    /// instant is in `size / slide` windows. `size` must be a multiple of
    /// `slide` (windows are made of slide-long panes); it is rounded up to one.
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        let slide = nanos(slide).max(1);
        let size = nanos(size).max(1);
        WindowShape {
            size: (size.saturating_add(slide - 1) / slide).saturating_mul(slide),
            slide,
        }
    }

    /// Whether windows of `size` can slide by `slide`: `size` a multiple of it.
    pub fn fits(size: Duration, slide: Duration) -> bool {
        let (size, slide) = (nanos(size), nanos(slide));
        slide > 0 && size >= slide && size % slide == 0
    }

    /// A window's length, in nanoseconds.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The window containing `t` that ends last.
    pub fn last_window(&self, t: EventTime) -> Window {
        let start = t.0.div_euclid(self.slide).saturating_mul(self.slide);
        Window {
            start: EventTime(start),
            end: EventTime(start.saturating_add(self.size)),
        }
    }

    /// Every window containing `t`, the one ending last first.
    pub fn windows_of(&self, t: EventTime) -> impl Iterator<Item = Window> + '_ {
        let last = self.last_window(t);
        (0..)
            .map(move |i: i64| {
                let start = last.start.0.saturating_sub(i.saturating_mul(self.slide));
                Window {
                    start: EventTime(start),
                    end: EventTime(start.saturating_add(self.size)),
                }
            })
            .take_while(move |w| w.end > t)
    }
}

/// What happens to an event whose windows have all closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum LatePolicy {
    /// Drop it and count it (`fxflow_stage_discarded_events_total{reason="late"}`).
    #[default]
    Drop,
    /// Send it to the stage's error output (dead letter reason `late`).
    Error,
}

/// When a window's result is emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum EmitPolicy {
    /// Once, when the watermark passes the window's end.
    #[default]
    OnClose,
    /// Also an updated, not yet final result of every window that changed,
    /// each time the watermark passes a multiple of this duration.
    Every(
        #[serde(with = "crate::duration")]
        #[schemars(schema_with = "crate::duration::schema")]
        Duration,
    ),
    /// Also an updated result after every event (sinks replace a window's
    /// earlier result by the later one).
    Updates,
}

/// Event-time settings every windowed stage shares (its `time` field).
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// How far behind the newest event of its input an event may be and still
    /// count: a key's window closes once its input is this much past its end.
    #[serde(default, with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub lateness: Duration,
    /// What happens to an event that arrives after its windows closed.
    #[serde(default)]
    pub late: LatePolicy,
    /// When results are emitted: `OnClose`, `Every("1m")` or `Updates`.
    #[serde(default)]
    pub emit: EmitPolicy,
    /// Most windows open at once, over all keys; beyond it the window that
    /// ends first is closed early (counted in `fxflow_window_evictions_total`).
    #[serde(default = "default_max_open")]
    pub max_open: usize,
    /// An input whose newest event is further than this behind the newest of
    /// all inputs is taken to be this far behind (a partition that went silent,
    /// or moved to another worker): its keys' windows close, and its events
    /// older than that are late. Unset: each input's own events move it.
    #[serde(default, with = "crate::duration::option")]
    #[schemars(schema_with = "crate::duration::option_schema")]
    pub idle_after: Option<Duration>,
}

fn default_max_open() -> usize {
    100_000
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            lateness: Duration::ZERO,
            late: LatePolicy::default(),
            emit: EmitPolicy::default(),
            max_open: default_max_open(),
            idle_after: None,
        }
    }
}

impl WindowConfig {
    /// Problems with the settings (`field`: the stage field holding them).
    pub fn check(&self, field: &'static str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.max_open == 0 {
            problems.push(ConfigProblem::field(field, "max_open must be at least 1"));
        }
        if let EmitPolicy::Every(every) = self.emit {
            if every.is_zero() {
                problems.push(ConfigProblem::field(
                    field,
                    "emit: Every(...) needs a duration above zero",
                ));
            }
        }
        if self.idle_after.is_some_and(|d| d.is_zero()) {
            problems.push(
                ConfigProblem::field(field, "idle_after must be longer than zero")
                    .with_hint("leave it out to have every input hold the watermark"),
            );
        }
        problems
    }
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// Into the windows of the keys pushed, at this event time.
    At(EventTime),
    /// Nowhere, on purpose; counted as discarded with this reason.
    Ignore(&'static str),
    /// Nowhere: the event is unusable (error output, with reason and message).
    Reject(&'static str, String),
}

/// What an event contributes to one key's windows.
#[derive(Debug, Clone, PartialEq)]
pub enum Contribution<V> {
    /// This value goes into each of the key's windows containing the event.
    Value(V),
    /// Nothing for the windows, but the key's state changed (a first price,
    /// which later returns are measured from).
    StateOnly,
    /// Nothing at all: the key has seen this event already (a re-delivery).
    Repeat,
}

/// A windowed computation: the application's half of a windowed stage.
pub trait Aggregation<E>: Send + 'static {
    /// What windows are kept per (a pair, a sensor...). Its `Display` names
    /// the key's record in the state topic.
    type Key: Clone + Eq + Ord + Hash + fmt::Debug + fmt::Display + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// What a key keeps beyond its windows (the previous sample); saved with them.
    type KeyState: Default + Clone + fmt::Debug + Send + Serialize + DeserializeOwned + 'static;
    /// One window's running result.
    type Acc: Default + Clone + fmt::Debug + Send + Serialize + DeserializeOwned + 'static;
    /// What one event contributes to a window.
    type Value;

    /// The windows of `key`.
    fn shape(&self, key: &Self::Key) -> WindowShape;

    /// The event time of `event` and the keys it feeds (pushed onto `keys`).
    fn assign(&self, event: &E, keys: &mut Vec<Self::Key>) -> Assigned;

    /// What `event` contributes to `key`'s windows; may update the key's state.
    /// Called only for events that are not late for the key.
    fn contribution(
        &self,
        key: &Self::Key,
        state: &mut Self::KeyState,
        event: &E,
        time: EventTime,
    ) -> Contribution<Self::Value>;

    /// Fold a contribution into a pane (a tumbling window, or a slide of a sliding one).
    fn add(&self, acc: &mut Self::Acc, value: &Self::Value, time: EventTime);

    /// Fold the pane `later` (which follows `acc`'s in time) into `acc`: a
    /// sliding window's result is its panes merged in order.
    fn merge(&self, acc: &mut Self::Acc, later: &Self::Acc);

    /// The event a window's result is, if any: `closed` for the final result,
    /// not for an early update or a window the input ended inside.
    fn result(
        &self,
        key: &Self::Key,
        state: &Self::KeyState,
        window: Window,
        acc: &Self::Acc,
        closed: bool,
    ) -> Option<E>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_print_as_rfc3339() {
        assert_eq!(EventTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            EventTime(1_704_153_600 * NANOS_PER_SECOND).to_string(),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            EventTime(951_782_400 * NANOS_PER_SECOND + 5).to_string(),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(EventTime(-NANOS_PER_SECOND).to_string(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn an_instant_is_in_size_over_slide_windows() {
        let s = |n: i64| EventTime(n * NANOS_PER_SECOND);
        let tumbling = WindowShape::tumbling(Duration::from_secs(60));
        let windows: Vec<Window> = tumbling.windows_of(s(125)).collect();
        assert_eq!(
            windows,
            vec![Window {
                start: s(120),
                end: s(180)
            }]
        );
        assert_eq!(
            tumbling.last_window(s(-1)),
            Window {
                start: s(-60),
                end: s(0)
            }
        );
        let sliding = WindowShape::sliding(Duration::from_secs(30), Duration::from_secs(10));
        let starts: Vec<i64> = sliding
            .windows_of(s(25))
            .map(|w| w.start.0 / NANOS_PER_SECOND)
            .collect();
        assert_eq!(starts, vec![20, 10, 0]);
        // On a boundary: the window that starts there, not the one that ends there.
        let starts: Vec<i64> = sliding
            .windows_of(s(30))
            .map(|w| w.start.0 / NANOS_PER_SECOND)
            .collect();
        assert_eq!(starts, vec![30, 20, 10]);
    }
}
