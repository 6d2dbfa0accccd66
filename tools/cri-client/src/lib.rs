//! # Background
//!
//! A Ballast node serves the Kubernetes Container Runtime Interface (CRI) on the workload
//! containerd's socket ([`constants::CONTAINERD_SOCKET`]); kubelet, or any other CRI client,
//! runs pods through it. Debian 12 has no kubelet, so the tests play its part with this crate:
//! it speaks CRI v1 (containerd 1.6 serves `runtime.v1`) with the `k8s-cri` crate's generated
//! clients over the Unix socket, in the order kubelet does for a pod:
//! pull the image, `RunPodSandbox` (which starts the pause container), `CreateContainer`,
//! `StartContainer`, `ContainerStatus` until it has exited, the container's log file, then
//! `StopPodSandbox` and `RemovePodSandbox`.
//!
//! Pods share the node's network namespace, as host-network pods do, so no CNI plugin is
//! needed. Image pulls carry credentials only when given ([`Auth`]); otherwise the runtime uses
//! its own (`settings.container-registry.credentials`), as for kubelet without a pull secret.
//!
//! # Library
//!
//! ```no_run
//! # async fn f() -> cri_client::Result<()> {
//! use cri_client::{Cri, ContainerRequest, PodRequest};
//! use std::time::Duration;
//!
//! let mut cri = Cri::connect("/run/containerd/containerd.sock".as_ref()).await?;
//! let image = "registry.example/ballast/test-workload:0.1.0";
//! cri.pull(image, None).await?;
//! let pod = cri.run_pod(&PodRequest::new("demo", "/var/log/pods/default_demo_1")).await?;
//! let id = cri.create_container(&pod, &ContainerRequest::new("main", image)).await?;
//! cri.start_container(&id).await?;
//! let status = cri.wait_for_exit(&id, Duration::from_secs(30)).await?;
//! println!("exit code {:?}, log at {}", status.exit_code, status.log_path);
//! cri.remove_pod(&pod.id).await?;
//! # Ok(()) }
//! ```
//!
//! [`parse_log`] reads the CRI log format containerd writes (`TIME STREAM TAG TEXT`, with
//! partial lines joined). The `cri-client` binary wraps one whole run (`cri-client run`).
//!
//! # Current limitations
//!
//! * Host network only, no port mappings, no volumes, no exec/attach/port-forward streaming:
//!   what a test of the runtime's contract needs, not a kubelet.
//! * The log is a file on the node; a client on another machine (the VM test's host side)
//!   gets its path from [`ContainerState::log_path`] and reads it some other way.
//! * What the tests learnt of containerd 1.6 with it: no-new-privileges comes from the
//!   request alone ([`ContainerRequest::no_new_privs`]); the base spec's `noNewPrivileges` is
//!   overwritten for every container. An unknown image pulled through a mirror reports how
//!   the upstream registry failed (containerd tries it after the mirror's 404), not "not
//!   found".
//! * Pull errors are told apart by the runtime's message text (containerd wraps the registry's
//!   status in a gRPC `Unknown`), so another runtime may only ever give [`Error::Pull`].
#![forbid(unsafe_code)]

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use snafu::{ensure, ResultExt, Snafu};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info};

/// The CRI version this client asks for.
pub const CRI_VERSION: &str = "v1";

/// How long one request may take before the client gives up (an image pull included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong, one variant per thing the caller can do something about.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "Cannot connect to the CRI socket {}: {source}. Is containerd running with its CRI plugin?",
        socket.display()
    ))]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },

    #[snafu(display(
        "The registry refused the credentials for {image}: check the user name and password \
         (--username/--password, or settings.container-registry.credentials for the registry \
         or mirror host). The runtime said: {message}"
    ))]
    PullUnauthorized { image: String, message: String },

    #[snafu(display(
        "The image {image} does not exist in its registry or mirror: check its name and tag. \
         The runtime said: {message}"
    ))]
    PullNotFound { image: String, message: String },

    #[snafu(display("Cannot pull {image}: {message}"))]
    Pull { image: String, message: String },

    #[snafu(display("{call} failed ({code:?}): {message}"))]
    Call {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },

    #[snafu(display("{call} answered without {what}"))]
    Incomplete {
        call: &'static str,
        what: &'static str,
    },

    #[snafu(display(
        "Container {id} has not exited after {} s (state {state}); it still runs",
        waited.as_secs()
    ))]
    StillRunning {
        id: String,
        state: String,
        waited: Duration,
    },

    #[snafu(display("Cannot read the container log {}: {source}", path.display()))]
    ReadLog {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Line {line} of the container log is not in the CRI log format: '{text}'"))]
    BadLogLine { line: usize, text: String },
}

