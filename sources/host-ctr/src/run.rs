//! `host-ctr run NAME`: the process of `host-containers@NAME.service`. It pulls the
//! container's image (retrying with backoff while no registry answers), replaces whatever a
//! previous run left in containerd, starts the task with its output in this unit's journal,
//! and on SIGTERM stops the task and removes the container.

use crate::config::HostCtrConfig;
use crate::error::{self, Result};
use crate::pull::{self, write_private};
use crate::spec::{self, ImageProcess, SpecInput};
use base64::Engine as _;
use ctr_client::Containerd;
use snafu::ResultExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The FIFOs of each container's output, below this directory (one directory per container).
pub const FIFO_DIR: &str = "/run/host-ctr/io";

/// First and longest wait between two pull attempts.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// How long the task has to stop after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where things are; the defaults are the node's.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config: PathBuf,
    pub socket: PathBuf,
    pub storage: PathBuf,
    pub fifos: PathBuf,
    pub namespace: String,
    /// The API socket, bound into every container at [`constants::API_SOCKET`].
    pub api_socket: PathBuf,
    /// The capability bounding set of the runtime's shims (bit N: capability N) when it is
    /// smaller than the kernel's list: a containerd a test starts inherits the test's set.
    /// `None` on a node, where the host containerd keeps every capability (see
    /// [`spec::bounding_set`]).
    pub runtime_capabilities: Option<u64>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            config: constants::HOST_CTR_CONFIG.into(),
            socket: constants::HOST_CONTAINERD_SOCKET.into(),
            storage: constants::HOST_CONTAINERS_STORAGE.into(),
            fifos: FIFO_DIR.into(),
            namespace: constants::HOST_CONTAINERD_NAMESPACE.into(),
            api_socket: constants::API_SOCKET.into(),
            runtime_capabilities: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The container is disabled (or has no source): nothing ran.
    Disabled,
    /// SIGTERM or SIGINT: the container was stopped and removed.
    Stopped,
    /// The container's main process exited by itself with this status.
    Exited(u32),
}

/// Runs host container `name` until it exits or this process gets SIGTERM or SIGINT.
pub async fn run(name: &str, paths: &Paths) -> Result<Outcome> {
    // Listen before the first step, so that a stop during the pull is not lost.
    let mut term = signal(SignalKind::terminate()).context(error::SignalSnafu {
        signal: "SIGTERM".to_string(),
    })?;
    let mut int = signal(SignalKind::interrupt()).context(error::SignalSnafu {
        signal: "SIGINT".to_string(),
    })?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    run_until(name, paths, stop).await
}

/// Runs host container `name` until it exits or `stop` resolves; then stops and removes it.
pub async fn run_until(
    name: &str,
    paths: &Paths,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Outcome> {
    let stop = stop;
    tokio::pin!(stop);
    let mut wait = FIRST_RETRY;
    let (config, pulled, containerd) = loop {
        let config = HostCtrConfig::load(&paths.config)?;
        let container = config.container(name)?;
        if !container.enabled {
            tracing::info!(
                "host container {name} is disabled (settings.host-containers.{name}.enabled)"
            );
            return Ok(Outcome::Disabled);
        }
        let source = container
            .source
            .clone()
            .ok_or_else(|| error::Error::NoSource {
                name: name.to_string(),
            })?;
        let attempt = async {
            let containerd = Containerd::connect(&paths.socket, &paths.namespace).await?;
            let pulled = pull::pull(&containerd, name, &source, &config).await?;
            Ok::<_, error::Error>((pulled, containerd))
        };
        let result = tokio::select! {
            result = attempt => result,
            () = &mut stop => return Ok(Outcome::Stopped),
        };
        match result {
            Ok((pulled, containerd)) => break (config, pulled, containerd),
            Err(e) => {
                tracing::error!(
                    "host container {name}: cannot pull {source}: {e}; retrying in {} s",
                    wait.as_secs()
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut stop => return Ok(Outcome::Stopped),
                }
                wait = (wait * 2).min(LONGEST_RETRY);
            }
        }
    };
    let container = config.container(name)?;
    let pid = launch(
        &containerd,
        paths,
        &pulled,
        &Launch {
            kind: spec::Kind::Host,
            name,
            superpowered: container.superpowered,
            user_data: container.user_data.as_deref(),
        },
    )
    .await?;
    tracing::info!(
        "host container {name} is running {} (pid {pid}, {})",
        pulled.name,
        if container.superpowered {
            "superpowered"
        } else {
            "confined"
        }
    );

    let outcome = tokio::select! {
        status = containerd.wait_task(name) => Outcome::Exited(status?),
        () = &mut stop => {
            stop_task(&containerd, name).await?;
            Outcome::Stopped
        }
    };
    remove(&containerd, name).await?;
    match outcome {
        Outcome::Exited(status) => {
            tracing::warn!("host container {name} exited with status {status}")
        }
        _ => tracing::info!("host container {name} stopped and removed"),
    }
    Ok(outcome)
}

/// One container to start: what the spec and its persistent directory are made from.
pub(crate) struct Launch<'a> {
    pub kind: spec::Kind,
    pub name: &'a str,
    pub superpowered: bool,
    /// Base64, as the settings hold it.
    pub user_data: Option<&'a str>,
}

