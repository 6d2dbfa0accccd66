//! `apiserver`: parses flags, sets up logging and runs [`apiserver::serve`].

use apiserver::updates::updater::CommandLine;
use apiserver::updates::UpdatesConfig;
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Ballast's API server: settings over HTTP on a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The datastore directory (usually the `current` link).
    #[arg(long, default_value = "/var/lib/ballast/datastore/current")]
    datastore_path: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "/run/api.sock")]
    socket_path: PathBuf,
    /// Group that owns the socket (mode 0660), e.g. the `api` group.
    #[arg(long)]
    socket_gid: Option<u32>,
    /// os-release file describing this OS for GET /os.
    #[arg(long, default_value = "/etc/os-release")]
    os_release: PathBuf,
    /// Renderer run on apply: changed keys as a JSON array on stdin, or `--all`.
    #[arg(long)]
    apply_command: Option<PathBuf>,
    /// The updater the update actions run, with any leading arguments, split on spaces
    /// (e.g. "/usr/bin/updog --log-level warn"). It must follow updog's command-line contract.
    #[arg(long, default_value = "updog")]
    updater_command: CommandLine,
    /// Where the update status and the updater's progress file are kept (tmpfs on a node, so
    /// the status survives an API server restart but not a reboot).
    #[arg(long, default_value = "/run/cache/ballast-updates")]
    updater_status_dir: PathBuf,
    /// What POST /actions/reboot runs, split on spaces.
    #[arg(long, default_value = "systemctl reboot")]
    reboot_command: CommandLine,
    /// Also record readiness in the kernel log (/dev/kmsg), so the boot timeline in `dmesg`
    /// shows when the API started answering.
    #[arg(long)]
    kmsg_ready: bool,
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
        // Colour codes only help on a terminal; in the journal they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = apiserver::ServerConfig {
        datastore_path: args.datastore_path,
        socket_path: args.socket_path,
        socket_gid: args.socket_gid,
        os_release: args.os_release,
        apply_command: args.apply_command,
        updates: UpdatesConfig {
            updater: args.updater_command,
            status_dir: args.updater_status_dir,
            reboot: args.reboot_command,
        },
        kmsg_ready: args.kmsg_ready,
    };
    match apiserver::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apiserver: {e}");
            ExitCode::FAILURE
        }
    }
}