/// Registry credentials for one pull (a pull secret, in Kubernetes terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// The pod sandbox to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRequest {
    /// Pod name (with `namespace`, what the runtime names the sandbox after).
    pub name: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod UID; any unique text.
    pub uid: String,
    /// Where the runtime writes the logs of the pod's containers (kubelet uses
    /// `/var/log/pods/NAMESPACE_NAME_UID`).
    pub log_directory: PathBuf,
    /// Cgroup parent of the pod; empty lets the runtime choose (cgroupfs driver). With the
    /// systemd driver it is a slice, e.g. `kubepods.slice`.
    pub cgroup_parent: String,
}

impl PodRequest {
    /// A pod named `name` in namespace `default` with UID `name-uid`, logging to
    /// `log_directory`.
    pub fn new(name: &str, log_directory: &str) -> PodRequest {
        PodRequest {
            name: name.to_string(),
            namespace: "default".to_string(),
            uid: format!("{name}-uid"),
            log_directory: PathBuf::from(log_directory),
            cgroup_parent: String::new(),
        }
    }
}

/// Which seccomp profile a container asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seccomp {
    /// None named: the runtime's choice (Ballast's: its default profile).
    Unset,
    /// The runtime's default profile, by name.
    RuntimeDefault,
    /// No seccomp filter.
    Unconfined,
}

/// A container to create in a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequest {
    /// Container name, unique in the pod.
    pub name: String,
    /// Image reference, as pulled.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty.
    pub args: Vec<String>,
    /// The seccomp profile asked for.
    pub seccomp: Seccomp,
    /// Asks for no-new-privileges (kubelet does for `allowPrivilegeEscalation: false`).
    /// containerd 1.6 sets the flag from this alone, whatever its base spec says.
    pub no_new_privs: bool,
}

impl ContainerRequest {
    /// Container `name` of `image`, running the image's own command, seccomp unset.
    pub fn new(name: &str, image: &str) -> ContainerRequest {
        ContainerRequest {
            name: name.to_string(),
            image: image.to_string(),
            command: Vec::new(),
            args: Vec::new(),
            seccomp: Seccomp::Unset,
            no_new_privs: false,
        }
    }
}

/// A running pod sandbox: its ID and the configuration containers in it are created with.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The sandbox ID the runtime gave.
    pub id: String,
    config: cri::PodSandboxConfig,
}

/// What `ContainerStatus` says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// `CONTAINER_CREATED`, `CONTAINER_RUNNING`, `CONTAINER_EXITED` or `CONTAINER_UNKNOWN`.
    pub state: String,
    /// The exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it is in this state (`Completed`, `Error`, ...).
    pub reason: String,
    /// More about the reason, when the runtime says.
    pub message: String,
    /// The container's log file on the node.
    pub log_path: String,
}

/// A connection to a CRI runtime.
#[derive(Debug, Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// Turns a failed call into [`Error::Call`].
fn call_failed(call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |status| Error::Call {
        call,
        code: status.code(),
        message: status.message().to_string(),
    }
}