/// Starts a pulled image as container `launch.name`: replaces what an earlier run left in
/// containerd, prepares its persistent directory (with its user data), builds its runtime
/// spec, creates the container on a fresh snapshot and starts its task with the output in
/// this process's journal. Returns the task's PID; a task that does not start is removed.
pub(crate) async fn launch(
    containerd: &Containerd,
    paths: &Paths,
    pulled: &pull::Pulled,
    launch: &Launch<'_>,
) -> Result<u32> {
    let name = launch.name;
    remove(containerd, name).await?;
    let storage = paths.storage.join(name);
    prepare_storage(name, &storage, launch.user_data)?;
    let process = ImageProcess::from_config(&pulled.config);
    let spec = spec::build(&SpecInput {
        kind: launch.kind,
        name,
        superpowered: launch.superpowered,
        process: &process,
        storage: &storage,
        api_socket: &paths.api_socket,
        bounding: paths
            .runtime_capabilities
            .unwrap_or_else(spec::bounding_set),
    })?;
    let rootfs = containerd.prepare_snapshot(name, &pulled.top_chain).await?;
    containerd
        .create_container(name, &pulled.name, &spec)
        .await?;
    // Host and bootstrap containers may share a name: their FIFOs may not.
    let fifos = match launch.kind {
        spec::Kind::Host => paths.fifos.join(name),
        spec::Kind::Bootstrap => paths.fifos.join(format!("bootstrap-{name}")),
    };
    let (stdout, stderr) = output_fifos(&fifos)?;
    match containerd.start_task(name, rootfs, &stdout, &stderr).await {
        Ok(pid) => Ok(pid),
        Err(e) => {
            let _ = remove(containerd, name).await;
            Err(e.into())
        }
    }
}

/// SIGTERM to the task, SIGKILL after [`STOP_GRACE`].
pub(crate) async fn stop_task(containerd: &Containerd, name: &str) -> Result<()> {
    containerd
        .kill_task(name, libc_signal(nix::sys::signal::SIGTERM))
        .await?;
    match tokio::time::timeout(STOP_GRACE, containerd.wait_task(name)).await {
        Ok(result) => Ok(result.map(|_| ())?),
        Err(_) => {
            tracing::warn!(
                "host container {name} did not stop within {} s; killing it",
                STOP_GRACE.as_secs()
            );
            containerd
                .kill_task(name, libc_signal(nix::sys::signal::SIGKILL))
                .await?;
            containerd.wait_task(name).await?;
            Ok(())
        }
    }
}

fn libc_signal(signal: nix::sys::signal::Signal) -> u32 {
    u32::try_from(signal as i32).unwrap_or(9)
}

/// Removes what a run of `name` leaves in containerd: its task (killed first), the container
/// and its snapshot. What is missing is skipped.
pub async fn remove(containerd: &Containerd, name: &str) -> Result<()> {
    containerd
        .kill_task(name, libc_signal(nix::sys::signal::SIGKILL))
        .await?;
    // A task that was running needs a moment to be reaped before it can be deleted.
    for _ in 0..50 {
        match containerd.delete_task(name).await {
            Ok(()) => break,
            Err(e) => {
                tracing::debug!("{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    containerd.delete_container(name).await?;
    containerd.remove_snapshot(name).await?;
    Ok(())
}

/// Makes the container's persistent directory and writes its user data there (or removes a
/// stale file when it has none).
pub(crate) fn prepare_storage(name: &str, storage: &Path, user_data: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(storage).context(error::IoSnafu {
        action: "create",
        path: storage,
    })?;
    let file = storage.join("user-data");
    match user_data {
        Some(encoded) => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .context(error::UserDataSnafu { name })?;
            write_private(&file, &data).context(error::IoSnafu {
                action: "write",
                path: &file,
            })
        }
        None => match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error::Error::Io {
                action: "remove".into(),
                path: file,
                source: e,
            }),
            _ => Ok(()),
        },
    }
}

/// Makes the stdout and stderr FIFOs in `dir` and copies what the container writes to them to
/// this process's stdout and stderr (the unit's journal).
pub(crate) fn output_fifos(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).context(error::IoSnafu {
        action: "create",
        path: dir,
    })?;
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    for path in [&stdout, &stderr] {
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .context(error::FifoSnafu { path })?;
        // Read-write, so the FIFO never reports end-of-file between two writers.
        let receiver = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .context(error::IoSnafu {
                action: "open",
                path,
            })?;
        let to_stderr = path == &stderr;
        tokio::spawn(async move {
            let mut receiver = receiver;
            let result = if to_stderr {
                tokio::io::copy(&mut receiver, &mut tokio::io::stderr()).await
            } else {
                tokio::io::copy(&mut receiver, &mut tokio::io::stdout()).await
            };
            if let Err(e) = result {
                tracing::debug!("container output: {e}");
            }
        });
    }
    Ok((stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_gets_the_user_data_and_loses_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("admin");
        let encoded = base64::engine::general_purpose::STANDARD.encode("hello");
        prepare_storage("admin", &storage, Some(&encoded)).unwrap();
        assert_eq!(
            std::fs::read_to_string(storage.join("user-data")).unwrap(),
            "hello"
        );
        prepare_storage("admin", &storage, None).unwrap();
        assert!(!storage.join("user-data").exists());
        let err = prepare_storage("admin", &storage, Some("%%%"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin"), "{err}");
    }
}
