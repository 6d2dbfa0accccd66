//! Errors returned by this crate.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading, deriving or writing a GRUB environment block.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "the GRUB environment does not fit in {size} bytes (it needs {needed}); keep values short"
    ))]
    EnvTooLarge { size: usize, needed: usize },

    #[snafu(display("the GRUB environment key {key:?} is invalid: {reason}"))]
    EnvBadKey { key: String, reason: &'static str },

    #[snafu(display("not a GRUB environment block: {reason}"))]
    EnvMalformed { reason: String },

    #[snafu(display(
        "no GRUB environment block found in the EFI system partition of '{}': was the disk \
         built by Ballast's imagebuilder?",
        path.display()
    ))]
    EnvNotFound { path: PathBuf },

    #[snafu(display(
        "{count} GRUB environment blocks found in the EFI system partition of '{}', expected \
         exactly one",
        path.display()
    ))]
    EnvAmbiguous { path: PathBuf, count: usize },

    #[snafu(display(
        "the EFI system partition of '{}' is not a FAT file system: {reason}",
        path.display()
    ))]
    NotFat { path: PathBuf, reason: String },

    #[snafu(display("cannot {action} '{}': {source}", path.display()))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[snafu(display("cannot read or write the boot flags in the partition table: {source}"))]
    Disk { source: disk_layout::Error },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
