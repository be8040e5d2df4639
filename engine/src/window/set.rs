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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{nanos, Aggregation, Contribution, EmitPolicy, EventTime, Window, WindowConfig, WindowShape};
use crate::ack::AckToken;
use crate::event::Origin;
use crate::fast_hash::FastMap;

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

    /// Move every input's watermark to what its newest time says; returns whether one moved.
    pub fn advance(&mut self) -> bool {
        let floor = self.idle_after.map(|idle| self.newest.0.saturating_sub(idle));
        let mut moved = false;
        for input in &mut self.inputs {
            let newest = match floor {
                Some(floor) => input.newest.0.max(floor),
                None => input.newest.0,
            };
            let candidate = EventTime(newest.saturating_sub(self.lateness));
            if candidate > input.watermark {
                input.watermark = candidate;
                moved = true;
            }
        }
        moved
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

/// One pane of a key: `slide` of event time, what windows are made of (a
/// tumbling window is one pane; a 30-day window sliding by a day, 30).
#[derive(Debug)]
struct Pane<Acc> {
    acc: Acc,
    /// Tokens of the inputs it absorbed (when no state topic releases them).
    held: Vec<AckToken>,
}

/// A key's panes by start, oldest first: a few, nearly always appended at the
/// end and taken from the front (a deque keeps its room between days, where a
/// map would allocate and free a node for every day's pane).
#[derive(Debug)]
struct Panes<Acc>(VecDeque<(EventTime, Pane<Acc>)>);

impl<Acc: Default> Panes<Acc> {
    fn newest(&self) -> Option<EventTime> {
        self.0.back().map(|(start, _)| *start)
    }

    fn contains(&self, start: EventTime) -> bool {
        self.0.binary_search_by_key(&start, |(s, _)| *s).is_ok()
    }

    /// The pane starting at `start`, made empty if there is none yet.
    fn get_or_insert(&mut self, start: EventTime) -> &mut Pane<Acc> {
        let index = match self.0.back() {
            Some((newest, _)) if *newest == start => self.0.len() - 1,
            Some((newest, _)) if *newest < start => {
                self.0.push_back((start, Pane::default()));
                self.0.len() - 1
            }
            None => {
                self.0.push_back((start, Pane::default()));
                0
            }
            Some(_) => match self.0.binary_search_by_key(&start, |(s, _)| *s) {
                Ok(index) => index,
                Err(index) => {
                    self.0.insert(index, (start, Pane::default()));
                    index
                }
            },
        };
        &mut self.0[index].1
    }

    /// The panes starting in `[from, to)`.
    fn range(&self, from: EventTime, to: EventTime) -> impl Iterator<Item = &(EventTime, Pane<Acc>)> {
        let first = self.0.partition_point(|(s, _)| *s < from);
        let last = self.0.partition_point(|(s, _)| *s < to);
        self.0.range(first..last)
    }

    /// Drop the panes starting at or before `start`; the one at `start`, if any, is returned.
    fn pop_until(&mut self, start: EventTime) -> Option<Pane<Acc>> {
        let mut at_start = None;
        while self.0.front().is_some_and(|(s, _)| *s <= start) {
            let (s, pane) = self.0.pop_front().expect("checked");
            if s == start {
                at_start = Some(pane);
            }
        }
        at_start
    }
}

impl<Acc: Default> Default for Pane<Acc> {
    fn default() -> Self {
        Pane {
            acc: Acc::default(),
            held: Vec::new(),
        }
    }
}

/// A key's state and open panes.
#[derive(Debug)]
struct KeyWindows<S, Acc> {
    state: S,
    /// A window `[s, s + size)` is the panes starting in it; a pane goes when
    /// the last window containing it closes.
    panes: Panes<Acc>,
    /// The inputs that fed the key, in order: their watermarks close its windows.
    inputs: Vec<usize>,
    /// Windows ending at or before this are closed for the key (also when the
    /// watermark is lower: evicted windows, state restored after a restart).
    closed_until: EventTime,
}

/// One window as saved (a closed window whose result is not confirmed yet).
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

/// One pane as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPane<Acc> {
    pub start: EventTime,
    pub acc: Acc,
}

