//! The `KafkaSource` stage: reads topics, commits what is finished.
//!
//! A dedicated thread owns the consumer. It polls, decodes (so decoding runs
//! beside the pipeline's tasks), and hands batches to the async side, which
//! forwards them downstream. Each message gets an [`AckToken`] whose callback
//! records the outcome in the [`OffsetTracker`]; the thread commits the
//! finished prefix of every partition each `commit_interval`, on revoke and on
//! shutdown. Rebalance callbacks run on that same thread, inside `poll`, so a
//! revoke can block there until the partition's in-flight events settle
//! (`drain_timeout`) and commit them before the partition is released — without
//! stalling any tokio worker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics::gauge;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::codec::WireEvent;
use super::offsets::{OffsetTracker, TopicPartition};
use super::resource::{KafkaResource, KIND as RESOURCE_KIND};
use crate::ack::AckToken;
use crate::event::{Envelope, IngestTime, Kinds, Origin};
use crate::metrics::StageLabels;
use crate::registry::{closest, BuildContext, ConfigProblem, ResourceUse, StageConfig};
use crate::stage::{Failure, Shape, Source, SourceContext, Stage, StageError, Startup};
use crate::{AckStatus, ReadyReporter};

/// Messages a partition still has to be read, per topic and partition (from librdkafka's statistics).
pub const CONSUMER_LAG: &str = "fxflow_kafka_consumer_lag";

/// A static member fenced more than [`MAX_REJOINS`] times within this stops (a twin);
/// before that, it rejoins.
const FENCE_WINDOW: Duration = Duration::from_secs(60);

/// Rejoins within [`FENCE_WINDOW`] before a fence stops the worker. More than one: after a
/// broker outage longer than the session the member can fence itself, and a join its old
/// consumer left pending at the coordinator can fence the new consumer once more; a twin
/// fences on and on, so it still stops within seconds.
const MAX_REJOINS: usize = 3;

/// Reads events from Kafka topics, at least once: offsets are committed only
/// when every event derived from them is finalized downstream.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// The `Kafka` resource to read from.
    pub resource: String,
    pub topics: Vec<String>,
    /// Consumer group: workers running the same file with one group split the
    /// partitions between them. Without a group the source reads every
    /// partition from the beginning at each start and commits nothing — for a
    /// compacted changelog every worker needs in full (alert rules).
    #[serde(default)]
    pub group: Option<String>,
    /// How partitions are shared out. `Subscribe` (default): the consumer group
    /// protocol splits them between the workers of `group` and rebalances when
    /// one joins or leaves. `AllPartitions`: this worker reads every partition
    /// itself and commits under `group`, without joining it — for a single
    /// worker per group, which then never waits for a rebalance (a restart
    /// resumes at once from the committed offsets).
    #[serde(default)]
    pub assignment: Assignment,
    /// Static group membership (`group.instance.id`): a worker that crashed and
    /// is restarted under the same name takes its partitions back at once, with
    /// no rebalance, instead of the group waiting out the session timeout. A
    /// deliberate stop (SIGTERM, the end of `fxflow run`) still leaves the group
    /// at once, so a scale-down strands nothing. Give each worker of a group its
    /// own name that survives a restart (a StatefulSet pod, a compose container,
    /// `process-1`); a second worker under the same name fences the first, which
    /// then stops with an error naming it. Empty = dynamic membership.
    #[serde(default)]
    pub instance: Option<String>,
    /// Read what the topics hold at start, and have it processed downstream,
    /// before the pipeline's other sources start — for a changelog the rest
    /// depends on (alert rules before the rates they are checked against).
    /// Only without `group`.
    #[serde(default)]
    pub bootstrap: bool,
    /// The event kinds the topics carry (checked against the stages downstream;
    /// a message of another kind goes to the error output).
    pub kinds: Vec<String>,
    /// Where a group with no committed offset starts; without a group, where
    /// every start begins (`Latest`: only what is produced from then on — for
    /// a worker that watches a stream live, such as the API).
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// How often finished offsets are committed.
    #[serde(default = "default_commit_interval", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub commit_interval: Duration,
    /// On rebalance or shutdown, how long to wait for in-flight events before
    /// releasing partitions anyway (their offsets stay uncommitted: re-delivered).
    #[serde(default = "default_drain_timeout", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub drain_timeout: Duration,
    /// Most messages handed downstream as one batch.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long the broker may hold a fetch that has no data yet
    /// (`fetch.wait.max.ms`; librdkafka's default is 500 ms). Apache Kafka
    /// answers as soon as data arrives, so this only sets how often an idle
    /// consumer asks; tansu 0.6 waits part of it even when data is there, so
    /// it is per-hop latency there: 10 ms took a 3-hop chain from p50 1.2 s
    /// to 0.12 s (BENCHMARKS.md). Raise it to trade latency for fewer requests.
    #[serde(default = "default_fetch_wait", with = "crate::duration")]
    #[schemars(schema_with = "crate::duration::schema")]
    pub fetch_wait: Duration,
    /// librdkafka consumer properties, over the resource's.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// How a source gets its partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum Assignment {
    /// Join `group`; its members split the partitions.
    #[default]
    Subscribe,
    /// Take every partition, resume from `group`'s committed offsets, never join the group.
    AllPartitions,
}

