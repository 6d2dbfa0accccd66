//! Errors of the early init. Every message names what was being done and, where it helps, what
//! the operator or the image builder should change.

use nix::errno::Errno;
use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Anything that can go wrong while bringing up the root filesystem.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("cannot create directory {}: {source}", path.display()))]
    CreateDir { path: PathBuf, source: io::Error },

    #[snafu(display("cannot mount {what} on {}: {source}", target.display()))]
    Mount {
        what: String,
        target: PathBuf,
        source: Errno,
    },

    #[snafu(display("cannot read {}: {source}", path.display()))]
    ReadFile { path: PathBuf, source: io::Error },

    /// A `ballast.*` parameter is missing or malformed; the message names it.
    #[snafu(context(false), display("{source}"))]
    Cmdline { source: boot_params::Error },

    #[snafu(display("/etc/modules.order line {line}: {reason}"))]
    ModulesOrder { line: usize, reason: String },

    #[snafu(display(
        "module {} is listed in /etc/modules.order but is not in the initramfs and not built in",
        path.display()
    ))]
    ModuleMissing { path: PathBuf },

    #[snafu(display("cannot open module {}: {source}", path.display()))]
    ModuleOpen { path: PathBuf, source: io::Error },

    #[snafu(display("the kernel refused module {}: {source}{hint}", path.display()))]
    ModuleLoad {
        path: PathBuf,
        source: Errno,
        hint: String,
    },

    #[snafu(display("cannot scan block devices in {}: {source}", path.display()))]
    ScanBlock { path: PathBuf, source: io::Error },

    #[snafu(display(
        "{what} did not appear within {waited_secs} s; block devices seen: {seen} \
         (is the disk attached and its driver module in /etc/modules.order?)"
    ))]
    DeviceTimeout {
        what: String,
        waited_secs: u64,
        seen: String,
    },

    #[snafu(display(
        "partition name {label} is on more than one device ({devices}); detach or rename the extra disk"
    ))]
    AmbiguousLabel { label: String, devices: String },

    #[snafu(display(
        "cannot open the device-mapper control node {}: {source} (is dm-mod in /etc/modules.order?)",
        path.display()
    ))]
    DmControl { path: PathBuf, source: io::Error },

    #[snafu(display(
        "device-mapper {op} for device {name} failed: {source}; the kernel messages above give the reason"
    ))]
    DmIoctl {
        op: &'static str,
        name: String,
        source: Errno,
    },

    #[snafu(display("the device-mapper request for {name} is malformed: {reason}"))]
    DmRequest { name: String, reason: String },

    #[snafu(display("cannot create device node {}: {source}", path.display()))]
    Mknod { path: PathBuf, source: Errno },

    #[snafu(display(
        "DATA partition {} holds no ext4 filesystem but is not blank either; refusing to format it",
        device.display()
    ))]
    DataNotBlank { device: PathBuf },

    #[snafu(display(
        "DATA partition {} has no filesystem and the initramfs has no mkfs.ext4; \
         the image builder must pre-format DATA",
        device.display()
    ))]
    NoMkfs { device: PathBuf },

    #[snafu(display("formatting DATA partition {} failed: {detail}", device.display()))]
    Mkfs { device: PathBuf, detail: String },

    #[snafu(display("cannot copy {} to {}: {source}", from.display(), to.display()))]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },

    #[snafu(display("{op} failed: {source}"))]
    Syscall { op: String, source: Errno },

    #[snafu(display(
        "the init program {} does not exist in the root image (check ballast.init=)",
        path.display()
    ))]
    InitMissing { path: PathBuf },

    #[snafu(display("cannot execute {}: {source}", path.display()))]
    Exec { path: PathBuf, source: Errno },

    #[snafu(display("{reason}"))]
    Grow { reason: String },

    #[snafu(display("internal error (panic): {message}"))]
    Panic { message: String },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
