//! The partition plan: which partitions a Ballast disk has, in which order, how big.

use crate::error::{self, Result};
use crate::flags::{BootFlags, BootSet, BOOT_EVER_SUCCEEDED_BIT};
use sha2::{Digest, Sha256};
use snafu::{ensure, OptionExt};
use uuid::Uuid;

/// Bytes per logical sector. Only 512-byte-sector disks are supported.
pub const SECTOR_SIZE: u64 = 512;
/// One mebibyte; partitions start on and are sized in whole MiB.
pub const MIB: u64 = 1 << 20;
/// Sectors per MiB.
const MIB_SECTORS: u64 = MIB / SECTOR_SIZE;
/// Sectors at the end of the disk taken by the backup GPT (128 entries + header).
const BACKUP_GPT_SECTORS: u64 = 33;

/// Type GUID of the EFI system partition.
pub const EFI_SYSTEM_TYPE: Uuid = Uuid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
/// Type GUID of BOOT-A and BOOT-B (Bottlerocket's).
pub const BOOT_TYPE: Uuid = Uuid::from_u128(0x6b636168_7420_6568_2070_6c616e657421);
/// Type GUID of ROOT-A and ROOT-B (Bottlerocket's).
pub const ROOT_TYPE: Uuid = Uuid::from_u128(0x5526016a_1a97_4ea4_b39a_b7c8c6ca4502);
/// Type GUID of HASH-A and HASH-B (Bottlerocket's).
pub const HASH_TYPE: Uuid = Uuid::from_u128(0x598f10af_c955_4456_6a99_7720068a6cea);
/// Type GUID of RESERVED-A and RESERVED-B (Bottlerocket's).
pub const RESERVED_TYPE: Uuid = Uuid::from_u128(0x0c5d99a5_d331_4147_baef_08e2b855bdc9);
/// Type GUID of PRIVATE (Bottlerocket's).
pub const PRIVATE_TYPE: Uuid = Uuid::from_u128(0x440408bb_eb0b_4328_a6e5_a29038fad706);
/// Type GUID of DATA (Bottlerocket's).
pub const DATA_TYPE: Uuid = Uuid::from_u128(0x626f7474_6c65_6474_6861_726d61726b73);

/// What a partition is for. The order of [`PartitionRole::ALL`] is the on-disk order, and a
/// role's partition number is its position in it plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionRole {
    /// EFI system partition (FAT, holds GRUB).
    EfiSystem,
    /// Kernel and GRUB configuration of a set; carries the boot flags.
    Boot(BootSet),
    /// The dm-verity-protected erofs root of a set.
    Root(BootSet),
    /// The dm-verity hash tree of the set's ROOT.
    Hash(BootSet),
    /// Room for a set to grow into in later releases.
    Reserved(BootSet),
    /// Small persistent partition shared by both sets; carries bit 57.
    Private,
    /// Persistent data (`/local`, `/var`, `/opt`); last, so it can grow to the end of the disk.
    Data,
}

impl PartitionRole {
    /// All partitions in disk order: EFI-SYSTEM, BOOT-A, ROOT-A, HASH-A, RESERVED-A, BOOT-B,
    /// ROOT-B, HASH-B, RESERVED-B, PRIVATE, DATA (numbers 1 to 11).
    pub const ALL: [PartitionRole; 11] = [
        PartitionRole::EfiSystem,
        PartitionRole::Boot(BootSet::A),
        PartitionRole::Root(BootSet::A),
        PartitionRole::Hash(BootSet::A),
        PartitionRole::Reserved(BootSet::A),
        PartitionRole::Boot(BootSet::B),
        PartitionRole::Root(BootSet::B),
        PartitionRole::Hash(BootSet::B),
        PartitionRole::Reserved(BootSet::B),
        PartitionRole::Private,
        PartitionRole::Data,
    ];

