//! Handing changed keys to the renderer. The API server does not render files itself: it runs
//! the renderer command (`--apply-command`) with the changed keys as a JSON array on stdin, or
//! with `--all` to render everything. Requests are queued and run one at a time, in order, so
//! two renderers never race on the same files; the HTTP answer does not wait for them.
//!
//! Whatever reads rendered files (the updater reads its repository URLs from its rendered
//! configuration) must not run on files an earlier commit has not reached yet, so
//! [`Applier::settled`] waits until every apply queued before it has finished.

use crate::error::ApiError;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// What to render: some keys, or everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyRequest {
    Keys(Vec<String>),
    All,
}

/// One entry in the worker's queue.
#[derive(Debug)]
enum Job {
    Apply(ApplyRequest),
    /// Answered when the worker reaches it, i.e. after every earlier apply has finished.
    Barrier(oneshot::Sender<()>),
}

/// How long [`Applier::settled`] waits for earlier applies before giving up.
pub const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a dry run may take before the server gives up on it.
const DRY_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A handle to the queue of apply requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Applier {
    queue: Option<mpsc::UnboundedSender<Job>>,
    command: Option<PathBuf>,
    socket: PathBuf,
}

impl Applier {
    /// Starts the worker that runs `command` for each request. With `None`, applies are accepted
    /// and logged but nothing runs (for a store without a renderer, such as a build host).
    /// The renderer reads settings back through `socket`.
    pub fn start(command: Option<PathBuf>, socket: PathBuf) -> Applier {
        let Some(command) = command else {
            return Applier {
                queue: None,
                command: None,
                socket,
            };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let worker_command = command.clone();
        let worker_socket = socket.clone();
        tokio::spawn(async move {
            let command = worker_command;
            while let Some(job) = rx.recv().await {
                let request = match job {
                    Job::Apply(request) => request,
                    Job::Barrier(done) => {
                        // The waiter may have given up; nothing to tell it then.
                        let _ = done.send(());
                        continue;
                    }
                };
                if let Err(e) = run(&command, &worker_socket, &request).await {
                    tracing::error!(
                        "applying {request:?} with {} failed: {e}",
                        command.display()
                    );
                }
            }
        });
        Applier {
            queue: Some(tx),
            command: Some(command),
            socket,
        }
    }

    /// Asks the renderer what committing transaction `tx` would change (settings, services,
    /// file diffs) without changing anything, and returns its JSON answer.
    pub async fn dry_run(&self, tx: &str) -> Result<api_types::preview::Preview, ApiError> {
        let Some(command) = &self.command else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "this API server has no renderer configured (--apply-command), so it cannot \
                 preview changes"
                    .to_string(),
            ));
        };
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(["--dry-run", "--tx", tx])
            .env(constants::API_SOCKET_ENV, &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            ApiError::internal(format!("cannot start renderer {}: {e}", command.display()))
        })?;
        let output = tokio::time::timeout(DRY_RUN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                ApiError::internal(format!(
                    "renderer {} did not finish the dry run within {} s",
                    command.display(),
                    DRY_RUN_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| ApiError::internal(format!("renderer {}: {e}", command.display())))?;
        if !output.status.success() {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the dry run failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            ApiError::internal(format!(
                "renderer {} printed something that is not a dry-run preview: {e}",
                command.display()
            ))
        })
    }

    /// Queues an apply of `keys` (everything when `None`).
    pub fn apply(&self, keys: Option<Vec<String>>) -> Result<(), ApiError> {
        let request = keys.map_or(ApplyRequest::All, ApplyRequest::Keys);
        match &self.queue {
            None => {
                tracing::info!("no renderer configured; not applying {request:?}");
                Ok(())
            }
            Some(queue) => queue
                .send(Job::Apply(request))
                .map_err(|_| worker_stopped()),
        }
    }

    /// Waits until every apply queued before this call has finished (successfully or not), so
    /// that the rendered files reflect every commit answered so far. Gives up with 503 after
    /// `timeout`, since a renderer that hangs must not hang its callers with it.
    pub async fn settled(&self, timeout: std::time::Duration) -> Result<(), ApiError> {
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let (done, wait) = oneshot::channel();
        queue
            .send(Job::Barrier(done))
            .map_err(|_| worker_stopped())?;
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(worker_stopped()),
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "settings committed earlier are still being applied after {} s; check the \
                     apiserver journal for a renderer that hangs, then try again",
                    timeout.as_secs()
                ),
            )),
        }
    }
}

fn worker_stopped() -> ApiError {
    ApiError::internal("the apply worker has stopped; restart the API server")
}

async fn run(command: &PathBuf, socket: &PathBuf, request: &ApplyRequest) -> std::io::Result<()> {
    let mut cmd = tokio::process::Command::new(command);
    cmd.env(constants::API_SOCKET_ENV, socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if *request == ApplyRequest::All {
        cmd.arg("--all");
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        if let ApplyRequest::Keys(keys) = request {
            let text = serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_string());
            // A renderer that does not read its input (e.g. `--all` only) closes the pipe
            // early; that is its business, not an apply failure.
            match stdin.write_all(text.as_bytes()).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
        }
        drop(stdin);
    }
    let output = child.wait_with_output().await?;
    if output.status.success() {
        tracing::info!("applied {request:?}");
    } else {
        tracing::error!(
            "renderer {} exited with {} for {request:?}: {}",
            command.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
