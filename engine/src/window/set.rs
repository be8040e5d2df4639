//! [`WindowSet`]: the open windows of every key and the watermarks that close
//! them — pure state, no I/O, so every rule about time is tested here and a
//! restart is an [`WindowSet::export`] / [`WindowSet::import`] round trip.
//!
//! **Whose watermark closes a window.** Each input (a partition of a log, or
//! the in-process stream) has its own watermark: its newest event time minus
//! the lateness, never going back. A key's windows close by the watermark of
//! the inputs that feed it — the oldest of them, when several do. For a topic
//! keyed by the stage's key (rates by pair) that is the key's own partition:
//! another partition being slower, or not read yet after a start, can neither
//! hold the key's windows back nor make its events late, and every other key
//! of the same input closes a quiet key's windows. With `idle_after`, an input
//! that falls further behind the newest of all inputs is taken to be that far
//! behind, so a silent partition's windows close too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{nanos, Aggregation, Contribution, EmitPolicy, EventTime, Window, WindowConfig};
use crate::ack::AckToken;
use crate::event::Origin;

/// One input: its newest event time and its watermark.
#[derive(Debug)]
struct Input {
    /// `None`: events that came without an [`Origin`] (the in-process stream).
    partition: Option<(Arc<str>, i32)>,
    newest: EventTime,
    watermark: EventTime,
    /// Raised since the last [`Watermarks::take_changed`].
    changed: bool,
}

impl Input {
    fn is(&self, origin: Option<&Origin>) -> bool {
        match (&self.partition, origin) {
            (None, None) => true,
            (Some((topic, partition)), Some(o)) => *partition == o.partition && **topic == *o.topic,
            _ => false,
        }
    }

    fn is_partition(&self, topic: &str, partition: i32) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|(t, p)| **t == *topic && *p == partition)
    }
}

/// The watermark of every input (see the module docs).
#[derive(Debug)]
pub struct Watermarks {
    inputs: Vec<Input>,
    lateness: i64,
    idle_after: Option<i64>,
    /// The newest event time of any input.
    newest: EventTime,
}

impl Watermarks {
    pub fn new(lateness: Duration, idle_after: Option<Duration>) -> Self {
        Self {
            inputs: Vec::new(),
            lateness: nanos(lateness),
            idle_after: idle_after.map(nanos),
            newest: EventTime::MIN,
        }
    }

    fn index(&mut self, origin: Option<&Origin>) -> usize {
        match self.inputs.iter().position(|i| i.is(origin)) {
            Some(index) => index,
            None => {
                self.inputs.push(Input {
                    partition: origin.map(|o| (o.topic.clone(), o.partition)),
                    newest: EventTime::MIN,
                    watermark: EventTime::MIN,
                    changed: false,
                });
                self.inputs.len() - 1
            }
        }
    }

    /// The input of a partition (`None`: the in-process stream), added if new.
    pub fn input_of(&mut self, partition: Option<(&str, i32)>) -> usize {
        match partition {
            None => self.index(None),
            Some((topic, partition)) => match self.inputs.iter().position(|i| i.is_partition(topic, partition)) {
                Some(index) => index,
                None => {
                    self.inputs.push(Input {
                        partition: Some((Arc::from(topic), partition)),
                        newest: EventTime::MIN,
                        watermark: EventTime::MIN,
                        changed: false,
                    });
                    self.inputs.len() - 1
                }
            },
        }
    }

    /// An event at `time` from `origin`'s partition (or the in-process stream):
    /// its input, and whether the event raised that input's newest time.
    pub fn observe(&mut self, origin: Option<&Origin>, time: EventTime) -> (usize, bool) {
        let index = self.index(origin);
        let input = &mut self.inputs[index];
        let raised = time > input.newest;
        if raised {
            input.newest = time;
            input.changed = true;
            self.newest = self.newest.max(time);
        }
        (index, raised)
    }

    /// Start a partition's input at a saved newest time (a restore).
    pub fn seed(&mut self, topic: &str, partition: i32, newest: EventTime) {
        let index = self.input_of(Some((topic, partition)));
        let input = &mut self.inputs[index];
        input.newest = input.newest.max(newest);
        self.newest = self.newest.max(newest);
    }

