//! `cri-client`: plays kubelet against a CRI runtime; see the library docs.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use cri_client::{Auth, ContainerRequest, Cri, PodRequest, Seccomp};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Runs a pod and a container through the CRI, as kubelet would.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The runtime's CRI socket.
    #[arg(long, default_value = constants::CONTAINERD_SOCKET)]
    socket: PathBuf,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the runtime's name, version and CRI API version.
    Version,
    /// Pull IMAGE, run it in a new host-network pod until it exits, print its log and remove
    /// the pod; exits with the container's exit code.
    Run {
        /// The image to run.
        image: String,
        /// Registry user name for the pull (with --password); the runtime's own credentials
        /// otherwise.
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// Registry password for the pull.
        #[arg(long, requires = "username")]
        password: Option<String>,
        /// Pod (and container) name.
        #[arg(long, default_value = "cri-client")]
        name: String,
        /// Where the runtime writes the pod's logs (on the runtime's machine).
        #[arg(long, default_value = "/var/log/pods/default_cri-client")]
        log_dir: PathBuf,
        /// Run without a seccomp filter instead of the runtime's default.
        #[arg(long)]
        unconfined: bool,
        /// How long the container may run before it is stopped and the run fails.
        #[arg(long, default_value = "60")]
        timeout_secs: u64,
        /// Command and arguments replacing the image's entrypoint.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_level);
    match run(args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> cri_client::Result<ExitCode> {
    let mut cri = Cri::connect(&args.socket).await?;
    match args.command {
        Command::Version => {
            let version = cri.version().await?;
            println!(
                "{} {} (CRI {})",
                version.runtime_name, version.runtime_version, version.runtime_api_version
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            image,
            username,
            password,
            name,
            log_dir,
            unconfined,
            timeout_secs,
            command,
        } => {
            let auth = username
                .zip(password)
                .map(|(username, password)| Auth { username, password });
            cri.pull(&image, auth.as_ref()).await?;
            let mut pod = PodRequest::new(&name, &log_dir.display().to_string());
            pod.uid = format!("{name}-{}", std::process::id());
            let pod = cri.run_pod(&pod).await?;
            let mut container = ContainerRequest::new(&name, &image);
            container.command = command;
            if unconfined {
                container.seccomp = Seccomp::Unconfined;
            }
            let outcome = run_container(&mut cri, &pod, &container, timeout_secs).await;
            // The pod goes whatever happened to the container.
            let removed = cri.remove_pod(&pod.id).await;
            let code = outcome?;
            removed?;
            Ok(code)
        }
    }
}

async fn run_container(
    cri: &mut Cri,
    pod: &cri_client::Pod,
    container: &ContainerRequest,
    timeout_secs: u64,
) -> cri_client::Result<ExitCode> {
    let id = cri.create_container(pod, container).await?;
    cri.start_container(&id).await?;
    let status = cri
        .wait_for_exit(&id, Duration::from_secs(timeout_secs))
        .await?;
    match cri_client::read_log(status.log_path.as_ref()) {
        Ok(lines) => {
            for line in lines {
                println!("{} {}", line.stream, line.text);
            }
        }
        Err(err) => eprintln!("(no log here: {err})"),
    }
    let code = status.exit_code.unwrap_or(1);
    eprintln!("container {id} exited with {code} ({})", status.reason);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
