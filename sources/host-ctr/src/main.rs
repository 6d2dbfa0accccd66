//! `host-ctr`: runs host containers on the host containerd; see the library docs.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Pulls and runs host containers (settings.host-containers) on the host containerd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The rendered host-containers configuration.
    #[arg(long, default_value = constants::HOST_CTR_CONFIG)]
    config: PathBuf,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run host container NAME until it exits or SIGTERM (the process of host-containers@NAME).
    Run {
        name: String,
        /// The host containerd's socket.
        #[arg(long, default_value = constants::HOST_CONTAINERD_SOCKET)]
        socket: PathBuf,
        /// The containerd namespace.
        #[arg(long, default_value = constants::HOST_CONTAINERD_NAMESPACE)]
        namespace: String,
        /// Where each container's persistent directory is made.
        #[arg(long, default_value = constants::HOST_CONTAINERS_STORAGE)]
        storage: PathBuf,
        /// Where the FIFOs of each container's output are made.
        #[arg(long, default_value = host_ctr::run::FIFO_DIR)]
        fifos: PathBuf,
    },
    /// Run each bootstrap container (settings.bootstrap-containers) to its end, in name order
    /// (the process of bootstrap-containers.service, before configured.target).
    Bootstrap {
        /// The host containerd's socket.
        #[arg(long, default_value = constants::HOST_CONTAINERD_SOCKET)]
        socket: PathBuf,
        /// Where each container's persistent directory is made.
        #[arg(long, default_value = constants::BOOTSTRAP_CONTAINERS_STORAGE)]
        storage: PathBuf,
        /// Where the FIFOs of each container's output are made.
        #[arg(long, default_value = host_ctr::run::FIFO_DIR)]
        fifos: PathBuf,
    },
    /// Start, restart or stop each host-containers@NAME unit as the settings say (the
    /// renderer's restart command).
    Sync {
        /// Where what each unit was started with is remembered.
        #[arg(long, default_value = host_ctr::sync::APPLIED_DIR)]
        applied: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The journal stamps each line itself.
    logging::Logging::new(args.log_level).without_time().init();
    let result = match args.command {
        Command::Run {
            name,
            socket,
            namespace,
            storage,
            fifos,
        } => match node_paths(args.config, socket, storage, fifos, namespace) {
            Ok(paths) => host_ctr::run(&name, &paths)
                .await
                .map(|outcome| match outcome {
                    // A host container is meant to keep running: the unit restarts it.
                    host_ctr::Outcome::Exited(_) => ExitCode::FAILURE,
                    _ => ExitCode::SUCCESS,
                }),
            Err(e) => Err(e),
        },
        Command::Bootstrap {
            socket,
            storage,
            fifos,
        } => {
            let namespace = constants::BOOTSTRAP_CONTAINERD_NAMESPACE.to_string();
            match node_paths(args.config, socket, storage, fifos, namespace) {
                Ok(paths) => host_ctr::bootstrap::run_all(&paths)
                    .await
                    .map(|_| ExitCode::SUCCESS),
                Err(e) => Err(e),
            }
        }
        Command::Sync { applied } => host_ctr::HostCtrConfig::load(&args.config)
            .and_then(|config| host_ctr::sync::sync(&config, &applied))
            .map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The node's paths for `run` and `bootstrap`, once the registry trust store is installed
/// (in the FIFO directory). It sets the environment, so this runs before any other thread.
fn node_paths(
    config: PathBuf,
    socket: PathBuf,
    storage: PathBuf,
    fifos: PathBuf,
    namespace: String,
) -> host_ctr::Result<host_ctr::Paths> {
    host_ctr::pull::install_trust_store(&fifos.join("roots.pem"))?;
    Ok(host_ctr::Paths {
        config,
        socket,
        storage,
        fifos,
        namespace,
        api_socket: constants::API_SOCKET.into(),
        runtime_capabilities: None,
    })
}
