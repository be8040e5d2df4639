//! End-to-end acknowledgements.
//!
//! A source attaches an [`AckToken`] to each input it reads. Every event
//! derived from that input (a snapshot's 28 crosses, the copies a fan-out
//! makes) holds a clone of the same token. When the last clone is dropped —
//! each sink drops its copy after it stored it, a filter drops the event, a
//! dead-letter sink stores it — the token finalizes and the source hears the
//! combined status. A sink that gives up without an error output marks the
//! token [`AckStatus::Failed`], so the source never treats that input as done.
//!
//! The design follows Vector's finalizers and Benthos' ack functions: the
//! acknowledgement travels with the data, so no stage needs to know who is
//! waiting for it.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

/// How an input ended, once every event derived from it is finalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AckStatus {
    /// Every derived event was stored, filtered on purpose, or stored as a dead letter.
    Delivered = 0,
    /// Dropped on purpose by a policy (`drop_newest`) or rejected without an
    /// error output: finalized, not to be retried.
    Rejected = 1,
    /// A sink could not store a derived event and had no error output: the
    /// source must not consider the input done (Kafka: do not commit).
    Failed = 2,
}

impl AckStatus {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => AckStatus::Delivered,
            1 => AckStatus::Rejected,
            _ => AckStatus::Failed,
        }
    }

    /// True for statuses after which a source may move past the input.
    pub fn is_finalized_ok(self) -> bool {
        self != AckStatus::Failed
    }
}

type Callback = Box<dyn FnOnce(AckStatus) + Send + Sync>;

struct Shared {
    status: AtomicU8,
    on_finalize: Option<Callback>,
    /// What the source knows about the input that a dead letter should keep
    /// (a replayed dead letter's earlier failures), see [`AckToken::with_note`].
    note: Option<Arc<str>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(callback) = self.on_finalize.take() {
            callback(AckStatus::from_u8(self.status.load(Ordering::Acquire)));
        }
    }
}

/// A shared handle on one source input's fate. Cheap to clone (an `Arc`), and
/// free when no one listens ([`AckToken::none`]).
#[derive(Clone, Default)]
pub struct AckToken(Option<Arc<Shared>>);

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("AckToken(none)"),
            Some(shared) => write!(
                f,
                "AckToken({:?})",
                AckStatus::from_u8(shared.status.load(Ordering::Relaxed))
            ),
        }
    }
}

impl AckToken {
    /// A token nobody waits for.
    pub fn none() -> Self {
        AckToken(None)
    }

    /// A token and a receiver that resolves once every clone is dropped.
    pub fn new() -> (Self, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        let token = Self::with_callback(move |status| {
            let _ = tx.send(status);
        });
        (token, AckReceiver(rx))
    }

    /// A token that calls `callback` once, with the combined status, when the
    /// last clone is dropped. Sources with their own bookkeeping (Kafka offset
    /// tracking) use this to avoid a task per input.
    pub fn with_callback(callback: impl FnOnce(AckStatus) + Send + Sync + 'static) -> Self {
        AckToken(Some(Arc::new(Shared {
            status: AtomicU8::new(AckStatus::Delivered as u8),
            on_finalize: Some(Box::new(callback)),
            note: None,
        })))
    }

    /// Attach a note to a token nobody has copied yet: every dead letter of an
    /// event derived from this input carries it ([`crate::DeadLetter::note`]).
    /// `fxflow dlq replay` marks replayed letters this way, so one that fails
    /// again keeps its earlier reasons. A token already copied, or untracked,
    /// stays as it is.
    pub fn with_note(mut self, note: impl Into<Arc<str>>) -> Self {
        if let Some(shared) = self.0.as_mut().and_then(Arc::get_mut) {
            shared.note = Some(note.into());
        }
        self
    }

    /// The note attached with [`AckToken::with_note`].
    pub fn note(&self) -> Option<&Arc<str>> {
        self.0.as_ref().and_then(|shared| shared.note.as_ref())
    }

