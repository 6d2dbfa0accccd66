//! Growing DATA to fill the disk: first the GPT entry (through `disk-layout`), then the kernel's
//! idea of the partition (`BLKPG_RESIZE_PARTITION`), then, once mounted, the ext4 filesystem
//! itself (`EXT4_IOC_RESIZE_FS`, an online resize that needs no `resize2fs`).
//!
//! None of this is fatal: the caller logs a failure and boots with DATA at its old size.

use crate::error::{GrowSnafu, Result};
use nix::libc::{c_char, c_int, c_void};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `BLKPG_RESIZE_PARTITION` from linux/blkpg.h.
const BLKPG_RESIZE_PARTITION: c_int = 3;

/// `struct blkpg_partition` from linux/blkpg.h; offsets and lengths are in bytes.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: c_int,
    devname: [c_char; 64],
    volname: [c_char; 64],
}

/// `struct blkpg_ioctl_arg` from linux/blkpg.h.
#[repr(C)]
struct BlkpgIoctlArg {
    op: c_int,
    flags: c_int,
    datalen: c_int,
    data: *mut c_void,
}

// BLKPG is _IO(0x12, 105) even though it passes a pointer, hence the "bad" form.
nix::ioctl_write_ptr_bad!(blkpg, nix::request_code_none!(0x12, 105), BlkpgIoctlArg);
// EXT4_IOC_RESIZE_FS is _IOW('f', 16, __u64): the new size in filesystem blocks.
nix::ioctl_write_ptr!(ext4_resize_fs, b'f', 16, u64);
// BLKGETSIZE64 is _IOR(0x12, 114, size_t): the device size in bytes.
nix::ioctl_read!(blk_get_size64, 0x12, 114, u64);

fn fail<T>(reason: impl Into<String>) -> Result<T> {
    GrowSnafu {
        reason: reason.into(),
    }
    .fail()
}

/// Where a partition device sits on its disk, as the kernel sees it (from sysfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlace {
    /// Whole-disk device node, e.g. `/dev/vda`.
    pub disk: PathBuf,
    /// Partition number on that disk.
    pub number: u32,
    /// First byte of the partition on the disk.
    pub start: u64,
}

fn read_sys(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) => fail(format!("cannot read {}: {e}", path.display())),
    }
}

/// Looks up the disk, number and start of the partition device `partition` (e.g. `/dev/vda11`)
/// in `sys_class_block` (normally `/sys/class/block`), with device nodes in `dev`.
pub fn partition_place(
    partition: &Path,
    sys_class_block: &Path,
    dev: &Path,
) -> Result<PartitionPlace> {
    let Some(name) = partition.file_name() else {
        return fail(format!("{} is not a device node", partition.display()));
    };
    let sys = sys_class_block.join(name);
    let number = read_sys(&sys.join("partition"))?;
    let Ok(number) = number.parse::<u32>() else {
        return fail(format!(
            "{} is not a partition (partition={number:?})",
            sys.display()
        ));
    };
    let start = read_sys(&sys.join("start"))?;
    let Ok(start) = start.parse::<u64>() else {
        return fail(format!(
            "{}/start is not a number: {start:?}",
            sys.display()
        ));
    };
    // /sys/class/block/vda11 links to .../block/vda/vda11: the parent directory is the disk.
    let real = match std::fs::canonicalize(&sys) {
        Ok(real) => real,
        Err(e) => return fail(format!("cannot resolve {}: {e}", sys.display())),
    };
    let Some(disk) = real.parent().and_then(Path::file_name) else {
        return fail(format!("cannot find the disk of {}", real.display()));
    };
    Ok(PartitionPlace {
        disk: dev.join(disk),
        number,
        // sysfs counts in 512-byte sectors whatever the disk's sector size.
        start: start * 512,
    })
}

/// Extends the GPT entry of DATA (`partition`) to the end of its disk and tells the kernel the
/// new size. Returns the old and new partition size in bytes, or `None` if it already filled
/// the disk.
pub fn grow_partition(partition: &Path) -> Result<Option<(u64, u64)>> {
    let place = partition_place(partition, Path::new("/sys/class/block"), Path::new("/dev"))?;
    // Only ever touch the table if DATA is the partition the kernel has, and the last one.
    let layout = match disk_layout::read_layout(&place.disk) {
        Ok(layout) => layout,
        Err(e) => return fail(e.to_string()),
    };
    let Some(data) = layout.by_name("DATA") else {
        return fail(format!("{} has no DATA partition", place.disk.display()));
    };
    if data.number != place.number || data.offset != place.start {
        return fail(format!(
            "{} is partition {} at byte {}, but the GPT of {} has DATA as partition {} at byte {}",
            partition.display(),
            place.number,
            place.start,
            place.disk.display(),
            data.number,
            data.offset
        ));
    }
    if layout.partitions.iter().any(|p| p.offset > data.offset) {
        return fail("DATA is not the last partition on the disk");
    }
    let grown = match disk_layout::grow_last_partition(&place.disk) {
        Ok(grown) => grown,
        Err(e) => return fail(e.to_string()),
    };
    let Some((old, new)) = grown else {
        return Ok(None);
    };
    resize_kernel_partition(&place, new)?;
    Ok(Some((old, new)))
}

