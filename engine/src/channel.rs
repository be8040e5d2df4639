//! Bounded channels between stages, counted in events.
//!
//! Batches travel as `Vec<Envelope<E>>` so a channel operation costs the same
//! for one event or a thousand; the bound, though, is in *events*, because
//! that is what a user sizes (`buffer: (capacity: 1000)`). A semaphore with
//! `capacity` permits carries the bound: a sender takes one permit per event
//! (waiting when the buffer is full — backpressure), the receiver gives them
//! back. With `when_full: drop_newest` a sender that finds no room drops the
//! batch instead, marks the events rejected and counts them.

use std::sync::Arc;

use metrics::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use crate::ack::AckStatus;
use crate::event::{Envelope, Event};
use crate::metrics::StageLabels;

/// What a sender does when the receiving stage's buffer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait until there is room: slow stages slow their producers (backpressure).
    #[default]
    Block,
    /// Drop the incoming batch and count it in `fxflow_stage_discarded_events_total{reason="buffer_full"}`.
    DropNewest,
}

/// A stage's input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// How many events may wait in front of the stage.
    #[serde(default = "BufferConfig::default_capacity")]
    pub capacity: usize,
    /// What happens when the buffer is full.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl BufferConfig {
    pub const DEFAULT_CAPACITY: usize = 4096;

    fn default_capacity() -> usize {
        Self::DEFAULT_CAPACITY
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            capacity: Self::DEFAULT_CAPACITY,
            when_full: WhenFull::Block,
        }
    }
}

/// Create a channel in front of the stage `labels` names.
pub fn bounded<E: Event>(config: BufferConfig, labels: &StageLabels) -> (Sender<E>, Receiver<E>) {
    let capacity = config.capacity.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(capacity));
    let utilization = labels.channel_utilization();
    let shared = Arc::new(ChannelShared {
        permits,
        capacity,
        utilization,
    });
    (
        Sender {
            tx,
            shared: shared.clone(),
            when_full: config.when_full,
            labels: labels.clone(),
        },
        Receiver {
            rx,
            shared,
            older: None,
        },
    )
}

/// One receiver over two channels: everything `older` holds or still gets
/// first, then `newer`. A reload that gives a stage a new buffer uses it, so
/// producers not yet rewired still reach the stage and each producer's order holds.
pub(crate) fn merged<E>(older: Receiver<E>, mut newer: Receiver<E>) -> Receiver<E> {
    newer.older = Some(Box::new(older));
    newer
}

struct ChannelShared {
    permits: Arc<Semaphore>,
    capacity: usize,
    utilization: Gauge,
}

impl ChannelShared {
    fn report(&self) {
        let used = self.capacity - self.permits.available_permits().min(self.capacity);
        self.utilization.set(used as f64 / self.capacity as f64);
    }

    /// A batch larger than the whole buffer takes all of it, not more, so it can still pass.
    fn permits_for(&self, len: usize) -> u32 {
        len.min(self.capacity) as u32
    }
}

/// The receiving end was dropped: the downstream stage has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the downstream stage has stopped")]
pub struct Closed;

pub struct Sender<E> {
    tx: mpsc::UnboundedSender<Vec<Envelope<E>>>,
    shared: Arc<ChannelShared>,
    when_full: WhenFull,
    labels: StageLabels,
}

impl<E> Clone for Sender<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            when_full: self.when_full,
            labels: self.labels.clone(),
        }
    }
}

impl<E> Sender<E> {
    /// A handle that does not keep the channel open: the running pipeline keeps
    /// one per stage so a reload can wire new producers to a stage that keeps
    /// running, while shutdown still closes the channel once its producers end.
    pub(crate) fn downgrade(&self) -> WeakSender<E> {
        WeakSender {
            tx: self.tx.downgrade(),
            shared: self.shared.clone(),
            when_full: self.when_full,
            labels: self.labels.clone(),
        }
    }
}

