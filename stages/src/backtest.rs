//! `fxflow backtest`: alert rules tried on history before they go live.
//!
//! The rules run in the same [`RuleBook`] the `Alert` stage runs, over samples in event
//! time, so a backtest fires exactly what the live pipeline fired over the same data:
//! - from the ECB file, each day's crosses come from the `Replay` source's parser and the
//!   `CrossRate` stage's arithmetic ([`EcbFile`], [`CrossRates`]), as `local.ron` computes them;
//! - from a pipeline's store, the stored rates of the rules' pairs are streamed in time order
//!   from one query ([`HistoryStore::rate_stream`]).
//!
//! Every firing comes with the sample that fired it, the previous sample (or the reference
//! a `Moving…` condition compared with) and the condition's text: why it fired.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

use crate::fx::{AlertFired, AlertRule, Currency, FxEvent, Pair, Price};
use crate::sources::replay::EcbFile;
use crate::store::HistoryStore;
use crate::transforms::alert::rules::{validate, RuleBook};
use crate::transforms::cross_rate::{CrossRates, DEFAULT_PARALLEL_ABOVE};

/// One firing of a backtest, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub rule_id: String,
    pub pair: String,
    pub ts: String,
    /// The price that fired (for `OnBarClose`, the bar's close; `ts` is the bar's end).
    pub value: String,
    /// The sample before, or the reference a `Moving…`/`PctChange` condition compared with.
    pub previous: Option<String>,
    /// Why: the rule's condition as text.
    pub condition: String,
    pub source: String,
}

impl From<&AlertFired> for Firing {
    fn from(f: &AlertFired) -> Self {
        Firing {
            rule_id: f.rule_id.to_string(),
            pair: f.pair.to_string(),
            ts: f.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            value: f.value.to_string(),
            previous: f.previous.map(|p| p.to_string()),
            condition: f.condition.to_string(),
            source: f.source.as_str().to_owned(),
        }
    }
}

/// What a run went through.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub samples: u64,
    pub firings: u64,
}

/// Read a rules file: a RON list of rules written as in an `Alert` stage's `rules:`. Every
/// problem comes back, each as `FILE:LINE:COL: message`.
pub fn load_rules(path: &Path) -> Result<Vec<AlertRule>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let at = |offset: usize| {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
        format!("{}:{line}:{column}", path.display())
    };
    let node = fxflow_engine::ron::value::parse(&text).map_err(|e| {
        let hint = e.hint.map(|h| format!(" (hint: {h})")).unwrap_or_default();
        vec![format!("{}: {}{hint}", at(e.span.start), e.message)]
    })?;
    let rules: Vec<AlertRule> = fxflow_engine::ron::de::from_node(&node).map_err(|e| {
        vec![format!(
            "{}: {} (hint: the file is a list of rules, `[(id: \"a\", pair: \"EUR/USD\", condition: Above(1.1)), ...]`)",
            at(e.span.map_or(0, |s| s.start)),
            e.message
        )]
    })?;
    // Where rule `i`'s `field` was written (the rule itself when the field is not).
    let place = |i: usize, field: &str| {
        let fxflow_engine::ron::value::Value::List(items) = &node.value else {
            return path.display().to_string();
        };
        let Some(item) = items.get(i) else {
            return path.display().to_string();
        };
        let span = match &item.value {
            fxflow_engine::ron::value::Value::Struct { fields, .. } => fields
                .iter()
                .find(|(name, _)| name.text == field)
                .map_or(item.span, |(_, value)| value.span),
            _ => item.span,
        };
        at(span.start)
    };
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, rule) in rules.iter().enumerate() {
        if !ids.insert(rule.id.as_str()) {
            problems.push(format!("{}: rule id `{}` is used twice", place(i, "id"), rule.id));
        }
        if let Err(e) = validate(rule) {
            let field = if e.contains("rearm") || e.contains("bar must") {
                "trigger"
            } else {
                "condition"
            };
            problems.push(format!("{}: rule `{}`: {e}", place(i, field), rule.id));
        }
    }
    if rules.is_empty() {
        problems.push(format!("{}: no rules", path.display()));
    }
    match problems.is_empty() {
        true => Ok(rules),
        false => Err(problems),
    }
}

fn book_of(rules: &[AlertRule]) -> Result<RuleBook, String> {
    let mut book = RuleBook::new();
    for rule in rules {
        book.add(rule).map_err(|e| e.to_string())?;
    }
    Ok(book)
}

/// Shows how far a long run is, on a terminal only (standard error), at most ten times a second.
struct Progress {
    on: bool,
    started: Instant,
    last: Instant,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Progress {
    fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        let now = Instant::now();
        Progress {
            on: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            from,
            to,
        }
    }

    fn at(&mut self, ts: DateTime<Utc>) {
        if !self.on || self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        if self.started.elapsed() < Duration::from_millis(500) {
            return;
        }
        let span = (self.to - self.from).num_seconds().max(1) as f64;
        let done = ((ts - self.from).num_seconds() as f64 / span).clamp(0.0, 1.0);
        let width = 30;
        let filled = (done * width as f64) as usize;
        eprint!(
            "\r[{}{}] {:>3.0}% {}",
            "#".repeat(filled),
            " ".repeat(width - filled),
            done * 100.0,
            ts.format("%Y-%m-%d")
        );
    }

