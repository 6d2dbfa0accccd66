//! Ballast's disk: the GPT A/B partition plan, the boot flags kept in GPT attribute bits, and
//! the code that writes and reads both. The image builder uses it to create the disk image; the
//! on-node `signpost` uses the same code on `/dev/vda`.
//!
//! # Background
//!
//! A Ballast disk has two complete sets of OS partitions, A and B, so that an update is written
//! to the set not running and a bad update can fall back to the old one. The plan follows
//! Bottlerocket's, with shorter names:
//!
//! | #  | name       | type GUID                              | default size |
//! |----|------------|----------------------------------------|--------------|
//! | 1  | EFI-SYSTEM | `c12a7328-f81f-11d2-ba4b-00a0c93ec93b` | 16 MiB       |
//! | 2  | BOOT-A     | `6b636168-7420-6568-2070-6c616e657421` | 40 MiB       |
//! | 3  | ROOT-A     | `5526016a-1a97-4ea4-b39a-b7c8c6ca4502` | 920 MiB      |
//! | 4  | HASH-A     | `598f10af-c955-4456-6a99-7720068a6cea` | 10 MiB       |
//! | 5  | RESERVED-A | `0c5d99a5-d331-4147-baef-08e2b855bdc9` | 24 MiB       |
//! | 6-9| BOOT-B, ROOT-B, HASH-B, RESERVED-B | as for A       | as for A     |
//! | 10 | PRIVATE    | `440408bb-eb0b-4328-a6e5-a29038fad706` | 41 MiB       |
//! | 11 | DATA       | `626f7474-6c65-6474-6861-726d61726b73` | rest of disk |
//!
//! Partitions start at 1 MiB and follow each other on MiB boundaries. ROOT and HASH are one and
//! two partitions after their BOOT, so a verity table can name them relative to the BOOT
//! partition the boot loader picked (`PARTUUID=<boot>/PARTNROFF=1`). With the defaults and a
//! 1 MiB DATA the disk is exactly 2 GiB; DATA is meant to be grown to the end of the real disk
//! on first boot. Differences from Bottlerocket: no BIOS-BOOT partition and no EFI backup on the
//! B side (UEFI boot only), a 16 MiB EFI partition, RESERVED 24 MiB instead of 25 to keep the
//! 2 GiB total, and names without the `BOTTLEROCKET-` prefix.
//!
//! Which set boots is decided by three fields in the attribute word of each BOOT partition,
//! as in Bottlerocket: priority (bits 48-51), tries left (52-55) and successful (56); bit 57 of
//! PRIVATE records that a boot ever succeeded (see [`flags`] for the rules and operations).
//! `sgdisk -A <n>:show` displays them. A fresh image has BOOT-A at priority 1 and successful
//! (bits 48 and 56) and BOOT-B at zero.
//!
//! # Usage
//!
//! ```no_run
//! use disk_layout::{create_disk, read_flags, write_flags, BootSet, Layout, PartitionRole, MIB};
//!
//! // Image build: a 2 GiB disk, GUIDs derived from the build's seed.
//! let disk = create_disk("ballast.img", 2048 * MIB, &Layout::default(), b"ballast 1.0.0 dev")?;
//! let root_a = disk.partition(PartitionRole::Root(BootSet::A)).unwrap();
//! println!("write the erofs image at byte {} ({} bytes max)", root_a.offset, root_a.size);
//!
//! // On the node (signpost): stage an update written to B while A runs.
//! let mut flags = read_flags("/dev/vda")?;
//! flags.mark_inactive_valid(BootSet::A);
//! flags.upgrade_to_inactive(BootSet::A)?;
//! write_flags("/dev/vda", &flags)?;
//! # Ok::<(), disk_layout::Error>(())
//! ```
//!
//! # Current limitations
//!
//! * Only disks with 512-byte logical sectors (not 4Kn disks).
//! * [`create_disk`] makes a new image file; it does not repartition an existing disk. DATA is
//!   grown on the node by [`grow_last_partition`], which only ever extends the last partition.
//! * Partition GUIDs come from the seed alone, so two disks built with the same seed have the
//!   same PARTUUIDs: give each build its own seed, and do not attach two disks of the same build
//!   to one machine.
//! * [`write_flags`] assumes it is the only writer of the partition table (signpost is, on a
//!   node); it takes no lock.
#![forbid(unsafe_code)]

pub mod flags;

mod disk;
mod error;
mod plan;

pub use disk::{create_disk, grow_last_partition, read_flags, read_layout, write_flags};
pub use error::{Error, Result};
pub use flags::{BootFlags, BootSet, PartitionFlags};
pub use plan::{
    derive_guid, plan, Layout, PartitionInfo, PartitionRole, WrittenLayout, BOOT_TYPE, DATA_TYPE,
    EFI_SYSTEM_TYPE, HASH_TYPE, MIB, PRIVATE_TYPE, RESERVED_TYPE, ROOT_TYPE, SECTOR_SIZE,
};
