//! The one error type of early-boot-config: failures to hand a checked document to the API
//! server. Problems with the user data itself are [`crate::document::Refusal`]s, and a provider
//! that cannot be read is an [`crate::Outcome`]; neither stops the other providers.

use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot reach the API server at {}: {source}", socket_path.display()))]
    Request {
        socket_path: PathBuf,
        source: apiclient::Error,
    },

    #[snafu(display("The API server refused the settings: {message}"))]
    Refused { message: String },

    #[snafu(display("The API server failed to store the settings (status {status}): {message}"))]
    Status { status: u16, message: String },
}

impl Error {
    /// True when the user data was at fault, not the API server or the way to it.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Refused { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
