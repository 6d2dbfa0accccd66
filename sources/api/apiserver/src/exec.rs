//! `GET /exec`: a command inside a running host container, over a WebSocket (the protocol is
//! `api_types::exec`). The session reads the client's `Initialize`, looks the target up on the
//! host containerd (`--exec-socket-path`, namespace `--exec-namespace`; the container id is the
//! host container's name), adds a process to the container's running task through containerd's
//! Tasks.Exec with the container's own process spec (cwd, env, user) and the command as its
//! arguments, and connects its stdio through FIFOs in a directory of its own under
//! `--exec-fifo-dir`, which containerd's shim opens. With a terminal the process gets a
//! pseudo-terminal (resized on `Winch`) and all its output comes through stdout.
//!
//! The session ends with a Close frame: `exit N` once the process has exited and its output is
//! sent, or `error: SENTENCE` when it could not run (an unknown target, a stopped one, a
//! containerd that does not answer). A client that goes away, or stays silent for
//! `PEER_TIMEOUT_SECS`, gets its process killed; the process is always removed from the task.

use api_types::exec::{
    ClientMessage, CloseReason, ServerMessage, TtySize, MAX_MESSAGES_OUTSTANDING,
    PEER_TIMEOUT_SECS, PING_INTERVAL_SECS,
};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use ctr_client::{Containerd, ExecIo};
use futures::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where exec sessions find the host containers and put their FIFOs.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The host containerd's socket.
    pub socket: PathBuf,
    /// The containerd namespace of the host containers.
    pub namespace: String,
    /// One directory per session is made below this one for the process's FIFOs.
    pub fifo_dir: PathBuf,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            socket: constants::HOST_CONTAINERD_SOCKET.into(),
            namespace: constants::HOST_CONTAINERD_NAMESPACE.into(),
            fifo_dir: DEFAULT_FIFO_DIR.into(),
        }
    }
}

/// The default of `--exec-fifo-dir`: in the unit's runtime directory, which the host
/// containerd's shim can open too (both see the same /run).
pub const DEFAULT_FIFO_DIR: &str = "/run/apiserver/exec";

/// After the process exits, how long its output may still take to drain (a background child
/// that keeps stdout open would otherwise hold the session for ever).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Bytes per output frame.
const OUTPUT_CHUNK: usize = 32 * 1024;

/// Send a Capacity update after this many stdin frames are written.
const CAPACITY_EVERY: u64 = 16;

/// The close code of a session that could not run its process (RFC 6455: internal error).
const CLOSE_FAILED: u16 = 1011;
/// The close code of a session whose process exited.
const CLOSE_NORMAL: u16 = 1000;

/// Runs one exec session on an upgraded socket, until the process exits or the client leaves.
pub async fn session(socket: WebSocket, config: Arc<ExecConfig>) {
    let (sink, mut incoming) = socket.split();
    let (out, out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(write_frames(sink, out_rx));
    let reason = match initialize(&mut incoming).await {
        Ok((target, command, tty)) => {
            tracing::info!("exec in host container {target}: {command:?}");
            match Exec::start(&config, &target, &command, tty).await {
                Ok(exec) => exec.run(&mut incoming, &out).await,
                Err(message) => CloseReason::Failed(message),
            }
        }
        Err(message) => CloseReason::Failed(message),
    };
    if let CloseReason::Failed(message) = &reason {
        tracing::warn!("exec session failed: {message}");
        // In full: the Close frame's reason has room for 123 bytes only.
        let failed = ServerMessage::Failed {
            message: message.clone(),
        };
        let _ = out
            .send(Message::Text(Utf8Bytes::from(
                serde_json::to_string(&failed).unwrap_or_default(),
            )))
            .await;
    }
    let code = match reason {
        CloseReason::Exit(_) => CLOSE_NORMAL,
        CloseReason::Failed(_) => CLOSE_FAILED,
    };
    let _ = out
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason.encode()),
        })))
        .await;
    drop(out);
    let _ = writer.await;
}

