//! End-to-end tests of both bridge ends without a VM.
//!
//! A fake QEMU stands in for the virtio-serial port: a socketpair whose one end the guest end
//! reads and writes like the port device, and a Unix listener the host end connects to like
//! QEMU's chardev socket. The fake mimics the port's behaviour when no host is connected
//! (reads return 0, writes wait) and can drop the host connection on demand, optionally
//! throwing garbage into both directions whenever a host connects. Behind the guest end runs
//! a tiny HTTP/1.1 echo server; clients speak raw HTTP/1.1 to the host end's socket.

use apibridge::protocol::{Message, VERSION};
use apibridge::HostBridge;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Deterministic bytes (xorshift), zeros included, so COBS has work to do.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(7) {
                0
            } else {
                (x >> 32) as u8
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The fake port and the fake QEMU.

#[derive(Default)]
struct PortState {
    /// A host is connected to the chardev socket.
    host: AtomicBool,
    /// The port is gone: reads and writes fail.
    unplugged: AtomicBool,
}

/// The guest's reading handle of the fake port.
struct PortReader {
    sock: std::os::unix::net::UnixStream,
    state: Arc<PortState>,
}

impl Read for PortReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.state.unplugged.load(Ordering::SeqCst) {
                return Err(std::io::Error::new(ErrorKind::NotConnected, "unplugged"));
            }
            let host = self.state.host.load(Ordering::SeqCst);
            match self.sock.read(buf) {
                Ok(n) => return Ok(n),
                // Like the device: buffered bytes first, then 0 while no host is there.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if !host {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The guest's writing handle of the fake port.
struct PortWriter {
    sock: std::os::unix::net::UnixStream,
    state: Arc<PortState>,
}

impl Write for PortWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Like the device: writes wait while no host is connected.
        loop {
            if self.state.unplugged.load(Ordering::SeqCst) {
                return Err(std::io::Error::new(ErrorKind::NotConnected, "unplugged"));
            }
            if self.state.host.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.sock.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes a stale session could have left behind: the tail of a frame, noise with zeros in it,
/// a well-formed OPEN, and a RESET and a HELLO of sessions nobody is in.
fn garbage() -> Vec<u8> {
    let mut g = Vec::new();
    let mut frame = Message::Data {
        id: 77,
        payload: pattern(9, 300),
    }
    .encode();
    g.extend_from_slice(&frame.split_off(40)[..200]);
    g.extend_from_slice(&[0xFF, 0x13, 0x00, 0x00, 0x05, 0x01, 0x02, 0x00, 0x09, 0x42]);
    g.extend(Message::Open { id: 1 }.encode());
    g.extend(
        Message::Reset {
            version: VERSION,
            nonce: 0xDEAD_BEEF,
        }
        .encode(),
    );
    g.extend(
        Message::Hello {
            version: VERSION,
            nonce: 0xBAD_5EED,
        }
        .encode(),
    );
    g.extend(pattern(3, 1000).iter().map(|b| b | 1));
    g
}

struct FakeQemu {
    port: Arc<PortState>,
    /// The guest's side of the socketpair, kept to hand out new handles.
    guest_end: std::os::unix::net::UnixStream,
    kick: Arc<Notify>,
    /// When set, a kick leaves `port.host` alone, so the guest never reads 0 and has to
    /// notice the new host from the RESET alone.
    quiet_kick: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakeQemu {
    fn start(path: &Path, with_garbage: bool) -> FakeQemu {
        let (guest_end, qemu_end) = std::os::unix::net::UnixStream::pair().unwrap();
        guest_end
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        qemu_end.set_nonblocking(true).unwrap();
        let listener = UnixListener::bind(path).unwrap();
        let port = Arc::new(PortState::default());
        let kick = Arc::new(Notify::new());
        let quiet_kick = Arc::new(AtomicBool::new(false));
        let connects = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (port, kick, quiet_kick, connects) = (
                port.clone(),
                kick.clone(),
                quiet_kick.clone(),
                connects.clone(),
            );
            async move {
                let (mut qr, mut qw) = UnixStream::from_std(qemu_end).unwrap().into_split();
                loop {
                    let (host, _) = listener.accept().await.unwrap();
                    connects.fetch_add(1, Ordering::SeqCst);
                    let (mut hr, mut hw) = host.into_split();
                    if with_garbage {
                        qw.write_all(&garbage()).await.unwrap();
                        let _ = hw.write_all(&garbage()).await;
                    }
                    port.host.store(true, Ordering::SeqCst);
                    tokio::select! {
                        () = pump(&mut hr, &mut qw) => {}
                        () = pump(&mut qr, &mut hw) => {}
                        () = kick.notified() => {}
                    }
                    if !quiet_kick.load(Ordering::SeqCst) {
                        port.host.store(false, Ordering::SeqCst);
                    }
                }
            }
        });
        FakeQemu {
            port,
            guest_end,
            kick,
            quiet_kick,
            connects,
            task,
        }
    }

    fn port_handles(&self) -> (PortReader, PortWriter) {
        (
            PortReader {
                sock: self.guest_end.try_clone().unwrap(),
                state: self.port.clone(),
            },
            PortWriter {
                sock: self.guest_end.try_clone().unwrap(),
                state: self.port.clone(),
            },
        )
    }

    /// Drops the current host connection, as if the host process went away.
    fn kick(&self, quiet: bool) {
        self.quiet_kick.store(quiet, Ordering::SeqCst);
        self.kick.notify_waiters();
    }
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        self.task.abort();
        self.port.unplugged.store(true, Ordering::SeqCst);
    }
}

async fn pump(from: &mut (impl AsyncRead + Unpin), to: &mut (impl AsyncWrite + Unpin)) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The API server stand-in and the client.

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads a request head and `Content-Length` body; `None` on EOF before a full request.
async fn read_request(s: &mut UnixStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.lines().next().unwrap_or_default().to_string();
    Some((request_line, buf[head_end..head_end + len].to_vec()))
}

/// Answers every request with "<request line>\n" followed by the request body, then closes.
fn start_echo_server(path: &Path) -> JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let Some((line, body)) = read_request(&mut s).await else {
                    return;
                };
                let mut answer = format!("{line}\n").into_bytes();
                answer.extend_from_slice(&body);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    })
}

