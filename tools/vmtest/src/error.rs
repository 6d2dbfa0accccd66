//! Errors of the VM harness. Messages name the file or command involved and, for missing host
//! tools, the package to install.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while preparing, running or watching a VM.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "{program} was not found in PATH; install it with: apt-get install -y --no-install-recommends {package}"
    ))]
    MissingTool {
        program: String,
        package: &'static str,
    },

    #[snafu(display(
        "no OVMF firmware pair found in {}; install it with: apt-get install -y --no-install-recommends ovmf",
        dir.display()
    ))]
    MissingFirmware { dir: PathBuf },

    #[snafu(display("{what} {} does not exist", path.display()))]
    MissingInput { what: &'static str, path: PathBuf },

    #[snafu(display("invalid VM configuration: {reason}"))]
    InvalidConfig { reason: String },

    #[snafu(display("I/O error on {}: {source}", path.display()))]
    Io { path: PathBuf, source: io::Error },

    #[snafu(display("cannot start {program}: {source}"))]
    Spawn { program: String, source: io::Error },

    #[snafu(display(
        "{pattern:?} did not appear on the console within {timeout:?}; console log: {}\n\
         --- last console lines ---\n{tail}{stderr}",
        log.display()
    ))]
    ConsoleTimeout {
        pattern: String,
        timeout: Duration,
        log: PathBuf,
        tail: String,
        stderr: String,
    },

    #[snafu(display(
        "QEMU exited ({status}) before {pattern:?} appeared on the console; console log: {}\n\
         --- last console lines ---\n{tail}{stderr}",
        log.display()
    ))]
    ExitedEarly {
        pattern: String,
        status: String,
        log: PathBuf,
        tail: String,
        stderr: String,
    },

    #[snafu(display(
        "QEMU is still running after {timeout:?}; console log: {}\n--- last console lines ---\n{tail}",
        log.display()
    ))]
    StillRunning {
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },

    #[snafu(display("cannot wait for QEMU: {source}"))]
    Wait { source: io::Error },

    #[snafu(display("the VM has no API socket configured"))]
    NoApiSocket,

    #[snafu(display("cannot connect to the API socket {} within {timeout:?}: {source}", path.display()))]
    ApiConnect {
        path: PathBuf,
        timeout: Duration,
        source: io::Error,
    },

    #[snafu(display("{command} failed ({status}): {stderr}"))]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    #[snafu(display("cannot run {command}: {source}"))]
    CommandStart { command: String, source: io::Error },

    #[snafu(display("unexpected output from {command}: {reason}"))]
    CommandOutput { command: String, reason: String },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