/// Sends the frames queued on `frames` until the Close frame or until the client is gone.
async fn write_frames(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Message>,
) {
    while let Some(frame) = frames.recv().await {
        let closing = matches!(frame, Message::Close(_));
        if sink.send(frame).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Reads the client's first message, which must be `Initialize`.
async fn initialize(
    incoming: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<(String, Vec<String>, Option<TtySize>), String> {
    let wait = Duration::from_secs(PEER_TIMEOUT_SECS);
    loop {
        let frame = tokio::time::timeout(wait, incoming.next())
            .await
            .map_err(|_| {
                format!("no Initialize message within {PEER_TIMEOUT_SECS} s of the upgrade")
            })?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Initialize {
                        target,
                        command,
                        tty,
                    }) => {
                        if command.is_empty() {
                            Err("Initialize names no command: give one after the target".into())
                        } else {
                            Ok((target, command, tty))
                        }
                    }
                    Ok(other) => Err(format!(
                        "the first message must be Initialize, not {other:?}"
                    )),
                    Err(e) => Err(format!("not a control message: {e}")),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err("the first message must be Initialize".into()),
            Some(Err(e)) => return Err(format!("the connection broke: {e}")),
            None => return Err("the client left before Initialize".into()),
        }
    }
}

/// A process started in a host container's task.
struct Exec {
    containerd: Containerd,
    target: String,
    id: String,
    dir: PathBuf,
    tty: bool,
    stdin: tokio::net::unix::pipe::Sender,
    outputs: Vec<tokio::task::JoinHandle<Option<tokio::net::unix::pipe::Receiver>>>,
}

/// A unique exec id: containerd keeps ids per task, and several sessions may share one.
fn exec_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "apiserver-exec-{}-{now}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Exec {
    /// Checks the target, makes the FIFOs and starts `command` in the target's task.
    async fn start(
        config: &ExecConfig,
        target: &str,
        command: &[String],
        tty: Option<TtySize>,
    ) -> Result<Exec, String> {
        if target.is_empty()
            || !target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!("'{target}' is not a host container name"));
        }
        let containerd = Containerd::connect(&config.socket, &config.namespace)
            .await
            .map_err(|e| {
                format!("{e}; is the host containerd running (host-containerd.service)?")
            })?;
        let spec = match containerd.container_spec(target).await {
            Ok(spec) => spec,
            Err(e) if e.is_not_found() => {
                return Err(format!(
                    "there is no host container '{target}' in the host containerd: set settings.host-containers.{target}.source and .enabled"
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        if !containerd
            .task_running(target)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "host container '{target}' is not running; see `systemctl status host-containers@{target}`"
            ));
        }
        let process = process_spec(&spec, command, tty)?;
        let id = exec_id();
        let dir = config.fifo_dir.join(&id);
        let fifos = make_fifos(&dir, tty.is_some())?;
        // Opened before the process starts: the read ends wait (on blocking threads) for the
        // shim's write ends, so an early end-of-file cannot be mistaken for the output's end.
        let outputs: Vec<_> = fifos.outputs.iter().cloned().map(open_output).collect();
        let started = async {
            let stdin = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&fifos.stdin)
                .map_err(|e| format!("cannot open {}: {e}", fifos.stdin.display()))?;
            let io = ExecIo {
                stdin: Some(&fifos.stdin),
                stdout: fifos.outputs.first().map(PathBuf::as_path),
                stderr: fifos.outputs.get(1).map(PathBuf::as_path),
                terminal: tty.is_some(),
            };
            containerd
                .exec(target, &id, &process, &io)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(stdin)
        }
        .await;
        match started {
            Ok(stdin) => Ok(Exec {
                containerd,
                target: target.to_string(),
                id,
                dir,
                tty: tty.is_some(),
                stdin,
                outputs,
            }),
            Err(message) => {
                // Wake the read ends still waiting for a writer, then clean up.
                for path in &fifos.outputs {
                    let _ = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path);
                }
                for output in outputs {
                    let _ = output.await;
                }
                let _ = containerd.delete_exec(target, &id).await;
                let _ = std::fs::remove_dir_all(&dir);
                Err(message)
            }
        }
    }

    /// Moves bytes both ways until the process has exited and its output is sent; then removes
    /// the process from the task.
    async fn run(
        self,
        incoming: &mut futures::stream::SplitStream<WebSocket>,
        out: &mpsc::Sender<Message>,
    ) -> CloseReason {
        let Exec {
            containerd,
            target,
            id,
            dir,
            tty,
            stdin,
            outputs,
        } = self;
        let _ = out.send(capacity(0)).await;
        let (stdin_tx, stdin_rx) = mpsc::channel::<Option<axum::body::Bytes>>(
            usize::try_from(MAX_MESSAGES_OUTSTANDING).unwrap_or(1024),
        );
        let stdin_task = tokio::spawn(write_stdin(
            stdin,
            stdin_rx,
            out.clone(),
            StdinCloser {
                containerd: containerd.clone(),
                target: target.clone(),
                id: id.clone(),
            },
        ));
        let output_tasks: Vec<_> = outputs
            .into_iter()
            .map(|opened| tokio::spawn(send_output(opened, out.clone())))
            .collect();
        // A background child may hold the output open after the process exits: its readers
        // are stopped with the session.
        let output_aborts: Vec<_> = output_tasks.iter().map(|t| t.abort_handle()).collect();
        let output_done = futures::future::join_all(output_tasks);
        tokio::pin!(output_done);
        let wait = containerd.wait_exec(&target, &id);
        tokio::pin!(wait);
        let mut ping = tokio::time::interval(Duration::from_secs(PING_INTERVAL_SECS));
        let mut last_heard = Instant::now();
        let mut client_open = true;
        let timeout = Duration::from_secs(PEER_TIMEOUT_SECS);

        let reason = loop {
            tokio::select! {
                status = &mut wait => break match status {
                    Ok(status) => {
                        // Let the output drain; the shim closes the FIFOs once it has copied all.
                        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut output_done).await;
                        CloseReason::Exit(status)
                    }
                    Err(e) => CloseReason::Failed(e.to_string()),
                },
                frame = incoming.next(), if client_open => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Binary(data))) => {
                            if stdin_tx.send(Some(data)).await.is_err() {
                                tracing::debug!("exec {id}: stdin is closed; input dropped");
                            }
                        }
                        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(&text) {
                            Ok(ClientMessage::ContentComplete) => {
                                let _ = stdin_tx.send(None).await;
                            }
                            Ok(ClientMessage::Winch { rows, cols }) if tty => {
                                if let Err(e) = containerd
                                    .resize_exec(&target, &id, u32::from(cols), u32::from(rows))
                                    .await
                                {
                                    tracing::debug!("exec {id}: {e}");
                                }
                            }
                            Ok(ClientMessage::Winch { .. }) => {}
                            Ok(ClientMessage::Initialize { .. }) => {
                                tracing::debug!("exec {id}: a second Initialize is ignored");
                            }
                            Err(e) => tracing::debug!("exec {id}: not a control message: {e}"),
                        },
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            client_open = false;
                            kill(&containerd, &target, &id, "the client left").await;
                        }
                        Some(Ok(_)) => {}
                    }
                }
                _ = ping.tick() => {
                    if client_open && last_heard.elapsed() > timeout {
                        client_open = false;
                        kill(&containerd, &target, &id, "the client stopped answering pings").await;
                    } else if client_open {
                        let _ = out.send(Message::Ping(Default::default())).await;
                    }
                }
            }
        };
        stdin_task.abort();
        for abort in output_aborts {
            abort.abort();
        }
        let _ = containerd.delete_exec(&target, &id).await;
        let _ = std::fs::remove_dir_all(&dir);
        tracing::info!(
            "exec {id} in host container {target} ended: {}",
            reason.encode()
        );
        reason
    }
}