    /// The GPT partition name (label).
    pub fn name(self) -> &'static str {
        use BootSet::{A, B};
        match self {
            PartitionRole::EfiSystem => "EFI-SYSTEM",
            PartitionRole::Boot(A) => "BOOT-A",
            PartitionRole::Boot(B) => "BOOT-B",
            PartitionRole::Root(A) => "ROOT-A",
            PartitionRole::Root(B) => "ROOT-B",
            PartitionRole::Hash(A) => "HASH-A",
            PartitionRole::Hash(B) => "HASH-B",
            PartitionRole::Reserved(A) => "RESERVED-A",
            PartitionRole::Reserved(B) => "RESERVED-B",
            PartitionRole::Private => "PRIVATE",
            PartitionRole::Data => "DATA",
        }
    }

    /// The role whose GPT name is `name`.
    pub fn from_name(name: &str) -> Option<PartitionRole> {
        PartitionRole::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The partition type GUID.
    pub fn type_guid(self) -> Uuid {
        match self {
            PartitionRole::EfiSystem => EFI_SYSTEM_TYPE,
            PartitionRole::Boot(_) => BOOT_TYPE,
            PartitionRole::Root(_) => ROOT_TYPE,
            PartitionRole::Hash(_) => HASH_TYPE,
            PartitionRole::Reserved(_) => RESERVED_TYPE,
            PartitionRole::Private => PRIVATE_TYPE,
            PartitionRole::Data => DATA_TYPE,
        }
    }

    /// The partition number (1-based). ROOT and HASH are one and two after their BOOT, which
    /// is what `PARTNROFF=1` and `PARTNROFF=2` in the verity table rely on.
    pub fn number(self) -> u32 {
        PartitionRole::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every role is in ALL") as u32
            + 1
    }

    /// The size of this partition in `layout`, in MiB (`None` for a DATA partition that fills
    /// the disk).
    fn size_mib(self, layout: &Layout) -> Option<u64> {
        match self {
            PartitionRole::EfiSystem => Some(layout.efi_mib),
            PartitionRole::Boot(_) => Some(layout.boot_mib),
            PartitionRole::Root(_) => Some(layout.root_mib),
            PartitionRole::Hash(_) => Some(layout.hash_mib),
            PartitionRole::Reserved(_) => Some(layout.reserved_mib),
            PartitionRole::Private => Some(layout.private_mib),
            PartitionRole::Data => layout.data_mib,
        }
    }
}

/// Partition sizes in MiB. Every partition starts on a MiB boundary, right after the previous
/// one, from 1 MiB on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// EFI-SYSTEM.
    pub efi_mib: u64,
    /// BOOT-A and BOOT-B each.
    pub boot_mib: u64,
    /// ROOT-A and ROOT-B each.
    pub root_mib: u64,
    /// HASH-A and HASH-B each; must hold the verity tree of a full ROOT.
    pub hash_mib: u64,
    /// RESERVED-A and RESERVED-B each.
    pub reserved_mib: u64,
    /// PRIVATE.
    pub private_mib: u64,
    /// DATA; `None` fills the rest of the disk (at least 1 MiB). A small DATA is grown on the
    /// node at first boot.
    pub data_mib: Option<u64>,
}

impl Default for Layout {
    /// Bottlerocket's 2 GiB plan (BOOT 40, ROOT 920, HASH 10, PRIVATE 41 MiB) with a 16 MiB EFI
    /// system partition; RESERVED is 24 MiB so that the OS part plus a 1 MiB DATA fills exactly
    /// 2048 MiB. DATA fills the rest of the disk.
    fn default() -> Self {
        Self {
            efi_mib: 16,
            boot_mib: 40,
            root_mib: 920,
            hash_mib: 10,
            reserved_mib: 24,
            private_mib: 41,
            data_mib: None,
        }
    }
}

impl Layout {
    /// A small plan for tests and small variants: ROOT 256 MiB, HASH 4 MiB, RESERVED 4 MiB,
    /// PRIVATE 16 MiB; EFI and BOOT as in the default. The partitions before DATA take 640 MiB.
    pub fn small() -> Self {
        Self {
            root_mib: 256,
            hash_mib: 4,
            reserved_mib: 4,
            private_mib: 16,
            ..Self::default()
        }
    }

    /// Check that every partition has a size and that HASH can hold ROOT's verity tree
    /// (4096-byte blocks, sha256, no superblock).
    pub fn validate(&self) -> Result<()> {
        for role in PartitionRole::ALL {
            if let Some(mib) = role.size_mib(self) {
                ensure!(mib > 0, error::ZeroSizeSnafu { name: role.name() });
            }
        }
        let needed = verity_tree_bytes(self.root_mib.saturating_mul(MIB));
        ensure!(
            self.hash_mib.saturating_mul(MIB) >= needed,
            error::HashTooSmallSnafu {
                hash_mib: self.hash_mib,
                root_mib: self.root_mib,
                needed_mib: needed.div_ceil(MIB),
            }
        );
        Ok(())
    }

    /// The smallest disk, in bytes, that holds this layout (with a 1 MiB DATA when DATA fills
    /// the disk): the partitions, the 1 MiB before the first one and 1 MiB at the end for the
    /// backup GPT.
    pub fn min_disk_size(&self) -> u64 {
        let mib: u64 = PartitionRole::ALL
            .iter()
            .map(|r| r.size_mib(self).unwrap_or(1))
            .sum();
        (mib + 2) * MIB
    }
}

/// Size of the dm-verity tree of `data_bytes` with 4096-byte blocks and sha256 (128 digests per
/// hash block), without a superblock. Kept here so this crate does not depend on `verity`.
fn verity_tree_bytes(data_bytes: u64) -> u64 {
    let mut count = data_bytes.div_ceil(4096);
    let mut blocks = 0;
    while count > 1 {
        count = count.div_ceil(128);
        blocks += count;
    }
    blocks * 4096
}

