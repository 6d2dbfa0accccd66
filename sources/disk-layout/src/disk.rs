//! Writing and reading the GPT of a disk image file or block device, with the `gpt` crate.

use crate::error::{self, Result};
use crate::flags::{BootFlags, BootSet, PartitionFlags, BOOT_EVER_SUCCEEDED_BIT};
use crate::plan::{plan, Layout, PartitionInfo, PartitionRole, WrittenLayout, MIB, SECTOR_SIZE};
use gpt::disk::LogicalBlockSize;
use gpt::header::{Header, HeaderBuilder};
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types::Type;
use gpt::{GptConfig, GptDisk};
use snafu::{ensure, ResultExt};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;

const LB: LogicalBlockSize = LogicalBlockSize::Lb512;

/// Create (or truncate) the disk image file `path` with `total_size` bytes, and write a
/// protective MBR and a GPT with every partition of `layout`: names, type GUIDs, GUIDs derived
/// from `seed` and the fresh-image boot flags (BOOT-A priority 1 and successful).
///
/// The file is sparse: only the partition tables are written. Any previous content is lost.
/// The same layout, size and seed always give a byte-identical file.
pub fn create_disk(
    path: impl AsRef<Path>,
    total_size: u64,
    layout: &Layout,
    seed: &[u8],
) -> Result<WrittenLayout> {
    let path = path.as_ref();
    let planned = plan(layout, total_size, seed)?;

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|f| f.set_len(total_size).map(|()| f))
        .context(error::CreateImageSnafu { path })?;

    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LB)
        .change_partition_count(true)
        .create_from_device(file, Some(planned.disk_guid))
        .context(error::BuildTableSnafu { path })?;
    let table: BTreeMap<u32, Partition> = planned
        .partitions
        .iter()
        .map(|p| {
            let entry = Partition {
                part_type_guid: Type::from(p.type_guid),
                part_guid: p.partuuid,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                flags: p.attributes,
                name: p.name.to_string(),
            };
            (p.number, entry)
        })
        .collect();
    disk.update_partitions(table)
        .context(error::BuildTableSnafu { path })?;
    let mut file = disk.write().context(error::WriteTableSnafu { path })?;

    // The protective MBR covers the whole disk after sector 0, capped at what 32 bits hold.
    let sectors = total_size / SECTOR_SIZE;
    let covered = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(covered)
        .overwrite_lba0(&mut file)
        .context(error::WriteMbrSnafu { path })?;
    file.sync_all().context(error::CreateImageSnafu { path })?;
    Ok(planned)
}

fn open(path: &Path, writable: bool) -> Result<GptDisk<File>> {
    GptConfig::new()
        .writable(writable)
        .logical_block_size(LB)
        .open(path)
        .context(error::OpenDiskSnafu { path })
}

/// The entry number and entry of the one partition playing `role`, checking its type.
fn find<'a>(
    path: &Path,
    partitions: &'a BTreeMap<u32, Partition>,
    role: PartitionRole,
) -> Result<(u32, &'a Partition)> {
    let name = role.name();
    let mut matches = partitions
        .iter()
        .filter(|(_, p)| p.is_used() && p.name == name);
    let (number, partition) = matches.next().ok_or(error::Error::MissingPartition {
        path: path.to_path_buf(),
        name,
    })?;
    ensure!(
        matches.next().is_none(),
        error::DuplicatePartitionSnafu { path, name }
    );
    ensure!(
        partition.part_type_guid.guid == role.type_guid(),
        error::WrongPartitionTypeSnafu {
            path,
            name,
            found: partition.part_type_guid.guid,
            expected: role.type_guid(),
        }
    );
    Ok((*number, partition))
}