impl Cri {
    /// Connects to the runtime's Unix socket.
    pub async fn connect(socket: &Path) -> Result<Cri> {
        let path = socket.to_path_buf();
        // The URI is required by the API and ignored: every connection goes to the socket.
        let channel = Endpoint::from_static("http://[::]")
            .timeout(REQUEST_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .context(ConnectSnafu { socket })?;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The runtime's name, version and CRI API version (`Version`).
    pub async fn version(&mut self) -> Result<cri::VersionResponse> {
        let answer = self
            .runtime
            .version(cri::VersionRequest {
                version: CRI_VERSION.to_string(),
            })
            .await
            .map_err(call_failed("Version"))?;
        Ok(answer.into_inner())
    }

    /// Pulls `image` (`PullImage`), with `auth` when given, and returns the image's ID.
    pub async fn pull(&mut self, image: &str, auth: Option<&Auth>) -> Result<String> {
        info!("pulling {image}");
        let started = Instant::now();
        let request = cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth: auth.map(|a| cri::AuthConfig {
                username: a.username.clone(),
                password: a.password.clone(),
                ..Default::default()
            }),
            sandbox_config: None,
        };
        let answer = self
            .images
            .pull_image(request)
            .await
            .map_err(|status| pull_error(image, &status))?;
        let id = answer.into_inner().image_ref;
        info!("pulled {image} as {id} in {:.1?}", started.elapsed());
        Ok(id)
    }

    /// Removes `image` from the runtime (`RemoveImage`), so the next pull fetches it again.
    pub async fn remove_image(&mut self, image: &str) -> Result<()> {
        self.images
            .remove_image(cri::RemoveImageRequest {
                image: Some(image_spec(image)),
            })
            .await
            .map_err(call_failed("RemoveImage"))?;
        Ok(())
    }

    /// Runs a pod sandbox in the node's network namespace (`RunPodSandbox`); the runtime
    /// starts its pause container, pulling the pause image first if it must.
    pub async fn run_pod(&mut self, request: &PodRequest) -> Result<Pod> {
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: request.name.clone(),
                uid: request.uid.clone(),
                namespace: request.namespace.clone(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: request.log_directory.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: request.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let started = Instant::now();
        let answer = self
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(call_failed("RunPodSandbox"))?;
        let id = answer.into_inner().pod_sandbox_id;
        ensure!(
            !id.is_empty(),
            IncompleteSnafu {
                call: "RunPodSandbox",
                what: "a sandbox ID"
            }
        );
        info!(
            "pod {} runs as sandbox {id} ({:.1?})",
            request.name,
            started.elapsed()
        );
        Ok(Pod { id, config })
    }

    /// Creates a container in `pod` (`CreateContainer`) and returns its ID. Its log goes to
    /// `NAME/0.log` in the pod's log directory.
    pub async fn create_container(
        &mut self,
        pod: &Pod,
        request: &ContainerRequest,
    ) -> Result<String> {
        let seccomp = match request.seccomp {
            Seccomp::Unset => None,
            Seccomp::RuntimeDefault => Some(cri::security_profile::ProfileType::RuntimeDefault),
            Seccomp::Unconfined => Some(cri::security_profile::ProfileType::Unconfined),
        }
        .map(|profile| cri::SecurityProfile {
            profile_type: profile as i32,
            localhost_ref: String::new(),
        });
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: request.name.clone(),
                attempt: 0,
            }),
            image: Some(image_spec(&request.image)),
            command: request.command.clone(),
            args: request.args.clone(),
            log_path: format!("{}/0.log", request.name),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    seccomp,
                    no_new_privs: request.no_new_privs,
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = self
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .map_err(call_failed("CreateContainer"))?;
        let id = answer.into_inner().container_id;
        debug!("created container {} as {id}", request.name);
        Ok(id)
    }

    /// Starts a created container (`StartContainer`).
    pub async fn start_container(&mut self, id: &str) -> Result<()> {
        self.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map_err(call_failed("StartContainer"))?;
        debug!("started container {id}");
        Ok(())
    }