/// One partition as planned, written or read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number (1-based), as in `/dev/vda<number>`.
    pub number: u32,
    /// What the partition is for.
    pub role: PartitionRole,
    /// GPT name.
    pub name: &'static str,
    /// Partition type GUID.
    pub type_guid: Uuid,
    /// Unique partition GUID (the `PARTUUID`).
    pub partuuid: Uuid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Byte offset of the partition on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The 64-bit GPT attribute word.
    pub attributes: u64,
}

/// A disk's partitions, as planned by [`plan`], written by [`crate::create_disk`] or read by
/// [`crate::read_layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLayout {
    /// The disk GUID.
    pub disk_guid: Uuid,
    /// Disk size in bytes.
    pub total_size: u64,
    /// The partitions, in partition-number order.
    pub partitions: Vec<PartitionInfo>,
}

impl WrittenLayout {
    /// The partition playing `role`. Layouts from [`plan`] and [`crate::read_layout`] always
    /// have every role.
    pub fn partition(&self, role: PartitionRole) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.role == role)
    }

    /// The partition named `name`.
    pub fn by_name(&self, name: &str) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.name == name)
    }
}

/// A GUID derived from the build seed, so that the same seed always gives the same disk.
/// It is shaped as a random (version 4) UUID.
pub fn derive_guid(seed: &[u8], purpose: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"ballast disk-layout guid\0")
        .chain_update(purpose.as_bytes())
        .chain_update([0])
        .chain_update(seed)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The attribute word a freshly built image gives each partition: BOOT-A priority 1 and
/// successful ([`BootFlags::fresh_image`]), everything else 0.
fn initial_attributes(role: PartitionRole) -> u64 {
    let fresh = BootFlags::fresh_image();
    match role {
        PartitionRole::Boot(set) => fresh.get(set).to_attributes(),
        PartitionRole::Private => u64::from(fresh.ever_succeeded) << BOOT_EVER_SUCCEEDED_BIT,
        _ => 0,
    }
}

