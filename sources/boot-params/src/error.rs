//! Errors of parsing the `ballast.*` parameters. Each names the parameter as it appears on the
//! command line, so the message points at the boot configuration line to fix.

use snafu::Snafu;

/// A required parameter is missing or a value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "the kernel command line has no {key}=...; the boot loader configuration must set it"
    ))]
    MissingParam { key: &'static str },

    #[snafu(display("{key}={value} is invalid: {reason}"))]
    InvalidParam {
        key: String,
        value: String,
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid<T>(key: &str, value: &str, reason: &str) -> Result<T> {
    InvalidParamSnafu { key, value, reason }.fail()
}
