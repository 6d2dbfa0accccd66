//! `apibridge`: carries API connections between the build host and a Ballast VM over one
//! virtio-serial port, so tests and `cargo xtask run` can reach a node's API without any
//! network.
//!
//! # Background
//!
//! On a node the API server listens on the Unix socket `/run/api.sock`. A VM started by the
//! test harness or by `cargo xtask run` gets a virtio-serial port named `ballast.api`: inside
//! the guest it is the character device `/dev/virtio-ports/ballast.api`, and on the host QEMU
//! exposes the other end as a Unix socket (`-chardev socket,server=on,wait=off`) that a
//! single process may connect to. The port is one ordered byte stream, but every `apiclient`
//! run opens its own connection, so connections have to be multiplexed over it.
//!
//! Two ends do that:
//!
//! * the **guest end** (the `apibridge` binary, run as a service in the dev variant) owns the
//!   port and opens a new connection to `/run/api.sock` for every connection the host opens;
//! * the **host end** ([`spawn_host_bridge`], [`serve_host`] or `apibridge host`) connects to
//!   QEMU's socket and listens on a Unix socket of its own, which is what `apiclient
//!   --socket-path` is pointed at.
//!
//! ## Protocol
//!
//! Frames carry a connection id, a kind and a payload; see [`protocol`] for the exact layout.
//! The host allocates ids and sends OPEN; DATA flows both ways; CLOSE says "this side reached
//! end of file" and is forwarded as a half-close (`shutdown(SHUT_WR)`), so a connection ends
//! exactly as it would on a plain socket once both sides have closed. DATA payloads are at
//! most 64 KiB.
//!
//! Each direction of each connection has a 256 KiB credit window: a sender may only have
//! that many DATA bytes outstanding, and the receiver hands credit back (WINDOW frames) as it
//! writes the bytes to its local socket. One slow or stalled client therefore never blocks
//! the shared stream for the others, and memory use stays bounded.
//!
//! ## Staying in sync across reconnects
//!
//! The byte stream outlives both ends' processes: bytes written by a host that has since
//! gone may still sit in the guest's port buffer, a guest frame may have been cut in half
//! when the host went away, and either side may restart while the other keeps running. Three
//! rules deal with that:
//!
//! 1. **Framing that resynchronises by itself.** Frames are COBS-encoded, so a 0x00 byte only
//!    ever separates frames. RESET and HELLO are sent with a 0x00 in front as well. A reader
//!    that starts anywhere in the stream, or has just seen garbage, drops bytes up to the next
//!    0x00 and is back on frame boundaries; pieces that do not decode to a valid frame are
//!    dropped. No magic needs to be searched for inside arbitrary data, and no payload can
//!    ever imitate a delimiter.
//! 2. **Sessions.** Each time the host connects to QEMU it sends RESET with a random 64-bit
//!    nonce (plus a magic and the protocol version), and until a HELLO carrying that nonce
//!    comes back it ignores everything else from the guest. RESET is repeated with backoff
//!    (1 s doubling to 30 s) while no answer comes. The guest ignores connection frames
//!    until it has seen a RESET; on a RESET with a new nonce it closes every connection and
//!    answers HELLO (a repeat of its current nonce is just answered again). When the guest
//!    starts it sends HELLO with nonce 0; a host in a session that hears a HELLO for another
//!    nonce knows the guest restarted and starts a new session.
//! 3. **Epochs.** Frames queued for the stream are tagged with their session, and the writer
//!    drops those of an old one, so a task that has not yet noticed that its session ended
//!    cannot leak a frame into the next.
//!
//! On the guest, a read from the port returns 0 while no host is connected. The guest then
//! drops its session, waits for the next delimiter, and polls the port every 200 ms until
//! bytes arrive again (no busy loop). Writes block while no host is connected.
//!
//! # Usage
//!
//! In the guest (dev variant), as a service after the API server:
//!
//! ```text
//! apibridge --port /dev/virtio-ports/ballast.api --api-socket /run/api.sock
//! ```
//!
//! It waits for the port to appear, and keeps running through host disconnects and API
//! server restarts (each OPEN connects afresh; if the API socket is not there, the client's
//! connection is closed without an answer). A unit along these lines fits:
//!
//! ```text
//! [Unit]
//! Description=Bridge the API socket to the ballast.api virtio-serial port
//! After=apiserver.service
//! [Service]
//! ExecStart=/usr/bin/apibridge --port /dev/virtio-ports/ballast.api --api-socket /run/api.sock
//! Restart=always
//! [Install]
//! WantedBy=multi-user.target
//! ```
//!
//! On the build host, from Rust (the VM harness, `cargo xtask run`):
//!
//! ```no_run
//! # fn main() -> apibridge::Result<()> {
//! let bridge = apibridge::spawn_host_bridge("/tmp/vm/api.qemu.sock", "/tmp/vm/api.sock")?;
//! bridge.wait_for_guest(std::time::Duration::from_secs(60));
//! // ... run `apiclient --socket-path /tmp/vm/api.sock ...` ...
//! drop(bridge); // stops it and removes /tmp/vm/api.sock
//! # Ok(())
//! # }
//! ```
//!
//! or by hand: `apibridge host --qemu-socket /tmp/vm/api.qemu.sock --listen /tmp/vm/api.sock`.
//!
//! Clients that connect before the guest end has answered wait until it does.
//!
//! # Current limitations
//!
//! * No keep-alive: a host end whose guest has gone quiet (guest kernel hung, VM paused, guest
//!   rebooting) keeps client connections open until the guest answers again or QEMU's socket
//!   closes. Clients need their own timeouts.
//! * A connection the guest cannot complete (API server down) is closed without a reply; the
//!   client sees end of file rather than "connection refused".
//! * One host end per port: QEMU only serves one client on its chardev socket.
//! * Frames are not checksummed; the stream is assumed to be reliable while connected, and
//!   COBS plus header checks only catch damage at reconnect boundaries.
//! * If the port fails with a write error while the reader thread is blocked, reopening may
//!   be refused (the device allows one opener) until that read returns; the guest end keeps
//!   retrying.
#![forbid(unsafe_code)]

pub mod error;
mod guest;
mod host;
mod mux;
pub mod protocol;

pub use error::{Error, Result};
pub use guest::{serve_guest, serve_guest_io};
pub use host::{serve_host, spawn_host_bridge, HostBridge};
