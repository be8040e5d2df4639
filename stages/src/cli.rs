//! The `fxflow` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use fxflow_engine::pipeline_file::{check_together, load_file, Diagnostics};
use fxflow_engine::{graph, metrics, telemetry, PipelineSpec, Readiness, Registry};

use crate::fx::FxEvent;

/// fxflow — FX rate monitoring on a small typed stream-processing engine.
///
/// Pipelines are RON files: sources, transforms and sinks joined by their
/// `inputs`. Start with `fxflow run pipelines/local.ron`.
#[derive(Debug, Parser)]
#[command(name = "fxflow", version, propagate_version = true)]
pub struct Cli {
    /// Log format on standard error (the level comes from RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    Text,
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one or more pipelines in this process until their sources end or
    /// SIGINT/SIGTERM arrives (then drain in-flight events and exit). SIGHUP
    /// applies the files' new version while running.
    Run {
        /// Pipeline files; each one runs as its own pipeline.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How long to wait for in-flight events to drain after a signal.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        grace: Duration,
        /// Re-read the files when they change and apply the new version while
        /// running (SIGHUP does the same without this flag): unchanged stages
        /// keep running, changed ones hand over without losing an event; an
        /// invalid version is reported and the running one keeps going.
        #[arg(long)]
        watch: bool,
    },
    /// Check pipeline files without connecting to anything; prints every
    /// problem as FILE:LINE:COL and exits non-zero if there is one.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the pipeline tests of the given files: a test file
    /// (`PipelineTests(...)`), or a pipeline file (its own `tests`, and
    /// `tests/<name>.ron` beside it). Sources and sinks are replaced by test
    /// doubles, so nothing outside the process is touched. Exits 0 when every
    /// case passes, 1 when one fails, 2 when a file is invalid.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `text` for people, `junit` (XML on standard output) for CI.
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
    },
    /// Print a pipeline's stages and edges as a graph.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print the reference of every stage kind and its fields (Markdown; PIPELINES.md),
    /// or with `--api` the API reference (docs/API.md), or with `--openapi` the OpenAPI document.
    Docs {
        #[arg(long, conflicts_with = "openapi")]
        api: bool,
        #[arg(long)]
        openapi: bool,
    },
    /// Apply pending database migrations of a resource declared in a pipeline file
    /// (or with `--check`, list them without applying).
    Migrate {
        /// The pipeline file that declares the resource.
        file: PathBuf,
        /// The resource's name in that file's `resources`.
        #[arg(long)]
        resource: String,
        /// Apply nothing: exit 0 when the schema is up to date, 1 listing what is pending.
        #[arg(long)]
        check: bool,
        /// With `--check`: keep checking (every 2 s, unreachable counts as not yet) until the
        /// schema is up to date or this long has passed — for a worker's init container.
        #[arg(long, value_parser = parse_duration, requires = "check")]
        wait: Option<Duration>,
    },
    /// Print the Elasticsearch index templates the `Elasticsearch` sink installs (JSON, by
    /// template name): what Kibana's dashboards may use.
    IndexTemplates {
        /// The sink's `index`.
        #[arg(long, default_value = "fx-rates")]
        index: String,
        /// The sink's `alerts_index`.
        #[arg(long, default_value = "fx-alerts")]
        alerts_index: String,
        /// The sink's `candles_index`.
        #[arg(long, default_value = "fx-candles")]
        candles_index: String,
        /// The sink's `volatility_index`.
        #[arg(long, default_value = "fx-volatility")]
        volatility_index: String,
    },
    /// Manage the Kafka topics the worker pipelines use.
    Topics {
        #[command(subcommand)]
        action: TopicsCommand,
    },
    /// Dead letters: list (filtered), show and replay them, from a JSON-lines file or a topic.
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
    /// Try alert rules on history: run them as the `Alert` stage does, in event time, over the
    /// ECB file or a pipeline's stored rates, and print every firing with the sample, the
    /// previous sample and the condition. Exits 0 (firings or none), 2 on a bad rules file.
    Backtest(BacktestArgs),
}

