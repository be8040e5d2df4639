//! Alert state that survives restarts and rebalances.
//!
//! The rule state ([`PairRules`]: `PctChange` and `ZScore` windows, the last
//! price of each crossing rule, cooldowns, re-arm hysteresis, retired `Once`
//! rules) is saved per pair to a compacted topic, through the engine's
//! [`Checkpoints`] (held tokens, saved positions, partition epochs — the same
//! mechanism the window stages use). What is alert-specific lives here: the
//! saved record ([`SavedPair`]), and that the firings of covered inputs not yet
//! confirmed delivered are saved with it and emitted again after a restore
//! (duplicates, never losses).

use std::collections::HashSet;
use std::time::Duration;

use fxflow_engine::kafka::{decode_saved, Checkpoints as KeyedCheckpoints, Position, StateTopic, Unconfirmed};
use fxflow_engine::{AckToken, Origin, StageError};
use serde::{Deserialize, Serialize};

use super::rules::{PairRules, RuleBook};
use crate::fx::{AlertFired, Pair};

/// The saved-state format version.
const VERSION: u32 = 1;

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

/// What [`Checkpoints::restore`] hands back: firings to emit again, each with
/// the token of an input it must hold back.
pub type Replays = Vec<(AlertFired, AckToken)>;

pub struct Checkpoints {
    keyed: KeyedCheckpoints<Pair>,
    unconfirmed: Unconfirmed<Pair, AlertFired>,
    pub interval: Duration,
}

impl Checkpoints {
    pub fn new(store: StateTopic, interval: Duration) -> Self {
        Self {
            keyed: KeyedCheckpoints::new(store, interval),
            unconfirmed: Unconfirmed::default(),
            interval,
        }
    }

    /// Partitions (with the first input of each) this stage reads for the first
    /// time in `origins` — since it started, or since a rebalance gave them back.
    pub fn newly_assigned<'a>(
        &mut self,
        origins: impl Iterator<Item = (&'a Origin, &'a AckToken)>,
    ) -> Vec<(Origin, AckToken)> {
        self.keyed.newly_assigned(origins)
    }

    /// Read the saved state and restore every pair last saved from one of the
    /// `fresh` partitions. Returns the firings to emit again.
    pub async fn restore(&mut self, book: &mut RuleBook, fresh: &[(Origin, AckToken)]) -> Result<Replays, StageError> {
        let values = self.keyed.load().await?;
        let mut replays = Vec::new();
        let mut restored = 0;
        for (key, value) in values {
            let Some(saved) = decode_saved(self.keyed.topic(), &key, &value, VERSION, |s: &SavedPair| s.v) else {
                continue;
            };
            let Some(ack) = saved.position.in_fresh(fresh) else {
                continue;
            };
            book.import(saved.pair, saved.rules);
            replays.extend(saved.unconfirmed.into_iter().map(|f| (f, ack.clone())));
            self.keyed.restored(saved.pair, saved.position);
            restored += 1;
        }
        tracing::info!(topic = %self.keyed.topic(), partitions = fresh.len(), pairs = restored, replayed = replays.len(), "Alert state restored.");
        Ok(replays)
    }

    /// Whether the restored state of `pair` already covers this input.
    pub fn covers(&mut self, pair: Pair, origin: &Origin) -> bool {
        self.keyed.covers(&pair, origin)
    }

    /// A sample of `pair` changed its state: hold its token until the next save.
    pub fn absorbed(&mut self, pair: Pair, origin: &Origin, ack: &AckToken) {
        self.keyed.absorbed(&pair, origin, ack);
    }

    /// The token for a firing caused by an input with token `input`: the firing
    /// counts as unconfirmed (and is saved as such) until it is delivered.
    pub fn track(&mut self, firing: &AlertFired, input: AckToken) -> AckToken {
        self.unconfirmed.track(firing.pair, firing.clone(), input)
    }

    /// Save every pair whose state changed since its last save.
    pub async fn save(&mut self, book: &RuleBook) {
        let dirty = self.keyed.take_dirty();
        if dirty.is_empty() {
            return;
        }
        let pairs: HashSet<Pair> = dirty.iter().map(|(pair, _, _)| *pair).collect();
        let mut unconfirmed = self.unconfirmed.of_keys(&pairs);
        for (pair, position, held) in dirty {
            let saved = SavedPair {
                v: VERSION,
                pair,
                position,
                rules: book.export(pair).unwrap_or_default(),
                unconfirmed: unconfirmed.remove(&pair).unwrap_or_default(),
            };
            let key = pair.to_string();
            match serde_json::to_vec(&saved) {
                Ok(value) => self.keyed.write(&key, &value, held).await,
                Err(e) => self.keyed.unsaved(&key, e, held),
            }
        }
    }
}
