//! `fxflow dlq replay`: dead letters fed back to the stage that rejected them.
//!
//! A letter goes back to its own stage, not to the topic its input came from: an
//! old rate put back on `fx.rates` would reach every consumer group again (a newer
//! price in Redis overwritten, alerts fired twice). So the command runs, in its own
//! process, the part of the letter's pipeline that starts at that stage: the stage
//! and every transform and sink downstream of it, fed by a source made of the
//! letters. The pipeline's own sources do not run; a rejecting Kafka source is
//! replaced by the letters' payloads, decoded as that source decodes them.
//!
//! Each replayed input's ack token carries a note with the letter's failures, so
//! one that fails again becomes a new dead letter listing every reason
//! ([`crate::fx::DeadLetterRecord::previous`]) instead of going round in a loop.
//! A letter counts as replayed once everything derived from it is finalized;
//! that is recorded beside the letters (a `.replayed` file next to a JSON-lines
//! file, a `<topic>.replayed` topic next to a topic), so an interrupted replay
//! resumes where it stopped and a second replay skips what the first did.
//!
//! Stages that keep state in a running worker (a `state:` topic) are refused: a
//! second copy of that state here would fork it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use fxflow_engine::pipeline_file::{InputRef, StageSpec};
use fxflow_engine::{
    async_trait, AckStatus, AckToken, BuildContext, Envelope, Event, Failure, IngestTime, Kinds, PipelineSpec, Shape,
    Sink, SinkError, Source, SourceContext, Stage, StageConfig, StageError, DEFAULT_OUTPUT, ERROR_OUTPUT,
};
use tokio::sync::mpsc;

use super::Letters;
use crate::fx::{DeadLetterRecord, FxEvent};

/// The stage kind whose dead letters hold bytes this command can decode again.
const KAFKA_SOURCE: &str = "KafkaSource";

/// What a replay did.
#[derive(Debug, Default)]
pub struct Report {
    /// Letters fed back, by the stage they went to.
    pub replayed: BTreeMap<String, usize>,
    /// Replayed letters that failed again: id, the new reason and error.
    pub failed_again: Vec<(String, String, String)>,
    /// Replayed letters whose input did not finish (a sink gave up with no
    /// error output): not recorded, so the next replay tries them again.
    pub unfinished: Vec<String>,
    /// Skipped: replayed before (the record beside the letters).
    pub done_before: usize,
    /// Skipped: letters of stages this pipeline does not have.
    pub other_pipelines: usize,
    /// Skipped, with why: letters nothing can be fed from.
    pub not_replayable: Vec<(String, String)>,
}

/// One letter, ready to feed: the events to send, or the bytes that still do not decode.
struct Item {
    id: String,
    note: String,
    events: Result<Vec<FxEvent>, Undecodable>,
}

struct Undecodable {
    raw: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    error: String,
}

/// Feed `letters` back into `spec`'s stages and wait until every one is finalized.
/// `again` replays letters the record says were replayed already; `dry_run` only
/// reports what would be replayed.
pub async fn replay(
    mut spec: PipelineSpec<FxEvent>,
    from: &Letters,
    letters: Vec<(String, DeadLetterRecord)>,
    again: bool,
    dry_run: bool,
) -> Result<Report, String> {
    let mut report = Report::default();
    let mut record = Record::open(from).await?;
    let mut by_stage: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for (id, letter) in letters {
        let Some(stage) = spec.stage(&letter.stage) else {
            report.other_pipelines += 1;
            continue;
        };
        if !again && record.done.contains(&id) {
            report.done_before += 1;
            continue;
        }
        match item(stage, &id, &letter) {
            Ok(item) => by_stage.entry(letter.stage.clone()).or_default().push(item),
            Err(why) => report.not_replayable.push((id, why)),
        }
    }
    for (stage, items) in &by_stage {
        report.replayed.insert(stage.clone(), items.len());
    }
    if dry_run || by_stage.is_empty() {
        return Ok(report);
    }

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let failed_again = Arc::new(Mutex::new(Vec::new()));
    narrow(&mut spec, by_stage, done_tx, failed_again.clone())?;
    let mut pipeline = fxflow_engine::start(spec).await.map_err(|e| e.to_string())?;
    // Record each letter as its input finalizes, so an interruption loses nothing done.
    let mut outcome = Ok(());
    loop {
        tokio::select! {
            finished = pipeline.next_finished() => match finished {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    outcome = Err(e.to_string());
                    pipeline.shutdown();
                }
                None => break,
            },
            Some((id, status)) = done_rx.recv() => record.note(&id, status, &mut report)?,
        }
    }
    while let Ok((id, status)) = done_rx.try_recv() {
        record.note(&id, status, &mut report)?;
    }
    record.finish()?;
    report.failed_again = std::mem::take(&mut *failed_again.lock().unwrap_or_else(|p| p.into_inner()));
    outcome.map(|()| report)
}

