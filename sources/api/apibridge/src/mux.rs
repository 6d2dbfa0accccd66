//! What both ends share: the outgoing frame queue, sessions, and the per-connection pumps with
//! their credit-based flow control.

use crate::protocol::{self, Message, MAX_PAYLOAD};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, trace, warn};

/// How many DATA bytes of one connection may be in flight (sent, not yet written out by the
/// other end) in one direction.
pub(crate) const WINDOW: u32 = 256 * 1024;

/// Frames handed to the link writer in one write call, at most (roughly).
pub(crate) const WRITE_BATCH: usize = 256 * 1024;

/// Encoded bytes for the link writer, tagged with the session epoch that produced them.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub epoch: u64,
    pub bytes: Vec<u8>,
}

/// The sending half of a link (one byte stream to the other end) plus its epoch counter.
///
/// Every session on a link gets a new epoch. The writer drops frames whose epoch is no longer
/// current, so a connection task of an old session that has not noticed its cancellation yet
/// cannot slip a frame into the new session.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    tx: mpsc::UnboundedSender<Outgoing>,
    epoch: Arc<AtomicU64>,
}

impl Link {
    pub fn new() -> (Link, LinkQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        (
            Link {
                tx,
                epoch: epoch.clone(),
            },
            LinkQueue { rx, epoch },
        )
    }

    /// Makes every queued or future frame of earlier epochs stale; returns the new epoch.
    pub fn next_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Queues a frame in the current epoch.
    pub fn send_now(&self, msg: &Message) {
        self.send(self.epoch(), msg.encode());
    }

    fn send(&self, epoch: u64, bytes: Vec<u8>) {
        // Fails only when the writer is gone, and then the link is going down anyway.
        let _ = self.tx.send(Outgoing { epoch, bytes });
    }
}

/// The receiving half of the outgoing queue, used by the link writer.
#[derive(Debug)]
pub(crate) struct LinkQueue {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    epoch: Arc<AtomicU64>,
}

impl LinkQueue {
    /// Adds `item` to `batch` if it belongs to the current epoch.
    fn take(&self, item: Outgoing, batch: &mut Vec<u8>) {
        if item.epoch == self.epoch.load(Ordering::SeqCst) {
            batch.extend_from_slice(&item.bytes);
        } else {
            trace!(
                bytes = item.bytes.len(),
                "dropping a frame of an old session"
            );
        }
    }

    /// Fills `batch` with whatever else is queued, without waiting.
    fn fill(&mut self, batch: &mut Vec<u8>) {
        while batch.len() < WRITE_BATCH {
            match self.rx.try_recv() {
                Ok(item) => self.take(item, batch),
                Err(_) => break,
            }
        }
    }

    /// Waits for the next batch of bytes to write; `None` when every sender is gone.
    pub async fn next_batch(&mut self, batch: &mut Vec<u8>) -> Option<()> {
        batch.clear();
        while batch.is_empty() {
            let first = self.rx.recv().await?;
            self.take(first, batch);
            self.fill(batch);
        }
        Some(())
    }

    /// Blocking form of [`LinkQueue::next_batch`], for a plain thread.
    pub fn next_batch_blocking(&mut self, batch: &mut Vec<u8>) -> Option<()> {
        batch.clear();
        while batch.is_empty() {
            let first = self.rx.blocking_recv()?;
            self.take(first, batch);
            self.fill(batch);
        }
        Some(())
    }
}

/// What a connection's writer task is told by the demultiplexer.
#[derive(Debug)]
enum ToLocal {
    Data(Vec<u8>),
    Close,
}

#[derive(Debug)]
struct Conn {
    to_local: mpsc::UnboundedSender<ToLocal>,
    credit: Arc<Semaphore>,
    /// Our reader has sent CLOSE.
    local_done: bool,
    /// The other end has sent CLOSE.
    peer_done: bool,
}

/// A connection registered in a session, ready to be attached to a local socket.
#[derive(Debug)]
pub(crate) struct NewConn {
    pub id: u32,
    rx: mpsc::UnboundedReceiver<ToLocal>,
    credit: Arc<Semaphore>,
}