/// Where to start without a committed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum OffsetReset {
    /// The oldest message still in the topic.
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_batch() -> usize {
    1024
}
fn default_fetch_wait() -> Duration {
    Duration::from_millis(10)
}

impl KafkaSourceConfig {
    fn kinds_of<E: WireEvent>(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter_map(|k| E::KINDS.iter().copied().find(|known| known == k))
            .collect()
    }
}

#[async_trait]
impl<E: WireEvent> StageConfig<E> for KafkaSourceConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }

    fn emits(&self) -> Kinds {
        Kinds::Only(self.kinds_of::<E>())
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.topics.is_empty() {
            problems.push(ConfigProblem::field("topics", "no topics given"));
        }
        if self.kinds.is_empty() {
            problems.push(
                ConfigProblem::field("kinds", "no event kinds given")
                    .with_hint(format!("the kinds are: {}", E::KINDS.join(", "))),
            );
        }
        for kind in &self.kinds {
            if !E::KINDS.contains(&kind.as_str()) {
                let hint = match closest(kind, E::KINDS.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("the kinds are: {}", E::KINDS.join(", ")),
                };
                problems.push(ConfigProblem::field("kinds", format!("unknown event kind `{kind}`")).with_hint(hint));
            }
        }
        if self.max_batch == 0 {
            problems.push(ConfigProblem::field("max_batch", "must be at least 1"));
        }
        if self.commit_interval.is_zero() {
            problems.push(ConfigProblem::field("commit_interval", "must be longer than zero"));
        }
        if self.bootstrap && self.group.is_some() {
            problems.push(
                ConfigProblem::field(
                    "bootstrap",
                    "a bootstrap source reads its topics in full, without a group",
                )
                .with_hint("remove `group` (or `bootstrap`)"),
            );
        }
        problems
    }

    fn bootstrap(&self) -> bool {
        self.bootstrap
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, RESOURCE_KIND)]
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<E>, StageError> {
        let kafka = cx.resources.get::<KafkaResource>(&self.resource)?;
        let labels = StageLabels::new(&cx.pipeline, &cx.stage);
        let shared = Arc::new(Shared {
            tracker: Mutex::new(OffsetTracker::new()),
            settled: Condvar::new(),
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            revoked: Mutex::new(Vec::new()),
            drain_timeout: self.drain_timeout,
            labels: labels.clone(),
            from_end: self.auto_offset_reset == OffsetReset::Latest,
            health: Health {
                reporter: cx
                    .readiness
                    .component(format!("{}/{}: kafka", cx.pipeline, cx.stage), "connecting"),
                state: Mutex::new(HealthState {
                    group: self.group.clone(),
                    ..Default::default()
                }),
            },
        });
        let client_id = format!("{}.{}", cx.pipeline, cx.stage);
        let reset = match self.auto_offset_reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        let fetch_wait = self.fetch_wait.as_millis().max(1).to_string();
        let mut config = kafka.client_config([
            ("client.id", client_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("auto.offset.reset", reset),
            ("statistics.interval.ms", "2000"),
            ("fetch.wait.max.ms", fetch_wait.as_str()),
            // Incremental rebalancing: when a worker joins or leaves, only the partitions that
            // move pause (and are drained and committed); the rest keep flowing.
            ("partition.assignment.strategy", "cooperative-sticky"),
        ]);
        match &self.group {
            Some(group) => config.set("group.id", group),
            // librdkafka needs a group id even to assign partitions by hand; this one never
            // joins a group (no subscribe) and never commits.
            None => config.set("group.id", format!("{client_id}.unmanaged")),
        };
        if let Some(instance) = self.instance.as_deref().filter(|i| !i.is_empty()) {
            config.set("group.instance.id", instance);
        }
        for (k, v) in &self.options {
            config.set(k, v);
        }
        let consumer = create_consumer(&config, &shared)?;
        let take = match (&self.group, self.assignment) {
            (Some(_), Assignment::Subscribe) => Take::Subscribe,
            // Resume from the group's committed offsets (then `auto_offset_reset`).
            (Some(_), Assignment::AllPartitions) => Take::Assign(Offset::Stored),
            // No group, nothing committed: the whole log, or (Latest) only what comes from now on.
            (None, _) => Take::Assign(match self.auto_offset_reset {
                OffsetReset::Earliest => Offset::Beginning,
                OffsetReset::Latest => Offset::End,
            }),
        };
        let join = Join {
            topics: self.topics.clone(),
            take,
            bootstrap: self.bootstrap,
        };
        // Taking the partitions here makes a missing topic stop the start before anything
        // runs. A version that replaces a running one (a reload) takes them once that one
        // has finished and committed: joining the group now would start a rebalance while
        // the old consumer still commits.
        let (join, catch_up) = if cx.replaces_running {
            (Some(join), Vec::new())
        } else {
            let catch_up = join.take(&consumer, &shared)?;
            (None, catch_up)
        };
        Ok(Stage::Source(Box::new(KafkaSource::<E> {
            consumer,
            config,
            fences: Vec::new(),
            shared,
            settings: Settings {
                group: self.group.is_some(),
                topics: self.topics.clone(),
                instance: match (&self.group, self.assignment) {
                    (Some(_), Assignment::Subscribe) => self.instance.clone().filter(|i| !i.is_empty()),
                    _ => None,
                },
                commit_interval: self.commit_interval,
                max_batch: self.max_batch,
                kinds: self.kinds_of::<E>(),
                catch_up,
            },
            join,
            _event: std::marker::PhantomData,
        })))
    }
}