    /// Move every input's watermark to what its newest time says.
    pub fn advance(&mut self) {
        let floor = self.idle_after.map(|idle| self.newest.0.saturating_sub(idle));
        for input in &mut self.inputs {
            let newest = match floor {
                Some(floor) => input.newest.0.max(floor),
                None => input.newest.0,
            };
            let candidate = EventTime(newest.saturating_sub(self.lateness));
            if candidate > input.watermark {
                input.watermark = candidate;
            }
        }
    }

    /// The watermark of a key fed by `inputs`: the oldest of theirs.
    pub fn of(&self, inputs: &[usize]) -> EventTime {
        inputs
            .iter()
            .map(|i| self.inputs[*i].watermark)
            .min()
            .unwrap_or(EventTime::MIN)
    }

    /// The oldest watermark of all inputs (what every window has passed).
    pub fn slowest(&self) -> EventTime {
        self.inputs.iter().map(|i| i.watermark).min().unwrap_or(EventTime::MIN)
    }

    /// The newest watermark of all inputs.
    pub fn furthest(&self) -> EventTime {
        self.inputs.iter().map(|i| i.watermark).max().unwrap_or(EventTime::MIN)
    }

    /// The partitions whose newest time rose since the last call: (topic, partition, newest).
    pub fn take_changed(&mut self) -> Vec<(Arc<str>, i32, EventTime)> {
        let mut changed = Vec::new();
        for input in &mut self.inputs {
            if std::mem::take(&mut input.changed) {
                if let Some((topic, partition)) = &input.partition {
                    changed.push((topic.clone(), *partition, input.newest));
                }
            }
        }
        changed
    }
}

/// One open window.
#[derive(Debug)]
struct OpenWindow<Acc> {
    end: EventTime,
    acc: Acc,
    /// Tokens of the inputs it absorbed (when no state topic releases them).
    held: Vec<AckToken>,
}

/// A key's state and open windows.
#[derive(Debug)]
struct KeyWindows<S, Acc> {
    state: S,
    open: BTreeMap<EventTime, OpenWindow<Acc>>,
    /// The inputs that fed the key, in order: their watermarks close its windows.
    inputs: Vec<usize>,
    /// Windows ending at or before this are closed for the key (also when the
    /// watermark is lower: evicted windows, state restored after a restart).
    closed_until: EventTime,
}

/// One window as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedWindow<Acc> {
    pub start: EventTime,
    pub end: EventTime,
    pub acc: Acc,
}

impl<Acc> SavedWindow<Acc> {
    pub fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
        }
    }
}

/// Everything a [`WindowSet`] knows about one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedKey<K, S, Acc> {
    pub key: K,
    pub state: S,
    pub open: Vec<SavedWindow<Acc>>,
    pub closed_until: EventTime,
}

/// What leaves the set.
#[derive(Debug)]
pub enum Out<K, Acc, E> {
    /// A window closed (its watermark passed it, or it was evicted): its final result is due.
    Closed {
        key: K,
        window: Window,
        acc: Acc,
        held: Vec<AckToken>,
        evicted: bool,
    },
    /// An early, not final result (`emit: Updates` or `Every`).
    Update { key: K, window: Window, event: E },
}

/// What [`WindowSet::add`] did with an event for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Into the key's open windows.
    Windows,
    /// Into the key's state only.
    StateOnly,
    /// The windows containing it closed already: this one is the newest of them.
    Late(Window),
    /// A re-delivery the key had seen.
    Repeat,
}

/// Open windows as (end, key, start), in the order they close.
type Closing<K> = BTreeSet<(EventTime, K, EventTime)>;

/// An open window taken out of the set when the input ended: key, window, running result, held tokens.
pub type Drained<K, Acc> = (K, Window, Acc, Vec<AckToken>);

