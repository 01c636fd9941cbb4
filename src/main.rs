//! `boxoffice`: parse the command line and the environment, then dispatch: `serve` (the
//! default), `migrate`, `export-schema`. The load tools are a separate binary (`loadtest`).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use boxoffice::config::Config;
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: under load glibc's arenas showed up in profiles as lock
/// waits and ~13% of the server's CPU (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "boxoffice",
    version,
    about = "Ticket booking service: GraphQL API, live seat maps, atomic seat holds"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL) to stdout, or write it to a file.
    ExportSchema {
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Parse flags and environment. On a bad value print one line naming the setting and exit 2;
/// `--help` and `--version` behave as usual.
fn parse_or_exit() -> Cli {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
                _ => {
                    let rendered = e.to_string();
                    let line = rendered
                        .lines()
                        .next()
                        .unwrap_or("error: invalid configuration");
                    eprintln!("{line}");
                    std::process::exit(2);
                }
            }
        }
    };
    if let Err(msg) = cli.config.check() {
        eprintln!("error: {msg}");
        std::process::exit(2);
    }
    cli
}

fn export_schema(output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let sdl = boxoffice::graphql::sdl();
    match output {
        Some(path) => {
            std::fs::write(path, sdl).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{sdl}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = parse_or_exit();
    boxoffice::telemetry::init_logs(cli.config.log_format, "info");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => boxoffice::app::serve_from_config(cli.config).await,
            Command::Migrate => boxoffice::app::migrate(&cli.config).await,
            Command::ExportSchema { output } => export_schema(output.as_deref()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
