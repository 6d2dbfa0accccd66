//! The `ballast.*` kernel command line parameters: one definition for the image builder that
//! writes them and for every program on the node that reads them.
//!
//! # Background
//!
//! A Ballast node learns at boot which partitions hold its root and how to check it from the
//! kernel command line. The image builder (`imagebuilder`) writes the command line into each
//! BOOT partition's `grub.cfg`; GRUB fills in the set letter and starts the kernel; then:
//!
//! * the early init (`early-init`, PID 1 of the initramfs) reads the verity root, opens it
//!   through device-mapper and mounts it;
//! * `signpost` reads `ballast.root=` to tell which set is running and on which disk, and
//!   `ballast.boot-deadline=` for the boot watch;
//! * `early-boot-config` reads `ballast.user-data=` and `ballast.imds=`.
//!
//! This crate holds the parameter names ([`ROOT`], [`HASH`], ...), the kernel's way of
//! splitting a command line ([`Cmdline`]), and the typed parameters with a writer and a parser
//! each: [`VerityRoot`] (written by the builder) and [`BootParams`] (everything the early init
//! reads). It does no I/O and depends only on `snafu`, so the static early init can use it.
//!
//! | parameter | meaning |
//! |---|---|
//! | `ballast.root=PARTLABEL=ROOT-A` or `/dev/...` | verity data device (the erofs image) |
//! | `ballast.hash=PARTLABEL=HASH-A` or `/dev/...` | verity hash device |
//! | `ballast.roothash=<64 hex>` | sha256 root hash |
//! | `ballast.salt=<hex>` or `-` | verity salt |
//! | `ballast.datablocks=<n>` | number of 4096-byte data blocks |
//! | `ballast.hashstart=<n>` | first hash block, default 0 (`veritysetup format --no-superblock`) |
//! | `ballast.data=PARTLABEL=DATA` | optional writable partition (ext4) |
//! | `ballast.init=/usr/lib/systemd/systemd` | program the early init executes in the new root |
//! | `ballast.onfailure=reboot\|poweroff` | what the early init does after a fatal error |
//! | `ballast.debug` | the early init prints more detail |
//! | `ballast.boot-deadline=<seconds>` | signpost's boot watch (0: off) |
//! | `ballast.user-data=<base64>` | user data for early-boot-config |
//! | `ballast.imds=<url>\|off` | instance-metadata service for early-boot-config |
//!
//! # Usage
//!
//! ```
//! use boot_params::{BootParams, DeviceSpec, VerityRoot};
//!
//! // The image builder.
//! let root = VerityRoot {
//!     root: DeviceSpec::PartLabel("ROOT-A".into()),
//!     hash: DeviceSpec::PartLabel("HASH-A".into()),
//!     root_hash: "ab".repeat(32),
//!     salt: "cd".repeat(32),
//!     data_blocks: 42,
//!     hash_start_block: 0,
//!     data: Some(DeviceSpec::PartLabel("DATA".into())),
//! };
//! let cmdline = format!("console=ttyS0 {root}");
//!
//! // The early init, reading /proc/cmdline.
//! let params = BootParams::parse(&cmdline)?;
//! assert_eq!(params.verity, root);
//! # Ok::<(), boot_params::Error>(())
//! ```
//!
//! # Current limitations
//!
//! * Partitions are named by GPT partition name or `/dev` path only (no PARTUUID).
//! * The writer does not quote: values must not contain spaces or double quotes (the builder's
//!   values never do: partition names, hex and numbers).
//! * The verity format itself (sha256, 4096-byte blocks) is fixed and not on the command line.
#![forbid(unsafe_code)]

mod cmdline;
mod error;
mod params;

pub use cmdline::Cmdline;
pub use error::{Error, Result};
pub use params::{failure_action, BootParams, DeviceSpec, FailureAction, VerityRoot, DEFAULT_INIT};

/// What every Ballast parameter starts with.
pub const PREFIX: &str = "ballast.";
/// The partition holding the root image (the dm-verity data device).
pub const ROOT: &str = "ballast.root";
/// The partition holding the dm-verity hash tree.
pub const HASH: &str = "ballast.hash";
/// The dm-verity root hash.
pub const ROOT_HASH: &str = "ballast.roothash";
/// The dm-verity salt.
pub const SALT: &str = "ballast.salt";
/// The number of data blocks the hash tree covers.
pub const DATA_BLOCKS: &str = "ballast.datablocks";
/// The first block of the hash tree on the hash partition.
pub const HASH_START: &str = "ballast.hashstart";
/// The writable data partition.
pub const DATA: &str = "ballast.data";
/// The program the early init starts in the new root.
pub const INIT: &str = "ballast.init";
/// The early init's verbose flag.
pub const DEBUG: &str = "ballast.debug";
/// What the early init does after a fatal error.
pub const ON_FAILURE: &str = "ballast.onfailure";
/// Seconds a new set has to mark its boot successful (signpost's boot watch).
pub const BOOT_DEADLINE: &str = "ballast.boot-deadline";
/// Base64 user data (TOML, optionally gzip-compressed before encoding) for early-boot-config.
pub const USER_DATA: &str = "ballast.user-data";
/// The instance-metadata base URL, or `off`, for early-boot-config.
pub const IMDS: &str = "ballast.imds";

#[cfg(test)]
mod tests;
