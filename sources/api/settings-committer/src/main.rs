//! `settings-committer`: commits the boot-time settings transaction; see the library docs.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Makes the settings gathered at boot live.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// The transaction to commit.
    #[arg(long, default_value = constants::LAUNCH_TX)]
    tx: String,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The journal stamps each line itself.
    logging::Logging::new(args.log_level).without_time().init();
    match settings_committer::run(&args.socket_path, &args.tx).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settings-committer: {e}");
            ExitCode::FAILURE
        }
    }
}
