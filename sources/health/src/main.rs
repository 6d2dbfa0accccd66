//! `health-gate`: the boot's health gate; see the library docs. Exits 0 once every check of
//! `settings.health` passes, 1 when they still fail after `settings.health.boot-wait` (the
//! boot is then not marked successful, and the failed checks are recorded).
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Waits for the node's health checks before the boot is marked successful.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, env = constants::API_SOCKET_ENV, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// The systemctl to ask, with any leading arguments, split on spaces.
    #[arg(long, default_value = "systemctl")]
    systemctl: String,
    /// The host containerd's socket, where command probes run.
    #[arg(long, default_value = constants::HOST_CONTAINERD_SOCKET)]
    containerd_socket: PathBuf,
    /// The containerd namespace of the host containers.
    #[arg(long, default_value = constants::HOST_CONTAINERD_NAMESPACE)]
    containerd_namespace: String,
    /// Where to record the failed checks when the wait runs out.
    #[arg(long, default_value = constants::HEALTH_BOOT_FAILURE)]
    failure_file: PathBuf,
    /// Seconds between two evaluations.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::Logging::new(args.log_level).without_time().init();
    let settings = match health::from_api(&args.socket_path).await {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("health-gate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let version = apiclient::request(&args.socket_path, "/os", "GET", None)
        .await
        .ok()
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|os| os["version_id"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    let checker = health::Checker {
        systemctl: args
            .systemctl
            .split_whitespace()
            .map(String::from)
            .collect(),
        env: Vec::new(),
        containerd: health::HostContainerd {
            socket: args.containerd_socket,
            namespace: args.containerd_namespace,
        },
    };
    let within = health::boot_wait(&settings);
    let interval = Duration::from_secs(args.interval.max(1));
    let report = tokio::task::spawn_blocking(move || checker.wait(&settings, within, interval))
        .await
        .unwrap_or_default();
    match health::gate_outcome(&report, &version, within, &args.failure_file) {
        Ok(line) => {
            println!("health-gate: {line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("health-gate: {line}");
            ExitCode::FAILURE
        }
    }
}
