//! The host end: one connection to QEMU's chardev socket, a listening socket for clients, and
//! one bridged connection per accepted client.

use crate::error::{self, Result};
use crate::mux::{Link, Session, SessionShared};
use crate::protocol::{Decoder, Message, VERSION};
use snafu::{ensure, ResultExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, trace, warn};

/// Pause between attempts to connect to QEMU's socket.
const CONNECT_RETRY: Duration = Duration::from_millis(200);
/// First wait for a HELLO before RESET is sent again; doubles up to [`RESET_RETRY_MAX`].
const RESET_RETRY_FIRST: Duration = Duration::from_secs(1);
const RESET_RETRY_MAX: Duration = Duration::from_secs(30);

/// The published current session, if the guest has answered.
type SessionSlot = watch::Sender<Option<Arc<SessionShared>>>;

/// Runs the host end: connects to QEMU's chardev socket `qemu_socket` (retrying until it
/// exists and reconnecting whenever it drops) and serves clients on `listen_socket`.
///
/// Runs until the future is dropped; returns early only if `listen_socket` cannot be set up.
/// A stale socket file at `listen_socket` is replaced; it is removed again when the future is
/// dropped.
pub async fn serve_host(qemu_socket: &Path, listen_socket: &Path) -> Result<()> {
    let (listener, _socket_file) = bind_listener(listen_socket)?;
    let listener = UnixListener::from_std(listener).context(error::ListenSnafu {
        path: listen_socket,
    })?;
    let (guest, _) = watch::channel(false);
    run_host(listener, qemu_socket.to_path_buf(), guest).await;
    Ok(())
}

/// Starts the host end on its own thread and runtime; see [`serve_host`].
///
/// The listening socket is bound before this returns, so clients may connect right away
/// (their requests wait until the guest end answers). The bridge stops when the returned
/// handle is dropped or [`HostBridge::stop`] is called.
pub fn spawn_host_bridge(
    qemu_socket: impl AsRef<Path>,
    listen_socket: impl AsRef<Path>,
) -> Result<HostBridge> {
    let qemu_socket = qemu_socket.as_ref().to_path_buf();
    let listen_socket = listen_socket.as_ref().to_path_buf();
    let (listener, socket_file) = bind_listener(&listen_socket)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(error::RuntimeSnafu)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (guest_tx, guest_rx) = watch::channel(false);
    let path = listen_socket.clone();
    let thread = std::thread::Builder::new()
        .name("apibridge-host".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let listener =
                    UnixListener::from_std(listener).context(error::ListenSnafu { path })?;
                tokio::select! {
                    () = run_host(listener, qemu_socket, guest_tx) => {}
                    _ = stop_rx => debug!("host bridge asked to stop"),
                }
                Ok(())
            });
            // Drops every connection task before the socket file goes away.
            drop(runtime);
            drop(socket_file);
            result
        })
        .context(error::SpawnThreadSnafu)?;
    Ok(HostBridge {
        listen_socket,
        guest: guest_rx,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// A running host end started by [`spawn_host_bridge`]; stops it when dropped.
#[derive(Debug)]
pub struct HostBridge {
    listen_socket: PathBuf,
    guest: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl HostBridge {
    /// Where clients connect (`apiclient --socket-path`).
    pub fn listen_socket(&self) -> &Path {
        &self.listen_socket
    }

    /// Whether the guest end has answered and connections are being bridged.
    ///
    /// This says the guest's `apibridge` is running, not that its API server is: a request
    /// may still find the connection closed without an answer while the API server starts.
    pub fn guest_connected(&self) -> bool {
        *self.guest.borrow()
    }

    /// Waits up to `timeout` for [`HostBridge::guest_connected`]; returns its final value.
    pub fn wait_for_guest(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.guest_connected() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }

    /// Stops the bridge, closes every bridged connection and removes the listening socket.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| error::Error::BridgePanicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for HostBridge {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            warn!("stopping the host bridge: {e}");
        }
    }
}

/// Removes the listening socket when dropped, if it is still the one we created.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn bind_listener(path: &Path) -> Result<(std::os::unix::net::UnixListener, SocketFile)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).context(error::SocketDirSnafu { path: parent })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            ensure!(
                meta.file_type().is_socket(),
                error::NotASocketSnafu { path }
            );
            ensure!(
                std::os::unix::net::UnixStream::connect(path).is_err(),
                error::SocketInUseSnafu { path }
            );
            std::fs::remove_file(path).context(error::StaleSocketSnafu { path })?;
            debug!(path = %path.display(), "removed a stale socket");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context(error::StaleSocketSnafu { path }),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).context(error::ListenSnafu { path })?;
    listener
        .set_nonblocking(true)
        .context(error::ListenSnafu { path })?;
    let meta = std::fs::symlink_metadata(path).context(error::ListenSnafu { path })?;
    let file = SocketFile {
        path: path.to_path_buf(),
        id: (meta.dev(), meta.ino()),
    };
    info!(path = %path.display(), "listening for API clients");
    Ok((listener, file))
}

