//! The socket and the connections on it: binding with the right mode and group from the first
//! instant, the accept loop with its connection cap, per-connection timeouts, the HTTP framing
//! checks hyper leaves to us, and a graceful shutdown that removes the socket.
//!
//! Limits (each also listed in the crate documentation):
//!
//! - [`HEADER_READ_TIMEOUT`]: a connection must send a complete request head within this time of
//!   connecting or of its previous answer, else it is closed. hyper arms this timer whenever the
//!   connection waits for a request head, so it is also the keep-alive idle timeout.
//! - [`REQUEST_BODY_TIMEOUT`]: a request body must arrive in full within this time of its head,
//!   else the request fails (400) and the connection closes.
//! - [`max_connections`]: at most this many open connections; when a new one arrives at the cap,
//!   the connection idle the longest is closed to make room (a busy one never is, nor one that
//!   was active within [`IDLE_GRACE`]); when none can go, new clients wait in the listen backlog.
//! - Accept errors (out of descriptors, among others) are logged once a second at most; the loop
//!   closes an idle connection and pauses briefly instead of spinning or stopping.

use crate::error::ApiError;
use crate::server::MAX_BODY_BYTES;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// Time a connection has to send a complete request head, counted from the moment it starts
/// waiting for one (after connecting or after its previous answer).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a request body has to arrive in full, counted from the end of its head.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Upper bound of the connection cap, whatever the descriptor limit.
pub const MAX_CONNECTIONS: usize = 4096;

/// A connection is only closed to make room once it has been quiet (no bytes, no request in
/// progress) for this long.
pub const IDLE_GRACE: Duration = Duration::from_millis(50);

/// How long a shutdown waits for requests in progress before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The connection cap for a descriptor limit of `nofile`: half the descriptors (the other half
/// stays for datastore files, the renderer and the updater), at most [`MAX_CONNECTIONS`].
pub fn max_connections(nofile: u64) -> usize {
    usize::try_from(nofile / 2)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// Raises the soft descriptor limit to the hard one and returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the descriptor limit: {e}");
            return 1024;
        }
    };
    // An unlimited hard limit cannot be the soft one: the kernel's ceiling is fs.nr_open.
    let target = if hard == RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => return target,
            Err(e) => {
                tracing::warn!("cannot raise the descriptor limit from {soft} to {target}: {e}")
            }
        }
    }
    soft
}

// ---- binding ----

/// The socket as bound: its path and the inode it has there, so shutdown removes only its own.
#[derive(Debug)]
pub struct BoundSocket {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BoundSocket {
    /// Removes the socket file if it is still the one this server bound (a newer server may have
    /// replaced it already).
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove the socket {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// Creates the listening socket at `path` with mode 0660 and, when given, group `gid`, such that
/// it never exists at `path` with other permissions: it is bound inside a new 0700 directory
/// next to `path`, given its mode and group there, then renamed into place (replacing a stale
/// socket atomically).
pub fn bind_socket(path: &Path, gid: Option<u32>) -> io::Result<(UnixListener, BoundSocket)> {
    let parent = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let private = parent.join(format!(
        ".{}.{}.bind",
        name.to_string_lossy(),
        std::process::id()
    ));
    remove_stale_bind_dirs(&parent, &name.to_string_lossy());
    // The umask can only take bits away, so the directory is 0700 or stricter from its creation.
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let inner = private.join("s");
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&inner, None, Some(gid))?;
        }
        let meta = std::fs::symlink_metadata(&inner)?;
        std::fs::rename(&inner, path)?;
        Ok((
            listener,
            BoundSocket {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
            },
        ))
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// Removes the private bind directories of servers killed while binding: those of this PID
/// (a previous boot) and of PIDs no longer running.
fn remove_stale_bind_dirs(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".bind"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

// ---- connections ----

/// One open connection, as the accept loop sees it.
struct Slot {
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// Milliseconds since the server started at its last activity (accept, request, answer).
    last_active: AtomicU64,
    /// Notified to close the connection (gracefully: a request in progress is finished).
    close: Notify,
    /// Request heads seen on the connection, oldest first, not yet handed to the service.
    heads: Mutex<VecDeque<HeadInfo>>,
}

/// The open connections by accept order.
struct Registry {
    start: Instant,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    /// Notified whenever a connection ends.
    freed: Notify,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn insert(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
            heads: Mutex::new(VecDeque::new()),
        });
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, slot.clone());
        (id, slot)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.freed.notify_waiters();
    }