    fn done(&self) {
        if self.on && self.started.elapsed() >= Duration::from_millis(500) {
            eprint!("\r{}\r", " ".repeat(50));
        }
    }
}

/// Run `rules` over the ECB file's days in `[from, to]` (dates inclusive, either open),
/// passing each firing to `out`.
pub fn over_ecb_file(
    rules: &[AlertRule],
    csv: &Path,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    mut out: impl FnMut(&AlertFired),
) -> Result<Summary, String> {
    let mut book = book_of(rules)?;
    let pairs: BTreeSet<Pair> = rules.iter().map(|r| r.pair).collect();
    let mut currencies: Vec<Currency> = pairs.iter().flat_map(|p| [p.base, p.quote]).collect();
    currencies.push(Currency::EUR);
    currencies.sort();
    currencies.dedup();
    let text = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let file = EcbFile::new(text, &currencies, from, to, "ecb").map_err(|e| format!("{}: {e}", csv.display()))?;
    let crosses = CrossRates::new(Some(currencies), DEFAULT_PARALLEL_ABOVE);
    let day = |d: Option<NaiveDate>, default: DateTime<Utc>| {
        d.and_then(|d| d.and_hms_opt(0, 0, 0)).map_or(default, |t| t.and_utc())
    };
    let mut progress = Progress::new(
        day(from, "1999-01-04T00:00:00Z".parse().expect("a date")),
        day(to, Utc::now()),
    );
    let mut summary = Summary::default();
    for snapshot in file.days() {
        // A row the parser refuses is a dead letter for `Replay` too: the day is skipped.
        let Ok(snapshot) = snapshot else { continue };
        progress.at(snapshot.ts);
        let (rates, _) = crosses.compute(&snapshot);
        for cross in rates.into_iter().filter(|c| pairs.contains(&c.pair)) {
            let Some(sample) = FxEvent::CrossRate(cross).price() else {
                continue;
            };
            summary.samples += 1;
            for fired in book.on_sample(sample) {
                summary.firings += 1;
                out(&fired);
            }
        }
    }
    progress.done();
    Ok(summary)
}

/// Why a run over a store stopped short.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// More samples than the run's budget.
    TooManySamples,
    /// The store failed (or a rule did not load).
    Failed(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::TooManySamples => f.write_str("more samples than the budget"),
            Stopped::Failed(e) => f.write_str(e),
        }
    }
}

/// Run `rules` over the rates stored in `[from, to)` (of one `source` when given), in time
/// order, passing each firing to `out`; at most `budget` samples.
pub async fn over_store(
    rules: &[AlertRule],
    store: Arc<dyn HistoryStore>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    only_source: Option<&str>,
    budget: u64,
    mut out: impl FnMut(&AlertFired),
) -> Result<Summary, Stopped> {
    use futures_util::StreamExt as _;
    let mut book = book_of(rules).map_err(Stopped::Failed)?;
    let pairs: Vec<String> = rules
        .iter()
        .map(|r| r.pair)
        .collect::<BTreeSet<Pair>>()
        .iter()
        .map(Pair::to_string)
        .collect();
    // Reading (the driver decoding rows) and judging each take a core: the rows are read on
    // a runtime worker, in batches, while this task runs the rules.
    let (batches, mut arriving) = tokio::sync::mpsc::channel::<Result<Vec<Price>, String>>(8);
    let only_source = only_source.map(str::to_owned);
    let reader = tokio::spawn(async move {
        let mut rates = store.rate_stream(&pairs, from, to, only_source.as_deref());
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(rate) = rates.next().await {
            match rate {
                Ok(price) => batch.push(price),
                Err(e) => {
                    let _ = batches.send(Err(format!("reading the store: {}", e.message))).await;
                    return;
                }
            }
            if batch.len() == BATCH && batches.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = batches.send(Ok(batch)).await;
        }
    });
    let mut progress = Progress::new(from, to);
    let mut summary = Summary::default();
    while let Some(batch) = arriving.recv().await {
        let batch = batch.map_err(Stopped::Failed)?;
        if summary.samples + batch.len() as u64 > budget {
            reader.abort();
            return Err(Stopped::TooManySamples);
        }
        if let Some(last) = batch.last() {
            progress.at(last.ts);
        }
        for price in batch {
            summary.samples += 1;
            for fired in book.on_sample(price) {
                summary.firings += 1;
                out(&fired);
            }
        }
    }
    reader
        .await
        .map_err(|e| Stopped::Failed(format!("the reader stopped: {e}")))?;
    progress.done();
    Ok(summary)
}

/// Samples per batch from the store's reader to the rules.
const BATCH: usize = 4096;

/// The firings as an aligned table, with a header.
pub fn table(firings: &[Firing]) -> String {
    let header = ["TIME", "RULE", "PAIR", "VALUE", "PREVIOUS", "CONDITION", "SOURCE"];
    let rows: Vec<[String; 7]> = firings
        .iter()
        .map(|f| {
            [
                f.ts.clone(),
                f.rule_id.clone(),
                f.pair.clone(),
                f.value.clone(),
                f.previous.clone().unwrap_or_else(|| "-".into()),
                f.condition.clone(),
                f.source.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut text = line(header.to_vec());
    for row in &rows {
        text += &line(row.iter().map(String::as_str).collect());
    }
    text
}