/// The open windows of every key, and the watermarks.
pub struct WindowSet<E, A: Aggregation<E>> {
    aggregation: A,
    emit: EmitPolicy,
    max_open: usize,
    keys: HashMap<A::Key, KeyWindows<A::KeyState, A::Acc>>,
    /// The open windows of the keys fed by one set of inputs, by that set.
    closing: HashMap<Vec<usize>, Closing<A::Key>>,
    /// Every open window: which one ends first (for eviction).
    by_end: Closing<A::Key>,
    /// Windows changed since their last early result (`emit: Every`).
    updated: BTreeSet<(A::Key, EventTime)>,
    next_every: Option<EventTime>,
    evicted: u64,
    pub watermarks: Watermarks,
    out: Vec<Out<A::Key, A::Acc, E>>,
    _event: PhantomData<fn(E)>,
}

impl<E, A: Aggregation<E>> WindowSet<E, A> {
    pub fn new(aggregation: A, config: &WindowConfig) -> Self {
        Self {
            aggregation,
            emit: config.emit,
            max_open: config.max_open.max(1),
            keys: HashMap::new(),
            closing: HashMap::new(),
            by_end: BTreeSet::new(),
            updated: BTreeSet::new(),
            next_every: None,
            evicted: 0,
            watermarks: Watermarks::new(config.lateness, config.idle_after),
            out: Vec::new(),
            _event: PhantomData,
        }
    }

    pub fn aggregation(&self) -> &A {
        &self.aggregation
    }