/// `fxflow backtest`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// A RON list of rules, written as in an `Alert` stage's `rules:`.
    rules: PathBuf,
    /// The ECB history (eurofxref-hist.csv): each day's crosses, computed as `CrossRate` does.
    #[arg(long, required_unless_present = "pipeline", conflicts_with = "pipeline")]
    csv: Option<PathBuf>,
    /// A pipeline file whose `Postgres` or `Sqlite` resource holds the history.
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// That resource's name (default: the file's only store resource).
    #[arg(long, requires = "pipeline")]
    store: Option<String>,
    /// Only stored rates of this source (default: every source, merged in time order).
    #[arg(long, requires = "pipeline")]
    source: Option<String>,
    /// The first day (`2024-01-01`) or instant (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    from: Option<DateTime<Utc>>,
    /// The last day (inclusive), or the instant the range ends before.
    #[arg(long, value_parser = parse_end)]
    to: Option<DateTime<Utc>>,
    /// `table` for people, `jsonl` (one firing per line) for programs.
    #[arg(long, value_enum, default_value_t = BacktestFormat::Table)]
    format: BacktestFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BacktestFormat {
    Table,
    Jsonl,
}

/// A day (its midnight, UTC) or an RFC 3339 instant.
fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is neither a day like 2024-01-01 nor an RFC 3339 instant"))
}