/// POSTs `body` to `path` over `socket` and returns the response body after checking status
/// and length.
async fn post(socket: &Path, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: ballast\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.write_all(body).await.map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let head_end = find(&answer, b"\r\n\r\n").ok_or("no response head")? + 4;
    let head = String::from_utf8_lossy(&answer[..head_end]).to_string();
    if !head.starts_with("HTTP/1.1 200 OK\r\n") {
        return Err(format!("bad status: {head:?}"));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .ok_or("no Content-Length")?
        .trim()
        .parse()
        .map_err(|_| "bad Content-Length")?;
    let got = answer.len() - head_end;
    if got != len {
        return Err(format!("body has {got} bytes, expected {len}"));
    }
    Ok(answer.split_off(head_end))
}

fn expected(path: &str, body: &[u8]) -> Vec<u8> {
    let mut e = format!("POST {path} HTTP/1.1\n").into_bytes();
    e.extend_from_slice(body);
    e
}

/// Checks a response; panics with a short message rather than dumping megabytes.
fn check(path: &str, body: &[u8], got: &[u8]) {
    let want = expected(path, body);
    assert_eq!(got.len(), want.len(), "length of the answer to {path}");
    if let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("answer to {path} differs at byte {at}");
    }
}

/// Sends `n` concurrent requests with distinct paths and bodies; all must succeed.
async fn concurrent_round(socket: &Path, tag: &str, n: usize, body_len: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let socket = socket.to_path_buf();
            let path = format!("/{tag}/{i}?x=y");
            let body = pattern(i as u64 + 1, body_len + i * 13);
            tokio::spawn(async move {
                let got = post(&socket, &path, &body).await;
                (path, body, got)
            })
        })
        .collect();
    for task in tasks {
        let (path, body, got) = task.await.unwrap();
        let got = got.unwrap_or_else(|e| panic!("{path}: {e}"));
        check(&path, &body, &got);
    }
}

// ---------------------------------------------------------------------------------------
// The rig: echo server + guest end + fake QEMU + host end.

struct Rig {
    _dir: tempfile::TempDir,
    api_socket: PathBuf,
    qemu_socket: PathBuf,
    listen_socket: PathBuf,
    qemu: FakeQemu,
    guest: JoinHandle<apibridge::Result<()>>,
    server: JoinHandle<()>,
    host: Option<HostBridge>,
}