/// Everything a [`WindowSet`] knows about one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedKey<K, S, Acc> {
    pub key: K,
    pub state: S,
    pub panes: Vec<SavedPane<Acc>>,
    pub closed_until: EventTime,
}

/// What leaves the set.
#[derive(Debug)]
pub enum Out<K, Acc, E> {
    /// A window closed (its watermark passed it, or it was evicted): its final
    /// result, and its running result when [`WindowSet::keep_closed`] asked for it.
    Closed {
        key: K,
        window: Window,
        event: Option<E>,
        acc: Option<Box<Acc>>,
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

/// Open windows, by end: the windows of all keys end at the same boundaries
/// (every minute, every midnight), so all those ending at one instant share a
/// bucket — opening a window is a push, and the due ones leave a bucket at a time.
#[derive(Debug)]
struct Closing<K> {
    by_end: BTreeMap<EventTime, Vec<(K, EventTime)>>,
    len: usize,
}

/// A window in the closing index: (end, key, start).
type Due<K> = (EventTime, K, EventTime);

impl<K: Clone + Ord> Closing<K> {
    fn new() -> Self {
        Closing {
            by_end: BTreeMap::new(),
            len: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add a window; with `check`, only if it is not there yet. Returns whether it was added.
    fn insert(&mut self, end: EventTime, key: K, start: EventTime, check: bool) -> bool {
        let bucket = self.by_end.entry(end).or_default();
        if check && bucket.iter().any(|(k, s)| *k == key && *s == start) {
            return false;
        }
        bucket.push((key, start));
        self.len += 1;
        true
    }

    fn remove(&mut self, end: EventTime, key: &K, start: EventTime) -> bool {
        let Some(bucket) = self.by_end.get_mut(&end) else {
            return false;
        };
        let Some(i) = bucket.iter().position(|(k, s)| k == key && *s == start) else {
            return false;
        };
        bucket.swap_remove(i);
        self.len -= 1;
        if bucket.is_empty() {
            self.by_end.remove(&end);
        }
        true
    }

    fn contains(&self, end: EventTime, key: &K, start: EventTime) -> bool {
        self.by_end
            .get(&end)
            .is_some_and(|b| b.iter().any(|(k, s)| k == key && *s == start))
    }

    /// The window that ends first (ties by key and start).
    fn first(&self) -> Option<Due<K>> {
        let (end, bucket) = self.by_end.first_key_value()?;
        bucket.iter().min().map(|(k, s)| (*end, k.clone(), *s))
    }

    fn first_end(&self) -> Option<EventTime> {
        self.by_end.first_key_value().map(|(end, _)| *end)
    }

    /// Take the windows ending at or before `watermark` into `due`; returns how many.
    fn pop_due(&mut self, watermark: EventTime, due: &mut Vec<Due<K>>) -> usize {
        let mut taken = 0;
        while let Some(entry) = self.by_end.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let (end, bucket) = entry.remove_entry();
            taken += bucket.len();
            due.extend(bucket.into_iter().map(|(k, s)| (end, k, s)));
        }
        self.len -= taken;
        taken
    }

    /// Take every window of `key`.
    fn take_key(&mut self, key: &K) -> Vec<Due<K>> {
        let mut taken = Vec::new();
        for (end, bucket) in &mut self.by_end {
            bucket.retain(|(k, s)| {
                let mine = k == key;
                if mine {
                    taken.push((*end, k.clone(), *s));
                }
                !mine
            });
        }
        self.by_end.retain(|_, bucket| !bucket.is_empty());
        self.len -= taken.len();
        taken
    }

    fn into_all(self) -> impl Iterator<Item = Due<K>> {
        self.by_end
            .into_iter()
            .flat_map(|(end, bucket)| bucket.into_iter().map(move |(k, s)| (end, k, s)))
    }
}

/// What [`WindowSet::drain`] hands back: the open windows (key, window,
/// running result) in order of their end, and every token the panes held.
pub type Drained<K, Acc> = (Vec<(K, Window, Acc)>, Vec<AckToken>);

/// The open windows of every key, and the watermarks.
pub struct WindowSet<E, A: Aggregation<E>> {
    aggregation: A,
    emit: EmitPolicy,
    max_open: usize,
    keys: FastMap<A::Key, KeyWindows<A::KeyState, A::Acc>>,
    /// The open windows of the keys fed by one set of inputs, per set (a few: scanned).
    closing: Vec<(Vec<usize>, Closing<A::Key>)>,
    /// How many windows are open.
    open: usize,
    /// Look for due windows even if no watermark moved (windows were imported).
    rescan: bool,
    /// Windows changed since their last early result (`emit: Every`).
    updated: BTreeSet<(A::Key, EventTime)>,
    next_every: Option<EventTime>,
    evicted: u64,
    /// Hand closed windows' running results out too (to save them until their result is delivered).
    keep_closed: bool,
    pub watermarks: Watermarks,
    out: Vec<Out<A::Key, A::Acc, E>>,
    _event: PhantomData<fn(E)>,
}

/// Add the windows of `key` containing the new pane at `pane_start` that end
/// after `horizon`; returns how many were new. `newest_pane`: the key's newest
/// pane before this one — every window containing it is open (or closed)
/// already, so only the windows starting after it are new (one a pane, in order).
#[allow(clippy::too_many_arguments)]
fn open_windows_of<K: Clone + Ord>(
    shape: &WindowShape,
    closing: &mut Vec<(Vec<usize>, Closing<K>)>,
    inputs: &[usize],
    key: &K,
    pane_start: EventTime,
    newest_pane: Option<EventTime>,
    horizon: EventTime,
) -> usize {
    let after = newest_pane.filter(|newest| *newest < pane_start);
    let group = match closing.iter().position(|(g, _)| g == inputs) {
        Some(i) => i,
        None => {
            closing.push((inputs.to_vec(), Closing::new()));
            closing.len() - 1
        }
    };
    // An older pane than the newest (out of order): some of its windows may be open already.
    let check = newest_pane.is_some() && after.is_none();
    let new = shape
        .windows_of(pane_start)
        .take_while(|w| after.is_none_or(|newest| w.start > newest))
        .filter(|w| w.end > horizon);
    let mut opened = 0;
    for window in new {
        if closing[group].1.insert(window.end, key.clone(), window.start, check) {
            opened += 1;
        }
    }
    opened
}

/// The running result of `window`: its panes merged.
fn merged<E, A: Aggregation<E>>(aggregation: &A, panes: &Panes<A::Acc>, window: Window) -> A::Acc {
    let mut inside = panes.range(window.start, window.end);
    let Some((_, first)) = inside.next() else {
        return A::Acc::default();
    };
    let mut acc = first.acc.clone();
    for (_, pane) in inside {
        aggregation.merge(&mut acc, &pane.acc);
    }
    acc
}

impl<E, A: Aggregation<E>> WindowSet<E, A> {
    pub fn new(aggregation: A, config: &WindowConfig) -> Self {
        Self {
            aggregation,
            emit: config.emit,
            max_open: config.max_open.max(1),
            keys: FastMap::default(),
            closing: Vec::new(),
            open: 0,
            rescan: false,
            updated: BTreeSet::new(),
            next_every: None,
            evicted: 0,
            keep_closed: false,
            watermarks: Watermarks::new(config.lateness, config.idle_after),
            out: Vec::new(),
            _event: PhantomData,
        }
    }

    /// Run on with another aggregation of the same kind (a reload's new
    /// version): the windows and key state stay; `other` gets the old aggregation.
    pub fn swap_aggregation(&mut self, other: &mut Self) {
        std::mem::swap(&mut self.aggregation, &mut other.aggregation);
    }

    pub fn aggregation(&self) -> &A {
        &self.aggregation
    }

    /// Closed windows also hand out their running result (`Out::Closed::acc`).
    pub fn keep_closed(&mut self, keep: bool) {
        self.keep_closed = keep;
    }

    /// Open windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.open
    }

    /// Windows closed early because `max_open` was reached, since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// What left the set since the last call, in order.
    pub fn take_out(&mut self) -> Vec<Out<A::Key, A::Acc, E>> {
        std::mem::take(&mut self.out)
    }

    /// [`WindowSet::take_out`] into `buffer` (keeping both vectors' room).
    pub fn take_out_into(&mut self, buffer: &mut Vec<Out<A::Key, A::Acc, E>>) {
        buffer.append(&mut self.out);
    }

    fn remove_open(&mut self, inputs: &[usize], key: &A::Key, start: EventTime, end: EventTime) {
        if let Some(i) = self.closing.iter().position(|(g, _)| g == inputs) {
            if self.closing[i].1.remove(end, key, start) {
                self.open -= 1;
            }
            if self.closing[i].1.is_empty() {
                self.closing.swap_remove(i);
            }
        }
    }

    /// The open window that ends first, of all keys.
    fn first_to_end(&self) -> Option<Due<A::Key>> {
        self.closing.iter().filter_map(|(_, group)| group.first()).min()
    }

    /// `key` is fed by `input` too: its windows close by that input's watermark as well.
    fn join_input(&mut self, key: &A::Key, input: usize) {
        let Some(entry) = self.keys.get_mut(key) else { return };
        let before = entry.inputs.clone();
        entry.inputs.push(input);
        entry.inputs.sort_unstable();
        let after = entry.inputs.clone();
        let Some(i) = self.closing.iter().position(|(g, _)| *g == before) else {
            return;
        };
        let mine = self.closing[i].1.take_key(key);
        if self.closing[i].1.is_empty() {
            self.closing.swap_remove(i);
        }
        let group = match self.closing.iter().position(|(g, _)| *g == after) {
            Some(i) => i,
            None => {
                self.closing.push((after, Closing::new()));
                self.closing.len() - 1
            }
        };
        for (end, key, start) in mine {
            self.closing[group].1.insert(end, key, start, false);
        }
    }

    /// Feed `event` (at `time`, from `input`: see [`Watermarks::observe`]) into
    /// `key`'s windows; `hold` is a token to keep with its pane (`None` when a
    /// state topic keeps it). Call [`WindowSet::advance`] after the event's
    /// keys are done.
    pub fn add(&mut self, key: &A::Key, event: &E, time: EventTime, input: usize, hold: Option<&AckToken>) -> Added {
        let shape = self.aggregation.shape(key);
        let newest = shape.last_window(time);
        if let Some(entry) = self.keys.get(key) {
            if !entry.inputs.contains(&input) {
                self.join_input(key, input);
            }
        }
        let Self {
            aggregation,
            keys,
            closing,
            open,
            watermarks,
            updated,
            out,
            emit,
            ..
        } = self;
        let entry = match keys.get_mut(key) {
            Some(entry) => entry,
            None => {
                if newest.end <= watermarks.of(&[input]) {
                    return Added::Late(newest);
                }
                keys.entry(key.clone()).or_insert(KeyWindows {
                    state: A::KeyState::default(),
                    panes: Panes(VecDeque::new()),
                    inputs: vec![input],
                    closed_until: EventTime::MIN,
                })
            }
        };
        let horizon = entry.closed_until.max(watermarks.of(&entry.inputs));
        if newest.end <= horizon {
            return Added::Late(newest);
        }
        let value = match aggregation.contribution(key, &mut entry.state, event, time) {
            Contribution::Value(value) => value,
            Contribution::StateOnly => return Added::StateOnly,
            Contribution::Repeat => return Added::Repeat,
        };
        let pane_start = newest.start;
        let newest_pane = entry.panes.newest();
        if newest_pane != Some(pane_start) && !entry.panes.contains(pane_start) {
            *open += open_windows_of(&shape, closing, &entry.inputs, key, pane_start, newest_pane, horizon);
        }
        let pane = entry.panes.get_or_insert(pane_start);
        aggregation.add(&mut pane.acc, &value, time);
        if let Some(ack) = hold.filter(|a| a.is_tracked()) {
            pane.held.push(ack.clone());
        }
        match emit {
            EmitPolicy::OnClose => {}
            EmitPolicy::Every(_) => {
                for window in shape.windows_of(time).filter(|w| w.end > horizon) {
                    updated.insert((key.clone(), window.start));
                }
            }
            EmitPolicy::Updates => {
                for window in shape.windows_of(time).filter(|w| w.end > horizon) {
                    let acc = merged(aggregation, &entry.panes, window);
                    if let Some(event) = aggregation.result(key, &entry.state, window, &acc, false) {
                        out.push(Out::Update {
                            key: key.clone(),
                            window,
                            event,
                        });
                    }
                }
            }
        }
        while self.open > self.max_open {
            let Some((end, key, start)) = self.first_to_end() else {
                break;
            };
            self.evicted += 1;
            let inputs = self.keys.get(&key).map(|k| k.inputs.clone()).unwrap_or_default();
            self.remove_open(&inputs, &key, start, end);
            self.close(key, start, end, true);
        }
        Added::Windows
    }

    /// Move the watermarks to what the inputs say; close the windows they
    /// passed (per input set, in order of their end) and emit due early results.
    pub fn advance(&mut self) {
        let moved = self.watermarks.advance();
        // Also without a move: windows imported behind a watermark close now.
        if moved || std::mem::take(&mut self.rescan) {
            let mut due = Vec::new();
            for (inputs, group) in &mut self.closing {
                let watermark = self.watermarks.of(inputs);
                if group.first_end().is_some_and(|end| end <= watermark) {
                    self.open -= group.pop_due(watermark, &mut due);
                }
            }
            self.closing.retain(|(_, group)| !group.is_empty());
            if due.len() > 1 {
                due.sort();
            }
            for (end, key, start) in due {
                self.close(key, start, end, false);
            }
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
                    let end = EventTime(start.0.saturating_add(self.aggregation.shape(&key).size()));
                    let open = self.closing.iter().any(|(_, group)| group.contains(end, &key, start));
                    if !open {
                        continue;
                    }
                    let window = Window { start, end };
                    let acc = merged(&self.aggregation, &entry.panes, window);
                    if let Some(event) = self.aggregation.result(&key, &entry.state, window, &acc, false) {
                        self.out.push(Out::Update { key, window, event });
                    }
                }
            }
        }
    }