/// The end of a range: a day counts whole (the next midnight), an instant as written.
fn parse_end(text: &str) -> Result<DateTime<Utc>, String> {
    let instant = parse_instant(text)?;
    Ok(match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(_) => instant + chrono::Duration::days(1),
        Err(_) => instant,
    })
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: id, time, stage, reason, input position, error.
    List {
        #[command(flatten)]
        from: DlqSource,
        #[command(flatten)]
        filter: DlqFilter,
        /// One JSON object per line (`{"id":...,"letter":{...}}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full (pretty JSON; `raw` is its undecodable input as text).
    Show {
        #[command(flatten)]
        from: DlqSource,
        /// The letter's id as `list` prints it (`FILE:LINE` or `TOPIC[P]@OFFSET`).
        id: String,
    },
    /// Feed dead letters back to the stage of PIPELINE that rejected them: that stage
    /// and what runs downstream of it run here, the pipeline's sources do not, and no
    /// other consumer of the letters' original topics sees them again. Replayed
    /// letters are recorded beside the letters (`FILE.replayed`, topic
    /// `TOPIC.replayed`), so an interrupted replay resumes and a second one skips
    /// them; one that fails again is a new dead letter listing every reason.
    Replay {
        /// The pipeline file the letters' stages belong to (letters of other stages are skipped).
        pipeline: PathBuf,
        #[command(flatten)]
        from: DlqSource,
        #[command(flatten)]
        filter: DlqFilter,
        /// Only these letters (ids as `list` prints them); all that match the filters otherwise.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Replay letters again that were replayed before.
        #[arg(long)]
        again: bool,
        /// Say what would be replayed, and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which dead letters `fxflow dlq list` and `replay` take.
#[derive(Debug, clap::Args)]
pub struct DlqFilter {
    /// Only letters of this stage.
    #[arg(long)]
    stage: Option<String>,
    /// Only letters with this reason (`decode_failed`, `bid_above_ask`, ...).
    #[arg(long)]
    reason: Option<String>,
    /// Only letters written at or after this instant (RFC 3339).
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only letters written before this instant (RFC 3339).
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
}

impl DlqFilter {
    fn filter(&self) -> crate::dlq::Filter {
        crate::dlq::Filter {
            stage: self.stage.clone(),
            reason: self.reason.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

/// Where `fxflow dlq` reads: a file, or a topic on a broker.
#[derive(Debug, clap::Args)]
pub struct DlqSource {
    /// A JSON-lines file a `JsonlFile` dead-letter sink writes.
    #[arg(long, required_unless_present = "brokers", conflicts_with = "brokers")]
    file: Option<PathBuf>,
    /// A broker list; the letters are read from `--topic`.
    #[arg(long)]
    brokers: Option<String>,
    /// The dead-letter topic (with `--brokers`).
    #[arg(long, default_value = "fx.dlq", requires = "brokers")]
    topic: String,
}

impl DlqSource {
    fn letters(&self) -> crate::dlq::Letters {
        match (&self.file, &self.brokers) {
            (Some(file), _) => crate::dlq::Letters::File(file.clone()),
            (None, brokers) => crate::dlq::Letters::Topic {
                brokers: brokers.clone().unwrap_or_default(),
                topic: self.topic.clone(),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topics a `Kafka` resource declares (partitions and configs
    /// from its `topics`), in every file given; existing topics are left alone.
    Create {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The `Kafka` resource's name in the files' `resources`.
        #[arg(long)]
        resource: String,
    },
    /// Create nothing: exit 0 when every topic the files declare exists, 1
    /// naming the missing ones.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The `Kafka` resource's name in the files' `resources`.
        #[arg(long)]
        resource: String,
        /// Keep checking (every 2 s, an unreachable broker counts as not yet) until
        /// every topic exists or this long has passed — for a worker's init container.
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
    },
}

/// What `provision` does with a resource: bring it up to date, or only check it.
#[derive(Clone, Copy)]
enum Provision {
    Apply,
    Check { wait: Option<Duration> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    fxflow_engine::duration::parse(text)
}

impl Command {
    /// The log level when `RUST_LOG` is not set: `info`, except for `test`,
    /// whose report is the output (its pipelines' start-up lines would bury it),
    /// and `backtest`, whose one long query is no news (its errors end the run).
    pub fn log_level(&self) -> &'static str {
        match self {
            Command::Test { .. } => "warn",
            Command::Backtest(_) => "error",
            _ => "info",
        }
    }
}

/// Exit codes: 0 success, 1 a pipeline failed while running, 2 invalid pipeline files.
const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;

/// Logging on standard error at `RUST_LOG`'s level, else `default_level`
/// ([`Command::log_level`]).
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Load every file, then check them together; all problems or all specs.
fn load_all(files: &[PathBuf], registry: &Registry<FxEvent>) -> Result<Vec<PipelineSpec<FxEvent>>, Diagnostics> {
    load_files(files, registry, true)
}

/// With `together`, also the checks across files of one process (no two bind
/// one address); provisioning commands (`migrate`, `topics create`) start no
/// listener, so they skip those.
fn load_files(
    files: &[PathBuf],
    registry: &Registry<FxEvent>,
    together: bool,
) -> Result<Vec<PipelineSpec<FxEvent>>, Diagnostics> {
    let mut specs = Vec::new();
    let mut problems = Diagnostics::default();
    for file in files {
        match load_file(file, registry) {
            Ok(spec) => specs.push(spec),
            Err(d) => problems.0.extend(d.0),
        }
    }
    if together {
        problems.0.extend(check_together(&specs).0);
    }
    if problems.0.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

fn report(problems: &Diagnostics) {
    eprintln!("{problems}");
    let n = problems.0.len();
    eprintln!("{n} error{} found; nothing was started.", if n == 1 { "" } else { "s" });
}

/// Run the command with the standard stage registry.
pub fn main_with(cli: Cli) -> ExitCode {
    main_with_registry(cli, crate::registry())
}

/// Run the command with any registry: crates that add stage kinds reuse the
/// whole CLI this way (see `examples/`).
pub fn main_with_registry(cli: Cli, registry: Registry<FxEvent>) -> ExitCode {
    match cli.command {
        Command::Validate { files } => match load_all(&files, &registry) {
            Ok(specs) => {
                for spec in &specs {
                    println!(
                        "{}: ok — pipeline `{}`, {} stages",
                        spec.file,
                        spec.name,
                        spec.stages.len()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(problems) => {
                report(&problems);
                ExitCode::from(EXIT_INVALID)
            }
        },
        Command::Test { files, format } => test(&files, format, &registry),
        Command::Graph { file, format } => match load_all(std::slice::from_ref(&file), &registry) {
            Ok(specs) => {
                let spec = &specs[0];
                print!(
                    "{}",
                    match format {
                        GraphFormat::Dot => graph::to_dot(spec),
                        GraphFormat::Mermaid => graph::to_mermaid(spec),
                    }
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                report(&problems);
                ExitCode::from(EXIT_INVALID)
            }
        },
        Command::Docs { api, openapi } => {
            if api {
                print!("{}", crate::sources::api::openapi::markdown());
            } else if openapi {
                println!("{}", crate::sources::api::openapi::document_json());
            } else {
                print!("{}", fxflow_engine::docs::reference(&registry, REFERENCE_INTRO));
            }
            ExitCode::SUCCESS
        }
        Command::IndexTemplates {
            index,
            alerts_index,
            candles_index,
            volatility_index,
        } => {
            let indices = crate::sinks::elasticsearch::Indices {
                rates: index,
                alerts: alerts_index,
                candles: candles_index,
                volatility: volatility_index,
            };
            let templates: serde_json::Map<String, serde_json::Value> =
                crate::sinks::elasticsearch::index_templates(&indices)
                    .into_iter()
                    .collect();
            println!("{}", serde_json::to_string_pretty(&templates).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Command::Migrate {
            file,
            resource,
            check,
            wait,
        } => {
            let mode = if check {
                Provision::Check { wait }
            } else {
                Provision::Apply
            };
            provision(&registry, std::slice::from_ref(&file), &resource, None, mode)
        }
        Command::Topics {
            action: TopicsCommand::Create { files, resource },
        } => provision(
            &registry,
            &files,
            &resource,
            Some(fxflow_engine::kafka::RESOURCE_KIND),
            Provision::Apply,
        ),
        Command::Topics {
            action: TopicsCommand::Check { files, resource, wait },
        } => provision(
            &registry,
            &files,
            &resource,
            Some(fxflow_engine::kafka::RESOURCE_KIND),
            Provision::Check { wait },
        ),
        Command::Dlq { action } => dead_letters(action, &registry),
        Command::Backtest(args) => backtest(&registry, args),
        Command::Run { files, grace, watch } => {
            let specs = match load_all(&files, &registry) {
                Ok(specs) => specs,
                Err(problems) => {
                    report(&problems);
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            let Some(runtime) = runtime() else {
                return ExitCode::from(EXIT_FAILED);
            };
            let reload = Reload {
                files: &files,
                registry: &registry,
                watch,
            };
            match runtime.block_on(run(specs, grace, reload)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "Stopped with an error.");
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
    }
}

/// The multi-threaded runtime commands run on (`None` after saying why it cannot start).
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

/// `fxflow test`: every case of every test file found for `files`.
fn test(files: &[PathBuf], format: TestFormat, registry: &Registry<FxEvent>) -> ExitCode {
    use fxflow_engine::pipeline_test;
    let found = pipeline_test::discover(files);
    if found.is_empty() {
        for file in files {
            eprintln!(
                "{}: no tests: not a test file, no `tests` in it and no tests/{} beside it",
                file.display(),
                file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            );
        }
        return ExitCode::from(EXIT_INVALID);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_FAILED);
    };
    let mut invalid = false;
    let mut results = Vec::new();
    for path in &found {
        let outcome = pipeline_test::load(path).and_then(|file| {
            runtime
                .block_on(pipeline_test::run_file(&file, registry))
                .map(|outcomes| (file.file.clone(), outcomes))
        });
        match outcome {
            Ok(result) => {
                if format == TestFormat::Text {
                    print!("{}", pipeline_test::text(&result.0, &result.1));
                }
                results.push(result);
            }
            Err(problems) => {
                invalid = true;
                eprintln!("{problems}");
            }
        }
    }
    let cases: usize = results.iter().map(|(_, o)| o.len()).sum();
    let failed: usize = results
        .iter()
        .map(|(_, o)| o.iter().filter(|c| !c.passed()).count())
        .sum();
    match format {
        TestFormat::Junit => print!("{}", pipeline_test::junit(&results)),
        TestFormat::Text => println!(
            "{} file{}, {cases} case{}: {} passed, {failed} failed",
            results.len(),
            if results.len() == 1 { "" } else { "s" },
            if cases == 1 { "" } else { "s" },
            cases - failed
        ),
    }
    if invalid {
        ExitCode::from(EXIT_INVALID)
    } else if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether a resource has nothing pending, checking every 2 s until `wait` has passed (an
/// unreachable server counts as "not yet": it may still be starting). The error: exit code
/// and what is still pending (or why it could not be read).
async fn check_provisioned(
    config: &dyn fxflow_engine::ResourceConfig,
    wait: Option<Duration>,
) -> Result<(), (u8, String)> {
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    let mut reported = None::<tokio::time::Instant>;
    loop {
        let missing = match config.pending().await {
            Ok(None) => return Err((EXIT_INVALID, "has nothing to migrate or create".into())),
            Ok(Some(pending)) if pending.is_empty() => return Ok(()),
            Ok(Some(pending)) => format!("not up to date: {}", pending.join(", ")),
            Err(e) => format!("cannot be checked: {e}"),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err((EXIT_FAILED, missing));
        }
        if reported.is_none_or(|at| now - at >= Duration::from_secs(10)) {
            eprintln!("waiting: {missing}");
            reported = Some(now);
        }
        tokio::time::sleep(Duration::from_secs(2).min(deadline - now)).await;
    }
}

/// `fxflow dlq`.
fn dead_letters(action: DlqCommand, registry: &Registry<FxEvent>) -> ExitCode {
    let (from, filter) = match &action {
        DlqCommand::List { from, filter, .. } | DlqCommand::Replay { from, filter, .. } => (from, filter.filter()),
        DlqCommand::Show { from, .. } => (from, crate::dlq::Filter::default()),
    };
    let source = from.letters();
    let letters = match crate::dlq::read(&source) {
        Ok(letters) => letters,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match action {
        DlqCommand::List { json, .. } => {
            let letters_read = letters.len();
            let kept: Vec<_> = letters.into_iter().filter(|(_, l)| filter.keeps(l)).collect();
            if json {
                for (id, letter) in &kept {
                    println!("{}", serde_json::json!({ "id": id, "letter": letter }));
                }
            } else {
                if kept.is_empty() {
                    eprintln!("no dead letters{}", if letters_read > 0 { " match" } else { "" });
                } else {
                    print!("{}", crate::dlq::table(&kept));
                    eprintln!("{} of {letters_read} dead letters", kept.len());
                }
            }
            ExitCode::SUCCESS
        }
        DlqCommand::Show { id, .. } => match letters.iter().find(|(i, _)| *i == id) {
            Some((_, letter)) => {
                println!("{}", serde_json::to_string_pretty(letter).unwrap_or_default());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "error: no dead letter `{id}` ({} read; `fxflow dlq list` prints the ids)",
                    letters.len()
                );
                ExitCode::from(EXIT_FAILED)
            }
        },
        DlqCommand::Replay {
            pipeline,
            ids,
            again,
            dry_run,
            ..
        } => replay_letters(registry, &pipeline, &source, letters, &filter, &ids, again, dry_run),
    }
}

/// `fxflow dlq replay`.
#[allow(clippy::too_many_arguments)]
fn replay_letters(
    registry: &Registry<FxEvent>,
    pipeline: &std::path::Path,
    from: &crate::dlq::Letters,
    letters: Vec<(String, crate::fx::DeadLetterRecord)>,
    filter: &crate::dlq::Filter,
    ids: &[String],
    again: bool,
    dry_run: bool,
) -> ExitCode {
    if let Some(missing) = ids.iter().find(|id| !letters.iter().any(|(i, _)| i == *id)) {
        eprintln!(
            "error: no dead letter `{missing}` ({} read; `fxflow dlq list` prints the ids)",
            letters.len()
        );
        return ExitCode::from(EXIT_FAILED);
    }
    let chosen: Vec<_> = letters
        .into_iter()
        .filter(|(id, letter)| filter.keeps(letter) && (ids.is_empty() || ids.contains(id)))
        .collect();
    let spec = match fxflow_engine::pipeline_file::load_file(pipeline, registry) {
        Ok(spec) => spec,
        Err(problems) => {
            report(&problems);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_FAILED);
    };
    let name = spec.name.clone();
    let report = match runtime.block_on(crate::dlq::replay::replay(spec, from, chosen, again, dry_run)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let total: usize = report.replayed.values().sum();
    let stages = report
        .replayed
        .iter()
        .map(|(stage, n)| format!("{n} to `{stage}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if dry_run { "would replay" } else { "replayed" };
    if total == 0 {
        println!("nothing to replay into pipeline `{name}`");
    } else {
        println!("{verb} {total} dead letters into pipeline `{name}`: {stages}");
    }
    for (id, reason, error) in &report.failed_again {
        println!("  failed again: {id}: {reason}: {error}");
    }
    if !report.failed_again.is_empty() {
        println!(
            "{} failed again: they are new dead letters, listing every reason (`fxflow dlq list`)",
            report.failed_again.len()
        );
    }
    if report.done_before > 0 {
        println!(
            "skipped {} replayed before (`--again` replays them once more)",
            report.done_before
        );
    }
    if report.other_pipelines > 0 {
        println!("skipped {} of stages not in `{name}`", report.other_pipelines);
    }
    for (id, why) in &report.not_replayable {
        println!("  cannot replay {id}: {why}");
    }
    if !report.unfinished.is_empty() {
        eprintln!(
            "error: {} letters did not finish (a sink gave up with no error output); they stay unreplayed: {}",
            report.unfinished.len(),
            report.unfinished.join(", ")
        );
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::SUCCESS
}

/// Intro of the generated stage reference (PIPELINES.md).
pub const REFERENCE_INTRO: &str =
    "A pipeline file is `Pipeline(name: ..., telemetry: (address: ...), resources: {...}, stages: {...})`. \
Each stage is `\"name\": Kind(field: value, ...)`. Every stage except a source lists `inputs`: \
the names of upstream stages, or `\"stage.errors\"` for a stage's dead letters. \
`${VAR}` and `${VAR:-default}` are replaced from the environment before parsing.";

/// What `run` needs to reload its pipelines.
struct Reload<'a> {
    files: &'a [PathBuf],
    registry: &'a Registry<FxEvent>,
    /// Poll the files for changes (SIGHUP reloads either way).
    watch: bool,
}

/// How often `run --watch` looks at the files.
const WATCH_EVERY: Duration = Duration::from_millis(500);

async fn run(specs: Vec<PipelineSpec<FxEvent>>, grace: Duration, reload: Reload<'_>) -> Result<(), String> {
    let handle = metrics::install_recorder();
    let readiness = Readiness::default();
    for spec in &specs {
        if let Some(t) = &spec.telemetry {
            telemetry::serve(&t.address, handle.clone(), readiness.clone())
                .await
                .map_err(|e| format!("pipeline `{}`: cannot listen on {}: {e}", spec.name, t.address))?;
        }
    }
    let mut running = Vec::new();
    for spec in specs {
        running.push(Some(
            fxflow_engine::start_with(spec, &readiness)
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    readiness.set(true);
    let mut triggers = reload_triggers(reload.files, reload.watch);
    let mut signals = StopSignals::new();
    let mut first_error: Option<fxflow_engine::StageError> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    let stop_all = |running: &[Option<fxflow_engine::RunningPipeline<FxEvent>>]| {
        running.iter().flatten().for_each(|p| p.shutdown());
    };
    // Supervise: the first failure stops every pipeline; a signal drains them
    // (within `grace`); a reload trigger applies the files' new version.
    while running.iter().any(Option::is_some) {
        let next = futures_util::future::select_all(
            running
                .iter_mut()
                .enumerate()
                .filter_map(|(i, p)| p.as_mut().map(|p| (i, p)))
                .map(|(i, p)| Box::pin(async move { (i, p.next_finished().await) })),
        );
        let deadline = drain_until.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        enum Step {
            Finished(usize, Option<Result<(), fxflow_engine::StageError>>),
            Reload(&'static str),
            Signal(&'static str),
            Late,
        }
        let step = tokio::select! {
            ((i, finished), _, _) = next => Step::Finished(i, finished),
            Some(reason) = triggers.recv(), if drain_until.is_none() && first_error.is_none() => Step::Reload(reason),
            signal = signals.next() => Step::Signal(signal),
            _ = tokio::time::sleep_until(deadline), if drain_until.is_some() => Step::Late,
        };
        match step {
            Step::Finished(i, None) => running[i] = None,
            Step::Finished(_, Some(Ok(()))) => {}
            Step::Finished(_, Some(Err(e))) => {
                if first_error.is_none() {
                    stop_all(&running);
                }
                first_error.get_or_insert(e);
            }
            Step::Reload(reason) => reload_all(&mut running, &reload, reason).await,
            Step::Signal(signal) => {
                if drain_until.is_some() {
                    return Err(format!("{signal} again: stopped without draining"));
                }
                tracing::info!(signal, "Shutting down: sources stopped, draining in-flight events.");
                stop_all(&running);
                drain_until = Some(tokio::time::Instant::now() + grace);
            }
            Step::Late => return Err(format!("in-flight events did not drain within {grace:?}")),
        }
    }
    readiness.set(false);
    match first_error {
        None => {
            tracing::info!("All pipelines finished.");
            Ok(())
        }
        Some(e) => Err(e.to_string()),
    }
}

/// Reasons to reload: SIGHUP, and with `watch` a change of a file's content.
fn reload_triggers(files: &[PathBuf], watch: bool) -> tokio::sync::mpsc::Receiver<&'static str> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        let tx = tx.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send("SIGHUP").await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    if watch {
        let files = files.to_vec();
        tokio::spawn(async move {
            let read = |files: &[PathBuf]| files.iter().map(|f| std::fs::read(f).ok()).collect::<Vec<_>>();
            let mut seen = read(&files);
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let now = read(&files);
                // A file half written (or replaced by rename) reads empty or missing: wait for it to settle.
                if now == seen || now.iter().any(|c| c.as_ref().is_none_or(|c| c.is_empty())) {
                    continue;
                }
                tokio::time::sleep(WATCH_EVERY / 2).await;
                if read(&files) != now {
                    continue;
                }
                seen = now;
                if tx.send("file changed").await.is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// Re-read every file and apply each pipeline's new version; an invalid
/// file changes nothing (its problems are printed) and a version that cannot
/// be built leaves that pipeline as it was.
async fn reload_all(
    running: &mut [Option<fxflow_engine::RunningPipeline<FxEvent>>],
    reload: &Reload<'_>,
    reason: &str,
) {
    let names: Vec<String> = running.iter().flatten().map(|p| p.name.clone()).collect();
    let specs = match load_files(reload.files, reload.registry, true) {
        Ok(specs) => specs,
        Err(problems) => {
            eprintln!("{problems}");
            let n = problems.0.len();
            eprintln!(
                "{n} error{} found; the running version keeps going.",
                if n == 1 { "" } else { "s" }
            );
            tracing::warn!(reason, problems = n, "Reload rejected: the new version is invalid.");
            names.iter().for_each(|name| metrics::reload(name, "rejected"));
            return;
        }
    };
    for (pipeline, spec) in running.iter_mut().zip(specs) {
        let Some(pipeline) = pipeline else { continue };
        match pipeline.reload(spec).await {
            Ok(report) if report.is_empty() => {
                tracing::info!(reason, pipeline = %pipeline.name, "Reload: nothing changed.");
                metrics::reload(&pipeline.name, "unchanged");
            }
            Ok(report) => {
                tracing::info!(reason, pipeline = %pipeline.name, %report, "Reload applied.");
                metrics::reload(&pipeline.name, "applied");
            }
            Err(e) => {
                eprintln!(
                    "error: reload of `{}` failed: {e}; the running version keeps going.",
                    pipeline.name
                );
                tracing::warn!(reason, pipeline = %pipeline.name, error = %e, "Reload failed; the running version keeps going.");
                metrics::reload(&pipeline.name, "failed");
            }
        }
    }
}

/// SIGINT and SIGTERM, listened to for the whole run so none arriving
/// between two waits is missed.
struct StopSignals {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                signals: signal(SignalKind::interrupt())
                    .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                    .ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.signals {
            return tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Bring a named resource of each file up to date: database migrations, or a
/// Kafka cluster's topics. `kind` restricts which resource kind is accepted.
fn provision(
    registry: &Registry<FxEvent>,
    files: &[PathBuf],
    resource: &str,
    kind: Option<&str>,
    mode: Provision,
) -> ExitCode {
    let specs = match load_files(files, registry, false) {
        Ok(specs) => specs,
        Err(problems) => {
            report(&problems);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    for (file, spec) in files.iter().zip(&specs) {
        let Some(found) = spec.resources.iter().find(|r| r.name == resource) else {
            let names: Vec<&str> = spec.resources.iter().map(|r| r.name.as_str()).collect();
            eprintln!(
                "error: {} declares no resource `{resource}` (it has: {})",
                file.display(),
                names.join(", ")
            );
            return ExitCode::from(EXIT_INVALID);
        };
        if let Some(kind) = kind.filter(|k| *k != found.kind) {
            eprintln!(
                "error: resource `{resource}` in {} is a {}, not a {kind}",
                file.display(),
                found.kind
            );
            return ExitCode::from(EXIT_INVALID);
        }
        if let Provision::Check { wait } = mode {
            match runtime.block_on(check_provisioned(found.config.as_ref(), wait)) {
                Ok(()) => {
                    println!(
                        "{}: resource `{resource}` ({}) is up to date",
                        file.display(),
                        found.kind
                    );
                    continue;
                }
                Err((code, message)) => {
                    eprintln!(
                        "error: {}: resource `{resource}` ({}): {message}",
                        file.display(),
                        found.kind
                    );
                    return ExitCode::from(code);
                }
            }
        }
        match runtime.block_on(found.config.migrate()) {
            Ok(true) => println!(
                "{}: resource `{resource}` ({}) is up to date",
                file.display(),
                found.kind
            ),
            Ok(false) => {
                eprintln!(
                    "error: resource `{resource}` is a {}, which has nothing to migrate",
                    found.kind
                );
                return ExitCode::from(EXIT_INVALID);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    ExitCode::SUCCESS
}

/// `fxflow backtest`: firings are printed as they come (JSON lines) or at the end (a table);
/// a summary goes to standard error.
fn backtest(registry: &Registry<FxEvent>, args: BacktestArgs) -> ExitCode {
    use std::io::Write as _;
    let rules = match crate::backtest::load_rules(&args.rules) {
        Ok(rules) => rules,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("{} problem(s); nothing was run.", problems.len());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let started = std::time::Instant::now();
    let mut table = Vec::new();
    let stdout = std::io::stdout();
    let mut lines = std::io::BufWriter::new(stdout.lock());
    let mut print = |fired: &crate::fx::AlertFired| {
        let firing = crate::backtest::Firing::from(fired);
        match args.format {
            BacktestFormat::Jsonl => {
                let _ = writeln!(lines, "{}", serde_json::to_string(&firing).unwrap_or_default());
            }
            BacktestFormat::Table => table.push(firing),
        }
    };
    let result = match (&args.csv, &args.pipeline) {
        (Some(csv), _) => crate::backtest::over_ecb_file(
            &rules,
            csv,
            args.from.map(|t| t.date_naive()),
            // The range's end is exclusive; the file's days are whole.
            args.to.map(|t| (t - chrono::Duration::nanoseconds(1)).date_naive()),
            &mut print,
        ),
        (None, Some(file)) => {
            // One worker reads the store while this thread runs the rules.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(EXIT_FAILED);
                }
            };
            let store = match runtime.block_on(open_store_of(registry, file, args.store.as_deref())) {
                Ok(store) => store,
                Err((code, message)) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(code);
                }
            };
            // Open ends as instants every store compares correctly (SQLite compares text:
            // four-digit years only).
            let from = args.from.unwrap_or(DateTime::UNIX_EPOCH);
            let to = args
                .to
                .unwrap_or_else(|| "9999-12-31T00:00:00Z".parse().expect("an instant"));
            runtime
                .block_on(crate::backtest::over_store(
                    &rules,
                    store,
                    from,
                    to,
                    args.source.as_deref(),
                    u64::MAX,
                    &mut print,
                ))
                .map_err(|e| e.to_string())
        }
        (None, None) => unreachable!("clap requires --csv or --pipeline"),
    };
    let _ = lines.flush();
    drop(lines);
    match result {
        Ok(summary) => {
            if args.format == BacktestFormat::Table {
                print!("{}", crate::backtest::table(&table));
            }
            eprintln!(
                "{} firing(s) of {} rule(s) over {} sample(s) in {} ms.",
                summary.firings,
                rules.len(),
                summary.samples,
                started.elapsed().as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The history store a pipeline file declares: the named resource, or its only store resource.
async fn open_store_of(
    registry: &Registry<FxEvent>,
    file: &Path,
    name: Option<&str>,
) -> Result<Arc<dyn crate::store::HistoryStore>, (u8, String)> {
    let specs = load_files(&[file.to_owned()], registry, false).map_err(|problems| {
        report(&problems);
        (EXIT_INVALID, format!("{} is not a valid pipeline file", file.display()))
    })?;
    let spec = &specs[0];
    let stores: Vec<_> = spec
        .resources
        .iter()
        .filter(|r| crate::backends::STORE_KINDS.contains(&r.kind.as_str()))
        .collect();
    let found = match name {
        Some(name) => stores.iter().find(|r| r.name == name),
        None if stores.len() == 1 => stores.first(),
        None => None,
    };
    let Some(found) = found else {
        let names: Vec<&str> = stores.iter().map(|r| r.name.as_str()).collect();
        return Err((
            EXIT_INVALID,
            format!(
                "{}: name a store resource with --store (its Postgres and Sqlite resources: {})",
                file.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    let built = found
        .config
        .build()
        .await
        .map_err(|e| (EXIT_FAILED, format!("resource `{}`: {e}", found.name)))?;
    let mut resources = fxflow_engine::Resources::default();
    resources.insert(found.name.clone(), built);
    crate::backends::open_store(&resources, &found.name, false)
        .await
        .map_err(|e| (EXIT_FAILED, e.to_string()))
}
