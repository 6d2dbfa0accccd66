//! Putting partition images into the disk image, converting the disk to other formats, and
//! hashing files.

use crate::error::{self, Result};
use crate::tools::{self, QEMU_IMG};
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Chunk size for copying; blocks of this size that hold only zeroes are skipped.
const CHUNK: usize = 64 * 1024;
static ZEROES: [u8; CHUNK] = [0; CHUNK];

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> error::Error {
    let path = path.to_path_buf();
    move |source| error::Error::Io {
        action,
        path,
        source,
    }
}

/// Makes `disk`, a sparse disk image of `size` bytes laid out as `layout`, the way a new node's
/// disk reads before its first boot, without the images: the GPT with the fresh-image boot
/// flags (set A successful and next to boot, set B empty; GUIDs derived from `seed`, so two
/// disks made alike are alike) and an EFI system partition holding only the GRUB environment
/// block of those flags. For the tests and benchmarks of what reads or changes the boot state
/// (signpost, updog, the update API). Needs `mkfs.vfat` and `mcopy`.
pub fn make_fresh_boot_disk(
    disk: &Path,
    layout: &disk_layout::Layout,
    size: u64,
    seed: &[u8],
) -> Result<()> {
    use disk_layout::{BootFlags, PartitionRole};
    use snafu::{OptionExt, ResultExt};
    let written = disk_layout::create_disk(disk, size, layout, seed).context(error::DiskSnafu)?;
    let esp = written
        .partition(PartitionRole::EfiSystem)
        .context(error::InvalidInputSnafu {
            reason: "the layout has no EFI system partition",
        })?;
    // The GRUB block and the FAT image are made beside the disk and dropped once copied in.
    let parent = disk.parent().unwrap_or(Path::new("."));
    let scratch =
        tempfile::tempdir_in(parent).map_err(io("make a scratch directory in", parent))?;
    let env_file = scratch.path().join("grubenv");
    std::fs::write(&env_file, grubenv::render(&BootFlags::fresh_image()))
        .map_err(io("write", &env_file))?;
    let esp_image = scratch.path().join("esp.vfat");
    crate::fs::make_fat(
        &esp_image,
        esp.size,
        FRESH_ESP_VOLUME_ID,
        &[(grubenv::ESP_PATH, &env_file)],
        FRESH_ESP_EPOCH,
    )?;
    write_sparse(disk, esp.offset, &esp_image)
}

/// The FAT volume ID and file times of [`make_fresh_boot_disk`]'s EFI system partition.
const FRESH_ESP_VOLUME_ID: &str = "0badcafe";
const FRESH_ESP_EPOCH: u64 = 1_700_000_000;

/// `lseek` with unsigned offsets (EOVERFLOW when an offset does not fit).
fn seek(fd: std::os::fd::RawFd, offset: u64, whence: Whence) -> Result<u64, Errno> {
    let offset = i64::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
    let at = lseek(fd, offset, whence)?;
    u64::try_from(at).map_err(|_| Errno::EOVERFLOW)
}

/// The byte ranges of `file` that may hold data (`SEEK_DATA`/`SEEK_HOLE`); the whole file
/// when the file system cannot tell.
fn data_ranges(file: &File, len: u64) -> Vec<(u64, u64)> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        // Offsets of a file we wrote fit both i64 and u64; a failed conversion is treated like
        // a file system that cannot tell.
        let start = match seek(fd, pos, Whence::SeekData) {
            Ok(start) => start,
            Err(Errno::ENXIO) => break, // only a hole remains
            Err(_) => return vec![(0, len)],
        };
        let end = match seek(fd, start, Whence::SeekHole) {
            Ok(end) => end.min(len),
            Err(_) => return vec![(0, len)],
        };
        if end <= start {
            break;
        }
        ranges.push((start, end));
        pos = end;
    }
    ranges
}

