//! [`WindowStage`]: the task-shaped driver that runs an [`Aggregation`] —
//! watermarks, late events, results and their acknowledgements, metrics, and
//! checkpoints to a state topic.
//!
//! **Acknowledgements.** Every result carries the tokens of what it was made
//! of, so an input is finalized only once the windows it fed are durable:
//! - *without* `state`, each window holds a clone of the token of every input
//!   it absorbed, and its result carries them all, joined
//!   ([`AckToken::joined`]). With a replay (unacked tokens) that costs
//!   nothing; reading from Kafka, it holds commits back until the longest
//!   window closes.
//! - *with* `state` (inputs from a `KafkaSource`), a key's token clones are
//!   held until a save of the key is delivered ([`Checkpoints`]); the save
//!   holds the key's open windows and state, the position of its last input,
//!   and the results of closed windows not yet confirmed delivered. A
//!   result's token releases the input that closed it once it is delivered.
//!   Each input partition's newest event time is saved too (record
//!   `watermark:<topic>[<partition>]`), so after a restart the windows of a
//!   partition's keys close where they would have.
//! - When the input ends (shutdown, or a finite source is done): with `state`
//!   the stage saves and stops, the windows continue after a restart; without
//!   it the open windows are emitted as not final (`closed: false` results)
//!   and the tokens they held are marked `Failed`, so a source with something
//!   to commit re-delivers those inputs rather than losing them.
//! - When a reload replaces the stage: with `state` it saves and its new
//!   version restores, as after a restart; without, the new version takes the
//!   open windows over, with the tokens they hold (when the `time` settings are
//!   the same; otherwise it emits them as not final, as at the end of an input).
//!
//! **Restore.** The first input from a partition with a new assignment epoch
//! (start, rebalance) reads the state topic: the keys last saved from such a
//! partition are restored, re-delivered inputs they cover are skipped, their
//! unconfirmed results are emitted again (duplicates, never losses), and the
//! partition's watermark is seeded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::{counter, gauge, Counter, Gauge};
use serde::{Deserialize, Serialize};

use super::set::{Added, Out, SavedKey, SavedWindow, WindowSet};
use super::{Aggregation, Assigned, EventTime, LatePolicy, WindowConfig};
use crate::ack::{AckStatus, AckToken};
use crate::event::{Envelope, Event, IngestTime};
use crate::kafka::{decode_saved, save_timer, Checkpoints, Position, StateTopic, StateTopicConfig, Unconfirmed};
use crate::metrics::StageLabels;
use crate::registry::BuildContext;
use crate::stage::{Failure, Input, Outputs, Stage, StageError, TaskTransform};

/// Gauge: windows open now, over all keys.
pub const OPEN_WINDOWS: &str = "fxflow_window_open";
/// Gauge: the stage's watermark, as Unix seconds of event time.
pub const WATERMARK_SECONDS: &str = "fxflow_window_watermark_seconds";
/// Counter: windows closed early because `max_open` was reached.
pub const EVICTIONS: &str = "fxflow_window_evictions_total";

/// The saved-state format version.
const VERSION: u32 = 1;
const WINDOW_RECORD: &str = "window:";
const WATERMARK_RECORD: &str = "watermark:";

/// One key's record in the state topic.
#[derive(Serialize, Deserialize)]
struct SavedRecord<K, S, Acc> {
    v: u32,
    /// The last input the state covers.
    position: Position,
    state: SavedKey<K, S, Acc>,
    /// Closed windows whose result was not yet confirmed delivered.
    #[serde(default = "Vec::new")]
    emitted: Vec<SavedWindow<Acc>>,
}

/// One input partition's newest event time.
#[derive(Serialize, Deserialize)]
struct SavedWatermark {
    v: u32,
    topic: String,
    partition: i32,
    newest: EventTime,
}

struct Saving<K, Acc> {
    checkpoints: Checkpoints<K>,
    unconfirmed: Unconfirmed<K, SavedWindow<Acc>>,
    /// Inputs that raised a partition's newest time without changing any key:
    /// released by the next save of the watermarks.
    watermark_held: Vec<AckToken>,
}

/// A windowed stage: an [`Aggregation`] and the engine's handling of time.
pub struct WindowStage<E, A: Aggregation<E>> {
    set: WindowSet<E, A>,
    /// The event-time settings, as text: a reload's new version takes the
    /// open windows over only when they are the same.
    time: String,
    late: LatePolicy,
    saving: Option<Saving<A::Key, A::Acc>>,
    keys: Vec<A::Key>,
    /// What left the window set, being turned into events (kept for its room).
    outs: Vec<Out<A::Key, A::Acc, E>>,
}

