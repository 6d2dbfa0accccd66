//! The guest end: reads frames from the virtio-serial port and connects each OPEN to the API
//! socket.

use crate::error::{self, Result};
use crate::mux::{Link, LinkQueue, Session};
use crate::protocol::{Decoder, Message, VERSION};
use snafu::ResultExt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};

/// Pause between reads while no host is connected (a read then returns 0 at once).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Pause between attempts to open the port.
const OPEN_RETRY: Duration = Duration::from_millis(500);
/// Pause before reopening the port after it failed.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// What the port threads report to the demultiplexer.
#[derive(Debug)]
enum PortEvent {
    Bytes(Vec<u8>),
    /// A read returned 0: nobody is connected to the host end of the port.
    HostGone,
    Failed(std::io::Error),
}

/// Serves the guest end forever: opens `port` (waiting for it to appear), bridges it to
/// `api_socket`, and reopens it if it fails.
///
/// Only returns if the opened port cannot be duplicated for the reader thread.
pub async fn serve_guest(port: &Path, api_socket: &Path) -> Result<()> {
    loop {
        let file = open_port(port).await;
        let reader = file
            .try_clone()
            .context(error::ClonePortSnafu { path: port })?;
        info!(port = %port.display(), api_socket = %api_socket.display(), "port open; bridging");
        match serve_guest_io(reader, file, api_socket).await {
            Ok(()) => info!("port closed; reopening"),
            Err(e) => warn!("{e}; reopening the port"),
        }
        tokio::time::sleep(REOPEN_DELAY).await;
    }
}

/// Opens the port read-write, retrying until it exists and can be opened.
async fn open_port(port: &Path) -> File {
    let mut reported = false;
    loop {
        match OpenOptions::new().read(true).write(true).open(port) {
            Ok(file) => return file,
            Err(e) => {
                if !reported {
                    if e.kind() == ErrorKind::NotFound {
                        info!(port = %port.display(), "waiting for the port to appear");
                    } else {
                        warn!(port = %port.display(), error = %e, "cannot open the port; retrying");
                    }
                    reported = true;
                }
                tokio::time::sleep(OPEN_RETRY).await;
            }
        }
    }
}

/// Runs the guest end over an already open port, given as its reading and writing halves
/// (for a device, two handles of the same file).
///
/// Both halves are driven by plain threads with blocking I/O. A read that returns 0 means
/// "no host connected"; the reader then sleeps briefly and tries again, so this works both
/// for a virtio-serial port and for tests that simulate one. Returns when a read or write
/// fails with a real error; the caller decides whether to reopen.
pub async fn serve_guest_io<R, W>(reader: R, writer: W, api_socket: &Path) -> Result<()>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let (events_tx, mut events) = mpsc::channel(16);
    let (link, queue) = Link::new();

    let tx = events_tx.clone();
    std::thread::Builder::new()
        .name("apibridge-port-rd".into())
        .spawn(move || read_port(reader, tx))
        .context(error::SpawnThreadSnafu)?;
    std::thread::Builder::new()
        .name("apibridge-port-wr".into())
        .spawn(move || write_port(writer, queue, events_tx))
        .context(error::SpawnThreadSnafu)?;

    let mut guest = Guest {
        link,
        api_socket: Arc::from(api_socket),
        session: None,
        decoder: Decoder::new(),
    };
    // Tell a host that may already be connected that this is a fresh start.
    guest.link.send_now(&Message::Hello {
        version: VERSION,
        nonce: 0,
    });

    while let Some(event) = events.recv().await {
        match event {
            PortEvent::Bytes(bytes) => guest.on_bytes(&bytes),
            PortEvent::HostGone => guest.on_host_gone(),
            PortEvent::Failed(source) => {
                return Err(source).context(error::PortIoSnafu);
            }
        }
    }
    Ok(())
}

