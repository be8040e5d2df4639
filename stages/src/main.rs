use std::process::ExitCode;

use clap::Parser;
use fxflow_stages::cli::{init_logging, main_with, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.command.log_level());
    main_with(cli)
}