fn create_consumer(config: &ClientConfig, shared: &Arc<Shared>) -> Result<BaseConsumer<ConsumerHooks>, StageError> {
    config
        .create_with_context(ConsumerHooks { shared: shared.clone() })
        .map_err(|e| StageError::new(format!("kafka consumer: {e}")))
}

/// How a consumer takes its partitions.
enum Take {
    /// Join the group; it assigns them.
    Subscribe,
    /// Every partition of every topic, from this offset, without membership.
    Assign(Offset),
}

/// Taking the partitions, at build or (after a reload) when the consumer thread starts.
struct Join {
    topics: Vec<String>,
    take: Take,
    bootstrap: bool,
}

impl Join {
    /// Returns, for a bootstrap source, the positions to finish before catching up.
    fn take(
        &self,
        consumer: &BaseConsumer<ConsumerHooks>,
        shared: &Shared,
    ) -> Result<Vec<(TopicPartition, i64)>, StageError> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        match self.take {
            Take::Subscribe => consumer
                .subscribe(&topics)
                .map_err(|e| StageError::new(format!("subscribing to {topics:?}: {e}")))?,
            Take::Assign(start) => {
                assign_everything(consumer, shared, &topics, start)?;
                let partitions = shared.tracker().assigned().len();
                shared.health.update(|h| {
                    h.assigned_once = true;
                    h.partitions = partitions;
                });
            }
        }
        if self.bootstrap {
            ends_now(consumer, shared)
        } else {
            Ok(Vec::new())
        }
    }
}

/// Every partition of every topic, from `start`, without group membership.
fn assign_everything(
    consumer: &BaseConsumer<ConsumerHooks>,
    shared: &Shared,
    topics: &[&str],
    start: Offset,
) -> Result<(), StageError> {
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| StageError::new(format!("reading metadata of `{topic}`: {e}")))?;
        for t in metadata.topics() {
            if let Some(error) = t.error() {
                return Err(StageError::new(format!(
                    "topic `{topic}`: {:?}",
                    rdkafka::error::RDKafkaErrorCode::from(error)
                )));
            }
            for p in t.partitions() {
                list.add_partition_offset(topic, p.id(), start)
                    .map_err(|e| StageError::new(e.to_string()))?;
                shared.tracker().assign(TopicPartition::new(topic, p.id()));
            }
        }
    }
    consumer
        .assign(&list)
        .map_err(|e| StageError::new(format!("assigning partitions of {topics:?}: {e}")))
}

/// The end (high watermark) of every assigned, non-empty partition: what a
/// bootstrap source must have finished before it has caught up.
fn ends_now(consumer: &BaseConsumer<ConsumerHooks>, shared: &Shared) -> Result<Vec<(TopicPartition, i64)>, StageError> {
    let mut ends = Vec::new();
    for tp in shared.tracker().assigned() {
        let (low, high) = consumer
            .fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10))
            .map_err(|e| StageError::new(format!("reading the end of `{}`[{}]: {e}", tp.topic, tp.partition)))?;
        if high > low {
            ends.push((tp, high));
        }
    }
    Ok(ends)
}

/// State shared by the poll thread, the rebalance hooks and the ack callbacks.
struct Shared {
    tracker: Mutex<OffsetTracker>,
    /// Signalled when an offset settles while someone drains.
    settled: Condvar,
    draining: AtomicBool,
    /// Bumped on every revoke; messages remember the generation they were polled in.
    generation: AtomicU64,
    /// Partitions revoked, with the generation the revoke started.
    revoked: Mutex<Vec<(u64, TopicPartition)>>,
    drain_timeout: Duration,
    labels: StageLabels,
    health: Health,
    /// Where reading starts without a committed offset: the end (`Latest`).
    from_end: bool,
}