    /// Record an outcome for this copy; the worst outcome of all copies wins.
    pub fn mark(&self, status: AckStatus) {
        if let Some(shared) = &self.0 {
            shared.status.fetch_max(status as u8, Ordering::AcqRel);
        }
    }

    pub fn is_tracked(&self) -> bool {
        self.0.is_some()
    }

    /// One token standing for many inputs (an event derived from all of
    /// them, such as a window's result): when it finalizes, each of `tokens`
    /// is marked with its status and released. Untracked tokens are left out,
    /// so joining only [`AckToken::none`]s costs nothing.
    pub fn joined(tokens: Vec<AckToken>) -> AckToken {
        let mut tracked: Vec<AckToken> = tokens.into_iter().filter(AckToken::is_tracked).collect();
        match tracked.len() {
            0 => AckToken::none(),
            1 => tracked.pop().expect("one token"),
            _ => AckToken::with_callback(move |status| {
                for token in &tracked {
                    token.mark(status);
                }
            }),
        }
    }
}

impl Drop for AckToken {
    /// A copy dropped while its thread unwinds from a panic belonged to a stage
    /// that crashed holding it: that input was not delivered.
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            if std::thread::panicking() {
                shared.status.fetch_max(AckStatus::Failed as u8, Ordering::AcqRel);
            }
        }
    }
}

/// Resolves to the input's final status. If the process shuts down with the
/// input still in flight, the token's clones are dropped and it resolves then.
pub struct AckReceiver(oneshot::Receiver<AckStatus>);

impl AckReceiver {
    pub async fn wait(self) -> AckStatus {
        self.0.await.unwrap_or(AckStatus::Failed)
    }

    /// The status if already finalized, without waiting.
    pub fn try_status(&mut self) -> Option<AckStatus> {
        self.0.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_rides_on_every_copy_but_only_a_fresh_token_takes_one() {
        let token = AckToken::with_callback(|_| {}).with_note("replayed");
        assert_eq!(token.clone().note().map(|n| &**n), Some("replayed"));
        let copy = token.clone();
        let token = token.with_note("ignored: already copied");
        assert_eq!(copy.note().map(|n| &**n), Some("replayed"));
        assert_eq!(token.note().map(|n| &**n), Some("replayed"));
        assert!(AckToken::none().with_note("x").note().is_none());
    }

    #[tokio::test]
    async fn finalizes_when_the_last_copy_is_dropped() {
        let (token, mut rx) = AckToken::new();
        let copies: Vec<_> = (0..28).map(|_| token.clone()).collect();
        drop(token);
        assert_eq!(rx.try_status(), None);
        let mut copies = copies;
        copies.pop();
        assert_eq!(rx.try_status(), None, "27 derived copies still in flight");
        copies.clear();
        assert_eq!(rx.wait().await, AckStatus::Delivered);
    }

    #[tokio::test]
    async fn worst_status_wins() {
        let (token, rx) = AckToken::new();
        let a = token.clone();
        let b = token.clone();
        drop(token);
        a.mark(AckStatus::Failed);
        b.mark(AckStatus::Rejected);
        drop((a, b));
        assert_eq!(rx.wait().await, AckStatus::Failed);
    }

    #[tokio::test]
    async fn a_joined_token_finalizes_every_input_with_its_status() {
        let (a, rx_a) = AckToken::new();
        let (b, rx_b) = AckToken::new();
        let joined = AckToken::joined(vec![a, AckToken::none(), b]);
        joined.mark(AckStatus::Failed);
        drop(joined);
        assert_eq!(rx_a.wait().await, AckStatus::Failed);
        assert_eq!(rx_b.wait().await, AckStatus::Failed);
        assert!(!AckToken::joined(vec![AckToken::none(), AckToken::none()]).is_tracked());
    }

    #[test]
    fn none_tokens_cost_nothing() {
        let token = AckToken::none();
        token.mark(AckStatus::Failed);
        assert!(!token.is_tracked());
    }
}
