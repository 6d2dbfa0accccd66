//! The crate's error type.

use snafu::Snafu;
use std::path::PathBuf;

/// Failures that stop a bridge from starting or keep it from running.
///
/// Trouble on a link or a single connection (the other end going away, the API server not
/// answering) is not an error: it is logged and the bridge carries on.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot duplicate the handle of the port {}: {source}", path.display()))]
    ClonePort {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Reading or writing the port failed: {source}"))]
    PortIo { source: std::io::Error },

    #[snafu(display("Cannot start a bridge thread: {source}"))]
    SpawnThread { source: std::io::Error },

    #[snafu(display("Cannot build the bridge's async runtime: {source}"))]
    Runtime { source: std::io::Error },

    #[snafu(display("Cannot create the directory {} for the listening socket: {source}", path.display()))]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Something is already listening on {}; is another bridge running?", path.display()))]
    SocketInUse { path: PathBuf },

    #[snafu(display("{} exists and is not a socket; refusing to replace it", path.display()))]
    NotASocket { path: PathBuf },

    #[snafu(display("Cannot inspect or remove the old socket {}: {source}", path.display()))]
    StaleSocket {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot listen on {}: {source}", path.display()))]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("The host bridge thread panicked"))]
    BridgePanicked,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
