//! The `fxflow` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use fxflow_engine::spec::{check_together, load_file, Diagnostics};
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
    /// SIGINT/SIGTERM arrives (then drain in-flight events and exit).
    Run {
        /// Pipeline files; each one runs as its own pipeline.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How long to wait for in-flight events to drain after a signal.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        grace: Duration,
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
    /// Apply pending database migrations of a resource declared in a pipeline file.
    Migrate {
        /// The pipeline file that declares the resource.
        file: PathBuf,
        /// The resource's name in that file's `resources`.
        #[arg(long)]
        resource: String,
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
    /// whose report is the output (its pipelines' start-up lines would bury it).
    pub fn log_level(&self) -> &'static str {
        match self {
            Command::Test { .. } => "warn",
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
                print!("{}", crate::api::openapi::markdown());
            } else if openapi {
                println!("{}", crate::api::openapi::document_json());
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
        Command::Migrate { file, resource } => provision(&registry, std::slice::from_ref(&file), &resource, None),
        Command::Topics {
            action: TopicsCommand::Create { files, resource },
        } => provision(&registry, &files, &resource, Some(fxflow_engine::kafka::RESOURCE_KIND)),
        Command::Run { files, grace } => {
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
            match runtime.block_on(run(specs, grace)) {
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

/// Intro of the generated stage reference (PIPELINES.md).
pub const REFERENCE_INTRO: &str =
    "A pipeline file is `Pipeline(name: ..., telemetry: (address: ...), resources: {...}, stages: {...})`. \
Each stage is `\"name\": Kind(field: value, ...)`. Every stage except a source lists `inputs`: \
the names of upstream stages, or `\"stage.errors\"` for a stage's dead letters. \
`${VAR}` and `${VAR:-default}` are replaced from the environment before parsing.";

async fn run(specs: Vec<PipelineSpec<FxEvent>>, grace: Duration) -> Result<(), String> {
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
        running.push(
            fxflow_engine::start_with(spec, &readiness)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    readiness.set(true);
    let handles: Vec<_> = running.iter().map(|p| p.shutdown_handle()).collect();
    // Wait for every pipeline; the first failure stops the others too.
    let mut waiting = tokio::task::JoinSet::new();
    for pipeline in running {
        waiting.spawn(pipeline.wait());
    }
    let stop_all = handles.clone();
    let mut all = Box::pin(async move {
        let mut first_error = None;
        while let Some(joined) = waiting.join_next().await {
            let result = joined
                .map_err(|e| fxflow_engine::StageError::new(format!("pipeline task: {e}")))
                .and_then(|r| r);
            if let Err(e) = result {
                if first_error.is_none() {
                    stop_all.iter().for_each(|h| h.shutdown());
                }
                first_error.get_or_insert(e);
            }
        }
        first_error
    });
    let result = tokio::select! {
        error = &mut all => error,
        signal = shutdown_signal() => {
            tracing::info!(signal, "Shutting down: sources stopped, draining in-flight events.");
            handles.iter().for_each(|h| h.shutdown());
            tokio::select! {
                error = tokio::time::timeout(grace, &mut all) => match error {
                    Ok(error) => error,
                    Err(_) => return Err(format!("in-flight events did not drain within {grace:?}")),
                },
                signal = shutdown_signal() => return Err(format!("{signal} again: stopped without draining")),
            }
        }
    };
    readiness.set(false);
    match result {
        None => {
            tracing::info!("All pipelines finished.");
            Ok(())
        }
        Some(e) => Err(e.to_string()),
    }
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Bring a named resource of each file up to date: database migrations, or a
/// Kafka cluster's topics. `kind` restricts which resource kind is accepted.
fn provision(registry: &Registry<FxEvent>, files: &[PathBuf], resource: &str, kind: Option<&str>) -> ExitCode {
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
