//! Alert state that survives restarts and rebalances.
//!
//! The rule state ([`PairRules`]: `PctChange` windows, the last price of each
//! crossing rule, cooldowns, re-arm hysteresis, retired `Once` rules) is saved
//! per pair to a compacted topic ([`StateTopic`]). The protocol:
//! - every input sample a pair's state absorbed has its ack token *held* until
//!   a save covering it is delivered; so the source commits an input only once
//!   its effect on the state is durable, and a save always covers at least
//!   everything committed;
//! - a save records the position (topic, partition, offset) of the last input
//!   it covers, and the firings not yet confirmed delivered;
//! - when the stage sees a partition it had not read before (a start, or a
//!   rebalance handing it over), it reads the topic and restores the pairs
//!   whose last save came from that partition; it then skips the re-delivered
//!   inputs the restored state covers and re-emits the unconfirmed firings
//!   (duplicates, never losses).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fxflow_engine::kafka::StateTopic;
use fxflow_engine::{AckStatus, AckToken, Origin, StageError};
use serde::{Deserialize, Serialize};

use super::rules::{PairRules, RuleBook};
use crate::fx::{AlertFired, Pair};

/// The saved-state format version.
const VERSION: u32 = 1;

/// How long reading the state topic back may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A position in the input log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    fn of(origin: &Origin) -> Self {
        Self {
            topic: origin.topic.to_string(),
            partition: origin.partition,
            offset: origin.offset,
        }
    }

    fn same_partition(&self, origin: &Origin) -> bool {
        self.partition == origin.partition && *self.topic == *origin.topic
    }
}

/// One pair's saved state, as written to the state topic (JSON, keyed by pair).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPair {
    pub v: u32,
    pub pair: Pair,
    /// The last input this state covers.
    pub position: Position,
    #[serde(flatten)]
    pub rules: PairRules,
    /// Firings of covered inputs not yet known to be delivered when this was saved.
    pub unconfirmed: Vec<AlertFired>,
}

/// Inputs a pair's state absorbed since its last save.
struct Dirty {
    held: Vec<AckToken>,
    position: Position,
}

/// Firings in flight, by sequence number, until their delivery is confirmed.
type Unconfirmed = Arc<Mutex<BTreeMap<u64, AlertFired>>>;

/// What [`Checkpoints::restore`] hands back: firings to emit again, each with
/// the token of an input it must hold back.
pub type Replays = Vec<(AlertFired, AckToken)>;

pub struct Checkpoints {
    store: Arc<StateTopic>,
    pub interval: Duration,
    dirty: HashMap<Pair, Dirty>,
    unconfirmed: Unconfirmed,
    next_firing: u64,
    /// The assignment epoch last seen per partition (a few entries: scanned, not hashed,
    /// so the per-sample check clones nothing).
    epochs: Vec<(Arc<str>, i32, u64)>,
    /// Per pair, the last input its restored state already covers.
    covered: HashMap<Pair, Position>,
}

impl Checkpoints {
    pub fn new(store: StateTopic, interval: Duration) -> Self {
        Self {
            store: Arc::new(store),
            interval,
            dirty: HashMap::new(),
            unconfirmed: Arc::default(),
            next_firing: 0,
            epochs: Vec::new(),
            covered: HashMap::new(),
        }
    }

