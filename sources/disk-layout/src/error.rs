//! Errors returned by this crate.

use crate::flags::BootSet;
use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while planning, writing or reading a Ballast disk.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("the {name} partition size is 0 MiB: every partition needs at least 1 MiB"))]
    ZeroSize { name: &'static str },

    #[snafu(display(
        "HASH partitions of {hash_mib} MiB cannot hold the dm-verity tree of a {root_mib} MiB \
         ROOT partition, which needs {needed_mib} MiB: raise hash_mib"
    ))]
    HashTooSmall {
        hash_mib: u64,
        root_mib: u64,
        needed_mib: u64,
    },

    #[snafu(display(
        "the disk size {total_size} is not a multiple of the {sector}-byte sector size"
    ))]
    UnalignedDiskSize { total_size: u64, sector: u64 },

    #[snafu(display(
        "a {total_size}-byte disk is too small for this layout, which needs at least {needed} \
         bytes ({needed_mib} MiB): use a bigger disk or smaller partitions"
    ))]
    DiskTooSmall {
        total_size: u64,
        needed: u64,
        needed_mib: u64,
    },

    #[snafu(display("the sizes of this layout overflow: {what}"))]
    SizeOverflow { what: &'static str },

    #[snafu(display("cannot create the disk image '{}': {source}", path.display()))]
    CreateImage { path: PathBuf, source: io::Error },

    #[snafu(display("cannot find the size of the disk '{}': {source}", path.display()))]
    DiskSize { path: PathBuf, source: io::Error },

    #[snafu(display(
        "cannot open the disk '{}' as GPT: {source} (is it a GPT disk with 512-byte sectors, and \
         do you have permission to open it?)",
        path.display()
    ))]
    OpenDisk {
        path: PathBuf,
        source: gpt::GptError,
    },

    #[snafu(display("cannot prepare the partition table of '{}': {source}", path.display()))]
    BuildTable {
        path: PathBuf,
        source: gpt::GptError,
    },

    #[snafu(display("cannot write the partition table to '{}': {source}", path.display()))]
    WriteTable {
        path: PathBuf,
        source: gpt::GptError,
    },

    #[snafu(display("cannot write the protective MBR to '{}': {source}", path.display()))]
    WriteMbr {
        path: PathBuf,
        source: gpt::mbr::MBRError,
    },

    #[snafu(display(
        "the disk '{}' has no partition named {name}: it is not a Ballast disk",
        path.display()
    ))]
    MissingPartition { path: PathBuf, name: &'static str },

    #[snafu(display(
        "the disk '{}' has more than one partition named {name}: fix the partition table \
         (sgdisk -p shows it) so that each name is unique",
        path.display()
    ))]
    DuplicatePartition { path: PathBuf, name: &'static str },

    #[snafu(display(
        "partition {name} on '{}' has type GUID {found}, but Ballast uses {expected}: it is not \
         a Ballast disk, or its table was changed by hand",
        path.display()
    ))]
    WrongPartitionType {
        path: PathBuf,
        name: &'static str,
        found: uuid::Uuid,
        expected: uuid::Uuid,
    },

    #[snafu(display(
        "the partition table of '{}' has unused entries between used ones; rewriting it would \
         renumber partitions, so nothing was written (sgdisk -s sorts the table)",
        path.display()
    ))]
    PartitionGap { path: PathBuf },

    #[snafu(display(
        "the disk '{}' is {total_size} bytes but its partition table describes {table_size} \
         bytes: the disk was shrunk, refusing to touch the table",
        path.display()
    ))]
    DiskShrunk {
        path: PathBuf,
        total_size: u64,
        table_size: u64,
    },

    #[snafu(display("the disk '{}' has no partitions to grow", path.display()))]
    NoPartitions { path: PathBuf },

    #[snafu(display(
        "the inactive set {inactive} has not been marked valid (its tries-left is 0): write the \
         update to it and run mark-inactive-valid before upgrade-to-inactive"
    ))]
    InactiveNotValid { inactive: BootSet },

    #[snafu(display(
        "cannot roll back to {inactive}: it has never booted successfully and has no tries left, \
         so it may not hold a working image"
    ))]
    RollbackNotBootable { inactive: BootSet },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
