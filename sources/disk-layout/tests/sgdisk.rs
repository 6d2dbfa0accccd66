//! Disks written by this crate, as seen by sgdisk (gdisk), and the other way round.
//! When sgdisk is not installed the tests print a notice and pass, except under CI (`CI=true`),
//! where they fail: `cargo xtask test` installs it.

use disk_layout::{
    create_disk, read_flags, read_layout, write_flags, BootFlags, BootSet, Layout, PartitionRole,
    WrittenLayout, MIB,
};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

fn sgdisk(disk: &Path, args: &[&str]) -> String {
    let output = Command::new("sgdisk")
        .args(args)
        .arg(disk)
        .output()
        .expect("sgdisk runs");
    assert!(
        output.status.success(),
        "sgdisk {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The attribute bits sgdisk reports as set on partition `number`.
fn sgdisk_bits(disk: &Path, number: u32) -> BTreeSet<u32> {
    let out = sgdisk(disk, &["-A", &format!("{number}:show")]);
    out.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let n: u32 = fields.next()?.trim().parse().ok()?;
            let bit: u32 = fields.next()?.parse().ok()?;
            let value = fields.next()?;
            (n == number && value.starts_with('1')).then_some(bit)
        })
        .collect()
}

fn new_disk(dir: &Path, seed: &[u8]) -> (std::path::PathBuf, WrittenLayout) {
    let path = dir.join("disk.img");
    let layout = create_disk(&path, 1024 * MIB, &Layout::small(), seed).unwrap();
    (path, layout)
}

#[test]
fn sgdisk_sees_the_plan() {
    if !hosttools::require_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, layout) = new_disk(dir.path(), b"plan");

    let verify = sgdisk(&path, &["-v"]);
    assert!(verify.contains("No problems found"), "{verify}");

    // `sgdisk -p` lists number, start, end, size, unit, code and name.
    let listing = sgdisk(&path, &["-p"]);
    let rows: Vec<(u32, u64, u64, String)> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = fields.first()?.parse().ok()?;
            Some((
                number,
                fields[1].parse().ok()?,
                fields[2].parse().ok()?,
                fields.last()?.to_string(),
            ))
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
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
        ],
        "{listing}"
    );
    for (row, part) in rows.iter().zip(&layout.partitions) {
        assert_eq!(row.0, part.number);
        assert_eq!(
            (row.1, row.2),
            (part.first_lba, part.last_lba),
            "{}",
            part.name
        );
        assert_eq!(part.first_lba % 2048, 0, "{} is MiB-aligned", part.name);
    }
    assert!(
        listing.contains(&layout.disk_guid.to_string().to_uppercase()),
        "{listing}"
    );

    for part in &layout.partitions {
        let info = sgdisk(&path, &["-i", &part.number.to_string()]);
        let type_line = format!(
            "Partition GUID code: {}",
            part.type_guid.to_string().to_uppercase()
        );
        let guid_line = format!(
            "Partition unique GUID: {}",
            part.partuuid.to_string().to_uppercase()
        );
        assert!(info.contains(&type_line), "{info}");
        assert!(info.contains(&guid_line), "{info}");
        assert!(
            info.contains(&format!("Partition name: '{}'", part.name)),
            "{info}"
        );
    }
}

#[test]
fn fresh_image_flags() {
    if !hosttools::require_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_disk(dir.path(), b"fresh");
    assert_eq!(sgdisk_bits(&path, 2), BTreeSet::from([48, 56]));
    for n in [1, 3, 4, 5, 6, 7, 8, 9, 10, 11] {
        assert!(sgdisk_bits(&path, n).is_empty(), "partition {n}");
    }
    assert_eq!(read_flags(&path).unwrap(), BootFlags::fresh_image());
}

