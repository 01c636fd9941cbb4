//! `boxoffice`: parse the configuration, then hand over to `app` (or a CLI command).
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: under load glibc's arenas showed up in profiles as lock
/// waits and ~13% of the server's CPU (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = boxoffice::config::Cli::parse_or_exit();
    boxoffice::app::main(cli)
}