    /// Partitions (with the first input of each) this stage reads for the first
    /// time in `origins` — since it started, or since a rebalance gave them back.
    pub fn newly_assigned<'a>(
        &mut self,
        origins: impl Iterator<Item = (&'a Origin, &'a AckToken)>,
    ) -> Vec<(Origin, AckToken)> {
        let mut fresh = Vec::new();
        for (origin, ack) in origins {
            let known = self
                .epochs
                .iter_mut()
                .find(|(topic, partition, _)| *partition == origin.partition && **topic == *origin.topic);
            match known {
                Some((_, _, epoch)) if *epoch == origin.epoch => continue,
                Some((_, _, epoch)) => *epoch = origin.epoch,
                None => self.epochs.push((origin.topic.clone(), origin.partition, origin.epoch)),
            }
            fresh.push((origin.clone(), ack.clone()));
        }
        fresh
    }

    /// Read the saved state and restore every pair last saved from one of the
    /// `fresh` partitions. Returns the firings to emit again.
    pub async fn restore(&mut self, book: &mut RuleBook, fresh: &[(Origin, AckToken)]) -> Result<Replays, StageError> {
        let store = self.store.clone();
        let values = tokio::task::spawn_blocking(move || store.load(LOAD_TIMEOUT))
            .await
            .map_err(|e| StageError::new(format!("reading the alert state: {e}")))??;
        let mut replays = Vec::new();
        let mut restored = 0;
        for (key, value) in values {
            let saved: SavedPair = match serde_json::from_slice(&value) {
                Ok(saved) => saved,
                Err(e) => {
                    tracing::warn!(topic = %self.store.topic(), key = %key, error = %e, "Unreadable saved alert state skipped; that pair starts afresh.");
                    continue;
                }
            };
            if saved.v != VERSION {
                tracing::warn!(key = %key, version = saved.v, "Saved alert state of another format version skipped.");
                continue;
            }
            let Some((_, ack)) = fresh.iter().find(|(o, _)| saved.position.same_partition(o)) else {
                continue;
            };
            // State held here for the pair is older than the save (the pair was elsewhere meanwhile).
            self.dirty.remove(&saved.pair);
            book.import(saved.pair, saved.rules);
            replays.extend(saved.unconfirmed.into_iter().map(|f| (f, ack.clone())));
            self.covered.insert(saved.pair, saved.position);
            restored += 1;
        }
        tracing::info!(topic = %self.store.topic(), partitions = fresh.len(), pairs = restored, replayed = replays.len(), "Alert state restored.");
        Ok(replays)
    }

    /// Whether the restored state of `pair` already covers this input.
    pub fn covers(&mut self, pair: Pair, origin: &Origin) -> bool {
        let Some(position) = self.covered.get(&pair) else {
            return false;
        };
        if position.same_partition(origin) && origin.offset <= position.offset {
            return true;
        }
        self.covered.remove(&pair);
        false
    }

    /// A sample of `pair` changed its state: hold its token until the next save.
    pub fn absorbed(&mut self, pair: Pair, origin: &Origin, ack: &AckToken) {
        let position = Position::of(origin);
        match self.dirty.get_mut(&pair) {
            Some(dirty) => {
                dirty.held.push(ack.clone());
                dirty.position = position;
            }
            None => {
                self.dirty.insert(
                    pair,
                    Dirty {
                        held: vec![ack.clone()],
                        position,
                    },
                );
            }
        }
    }

    /// The token for a firing caused by an input with token `input`: the firing
    /// counts as unconfirmed (and is saved as such) until it is delivered.
    pub fn track(&mut self, firing: &AlertFired, input: AckToken) -> AckToken {
        let seq = self.next_firing;
        self.next_firing += 1;
        self.unconfirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, firing.clone());
        let unconfirmed = self.unconfirmed.clone();
        AckToken::with_callback(move |status| {
            input.mark(status);
            drop(input);
            if status.is_finalized_ok() {
                unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
            }
        })
    }

    /// Save every pair whose state changed since its last save.
    pub async fn save(&mut self, book: &RuleBook) {
        if self.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let pairs: HashSet<Pair> = dirty.keys().copied().collect();
        let mut unconfirmed: HashMap<Pair, Vec<AlertFired>> = HashMap::new();
        for firing in self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).values() {
            if pairs.contains(&firing.pair) {
                unconfirmed.entry(firing.pair).or_default().push(firing.clone());
            }
        }
        for (pair, Dirty { held, position }) in dirty {
            let saved = SavedPair {
                v: VERSION,
                pair,
                position,
                rules: book.export(pair).unwrap_or_default(),
                unconfirmed: unconfirmed.remove(&pair).unwrap_or_default(),
            };
            match serde_json::to_vec(&saved) {
                Ok(value) => self.store.write(&pair.to_string(), &value, held).await,
                Err(e) => {
                    tracing::error!(pair = %pair, error = %e, "Alert state cannot be encoded; its inputs stay uncommitted.");
                    for token in &held {
                        token.mark(AckStatus::Failed);
                    }
                }
            }
        }
    }
}
