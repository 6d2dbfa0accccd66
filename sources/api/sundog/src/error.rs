//! The one error type of sundog: failures that stop the whole run. A single generator that
//! fails is not an error here; it is an [`crate::Outcome`] in the report.

use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot reach the API server at {} for {what}: {source}", socket_path.display()))]
    Api {
        what: String,
        socket_path: PathBuf,
        source: apiclient::Error,
    },

    #[snafu(display("The API server refused {what} (status {status}): {message}"))]
    ApiStatus {
        what: String,
        status: u16,
        message: String,
    },

    #[snafu(display(
        "The API server's answer to {what} is not the expected JSON object: {source}"
    ))]
    ApiAnswer {
        what: String,
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
