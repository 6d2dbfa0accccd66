//! The one error type of bork.

use snafu::Snafu;

/// Errors of the bork command line.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Failed to write the seed to stdout: {source}"))]
    WriteOutput { source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