impl<E: Event, A: Aggregation<E>> WindowStage<E, A> {
    /// The stage, saving to `state` (a topic and how often) when given.
    pub fn new(aggregation: A, config: &WindowConfig, state: Option<(StateTopic, Duration)>) -> Self {
        let mut set = WindowSet::new(aggregation, config);
        set.keep_closed(state.is_some());
        Self {
            set,
            time: format!("{config:?}"),
            late: config.late,
            saving: state.map(|(topic, interval)| Saving {
                checkpoints: Checkpoints::new(topic, interval),
                unconfirmed: Unconfirmed::default(),
                watermark_held: Vec::new(),
            }),
            keys: Vec::new(),
            outs: Vec::new(),
        }
    }

    /// What a stage config's `build` returns: the stage, with its state topic opened.
    pub fn build(
        aggregation: A,
        config: &WindowConfig,
        state: Option<&StateTopicConfig>,
        cx: &BuildContext,
    ) -> Result<Stage<E>, StageError> {
        let state = match state {
            Some(state) => Some((state.open(cx)?, state.interval)),
            None => None,
        };
        Ok(Stage::Task(Box::new(Self::new(aggregation, config, state))))
    }

    /// Feed a batch; results go to `emitted`, unusable and late events are returned.
    fn batch(
        &mut self,
        batch: Vec<Envelope<E>>,
        emitted: &mut Vec<Envelope<E>>,
        labels: &StageLabels,
    ) -> Vec<Failure<E>> {
        let mut failures = Vec::new();
        let (mut late, mut repeats) = (0, 0);
        emitted.reserve(batch.len());
        for Envelope {
            event,
            ack,
            origin,
            ingested,
        } in batch
        {
            self.keys.clear();
            let time = match self.set.aggregation().assign(&event, &mut self.keys) {
                Assigned::At(time) => time,
                Assigned::Ignore(reason) => {
                    labels.discarded(reason, 1);
                    continue;
                }
                Assigned::Reject(reason, error) => {
                    failures.push(Failure {
                        event: Some(event),
                        raw: None,
                        origin,
                        key: None,
                        headers: Vec::new(),
                        reason,
                        error,
                        ack,
                        ingested,
                    });
                    continue;
                }
            };
            let (input, raised) = self.set.watermarks.observe(origin.as_ref(), time);
            let logged = self.saving.as_mut().zip(origin.as_ref());
            let hold = if logged.is_some() { None } else { Some(&ack) };
            let (mut absorbed, mut repeated) = (false, false);
            let mut missed = None;
            let mut logged = logged;
            for key in &self.keys {
                if let Some((saving, origin)) = logged.as_mut() {
                    if saving.checkpoints.covers(key, origin) {
                        continue; // re-delivered; the restored state already includes it
                    }
                }
                match self.set.add(key, &event, time, input, hold) {
                    Added::Windows | Added::StateOnly => {
                        absorbed = true;
                        if let Some((saving, origin)) = logged.as_mut() {
                            saving.checkpoints.absorbed(key, origin, &ack);
                        }
                    }
                    Added::Late(window) => {
                        missed.get_or_insert_with(|| format!("{key} {window}"));
                    }
                    Added::Repeat => repeated = true,
                }
            }
            if let Some((saving, _)) = logged.as_mut() {
                if raised && !absorbed {
                    saving.watermark_held.push(ack.clone());
                }
            }
            if repeated && !absorbed {
                repeats += 1;
            }
            if let Some(window) = missed {
                match self.late {
                    LatePolicy::Drop => {
                        late += 1;
                        if !absorbed {
                            ack.mark(AckStatus::Rejected);
                        }
                    }
                    LatePolicy::Error => failures.push(Failure {
                        event: Some(event),
                        raw: None,
                        origin: origin.clone(),
                        key: None,
                        headers: Vec::new(),
                        reason: "late",
                        error: format!(
                            "event time {time} arrived after its input's watermark ({}) closed its window {window}",
                            self.set.watermarks.of(&[input])
                        ),
                        ack: ack.clone(),
                        ingested,
                    }),
                }
            }
            self.set.advance();
            self.drain_out(&ack, ingested, emitted);
        }
        if late > 0 {
            labels.discarded("late", late);
        }
        if repeats > 0 {
            labels.discarded("repeated", repeats);
        }
        failures
    }

