//! `update-daemon`: see the library's documentation. This file parses arguments, sets up
//! logging and runs the loop.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps the node current by itself, following settings.updates.policy.
#[derive(Parser)]
struct Args {
    /// The API socket.
    #[arg(long, env = constants::API_SOCKET_ENV, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// Where the daemon remembers its checks, lock and reboots.
    #[arg(long, default_value = update_daemon::STATE_FILE)]
    state_file: PathBuf,
    /// Where this boot's id is read.
    #[arg(long, default_value = update_daemon::BOOT_ID_FILE)]
    boot_id_file: PathBuf,
    /// Longest wait between decisions, e.g. 60s or 5m.
    #[arg(long, default_value = "60s", value_parser = apiclient::update::parse_duration)]
    poll: std::time::Duration,
    /// Make one decision and exit.
    #[arg(long)]
    once: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(tracing::level_filters::LevelFilter::INFO);
    let config = update_daemon::Config {
        socket: args.socket_path,
        state_file: args.state_file,
        boot_id_file: args.boot_id_file,
        poll: args.poll,
    };
    match update_daemon::run(config, args.once).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("update-daemon: {e}");
            ExitCode::FAILURE
        }
    }
}