    /// Close a window already taken out of the closing index.
    fn close(&mut self, key: A::Key, start: EventTime, end: EventTime, evicted: bool) {
        let Self {
            aggregation,
            keys,
            updated,
            out,
            emit,
            keep_closed,
            ..
        } = self;
        let Some(entry) = keys.get_mut(&key) else { return };
        if matches!(emit, EmitPolicy::Every(_)) {
            updated.remove(&(key.clone(), start));
        }
        entry.closed_until = entry.closed_until.max(end);
        let window = Window { start, end };
        let (first, second) = {
            let mut inside = entry.panes.range(start, end);
            (inside.next().map(|(s, _)| *s), inside.next().is_some())
        };
        // Panes no later window contains (those starting at or before this
        // window's start) go; one alone at the start (always, for tumbling
        // windows) is this window's result as it is.
        let (acc, held) = match first {
            Some(pane) if !second && pane == start => {
                let pane = entry.panes.pop_until(start).expect("the pane at the start");
                (pane.acc, pane.held)
            }
            Some(_) => {
                let acc = merged(aggregation, &entry.panes, window);
                let held = entry
                    .panes
                    .range(start, end)
                    .flat_map(|(_, p)| p.held.iter().cloned())
                    .collect();
                entry.panes.pop_until(start);
                (acc, held)
            }
            None => {
                entry.panes.pop_until(start);
                (A::Acc::default(), Vec::new())
            }
        };
        let event = aggregation.result(&key, &entry.state, window, &acc, true);
        out.push(Out::Closed {
            key,
            window,
            event,
            acc: keep_closed.then(|| Box::new(acc)),
            held,
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

    /// The input ended: every open window (key, window, running result) in
    /// order of its end, and every token the panes held (all gone from the set).
    pub fn drain(&mut self) -> Drained<A::Key, A::Acc> {
        let mut open: Vec<_> = std::mem::take(&mut self.closing)
            .into_iter()
            .flat_map(|(_, group)| group.into_all())
            .collect();
        open.sort();
        let mut windows = Vec::new();
        for (end, key, start) in open {
            let Some(entry) = self.keys.get(&key) else { continue };
            let window = Window { start, end };
            windows.push((key, window, merged(&self.aggregation, &entry.panes, window)));
        }
        let mut held = Vec::new();
        for entry in self.keys.values_mut() {
            for (_, pane) in std::mem::take(&mut entry.panes.0) {
                held.extend(pane.held);
            }
        }
        self.open = 0;
        self.updated.clear();
        (windows, held)
    }

    /// Everything about `key`, to be saved.
    pub fn export(&self, key: &A::Key) -> Option<SavedKey<A::Key, A::KeyState, A::Acc>> {
        let entry = self.keys.get(key)?;
        Some(SavedKey {
            key: key.clone(),
            state: entry.state.clone(),
            panes: entry
                .panes
                .0
                .iter()
                .map(|(start, pane)| SavedPane {
                    start: *start,
                    acc: pane.acc.clone(),
                })
                .collect(),
            closed_until: entry.closed_until,
        })
    }

    /// Replace what the set knows of a key by a saved state, fed by `input`
    /// (the partition its last save came from). Windows its watermark already
    /// passed close at the next [`WindowSet::advance`].
    pub fn import(&mut self, saved: SavedKey<A::Key, A::KeyState, A::Acc>, input: usize) {
        if self.keys.remove(&saved.key).is_some() {
            for (_, group) in &mut self.closing {
                for (_, key, start) in group.take_key(&saved.key) {
                    self.open -= 1;
                    self.updated.remove(&(key, start));
                }
            }
            self.closing.retain(|(_, group)| !group.is_empty());
        }
        self.rescan = true;
        let shape = self.aggregation.shape(&saved.key);
        let inputs = vec![input];
        let mut panes = VecDeque::new();
        let mut saved_panes = saved.panes;
        saved_panes.sort_by_key(|p| p.start);
        let mut newest_pane = None;
        for pane in saved_panes {
            self.open += open_windows_of(
                &shape,
                &mut self.closing,
                &inputs,
                &saved.key,
                pane.start,
                newest_pane,
                saved.closed_until,
            );
            newest_pane = Some(pane.start);
            panes.push_back((
                pane.start,
                Pane {
                    acc: pane.acc,
                    held: Vec::new(),
                },
            ));
        }
        self.keys.insert(
            saved.key,
            KeyWindows {
                state: saved.state,
                panes: Panes(panes),
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
                index: 0,
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
                Out::Closed { event, .. } => event,
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
            set.export(&"a".into()).unwrap().panes[0].acc.sum,
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
                .0
                .into_iter()
                .map(|(k, w, acc)| format!("{k} {w} {}", acc.sum)),
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
                    .0
                    .into_iter()
                    .map(|(k, w, acc)| format!("{k} {w} {}", acc.sum)),
            );
            assert_eq!(seen, expected, "restarted after {split} events");
        }
    }
}
