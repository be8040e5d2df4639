//! `fxflow-examples`: the `fxflow` command with this crate's stages registered.
//!
//! Same arguments as `fxflow` (`run`, `validate`, `graph`, `docs`):
//!
//!     cargo run -p fxflow-examples -- run examples/pipelines/spread-guard.ron

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use fxflow_stages::cli::{init_logging, main_with_registry, Cli};

fn main() -> ExitCode {
    let matches = Cli::command().name("fxflow-examples").get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.log_format, cli.command.log_level());
    main_with_registry(cli, fxflow_examples::registry())
}
