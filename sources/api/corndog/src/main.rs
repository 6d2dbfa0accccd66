//! `corndog`: applies kernel settings without a configuration file; see the library docs.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Applies kernel settings that no configuration file carries.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, env = constants::API_SOCKET_ENV, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raise the kernel lockdown mode to settings.kernel.lockdown (a lower one waits for the
    /// next boot).
    Lockdown {
        /// The kernel's lockdown file.
        #[arg(long, default_value = constants::KERNEL_LOCKDOWN)]
        path: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The journal stamps each line itself.
    logging::Logging::new(args.log_level).without_time().init();
    let result = match &args.command {
        Command::Lockdown { path } => corndog::run(&args.socket_path, path).await,
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corndog: {e}");
            ExitCode::FAILURE
        }
    }
}