/// Read the partitions of a Ballast disk (image file or block device such as `/dev/vda`).
/// Every partition of the plan must be present, with its type GUID; other partitions are
/// ignored.
pub fn read_layout(path: impl AsRef<Path>) -> Result<WrittenLayout> {
    let path = path.as_ref();
    let mut disk = open(path, false)?;
    let total_size = disk
        .device_mut()
        .seek(SeekFrom::End(0))
        .context(error::DiskSizeSnafu { path })?;
    let mut partitions = Vec::with_capacity(PartitionRole::ALL.len());
    for role in PartitionRole::ALL {
        let (number, p) = find(path, disk.partitions(), role)?;
        partitions.push(PartitionInfo {
            number,
            role,
            name: role.name(),
            type_guid: p.part_type_guid.guid,
            partuuid: p.part_guid,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            offset: p.first_lba * SECTOR_SIZE,
            size: (p.last_lba + 1).saturating_sub(p.first_lba) * SECTOR_SIZE,
            attributes: p.flags,
        });
    }
    partitions.sort_by_key(|p| p.number);
    Ok(WrittenLayout {
        disk_guid: *disk.guid(),
        total_size,
        partitions,
    })
}

/// Read the A/B boot state: the flags of BOOT-A and BOOT-B and PRIVATE's bit 57.
pub fn read_flags(path: impl AsRef<Path>) -> Result<BootFlags> {
    let path = path.as_ref();
    let disk = open(path, false)?;
    let partitions = disk.partitions();
    let (_, a) = find(path, partitions, PartitionRole::Boot(BootSet::A))?;
    let (_, b) = find(path, partitions, PartitionRole::Boot(BootSet::B))?;
    let (_, private) = find(path, partitions, PartitionRole::Private)?;
    Ok(BootFlags {
        boot_a: PartitionFlags::from_attributes(a.flags),
        boot_b: PartitionFlags::from_attributes(b.flags),
        ever_succeeded: private.flags & (1 << BOOT_EVER_SUCCEEDED_BIT) != 0,
    })
}

/// Store `flags` in the GPT: bits 48-56 of BOOT-A and BOOT-B and bit 57 of PRIVATE. Every
/// other attribute bit, every other partition and the table geometry stay as they are, and
/// nothing is written when the disk already holds these flags.
///
/// Both copies of the table are rewritten, the backup first, so that an interruption leaves
/// at least one consistent copy.
pub fn write_flags(path: impl AsRef<Path>, flags: &BootFlags) -> Result<()> {
    let path = path.as_ref();
    let mut disk = open(path, true)?;
    let mut partitions = disk.partitions().clone();

    let mut changes = Vec::new();
    for (role, new) in [
        (PartitionRole::Boot(BootSet::A), flags.boot_a),
        (PartitionRole::Boot(BootSet::B), flags.boot_b),
    ] {
        let (number, p) = find(path, &partitions, role)?;
        changes.push((number, new.apply_to(p.flags)));
    }
    let (number, p) = find(path, &partitions, PartitionRole::Private)?;
    let bit = 1u64 << BOOT_EVER_SUCCEEDED_BIT;
    let private = if flags.ever_succeeded {
        p.flags | bit
    } else {
        p.flags & !bit
    };
    changes.push((number, private));

    let mut changed = false;
    for (number, attributes) in changes {
        let entry = partitions.get_mut(&number).expect("found above");
        changed |= entry.flags != attributes;
        entry.flags = attributes;
    }
    if !changed {
        return Ok(());
    }

    // Rebuild both headers from the valid one, keeping its geometry.
    let current = disk.header().clone();
    let build = |primary: bool| {
        HeaderBuilder::from_header(&current)
            .primary(primary)
            .build(LB)
            .map_err(gpt::GptError::from)
            .context(error::WriteTableSnafu { path })
    };
    let mut primary = build(true)?;
    let mut backup = build(false)?;
    let file = disk.device_mut();
    write_entries(file, &backup, &partitions).context(error::WriteTableSnafu { path })?;
    backup
        .write_backup(file, LB)
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })?;
    write_entries(file, &primary, &partitions).context(error::WriteTableSnafu { path })?;
    primary
        .write_primary(file, LB)
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })?;
    file.sync_all()
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })
}