/// Copies `image` into `disk` at byte `offset`. The disk must hold zeroes there already (a
/// fresh sparse disk file): holes and all-zero chunks of the image are skipped, which keeps
/// the disk sparse.
pub fn write_sparse(disk: &Path, offset: u64, image: &Path) -> Result<()> {
    let src = File::open(image).map_err(io("open", image))?;
    let len = src.metadata().map_err(io("read the size of", image))?.len();
    let dst = OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(io("open for writing", disk))?;
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in data_ranges(&src, len) {
        let mut pos = start;
        while pos < end {
            let n = ((end - pos) as usize).min(CHUNK);
            src.read_exact_at(&mut buf[..n], pos)
                .map_err(io("read", image))?;
            // Slice comparison is a memcmp, fast even in unoptimized builds.
            if buf[..n] != ZEROES[..n] {
                dst.write_all_at(&buf[..n], offset + pos)
                    .map_err(io("write the disk image", disk))?;
            }
            pos += n as u64;
        }
    }
    dst.sync_all().map_err(io("flush", disk))
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Converts the raw disk `raw` to qcow2 at `out`.
pub fn to_qcow2(raw: &Path, out: &Path, epoch: u64) -> Result<()> {
    let mut cmd = tools::command(QEMU_IMG, epoch)?;
    cmd.args([
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "compat=1.1",
    ])
    .arg(raw)
    .arg(out);
    tools::run(&mut cmd)?;
    Ok(())
}

/// Converts the raw disk `raw` to a stream-optimized VMDK at `out` (the subformat VMware
/// imports and OVA packages carry), then replaces the random content ID qemu-img writes into
/// the descriptor with `cid` (8 hex digits), so the file is reproducible. The descriptor also
/// names the file itself, so `out` should already have its final file name.
pub fn to_vmdk(raw: &Path, out: &Path, cid: &str, epoch: u64) -> Result<()> {
    let mut cmd = tools::command(QEMU_IMG, epoch)?;
    cmd.args([
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "vmdk",
        "-o",
        "subformat=streamOptimized",
    ])
    .arg(raw)
    .arg(out);
    tools::run(&mut cmd)?;
    set_vmdk_cid(out, cid)
}

/// Rewrites the `CID=` line of the descriptor embedded in a sparse VMDK. qemu-img prints the
/// random ID without zero padding, so the line's length varies; the descriptor is rewritten
/// whole inside its reserved sectors (text, then zeroes).
fn set_vmdk_cid(path: &Path, cid: &str) -> Result<()> {
    assert!(cid.len() == 8 && cid.bytes().all(|b| b.is_ascii_hexdigit()));
    let bad = |reason: &str| error::Error::InvalidInput {
        reason: format!(
            "cannot set the VMDK content ID of '{}': {reason}",
            path.display()
        ),
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    // Sparse extent header: magic "KDMV", then descriptor offset and size in sectors at 28
    // and 36.
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0)
        .map_err(io("read", path))?;
    if &header[..4] != b"KDMV" {
        return Err(bad("no sparse extent header"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let (desc_offset, desc_size) = (u64_at(28) * 512, u64_at(36) * 512);
    if desc_offset == 0 || desc_size == 0 || desc_size > 1 << 20 {
        return Err(bad("no embedded descriptor"));
    }
    let mut region = vec![0u8; desc_size as usize];
    file.read_exact_at(&mut region, desc_offset)
        .map_err(io("read", path))?;
    let text_len = region.iter().position(|&b| b == 0).unwrap_or(region.len());
    let text =
        std::str::from_utf8(&region[..text_len]).map_err(|_| bad("descriptor is not text"))?;
    let mut found = false;
    let mut new_text = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("CID=") {
            found = true;
            new_text.push_str(&format!("CID={cid}\n"));
        } else {
            new_text.push_str(line);
        }
    }
    if !found {
        return Err(bad("the descriptor has no CID line"));
    }
    if new_text.len() > region.len() {
        return Err(bad("the new descriptor does not fit"));
    }
    region.fill(0);
    region[..new_text.len()].copy_from_slice(new_text.as_bytes());
    file.write_all_at(&region, desc_offset)
        .map_err(io("write", path))?;
    file.sync_all().map_err(io("flush", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_places_data_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("part.img");
        let mut data = vec![0u8; 3 * CHUNK + 100];
        data[5] = 1;
        data[2 * CHUNK + 7] = 2;
        data[3 * CHUNK + 99] = 3;
        std::fs::write(&image, &data).unwrap();
        let disk = dir.path().join("disk.img");
        File::create(&disk)
            .unwrap()
            .set_len(16 * CHUNK as u64)
            .unwrap();
        write_sparse(&disk, 4096, &image).unwrap();
        let out = std::fs::read(&disk).unwrap();
        assert_eq!(&out[4096..4096 + data.len()], &data[..]);
        assert!(out[..4096].iter().all(|&b| b == 0));
        assert_eq!(
            sha256_file(&image).unwrap(),
            hex::encode(Sha256::digest(&data))
        );
    }

    /// A stand-in for qemu-img's output: header, then the descriptor in sector 1.
    fn fake_vmdk(cid: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; 4 * 512];
        bytes[..4].copy_from_slice(b"KDMV");
        bytes[28..36].copy_from_slice(&1u64.to_le_bytes());
        bytes[36..44].copy_from_slice(&2u64.to_le_bytes());
        let text = format!("# Disk DescriptorFile\nversion=1\nCID={cid}\nparentCID=ffffffff\n");
        bytes[512..512 + text.len()].copy_from_slice(text.as_bytes());
        bytes
    }

    #[test]
    fn vmdk_cid_is_replaced_whatever_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.vmdk");
        let mut results = Vec::new();
        for cid in ["25a753f6", "a753f6"] {
            std::fs::write(&path, fake_vmdk(cid)).unwrap();
            set_vmdk_cid(&path, "0badc0de").unwrap();
            results.push(std::fs::read(&path).unwrap());
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0], fake_vmdk("0badc0de"));
        std::fs::write(
            &path,
            b"not a vmdk at all, but long enough for a header..............",
        )
        .unwrap();
        assert!(set_vmdk_cid(&path, "0badc0de").is_err());
    }
}