    /// The container's state (`ContainerStatus`).
    pub async fn status(&mut self, id: &str) -> Result<ContainerState> {
        let answer = self
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .map_err(call_failed("ContainerStatus"))?;
        let status = answer.into_inner().status.ok_or(Error::Incomplete {
            call: "ContainerStatus",
            what: "a status",
        })?;
        let state = cri::ContainerState::try_from(status.state)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| format!("state {}", status.state));
        let exited = status.state == cri::ContainerState::ContainerExited as i32;
        Ok(ContainerState {
            state,
            exit_code: exited.then_some(status.exit_code),
            reason: status.reason,
            message: status.message,
            log_path: status.log_path,
        })
    }

    /// Polls [`Cri::status`] until the container has exited, for at most `timeout`.
    pub async fn wait_for_exit(&mut self, id: &str, timeout: Duration) -> Result<ContainerState> {
        let started = Instant::now();
        loop {
            let status = self.status(id).await?;
            if status.exit_code.is_some() {
                return Ok(status);
            }
            ensure!(
                started.elapsed() < timeout,
                StillRunningSnafu {
                    id,
                    state: status.state,
                    waited: timeout,
                }
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the pod's containers and its sandbox (`StopPodSandbox`), then removes them
    /// (`RemovePodSandbox`).
    pub async fn remove_pod(&mut self, pod_id: &str) -> Result<()> {
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await
            .map_err(call_failed("StopPodSandbox"))?;
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await
            .map_err(call_failed("RemovePodSandbox"))?;
        info!("removed pod sandbox {pod_id}");
        Ok(())
    }

    /// The IDs of the pod sandboxes the runtime knows (`ListPodSandbox`).
    pub async fn pod_ids(&mut self) -> Result<Vec<String>> {
        let answer = self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(call_failed("ListPodSandbox"))?;
        Ok(answer
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect())
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// Tells a refused pull's causes apart by containerd's message: the registry's 401 and 404
/// (or "not found" from the resolver) are worth their own advice.
fn pull_error(image: &str, status: &tonic::Status) -> Error {
    let message = status.message().to_string();
    let image = image.to_string();
    if message.contains("401 Unauthorized") || message.contains("unauthorized") {
        Error::PullUnauthorized { image, message }
    } else if message.contains("not found") || message.contains("404 Not Found") {
        Error::PullNotFound { image, message }
    } else {
        Error::Pull { image, message }
    }
}

/// One line of a container's output, from its CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the runtime read it (RFC 3339 with nanoseconds).
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without the newline; partial records joined.
    pub text: String,
}

/// Parses a CRI log file: one record per line, `TIME STREAM TAG TEXT`, where the tag `P` marks
/// a record continued by the next one of the same stream (a long line split by the runtime)
/// and `F` the last record of a line.
pub fn parse_log(text: &str) -> Result<Vec<LogLine>> {
    let mut lines: Vec<LogLine> = Vec::new();
    let mut open: Option<LogLine> = None;
    for (index, record) in text.lines().enumerate() {
        let bad = || Error::BadLogLine {
            line: index + 1,
            text: record.to_string(),
        };
        let mut parts = record.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let body = parts.next().unwrap_or_default();
        let partial = tag.split(':').next() == Some("P");
        ensure!(
            partial || tag.split(':').next() == Some("F"),
            BadLogLineSnafu {
                line: index + 1,
                text: record,
            }
        );
        match open.as_mut() {
            Some(line) if line.stream == stream => line.text.push_str(body),
            _ => {
                if let Some(line) = open.take() {
                    lines.push(line);
                }
                open = Some(LogLine {
                    time: time.to_string(),
                    stream: stream.to_string(),
                    text: body.to_string(),
                });
            }
        }
        if !partial {
            lines.extend(open.take());
        }
    }
    lines.extend(open);
    Ok(lines)
}

/// Reads and parses the log file at `path` (see [`parse_log`]).
pub fn read_log(path: &Path) -> Result<Vec<LogLine>> {
    let text = std::fs::read_to_string(path).context(ReadLogSnafu { path })?;
    parse_log(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_are_split_and_partial_ones_joined() {
        let text = "2026-12-08T00:00:00.000000001Z stdout F ballast test workload started\n\
                    2026-12-08T00:00:00.000000002Z stderr P unshare: \n\
                    2026-12-08T00:00:00.000000003Z stdout F between\n\
                    2026-12-08T00:00:00.000000004Z stderr F failed\n\
                    2026-12-08T00:00:00.000000005Z stdout F \n";
        let lines = parse_log(text).unwrap();
        let texts: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.stream.as_str(), l.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("stdout", "ballast test workload started"),
                ("stderr", "unshare: "),
                ("stdout", "between"),
                ("stderr", "failed"),
                ("stdout", ""),
            ]
        );
        let joined =
            parse_log("t stdout P abc\nt stdout P def\nt stdout F ghi\nt stdout F next\n").unwrap();
        assert_eq!(joined[0].text, "abcdefghi");
        assert_eq!(joined[1].text, "next");
    }

    #[test]
    fn a_record_that_is_not_cri_is_named() {
        let err = parse_log("t stdout F ok\nplain text\n").unwrap_err();
        assert!(
            err.to_string().contains("Line 2") && err.to_string().contains("plain text"),
            "{err}"
        );
        let err = parse_log("t stdout X text\n").unwrap_err();
        assert!(err.to_string().contains("Line 1"), "{err}");
    }

    #[test]
    fn pull_errors_are_told_apart() {
        let status = |m: &str| tonic::Status::unknown(m.to_string());
        let unauthorized = pull_error("r/a:1", &status("failed to pull and unpack image \"r/a:1\": failed to resolve reference \"r/a:1\": pulling from host 127.0.0.1:5000 failed with status code [manifests 1]: 401 Unauthorized"));
        assert!(matches!(unauthorized, Error::PullUnauthorized { .. }));
        assert!(unauthorized.to_string().contains("--username/--password"));
        let missing = pull_error(
            "r/a:1",
            &status("failed to resolve reference \"r/a:1\": r/a:1: not found"),
        );
        assert!(matches!(missing, Error::PullNotFound { .. }));
        let other = pull_error("r/a:1", &status("connection refused"));
        assert!(matches!(other, Error::Pull { .. }));
    }
}