fn capacity(messages_written: u64) -> Message {
    let message = ServerMessage::Capacity {
        max_messages_outstanding: MAX_MESSAGES_OUTSTANDING,
        messages_written,
    };
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(&message).unwrap_or_default(),
    ))
}

async fn kill(containerd: &Containerd, target: &str, id: &str, why: &str) {
    tracing::info!("exec {id} in host container {target}: {why}; killing the process");
    if let Err(e) = containerd
        .kill_exec(target, id, nix::sys::signal::Signal::SIGKILL as u32)
        .await
    {
        tracing::warn!("{e}");
    }
}

/// What closes the process's stdin once the client's input has ended.
struct StdinCloser {
    containerd: Containerd,
    target: String,
    id: String,
}

/// How long the shim gets to copy what is still in the stdin FIFO before stdin is closed.
const STDIN_DRAIN: Duration = Duration::from_secs(5);

/// Bytes written to the FIFO and not yet read by the shim.
fn unread(stdin: &tokio::net::unix::pipe::Sender) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut count: nix::libc::c_int = 0;
    // SAFETY: FIONREAD stores one int into the valid, exclusively borrowed `count`; the
    // descriptor is open for the whole call (borrowed from `stdin`).
    let result = unsafe { nix::libc::ioctl(stdin.as_raw_fd(), nix::libc::FIONREAD, &mut count) };
    (result == 0).then_some(count)
}