/// Tells the kernel that partition `place.number` of `place.disk` is now `length` bytes long.
fn resize_kernel_partition(place: &PartitionPlace, length: u64) -> Result<()> {
    let disk = match File::open(&place.disk) {
        Ok(disk) => disk,
        Err(e) => return fail(format!("cannot open {}: {e}", place.disk.display())),
    };
    let (Ok(start), Ok(length), Ok(pno)) = (
        i64::try_from(place.start),
        i64::try_from(length),
        c_int::try_from(place.number),
    ) else {
        return fail("partition geometry out of range for BLKPG");
    };
    let mut part = BlkpgPartition {
        start,
        length,
        pno,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        // The struct is a few hundred bytes: the constant conversion cannot fail.
        datalen: c_int::try_from(std::mem::size_of::<BlkpgPartition>()).unwrap_or(c_int::MAX),
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `disk` is an open block device for the duration of the call; `arg` and the
    // `part` it points to are live, correctly laid out (repr(C) copies of the kernel's
    // structs) and outlive the ioctl, which only reads them.
    match unsafe { blkpg(disk.as_raw_fd(), &arg) } {
        Ok(_) => Ok(()),
        Err(e) => fail(format!(
            "the kernel refused the new size of partition {} on {} (BLKPG): {e}",
            place.number,
            place.disk.display()
        )),
    }
}

/// Size in blocks and block size of an ext2/3/4 filesystem, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtGeometry {
    pub blocks: u64,
    pub block_size: u64,
}

/// Reads the block count and block size from the first 2048 bytes of an ext4 device.
pub fn parse_ext_superblock(head: &[u8]) -> Option<ExtGeometry> {
    let sb = head.get(1024..2048)?;
    let u32_at = |off: usize| u32::from_le_bytes(sb[off..off + 4].try_into().expect("4 bytes"));
    if sb[0x38] != 0x53 || sb[0x39] != 0xef {
        return None;
    }
    let log = u32_at(0x18);
    if log > 6 {
        return None;
    }
    let mut blocks = u64::from(u32_at(0x04));
    // INCOMPAT_64BIT: the high half of the block count is valid.
    if u32_at(0x60) & 0x80 != 0 {
        blocks |= u64::from(u32_at(0x150)) << 32;
    }
    Some(ExtGeometry {
        blocks,
        block_size: 1024 << log,
    })
}

/// Grows the ext4 filesystem of `device`, mounted at `mount_point`, to fill the device. Returns
/// the old and new filesystem size in bytes, or `None` if it already fills the device.
pub fn grow_filesystem(device: &Path, mount_point: &Path) -> Result<Option<(u64, u64)>> {
    let mut head = [0u8; 2048];
    let dev = match File::open(device).and_then(|mut f| f.read_exact(&mut head).map(|()| f)) {
        Ok(dev) => dev,
        Err(e) => {
            return fail(format!(
                "cannot read the superblock of {}: {e}",
                device.display()
            ))
        }
    };
    let Some(fs) = parse_ext_superblock(&head) else {
        return fail(format!("{} holds no ext4 superblock", device.display()));
    };
    let mut bytes = 0u64;
    // SAFETY: `dev` is an open block device and `bytes` a live u64 the kernel writes into.
    if let Err(e) = unsafe { blk_get_size64(dev.as_raw_fd(), &mut bytes) } {
        return fail(format!("cannot get the size of {}: {e}", device.display()));
    }
    let new_blocks = bytes / fs.block_size;
    if new_blocks <= fs.blocks {
        return Ok(None);
    }
    let dir = match File::open(mount_point) {
        Ok(dir) => dir,
        Err(e) => return fail(format!("cannot open {}: {e}", mount_point.display())),
    };
    // SAFETY: `dir` is an open directory on the mounted ext4 filesystem and `new_blocks` a live
    // u64 that the kernel only reads.
    if let Err(e) = unsafe { ext4_resize_fs(dir.as_raw_fd(), &new_blocks) } {
        return fail(format!(
            "online resize of the ext4 filesystem on {} to {new_blocks} blocks failed: {e} \
             (see the kernel messages)",
            device.display()
        ));
    }
    Ok(Some((
        fs.blocks * fs.block_size,
        new_blocks * fs.block_size,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ext_superblocks() {
        let mut head = vec![0u8; 2048];
        assert_eq!(parse_ext_superblock(&head), None);
        head[1024 + 0x38] = 0x53;
        head[1024 + 0x39] = 0xef;
        head[1024 + 4..1024 + 8].copy_from_slice(&32768u32.to_le_bytes());
        head[1024 + 0x18] = 2;
        assert_eq!(
            parse_ext_superblock(&head),
            Some(ExtGeometry {
                blocks: 32768,
                block_size: 4096
            })
        );
        // The high word counts only with the 64bit feature.
        head[1024 + 0x150] = 1;
        assert_eq!(parse_ext_superblock(&head).unwrap().blocks, 32768);
        head[1024 + 0x60] = 0x80;
        assert_eq!(
            parse_ext_superblock(&head).unwrap().blocks,
            (1 << 32) + 32768
        );
        assert_eq!(parse_ext_superblock(&head[..1500]), None);
    }

    #[test]
    fn finds_the_disk_of_a_partition() {
        let root = std::env::temp_dir().join(format!("early-init-grow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let devices = root.join("devices/pci0000:00/virtio3/block/vda/vda11");
        std::fs::create_dir_all(&devices).unwrap();
        std::fs::write(devices.join("partition"), "11\n").unwrap();
        std::fs::write(devices.join("start"), "2394112\n").unwrap();
        let class = root.join("class");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&devices, class.join("vda11")).unwrap();
        let place = partition_place(Path::new("/dev/vda11"), &class, Path::new("/dev")).unwrap();
        assert_eq!(
            place,
            PartitionPlace {
                disk: PathBuf::from("/dev/vda"),
                number: 11,
                start: 2394112 * 512,
            }
        );
        let err = partition_place(Path::new("/dev/vda"), &class, Path::new("/dev")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