/// Compute where every partition goes on a disk of `total_size` bytes, with GUIDs derived from
/// `seed`. Nothing is written.
pub fn plan(layout: &Layout, total_size: u64, seed: &[u8]) -> Result<WrittenLayout> {
    layout.validate()?;
    ensure!(
        total_size.is_multiple_of(SECTOR_SIZE),
        error::UnalignedDiskSizeSnafu {
            total_size,
            sector: SECTOR_SIZE
        }
    );
    let too_small = || error::Error::DiskTooSmall {
        total_size,
        needed: layout.min_disk_size(),
        needed_mib: layout.min_disk_size() / MIB,
    };
    let total_sectors = total_size / SECTOR_SIZE;
    let last_usable = total_sectors
        .checked_sub(BACKUP_GPT_SECTORS + 1)
        .ok_or_else(too_small)?;

    let mut partitions = Vec::with_capacity(PartitionRole::ALL.len());
    let mut next = MIB_SECTORS;
    for role in PartitionRole::ALL {
        let first = next;
        let last = match role.size_mib(layout) {
            Some(mib) => mib
                .checked_mul(MIB_SECTORS)
                .and_then(|s| first.checked_add(s - 1))
                .context(error::SizeOverflowSnafu {
                    what: "partition end",
                })?,
            // Fill to the last whole MiB before the backup GPT.
            None => ((last_usable + 1) / MIB_SECTORS * MIB_SECTORS)
                .checked_sub(1)
                .filter(|&end| end >= first + MIB_SECTORS - 1)
                .ok_or_else(too_small)?,
        };
        ensure!(
            last <= last_usable,
            error::DiskTooSmallSnafu {
                total_size,
                needed: layout.min_disk_size(),
                needed_mib: layout.min_disk_size() / MIB,
            }
        );
        partitions.push(PartitionInfo {
            number: role.number(),
            role,
            name: role.name(),
            type_guid: role.type_guid(),
            partuuid: derive_guid(seed, role.name()),
            first_lba: first,
            last_lba: last,
            offset: first * SECTOR_SIZE,
            size: (last - first + 1) * SECTOR_SIZE,
            attributes: initial_attributes(role),
        });
        next = last + 1;
    }

    Ok(WrittenLayout {
        disk_guid: derive_guid(seed, "disk"),
        total_size,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_types() {
        let names: Vec<_> = PartitionRole::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "EFI-SYSTEM",
                "BOOT-A",
                "ROOT-A",
                "HASH-A",
                "RESERVED-A",
                "BOOT-B",
                "ROOT-B",
                "HASH-B",
                "RESERVED-B",
                "PRIVATE",
                "DATA"
            ]
        );
        for (i, role) in PartitionRole::ALL.iter().enumerate() {
            assert_eq!(role.number() as usize, i + 1);
            assert_eq!(PartitionRole::from_name(role.name()), Some(*role));
        }
        for set in BootSet::ALL {
            let boot = PartitionRole::Boot(set).number();
            assert_eq!(PartitionRole::Root(set).number(), boot + 1);
            assert_eq!(PartitionRole::Hash(set).number(), boot + 2);
        }
        assert_eq!(
            PartitionRole::Boot(BootSet::A).type_guid().to_string(),
            "6b636168-7420-6568-2070-6c616e657421"
        );
        assert_eq!(
            PartitionRole::EfiSystem.type_guid().to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(
            PartitionRole::Data.type_guid().to_string(),
            "626f7474-6c65-6474-6861-726d61726b73"
        );
    }

    #[test]
    fn default_plan_fits_2_gib() {
        let layout = Layout::default();
        assert_eq!(layout.min_disk_size(), 2048 * MIB);
        let p = plan(&layout, 2048 * MIB, b"seed").unwrap();
        assert_eq!(p.partitions.len(), 11);
        let mut expected_start = MIB;
        for part in &p.partitions {
            assert_eq!(part.offset, expected_start, "{}", part.name);
            assert_eq!(part.offset % MIB, 0);
            assert_eq!(part.size % MIB, 0);
            expected_start = part.offset + part.size;
        }
        let data = p.partition(PartitionRole::Data).unwrap();
        assert_eq!(data.size, MIB);
        assert_eq!(
            p.partition(PartitionRole::Root(BootSet::B)).unwrap().size,
            920 * MIB
        );
        assert!(plan(&layout, 2047 * MIB, b"seed").is_err());
    }

    #[test]
    fn data_fills_or_stays_fixed() {
        let layout = Layout::small();
        let p = plan(&layout, 4096 * MIB, b"s").unwrap();
        let data = p.partition(PartitionRole::Data).unwrap();
        assert_eq!(data.offset + data.size, 4095 * MIB);

        let fixed = Layout {
            data_mib: Some(8),
            ..Layout::small()
        };
        let p = plan(&fixed, 4096 * MIB, b"s").unwrap();
        assert_eq!(p.partition(PartitionRole::Data).unwrap().size, 8 * MIB);
        assert_eq!(fixed.min_disk_size(), (640 + 8 + 2) * MIB);
        plan(&fixed, fixed.min_disk_size(), b"s").unwrap();
        let err = plan(&fixed, fixed.min_disk_size() - MIB, b"s").unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
    }

    #[test]
    fn validation() {
        let mut layout = Layout {
            hash_mib: 7,
            ..Layout::default()
        };
        let err = layout.validate().unwrap_err().to_string();
        assert!(err.contains("needs 8 MiB"), "{err}");
        layout.hash_mib = 8;
        layout.validate().unwrap();
        layout.boot_mib = 0;
        assert!(layout
            .validate()
            .unwrap_err()
            .to_string()
            .contains("BOOT-A"));
        assert!(plan(&Layout::default(), 2048 * MIB + 1, b"s").is_err());
        assert!(plan(&Layout::default(), 1024, b"s").is_err());
        assert!(plan(
            &Layout {
                data_mib: Some(0),
                ..Layout::small()
            },
            4096 * MIB,
            b"s"
        )
        .is_err());
    }

    #[test]
    fn verity_tree_size() {
        // 1 GiB: 2048 + 16 + 1 hash blocks.
        assert_eq!(verity_tree_bytes(1 << 30), 2065 * 4096);
        assert_eq!(verity_tree_bytes(4096), 0);
        assert_eq!(verity_tree_bytes(8192), 4096);
    }

    #[test]
    fn guids_follow_the_seed() {
        let a = plan(&Layout::small(), 1 << 30, b"build-1").unwrap();
        let b = plan(&Layout::small(), 1 << 30, b"build-1").unwrap();
        let c = plan(&Layout::small(), 1 << 30, b"build-2").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.disk_guid, c.disk_guid);
        let mut all: Vec<Uuid> = a.partitions.iter().map(|p| p.partuuid).collect();
        all.push(a.disk_guid);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12, "all GUIDs differ");
        assert_eq!(a.disk_guid.get_version_num(), 4);
    }

    #[test]
    fn fresh_attributes() {
        let p = plan(&Layout::small(), 1 << 30, b"s").unwrap();
        for part in &p.partitions {
            let expected = if part.role == PartitionRole::Boot(BootSet::A) {
                (1 << 48) | (1 << 56)
            } else {
                0
            };
            assert_eq!(part.attributes, expected, "{}", part.name);
        }
    }
}