/// What `/ready` says of this source: connected to a broker, and holding its
/// partitions (not in the middle of giving some up).
struct Health {
    reporter: ReadyReporter,
    state: Mutex<HealthState>,
}

#[derive(Default)]
struct HealthState {
    group: Option<String>,
    partitions: usize,
    assigned_once: bool,
    rebalancing: bool,
    disconnected: Option<String>,
}

impl Health {
    fn update(&self, change: impl FnOnce(&mut HealthState)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        let (ready, detail) = if let Some(why) = &state.disconnected {
            (false, format!("no broker connection: {why}"))
        } else if state.rebalancing {
            (
                false,
                "rebalancing: finishing and committing partitions being given up".to_owned(),
            )
        } else if !state.assigned_once {
            match &state.group {
                Some(group) => (false, format!("joining group `{group}`")),
                None => (false, "assigning partitions".to_owned()),
            }
        } else {
            let of = state
                .group
                .as_ref()
                .map(|g| format!(" (group `{g}`)"))
                .unwrap_or_default();
            (true, format!("reading {} partitions{of}", state.partitions))
        };
        self.reporter.set(ready, detail);
    }
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn token(self: &Arc<Self>, tp: TopicPartition, epoch: u64, offset: i64) -> AckToken {
        let shared = self.clone();
        AckToken::with_callback(move |status| {
            shared.tracker().finish(&tp, epoch, offset, status);
            if shared.draining.load(Ordering::Acquire) {
                shared.settled.notify_all();
            }
        })
    }

    /// Wait until the in-flight offsets of `tps` settle (or the drain timeout
    /// passes); returns the positions to commit for them.
    fn drain(&self, tps: &[TopicPartition]) -> Vec<(TopicPartition, i64)> {
        let deadline = Instant::now() + self.drain_timeout;
        self.draining.store(true, Ordering::Release);
        let mut tracker = self.tracker();
        loop {
            let waiting = tracker.unsettled(tps);
            if waiting == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(stage = %self.labels.stage, waiting, "Drain timed out; unfinished offsets stay uncommitted and will be re-delivered.");
                self.labels.error("drain_timeout", 1);
                break;
            }
            tracker = self
                .settled
                .wait_timeout(tracker, (deadline - now).min(Duration::from_millis(100)))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        self.draining.store(false, Ordering::Release);
        tracker
            .to_commit()
            .into_iter()
            .filter(|(tp, _)| tps.contains(tp))
            .collect()
    }

    /// Commit and wait for the broker's answer: before partitions are given up
    /// or the consumer closes, where the commit must be done before going on.
    fn commit<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, positions: Vec<(TopicPartition, i64)>) {
        self.send_commit(consumer, positions, CommitMode::Sync);
    }

    /// Commit without waiting: the periodic commit, so the poll thread never
    /// stalls a round trip while messages wait (the answer arrives in
    /// [`ConsumerContext::commit_callback`], which records it).
    fn commit_in_background<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        positions: Vec<(TopicPartition, i64)>,
    ) {
        self.send_commit(consumer, positions, CommitMode::Async);
    }

    fn send_commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        positions: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) {
        if positions.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::with_capacity(positions.len());
        for (tp, offset) in &positions {
            if let Err(e) = list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset)) {
                tracing::warn!(error = %e, "Bad offset to commit.");
                return;
            }
        }
        match consumer.commit(&list, mode) {
            Ok(()) if matches!(mode, CommitMode::Sync) => self.tracker().committed(&positions),
            Ok(()) => {}
            // librdkafka also hands a finished commit's result to `commit_callback`, which
            // counts a failure; a background commit that could not even start never gets there.
            Err(e) if matches!(mode, CommitMode::Sync) => {
                tracing::warn!(stage = %self.labels.stage, error = %e, "Offset commit failed; will retry.")
            }
            Err(e) => self.commit_failed(&e),
        }
    }

    fn commit_failed(&self, error: &dyn std::fmt::Display) {
        self.labels.error("commit_failed", 1);
        tracing::warn!(stage = %self.labels.stage, error = %error, "Offset commit failed; will retry.");
    }
}

/// librdkafka's callbacks: statistics (consumer lag) and rebalances.
struct ConsumerHooks {
    shared: Arc<Shared>,
}