/// Grow the partition that ends last on the disk (DATA on a Ballast disk) to the end of the
/// device, for a disk image that was copied onto, or resized into, a bigger disk.
///
/// When the device is bigger than the partition table says, the backup table is moved to the
/// very end of the device, the last usable LBA follows it, and the last partition is extended
/// up to the last 1 MiB boundary that still fits. Both copies of the table are rewritten (the
/// new backup first, so an interruption leaves the primary table and the old backup intact),
/// and the protective MBR is widened to the new size.
///
/// Works on an image file or on a whole-disk block device (`/dev/vda`). It only edits the
/// partition table: telling the kernel about the new size and growing the filesystem are up to
/// the caller. Returns the old and new size in bytes of the grown partition, or `None` when the
/// partition already reaches the end (the backup table may still have been moved).
pub fn grow_last_partition(path: impl AsRef<Path>) -> Result<Option<(u64, u64)>> {
    let path = path.as_ref();
    let mut disk = open(path, true)?;
    let total_size = disk
        .device_mut()
        .seek(SeekFrom::End(0))
        .context(error::DiskSizeSnafu { path })?;
    let sectors = total_size / SECTOR_SIZE;
    let current = disk.header().clone();
    let entry_sectors =
        (u64::from(current.num_parts) * u64::from(current.part_size)).div_ceil(SECTOR_SIZE);
    let backup_lba = sectors.saturating_sub(1);
    let old_backup = current.current_lba.max(current.backup_lba);
    if backup_lba < old_backup {
        // The device is smaller than the table: growing would be wrong, shrinking is not ours.
        return error::DiskShrunkSnafu {
            path,
            total_size,
            table_size: (old_backup + 1) * SECTOR_SIZE,
        }
        .fail();
    }
    let last_usable = backup_lba.saturating_sub(entry_sectors + 1);

    let mut partitions = disk.partitions().clone();
    let (number, last) = partitions
        .iter()
        .filter(|(_, p)| p.is_used())
        .max_by_key(|(_, p)| p.last_lba)
        .map(|(n, p)| (*n, p.clone()))
        .ok_or_else(|| error::NoPartitionsSnafu { path }.build())?;
    let old_bytes = (last.last_lba + 1 - last.first_lba) * SECTOR_SIZE;
    let sectors_per_mib = MIB / SECTOR_SIZE;
    let aligned_end = (last_usable + 1) / sectors_per_mib * sectors_per_mib;
    let new_last_lba = aligned_end.saturating_sub(1).max(last.last_lba);
    if backup_lba == old_backup && new_last_lba == last.last_lba {
        return Ok(None);
    }
    partitions
        .get_mut(&number)
        .expect("picked from this map")
        .last_lba = new_last_lba;

    let build = |primary: bool| {
        HeaderBuilder::from_header(&current)
            .primary(primary)
            .backup_lba(backup_lba)
            .last_usable(last_usable)
            .build(LB)
            .map_err(gpt::GptError::from)
            .context(error::WriteTableSnafu { path })
    };
    let mut primary = build(true)?;
    let mut backup = build(false)?;
    let file = disk.device_mut();
    write_entries(file, &backup, &partitions).context(error::WriteTableSnafu { path })?;
    backup
        .write_backup(file, LB)
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })?;
    file.sync_all()
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })?;
    write_entries(file, &primary, &partitions).context(error::WriteTableSnafu { path })?;
    primary
        .write_primary(file, LB)
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })?;

    // Keep the protective MBR's boot code and signature, only resize its one record.
    let covered = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(covered)
        .update_conservative(file)
        .context(error::WriteMbrSnafu { path })?;
    file.sync_all()
        .map_err(gpt::GptError::from)
        .context(error::WriteTableSnafu { path })?;

    // Zero the old backup header so that no tool mistakes it for a current one.
    if old_backup != backup_lba {
        use std::io::Write;
        file.seek(SeekFrom::Start(old_backup * SECTOR_SIZE))
            .and_then(|_| file.write_all(&[0u8; SECTOR_SIZE as usize]))
            .and_then(|()| file.sync_all())
            .map_err(gpt::GptError::from)
            .context(error::WriteTableSnafu { path })?;
    }

    let new_bytes = (new_last_lba + 1 - last.first_lba) * SECTOR_SIZE;
    Ok((new_bytes > old_bytes).then_some((old_bytes, new_bytes)))
}