/// Accepts clients and keeps a link to QEMU up, forever.
async fn run_host(listener: UnixListener, qemu_socket: PathBuf, guest: watch::Sender<bool>) {
    let (sessions, _) = watch::channel(None);
    tokio::join!(
        accept_clients(listener, sessions.subscribe()),
        keep_linked(&qemu_socket, &sessions, &guest),
    );
}

async fn accept_clients(
    listener: UnixListener,
    sessions: watch::Receiver<Option<Arc<SessionShared>>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_client(stream, sessions.clone()));
            }
            Err(e) => {
                warn!(error = %e, "accepting a client failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Bridges one client once a session exists.
async fn serve_client(
    stream: UnixStream,
    mut sessions: watch::Receiver<Option<Arc<SessionShared>>>,
) {
    if sessions.borrow().is_none() {
        debug!("client waiting for the guest end");
    }
    let shared = match sessions.wait_for(Option::is_some).await {
        Ok(current) => current.clone().expect("waited for Some"),
        // The bridge is shutting down.
        Err(_) => return,
    };
    let conn = shared.open();
    debug!(id = conn.id, "client connected");
    let runner = shared.clone();
    tokio::select! {
        () = shared.cancelled() => debug!("session ended under a client"),
        () = runner.run(conn, stream) => {}
    }
}

/// Connects to QEMU, runs the link until it drops, and starts over.
async fn keep_linked(qemu_socket: &Path, sessions: &SessionSlot, guest: &watch::Sender<bool>) {
    loop {
        let stream = connect_qemu(qemu_socket).await;
        info!(path = %qemu_socket.display(), "connected to QEMU's socket");
        run_link(stream, sessions, guest).await;
        sessions.send_replace(None);
        guest.send_replace(false);
        tokio::time::sleep(CONNECT_RETRY).await;
    }
}

async fn connect_qemu(path: &Path) -> UnixStream {
    let mut reported = false;
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return stream,
            Err(e) => {
                if !reported {
                    info!(path = %path.display(), error = %e, "waiting for QEMU's socket");
                    reported = true;
                }
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        }
    }
}

/// Aborts a task when dropped, so a cancelled link does not leave its writer behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_link(stream: UnixStream, sessions: &SessionSlot, guest: &watch::Sender<bool>) {
    let (mut rd, mut wr) = stream.into_split();
    let (link, mut queue) = Link::new();
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        let mut batch = Vec::new();
        while queue.next_batch(&mut batch).await.is_some() {
            trace!(bytes = batch.len(), "writing to QEMU");
            wr.write_all(&batch).await?;
        }
        Ok::<(), std::io::Error>(())
    }));

    let mut state = LinkState {
        link,
        decoder: Decoder::new(),
        nonce: 0,
        session: None,
        retry_at: None,
        retry_delay: RESET_RETRY_FIRST,
        version_reported: false,
    };
    state.start_session(sessions, guest);

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let retry_at = state.retry_at;
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => {
                    info!("QEMU closed the socket");
                    break;
                }
                Ok(n) => state.on_bytes(&buf[..n], sessions, guest),
                Err(e) => {
                    warn!(error = %e, "reading QEMU's socket failed");
                    break;
                }
            },
            () = tokio::time::sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => {
                state.retry_reset();
            }
            done = &mut writer.0 => {
                match done {
                    Ok(Err(e)) => warn!(error = %e, "writing to QEMU's socket failed"),
                    Ok(Ok(())) => debug!("link writer finished"),
                    Err(e) => warn!(error = %e, "link writer task failed"),
                }
                break;
            }
        }
    }
    // Unpublish first, so no client picks up the dying session.
    sessions.send_replace(None);
    guest.send_replace(false);
    if let Some(session) = state.session.take() {
        info!(
            connections = session.connection_count(),
            "link lost; closing its connections"
        );
    }
}

