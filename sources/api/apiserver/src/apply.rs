//! Handing changed keys to the renderer. The API server does not render files itself: it runs
//! the renderer command (`--apply-command`) with the changed keys as a JSON array on stdin, or
//! with `--all` to render everything. Requests are queued and run one at a time, in order, so
//! two renderers never race on the same files; the HTTP answer does not wait for them.

use crate::error::ApiError;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// What to render: some keys, or everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyRequest {
    Keys(Vec<String>),
    All,
}

/// A handle to the queue of apply requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Applier {
    queue: Option<mpsc::UnboundedSender<ApplyRequest>>,
}

impl Applier {
    /// Starts the worker that runs `command` for each request. With `None`, applies are accepted
    /// and logged but nothing runs (for a store without a renderer, such as a build host).
    pub fn start(command: Option<PathBuf>) -> Applier {
        let Some(command) = command else {
            return Applier { queue: None };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<ApplyRequest>();
        tokio::spawn(async move {
            while let Some(request) = rx.recv().await {
                if let Err(e) = run(&command, &request).await {
                    tracing::error!(
                        "applying {request:?} with {} failed: {e}",
                        command.display()
                    );
                }
            }
        });
        Applier { queue: Some(tx) }
    }

    /// Queues an apply of `keys` (everything when `None`).
    pub fn apply(&self, keys: Option<Vec<String>>) -> Result<(), ApiError> {
        let request = keys.map_or(ApplyRequest::All, ApplyRequest::Keys);
        match &self.queue {
            None => {
                tracing::info!("no renderer configured; not applying {request:?}");
                Ok(())
            }
            Some(queue) => queue.send(request).map_err(|_| {
                ApiError::internal("the apply worker has stopped; restart the API server")
            }),
        }
    }
}

async fn run(command: &PathBuf, request: &ApplyRequest) -> std::io::Result<()> {
    let mut cmd = tokio::process::Command::new(command);
    cmd.stdin(Stdio::piped())
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
