//! `settings-committer`: commits the boot-time settings transaction; see the library docs.

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Makes the settings gathered at boot live.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, default_value = apiclient::DEFAULT_SOCKET_PATH)]
    socket_path: PathBuf,
    /// The transaction to commit.
    #[arg(long, default_value = storewolf::LAUNCH_TX)]
    tx: String,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: tracing_subscriber::filter::LevelFilter,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        // The journal stamps each line itself, and colors only help on a terminal.
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match settings_committer::run(&args.socket_path, &args.tx).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settings-committer: {e}");
            ExitCode::FAILURE
        }
    }
}
