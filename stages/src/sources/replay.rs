//! `Replay`: the ECB reference-rate history (`eurofxref-hist.csv`) as quote snapshots.
//!
//! One snapshot per business day, base EUR, mid-only quotes (bid = ask), oldest
//! day first. The file is read and parsed when the stage is built, so a
//! missing or unreadable file stops the pipeline at start; a malformed row is
//! sent to the error output with its text and the replay goes on.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, Failure, Kinds, Shape, Source, SourceContext, Stage,
    StageConfig, StageError,
};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::fx::{kind, Currency, FxEvent, Pair, Quote, QuoteSnapshot, SourceName};

/// Replays the ECB euro reference-rate history (eurofxref-hist.csv) as one
/// quote snapshot per day, oldest first (or, with `emit: Quotes`, each day's
/// EUR quotes one by one: what a store of reference rates keeps).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Path of the CSV file (relative to the working directory).
    #[serde(default = "default_path")]
    #[schemars(with = "String")]
    pub path: PathBuf,
    /// First day to replay (inclusive), `"YYYY-MM-DD"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub from: Option<NaiveDate>,
    /// Last day to replay (inclusive), `"YYYY-MM-DD"`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub to: Option<NaiveDate>,
    /// Currencies to include besides EUR (default: the majors GBP AUD NZD USD CAD CHF JPY).
    #[serde(default)]
    pub currencies: Option<Vec<Currency>>,
    /// How fast to replay.
    #[serde(default)]
    pub speed: ReplaySpeed,
    /// The `source` name stamped on quotes.
    #[serde(default = "default_source")]
    pub source: String,
    /// `Snapshots` (default): one `QuoteSnapshot` a day, for cross rates. `Quotes`: the
    /// day's `Quote`s (EUR/X) one by one, to store the reference rates themselves
    /// (`pipelines/backfill.ron`: every currency since 1999 for the Frankfurter routes).
    #[serde(default)]
    pub emit: ReplayEmit,
    /// The pipeline's other sources start only once everything this replay sent is
    /// stored (`local.ron`'s reference rates: loaded before the live demo, so the two do
    /// not compete for the cores and the database).
    #[serde(default)]
    pub bootstrap: bool,
}

/// What a replay sends for each day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum ReplayEmit {
    /// One `QuoteSnapshot` per day.
    #[default]
    Snapshots,
    /// Each of the day's `Quote`s.
    Quotes,
}

/// Replay pace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum ReplaySpeed {
    /// No waiting: as fast as the pipeline takes it.
    #[default]
    AsFastAsPossible,
    /// One day of history every interval, e.g. `PerDay("100ms")`.
    PerDay(
        #[serde(with = "fxflow_engine::duration")]
        #[schemars(schema_with = "fxflow_engine::duration::schema")]
        Duration,
    ),
}

fn default_path() -> PathBuf {
    PathBuf::from("examples/data/ecb-eurofxref-hist.csv")
}

fn default_source() -> String {
    "ecb".into()
}

#[async_trait]
impl StageConfig<FxEvent> for ReplayConfig {
    fn shape(&self) -> Shape {
        Shape::Source
    }

    fn emits(&self) -> Kinds {
        match self.emit {
            ReplayEmit::Snapshots => Kinds::only(&[kind::QUOTE_SNAPSHOT]),
            ReplayEmit::Quotes => Kinds::only(&[kind::QUOTE]),
        }
    }

    fn bootstrap(&self) -> bool {
        self.bootstrap
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                problems.push(ConfigProblem::field(
                    "to",
                    format!("`to` ({to}) is before `from` ({from})"),
                ));
            }
        }
        if self.speed == ReplaySpeed::PerDay(Duration::ZERO) {
            problems.push(
                ConfigProblem::field("speed", "`PerDay` needs an interval longer than zero")
                    .with_hint("use `speed: AsFastAsPossible` for no waiting"),
            );
        }
        if self.currencies.as_ref().is_some_and(|c| c.is_empty()) {
            problems.push(ConfigProblem::field("currencies", "at least one currency is needed"));
        }
        problems
    }

    async fn build(&self, _cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| StageError::new(format!("cannot read {}: {e}", self.path.display())))?;
        let currencies = self.currencies.clone().unwrap_or_else(crate::fx::currency::majors);
        let file = EcbFile::new(text, &currencies, self.from, self.to, &self.source)
            .map_err(|e| StageError::new(format!("{}: {e}", self.path.display())))?;
        Ok(Stage::Source(Box::new(Replay {
            file,
            speed: self.speed,
            emit: self.emit,
            bootstrap: self.bootstrap,
        })))
    }
}