/// A [`Sender`] that does not keep the channel open (see [`Sender::downgrade`]).
pub(crate) struct WeakSender<E> {
    tx: mpsc::WeakUnboundedSender<Vec<Envelope<E>>>,
    shared: Arc<ChannelShared>,
    when_full: WhenFull,
    labels: StageLabels,
}

impl<E> WeakSender<E> {
    /// A sender again, unless every producer has ended and the channel closed.
    pub(crate) fn upgrade(&self) -> Option<Sender<E>> {
        Some(Sender {
            tx: self.tx.upgrade()?,
            shared: self.shared.clone(),
            when_full: self.when_full,
            labels: self.labels.clone(),
        })
    }
}

impl<E: Event> Sender<E> {
    /// Send a batch, waiting for room (or dropping it, per the buffer policy).
    pub async fn send(&self, batch: Vec<Envelope<E>>) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = self.shared.permits_for(batch.len());
        let permit = match self.when_full {
            WhenFull::Block => match self.shared.permits.acquire_many(n).await {
                Ok(permit) => permit,
                Err(_) => {
                    batch.iter().for_each(|e| e.ack.mark(AckStatus::Failed));
                    return Err(Closed);
                }
            },
            WhenFull::DropNewest => match self.shared.permits.try_acquire_many(n) {
                Ok(permit) => permit,
                Err(tokio::sync::TryAcquireError::Closed) => {
                    batch.iter().for_each(|e| e.ack.mark(AckStatus::Failed));
                    return Err(Closed);
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    self.labels.discarded("buffer_full", batch.len() as u64);
                    for envelope in &batch {
                        envelope.ack.mark(AckStatus::Rejected);
                    }
                    return Ok(());
                }
            },
        };
        permit.forget();
        if let Err(unsent) = self.tx.send(batch) {
            // Never delivered: the source must not treat these as done.
            unsent.0.iter().for_each(|e| e.ack.mark(AckStatus::Failed));
            return Err(Closed);
        }
        self.shared.report();
        Ok(())
    }
}

pub struct Receiver<E> {
    rx: mpsc::UnboundedReceiver<Vec<Envelope<E>>>,
    shared: Arc<ChannelShared>,
    /// A channel read first until it closes (see [`merged`]).
    older: Option<Box<Receiver<E>>>,
}

impl<E> Receiver<E> {
    /// The next batch; `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Vec<Envelope<E>>> {
        if let Some(older) = &mut self.older {
            tokio::select! {
                biased;
                batch = older.recv_own() => match batch {
                    Some(batch) => return Some(batch),
                    None => self.older = None,
                },
                batch = self.rx.recv() => {
                    let batch = batch?;
                    self.release(&batch);
                    return Some(batch);
                }
            }
        }
        self.recv_own().await
    }

    async fn recv_own(&mut self) -> Option<Vec<Envelope<E>>> {
        let batch = self.rx.recv().await?;
        self.release(&batch);
        Some(batch)
    }

    /// A batch if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Vec<Envelope<E>>> {
        if let Some(older) = &mut self.older {
            if let Some(batch) = older.try_recv() {
                return Some(batch);
            }
        }
        let batch = self.rx.try_recv().ok()?;
        self.release(&batch);
        Some(batch)
    }

    fn release(&self, batch: &[Envelope<E>]) {
        self.shared
            .permits
            .add_permits(self.shared.permits_for(batch.len()) as usize);
        self.shared.report();
    }

    /// Events waiting in the buffer.
    pub fn len(&self) -> usize {
        let older = self.older.as_ref().map_or(0, |o| o.len());
        older + self.shared.capacity - self.shared.permits.available_permits().min(self.shared.capacity)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<E> Drop for Receiver<E> {
    /// A stage that stopped must not leave its producers waiting for room forever.
    fn drop(&mut self) {
        self.shared.permits.close();
        // Events still queued for a stage that stopped early will never be handled.
        self.rx.close();
        while let Ok(batch) = self.rx.try_recv() {
            batch.iter().for_each(|e| e.ack.mark(AckStatus::Failed));
        }
    }
}
