//! Command probes: a program run inside a host container's running task, through the host
//! containerd, as `apiclient exec` runs one. The process gets the container's own process
//! spec (user, working directory, environment) and no stdio; it passes when it exits 0
//! within the probe's timeout. A process still running then is killed, and every process is
//! removed from the task afterwards, so a probe leaves nothing behind.

use ctr_client::Containerd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where command probes find the host containers: the host containerd's socket and the
/// namespace of the host containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostContainerd {
    pub socket: PathBuf,
    pub namespace: String,
}

impl Default for HostContainerd {
    fn default() -> Self {
        HostContainerd {
            socket: constants::HOST_CONTAINERD_SOCKET.into(),
            namespace: constants::HOST_CONTAINERD_NAMESPACE.into(),
        }
    }
}

/// How long a killed probe process gets to be reaped before it is removed anyway.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// A unique exec id: containerd keeps them per task, and a try-mode check and the boot gate
/// may probe the same container at once. The probe's name is left out: containerd allows
/// fewer characters, and fewer arrangements of `-`, than a settings name has.
fn exec_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "health-probe-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs probe `probe`'s `command` in host container `container`; the reason it failed.
/// Blocking: it drives its own single-threaded runtime.
pub(crate) fn run(
    containerd: &HostContainerd,
    probe: &str,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot be run: {e}"))?;
    runtime.block_on(run_async(containerd, probe, container, command, timeout))
}

async fn run_async(
    containerd: &HostContainerd,
    probe: &str,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let shown = command.join(" ");
    let start = Instant::now();
    let late = || {
        format!(
            "did not finish within {} s (`{shown}` in host container {container}); it was killed",
            timeout.as_secs_f64()
        )
    };
    let client = tokio::time::timeout(
        timeout,
        Containerd::connect(&containerd.socket, &containerd.namespace),
    )
    .await
    .map_err(|_| {
        format!(
            "cannot run `{shown}`: the host containerd at {} did not answer within {} s",
            containerd.socket.display(),
            timeout.as_secs_f64()
        )
    })?
    .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let id = exec_id();
    let left = timeout.saturating_sub(start.elapsed());
    let outcome = tokio::time::timeout(left, exec_and_wait(&client, container, command, &id)).await;
    let result = match outcome {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "exited with status {status} (`{shown}` in host container {container})"
        )),
        Ok(Err(reason)) => Err(reason),
        Err(_) => {
            if let Err(e) = client
                .kill_exec(container, &id, nix::sys::signal::Signal::SIGKILL as u32)
                .await
            {
                tracing::warn!("health probe {probe}: cannot kill {id}: {e}");
            }
            let _ = tokio::time::timeout(KILL_GRACE, client.wait_exec(container, &id)).await;
            Err(late())
        }
    };
    if let Err(e) = client.delete_exec(container, &id).await {
        tracing::warn!("health probe {probe}: cannot remove {id} from {container}: {e}");
    }
    result
}

/// Starts `command` in the running task of `container` as exec `id` and waits for its exit
/// status.
async fn exec_and_wait(
    client: &Containerd,
    container: &str,
    command: &[String],
    id: &str,
) -> Result<u32, String> {
    let spec = match client.container_spec(container).await {
        Ok(spec) => spec,
        Err(e) if e.is_not_found() => {
            return Err(format!(
                "cannot run: there is no host container '{container}' in the host containerd \
                 (settings.host-containers.{container})"
            ))
        }
        Err(e) => return Err(format!("cannot run: {e}")),
    };
    if !client
        .task_running(container)
        .await
        .map_err(|e| format!("cannot run: {e}"))?
    {
        return Err(format!(
            "cannot run: host container '{container}' is not running (see `apiclient status`, \
             host-containers@{container})"
        ));
    }
    let process = ctr_client::exec_process(&spec, command).ok_or_else(|| {
        format!("cannot run: the runtime spec of host container '{container}' has no process")
    })?;
    let io = ctr_client::ExecIo {
        stdin: None,
        stdout: None,
        stderr: None,
        terminal: false,
    };
    client
        .exec(container, id, &process, &io)
        .await
        .map_err(|e| format!("cannot run `{}`: {e}", command.join(" ")))?;
    client
        .wait_exec(container, id)
        .await
        .map_err(|e| format!("was lost: {e}"))
}
