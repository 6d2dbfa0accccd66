//! Errors of the OCI layout writer and reader; each names the file involved.

use snafu::Snafu;
use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while writing or reading an image layout.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot {action} {}: {source}", path.display()))]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "{} is a device node, FIFO or socket; an image layer holds only files, directories and symlinks",
        path.display()
    ))]
    UnsupportedFile { path: PathBuf },

    #[snafu(display("Cannot build the OCI {what}: {source}"))]
    Spec {
        what: String,
        source: oci_spec::OciSpecError,
    },

    #[snafu(display("Cannot serialize the OCI {what}: {source}"))]
    Json {
        what: String,
        source: serde_json::Error,
    },

    #[snafu(display("SOURCE_DATE_EPOCH {epoch} is not a usable time: {message}"))]
    BadEpoch { epoch: u64, message: String },

    #[snafu(display(
        "{} is not an image layout this crate wrote: {message}",
        dir.display()
    ))]
    BadLayout { dir: PathBuf, message: String },
}