    /// Closes the connection idle the longest; false when every connection is busy or was
    /// active within [`IDLE_GRACE`] (a client that just connected has its request on the way).
    fn close_oldest_idle(&self) -> bool {
        let idle_before = self.now_ms().saturating_sub(IDLE_GRACE.as_millis() as u64);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = open
            .iter()
            .filter(|(_, s)| s.in_flight.load(Ordering::Acquire) == 0)
            .map(|(id, s)| (*id, s.last_active.load(Ordering::Relaxed)))
            .filter(|(_, last)| *last <= idle_before)
            .min_by_key(|(_, last)| *last)
            .map(|(id, _)| id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for slot in self.open.lock().unwrap_or_else(|p| p.into_inner()).values() {
            slot.close.notify_one();
        }
    }
}

fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in progress finish
/// (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: UnixListener,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let registry = Arc::new(Registry {
        start: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(BTreeMap::new()),
        freed: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                // At the cap, make room: the longest idle connection goes. When every one is
                // busy, wait for one to end (new clients queue in the listen backlog meanwhile).
                let mut stopping = false;
                while registry.len() >= max_connections && !registry.close_oldest_idle() {
                    let freed = registry.freed.notified();
                    tokio::select! {
                        _ = freed => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = &mut shutdown => {
                            stopping = true;
                            break;
                        }
                    }
                }
                if stopping {
                    break;
                }
                let (id, slot) = registry.insert();
                tokio::spawn(connection(
                    stream,
                    app.clone(),
                    registry.clone(),
                    id,
                    slot,
                    stop_rx.clone(),
                ));
            }
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("cannot accept a connection: {e} ({} open)", registry.len());
                    last_warning = Some(Instant::now());
                }
                if is_out_of_resources(&e) {
                    registry.close_oldest_idle();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    registry.close_all();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while registry.len() > 0 {
        let freed = registry.freed.notified();
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            tracing::warn!(
                "{} connections still busy after {} s; stopping anyway",
                registry.len(),
                SHUTDOWN_GRACE.as_secs()
            );
            break;
        }
    }
}

async fn connection(
    stream: UnixStream,
    app: Router,
    registry: Arc<Registry>,
    id: u64,
    slot: Arc<Slot>,
    mut stop: watch::Receiver<bool>,
) {
    let io = Scanned {
        inner: stream,
        scanner: HeadScanner::default(),
        slot: slot.clone(),
        registry: registry.clone(),
    };
    // Read once: who is on the other end does not change for the life of the connection.
    let peer = crate::audit::Peer::of(&io.inner);
    let service_slot = slot.clone();
    let service_registry = registry.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        let slot = service_slot.clone();
        let registry = service_registry.clone();
        async move {
            let mut req = req;
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            slot.in_flight.fetch_add(1, Ordering::AcqRel);
            slot.last_active.store(registry.now_ms(), Ordering::Relaxed);
            let head = slot
                .heads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let response = match refuse(&req, head.as_ref()) {
                Some(refusal) => refusal,
                None => {
                    // A body must arrive in full within REQUEST_BODY_TIMEOUT, or a client
                    // trickling one would hold a busy (never evicted) connection for ever.
                    let req = if hyper::body::Body::is_end_stream(req.body()) {
                        req.map(Body::new)
                    } else {
                        req.map(|body| Body::new(DeadlineBody::new(body, REQUEST_BODY_TIMEOUT)))
                    };
                    let mut response = match app.oneshot(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    // After a chunked request the scanner no longer knows where the next head
                    // starts, so the connection ends with this answer.
                    if head.is_none_or(|h| h.transfer_encoding > 0) {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                }
            };
            slot.last_active.store(registry.now_ms(), Ordering::Relaxed);
            slot.in_flight.fetch_sub(1, Ordering::AcqRel);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                break;
            }
            _ = slot.close.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    registry.remove(id);
}

/// Answers a request the router must not see: ambiguous framing (request smuggling) or a body
/// announced larger than the limit (refused before hyper sends `100 Continue`).
fn refuse(req: &Request<Incoming>, head: Option<&HeadInfo>) -> Option<Response<Body>> {
    let error = if head.is_some_and(|h| h.transfer_encoding > 0 && h.content_length > 0) {
        ApiError::bad_request(
            "the request has both Transfer-Encoding and Content-Length; send one of them",
        )
    } else if head.is_some_and(|h| h.host > 1)
        || req.headers().get_all(header::HOST).iter().count() > 1
    {
        ApiError::bad_request("the request has more than one Host header")
    } else if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
        )
    } else {
        return None;
    };
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the body did not arrive within {} s",
                REQUEST_BODY_TIMEOUT.as_secs()
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

// ---- request heads as they arrive ----

/// What a request head holds that hyper hides from the service: hyper drops Content-Length when
/// Transfer-Encoding is present, so a request carrying both looks like a plain chunked one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    pub content_length: usize,
    pub transfer_encoding: usize,
    pub host: usize,
    /// The Content-Length value, when it is one number.
    pub length: Option<u64>,
}