/// Write the whole partition entry array of `header`, every entry at its own index, so that
/// partition numbers never change (the `gpt` crate's own writer packs used entries together).
fn write_entries(
    file: &mut File,
    header: &Header,
    partitions: &BTreeMap<u32, Partition>,
) -> std::result::Result<(), gpt::GptError> {
    for index in 0..header.num_parts {
        match partitions.get(&(index + 1)) {
            Some(p) if p.is_used() => p.write_to_device(
                file,
                u64::from(index),
                header.part_start,
                LB,
                header.part_size,
            )?,
            _ => Partition::write_zero_entries_to_device(
                file,
                u64::from(index),
                1,
                header.part_start,
                LB,
                header.part_size,
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_read_write_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let written = create_disk(&path, 1024 * MIB, &Layout::small(), b"seed").unwrap();
        let read = read_layout(&path).unwrap();
        assert_eq!(read, written);
        assert_eq!(read_flags(&path).unwrap(), BootFlags::fresh_image());

        let mut flags = BootFlags::fresh_image();
        flags.mark_successful_boot(BootSet::A);
        flags.clear_inactive(BootSet::A);
        flags.mark_inactive_valid(BootSet::A);
        flags.upgrade_to_inactive(BootSet::A).unwrap();
        write_flags(&path, &flags).unwrap();
        assert_eq!(read_flags(&path).unwrap(), flags);

        // Only the attribute words changed.
        let after = read_layout(&path).unwrap();
        for (old, new) in written.partitions.iter().zip(&after.partitions) {
            assert_eq!(
                PartitionInfo {
                    attributes: 0,
                    ..old.clone()
                },
                PartitionInfo {
                    attributes: 0,
                    ..new.clone()
                }
            );
        }
        assert_eq!(after.by_name("PRIVATE").unwrap().attributes, 1 << 57);
    }

    #[test]
    fn other_attribute_bits_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        create_disk(&path, 1024 * MIB, &Layout::small(), b"seed").unwrap();
        // Set a foreign bit (60) on BOOT-B and on PRIVATE through the gpt crate.
        let mut disk = open(&path, true).unwrap();
        let mut parts = disk.take_partitions();
        parts.get_mut(&6).unwrap().flags |= 1 << 60;
        parts.get_mut(&10).unwrap().flags |= 1 << 60;
        disk.update_partitions(parts).unwrap();
        disk.write().unwrap();

        let mut flags = read_flags(&path).unwrap();
        flags.boot_b.tries_left = 3;
        flags.ever_succeeded = true;
        write_flags(&path, &flags).unwrap();
        let layout = read_layout(&path).unwrap();
        assert_eq!(
            layout.by_name("BOOT-B").unwrap().attributes,
            (1 << 60) | (3 << 52)
        );
        assert_eq!(
            layout.by_name("PRIVATE").unwrap().attributes,
            (1 << 60) | (1 << 57)
        );
        flags.ever_succeeded = false;
        write_flags(&path, &flags).unwrap();
        assert_eq!(
            read_layout(&path)
                .unwrap()
                .by_name("PRIVATE")
                .unwrap()
                .attributes,
            1 << 60
        );
    }

    /// An image copied onto a bigger disk keeps its backup table where the primary header says
    /// (growing the table is DATA's first-boot job, not signpost's).
    #[test]
    fn grown_disk_keeps_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let size = 700 * MIB;
        create_disk(&path, size, &Layout::small(), b"grow").unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(2 * size).unwrap();
        drop(file);

        let mut flags = read_flags(&path).unwrap();
        flags.mark_successful_boot(BootSet::A);
        write_flags(&path, &flags).unwrap();
        assert_eq!(read_flags(&path).unwrap(), flags);

        let disk = open(&path, false).unwrap();
        let primary = disk.primary_header().unwrap();
        assert_eq!(primary.backup_lba, size / SECTOR_SIZE - 1);
        let bytes = std::fs::read(&path).unwrap();
        let backup_at = (size - SECTOR_SIZE) as usize;
        assert_eq!(&bytes[backup_at..backup_at + 8], b"EFI PART");
        assert!(bytes[(2 * size - SECTOR_SIZE) as usize..]
            .iter()
            .all(|b| *b == 0));
    }

    fn sgdisk(args: &[&str], path: &Path) -> Option<String> {
        let out = std::process::Command::new("sgdisk")
            .args(args)
            .arg(path)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn grows_last_partition_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let size = 700 * MIB;
        let written = create_disk(&path, size, &Layout::small(), b"grow").unwrap();
        let data = written.by_name("DATA").unwrap().clone();
        // Nothing to do on a disk of the size it was made for.
        assert_eq!(grow_last_partition(&path).unwrap(), None);

        let big = 1500 * MIB + 7 * SECTOR_SIZE;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(big)
            .unwrap();
        let (old, new) = grow_last_partition(&path).unwrap().unwrap();
        assert_eq!(old, data.size);
        // The end is the last MiB boundary before the 33 sectors of the backup table.
        assert_eq!(data.offset + new, 1499 * MIB);

        let after = read_layout(&path).unwrap();
        assert_eq!(after.total_size, big);
        let grown = after.by_name("DATA").unwrap();
        assert_eq!(grown.size, new);
        assert_eq!(grown.first_lba, data.first_lba);
        assert_eq!(grown.partuuid, data.partuuid);
        for (before, now) in written.partitions.iter().zip(&after.partitions) {
            if before.name != "DATA" {
                assert_eq!(before, now);
            }
        }
        assert_eq!(read_flags(&path).unwrap(), BootFlags::fresh_image());
        let disk = open(&path, false).unwrap();
        let primary = disk.primary_header().unwrap();
        assert_eq!(primary.backup_lba, big / SECTOR_SIZE - 1);
        assert_eq!(
            disk.backup_header().unwrap().current_lba,
            big / SECTOR_SIZE - 1
        );
        drop(disk);
        let bytes = std::fs::read(&path).unwrap();
        let end = (big - SECTOR_SIZE) as usize;
        assert_eq!(&bytes[end..end + 8], b"EFI PART");
        let old_backup = (size - SECTOR_SIZE) as usize;
        assert!(bytes[old_backup..old_backup + 512].iter().all(|b| *b == 0));
        // The protective MBR now covers the whole disk.
        let mbr = ProtectiveMBR::from_bytes(&bytes[..512], LB).unwrap();
        assert_eq!(
            u64::from(mbr.partition(0).unwrap().lb_size),
            big / SECTOR_SIZE - 1
        );
        drop(bytes);

        // A second run finds nothing to do.
        assert_eq!(grow_last_partition(&path).unwrap(), None);

        // gdisk agrees, when it is installed.
        if let Some(verify) = sgdisk(&["-v"], &path) {
            assert!(verify.contains("No problems found"), "{verify}");
            let print = sgdisk(&["-p"], &path).unwrap();
            let line = print
                .lines()
                .find(|l| l.trim_start().starts_with("11 "))
                .unwrap_or_else(|| panic!("{print}"));
            let mib = (new / MIB).to_string();
            assert!(line.contains(&format!("{mib}.0 MiB")), "{line}");
            assert!(line.contains("DATA"), "{line}");
        }

        // A disk smaller than its table is refused.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1000 * MIB)
            .unwrap();
        let err = grow_last_partition(&path);
        assert!(err.is_err(), "{err:?}");
    }

    #[test]
    fn unchanged_flags_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        create_disk(&path, 700 * MIB, &Layout::small(), b"x").unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_flags(&path, &BootFlags::fresh_image()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank.img");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let err = read_flags(&path).unwrap_err().to_string();
        assert!(err.contains("cannot open the disk"), "{err}");

        let missing = dir.path().join("nope").join("disk.img");
        let err = create_disk(&missing, 1 << 30, &Layout::small(), b"s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot create the disk image"), "{err}");

        // A GPT disk whose BOOT-B has the wrong type.
        let path = dir.path().join("wrong.img");
        create_disk(&path, 1024 * MIB, &Layout::small(), b"seed").unwrap();
        let mut disk = open(&path, true).unwrap();
        let mut parts = disk.take_partitions();
        parts.get_mut(&6).unwrap().part_type_guid = gpt::partition_types::LINUX_FS;
        disk.update_partitions(parts).unwrap();
        disk.write().unwrap();
        let err = read_flags(&path).unwrap_err();
        assert!(
            matches!(err, crate::Error::WrongPartitionType { name: "BOOT-B", .. }),
            "{err}"
        );
    }
}