impl Rig {
    async fn start(with_garbage: bool) -> Rig {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let api_socket = dir.path().join("api.sock");
        let qemu_socket = dir.path().join("qemu.sock");
        let listen_socket = dir.path().join("host/api.sock");
        let server = start_echo_server(&api_socket);
        let qemu = FakeQemu::start(&qemu_socket, with_garbage);
        let guest = start_guest(&qemu, &api_socket);
        let host = apibridge::spawn_host_bridge(&qemu_socket, &listen_socket).unwrap();
        assert!(
            host.wait_for_guest(SYNC_TIMEOUT),
            "guest end never answered"
        );
        Rig {
            _dir: dir,
            api_socket,
            qemu_socket,
            listen_socket,
            qemu,
            guest,
            server,
            host: Some(host),
        }
    }

    fn host(&self) -> &HostBridge {
        self.host.as_ref().unwrap()
    }

    /// Waits for the host end to be in a session again after a disruption.
    async fn wait_resynced(&self, connects_before: usize) {
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        while self.qemu.connects.load(Ordering::SeqCst) <= connects_before
            || !self.host().guest_connected()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bridge did not come back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.host.take();
        self.guest.abort();
        self.server.abort();
    }
}

fn start_guest(qemu: &FakeQemu, api_socket: &Path) -> JoinHandle<apibridge::Result<()>> {
    let (reader, writer) = qemu.port_handles();
    let api_socket = api_socket.to_path_buf();
    tokio::spawn(async move { apibridge::serve_guest_io(reader, writer, &api_socket).await })
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_get_their_own_answers() {
    within(async {
        let rig = Rig::start(false).await;
        concurrent_round(&rig.listen_socket, "concurrent", 20, 100).await;
        // And again, so ids get reused once the first round is closed.
        concurrent_round(&rig.listen_socket, "again", 20, 5000).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mebibyte_bodies_pass_intact() {
    within(async {
        let rig = Rig::start(false).await;
        concurrent_round(&rig.listen_socket, "big", 4, 1024 * 1024).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_before_reset_is_skipped() {
    within(async {
        // Garbage (partial frames, noise, a stray OPEN, RESET and HELLO of other sessions)
        // goes both ways before every host connection, the first one included.
        let rig = Rig::start(true).await;
        concurrent_round(&rig.listen_socket, "after-garbage", 20, 2000).await;
        let before = rig.qemu.connects.load(Ordering::SeqCst);
        rig.qemu.kick(false);
        rig.wait_resynced(before).await;
        concurrent_round(&rig.listen_socket, "after-more-garbage", 20, 2000).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_survives_host_disconnects_mid_transfer() {
    within(async {
        let rig = Rig::start(true).await;
        for (round, quiet) in [(0, false), (1, true), (2, false)] {
            // Large uploads in flight when the link drops; they may fail, but must never
            // come back wrong.
            let inflight: Vec<_> = (0..4)
                .map(|i| {
                    let socket = rig.listen_socket.clone();
                    let path = format!("/inflight/{round}/{i}");
                    let body = pattern(100 + i, 4 * 1024 * 1024);
                    tokio::spawn(async move {
                        let got = post(&socket, &path, &body).await;
                        (path, body, got)
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(30)).await;
            let before = rig.qemu.connects.load(Ordering::SeqCst);
            rig.qemu.kick(quiet);
            let mut failed = 0;
            for task in inflight {
                let (path, body, got) = task.await.unwrap();
                match got {
                    Ok(got) => check(&path, &body, &got),
                    Err(_) => failed += 1,
                }
            }
            tracing::info!(
                round,
                quiet,
                failed,
                "in-flight requests cut by the disconnect"
            );
            rig.wait_resynced(before).await;
            concurrent_round(&rig.listen_socket, &format!("after/{round}"), 20, 3000).await;
        }
        assert!(!rig.guest.is_finished(), "the guest end must keep running");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_host_process_takes_over() {
    within(async {
        let mut rig = Rig::start(true).await;
        concurrent_round(&rig.listen_socket, "first-host", 5, 100).await;
        drop(rig.host.take());
        assert!(
            !rig.listen_socket.exists(),
            "stopping removes the listening socket"
        );
        let before = rig.qemu.connects.load(Ordering::SeqCst);
        rig.host =
            Some(apibridge::spawn_host_bridge(&rig.qemu_socket, &rig.listen_socket).unwrap());
        rig.wait_resynced(before).await;
        concurrent_round(&rig.listen_socket, "second-host", 20, 100).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_wait_for_a_late_guest() {
    within(async {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let api_socket = dir.path().join("api.sock");
        let qemu_socket = dir.path().join("qemu.sock");
        let listen_socket = dir.path().join("api-host.sock");
        // Host first: QEMU is not even there yet.
        let host = apibridge::spawn_host_bridge(&qemu_socket, &listen_socket).unwrap();
        let early = tokio::spawn({
            let socket = listen_socket.clone();
            async move { post(&socket, "/early", b"hello").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _server = start_echo_server(&api_socket);
        let qemu = FakeQemu::start(&qemu_socket, true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!host.guest_connected());
        let guest = start_guest(&qemu, &api_socket);
        let got = early.await.unwrap().unwrap();
        check("/early", b"hello", &got);
        assert!(host.guest_connected());
        guest.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_guest_is_noticed() {
    within(async {
        let mut rig = Rig::start(false).await;
        concurrent_round(&rig.listen_socket, "first-guest", 5, 100).await;
        // Pull the port from under the first guest end, then start a second one on it, as
        // systemd would after a crash.
        rig.qemu.port.unplugged.store(true, Ordering::SeqCst);
        let result = tokio::time::timeout(SYNC_TIMEOUT, &mut rig.guest)
            .await
            .expect("the guest end noticed the port failing")
            .unwrap();
        assert!(result.is_err());
        rig.qemu.port.unplugged.store(false, Ordering::SeqCst);
        rig.guest = start_guest(&rig.qemu, &rig.api_socket);
        // Its HELLO(0) makes the host start a new session; requests work again.
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        loop {
            match post(&rig.listen_socket, "/probe", b"x").await {
                Ok(got) => {
                    check("/probe", b"x", &got);
                    break;
                }
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "no answer: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        concurrent_round(&rig.listen_socket, "second-guest", 20, 100).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_server_restart_is_survived() {
    within(async {
        let mut rig = Rig::start(false).await;
        concurrent_round(&rig.listen_socket, "before", 3, 100).await;
        rig.server.abort();
        let _ = (&mut rig.server).await;
        std::fs::remove_file(&rig.api_socket).unwrap();
        // No API server: the client gets its connection closed, no answer.
        let err = post(&rig.listen_socket, "/down", b"x").await.unwrap_err();
        assert!(err.contains("no response head"), "{err}");
        rig.server = start_echo_server(&rig.api_socket);
        concurrent_round(&rig.listen_socket, "after", 20, 100).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_client_does_not_block_others() {
    within(async {
        let rig = Rig::start(false).await;
        // Upload 8 MiB and never read the 8 MiB echo: the answer backs up into the bridge.
        let mut stalled = UnixStream::connect(&rig.listen_socket).await.unwrap();
        let body = pattern(5, 8 * 1024 * 1024);
        let head = format!(
            "POST /stalled HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stalled.write_all(head.as_bytes()).await.unwrap();
        stalled.write_all(&body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        concurrent_round(&rig.listen_socket, "meanwhile", 20, 1000).await;
        // The stalled answer is still complete once it is read.
        let mut answer = Vec::new();
        stalled.read_to_end(&mut answer).await.unwrap();
        let head_end = find(&answer, b"\r\n\r\n").unwrap() + 4;
        check("/stalled", &body, &answer[head_end..]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_close_from_the_client_still_gets_the_answer() {
    within(async {
        let rig = Rig::start(false).await;
        let mut s = UnixStream::connect(&rig.listen_socket).await.unwrap();
        let body = pattern(8, 70_000);
        let head = format!(
            "POST /half HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let head_end = find(&answer, b"\r\n\r\n").unwrap() + 4;
        check("/half", &body, &answer[head_end..]);
    })
    .await;
}

#[test]
fn listening_on_a_socket_in_use_fails() {
    let dir = tempfile::tempdir().unwrap();
    let listen = dir.path().join("api.sock");
    let qemu = dir.path().join("qemu.sock");
    let first = apibridge::spawn_host_bridge(&qemu, &listen).unwrap();
    let err = apibridge::spawn_host_bridge(&qemu, &listen).unwrap_err();
    assert!(matches!(err, apibridge::Error::SocketInUse { .. }), "{err}");
    first.stop().unwrap();
    assert!(!listen.exists());
    // A regular file is not ours to replace.
    std::fs::write(&listen, b"not a socket").unwrap();
    let err = apibridge::spawn_host_bridge(&qemu, &listen).unwrap_err();
    assert!(matches!(err, apibridge::Error::NotASocket { .. }), "{err}");
}