impl HeadInfo {
    /// Reads the header names of a head (request line first, lines ending in LF or CRLF).
    pub fn parse(head: &[u8]) -> HeadInfo {
        let mut info = HeadInfo::default();
        for line in head.split(|b| *b == b'\n').skip(1) {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let name = line[..colon].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                info.content_length += 1;
                info.length = std::str::from_utf8(&line[colon + 1..])
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                info.transfer_encoding += 1;
            } else if name.eq_ignore_ascii_case(b"host") {
                info.host += 1;
            }
        }
        info
    }
}

/// Follows the bytes a connection sends to find each request head: a head, then a body of
/// Content-Length bytes, then the next head. It stops at a chunked body (the connection is
/// closed after that request) or at a head larger than [`MAX_HEAD_BYTES`] (hyper refuses it).
#[derive(Debug, Default)]
pub struct HeadScanner {
    state: ScanState,
}

#[derive(Debug, Default)]
enum ScanState {
    #[default]
    Start,
    Head(Vec<u8>),
    Body(u64),
    Stopped,
}

/// End of the head in `buf` (the index after its blank line), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|b| *b == b'\n') {
        let at = i + nl + 1;
        match buf.get(at) {
            Some(b'\n') => return Some(at + 1),
            Some(b'\r') if buf.get(at + 1) == Some(&b'\n') => return Some(at + 2),
            _ => i = at,
        }
    }
    None
}

impl HeadScanner {
    /// Takes the next bytes read from the connection; returns the heads they complete.
    pub fn feed(&mut self, mut data: &[u8], found: &mut impl FnMut(HeadInfo)) {
        while !data.is_empty() {
            match &mut self.state {
                ScanState::Stopped => return,
                ScanState::Start => {
                    // Empty lines before a request line are allowed and skipped.
                    let skip = data
                        .iter()
                        .position(|b| *b != b'\r' && *b != b'\n')
                        .unwrap_or(data.len());
                    data = &data[skip..];
                    if !data.is_empty() {
                        self.state = ScanState::Head(Vec::new());
                    }
                }
                ScanState::Body(left) => {
                    let n = (*left).min(data.len() as u64);
                    data = &data[n as usize..];
                    *left -= n;
                    if *left == 0 {
                        self.state = ScanState::Start;
                    }
                }
                ScanState::Head(buf) => {
                    let old = buf.len();
                    let room = MAX_HEAD_BYTES + 4 - old;
                    buf.extend_from_slice(&data[..data.len().min(room)]);
                    let from = old.saturating_sub(3);
                    match head_end(&buf[from..]).map(|e| e + from) {
                        Some(end) => {
                            let info = HeadInfo::parse(&buf[..end]);
                            data = &data[end - old..];
                            found(info);
                            self.state = if info.transfer_encoding > 0 {
                                ScanState::Stopped
                            } else {
                                match info.length {
                                    Some(n) if n > 0 => ScanState::Body(n),
                                    _ => ScanState::Start,
                                }
                            };
                        }
                        None if buf.len() > MAX_HEAD_BYTES => self.state = ScanState::Stopped,
                        None => return,
                    }
                }
            }
        }
    }
}

/// The connection's stream, handing every byte read to the head scanner on its way to hyper.
struct Scanned {
    inner: UnixStream,
    scanner: HeadScanner,
    slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl AsyncRead for Scanned {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                let slot = &this.slot;
                slot.last_active
                    .store(this.registry.now_ms(), Ordering::Relaxed);
                this.scanner.feed(new, &mut |info| {
                    slot.heads
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_back(info)
                });
            }
        }
        result
    }
}

impl AsyncWrite for Scanned {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(chunks: &[&[u8]]) -> Vec<HeadInfo> {
        let mut scanner = HeadScanner::default();
        let mut out = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, &mut |h| out.push(h));
        }
        out
    }

    #[test]
    fn heads_are_found_across_reads_and_bodies_are_skipped() {
        let found = heads(&[
            b"\r\nPATCH /settings HTTP/1.1\r\nHost: x\r\nContent-Le",
            b"ngth: 12\r\n\r\n{\"motd\":\"\r\n\r\n",
            b"\"}GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\nGET /os HTTP/1.1\n\n",
        ]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].content_length, 1);
        assert_eq!(found[0].length, Some(12));
        assert_eq!(found[1].host, 2);
        assert_eq!(found[2], HeadInfo::default());
    }

    #[test]
    fn both_framings_are_seen_and_scanning_stops_after_chunked() {
        let found = heads(&[
            b"POST /tx/commit HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].transfer_encoding, 1);
        assert_eq!(found[0].content_length, 1);
    }

    #[test]
    fn an_oversized_head_stops_the_scanner() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert!(heads(&[&big, b"\r\n\r\n"]).is_empty());
    }

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        assert_eq!(max_connections(1024), 512);
        assert_eq!(max_connections(1 << 20), MAX_CONNECTIONS);
        assert_eq!(max_connections(10), 16);
    }
}
