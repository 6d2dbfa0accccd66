//! A disk image as the image builder leaves a new node's disk, for tests of the parts that read
//! or change the boot state (signpost, updog, `GET /status`, the update API): Ballast's GPT
//! from [`disk_layout::create_disk`] with the fresh-image boot flags, and a FAT EFI system
//! partition holding the GRUB environment block derived from those flags.

use disk_layout::{create_disk, BootFlags, Layout, PartitionRole};
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
    let written = create_disk(&disk, size, layout, b"testserver disk")
        .unwrap_or_else(|e| panic!("create the test disk {}: {e}", disk.display()));
    let esp = written
        .partition(PartitionRole::EfiSystem)
        .expect("every layout has an EFI system partition");

    // The GRUB block and the FAT image are made beside the disk and dropped once copied in.
    let scratch = tempfile::tempdir_in(dir).expect("a scratch directory beside the test disk");
    let env_file = scratch.path().join("grubenv");
    std::fs::write(&env_file, grubenv::render(&BootFlags::fresh_image())).unwrap();
    let esp_image = scratch.path().join("esp.vfat");
    imagebuilder::fs::make_fat(
        &esp_image,
        esp.size,
        "0badcafe",
        &[(grubenv::ESP_PATH, &env_file)],
        1_700_000_000,
    )
    .expect("mkfs.vfat and mcopy are installed (apt-get install dosfstools mtools)");
    imagebuilder::disk::write_sparse(&disk, esp.offset, &esp_image)
        .unwrap_or_else(|e| panic!("write the EFI system partition of {}: {e}", disk.display()));
    disk
}

#[cfg(test)]
mod test {
    use super::*;
    use disk_layout::{read_flags, read_layout, BootSet, MIB};

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
