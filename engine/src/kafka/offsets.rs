//! Which offsets a consumer may commit.
//!
//! Events of one partition finish out of order (fan-out, sinks of different
//! speed, retries). An offset may be committed only when it and every earlier
//! offset read from the partition are finalized, so a crash re-delivers but
//! never skips. Per partition we keep the offsets in read order with their
//! status; the committable position is one past the longest finished prefix.
//! An input whose events failed (a sink gave up without an error output) stays
//! at the head and holds the partition's commits back until a restart
//! re-delivers it: that is the guarantee, not a bug.
//!
//! Each assignment of a partition gets a fresh epoch; acknowledgements from an
//! earlier assignment (events still in flight when the partition was revoked)
//! are ignored, so they cannot move the new owner's position.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::ack::AckStatus;

/// A topic's partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

#[derive(Debug)]
struct PartitionOffsets {
    epoch: u64,
    /// Offsets handed downstream and not yet part of the committable prefix, ascending.
    in_flight: VecDeque<(i64, Option<AckStatus>)>,
    /// One past the last offset of the finished prefix: the position to commit.
    ready: Option<i64>,
    committed: Option<i64>,
}

/// Offsets in flight per assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, PartitionOffsets>,
    next_epoch: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start tracking a newly assigned partition.
    pub fn assign(&mut self, tp: TopicPartition) {
        self.next_epoch += 1;
        self.partitions.insert(
            tp,
            PartitionOffsets {
                epoch: self.next_epoch,
                in_flight: VecDeque::new(),
                ready: None,
                committed: None,
            },
        );
    }

    /// Forget a partition that was taken away; late acks for it are ignored.
    pub fn revoke(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }

    pub fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.partitions.contains_key(tp)
    }

    /// Record that `offset` was handed downstream. Returns the epoch to quote
    /// when it finishes, or `None` if the partition is not assigned (drop the message).
    pub fn track(&mut self, tp: &TopicPartition, offset: i64) -> Option<u64> {
        let p = self.partitions.get_mut(tp)?;
        match p.in_flight.back() {
            Some(&(last, _)) if last >= offset => {
                // A re-read of an offset already in flight: keep the list ordered and unique.
                let at = p.in_flight.partition_point(|(o, _)| *o < offset);
                if p.in_flight.get(at).map(|(o, _)| *o) != Some(offset) {
                    p.in_flight.insert(at, (offset, None));
                } else {
                    p.in_flight[at].1 = None;
                }
            }
            _ => p.in_flight.push_back((offset, None)),
        }
        Some(p.epoch)
    }

    /// Record how `offset` ended. Returns `true` if the committable position moved.
    pub fn finish(&mut self, tp: &TopicPartition, epoch: u64, offset: i64, status: AckStatus) -> bool {
        let Some(p) = self.partitions.get_mut(tp) else {
            return false;
        };
        if p.epoch != epoch {
            return false;
        }
        let at = p.in_flight.partition_point(|(o, _)| *o < offset);
        match p.in_flight.get_mut(at) {
            Some(entry) if entry.0 == offset => entry.1 = Some(status),
            _ => return false,
        }
        let mut moved = false;
        while let Some(&(offset, Some(status))) = p.in_flight.front() {
            if !status.is_finalized_ok() {
                break;
            }
            p.in_flight.pop_front();
            p.ready = Some(offset + 1);
            moved = true;
        }
        moved
    }

    /// One past the last offset of `tp`'s finished prefix (`None`: nothing finished yet).
    pub fn ready(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|p| p.ready)
    }

    /// Positions that moved since the last commit, to commit now.
    pub fn to_commit(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(tp, p)| match (p.ready, p.committed) {
                (Some(ready), Some(done)) if ready <= done => None,
                (Some(ready), _) => Some((tp.clone(), ready)),
                (None, _) => None,
            })
            .collect()
    }

    /// Record a successful commit.
    pub fn committed(&mut self, positions: &[(TopicPartition, i64)]) {
        for (tp, offset) in positions {
            if let Some(p) = self.partitions.get_mut(tp) {
                p.committed = Some(p.committed.map_or(*offset, |c| c.max(*offset)));
            }
        }
    }

    /// Offsets of `tps` still waiting for their events (a failed head counts as
    /// settled: nothing more will happen to it in this process).
    pub fn unsettled(&self, tps: &[TopicPartition]) -> usize {
        tps.iter()
            .filter_map(|tp| self.partitions.get(tp))
            .map(|p| p.in_flight.iter().filter(|(_, s)| s.is_none()).count())
            .sum()
    }

    /// Partitions whose commits are held back by an input that failed.
    pub fn blocked(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(tp, p)| match p.in_flight.front() {
                Some(&(offset, Some(AckStatus::Failed))) => Some((tp.clone(), offset)),
                _ => None,
            })
            .collect()
    }

    pub fn assigned(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("events", 0)
    }

    #[test]
    fn commits_only_the_finished_prefix() {
        let mut t = OffsetTracker::new();
        t.assign(tp());
        let e = (10..15).map(|o| t.track(&tp(), o).unwrap()).last().unwrap();
        assert!(!t.finish(&tp(), e, 12, AckStatus::Delivered));
        assert!(t.to_commit().is_empty(), "10 and 11 are still in flight");
        assert!(t.finish(&tp(), e, 10, AckStatus::Delivered));
        assert_eq!(t.to_commit(), vec![(tp(), 11)]);
        assert!(t.finish(&tp(), e, 11, AckStatus::Rejected));
        assert_eq!(t.to_commit(), vec![(tp(), 13)], "12 finished earlier, 13 is next");
        t.committed(&t.to_commit());
        assert!(t.to_commit().is_empty());
        assert_eq!(t.unsettled(&[tp()]), 2);
    }

    #[test]
    fn a_failed_input_holds_commits_back() {
        let mut t = OffsetTracker::new();
        t.assign(tp());
        let e = t.track(&tp(), 0).unwrap();
        t.track(&tp(), 1);
        t.finish(&tp(), e, 0, AckStatus::Failed);
        t.finish(&tp(), e, 1, AckStatus::Delivered);
        assert!(t.to_commit().is_empty());
        assert_eq!(t.blocked(), vec![(tp(), 0)]);
        assert_eq!(t.unsettled(&[tp()]), 0, "nothing more will happen to either");
    }

    #[test]
    fn acks_from_an_earlier_assignment_are_ignored() {
        let mut t = OffsetTracker::new();
        t.assign(tp());
        let old = t.track(&tp(), 5).unwrap();
        t.revoke(&tp());
        assert_eq!(t.track(&tp(), 6), None, "not assigned: the message is dropped");
        t.assign(tp());
        let new = t.track(&tp(), 5).unwrap();
        assert_ne!(old, new);
        assert!(!t.finish(&tp(), old, 5, AckStatus::Delivered));
        assert!(t.to_commit().is_empty());
        assert!(t.finish(&tp(), new, 5, AckStatus::Delivered));
        assert_eq!(t.to_commit(), vec![(tp(), 6)]);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        // Compacted topics and transaction markers leave holes in the offsets.
        let mut t = OffsetTracker::new();
        t.assign(tp());
        let e = t.track(&tp(), 3).unwrap();
        t.track(&tp(), 9);
        t.finish(&tp(), e, 9, AckStatus::Delivered);
        t.finish(&tp(), e, 3, AckStatus::Delivered);
        assert_eq!(t.to_commit(), vec![(tp(), 10)]);
    }

    proptest! {
        /// Whatever order acks come in, the position is one past the longest finished prefix.
        #[test]
        fn position_is_the_finished_prefix(order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle(), cut in 0usize..40) {
            let mut t = OffsetTracker::new();
            t.assign(tp());
            let mut epoch = 0;
            for o in 0..40 {
                epoch = t.track(&tp(), o).unwrap();
            }
            let done: Vec<i64> = order[..cut].to_vec();
            for &o in &done {
                t.finish(&tp(), epoch, o, AckStatus::Delivered);
            }
            let prefix = (0..40).take_while(|o| done.contains(o)).count() as i64;
            let expected = if prefix == 0 { vec![] } else { vec![(tp(), prefix)] };
            prop_assert_eq!(t.to_commit(), expected);
            prop_assert_eq!(t.unsettled(&[tp()]), 40 - cut);
        }
    }
}
