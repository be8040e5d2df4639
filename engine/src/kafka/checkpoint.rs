//! [`Checkpoints`]: the generic half of keeping a stage's keyed state in a
//! [`StateTopic`] across restarts and rebalances (used by alert rule books and
//! by windows).
//!
//! The promise: *the state read back covers at least every committed input*,
//! and the stage can tell which re-delivered inputs it already covers.
//! - Every input a key's state absorbed has a clone of its ack token *held*
//!   until a save of that key is delivered; the source commits an input only
//!   once its effect on the state is durable.
//! - A save records the [`Position`] of the last input it covers.
//! - When the stage sees a partition it had not read before (a start, or a
//!   rebalance handing it over: a new assignment epoch in [`Origin`]), it reads
//!   the topic, restores the keys whose last save came from that partition,
//!   and from then on skips re-delivered inputs at or before the saved
//!   position ([`Checkpoints::covers`]).
//! - Outputs of covered inputs whose delivery was not yet confirmed when a
//!   save was written are saved with it ([`Unconfirmed`]) and emitted again
//!   after a restore: duplicates, never losses.
//!
//! What a key's state *is* stays the stage's business: this module holds
//! tokens, positions and epochs, and writes the bytes it is given.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::StateTopic;
use crate::ack::{AckStatus, AckToken};
use crate::event::Origin;
use crate::stage::StageError;

/// How long reading the state topic back may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// A position in an input log: the last input a saved state covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The event's place in its message (batches); absent in saves of single-event messages.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Position {
    pub fn of(origin: &Origin) -> Self {
        Self {
            topic: origin.topic.clone(),
            partition: origin.partition,
            offset: origin.offset,
            index: origin.index,
        }
    }

    /// Whether the input at `origin` is this one or an earlier one of its partition
    /// (an event of a batch message counts by its place in the message).
    pub fn covers(&self, origin: &Origin) -> bool {
        self.same_partition(origin) && (origin.offset, origin.index) <= (self.offset, self.index)
    }

    pub fn same_partition(&self, origin: &Origin) -> bool {
        self.partition == origin.partition && *self.topic == *origin.topic
    }

    /// The first input of whichever of `fresh` partitions this position is in.
    pub fn in_fresh<'a>(&self, fresh: &'a [(Origin, AckToken)]) -> Option<&'a AckToken> {
        fresh.iter().find(|(o, _)| self.same_partition(o)).map(|(_, ack)| ack)
    }
}

/// Inputs a key's state absorbed since its last save.
struct Dirty {
    held: Vec<AckToken>,
    position: Position,
}

/// Held tokens, positions and partition epochs of one stage's keyed state.
pub struct Checkpoints<K> {
    store: Arc<StateTopic>,
    interval: Duration,
    dirty: HashMap<K, Dirty>,
    /// The last input each key absorbed (or was restored at).
    positions: HashMap<K, Position>,
    /// The assignment epoch last seen per partition (a few entries: scanned, not hashed,
    /// so the per-input check clones nothing).
    epochs: Vec<(Arc<str>, i32, u64)>,
    /// Per key, the last input its restored state already covers.
    covered: HashMap<K, Position>,
}

impl<K: Clone + Eq + Hash> Checkpoints<K> {
    pub fn new(store: StateTopic, interval: Duration) -> Self {
        Self {
            store: Arc::new(store),
            interval,
            dirty: HashMap::new(),
            positions: HashMap::new(),
            epochs: Vec::new(),
            covered: HashMap::new(),
        }
    }

    /// How often the stage should call its save.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn topic(&self) -> &str {
        self.store.topic()
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

    /// Everything the state topic holds, by key (read off the async workers).
    pub async fn load(&self) -> Result<HashMap<String, Vec<u8>>, StageError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.load(LOAD_TIMEOUT))
            .await
            .map_err(|e| StageError::new(format!("reading the state topic: {e}")))?
    }

    /// `key`'s state was replaced by a save covering inputs up to `position`:
    /// inputs held for it here are older than that save (the key was elsewhere
    /// meanwhile) and are released; re-delivered inputs up to `position` are
    /// skipped from now on.
    pub fn restored(&mut self, key: K, position: Position) {
        self.dirty.remove(&key);
        self.positions.insert(key.clone(), position.clone());
        self.covered.insert(key, position);
    }

    /// Whether the restored state of `key` already covers this input.
    pub fn covers(&mut self, key: &K, origin: &Origin) -> bool {
        let Some(position) = self.covered.get(key) else {
            return false;
        };
        if position.covers(origin) {
            return true;
        }
        self.covered.remove(key);
        false
    }

    /// An input changed `key`'s state: hold its token until the next save of the key.
    pub fn absorbed(&mut self, key: &K, origin: &Origin, ack: &AckToken) {
        let position = Position::of(origin);
        match self.dirty.get_mut(key) {
            Some(dirty) => {
                dirty.held.push(ack.clone());
                dirty.position = position.clone();
            }
            None => {
                self.dirty.insert(
                    key.clone(),
                    Dirty {
                        held: vec![ack.clone()],
                        position: position.clone(),
                    },
                );
            }
        }
        match self.positions.get_mut(key) {
            Some(known) => *known = position,
            None => {
                self.positions.insert(key.clone(), position);
            }
        }
    }

    /// `key`'s state changed without a new input (a window closed as time
    /// passed): save it at its last position. Keys never fed from a log have
    /// no position and nothing to save.
    pub fn touch(&mut self, key: &K) {
        if self.dirty.contains_key(key) {
            return;
        }
        if let Some(position) = self.positions.get(key) {
            self.dirty.insert(
                key.clone(),
                Dirty {
                    held: Vec::new(),
                    position: position.clone(),
                },
            );
        }
    }

    /// The keys to save: each with the position its save covers and the
    /// tokens the save releases.
    pub fn take_dirty(&mut self) -> Vec<(K, Position, Vec<AckToken>)> {
        self.dirty
            .drain()
            .map(|(key, Dirty { held, position })| (key, position, held))
            .collect()
    }

    /// Write one saved value; `held` finalize once the broker has it.
    pub async fn write(&self, key: &str, value: &[u8], held: Vec<AckToken>) {
        self.store.write(key, value, held).await
    }

    /// A value that could not be encoded: its inputs stay uncommitted.
    pub fn unsaved(&self, key: &str, error: impl std::fmt::Display, held: Vec<AckToken>) {
        tracing::error!(topic = %self.store.topic(), key = %key, error = %error, "State cannot be encoded; its inputs stay uncommitted.");
        for token in &held {
            token.mark(AckStatus::Failed);
        }
    }
}

