//! A containerd connection as Ballast uses it: every request carries a namespace (the host
//! containers', the bootstrap containers' or a test's own) and, while an image is pulled, the
//! lease that keeps its blobs and snapshots from the garbage collector.
//!
//! # Background
//!
//! Three programs drive the host containerd (socket `constants::HOST_CONTAINERD_SOCKET`):
//! `host-ctr` creates and runs host and bootstrap containers; the API server adds processes to
//! their running tasks (`apiclient exec`), and so does the health check for its command probes
//! (in the API server during a try, in `health-gate` at boot). They share this crate, which
//! knows only containerd: no registry, no image format, no settings. `host-ctr` adds its pull (content
//! store, image records, the diff service) over [`Containerd::channel`] and
//! [`Containerd::request`].
//!
//! # Usage
//!
//! ```no_run
//! # async fn f() -> ctr_client::Result<()> {
//! use ctr_client::{Containerd, ExecIo};
//! let socket = std::path::Path::new("/run/host-containerd/containerd.sock");
//! let containerd = Containerd::connect(socket, "ballast-host").await?;
//! if containerd.task_running("admin").await? {
//!     let spec = containerd.container_spec("admin").await?;
//!     let process = ctr_client::exec_process(&spec, &["true".to_string()]).unwrap();
//!     let io = ExecIo { stdin: None, stdout: None, stderr: None, terminal: false };
//!     containerd.exec("admin", "probe-1", &process, &io).await?;
//!     let status = containerd.wait_exec("admin", "probe-1").await?;
//!     containerd.delete_exec("admin", "probe-1").await?;
//!     println!("exit {status}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Current limitations
//!
//! * One snapshotter ([`SNAPSHOTTER`]) and one runtime ([`RUNTIME`]), the ones host
//!   containers use.
//! * Exec stdio is FIFOs the caller makes; this crate does not copy any bytes.
#![forbid(unsafe_code)]

pub mod error;

pub use error::{Error, Result};

use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, CommitSnapshotRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    containers_client::ContainersClient, leases_client::LeasesClient, tasks_client::TasksClient,
    CloseIoRequest, Container, CreateContainerRequest, CreateRequest as CreateLeaseRequest,
    CreateTaskRequest, DeleteContainerRequest, DeleteProcessRequest,
    DeleteRequest as DeleteLeaseRequest, DeleteTaskRequest, ExecProcessRequest,
    GetContainerRequest, GetRequest as GetTaskRequest, KillRequest, ResizePtyRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::{transport::Channel, Code, Request};
pub use containerd_client::types::Mount;
use error::refused;
use snafu::ResultExt;
use std::collections::HashMap;
use std::path::Path;

/// The snapshotter host containers use (overlayfs on the ext4 data partition).
pub const SNAPSHOTTER: &str = "overlayfs";

/// The runtime of every host container task.
pub const RUNTIME: &str = "io.containerd.runc.v2";

/// The `Any` type URL containerd expects for an OCI runtime spec.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The `Any` type URL containerd expects for the process spec of an exec.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// A connection to the host containerd.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    lease: Option<String>,
}