struct LinkState {
    link: Link,
    decoder: Decoder,
    /// The nonce of the RESET we sent last.
    nonce: u64,
    /// Set once the guest has answered `nonce`.
    session: Option<Session>,
    /// When to send RESET again if no HELLO came; `None` once in a session.
    retry_at: Option<Instant>,
    retry_delay: Duration,
    version_reported: bool,
}

impl LinkState {
    /// Drops the current session, if any, and sends RESET with a fresh nonce.
    fn start_session(&mut self, sessions: &SessionSlot, guest: &watch::Sender<bool>) {
        sessions.send_replace(None);
        guest.send_replace(false);
        self.session = None;
        self.nonce = loop {
            let n: u64 = rand::random();
            if n != 0 {
                break n;
            }
        };
        self.link.next_epoch();
        self.retry_delay = RESET_RETRY_FIRST;
        self.send_reset();
        debug!(session = format_args!("{:016x}", self.nonce), "sent RESET");
    }

    fn send_reset(&mut self) {
        self.link.send_now(&Message::Reset {
            version: VERSION,
            nonce: self.nonce,
        });
        self.retry_at = Some(Instant::now() + self.retry_delay);
    }

    fn retry_reset(&mut self) {
        debug!(
            waited = ?self.retry_delay,
            "no answer from the guest end yet; sending RESET again"
        );
        self.retry_delay = (self.retry_delay * 2).min(RESET_RETRY_MAX);
        self.send_reset();
    }

    fn on_bytes(&mut self, bytes: &[u8], sessions: &SessionSlot, guest: &watch::Sender<bool>) {
        for result in self.decoder.push(bytes) {
            match result {
                Ok(msg) => self.on_message(msg, sessions, guest),
                Err(e) => debug!(error = %e, "skipping bytes that are not a frame"),
            }
        }
    }

    fn on_message(&mut self, msg: Message, sessions: &SessionSlot, guest: &watch::Sender<bool>) {
        match msg {
            Message::Hello { version, nonce } if nonce == self.nonce => {
                if self.session.is_some() {
                    trace!("repeated HELLO for the current session");
                } else if version != VERSION {
                    if !std::mem::replace(&mut self.version_reported, true) {
                        error!(
                            guest_version = version,
                            our_version = VERSION,
                            "the guest end speaks another protocol version; cannot bridge"
                        );
                    }
                } else {
                    let session = Session::new(self.link.clone(), self.link.epoch(), nonce);
                    sessions.send_replace(Some(session.shared().clone()));
                    guest.send_replace(true);
                    self.session = Some(session);
                    self.retry_at = None;
                    info!(
                        session = format_args!("{nonce:016x}"),
                        "guest end answered; bridging connections"
                    );
                }
            }
            Message::Hello { nonce, .. } => {
                if let Some(session) = &self.session {
                    warn!(
                        connections = session.connection_count(),
                        "the guest end restarted; closing connections and starting over"
                    );
                    self.start_session(sessions, guest);
                } else {
                    debug!(
                        stale = format_args!("{nonce:016x}"),
                        "HELLO for another session while waiting; sending RESET again"
                    );
                    self.send_reset();
                }
            }
            Message::Open { .. } | Message::Reset { .. } => {
                debug!(?msg, "ignoring a frame the guest end should not send");
            }
            other => match &self.session {
                Some(session) => session.shared().dispatch(other),
                None => trace!("frame before the session started; ignored"),
            },
        }
    }
}