fn read_port<R: Read>(mut reader: R, events: mpsc::Sender<PortEvent>) {
    let mut buf = vec![0u8; 64 * 1024];
    // Start as "connected" so that the first empty read is reported once.
    let mut host_present = true;
    while !events.is_closed() {
        let event = match reader.read(&mut buf) {
            Ok(0) => {
                // No host. Reads return 0 at once until one connects, so wait a little
                // between tries instead of spinning.
                let was_present = std::mem::replace(&mut host_present, false);
                if was_present && events.blocking_send(PortEvent::HostGone).is_err() {
                    break;
                }
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            Ok(n) => {
                host_present = true;
                PortEvent::Bytes(buf[..n].to_vec())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            Err(e) => PortEvent::Failed(e),
        };
        let failed = matches!(event, PortEvent::Failed(_));
        if events.blocking_send(event).is_err() || failed {
            break;
        }
    }
    debug!("port reader thread exiting");
}

fn write_port<W: Write>(mut writer: W, mut queue: LinkQueue, events: mpsc::Sender<PortEvent>) {
    let mut batch = Vec::new();
    // Writes block while no host is connected; that is fine, the frames wait.
    while queue.next_batch_blocking(&mut batch).is_some() {
        trace!(bytes = batch.len(), "writing to the port");
        if let Err(e) = writer.write_all(&batch).and_then(|()| writer.flush()) {
            let _ = events.blocking_send(PortEvent::Failed(e));
            break;
        }
    }
    debug!("port writer thread exiting");
}

struct Guest {
    link: Link,
    api_socket: Arc<Path>,
    session: Option<Session>,
    decoder: Decoder,
}

impl Guest {
    fn on_bytes(&mut self, bytes: &[u8]) {
        for result in self.decoder.push(bytes) {
            match result {
                Ok(msg) => self.on_message(msg),
                Err(e) => debug!(error = %e, "skipping bytes that are not a frame"),
            }
        }
    }

    fn on_host_gone(&mut self) {
        match self.session.take() {
            Some(session) => info!(
                session = format_args!("{:016x}", session.nonce()),
                connections = session.connection_count(),
                "host disconnected; dropping its connections"
            ),
            None => info!("no host connected to the port; waiting"),
        }
        self.link.next_epoch();
        self.decoder.resync();
    }

    fn on_message(&mut self, msg: Message) {
        match msg {
            Message::Reset { version, nonce } => self.on_reset(version, nonce),
            Message::Open { id } => match &self.session {
                Some(session) => self.open(session, id),
                None => trace!(id, "OPEN outside a session; ignored"),
            },
            Message::Hello { .. } => debug!("ignoring HELLO sent to the guest"),
            other => match &self.session {
                Some(session) => session.shared().dispatch(other),
                None => trace!("frame outside a session; ignored"),
            },
        }
    }

    fn on_reset(&mut self, version: u16, nonce: u64) {
        if version != VERSION {
            error!(
                host_version = version,
                our_version = VERSION,
                "the host speaks another protocol version; not starting a session"
            );
            self.session = None;
            self.link.next_epoch();
            self.link.send_now(&Message::Hello {
                version: VERSION,
                nonce,
            });
            return;
        }
        if self.session.as_ref().map(Session::nonce) == Some(nonce) {
            // A repeated RESET of the session we are in (the host retries until it hears
            // back); keep the connections and answer again.
            debug!("repeated RESET for the current session");
        } else {
            let dropped = self
                .session
                .take()
                .map(|s| s.connection_count())
                .unwrap_or(0);
            let epoch = self.link.next_epoch();
            self.session = Some(Session::new(self.link.clone(), epoch, nonce));
            info!(
                session = format_args!("{nonce:016x}"),
                dropped_connections = dropped,
                "host bridge connected; new session"
            );
        }
        self.link.send_now(&Message::Hello {
            version: VERSION,
            nonce,
        });
    }

    fn open(&self, session: &Session, id: u32) {
        let shared = session.shared().clone();
        let Some(conn) = shared.register(id) else {
            warn!(id, "OPEN for a connection id already in use; ignored");
            return;
        };
        let api_socket: PathBuf = self.api_socket.to_path_buf();
        shared.clone().spawn(async move {
            match UnixStream::connect(&api_socket).await {
                Ok(stream) => {
                    debug!(id, "connected to the API socket");
                    shared.run(conn, stream).await;
                }
                Err(e) => {
                    warn!(id, api_socket = %api_socket.display(), error = %e, "cannot connect to the API socket");
                    shared.refuse(conn).await;
                }
            }
        });
    }
}