impl Containerd {
    /// Connects to the socket; `namespace` scopes every request.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Containerd> {
        let channel = containerd_client::connect(socket)
            .await
            .context(error::ConnectSnafu { path: socket })?;
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
            lease: None,
        })
    }

    /// The gRPC channel, for the services this crate does not wrap (content, images, diff).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `message` as a request in this client's namespace (and lease, if any).
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        if let Ok(value) = self.namespace.parse() {
            metadata.insert("containerd-namespace", value);
        }
        if let Some(lease) = self.lease.as_deref().and_then(|l| l.parse().ok()) {
            metadata.insert("containerd-lease", lease);
        }
        request
    }

    /// Creates lease `id` (replacing a stale one a crashed pull left) and returns a client
    /// whose requests are made under it.
    pub async fn with_lease(&self, id: &str) -> Result<Containerd> {
        let mut leases = LeasesClient::new(self.channel.clone());
        let _ = leases
            .delete(self.request(DeleteLeaseRequest {
                id: id.to_string(),
                sync: false,
            }))
            .await;
        leases
            .create(self.request(CreateLeaseRequest {
                id: id.to_string(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(refused(format!("creating lease {id}")))?;
        Ok(Containerd {
            lease: Some(id.to_string()),
            ..self.clone()
        })
    }

    /// Ends the lease this client was made with; what the image refers to stays.
    pub async fn release(&self) -> Result<()> {
        if let Some(id) = &self.lease {
            let mut plain = self.clone();
            plain.lease = None;
            LeasesClient::new(self.channel.clone())
                .delete(plain.request(DeleteLeaseRequest {
                    id: id.clone(),
                    sync: false,
                }))
                .await
                .map_err(refused(format!("deleting lease {id}")))?;
        }
        Ok(())
    }

    /// Whether snapshot `key` exists.
    pub async fn has_snapshot(&self, key: &str) -> Result<bool> {
        let result = SnapshotsClient::new(self.channel.clone())
            .stat(self.request(StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            }))
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(refused(format!("looking up snapshot {key}"))(status)),
        }
    }

    /// Prepares an active snapshot `key` on `parent` (empty: none) and returns its mounts.
    pub async fn prepare_snapshot(&self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        Ok(SnapshotsClient::new(self.channel.clone())
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(refused(format!("preparing snapshot {key}")))?
            .into_inner()
            .mounts)
    }

    /// The mounts of active snapshot `key`.
    pub async fn snapshot_mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Ok(SnapshotsClient::new(self.channel.clone())
            .mounts(self.request(MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            }))
            .await
            .map_err(refused(format!("reading the mounts of snapshot {key}")))?
            .into_inner()
            .mounts)
    }

    /// Commits active snapshot `key` as `name`.
    pub async fn commit_snapshot(&self, key: &str, name: &str) -> Result<()> {
        SnapshotsClient::new(self.channel.clone())
            .commit(self.request(CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: name.to_string(),
                key: key.to_string(),
                labels: HashMap::new(),
            }))
            .await
            .map_err(refused(format!("committing snapshot {name}")))?;
        Ok(())
    }

    /// Removes snapshot `key`; a missing one is not an error.
    pub async fn remove_snapshot(&self, key: &str) -> Result<()> {
        match SnapshotsClient::new(self.channel.clone())
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            }))
            .await
        {
            Err(status) if status.code() != Code::NotFound => {
                Err(refused(format!("removing snapshot {key}"))(status))
            }
            _ => Ok(()),
        }
    }

    /// Creates container `id` from `image` with runtime spec `spec` on snapshot `id`.
    pub async fn create_container(
        &self,
        id: &str,
        image: &str,
        spec: &serde_json::Value,
    ) -> Result<()> {
        let container = Container {
            id: id.to_string(),
            image: image.to_string(),
            runtime: Some(containerd_client::services::v1::container::Runtime {
                name: RUNTIME.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec.to_string().into_bytes(),
            }),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        ContainersClient::new(self.channel.clone())
            .create(self.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await
            .map_err(refused(format!("creating container {id}")))?;
        Ok(())
    }

    /// Deletes container `id`; a missing one is not an error.
    pub async fn delete_container(&self, id: &str) -> Result<()> {
        match ContainersClient::new(self.channel.clone())
            .delete(self.request(DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Err(status) if status.code() != Code::NotFound => {
                Err(refused(format!("deleting container {id}"))(status))
            }
            _ => Ok(()),
        }
    }

    /// Creates and starts the task of container `id` on `rootfs`, its output into the FIFOs
    /// `stdout` and `stderr`; returns its PID.
    pub async fn start_task(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        stdout: &Path,
        stderr: &Path,
    ) -> Result<u32> {
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .create(self.request(CreateTaskRequest {
                container_id: id.to_string(),
                rootfs,
                stdout: stdout.display().to_string(),
                stderr: stderr.display().to_string(),
                ..Default::default()
            }))
            .await
            .map_err(refused(format!("creating the task of {id}")))?;
        let started = tasks
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                ..Default::default()
            }))
            .await
            .map_err(refused(format!("starting the task of {id}")))?;
        Ok(started.into_inner().pid)
    }

    /// Waits for the task of `id` to exit; returns its exit status.
    pub async fn wait_task(&self, id: &str) -> Result<u32> {
        Ok(TasksClient::new(self.channel.clone())
            .wait(self.request(WaitRequest {
                container_id: id.to_string(),
                ..Default::default()
            }))
            .await
            .map_err(refused(format!("waiting for the task of {id}")))?
            .into_inner()
            .exit_status)
    }

    /// Sends `signal` to every process of the task of `id`; a missing task is not an error.
    pub async fn kill_task(&self, id: &str, signal: u32) -> Result<()> {
        match TasksClient::new(self.channel.clone())
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                signal,
                all: true,
                ..Default::default()
            }))
            .await
        {
            Err(status) if status.code() != Code::NotFound => {
                Err(refused(format!("signalling the task of {id}"))(status))
            }
            _ => Ok(()),
        }
    }

    /// Deletes the (stopped) task of `id`; a missing one is not an error.
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        match TasksClient::new(self.channel.clone())
            .delete(self.request(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
        {
            Err(status) if status.code() != Code::NotFound => {
                Err(refused(format!("deleting the task of {id}"))(status))
            }
            _ => Ok(()),
        }
    }

    /// The OCI runtime spec container `id` was created with.
    pub async fn container_spec(&self, id: &str) -> Result<serde_json::Value> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(refused(format!("looking up container {id}")))?
            .into_inner()
            .container
            .unwrap_or_default();
        let spec = container.spec.unwrap_or_default();
        serde_json::from_slice(&spec.value).context(error::ContainerSpecSnafu { id })
    }

    /// Whether the task of container `id` is running (a missing task is not).
    pub async fn task_running(&self, id: &str) -> Result<bool> {
        let result = TasksClient::new(self.channel.clone())
            .get(self.request(GetTaskRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        match result {
            Ok(response) => Ok(response
                .into_inner()
                .process
                .is_some_and(|p| p.status == containerd_client::types::v1::Status::Running as i32)),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(refused(format!("looking up the task of {id}"))(status)),
        }
    }

    /// Adds process `exec_id` (OCI process spec `process`) to the task of container `id`,
    /// with its stdio on the FIFOs of `io`, and starts it; returns its PID.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        io: &ExecIo<'_>,
    ) -> Result<u32> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let path = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
        tasks
            .exec(self.request(ExecProcessRequest {
                container_id: id.to_string(),
                stdin: path(io.stdin),
                stdout: path(io.stdout),
                stderr: path(io.stderr),
                terminal: io.terminal,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_string(),
                    value: process.to_string().into_bytes(),
                }),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(refused(format!(
                "adding process {exec_id} to the task of {id}"
            )))?;
        let started = tasks
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(refused(format!("starting process {exec_id} in {id}")))?;
        Ok(started.into_inner().pid)
    }

    /// Waits for process `exec_id` of the task of `id` to exit; returns its exit status.
    pub async fn wait_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        Ok(TasksClient::new(self.channel.clone())
            .wait(self.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(refused(format!("waiting for process {exec_id} in {id}")))?
            .into_inner()
            .exit_status)
    }

    /// Resizes the pseudo-terminal of process `exec_id` of the task of `id`.
    pub async fn resize_exec(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        TasksClient::new(self.channel.clone())
            .resize_pty(self.request(ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            }))
            .await
            .map_err(refused(format!(
                "resizing the terminal of process {exec_id} in {id}"
            )))?;
        Ok(())
    }

    /// Closes the stdin of process `exec_id` of the task of `id`.
    pub async fn close_exec_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        TasksClient::new(self.channel.clone())
            .close_io(self.request(CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await
            .map_err(refused(format!(
                "closing the stdin of process {exec_id} in {id}"
            )))?;
        Ok(())
    }

    /// Sends `signal` to process `exec_id` of the task of `id`; a missing one is not an error.
    pub async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        match TasksClient::new(self.channel.clone())
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all: false,
            }))
            .await
        {
            Err(status) if status.code() != Code::NotFound => Err(refused(format!(
                "signalling process {exec_id} in {id}"
            ))(status)),
            _ => Ok(()),
        }
    }

    /// Removes the (exited) process `exec_id` from the task of `id`; a missing one is not an
    /// error.
    pub async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<()> {
        match TasksClient::new(self.channel.clone())
            .delete_process(self.request(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
        {
            Err(status) if status.code() != Code::NotFound => Err(refused(format!(
                "deleting process {exec_id} in {id}"
            ))(status)),
            _ => Ok(()),
        }
    }
}

/// The process spec of a process added to a running container: the container's own process
/// (user, working directory, environment, capabilities) running `command`, without a
/// terminal. `None` when `container_spec` (an OCI runtime spec, see
/// [`Containerd::container_spec`]) has no process.
pub fn exec_process(
    container_spec: &serde_json::Value,
    command: &[String],
) -> Option<serde_json::Value> {
    let mut process = container_spec
        .get("process")
        .cloned()
        .filter(serde_json::Value::is_object)?;
    process["args"] = serde_json::json!(command);
    process["terminal"] = serde_json::json!(false);
    if let Some(object) = process.as_object_mut() {
        object.remove("consoleSize");
    }
    Some(process)
}

/// Where the stdio of an exec'd process goes: FIFOs (`None`: not connected). With `terminal`
/// the process gets a pseudo-terminal whose output all goes to `stdout`; `stderr` must be
/// `None` then.
#[derive(Debug, Clone, Copy)]
pub struct ExecIo<'a> {
    pub stdin: Option<&'a Path>,
    pub stdout: Option<&'a Path>,
    pub stderr: Option<&'a Path>,
    pub terminal: bool,
}
