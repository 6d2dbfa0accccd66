use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A FleetLock server: N reboot slots per group, state kept in a file.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3333")]
    listen: SocketAddr,
    /// The state file (created when absent).
    #[arg(long)]
    state: PathBuf,
    /// Slots per group: how many nodes of a group may reboot at once.
    #[arg(long, default_value_t = 1)]
    slots: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let locks = match fleetlock_server::Locks::open(&args.state, args.slots) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Failed to listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "FleetLock server on {} with {} slot(s) per group",
        args.listen,
        args.slots
    );
    if let Err(e) = axum::serve(listener, fleetlock_server::router(locks)).await {
        eprintln!("FleetLock server stopped: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