/// What to feed for one letter into `stage`, or why nothing can be.
fn item(stage: &StageSpec<FxEvent>, id: &str, letter: &DeadLetterRecord) -> Result<Item, String> {
    let note = letter.replay_note(id);
    if let Some(event) = &letter.event {
        return Ok(Item {
            id: id.to_owned(),
            note,
            events: Ok(vec![(**event).clone()]),
        });
    }
    if stage.shape() != Shape::Source {
        return Err(format!("stage `{}` kept no event to feed back", stage.name));
    }
    if stage.kind != KAFKA_SOURCE {
        return Err(format!(
            "stage `{}` is a {} source: its input is read again from where it came, not from a letter",
            stage.name, stage.kind
        ));
    }
    let Some(payload) = &letter.payload else {
        return Err(format!("the letter keeps no payload for `{}` to decode", stage.name));
    };
    let bytes = |what: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|e| format!("the letter's {what} is not base64: {e}"))
    };
    let raw = bytes("payload", payload)?;
    let events = match fxflow_engine::kafka::decode_all::<FxEvent>(&raw) {
        Ok(events) => Ok(events),
        Err(e) => Err(Undecodable {
            key: letter.key.as_deref().map(|k| bytes("key", k)).transpose()?,
            headers: letter
                .headers
                .iter()
                .map(|(name, value)| Ok((name.clone(), bytes("header", value)?)))
                .collect::<Result<_, String>>()?,
            raw,
            error: format!("replayed {id}: {e}"),
        }),
    };
    Ok(Item {
        id: id.to_owned(),
        note,
        events,
    })
}

