//! A disk image as the image builder leaves a new node's disk, for tests of the parts that read
//! or change the boot state (signpost, updog, `GET /status`, the update API): Ballast's GPT
//! from [`disk_layout::create_disk`] with the fresh-image boot flags, and a FAT EFI system
//! partition holding the GRUB environment block derived from those flags.

use disk_layout::Layout;
use std::path::{Path, PathBuf};

/// The name of the disk image [`make_boot_disk`] writes in its directory, the same as
/// [`crate::TestServer::disk`].
pub const DISK_FILE: &str = "disk.img";

/// Makes `dir/disk.img`, a sparse disk image of `size` bytes with `layout` (set A successful
/// and next to boot, set B empty), and returns its path. The partition GUIDs and the FAT volume
/// ID are fixed, so two disks made alike are alike. Panics when the disk cannot be made; the
/// FAT image needs `mkfs.vfat` and `mcopy` on the host.
pub fn make_boot_disk(dir: &Path, layout: &Layout, size: u64) -> PathBuf {
    let disk = dir.join(DISK_FILE);
    imagebuilder::disk::make_fresh_boot_disk(&disk, layout, size, b"testserver disk")
        .unwrap_or_else(|e| panic!("make the test disk {}: {e}", disk.display()));
    disk
}

#[cfg(test)]
mod test {
    use super::*;
    use disk_layout::{read_flags, read_layout, BootFlags, BootSet, PartitionRole, MIB};

    #[test]
    fn the_disk_boots_set_a_and_its_grub_block_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::small();
        let disk = make_boot_disk(dir.path(), &layout, layout.min_disk_size() + 8 * MIB);
        assert_eq!(disk, dir.path().join(DISK_FILE));
        assert_eq!(
            std::fs::metadata(&disk).unwrap().len(),
            layout.min_disk_size() + 8 * MIB
        );
        assert!(read_layout(&disk)
            .unwrap()
            .partition(PartitionRole::EfiSystem)
            .is_some());
        let flags = read_flags(&disk).unwrap();
        assert_eq!(flags, BootFlags::fresh_image());
        assert_eq!(flags.peek_next_boot_set(), Some(BootSet::A));
        let env = grubenv::read_disk(&disk).unwrap();
        assert_eq!(
            grubenv::BootSelection::from_env(&env.env),
            grubenv::BootSelection::from_flags(&flags)
        );
        // Only the disk is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [DISK_FILE]);
    }
}