/// The save timer of a stage with checkpoints every `interval` (`None`: no
/// checkpoints; the timer then ticks rarely and the stage ignores it).
pub fn save_timer(interval: Option<Duration>) -> tokio::time::Interval {
    let mut timer = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// Decode one saved record of format `version` (`version_of` reads it from
/// the record); an unreadable record or one of another version is logged and
/// skipped, and its key starts afresh.
pub fn decode_saved<T: serde::de::DeserializeOwned>(
    topic: &str,
    key: &str,
    value: &[u8],
    version: u32,
    version_of: impl FnOnce(&T) -> u32,
) -> Option<T> {
    let saved: T = match serde_json::from_slice(value) {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(topic = %topic, key = %key, error = %e, "Unreadable saved state skipped; that key starts afresh.");
            return None;
        }
    };
    let found = version_of(&saved);
    if found != version {
        tracing::warn!(topic = %topic, key = %key, version = found, "Saved state of another format version skipped.");
        return None;
    }
    Some(saved)
}

/// Outputs in flight, per key, until their delivery is confirmed: a save
/// includes the key's unconfirmed outputs, so a restore can emit them again.
pub struct Unconfirmed<K, T> {
    items: Arc<Mutex<BTreeMap<u64, (K, T)>>>,
    next: u64,
}

impl<K, T> Default for Unconfirmed<K, T> {
    fn default() -> Self {
        Self {
            items: Arc::default(),
            next: 0,
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static, T: Clone + Send + 'static> Unconfirmed<K, T> {
    /// The token for an output of `key` caused by an input with token `input`:
    /// the output counts as unconfirmed (and is saved as such) until it is
    /// delivered; the input finalizes only after it.
    pub fn track(&mut self, key: K, item: T, input: AckToken) -> AckToken {
        let seq = self.next;
        self.next += 1;
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, (key, item));
        let items = self.items.clone();
        AckToken::with_callback(move |status| {
            input.mark(status);
            drop(input);
            if status.is_finalized_ok() {
                items.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
            }
        })
    }

    /// The unconfirmed outputs of `keys`, oldest first.
    pub fn of_keys(&self, keys: &HashSet<K>) -> HashMap<K, Vec<T>> {
        let mut out: HashMap<K, Vec<T>> = HashMap::new();
        for (key, item) in self.items.lock().unwrap_or_else(|p| p.into_inner()).values() {
            if keys.contains(key) {
                out.entry(key.clone()).or_default().push(item.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(partition: i32, offset: i64, epoch: u64) -> Origin {
        Origin {
            topic: Arc::from("t"),
            partition,
            offset,
            index: 0,
            epoch,
        }
    }

    #[tokio::test]
    async fn an_output_stays_unconfirmed_until_delivered_and_holds_its_input() {
        let mut unconfirmed: Unconfirmed<&str, u32> = Unconfirmed::default();
        let (input, rx) = AckToken::new();
        let token = unconfirmed.track("a", 7, input);
        let keys: HashSet<&str> = ["a"].into();
        assert_eq!(unconfirmed.of_keys(&keys)["a"], vec![7]);
        drop(token);
        assert_eq!(rx.wait().await, AckStatus::Delivered);
        assert!(unconfirmed.of_keys(&keys).is_empty());
    }

    #[test]
    fn positions_cover_re_deliveries_of_their_partition_only() {
        let position = Position::of(&origin(1, 10, 0));
        let fresh = vec![(origin(1, 5, 1), AckToken::none())];
        assert!(position.in_fresh(&fresh).is_some());
        assert!(position.in_fresh(&[(origin(2, 5, 1), AckToken::none())]).is_none());
        assert!(position.same_partition(&origin(1, 99, 3)));
        assert!(position.covers(&origin(1, 10, 0)) && position.covers(&origin(1, 9, 0)));
        assert!(!position.covers(&origin(1, 11, 0)) && !position.covers(&origin(2, 1, 0)));
        // Within a batch message: the events up to the saved one are covered, the later ones not.
        let in_batch = Position::of(&Origin {
            index: 3,
            ..origin(1, 10, 0)
        });
        assert!(in_batch.covers(&Origin {
            index: 3,
            ..origin(1, 10, 0)
        }));
        assert!(!in_batch.covers(&Origin {
            index: 4,
            ..origin(1, 10, 0)
        }));
        assert!(in_batch.covers(&Origin {
            index: 9,
            ..origin(1, 9, 0)
        }));
        // A save of a single-event message reads back without an index.
        let saved = serde_json::to_string(&position).unwrap();
        assert!(!saved.contains("index"), "{saved}");
        assert_eq!(serde_json::from_str::<Position>(&saved).unwrap(), position);
    }
}