/// Cut `spec` down to the stages the letters go to and what runs downstream of
/// them, fed by the letters.
fn narrow(
    spec: &mut PipelineSpec<FxEvent>,
    by_stage: BTreeMap<String, Vec<Item>>,
    done: mpsc::UnboundedSender<(String, AckStatus)>,
    failed_again: Arc<Mutex<Vec<(String, String, String)>>>,
) -> Result<(), String> {
    // The targets, then every non-source stage reading one of the kept stages.
    let mut kept: BTreeSet<String> = by_stage.keys().cloned().collect();
    loop {
        let before = kept.len();
        for stage in &spec.stages {
            if stage.shape() != Shape::Source && stage.inputs.iter().any(|i| kept.contains(&i.stage)) {
                kept.insert(stage.name.clone());
            }
        }
        if kept.len() == before {
            break;
        }
    }
    if let Some(stateful) = spec
        .stages
        .iter()
        .find(|s| kept.contains(&s.name) && s.config.offline().is_some())
    {
        return Err(format!(
            "stage `{}` keeps its state in a running worker (`state:`), and the replayed letters would reach it: \
             a copy of that state here would fork it. Replay letters of stages upstream of it once it has no \
             such state, or send their events through the worker",
            stateful.name
        ));
    }
    let names: BTreeSet<String> = spec.stages.iter().map(|s| s.name.clone()).collect();
    let feed_name = |target: &str| {
        let mut name = format!("dlq-replay:{target}");
        while names.contains(&name) {
            name.push('_');
        }
        name
    };
    let mut by_stage = by_stage;
    let mut stages = Vec::new();
    for mut stage in std::mem::take(&mut spec.stages) {
        if !kept.contains(&stage.name) {
            continue;
        }
        let items = by_stage.remove(&stage.name);
        if stage.shape() == Shape::Source {
            // A rejecting source: the letters take its place, under its name.
            let emits = stage.config.emits();
            stage.config = Box::new(Feed::new(items.unwrap_or_default(), emits, done.clone()));
            stage.kind = "dead letters".into();
            stages.push(stage);
            continue;
        }
        stage.inputs.retain(|i| kept.contains(&i.stage));
        if let Some(items) = items {
            let name = feed_name(&stage.name);
            let emits = Kinds::Only(kinds(&items));
            stage.inputs.push(InputRef::new(&name, DEFAULT_OUTPUT));
            stages.push(StageSpec::new(
                &name,
                "dead letters",
                Vec::new(),
                Box::new(Feed::new(items, emits, done.clone())),
            ));
        }
        stages.push(stage);
    }
    // Watch every error output that already goes somewhere, to say which letters failed again.
    let watched: Vec<InputRef> = stages
        .iter()
        .flat_map(|s| s.inputs.iter())
        .filter(|i| i.output == ERROR_OUTPUT)
        .map(|i| i.stage.clone())
        .collect::<BTreeSet<_>>()
        .iter()
        .map(|stage| InputRef::new(stage, ERROR_OUTPUT))
        .collect();
    if !watched.is_empty() {
        let mut name = "dlq-replay:failed-again".to_owned();
        while stages.iter().any(|s| s.name == name) {
            name.push('_');
        }
        stages.push(StageSpec::new(
            &name,
            "dead letters",
            watched,
            Box::new(FailedAgain(failed_again)),
        ));
    }
    let used: BTreeSet<String> = stages
        .iter()
        .flat_map(|s| s.config.resources())
        .map(|r| r.name)
        .collect();
    spec.resources.retain(|r| used.contains(&r.name));
    spec.stages = stages;
    // The worker may be running beside us: its metrics port is its own.
    spec.telemetry = None;
    Ok(())
}

fn kinds(items: &[Item]) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = items
        .iter()
        .filter_map(|i| i.events.as_ref().ok())
        .flatten()
        .map(Event::kind)
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// The letters as a source: each letter one input, with its own ack token and note.
struct Feed {
    items: Mutex<Vec<Item>>,
    emits: Kinds,
    done: mpsc::UnboundedSender<(String, AckStatus)>,
}

impl Feed {
    fn new(items: Vec<Item>, emits: Kinds, done: mpsc::UnboundedSender<(String, AckStatus)>) -> Self {
        Feed {
            items: Mutex::new(items),
            emits,
            done,
        }
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dead letters")
    }
}

#[async_trait]
impl StageConfig<FxEvent> for Feed {
    fn shape(&self) -> Shape {
        Shape::Source
    }
    fn emits(&self) -> Kinds {
        self.emits.clone()
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let items = std::mem::take(&mut *self.items.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Stage::Source(Box::new(FeedSource {
            items,
            done: self.done.clone(),
        })))
    }
}

struct FeedSource {
    items: Vec<Item>,
    done: mpsc::UnboundedSender<(String, AckStatus)>,
}

/// Letters per batch sent downstream.
const BATCH: usize = 256;

#[async_trait]
impl Source<FxEvent> for FeedSource {
    async fn run(self: Box<Self>, mut cx: SourceContext<FxEvent>) -> Result<(), StageError> {
        let mut items = self.items.into_iter().peekable();
        while items.peek().is_some() {
            let mut batch = Vec::new();
            let mut failures = Vec::new();
            for item in items.by_ref().take(BATCH) {
                let done = self.done.clone();
                let id = item.id.clone();
                let token = AckToken::with_callback(move |status| {
                    let _ = done.send((id, status));
                })
                .with_note(item.note);
                match item.events {
                    Ok(events) => batch.extend(events.into_iter().map(|e| Envelope::new(e, token.clone()))),
                    Err(bad) => failures.push(Failure {
                        event: None,
                        raw: Some(bad.raw),
                        origin: None,
                        key: bad.key,
                        headers: bad.headers,
                        reason: "decode_failed",
                        error: bad.error,
                        ack: token,
                        ingested: IngestTime::UNKNOWN,
                    }),
                }
            }
            cx.outputs.dead_letter(failures, AckStatus::Rejected).await?;
            cx.outputs.send(batch).await?;
        }
        Ok(())
    }
}

