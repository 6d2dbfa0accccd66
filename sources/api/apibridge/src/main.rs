//! `apibridge`: parses flags, sets up logging and runs the guest or host end.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Carries API connections over a virtio-serial port.
///
/// Without a subcommand, runs the guest end: bridges the port to the API socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The virtio-serial port (guest end) [default: /dev/virtio-ports/ballast.api].
    #[arg(long)]
    port: Option<PathBuf>,
    /// The API server's socket (guest end) [default: /run/api.sock].
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info", global = true)]
    log_level: logging::LevelFilter,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host end: connect to QEMU's chardev socket and serve clients.
    Host {
        /// QEMU's `-chardev socket,server=on` path for the `ballast.api` port.
        #[arg(long)]
        qemu_socket: PathBuf,
        /// Where to listen for clients (`apiclient --socket-path`).
        #[arg(long)]
        listen: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.command.is_some() && (args.port.is_some() || args.api_socket.is_some()) {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--port and --api-socket belong to the guest end; `host` does not take them",
            )
            .exit();
    }
    logging::init(args.log_level);
    let result = match args.command {
        None => {
            let port = args
                .port
                .unwrap_or_else(|| PathBuf::from(constants::API_PORT));
            let api_socket = args
                .api_socket
                .unwrap_or_else(|| PathBuf::from(constants::API_SOCKET));
            apibridge::serve_guest(&port, &api_socket).await
        }
        Some(Command::Host {
            qemu_socket,
            listen,
        }) => {
            tokio::select! {
                result = apibridge::serve_host(&qemu_socket, &listen) => result,
                // Returning drops the bridge, which removes the listening socket.
                () = stop_signal() => Ok(()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apibridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