impl ClientContext for ConsumerHooks {
    fn stats(&self, statistics: Statistics) {
        let labels = &self.shared.labels;
        // A broker in state UP means the client is connected (librdkafka reconnects by itself).
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        let health = &self.shared.health;
        health.update(|h| {
            if up {
                h.disconnected = None;
            } else if h.disconnected.is_none() {
                h.disconnected = Some("every broker is down or unreachable".into());
            }
        });
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition < 0 || p.fetch_state != "active" {
                    continue; // the internal "unassigned" partition, or one this consumer does not read
                }
                // librdkafka's lag counts from the committed offset, which a source without a
                // group never has: then from what was handed over (`app_offset`), and before
                // the first message from where reading starts (the end, or the beginning).
                let lag = match p.consumer_lag {
                    lag if lag >= 0 => lag,
                    _ if p.hi_offset >= 0 && p.app_offset >= 0 => (p.hi_offset - p.app_offset).max(0),
                    _ if self.shared.from_end => 0,
                    _ if p.hi_offset >= 0 && p.lo_offset >= 0 => p.hi_offset - p.lo_offset,
                    _ => continue,
                };
                gauge!(CONSUMER_LAG, "pipeline" => labels.pipeline.clone(), "stage" => labels.stage.clone(),
                    "topic" => topic.clone(), "partition" => partition.to_string())
                .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for ConsumerHooks {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let positions: Vec<(TopicPartition, i64)> = offsets
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(offset) => Some((TopicPartition::new(e.topic(), e.partition()), offset)),
                        _ => None,
                    })
                    .collect();
                self.shared.tracker().committed(&positions);
            }
            // A background commit that failed: the next interval commits again.
            Err(e) => self.shared.commit_failed(&e),
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let tps = partitions_of(list);
            let generation = self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
            self.shared
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(tps.iter().map(|tp| (generation, tp.clone())));
            self.shared.health.update(|h| h.rebalancing = true);
            let positions = self.shared.drain(&tps);
            tracing::info!(stage = %self.shared.labels.stage, partitions = tps.len(), commits = positions.len(), "Partitions revoked; committed what finished.");
            self.shared.commit(consumer, positions);
            let mut tracker = self.shared.tracker();
            for tp in &tps {
                tracker.revoke(tp);
                // Not ours any more: the new owner reports its lag.
                let labels = &self.shared.labels;
                gauge!(CONSUMER_LAG, "pipeline" => labels.pipeline.clone(), "stage" => labels.stage.clone(),
                    "topic" => tp.topic.to_string(), "partition" => tp.partition.to_string())
                .set(0.0);
            }
            let left = tracker.assigned().len();
            drop(tracker);
            self.shared.health.update(|h| {
                h.rebalancing = false;
                h.partitions = left;
            });
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let tps = partitions_of(list);
            tracing::info!(stage = %self.shared.labels.stage, partitions = ?tps.iter().map(|tp| format!("{}[{}]", tp.topic, tp.partition)).collect::<Vec<_>>(), "Partitions assigned.");
            let mut tracker = self.shared.tracker();
            for tp in tps {
                tracker.assign(tp);
            }
            let partitions = tracker.assigned().len();
            drop(tracker);
            self.shared.health.update(|h| {
                h.assigned_once = true;
                h.partitions = partitions;
            });
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

struct Settings {
    group: bool,
    /// What it subscribes to (again, after a fence).
    topics: Vec<String>,
    /// `group.instance.id`, when this source is a static member of its group.
    instance: Option<String>,
    commit_interval: Duration,
    max_batch: usize,
    kinds: Vec<&'static str>,
    /// Bootstrap: partitions and the positions to finish before catching up.
    catch_up: Vec<(TopicPartition, i64)>,
}

struct KafkaSource<E> {
    consumer: BaseConsumer<ConsumerHooks>,
    /// The consumer's settings, to make a new one after a fence (see `rejoin_after_fence`).
    config: ClientConfig,
    /// When this source was last fenced and rejoined.
    /// When this member rejoined after a fence (the last [`FENCE_WINDOW`]'s).
    fences: Vec<Instant>,
    shared: Arc<Shared>,
    settings: Settings,
    /// Partitions still to take (see `Join`).
    join: Option<Join>,
    _event: std::marker::PhantomData<fn() -> E>,
}

/// A message read but not yet handed downstream.
struct Polled<E> {
    tp: TopicPartition,
    offset: i64,
    ingested: IngestTime,
    generation: u64,
    decoded: Result<Decoded<E>, Undecodable>,
}

/// The events of one message: one, or a batch (`Framing::Partition`).
enum Decoded<E> {
    One(E),
    Batch(Vec<E>),
}

impl<E> Decoded<E> {
    fn events(&self) -> &[E] {
        match self {
            Decoded::One(event) => std::slice::from_ref(event),
            Decoded::Batch(events) => events,
        }
    }
}