/// Takes note of the replayed letters that failed again (their copies go on to
/// the pipeline's own dead-letter sinks).
#[derive(Debug)]
struct FailedAgain(Arc<Mutex<Vec<(String, String, String)>>>);

#[async_trait]
impl StageConfig<FxEvent> for FailedAgain {
    fn shape(&self) -> Shape {
        Shape::Sink
    }
    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        Ok(Stage::Sink(Box::new(FailedAgainSink(self.0.clone()))))
    }
}

struct FailedAgainSink(Arc<Mutex<Vec<(String, String, String)>>>);

#[async_trait]
impl Sink<FxEvent> for FailedAgainSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for envelope in batch {
            if let FxEvent::DeadLetter(letter) = &envelope.event {
                if let Some(earlier) = letter.previous.last() {
                    seen.push((earlier.letter.clone(), letter.reason.clone(), letter.error.clone()));
                }
            }
        }
        Ok(())
    }
}

/// Which letters were replayed: a JSON-lines file beside a letters file, a
/// topic beside a letters topic (keyed by letter id).
struct Record {
    done: BTreeSet<String>,
    to: RecordTo,
}

enum RecordTo {
    File(std::fs::File, std::path::PathBuf),
    Topic(rdkafka::producer::BaseProducer, String),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Replayed {
    letter: String,
    at: chrono::DateTime<chrono::Utc>,
}

impl Record {
    async fn open(from: &Letters) -> Result<Self, String> {
        match from {
            Letters::File(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".replayed");
                let path = std::path::PathBuf::from(name);
                let done = match std::fs::read_to_string(&path) {
                    Ok(text) => text
                        .lines()
                        .filter_map(|line| serde_json::from_str::<Replayed>(line).ok())
                        .map(|r| r.letter)
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(Record {
                    done,
                    to: RecordTo::File(file, path),
                })
            }
            Letters::Topic { brokers, topic } => {
                let record = format!("{topic}.replayed");
                super::ensure_topic(brokers, &record).await?;
                let done = super::read_raw(brokers, &record)?
                    .into_iter()
                    .filter_map(|m| m.key.and_then(|k| String::from_utf8(k).ok()))
                    .collect();
                let producer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", brokers)
                    .set("enable.idempotence", "true")
                    .set("linger.ms", "5")
                    .create()
                    .map_err(|e| format!("kafka client: {e}"))?;
                Ok(Record {
                    done,
                    to: RecordTo::Topic(producer, record),
                })
            }
        }
    }

    /// One letter's input finalized: count it, and record it unless it is unfinished.
    fn note(&mut self, id: &str, status: AckStatus, report: &mut Report) -> Result<(), String> {
        if !status.is_finalized_ok() {
            report.unfinished.push(id.to_owned());
            return Ok(());
        }
        let line = serde_json::to_string(&Replayed {
            letter: id.to_owned(),
            at: chrono::Utc::now(),
        })
        .map_err(|e| e.to_string())?;
        match &mut self.to {
            RecordTo::File(file, path) => {
                use std::io::Write;
                writeln!(file, "{line}").map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            RecordTo::Topic(producer, topic) => {
                use rdkafka::producer::BaseRecord;
                let mut record = BaseRecord::to(topic.as_str()).key(id).payload(&line);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((
                            rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                            back,
                        )) => {
                            producer.poll(std::time::Duration::from_millis(10));
                            record = back;
                        }
                        Err((e, _)) => return Err(format!("cannot record the replay on `{topic}`: {e}")),
                    }
                }
                producer.poll(std::time::Duration::ZERO);
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.to {
            RecordTo::File(file, path) => file
                .sync_all()
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
            RecordTo::Topic(producer, topic) => {
                use rdkafka::producer::Producer;
                producer
                    .flush(std::time::Duration::from_secs(30))
                    .map_err(|e| format!("cannot record the replay on `{topic}`: {e}"))
            }
        }
    }
}