    /// Open windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.by_end.len()
    }

    /// Windows closed early because `max_open` was reached, since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// What left the set since the last call, in order.
    pub fn take_out(&mut self) -> Vec<Out<A::Key, A::Acc, E>> {
        std::mem::take(&mut self.out)
    }

    fn insert_open(&mut self, inputs: &[usize], key: &A::Key, start: EventTime, end: EventTime) {
        self.closing
            .entry(inputs.to_vec())
            .or_default()
            .insert((end, key.clone(), start));
        self.by_end.insert((end, key.clone(), start));
    }

    fn remove_open(&mut self, inputs: &[usize], key: &A::Key, start: EventTime, end: EventTime) {
        let entry = (end, key.clone(), start);
        if let Some(group) = self.closing.get_mut(inputs) {
            group.remove(&entry);
            if group.is_empty() {
                self.closing.remove(inputs);
            }
        }
        self.by_end.remove(&entry);
    }

    /// `key` is fed by `input` too: its windows close by that input's watermark as well.
    fn join_input(&mut self, key: &A::Key, input: usize) {
        let Some(entry) = self.keys.get_mut(key) else { return };
        if entry.inputs.contains(&input) {
            return;
        }
        let before = entry.inputs.clone();
        entry.inputs.push(input);
        entry.inputs.sort_unstable();
        let after = entry.inputs.clone();
        let windows: Vec<(EventTime, EventTime)> = entry.open.iter().map(|(start, w)| (*start, w.end)).collect();
        for (start, end) in windows {
            self.remove_open(&before, key, start, end);
            self.insert_open(&after, key, start, end);
        }
    }

    /// Feed `event` (at `time`, from `input`: see [`Watermarks::observe`]) into
    /// `key`'s windows; `hold` is a token to keep with each window it goes into
    /// (`None` when a state topic keeps it). Call [`WindowSet::advance`] after
    /// the event's keys are done.
    pub fn add(&mut self, key: &A::Key, event: &E, time: EventTime, input: usize, hold: Option<&AckToken>) -> Added {
        let shape = self.aggregation.shape(key);
        let newest = shape.last_window(time);
        if !self.keys.contains_key(key) {
            if newest.end <= self.watermarks.of(&[input]) {
                return Added::Late(newest);
            }
            self.keys.insert(
                key.clone(),
                KeyWindows {
                    state: A::KeyState::default(),
                    open: BTreeMap::new(),
                    inputs: vec![input],
                    closed_until: EventTime::MIN,
                },
            );
        }
        self.join_input(key, input);
        let entry = &self.keys[key];
        let horizon = entry.closed_until.max(self.watermarks.of(&entry.inputs));
        if newest.end <= horizon {
            return Added::Late(newest);
        }
        let entry = self.keys.get_mut(key).expect("inserted above");
        let value = match self.aggregation.contribution(key, &mut entry.state, event, time) {
            Contribution::Value(value) => value,
            Contribution::StateOnly => return Added::StateOnly,
            Contribution::Repeat => return Added::Repeat,
        };
        let inputs = entry.inputs.clone();
        let mut changed = Vec::new();
        let mut opened = Vec::new();
        for window in shape.windows_of(time).filter(|w| w.end > horizon) {
            let slot = entry.open.entry(window.start).or_insert_with(|| {
                opened.push(window);
                OpenWindow {
                    end: window.end,
                    acc: A::Acc::default(),
                    held: Vec::new(),
                }
            });
            self.aggregation.add(&mut slot.acc, &value, time);
            if let Some(ack) = hold.filter(|a| a.is_tracked()) {
                slot.held.push(ack.clone());
            }
            changed.push(window);
        }
        match self.emit {
            EmitPolicy::OnClose => {}
            EmitPolicy::Every(_) => {
                for window in &changed {
                    self.updated.insert((key.clone(), window.start));
                }
            }
            EmitPolicy::Updates => {
                for window in changed {
                    let acc = &entry.open[&window.start].acc;
                    if let Some(event) = self.aggregation.result(key, &entry.state, window, acc, false) {
                        self.out.push(Out::Update {
                            key: key.clone(),
                            window,
                            event,
                        });
                    }
                }
            }
        }
        for window in opened {
            self.insert_open(&inputs, key, window.start, window.end);
        }
        while self.by_end.len() > self.max_open {
            let Some((end, key, start)) = self.by_end.first().cloned() else {
                break;
            };
            self.evicted += 1;
            self.close(key, start, end, true);
        }
        Added::Windows
    }

    /// Move the watermarks to what the inputs say; close the windows they
    /// passed (per input set, in order of their end) and emit due early results.
    pub fn advance(&mut self) {
        self.watermarks.advance();
        // Also without a move: windows imported behind a watermark close now.
        let mut due = Vec::new();
        for (inputs, group) in &self.closing {
            let watermark = self.watermarks.of(inputs);
            due.extend(group.iter().take_while(|(end, _, _)| *end <= watermark).cloned());
        }
        due.sort();
        for (end, key, start) in due {
            self.close(key, start, end, false);
        }
        if let EmitPolicy::Every(every) = self.emit {
            let watermark = self.watermarks.furthest();
            let every = nanos(every).max(1);
            let due = watermark != EventTime::MIN && self.next_every.is_none_or(|next| watermark >= next);
            if due {
                self.next_every = Some(EventTime(
                    watermark
                        .0
                        .div_euclid(every)
                        .saturating_mul(every)
                        .saturating_add(every),
                ));
                for (key, start) in std::mem::take(&mut self.updated) {
                    let Some(entry) = self.keys.get(&key) else { continue };
                    let Some(open) = entry.open.get(&start) else { continue };
                    let window = Window { start, end: open.end };
                    if let Some(event) = self.aggregation.result(&key, &entry.state, window, &open.acc, false) {
                        self.out.push(Out::Update { key, window, event });
                    }
                }
            }
        }
    }

    fn close(&mut self, key: A::Key, start: EventTime, end: EventTime, evicted: bool) {
        let Some(entry) = self.keys.get_mut(&key) else { return };
        let Some(window) = entry.open.remove(&start) else {
            return;
        };
        entry.closed_until = entry.closed_until.max(end);
        let inputs = entry.inputs.clone();
        self.remove_open(&inputs, &key, start, end);
        if matches!(self.emit, EmitPolicy::Every(_)) {
            self.updated.remove(&(key.clone(), start));
        }
        self.out.push(Out::Closed {
            key,
            window: Window { start, end },
            acc: window.acc,
            held: window.held,
            evicted,
        });
    }

    /// The result event of a window of `key` (for a closed one, or one emitted again).
    pub fn result(&self, key: &A::Key, window: Window, acc: &A::Acc, closed: bool) -> Option<E> {
        let state = self.keys.get(key).map(|k| &k.state);
        let default;
        let state = match state {
            Some(state) => state,
            None => {
                default = A::KeyState::default();
                &default
            }
        };
        self.aggregation.result(key, state, window, acc, closed)
    }

    /// The input ended: every open window, in order of its end, with its
    /// tokens (the windows are gone from the set).
    pub fn drain(&mut self) -> Vec<Drained<A::Key, A::Acc>> {
        let mut drained = Vec::new();
        for (end, key, start) in std::mem::take(&mut self.by_end) {
            let Some(entry) = self.keys.get_mut(&key) else { continue };
            if let Some(window) = entry.open.remove(&start) {
                drained.push((key, Window { start, end }, window.acc, window.held));
            }
        }
        self.closing.clear();
        self.updated.clear();
        drained
    }

    /// Everything about `key`, to be saved.
    pub fn export(&self, key: &A::Key) -> Option<SavedKey<A::Key, A::KeyState, A::Acc>> {
        let entry = self.keys.get(key)?;
        Some(SavedKey {
            key: key.clone(),
            state: entry.state.clone(),
            open: entry
                .open
                .iter()
                .map(|(start, w)| SavedWindow {
                    start: *start,
                    end: w.end,
                    acc: w.acc.clone(),
                })
                .collect(),
            closed_until: entry.closed_until,
        })
    }

    /// Replace what the set knows of a key by a saved state, fed by `input`
    /// (the partition its last save came from). Windows its watermark already
    /// passed close at the next [`WindowSet::advance`].
    pub fn import(&mut self, saved: SavedKey<A::Key, A::KeyState, A::Acc>, input: usize) {
        if let Some(old) = self.keys.remove(&saved.key) {
            for (start, window) in old.open {
                self.remove_open(&old.inputs, &saved.key, start, window.end);
                self.updated.remove(&(saved.key.clone(), start));
            }
        }
        let inputs = vec![input];
        let mut open = BTreeMap::new();
        for window in saved.open {
            self.insert_open(&inputs, &saved.key, window.start, window.end);
            open.insert(
                window.start,
                OpenWindow {
                    end: window.end,
                    acc: window.acc,
                    held: Vec::new(),
                },
            );
        }
        self.keys.insert(
            saved.key,
            KeyWindows {
                state: saved.state,
                open,
                inputs,
                closed_until: saved.closed_until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{SumAggregation, TestEvent};
    use crate::window::{LatePolicy, WindowShape};

    fn reading(key: &str, at_s: i64, value: i64) -> TestEvent {
        TestEvent::Reading {
            key: key.into(),
            at_ms: at_s * 1000,
            value,
        }
    }

    fn set(size_s: u64, slide_s: u64, lateness_s: u64) -> WindowSet<TestEvent, SumAggregation> {
        let config = WindowConfig {
            lateness: Duration::from_secs(lateness_s),
            late: LatePolicy::Drop,
            ..WindowConfig::default()
        };
        let shape = WindowShape::sliding(Duration::from_secs(size_s), Duration::from_secs(slide_s));
        WindowSet::new(SumAggregation::new(shape), &config)
    }

    /// Feed readings one by one as the stage does; returns what came out as
    /// `key [start,end) sum/count` text, and `late key@t` for late events.
    fn feed(set: &mut WindowSet<TestEvent, SumAggregation>, events: &[TestEvent]) -> Vec<String> {
        let in_process: Vec<(Option<i32>, TestEvent)> = events.iter().map(|e| (None, e.clone())).collect();
        feed_inputs(set, &in_process)
    }

    /// [`feed`], each reading read from that partition of one topic (`None`: in-process).
    fn feed_inputs(set: &mut WindowSet<TestEvent, SumAggregation>, events: &[(Option<i32>, TestEvent)]) -> Vec<String> {
        let mut seen = Vec::new();
        for (partition, event) in events {
            let origin = partition.map(|partition| Origin {
                topic: "t".into(),
                partition,
                offset: 0,
                epoch: 0,
            });
            let mut keys = Vec::new();
            let crate::window::Assigned::At(time) = set.aggregation().assign(event, &mut keys) else {
                panic!("readings are windowed")
            };
            let (input, _) = set.watermarks.observe(origin.as_ref(), time);
            for key in &keys {
                if let Added::Late(_) = set.add(key, event, time, input, None) {
                    seen.push(format!("late {key}@{}", time.0 / 1_000_000_000));
                }
            }
            set.advance();
            seen.extend(outs(set));
        }
        seen
    }

    fn outs(set: &mut WindowSet<TestEvent, SumAggregation>) -> Vec<String> {
        set.take_out()
            .into_iter()
            .filter_map(|out| match out {
                Out::Closed { key, window, acc, .. } => set.result(&key, window, &acc, true),
                Out::Update { event, .. } => Some(event),
            })
            .map(|e| match e {
                TestEvent::Total {
                    key,
                    start_ms,
                    end_ms,
                    sum,
                    count,
                    closed,
                } => format!(
                    "{key} [{},{}) {sum}/{count}{}",
                    start_ms / 1000,
                    end_ms / 1000,
                    if closed { "" } else { " (update)" }
                ),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn out_of_order_events_within_the_lateness_still_count() {
        let mut set = set(10, 10, 5);
        let out = feed(
            &mut set,
            &[
                reading("a", 1, 1),
                reading("a", 12, 10),
                reading("a", 8, 2), // 4 s behind the newest: within 5 s
                reading("a", 16, 20),
            ],
        );
        assert_eq!(out, vec!["a [0,10) 3/2"], "closed at watermark 16-5 = 11");
    }

    #[test]
    fn events_later_than_the_lateness_are_late() {
        let mut set = set(10, 10, 2);
        let out = feed(
            &mut set,
            &[
                reading("a", 1, 1),
                reading("a", 13, 10),
                reading("a", 9, 5),
                reading("a", 10, 7),
            ],
        );
        assert_eq!(out, vec!["a [0,10) 1/1", "late a@9"]);
        assert_eq!(
            set.export(&"a".into()).unwrap().open[0].acc.sum,
            17,
            "10 and 7 in [10,20)"
        );
    }

    #[test]
    fn a_key_that_goes_quiet_is_closed_by_the_others() {
        let mut set = set(10, 10, 0);
        let out = feed(
            &mut set,
            &[reading("quiet", 2, 1), reading("busy", 3, 1), reading("busy", 25, 1)],
        );
        assert_eq!(out, vec!["busy [0,10) 1/1", "quiet [0,10) 1/1"]);
        assert_eq!(set.open_windows(), 1, "only busy's [20,30) stays open");
    }

    #[test]
    fn sliding_windows_take_every_event_they_contain() {
        let mut set = set(30, 10, 0);
        let out = feed(
            &mut set,
            &[
                reading("a", 5, 1),
                reading("a", 15, 2),
                reading("a", 25, 4),
                reading("a", 35, 8),
            ],
        );
        // Closed by 15, 25, 35: [-20,10), [-10,20), [0,30).
        assert_eq!(out, vec!["a [-20,10) 1/1", "a [-10,20) 3/2", "a [0,30) 7/3"]);
    }

    #[test]
    fn each_partition_closes_the_windows_of_its_own_keys() {
        let events = [
            (Some(0), reading("a", 1, 1)),
            (Some(1), reading("b", 2, 1)),
            (Some(0), reading("a2", 3, 1)),
            (Some(0), reading("a", 25, 1)),
            // Partition 1 is slower (or read later): its events are not late for partition 0's pace.
            (Some(1), reading("b", 8, 1)),
            (Some(1), reading("b", 12, 1)),
        ];
        let mut set = set(10, 10, 0);
        assert_eq!(
            feed_inputs(&mut set, &events),
            vec!["a [0,10) 1/1", "a2 [0,10) 1/1", "b [0,10) 2/2"],
            "a2 went quiet: partition 0's other key closed its window"
        );
        // With `idle_after`, a partition that falls too far behind is taken along.
        let config = WindowConfig {
            idle_after: Some(Duration::from_secs(10)),
            ..WindowConfig::default()
        };
        let mut idle = WindowSet::new(
            SumAggregation::new(WindowShape::tumbling(Duration::from_secs(10))),
            &config,
        );
        assert_eq!(
            feed_inputs(&mut idle, &events),
            vec!["a [0,10) 1/1", "a2 [0,10) 1/1", "b [0,10) 1/1", "late b@8"],
            "partition 1 counts as 15 s once partition 0 is at 25"
        );
    }

    #[test]
    fn early_results_come_before_the_final_one() {
        let config = WindowConfig {
            emit: EmitPolicy::Updates,
            ..WindowConfig::default()
        };
        let mut updates = WindowSet::new(
            SumAggregation::new(WindowShape::tumbling(Duration::from_secs(10))),
            &config,
        );
        let out = feed(
            &mut updates,
            &[reading("a", 1, 1), reading("a", 2, 2), reading("a", 11, 4)],
        );
        assert_eq!(
            out,
            vec![
                "a [0,10) 1/1 (update)",
                "a [0,10) 3/2 (update)",
                "a [10,20) 4/1 (update)",
                "a [0,10) 3/2"
            ]
        );
        let config = WindowConfig {
            emit: EmitPolicy::Every(Duration::from_secs(4)),
            ..WindowConfig::default()
        };
        let mut every = WindowSet::new(
            SumAggregation::new(WindowShape::tumbling(Duration::from_secs(10))),
            &config,
        );
        let out = feed(
            &mut every,
            &[
                reading("a", 1, 1),
                reading("a", 2, 2),
                reading("a", 5, 4),
                reading("a", 9, 8),
                reading("a", 12, 1),
            ],
        );
        assert_eq!(
            out,
            vec![
                "a [0,10) 1/1 (update)",  // the first watermark
                "a [0,10) 7/3 (update)",  // passed 4
                "a [0,10) 15/4 (update)", // passed 8
                "a [0,10) 15/4",          // closed by 12, which also passes 12:
                "a [10,20) 1/1 (update)",
            ]
        );
    }

    #[test]
    fn beyond_max_open_the_window_ending_first_closes_early_and_stays_closed() {
        let config = WindowConfig {
            max_open: 2,
            lateness: Duration::from_secs(100),
            ..WindowConfig::default()
        };
        let mut set = WindowSet::new(
            SumAggregation::new(WindowShape::tumbling(Duration::from_secs(10))),
            &config,
        );
        let out = feed(
            &mut set,
            &[
                reading("a", 1, 1),
                reading("b", 2, 1),
                reading("c", 3, 1),
                reading("a", 4, 1),
            ],
        );
        assert_eq!(out, vec!["a [0,10) 1/1", "late a@4"], "evicted, then late for that key");
        assert_eq!(set.take_evicted(), 1);
        assert_eq!(set.open_windows(), 2);
    }

    #[test]
    fn a_restart_in_the_middle_of_a_window_loses_and_repeats_nothing() {
        let events: Vec<TestEvent> = (0..40)
            .map(|i| reading(["a", "b", "c"][i % 3], (i as i64 * 7) % 50 + i as i64 * 2, i as i64))
            .collect();
        let mut whole = set(20, 10, 15);
        let mut expected = feed(&mut whole, &events);
        expected.extend(
            whole
                .drain()
                .into_iter()
                .map(|(k, w, acc, _)| format!("{k} {w} {}", acc.sum)),
        );
        assert!(
            expected.iter().filter(|e| !e.starts_with("late")).count() >= 8,
            "{expected:?}"
        );
        for split in 1..events.len() {
            let mut before = set(20, 10, 15);
            let mut seen = feed(&mut before, &events[..split]);
            // Saved as the state topic holds it: JSON per key, plus the watermark.
            let saved: Vec<String> = ["a", "b", "c"]
                .iter()
                .filter_map(|k| before.export(&k.to_string()))
                .map(|s| serde_json::to_string(&s).unwrap())
                .collect();
            let newest = before.watermarks.inputs[0].newest;
            let mut after = set(20, 10, 15);
            let input = after.watermarks.input_of(None);
            for json in &saved {
                after.import(serde_json::from_str(json).unwrap(), input);
            }
            after.watermarks.observe(None, newest);
            after.advance();
            seen.extend(outs(&mut after));
            seen.extend(feed(&mut after, &events[split..]));
            seen.extend(
                after
                    .drain()
                    .into_iter()
                    .map(|(k, w, acc, _)| format!("{k} {w} {}", acc.sum)),
            );
            assert_eq!(seen, expected, "restarted after {split} events");
        }
    }
}
