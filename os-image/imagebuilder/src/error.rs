//! Errors returned by this crate.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building an image or handling the GRUB environment.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "the image build needs {missing}, which {verb} not installed on this host; install with: \
         apt-get install -y --no-install-recommends {packages}"
    ))]
    MissingTools {
        missing: String,
        verb: &'static str,
        packages: String,
    },

    #[snafu(display(
        "GRUB's x86_64-efi modules are missing from '{}' ({missing}); install them with: \
         apt-get install -y --no-install-recommends grub-efi-amd64-bin",
        dir.display()
    ))]
    MissingGrubModules { dir: PathBuf, missing: String },

    #[snafu(display("cannot start {command}: {source}"))]
    ToolStart { command: String, source: io::Error },

    #[snafu(display("{command} failed ({status}): {stderr}"))]
    ToolFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },

    #[snafu(display("{command} reported errors: {stderr}"))]
    ToolErrors { command: String, stderr: String },

    #[snafu(display("cannot {action} '{}': {source}", path.display()))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[snafu(display("invalid image input: {reason}"))]
    InvalidInput { reason: String },

    #[snafu(display("the kernel parameter {param:?} cannot go on a GRUB command line: {reason}"))]
    BadKernelParam { param: String, reason: String },

    #[snafu(display(
        "the initramfs module '{module}' is not in the root tree (looked for '{}'): check the \
         module list against usr/lib/modules/<kernel version> in the root tree",
        path.display()
    ))]
    MissingModule { module: String, path: PathBuf },

    #[snafu(display(
        "{what} is {size} bytes ({size_mib} MiB) but its partition holds only {limit} bytes \
         ({limit_mib} MiB): {hint}"
    ))]
    TooLarge {
        what: &'static str,
        size: u64,
        size_mib: u64,
        limit: u64,
        limit_mib: u64,
        hint: &'static str,
    },

    #[snafu(display("cannot build the dm-verity hash tree: {source}"))]
    Verity { source: verity::Error },

    #[snafu(display("cannot lay out the disk: {source}"))]
    Disk { source: disk_layout::Error },

    #[snafu(display("cannot write the build manifest '{}': {source}", path.display()))]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[snafu(display("the GRUB environment block: {source}"))]
    GrubEnv { source: grubenv::Error },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
