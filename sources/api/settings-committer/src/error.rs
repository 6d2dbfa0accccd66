//! The one error type of settings-committer.

use snafu::Snafu;
use std::path::PathBuf;

/// Why the launch transaction could not be committed.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot commit transaction '{tx}' through {}: {source}", socket_path.display()))]
    Request {
        tx: String,
        socket_path: PathBuf,
        source: apiclient::Error,
    },

    #[snafu(display(
        "The API server refused to commit transaction '{tx}' (status {status}): {message}"
    ))]
    Refused {
        tx: String,
        status: u16,
        message: String,
    },

    #[snafu(display(
        "The API server committed transaction '{tx}' but its answer is not a list of keys: {source}"
    ))]
    Answer {
        tx: String,
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
