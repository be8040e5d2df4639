//! The event contract between the engine and an application.
//!
//! The engine is generic over the application's event type. It only needs to
//! know each event's *kind* (to check edges before anything runs and to label
//! metrics) and how to wrap an event that a stage could not handle into a dead
//! letter, so error outputs can flow into ordinary sinks.

use std::fmt;

use crate::ack::AckToken;

/// The kind name every dead letter carries; error outputs emit only this kind.
pub const DEAD_LETTER_KIND: &str = "DeadLetter";

/// An application's event type.
pub trait Event: Clone + Send + Sync + fmt::Debug + 'static {
    /// The payload's kind name, e.g. `"Order"`. Must be one of the names the
    /// emitting stage declared in [`crate::StageConfig::emits`].
    fn kind(&self) -> &'static str;

    /// Wrap an event a stage could not handle. The result's kind must be
    /// [`DEAD_LETTER_KIND`].
    fn dead_letter(letter: DeadLetter<Self>) -> Self;
}

/// An event that a stage could not handle, with the reason.
#[derive(Clone, Debug)]
pub struct DeadLetter<E> {
    /// The stage that gave up on the event.
    pub stage: String,
    /// A short machine-readable reason (`"stale"`, `"write_failed"`), also the
    /// `error_type` label of the error counter.
    pub reason: &'static str,
    /// The human-readable error.
    pub error: String,
    /// The event itself, when there is one (a decoding source has only bytes).
    pub event: Option<Box<E>>,
    /// The original bytes, for sources that failed to decode them.
    pub raw: Option<Vec<u8>>,
    /// Where the input was read (a Kafka source's topic, partition, offset), for replay.
    pub origin: Option<Origin>,
    /// The input message's key and headers, when a source could not decode it.
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// When the stage gave up on it.
    pub at: std::time::SystemTime,
    /// The input's note ([`crate::AckToken::with_note`]): for a replayed dead
    /// letter, its earlier failures.
    pub note: Option<std::sync::Arc<str>>,
}

/// The set of event kinds a stage accepts or emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kinds {
    /// Anything (a generic sink such as stdout).
    Any,
    /// Exactly these kinds.
    Only(Vec<&'static str>),
}

impl Kinds {
    pub fn only(kinds: &[&'static str]) -> Self {
        Kinds::Only(kinds.to_vec())
    }

    pub fn none() -> Self {
        Kinds::Only(Vec::new())
    }

    pub fn contains(&self, kind: &str) -> bool {
        match self {
            Kinds::Any => true,
            Kinds::Only(kinds) => kinds.contains(&kind),
        }
    }

    /// Every kind in either set.
    pub fn union(&self, other: &Kinds) -> Kinds {
        match (self, other) {
            (Kinds::Any, _) | (_, Kinds::Any) => Kinds::Any,
            (Kinds::Only(a), Kinds::Only(b)) => {
                let mut kinds = a.clone();
                kinds.extend(b.iter().filter(|k| !a.contains(k)));
                Kinds::Only(kinds)
            }
        }
    }

    /// The kinds in both sets.
    pub fn intersection(&self, other: &Kinds) -> Kinds {
        match (self, other) {
            (Kinds::Any, x) | (x, Kinds::Any) => x.clone(),
            (Kinds::Only(a), Kinds::Only(_)) => Kinds::Only(a.iter().copied().filter(|k| other.contains(k)).collect()),
        }
    }

    /// The kinds of `self` that `accepted` does not take (empty when every one fits).
    pub fn not_accepted_by(&self, accepted: &Kinds) -> Option<Vec<&'static str>> {
        match (self, accepted) {
            (_, Kinds::Any) => Some(Vec::new()),
            (Kinds::Any, Kinds::Only(_)) => None,
            (Kinds::Only(emitted), Kinds::Only(_)) => {
                Some(emitted.iter().copied().filter(|k| !accepted.contains(k)).collect())
            }
        }
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kinds::Any => f.write_str("any kind"),
            Kinds::Only(kinds) if kinds.is_empty() => f.write_str("nothing"),
            Kinds::Only(kinds) => f.write_str(&kinds.join(", ")),
        }
    }
}

/// An event in flight: the payload and the acknowledgement token of the
/// source input it came from.
#[derive(Clone, Debug)]
pub struct Envelope<E> {
    pub event: E,
    pub ack: AckToken,
    /// Where a source read the event, when it reads from a replayable log
    /// (Kafka). Stateful stages use it to know which inputs their restored
    /// state already covers; derived events carry `None`.
    pub origin: Option<Origin>,
    /// When the input this event came from entered the first worker (see [`IngestTime`]).
    pub ingested: IngestTime,
}

impl<E> Envelope<E> {
    pub fn new(event: E, ack: AckToken) -> Self {
        Self {
            event,
            ack,
            origin: None,
            ingested: IngestTime::UNKNOWN,
        }
    }

    /// An event derived from this one: the same ack token and ingest time.
    pub fn derive(&self, event: E) -> Self {
        Self {
            event,
            ack: self.ack.clone(),
            origin: None,
            ingested: self.ingested,
        }
    }

    pub fn with_ingested(mut self, ingested: IngestTime) -> Self {
        self.ingested = ingested;
        self
    }

    /// An event nobody waits for (synthetic data, tests).
    pub fn unacked(event: E) -> Self {
        Self::new(event, AckToken::none())
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }
}

/// When an event's input entered the pipeline's first worker, in microseconds
/// since the Unix epoch (0: not known). A source's output stamps it (one clock
/// read per batch) unless the source read it with the event (a Kafka message's
/// ingest-time header or timestamp), and derived events inherit it, so at any
/// stage `now − ingested` is the time the worker set has spent on the event
/// so far — a processing latency that means something for a replay of 1999
/// too, unlike the event's own timestamp. Each stage's input exports it as
/// [`crate::metrics::EVENT_AGE_SECONDS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngestTime(u64);

impl IngestTime {
    pub const UNKNOWN: IngestTime = IngestTime(0);

    pub fn now() -> Self {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(Self::UNKNOWN, |d| IngestTime(d.as_micros() as u64))
    }

    pub fn from_micros(micros: u64) -> Self {
        IngestTime(micros)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }

    pub fn is_known(self) -> bool {
        self.0 != 0
    }

    /// `now − self`; `None` when unknown, or later than `now` (another machine's clock).
    pub fn age_at(self, now: IngestTime) -> Option<std::time::Duration> {
        (self.is_known() && now.0 >= self.0).then(|| std::time::Duration::from_micros(now.0 - self.0))
    }
}

/// A position in a partitioned log: the input an event was read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The event's place among those of its message: 0 for a message holding
    /// one event, 0, 1, … for a batch (`kafka::Framing::Partition`).
    pub index: u32,
    /// Bumped each time the reading worker is (re)assigned the partition: a
    /// new epoch means another worker may have owned the partition meanwhile.
    pub epoch: u64,
}