/// Writes stdin frames to the process in order, reporting progress as Capacity messages; a
/// `None` (ContentComplete) closes its stdin once the shim has read what was written.
async fn write_stdin(
    mut stdin: tokio::net::unix::pipe::Sender,
    mut frames: mpsc::Receiver<Option<axum::body::Bytes>>,
    out: mpsc::Sender<Message>,
    closer: StdinCloser,
) {
    let mut written = 0u64;
    while let Some(Some(data)) = frames.recv().await {
        if let Err(e) = stdin.write_all(&data).await {
            tracing::debug!("exec stdin: {e}");
            return;
        }
        written += 1;
        if written.is_multiple_of(CAPACITY_EVERY) {
            let _ = out.send(capacity(written)).await;
        }
    }
    // The shim keeps its end of the FIFO open for ever, so the end of input is a CloseIO
    // call, which closes the process's stdin at once: first let the shim read what is still
    // in the FIFO (and copy its last read on).
    let start = Instant::now();
    while unread(&stdin).is_some_and(|n| n > 0) && start.elapsed() < STDIN_DRAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stdin);
    if let Err(e) = closer
        .containerd
        .close_exec_stdin(&closer.target, &closer.id)
        .await
    {
        tracing::debug!("exec {}: {e}", closer.id);
    }
}

/// Sends what the process writes to one FIFO as binary frames, until end-of-file.
async fn send_output(
    opened: tokio::task::JoinHandle<Option<tokio::net::unix::pipe::Receiver>>,
    out: mpsc::Sender<Message>,
) {
    let Ok(Some(mut receiver)) = opened.await else {
        return;
    };
    let mut buffer = vec![0u8; OUTPUT_CHUNK];
    loop {
        match receiver.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                let frame = Message::Binary(axum::body::Bytes::copy_from_slice(&buffer[..n]));
                if out.send(frame).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!("exec output: {e}");
                break;
            }
        }
    }
}

/// Opens the read end of an output FIFO on a blocking thread: the open returns once the shim
/// opens the write end (or the session, failing, opens it to wake this one up).
fn open_output(path: PathBuf) -> tokio::task::JoinHandle<Option<tokio::net::unix::pipe::Receiver>> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| tracing::warn!("cannot open {}: {e}", path.display()))
            .ok()?;
        tokio::net::unix::pipe::Receiver::from_file(file)
            .map_err(|e| tracing::warn!("cannot read {}: {e}", path.display()))
            .ok()
    })
}

/// The FIFOs of one session.
struct Fifos {
    stdin: PathBuf,
    /// stdout, and stderr unless the process has a terminal.
    outputs: Vec<PathBuf>,
}

fn make_fifos(dir: &Path, tty: bool) -> Result<Fifos, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            format!(
                "cannot create {}: {e}; check --exec-fifo-dir",
                dir.display()
            )
        })?;
    let mut names = vec!["stdin", "stdout"];
    if !tty {
        names.push("stderr");
    }
    let mut paths = Vec::new();
    for name in names {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("cannot make the FIFO {}: {e}", path.display()))?;
        paths.push(path);
    }
    let stdin = paths.remove(0);
    Ok(Fifos {
        stdin,
        outputs: paths,
    })
}

/// The process spec of an exec: the container's own process (user, cwd, env, capabilities)
/// running `command`, with a terminal of size `tty` when asked.
pub fn process_spec(
    container_spec: &serde_json::Value,
    command: &[String],
    tty: Option<TtySize>,
) -> Result<serde_json::Value, String> {
    let mut process = ctr_client::exec_process(container_spec, command)
        .ok_or("the container's runtime spec has no process")?;
    if let Some(size) = tty {
        process["terminal"] = serde_json::json!(true);
        process["consoleSize"] = serde_json::json!({"height": size.height, "width": size.width});
        let env = process
            .get_mut("env")
            .and_then(serde_json::Value::as_array_mut);
        match env {
            Some(env)
                if !env
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| s.starts_with("TERM="))) =>
            {
                env.push(serde_json::json!("TERM=xterm"));
            }
            Some(_) => {}
            None => process["env"] = serde_json::json!(["TERM=xterm"]),
        }
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_spec_is_the_containers_with_the_command() {
        let spec = serde_json::json!({"process": {
            "args": ["/bin/sh", "-c", "sleep 1000"], "cwd": "/root", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}, "terminal": false}});
        let plain = process_spec(&spec, &["cat".into()], None).unwrap();
        assert_eq!(plain["args"], serde_json::json!(["cat"]));
        assert_eq!(plain["cwd"], "/root");
        assert_eq!(plain["terminal"], false);
        assert_eq!(plain["env"], serde_json::json!(["PATH=/bin"]));
        let tty = process_spec(
            &spec,
            &["sh".into()],
            Some(TtySize {
                height: 24,
                width: 80,
            }),
        )
        .unwrap();
        assert_eq!(tty["terminal"], true);
        assert_eq!(tty["consoleSize"]["width"], 80);
        assert_eq!(tty["env"], serde_json::json!(["PATH=/bin", "TERM=xterm"]));
        assert!(process_spec(&serde_json::json!({}), &["ls".into()], None).is_err());
    }
}
