//! Errors returned by signpost.

use disk_layout::BootSet;
use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while finding the boot disk or reading and changing its A/B
/// state.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("cannot read the kernel command line from '{}': {source}", path.display()))]
    ReadCmdline { path: PathBuf, source: io::Error },

    #[snafu(display(
        "the kernel command line has no ballast.root= parameter, so the running partition set is \
         unknown (is this a Ballast node?); name the disk and set with --disk and --active"
    ))]
    NoRootParam,

    #[snafu(display(
        "ballast.root={value} on the kernel command line is not understood: expected \
         PARTLABEL=ROOT-A, PARTLABEL=ROOT-B or a /dev/... partition"
    ))]
    BadRootParam { value: String },

    #[snafu(display("cannot list the block devices in '{}': {source}", path.display()))]
    ScanSysfs { path: PathBuf, source: io::Error },

    #[snafu(display(
        "no block device matches ballast.root={value} (block devices seen: {seen}); name the disk \
         and set with --disk and --active"
    ))]
    RootNotFound { value: String, seen: String },

    #[snafu(display(
        "more than one partition is named {label} ({devices}): another Ballast disk is attached, \
         so the boot disk is ambiguous; detach it, or name the disk and set with --disk and \
         --active"
    ))]
    AmbiguousRoot { label: String, devices: String },

    #[snafu(display(
        "the root partition {devname} is neither ROOT-A nor ROOT-B (partition name {name:?}, \
         number {number:?}); name the disk and set with --disk and --active"
    ))]
    NotARootPartition {
        devname: String,
        name: Option<String>,
        number: Option<u32>,
    },

    #[snafu(display(
        "cannot find the disk that holds partition {devname} under '{}': {reason}",
        path.display()
    ))]
    ParentDisk {
        devname: String,
        path: PathBuf,
        reason: String,
    },

    #[snafu(display(
        "the boot disk's device node '{}' does not exist (is /dev mounted?)",
        path.display()
    ))]
    DiskNodeMissing { path: PathBuf },

    #[snafu(display("cannot use the boot flags of '{}': {source}", disk.display()))]
    Flags {
        disk: PathBuf,
        source: disk_layout::Error,
    },

    #[snafu(display("cannot use the GRUB environment of '{}': {source}", disk.display()))]
    GrubEnv {
        disk: PathBuf,
        source: grubenv::Error,
    },

    #[snafu(display("{operation} refused with {active} active, nothing was changed: {source}"))]
    Refused {
        operation: &'static str,
        active: BootSet,
        source: disk_layout::Error,
    },

    #[snafu(display("cannot format the status as JSON: {source}"))]
    Json { source: serde_json::Error },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