struct Undecodable {
    reason: &'static str,
    error: String,
    raw: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

/// A message's headers, as a dead letter keeps them for replay.
fn headers_of(message: &BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers;
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// When the message's events entered the first worker: its ingest-time header
/// (written by a `KafkaSink`), else its Kafka timestamp (an outside producer's).
fn ingest_time(message: &BorrowedMessage<'_>) -> IngestTime {
    use rdkafka::message::Headers;
    let header = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == super::INGEST_TIME_HEADER)
            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
    });
    match header {
        Some(micros) => IngestTime::from_micros(micros),
        None => message
            .timestamp()
            .to_millis()
            .filter(|ms| *ms > 0)
            .map_or(IngestTime::UNKNOWN, |ms| IngestTime::from_micros(ms as u64 * 1000)),
    }
}

/// What crosses from the poll thread to the async side.
enum Item<E> {
    Event(Envelope<E>),
    Failure(Failure<E>),
}

#[async_trait]
impl<E: WireEvent> Source<E> for KafkaSource<E> {
    async fn run(self: Box<Self>, cx: SourceContext<E>) -> Result<(), StageError> {
        let SourceContext {
            mut outputs,
            shutdown,
            startup,
            ..
        } = cx;
        let (tx, mut rx) = mpsc::channel::<Vec<Item<E>>>(2);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let stop = stop.clone();
            let name = format!("kafka-{}", self.shared.labels.stage);
            std::thread::Builder::new()
                .name(name)
                .spawn(move || (*self).poll_loop(tx, &stop, startup))
                .map_err(|e| StageError::new(format!("starting the consumer thread: {e}")))?
        };
        let mut stopping = false;
        let mut result = Ok(());
        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    if let Err(e) = forward(&mut outputs, batch).await {
                        result = Err(e);
                        stop.store(true, Ordering::Release);
                        break;
                    }
                }
                _ = shutdown.wait(), if !stopping => {
                    stopping = true;
                    stop.store(true, Ordering::Release);
                }
            }
        }
        drop(rx);
        match tokio::task::spawn_blocking(move || poller.join()).await {
            Ok(Ok(Ok(()))) => result,
            Ok(Ok(Err(e))) => Err(e),
            _ => Err(StageError::new("the consumer thread panicked")),
        }
    }
}

async fn forward<E: WireEvent>(outputs: &mut crate::stage::Outputs<E>, batch: Vec<Item<E>>) -> Result<(), StageError> {
    let mut events = Vec::with_capacity(batch.len());
    let mut failures = Vec::new();
    for item in batch {
        match item {
            Item::Event(envelope) => events.push(envelope),
            Item::Failure(failure) => failures.push(failure),
        }
    }
    // An unreadable message is finalized (dead-lettered or rejected) so its offset is committed
    // and it is not retried forever.
    outputs.dead_letter(failures, AckStatus::Rejected).await?;
    outputs.send(events).await?;
    Ok(())
}