    /// Turn what left the window set into events. `input`: the token of the
    /// input that caused it (a result releases it once delivered).
    fn drain_out(&mut self, input: &AckToken, ingested: IngestTime, emitted: &mut Vec<Envelope<E>>) {
        let mut outs = std::mem::take(&mut self.outs);
        self.set.take_out_into(&mut outs);
        for out in outs.drain(..) {
            match out {
                Out::Update { event, .. } => emitted.push(Envelope::new(event, input.clone()).with_ingested(ingested)),
                Out::Closed {
                    key,
                    window,
                    event,
                    acc,
                    mut held,
                    evicted,
                } => {
                    if evicted {
                        tracing::debug!(key = %key, %window, "Window closed early: too many open windows.");
                    }
                    let Some(saving) = self.saving.as_mut() else {
                        if let Some(event) = event {
                            emitted.push(Envelope::new(event, AckToken::joined(held)).with_ingested(ingested));
                        }
                        continue;
                    };
                    saving.checkpoints.touch(&key);
                    let (Some(event), Some(acc)) = (event, acc) else {
                        continue;
                    };
                    held.push(input.clone());
                    let token = saving.unconfirmed.track(
                        key,
                        SavedWindow {
                            start: window.start,
                            end: window.end,
                            acc: *acc,
                        },
                        AckToken::joined(held),
                    );
                    emitted.push(Envelope::new(event, token).with_ingested(ingested));
                }
            }
        }
        self.outs = outs;
    }

    /// Before a batch: restore the saved state of partitions read for the first
    /// time, emit again the results their saves had not seen delivered.
    async fn restore_for(&mut self, batch: &[Envelope<E>]) -> Result<Vec<Envelope<E>>, StageError> {
        let Some(saving) = self.saving.as_mut() else {
            return Ok(Vec::new());
        };
        let fresh = saving
            .checkpoints
            .newly_assigned(batch.iter().filter_map(|e| e.origin.as_ref().map(|o| (o, &e.ack))));
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let values = saving.checkpoints.load().await?;
        let mut replays = Vec::new();
        let (mut restored, mut seeded) = (0, 0);
        for (name, value) in &values {
            if name.starts_with(WATERMARK_RECORD) {
                let Ok(saved) = serde_json::from_slice::<SavedWatermark>(value) else {
                    tracing::warn!(key = %name, "Unreadable saved watermark skipped.");
                    continue;
                };
                let of_fresh = fresh
                    .iter()
                    .any(|(o, _)| *o.topic == *saved.topic && o.partition == saved.partition);
                if of_fresh {
                    self.set.watermarks.seed(&saved.topic, saved.partition, saved.newest);
                    seeded += 1;
                }
                continue;
            }
            if !name.starts_with(WINDOW_RECORD) {
                continue;
            }
            let topic = saving.checkpoints.topic();
            let decoded = decode_saved(
                topic,
                name,
                value,
                VERSION,
                |r: &SavedRecord<A::Key, A::KeyState, A::Acc>| r.v,
            );
            let Some(record) = decoded else { continue };
            let Some(ack) = record.position.in_fresh(&fresh) else {
                continue;
            };
            let key = record.state.key.clone();
            let input = self
                .set
                .watermarks
                .input_of(Some((&record.position.topic, record.position.partition)));
            self.set.import(record.state, input);
            saving.checkpoints.restored(key.clone(), record.position);
            for window in record.emitted {
                if let Some(event) = self.set.result(&key, window.window(), &window.acc, true) {
                    let token = saving.unconfirmed.track(key.clone(), window, ack.clone());
                    replays.push(Envelope::new(event, token));
                }
            }
            restored += 1;
        }
        tracing::info!(topic = %saving.checkpoints.topic(), partitions = fresh.len(), keys = restored, watermarks = seeded, replayed = replays.len(), "Window state restored.");
        self.set.advance();
        self.drain_out(&fresh[0].1, IngestTime::UNKNOWN, &mut replays);
        Ok(replays)
    }

    /// Save every key whose state changed, and the watermarks that moved.
    async fn save(&mut self) {
        let Self { set, saving, .. } = self;
        let Some(saving) = saving.as_mut() else { return };
        let dirty = saving.checkpoints.take_dirty();
        if !dirty.is_empty() {
            let keys: HashSet<A::Key> = dirty.iter().map(|(key, _, _)| key.clone()).collect();
            let mut emitted = saving.unconfirmed.of_keys(&keys);
            for (key, position, held) in dirty {
                let Some(state) = set.export(&key) else { continue };
                let record = SavedRecord {
                    v: VERSION,
                    position,
                    state,
                    emitted: emitted.remove(&key).unwrap_or_default(),
                };
                let name = format!("{WINDOW_RECORD}{key}");
                match serde_json::to_vec(&record) {
                    Ok(value) => saving.checkpoints.write(&name, &value, held).await,
                    Err(e) => saving.checkpoints.unsaved(&name, e, held),
                }
            }
        }
        let mut held = std::mem::take(&mut saving.watermark_held);
        for (topic, partition, newest) in set.watermarks.take_changed() {
            let record = SavedWatermark {
                v: VERSION,
                topic: topic.to_string(),
                partition,
                newest,
            };
            let value = serde_json::to_vec(&record).expect("text and numbers always encode");
            let name = format!("{WATERMARK_RECORD}{topic}[{partition}]");
            saving.checkpoints.write(&name, &value, std::mem::take(&mut held)).await;
        }
    }

