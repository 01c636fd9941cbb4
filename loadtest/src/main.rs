//! `loadtest`: boxoffice's load tools, apart from the server. `simulate` races simulated users
//! through the public API and audits the result; `bench` measures the server side by side with
//! its ceilings. Neither is compiled into the server.
mod audit;
mod bench;
mod client;
mod report;
mod simulate;
mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "boxoffice's simulator (with its audit) and benchmarks"
)]
struct Cli {
    #[command(flatten)]
    target: target::Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Race many simulated users for the best seats of one show through the public API, then
    /// audit the database and the hold store (exit code 1 on any violation).
    Simulate(simulate::SimulateArgs),
    /// Audit one show as `simulate` does after a run: the server's database and Redis read
    /// directly, every check listed (exit code 1 on any violation).
    Audit(audit::AuditArgs),
    /// Benchmark holds (Redis, in-process, PostgreSQL row-lock baseline), ceilings, checkout and
    /// live-map fan-out on this machine, side by side.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The report is the output: logs only for warnings, unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,sqlx=warn,sea_orm=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
        match cli.command {
            Command::Simulate(args) => match simulate::run(&cli.target, args).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow::anyhow!(
                    "the simulation failed its verdict (see the report)"
                )),
                Err(e) => Err(e),
            },
            Command::Audit(args) => match audit::command(&cli.target, args).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow::anyhow!(
                    "the audit found violations (see the report)"
                )),
                Err(e) => Err(e),
            },
            Command::Bench(args) => bench::run(&cli.target, args).await,
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