impl<E: WireEvent> KafkaSource<E> {
    fn poll_loop(
        mut self,
        tx: mpsc::Sender<Vec<Item<E>>>,
        stop: &AtomicBool,
        startup: Startup,
    ) -> Result<(), StageError> {
        if let Some(join) = self.join.take() {
            self.settings.catch_up = join.take(&self.consumer, &self.shared)?;
        }
        let mut pending: Vec<Polled<E>> = Vec::with_capacity(self.settings.max_batch);
        let mut caught_up = false;
        let mut last_commit = Instant::now();
        let mut topics: Vec<Arc<str>> = Vec::new();
        let mut reported_blocked = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let mut wait = Duration::from_millis(100);
            while pending.len() < self.settings.max_batch {
                match self.consumer.poll(wait) {
                    None => break,
                    Some(Err(e)) => {
                        if let Some((code, reason)) = self.consumer.client().fatal_error() {
                            if self.rejoin_after_fence(code, &reason, &mut pending)? {
                                break;
                            }
                            return Err(self.fatal(code, &reason));
                        }
                        self.shared.labels.error("consume_failed", 1);
                        tracing::warn!(stage = %self.shared.labels.stage, error = %e, "Kafka consumer error.");
                        break;
                    }
                    Some(Ok(message)) => {
                        wait = Duration::ZERO;
                        pending.push(self.read(&message, &mut topics));
                    }
                }
            }
            if !pending.is_empty() {
                let batch = self.hand_over(&mut pending);
                if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                    break;
                }
            }
            if !caught_up {
                let tracker = self.shared.tracker();
                self.settings
                    .catch_up
                    .retain(|(tp, end)| tracker.ready(tp).is_none_or(|ready| ready < *end));
                drop(tracker);
                if self.settings.catch_up.is_empty() {
                    caught_up = true;
                    tracing::info!(stage = %self.shared.labels.stage, "Caught up with the topics' backlog; the other sources start.");
                    startup.caught_up();
                }
            }
            if self.settings.group && last_commit.elapsed() >= self.settings.commit_interval {
                let positions = self.shared.tracker().to_commit();
                self.shared.commit_in_background(&self.consumer, positions);
                let blocked = self.shared.tracker().blocked();
                for (tp, offset) in blocked.iter().filter(|b| !reported_blocked.contains(*b)) {
                    tracing::error!(stage = %self.shared.labels.stage, topic = %tp.topic, partition = tp.partition, offset,
                        "An input failed downstream without an error output; commits of this partition wait for a restart to re-deliver it.");
                }
                reported_blocked = blocked;
                last_commit = Instant::now();
            }
        }
        // Stop: let what is in flight finish, commit it, then leave the group (dropping the consumer).
        drop(tx);
        if self.settings.group {
            let assigned = self.shared.tracker().assigned();
            let positions = self.shared.drain(&assigned);
            self.shared.commit(&self.consumer, positions);
        }
        if self.settings.instance.is_some() {
            self.leave_group();
        }
        Ok(())
    }

    /// A static member does not leave its group when the consumer closes (KIP-345: a
    /// restart is expected), so a deliberate stop would strand its partitions for the
    /// session timeout. Unsubscribing first makes librdkafka send the LeaveGroup, and the
    /// group hands the partitions over at once. A crash never gets here: its partitions
    /// wait for the restart under the same name.
    fn leave_group(&self) {
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Polling serves the revoke and sends the LeaveGroup once the partitions are given up.
        while Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(50));
            if self.shared.tracker().assigned().is_empty() {
                // One more round for the LeaveGroup request to reach the broker.
                let _ = self.consumer.poll(Duration::from_millis(100));
                break;
            }
        }
        tracing::info!(stage = %self.shared.labels.stage, instance = self.settings.instance.as_deref().unwrap_or_default(),
            "Left the consumer group (static member stopping on purpose).");
    }

    /// A static member fenced fewer than [`MAX_REJOINS`] times in a while rejoins under the
    /// same name with a new consumer, and says so; `false` (stop) otherwise. A fence has two
    /// causes (see `fatal`): a twin, which fences each new consumer again within a second or
    /// two, so the worker stops after [`MAX_REJOINS`] of them; and this member's own rejoin
    /// after a broker outage longer than the session timeout, which a new consumer gets past
    /// (once more when its old consumer's pending join lands after the new one).
    /// Everything read before is dropped from tracking: in-flight inputs are not committed
    /// by the new consumer and come again, as after a crash.
    fn rejoin_after_fence(
        &mut self,
        code: rdkafka::error::RDKafkaErrorCode,
        reason: &str,
        pending: &mut Vec<Polled<E>>,
    ) -> Result<bool, StageError> {
        self.fences.retain(|at| at.elapsed() < FENCE_WINDOW);
        if code != rdkafka::error::RDKafkaErrorCode::FencedInstanceId || self.fences.len() >= MAX_REJOINS {
            return Ok(false);
        }
        let instance = self.settings.instance.clone().unwrap_or_default();
        let nth = self.fences.len() + 1;
        tracing::warn!(stage = %self.shared.labels.stage, instance = %instance, reason,
            "Fenced as instance `{instance}`: rejoining once more under the same name ({nth} of {MAX_REJOINS} within \
             a minute: after a broker outage this member can fence itself; a twin with this name fences it on and \
             on, and then it stops).");
        self.shared.labels.error("fenced", 1);
        pending.clear();
        let generation = self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let mut tracker = self.shared.tracker();
        let lost = tracker.assigned();
        for tp in &lost {
            tracker.revoke(tp);
        }
        drop(tracker);
        self.shared
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(lost.into_iter().map(|tp| (generation, tp)));
        self.shared.health.update(|h| {
            h.assigned_once = false;
            h.partitions = 0;
        });
        let consumer = create_consumer(&self.config, &self.shared)?;
        let topics: Vec<&str> = self.settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| StageError::new(format!("subscribing to {topics:?}: {e}")))?;
        // The fenced consumer closes without a word to the group: its member id is gone.
        self.consumer = consumer;
        self.fences.push(Instant::now());
        Ok(true)
    }

    /// The error a fatal consumer error stops the source with. Fencing is the one to expect:
    /// another worker joined the group under this worker's instance name.
    fn fatal(&self, code: rdkafka::error::RDKafkaErrorCode, reason: &str) -> StageError {
        self.shared.labels.error("fatal", 1);
        let instance = self.settings.instance.as_deref().unwrap_or_default();
        if code == rdkafka::error::RDKafkaErrorCode::FencedInstanceId {
            StageError::new(format!(
                "fenced: another member joined the consumer group as instance `{instance}` (group.instance.id), \
                 again after this worker rejoined {MAX_REJOINS} times within a minute: another worker runs with that \
                 name (every worker of a group needs its own: FXFLOW_INSTANCE in the shipped files). It stops so \
                 that two workers never process the same partitions ({reason})"
            ))
        } else {
            StageError::new(format!("the Kafka consumer failed for good: {code:?}: {reason}"))
        }
    }

    fn read(&self, message: &BorrowedMessage<'_>, topics: &mut Vec<Arc<str>>) -> Polled<E> {
        let topic = match topics.iter().find(|t| ***t == *message.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = message.topic().into();
                topics.push(t.clone());
                t
            }
        };
        let tp = TopicPartition {
            topic,
            partition: message.partition(),
        };
        let offset = message.offset();
        let generation = self.shared.generation.load(Ordering::Acquire);
        let at = || format!("{}[{}]@{}", tp.topic, tp.partition, offset);
        let decoded = match message.payload() {
            None => match message.key().and_then(E::tombstone) {
                Some(event) => Ok(Decoded::One(event)),
                None => Err(Undecodable {
                    reason: "empty_payload",
                    error: format!("{}: message without payload", at()),
                    raw: message.key().unwrap_or_default().to_vec(),
                    key: message.key().map(<[u8]>::to_vec),
                    headers: headers_of(message),
                }),
            },
            Some(bytes) => {
                let decoded = if super::binary::is_frame(bytes) {
                    super::binary::decode::<E>(bytes).map(Decoded::Batch)
                } else if super::framing::is_batch(bytes) {
                    super::framing::decode_batch::<E>(bytes).map(Decoded::Batch)
                } else {
                    super::decode::<E>(bytes).map(Decoded::One)
                };
                match decoded {
                    Ok(decoded) => match decoded
                        .events()
                        .iter()
                        .find(|e| !self.settings.kinds.contains(&e.kind()))
                    {
                        None => Ok(decoded),
                        Some(event) => Err(Undecodable {
                            reason: "unexpected_kind",
                            error: format!(
                                "{}: a {} event, but this source declares {}",
                                at(),
                                event.kind(),
                                self.settings.kinds.join(", ")
                            ),
                            raw: bytes.to_vec(),
                            key: message.key().map(<[u8]>::to_vec),
                            headers: headers_of(message),
                        }),
                    },
                    Err(e) => Err(Undecodable {
                        reason: "decode_failed",
                        error: format!("{}: {e}", at()),
                        raw: bytes.to_vec(),
                        key: message.key().map(<[u8]>::to_vec),
                        headers: headers_of(message),
                    }),
                }
            }
        };
        Polled {
            tp,
            offset,
            ingested: ingest_time(message),
            generation,
            decoded,
        }
    }

    /// Track the polled messages and attach their tokens. Messages polled
    /// before a revoke of their partition are dropped: the partition's next
    /// owner (maybe this worker again) reads them from the committed position.
    fn hand_over(&self, pending: &mut Vec<Polled<E>>) -> Vec<Item<E>> {
        let mut items = Vec::with_capacity(pending.len());
        let revoked = std::mem::take(&mut *self.shared.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        let mut tracked = Vec::with_capacity(pending.len());
        {
            let mut tracker = self.shared.tracker();
            for polled in pending.drain(..) {
                let stale = revoked.iter().any(|(g, tp)| *g > polled.generation && *tp == polled.tp);
                let epoch = if stale {
                    None
                } else {
                    tracker.track(&polled.tp, polled.offset)
                };
                match epoch {
                    Some(epoch) => tracked.push((polled, epoch)),
                    None => self.shared.labels.discarded("partition_revoked", 1),
                }
            }
        }
        for (polled, epoch) in tracked {
            let origin = Origin {
                topic: polled.tp.topic.clone(),
                partition: polled.tp.partition,
                offset: polled.offset,
                index: 0,
                epoch,
            };
            let ack = self.shared.token(polled.tp, epoch, polled.offset);
            match polled.decoded {
                Ok(Decoded::One(event)) => items.push(Item::Event(
                    Envelope::new(event, ack)
                        .with_origin(origin)
                        .with_ingested(polled.ingested),
                )),
                // Every event of a batch holds a clone of the message's token: the offset is
                // committed once all of them are finalized.
                Ok(Decoded::Batch(events)) => {
                    for (index, event) in events.into_iter().enumerate() {
                        let origin = Origin {
                            index: index as u32,
                            ..origin.clone()
                        };
                        items.push(Item::Event(
                            Envelope::new(event, ack.clone())
                                .with_origin(origin)
                                .with_ingested(polled.ingested),
                        ));
                    }
                }
                Err(bad) => items.push(Item::Failure(Failure {
                    event: None,
                    raw: Some(bad.raw),
                    origin: Some(origin),
                    key: bad.key,
                    headers: bad.headers,
                    reason: bad.reason,
                    error: bad.error,
                    ack,
                    ingested: polled.ingested,
                })),
            }
        }
        items
    }
}
