//! `sundog`: runs setting generators at boot; see the library documentation.

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Fills settings that still have no value by running their generators.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, default_value = apiclient::DEFAULT_SOCKET_PATH)]
    socket_path: PathBuf,
    /// The pending transaction that receives generated values.
    #[arg(long, default_value = storewolf::LAUNCH_TX)]
    tx: String,
    /// Most generators running at once (1 runs them one after another).
    #[arg(long, default_value_t = sundog::DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: tracing_subscriber::filter::LevelFilter,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        // The journal stamps each line itself, and colors only help on a terminal.
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = sundog::Config {
        socket_path: args.socket_path,
        tx: args.tx,
        jobs: usize::from(args.jobs),
    };
    match sundog::run(&config).await {
        Ok(report) => {
            // The summary goes to stderr with the logs, which the unit sends to the console.
            eprintln!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sundog: {e}");
            ExitCode::FAILURE
        }
    }
}