/// One session: the connections opened since the last RESET.
///
/// Owned by the demultiplexer; dropping it cancels every task of the session, which closes
/// their local sockets.
#[derive(Debug)]
pub(crate) struct Session {
    shared: Arc<SessionShared>,
    _cancel: watch::Sender<()>,
}

impl Session {
    pub fn new(link: Link, epoch: u64, nonce: u64) -> Session {
        let (cancel, cancelled) = watch::channel(());
        Session {
            shared: Arc::new(SessionShared {
                link,
                epoch,
                nonce,
                conns: Mutex::new(HashMap::new()),
                next_id: Mutex::new(1),
                cancelled,
            }),
            _cancel: cancel,
        }
    }

    pub fn shared(&self) -> &Arc<SessionShared> {
        &self.shared
    }

    pub fn nonce(&self) -> u64 {
        self.shared.nonce
    }

    pub fn connection_count(&self) -> usize {
        self.shared.conns().len()
    }
}

/// The part of a session its tasks hold on to.
#[derive(Debug)]
pub(crate) struct SessionShared {
    link: Link,
    epoch: u64,
    nonce: u64,
    conns: Mutex<HashMap<u32, Conn>>,
    next_id: Mutex<u32>,
    cancelled: watch::Receiver<()>,
}

impl SessionShared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u32, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn send(&self, msg: &Message) {
        self.link.send(self.epoch, msg.encode());
    }

    /// Resolves once the session has been dropped.
    pub async fn cancelled(&self) {
        let mut rx = self.cancelled.clone();
        // `changed` fails exactly when the sender (held by `Session`) is gone; nothing is
        // ever sent on it.
        while rx.changed().await.is_ok() {}
    }

    /// Runs `fut` on the runtime until it finishes or the session ends.
    pub fn spawn(self: &Arc<Self>, fut: impl Future<Output = ()> + Send + 'static) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = me.cancelled() => {}
                () = fut => {}
            }
        });
    }

    fn insert(&self, conns: &mut HashMap<u32, Conn>, id: u32) -> NewConn {
        let (to_local, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(WINDOW as usize));
        conns.insert(
            id,
            Conn {
                to_local,
                credit: credit.clone(),
                local_done: false,
                peer_done: false,
            },
        );
        NewConn { id, rx, credit }
    }

    /// Registers a connection the other end opened; `None` if `id` is already in use.
    pub fn register(&self, id: u32) -> Option<NewConn> {
        let mut conns = self.conns();
        if conns.contains_key(&id) {
            return None;
        }
        Some(self.insert(&mut conns, id))
    }

    /// Picks an unused id, registers it and queues its OPEN (host side).
    pub fn open(&self) -> NewConn {
        let mut conns = self.conns();
        let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        let id = loop {
            let candidate = *next;
            *next = next.wrapping_add(1).max(1);
            if !conns.contains_key(&candidate) {
                break candidate;
            }
        };
        let conn = self.insert(&mut conns, id);
        // Queued while the table is locked, so OPEN goes out before any DATA for the id.
        self.send(&Message::Open { id });
        conn
    }

    /// Routes DATA, CLOSE and WINDOW from the other end to their connection.
    pub fn dispatch(&self, msg: Message) {
        match msg {
            Message::Data { id, payload } => {
                let len = payload.len();
                let conns = self.conns();
                let Some(conn) = conns.get(&id).filter(|c| !c.peer_done) else {
                    trace!(id, len, "DATA for a connection that is not open; dropped");
                    return;
                };
                if conn.to_local.send(ToLocal::Data(payload)).is_err() {
                    // The writer is gone; hand the credit straight back so the other end is
                    // not left waiting.
                    drop(conns);
                    self.grant(id, len);
                }
            }
            Message::Close { id } => {
                let mut conns = self.conns();
                let Some(conn) = conns.get_mut(&id) else {
                    trace!(id, "CLOSE for an unknown connection");
                    return;
                };
                conn.peer_done = true;
                let _ = conn.to_local.send(ToLocal::Close);
                if conn.local_done {
                    conns.remove(&id);
                    debug!(id, "connection finished");
                }
            }
            Message::Window { id, credit } => {
                let conns = self.conns();
                if let Some(conn) = conns.get(&id) {
                    // A correct peer never hands out more than it was sent; refuse anything
                    // that would push the semaphore past a sane bound.
                    if conn.credit.available_permits() + credit as usize <= 2 * WINDOW as usize {
                        conn.credit.add_permits(credit as usize);
                    } else {
                        warn!(id, credit, "ignoring a WINDOW frame granting too much");
                    }
                }
            }
            other => trace!(?other, "not a connection frame"),
        }
    }

    fn grant(&self, id: u32, len: usize) {
        let credit = u32::try_from(len).expect("payload fits in u32");
        self.send(&Message::Window { id, credit });
    }

    /// Our side of `id` reached end of file: tell the other end.
    fn local_finished(&self, id: u32) {
        {
            let mut conns = self.conns();
            if let Some(conn) = conns.get_mut(&id) {
                conn.local_done = true;
                if conn.peer_done {
                    conns.remove(&id);
                    debug!(id, "connection finished");
                }
            }
        }
        // Marked before CLOSE is queued: by the time the other end can reuse the id (after
        // it has seen this CLOSE) our entry is gone or about to go on its CLOSE.
        self.send(&Message::Close { id });
    }

    /// Pumps bytes both ways between `stream` and the other end until both directions are
    /// closed.
    pub async fn run(self: Arc<Self>, conn: NewConn, stream: UnixStream) {
        let (rd, wr) = stream.into_split();
        let NewConn { id, rx, credit } = conn;
        tokio::join!(
            self.clone().local_to_peer(id, rd, credit),
            self.peer_to_local(id, wr, rx)
        );
        debug!(id, "connection tasks done");
    }

    /// For a connection that never got a local socket: report EOF at once and swallow
    /// whatever the other end still sends.
    pub async fn refuse(self: Arc<Self>, conn: NewConn) {
        let NewConn { id, mut rx, .. } = conn;
        self.local_finished(id);
        while let Some(msg) = rx.recv().await {
            match msg {
                ToLocal::Data(bytes) => self.grant(id, bytes.len()),
                ToLocal::Close => break,
            }
        }
    }

    async fn local_to_peer(
        self: Arc<Self>,
        id: u32,
        mut rd: OwnedReadHalf,
        credit: Arc<Semaphore>,
    ) {
        let mut buf = vec![0u8; MAX_PAYLOAD];
        let mut total = 0u64;
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    debug!(id, error = %e, "reading the local socket failed");
                    break;
                }
            };
            let want = u32::try_from(n).expect("read at most MAX_PAYLOAD");
            match credit.acquire_many(want).await {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            let mut bytes = Vec::with_capacity(n + n / 254 + 16);
            protocol::encode_data(id, &buf[..n], &mut bytes);
            self.link.send(self.epoch, bytes);
            total += n as u64;
        }
        trace!(id, total, "local side reached EOF");
        self.local_finished(id);
    }

    async fn peer_to_local(
        self: Arc<Self>,
        id: u32,
        mut wr: OwnedWriteHalf,
        mut rx: mpsc::UnboundedReceiver<ToLocal>,
    ) {
        let mut broken = false;
        while let Some(msg) = rx.recv().await {
            match msg {
                ToLocal::Data(bytes) => {
                    if !broken {
                        if let Err(e) = wr.write_all(&bytes).await {
                            debug!(id, error = %e, "writing to the local socket failed; discarding the rest");
                            broken = true;
                        }
                    }
                    self.grant(id, bytes.len());
                }
                ToLocal::Close => {
                    if !broken {
                        // Half-close: the local peer sees EOF but can still answer.
                        let _ = wr.shutdown().await;
                    }
                    break;
                }
            }
        }
    }
}
