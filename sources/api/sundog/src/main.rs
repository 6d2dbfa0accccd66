//! `sundog`: runs setting generators at boot; see the library documentation.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Fills settings that still have no value by running their generators.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// The pending transaction that receives generated values.
    #[arg(long, default_value = constants::LAUNCH_TX)]
    tx: String,
    /// Most generators running at once (1 runs them one after another).
    #[arg(long, default_value_t = sundog::DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The journal stamps each line itself.
    logging::Logging::new(args.log_level).without_time().init();
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