/// A loaded eurofxref-hist.csv whose header has been checked. Rows are parsed
/// as they are replayed, so parsing overlaps with the stages downstream.
pub struct EcbFile {
    text: String,
    /// (column index, pair EUR/X) for every wanted currency other than EUR.
    wanted: Vec<(usize, Pair)>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    source: SourceName,
}

/// A row that could not be read: (line number, text, error).
pub type BadRow = (usize, String, String);

impl EcbFile {
    /// Check the header and find the wanted currencies' columns.
    pub fn new(
        text: String,
        currencies: &[Currency],
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        source: &str,
    ) -> Result<EcbFile, String> {
        let header = text.lines().next().ok_or("the file is empty")?;
        let columns: Vec<&str> = header.trim_end_matches(',').split(',').map(str::trim).collect();
        if columns.first().copied() != Some("Date") {
            return Err(format!("the header must start with `Date`, found `{header}`"));
        }
        let mut wanted = Vec::new();
        for currency in currencies.iter().filter(|c| **c != Currency::EUR) {
            let index = columns
                .iter()
                .position(|c| *c == currency.code())
                .ok_or_else(|| format!("no column for {currency}; the file has {}", columns[1..].join(" ")))?;
            wanted.push((index, Pair::market(Currency::EUR, *currency)));
        }
        let source = SourceName::intern(source).map_err(|e| e.to_string())?;
        Ok(EcbFile {
            text,
            wanted,
            from,
            to,
            source,
        })
    }

    /// Days in the date range, oldest first (the file is newest first), each a
    /// snapshot or the row that could not be read.
    pub fn days(&self) -> impl Iterator<Item = Result<QuoteSnapshot, BadRow>> + '_ {
        self.text
            .lines()
            .enumerate()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .filter(|(_, line)| !line.trim().is_empty())
            .filter_map(move |(number, line)| match parse_row(line, &self.wanted, self.source) {
                Ok(snapshot) => {
                    let day = snapshot.ts.date_naive();
                    let outside = self.from.is_some_and(|f| day < f) || self.to.is_some_and(|t| day > t);
                    (!outside).then_some(Ok(snapshot))
                }
                Err(e) => Some(Err((number + 1, line.to_owned(), e))),
            })
    }
}

/// Parsed history: snapshots oldest first, plus rows that could not be read.
#[derive(Debug, Default)]
pub struct History {
    pub days: Vec<QuoteSnapshot>,
    pub bad_rows: Vec<BadRow>,
}

/// Parse a whole eurofxref-hist.csv at once. `N/A` and empty cells are missing
/// quotes; EUR itself needs no column. Fails only if the header is unusable.
pub fn parse_history(
    text: &str,
    currencies: &[Currency],
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    source: &str,
) -> Result<History, String> {
    let file = EcbFile::new(text.to_owned(), currencies, from, to, source)?;
    let mut history = History::default();
    for day in file.days() {
        match day {
            Ok(snapshot) => history.days.push(snapshot),
            Err(bad) => history.bad_rows.push(bad),
        }
    }
    Ok(history)
}

fn parse_row(line: &str, wanted: &[(usize, Pair)], source: SourceName) -> Result<QuoteSnapshot, String> {
    let cells: Vec<&str> = line.split(',').collect();
    let date = parse_date(cells[0].trim()).ok_or_else(|| format!("bad date `{}`, expected YYYY-MM-DD", cells[0]))?;
    let ts: DateTime<Utc> = date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let mut quotes = Vec::with_capacity(wanted.len());
    for (index, pair) in wanted {
        let cell = cells.get(*index).copied().unwrap_or("").trim();
        if cell.is_empty() || cell == "N/A" {
            continue;
        }
        let rate: Decimal = cell.parse().map_err(|_| format!("{pair}: `{cell}` is not a number"))?;
        if rate <= Decimal::ZERO {
            return Err(format!("{pair}: rate {rate} is not positive"));
        }
        quotes.push(Quote {
            pair: *pair,
            bid: rate,
            ask: rate,
            ts,
            source,
            enrichment: None,
        });
    }
    Ok(QuoteSnapshot {
        source,
        ts,
        base: Currency::EUR,
        quotes,
    })
}

/// `YYYY-MM-DD`, without chrono's general format machinery (one call per replayed day).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)
}

struct Replay {
    file: EcbFile,
    speed: ReplaySpeed,
    emit: ReplayEmit,
    bootstrap: bool,
}

/// Snapshots per batch when replaying as fast as possible.
const BATCH: usize = 256;

