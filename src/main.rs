//! `boxoffice`: parse the configuration, then hand over to `app` (or a CLI command).
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = boxoffice::config::Cli::parse_or_exit();
    boxoffice::app::main(cli)
}