    /// The input ended without a state topic: the open windows as not final
    /// results; the inputs they held are not done (see the module docs).
    fn drain_partial(set: &mut WindowSet<E, A>) -> Vec<Envelope<E>> {
        let (windows, held) = set.drain();
        for token in &held {
            token.mark(AckStatus::Failed);
        }
        windows
            .into_iter()
            .filter_map(|(key, window, acc)| set.result(&key, window, &acc, false))
            .map(Envelope::unacked)
            .collect()
    }

    /// Continue from the version a reload replaced (without a state topic):
    /// its open windows, key state and the input tokens they hold, when the
    /// event-time settings are the same; otherwise its windows end here as
    /// not-final results, as at the end of an input. Returns what to emit.
    fn adopt(&mut self, mut old: Legacy<E, A>, stage: &str) -> Vec<Envelope<E>> {
        if self.saving.is_none() && old.time == self.time {
            old.set.swap_aggregation(&mut self.set);
            self.set = old.set;
            tracing::info!(%stage, windows = self.set.open_windows(), "Open windows taken over from the previous version.");
            return Vec::new();
        }
        let partial = Self::drain_partial(&mut old.set);
        tracing::info!(%stage, windows = partial.len(), "Event-time settings changed: the previous version's open windows emitted as not final.");
        partial
    }
}

/// What a window stage replaced by a reload leaves its new version.
struct Legacy<E, A: Aggregation<E>> {
    set: WindowSet<E, A>,
    time: String,
}

/// The stage's window gauges and counters.
struct WindowMetrics {
    open: Gauge,
    watermark: Gauge,
    evictions: Counter,
}

impl WindowMetrics {
    fn new(labels: &StageLabels) -> Self {
        let (pipeline, stage) = (labels.pipeline.clone(), labels.stage.clone());
        Self {
            open: gauge!(OPEN_WINDOWS, "pipeline" => pipeline.clone(), "stage" => stage.clone()),
            watermark: gauge!(WATERMARK_SECONDS, "pipeline" => pipeline.clone(), "stage" => stage.clone()),
            evictions: counter!(EVICTIONS, "pipeline" => pipeline, "stage" => stage),
        }
    }

    fn record<E, A: Aggregation<E>>(&self, set: &mut WindowSet<E, A>) {
        self.open.set(set.open_windows() as f64);
        let watermark = set.watermarks.slowest();
        if watermark != EventTime::MIN {
            self.watermark.set(watermark.as_secs_f64());
        }
        let evicted = set.take_evicted();
        if evicted > 0 {
            self.evictions.increment(evicted);
        }
    }
}

#[async_trait]
impl<E: Event, A: Aggregation<E>> TaskTransform<E> for WindowStage<E, A> {
    async fn run(mut self: Box<Self>, mut input: Input<E>, mut outputs: Outputs<E>) -> Result<(), StageError> {
        let timer = outputs.labels.processing();
        let metrics = WindowMetrics::new(&outputs.labels);
        let mut save = save_timer(self.saving.as_ref().map(|s| s.checkpoints.interval()));
        if let Some(old) = input.inherit::<Legacy<E, A>>() {
            let partial = self.adopt(old, &outputs.labels.stage);
            outputs.send(partial).await?;
        }
        loop {
            tokio::select! {
                batch = input.next() => {
                    let Some(batch) = batch else { break };
                    let mut emitted = self.restore_for(&batch).await?;
                    let started = Instant::now();
                    let failures = self.batch(batch, &mut emitted, &outputs.labels);
                    timer.record(started.elapsed());
                    metrics.record(&mut self.set);
                    outputs.dead_letter(failures, AckStatus::Rejected).await?;
                    outputs.send(emitted).await?;
                }
                _ = save.tick(), if self.saving.is_some() => self.save().await,
            }
        }
        if self.saving.is_some() {
            // A new version restores from the topic, like a restarted process.
            self.save().await;
        } else if input.is_replaced() {
            metrics.record(&mut self.set);
            let this = *self;
            input.bequeath(Legacy {
                set: this.set,
                time: this.time,
            });
        } else {
            let partial = Self::drain_partial(&mut self.set);
            if !partial.is_empty() {
                tracing::info!(stage = %outputs.labels.stage, windows = partial.len(), "Input ended: open windows emitted as not final.");
            }
            metrics.record(&mut self.set);
            outputs.send(partial).await?;
        }
        Ok(())
    }
}