fn bad_row((number, row, error): BadRow) -> Failure<FxEvent> {
    Failure {
        event: None,
        raw: Some(row.into_bytes()),
        origin: None,
        key: None,
        headers: Vec::new(),
        reason: "malformed_row",
        error: format!("line {number}: {error}"),
        ack: Default::default(),
        ingested: fxflow_engine::IngestTime::UNKNOWN,
    }
}

#[async_trait]
impl Source<FxEvent> for Replay {
    async fn run(self: Box<Self>, mut cx: SourceContext<FxEvent>) -> Result<(), StageError> {
        let Replay {
            file,
            speed,
            emit,
            bootstrap,
        } = *self;
        // A bootstrap replay tracks each batch to its end, and says it caught up once all are.
        let mut pending = Vec::new();
        let mut days = file.days();
        let mut replayed = 0usize;
        let mut bad = 0usize;
        let mut tick = match speed {
            ReplaySpeed::AsFastAsPossible => None,
            ReplaySpeed::PerDay(interval) => {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(tick)
            }
        };
        let per_send = if tick.is_some() { 1 } else { BATCH };
        while !cx.shutdown.is_triggered() {
            let mut batch = Vec::with_capacity(per_send);
            let mut failures = Vec::new();
            let mut days_sent = 0;
            let token = if bootstrap {
                let (token, done) = fxflow_engine::AckToken::new();
                pending.push(done);
                token
            } else {
                fxflow_engine::AckToken::none()
            };
            for day in days.by_ref() {
                match day {
                    Ok(snapshot) if emit == ReplayEmit::Quotes => {
                        batch.extend(
                            snapshot
                                .quotes
                                .into_iter()
                                .map(|q| Envelope::unacked(FxEvent::Quote(q))),
                        );
                        days_sent += 1;
                    }
                    Ok(snapshot) => {
                        batch.push(Envelope::new(FxEvent::QuoteSnapshot(snapshot), token.clone()));
                        days_sent += 1;
                    }
                    Err(row) => failures.push(bad_row(row)),
                }
                if days_sent == per_send {
                    break;
                }
            }
            bad += failures.len();
            cx.outputs
                .dead_letter(failures, fxflow_engine::AckStatus::Rejected)
                .await?;
            if days_sent == 0 {
                break;
            }
            if let Some(tick) = tick.as_mut() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = cx.shutdown.wait() => break,
                }
            }
            replayed += days_sent;
            cx.outputs.send(batch).await?;
        }
        for done in pending {
            done.wait().await;
        }
        cx.startup.caught_up();
        tracing::info!(stage = %cx.labels.stage, days = replayed, bad_rows = bad, "Replay finished.");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    const SAMPLE: &str = "Date,USD,JPY,BGN,GBP,CHF,\n\
        2026-10-30,1.1172,175.68,N/A,0.8338,0.9194,\n\
        2026-10-29,1.113,175.92,N/A,0.83578,0.9222,\n\
        2026-10-28,1.1133,oops,N/A,0.83785,0.9247,\n\
        1999-01-04,1.1789,133.73,N/A,0.7111,N/A,\n";

    fn currencies(codes: &[&str]) -> Vec<Currency> {
        codes.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn parses_oldest_first_with_missing_cells_and_bad_rows() {
        let h = parse_history(
            SAMPLE,
            &currencies(&["EUR", "USD", "JPY", "GBP", "CHF"]),
            None,
            None,
            "ecb",
        )
        .unwrap();
        assert_eq!(h.days.len(), 3);
        assert_eq!(h.days[0].ts.date_naive().to_string(), "1999-01-04");
        assert_eq!(h.days[0].quotes.len(), 3, "CHF is N/A on the first day");
        let last = &h.days[2];
        assert_eq!(last.base, Currency::EUR);
        assert_eq!(last.quotes[1].pair.to_string(), "EUR/JPY");
        assert_eq!(last.quotes[1].bid, dec!(175.68));
        assert_eq!(last.quotes[1].bid, last.quotes[1].ask, "mid-only");
        assert_eq!(h.bad_rows.len(), 1);
        assert_eq!(h.bad_rows[0].0, 4);
        assert!(h.bad_rows[0].2.contains("`oops` is not a number"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2026-10-30"), NaiveDate::from_ymd_opt(2026, 10, 30));
        for bad in ["2026-13-01", "2026-02-30", "26-10-30", "2026/10/30", "2026-1-030", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn date_range_and_unknown_columns() {
        let from = NaiveDate::from_ymd_opt(2026, 10, 29);
        let h = parse_history(SAMPLE, &currencies(&["USD"]), from, None, "ecb").unwrap();
        assert_eq!(h.days.len(), 2);
        let err = parse_history(SAMPLE, &currencies(&["NZD"]), None, None, "ecb").unwrap_err();
        assert!(err.contains("no column for NZD"));
    }
}