#[test]
fn sgdisk_reads_our_flags() {
    if !hosttools::require_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_disk(dir.path(), b"ours");
    let mut flags = read_flags(&path).unwrap();
    flags.mark_successful_boot(BootSet::A);
    flags.clear_inactive(BootSet::A);
    flags.mark_inactive_valid(BootSet::A);
    flags.upgrade_to_inactive(BootSet::A).unwrap();
    write_flags(&path, &flags).unwrap();

    // A: priority 1, successful. B: priority 2 (bit 49), one try (bit 52). PRIVATE: bit 57.
    assert_eq!(sgdisk_bits(&path, 2), BTreeSet::from([48, 56]));
    assert_eq!(sgdisk_bits(&path, 6), BTreeSet::from([49, 52]));
    assert_eq!(sgdisk_bits(&path, 10), BTreeSet::from([57]));
    let verify = sgdisk(&path, &["-v"]);
    assert!(verify.contains("No problems found"), "{verify}");

    // The boot loader consumes B's try; B never succeeds; we fall back to A.
    assert_eq!(flags.next_boot_set(), Some(BootSet::B));
    write_flags(&path, &flags).unwrap();
    assert_eq!(sgdisk_bits(&path, 6), BTreeSet::from([49]));
    assert_eq!(
        read_flags(&path).unwrap().peek_next_boot_set(),
        Some(BootSet::A)
    );
}

#[test]
fn we_read_sgdisk_flags() {
    if !hosttools::require_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, layout) = new_disk(dir.path(), b"theirs");
    sgdisk(&path, &["-A", "2:set:52"]);
    let flags = read_flags(&path).unwrap();
    assert_eq!(flags.boot_a.priority, 1);
    assert_eq!(flags.boot_a.tries_left, 1);
    assert!(flags.boot_a.successful);

    sgdisk(&path, &["-A", "2:clear:56"]);
    sgdisk(&path, &["-A", "6:set:50"]);
    sgdisk(&path, &["-A", "6:set:53"]);
    sgdisk(&path, &["-A", "6:set:54"]);
    sgdisk(&path, &["-A", "10:set:57"]);
    let flags = read_flags(&path).unwrap();
    assert!(!flags.boot_a.successful);
    assert_eq!(flags.boot_b.priority, 4);
    assert_eq!(flags.boot_b.tries_left, 6);
    assert!(!flags.boot_b.successful);
    assert!(flags.ever_succeeded);
    assert_eq!(flags.peek_next_boot_set(), Some(BootSet::B));

    // sgdisk rewrote the table; everything else reads back unchanged.
    let after = read_layout(&path).unwrap();
    for (old, new) in layout.partitions.iter().zip(&after.partitions) {
        assert_eq!(old.partuuid, new.partuuid);
        assert_eq!((old.first_lba, old.last_lba), (new.first_lba, new.last_lba));
    }

    // Our write on top of sgdisk's keeps the bits we do not own (bit 60 here).
    sgdisk(&path, &["-A", "6:set:60"]);
    let mut flags = read_flags(&path).unwrap();
    flags.clear_inactive(BootSet::A);
    write_flags(&path, &flags).unwrap();
    assert_eq!(sgdisk_bits(&path, 6), BTreeSet::from([60]));
    let verify = sgdisk(&path, &["-v"]);
    assert!(verify.contains("No problems found"), "{verify}");
}

fn first_and_last_mib(path: &Path) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    let mut bytes = vec![0u8; 2 * MIB as usize];
    file.read_exact(&mut bytes[..MIB as usize]).unwrap();
    file.seek(SeekFrom::End(-i64::try_from(MIB).unwrap()))
        .unwrap();
    file.read_exact(&mut bytes[MIB as usize..]).unwrap();
    bytes
}

/// The same seed gives the same bytes (create_disk writes only the first and last MiB).
#[test]
fn reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.img");
    let two = dir.path().join("two.img");
    let other = dir.path().join("other.img");
    let a = create_disk(&one, 1024 * MIB, &Layout::small(), b"build 42").unwrap();
    let b = create_disk(&two, 1024 * MIB, &Layout::small(), b"build 42").unwrap();
    let c = create_disk(&other, 1024 * MIB, &Layout::small(), b"build 43").unwrap();
    assert_eq!(a, b);
    assert_ne!(a.disk_guid, c.disk_guid);
    assert_eq!(first_and_last_mib(&one), first_and_last_mib(&two));
    assert_ne!(first_and_last_mib(&one), first_and_last_mib(&other));
    assert_eq!(
        a.partition(PartitionRole::Boot(BootSet::A))
            .unwrap()
            .partuuid,
        disk_layout::derive_guid(b"build 42", "BOOT-A")
    );
    assert_eq!(read_layout(&one).unwrap(), a);
}
