//! Errors of reading a module index and computing a load order.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Reading the index failed, or a module list cannot be satisfied.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("cannot read {}: {source}", path.display()))]
    Io { path: PathBuf, source: io::Error },

    #[snafu(display(
        "cannot read the .modinfo section of module {}: {reason} (only uncompressed .ko files \
         are read; run depmod to get modules.dep instead)",
        path.display()
    ))]
    Modinfo { path: PathBuf, reason: String },

    #[snafu(display("kernel module '{module}' is neither a module of this kernel nor built in"))]
    UnknownModule { module: String },

    #[snafu(display("kernel module '{module}' depends on itself: {chain}"))]
    DependencyCycle { module: String, chain: String },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
