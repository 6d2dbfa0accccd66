//! Load orders from depmod's files and from `.modinfo` sections.

use super::*;

fn info(path: &str, deps: &[&str]) -> ModuleInfo {
    ModuleInfo {
        path: path.into(),
        depends: deps.iter().map(|d| d.to_string()).collect(),
        soft_pre: Vec::new(),
    }
}

fn index() -> ModuleIndex {
    let mut index = ModuleIndex::default();
    for (name, path, deps) in [
        ("dm_mod", "kernel/drivers/md/dm-mod.ko", &[][..]),
        ("dm_bufio", "kernel/drivers/md/dm-bufio.ko", &["dm_mod"][..]),
        (
            "reed_solomon",
            "kernel/lib/reed_solomon/reed_solomon.ko",
            &[][..],
        ),
        (
            "dm_verity",
            "kernel/drivers/md/dm-verity.ko",
            &["reed_solomon", "dm_mod", "dm_bufio"][..],
        ),
        ("erofs", "kernel/fs/erofs/erofs.ko", &["libcrc32c"][..]),
        ("libcrc32c", "kernel/lib/libcrc32c.ko", &[][..]),
    ] {
        index.modules.insert(name.into(), info(path, deps));
    }
    index.modules.get_mut("libcrc32c").unwrap().soft_pre = vec!["crc32c".into()];
    index.builtin.insert("ext4".into());
    index
}

#[test]
fn closure_orders_dependencies_first_without_duplicates() {
    let order = index()
        .closure(&["dm-verity", "erofs", "ext4", "dm_mod"])
        .unwrap();
    assert_eq!(
        order,
        [
            "kernel/lib/reed_solomon/reed_solomon.ko",
            "kernel/drivers/md/dm-mod.ko",
            "kernel/drivers/md/dm-bufio.ko",
            "kernel/drivers/md/dm-verity.ko",
            "kernel/lib/libcrc32c.ko",
            "kernel/fs/erofs/erofs.ko",
        ]
    );
}

#[test]
fn unknown_modules_and_cycles_are_errors() {
    let mut idx = index();
    let err = idx.closure(&["nope"]).unwrap_err();
    assert!(matches!(err, Error::UnknownModule { .. }), "{err}");
    assert!(err.to_string().contains("'nope'"), "{err}");
    idx.modules.get_mut("dm_mod").unwrap().depends = vec!["dm_verity".into()];
    let err = idx.closure(&["dm_verity"]).unwrap_err().to_string();
    assert!(err.contains("dm_verity -> dm_mod -> dm_verity"), "{err}");
    // A soft dependency that loops back only drops the soft edge.
    let mut idx = index();
    idx.modules.get_mut("dm_mod").unwrap().soft_pre = vec!["dm_verity".into()];
    assert_eq!(idx.closure(&["dm_verity"]).unwrap().len(), 4);
}

/// depmod's files, as buildsys reads them after running depmod on the staged tree.
#[test]
fn reads_depmod_files() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
         kernel/drivers/md/dm-bufio.ko:\n\
         kernel/drivers/md/dm-mod.ko:\n\
         kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n\
         kernel/lib/libcrc32c.ko:\n\
         kernel/crypto/crc32c_generic.ko:\n",
    )
    .unwrap();
    std::fs::write(dir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
    std::fs::write(
        dir.join("modules.softdep"),
        "# comment\nsoftdep libcrc32c pre: crc32c crc32c-generic post: nothing\n",
    )
    .unwrap();
    let index = ModuleIndex::load(dir).unwrap();
    assert_eq!(index.modules["dm_verity"].depends, ["dm_bufio", "dm_mod"]);
    assert_eq!(
        index.modules["libcrc32c"].soft_pre,
        ["crc32c", "crc32c_generic"]
    );
    let order = index.closure(&["dm-verity", "ext4", "erofs"]).unwrap();
    assert_eq!(
        order,
        [
            "kernel/drivers/md/dm-bufio.ko",
            "kernel/drivers/md/dm-mod.ko",
            "kernel/drivers/md/dm-verity.ko",
            "kernel/crypto/crc32c_generic.ko",
            "kernel/lib/libcrc32c.ko",
            "kernel/fs/erofs/erofs.ko",
        ]
    );
}

#[test]
fn softdep_values() {
    assert_eq!(
        softdep_pre("pre: crc32c crc32-generic post: x"),
        ["crc32c", "crc32_generic"]
    );
    assert!(softdep_pre("post: x").is_empty());
}

/// A minimal relocatable ELF64 little-endian file whose only content is a `.modinfo` section.
fn fake_module(modinfo: &[u8]) -> Vec<u8> {
    let shstr = b"\0.shstrtab\0.modinfo\0";
    let mut elf = vec![0u8; 64];
    elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    elf[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf[0x14..0x18].copy_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    let modinfo_off = elf.len();
    elf.extend_from_slice(modinfo);
    let shstr_off = elf.len();
    elf.extend_from_slice(shstr);
    elf.resize(elf.len().next_multiple_of(8), 0);
    let shoff = elf.len();
    let mut header = |name: u32, kind: u32, off: usize, size: usize| {
        let mut sh = [0u8; 64];
        sh[0..4].copy_from_slice(&name.to_le_bytes());
        sh[4..8].copy_from_slice(&kind.to_le_bytes());
        sh[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        sh[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        sh[48..56].copy_from_slice(&1u64.to_le_bytes());
        elf.extend_from_slice(&sh);
    };
    header(0, 0, 0, 0);
    header(1, 3, shstr_off, shstr.len()); // SHT_STRTAB
    header(11, 1, modinfo_off, modinfo.len()); // SHT_PROGBITS
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
    elf
}

/// A kernel package unpacked without depmod: the index comes from the modules themselves.
#[test]
fn reads_modinfo_and_scans_a_tree() {
    let elf =
        fake_module(b"license=GPL\0depends=dm-mod,dm_bufio\0softdep=pre: crc32c\0name=dm_verity\0");
    let entries = modinfo(&elf).unwrap();
    assert!(entries.contains(&("depends".into(), "dm-mod,dm_bufio".into())));
    assert!(modinfo(b"\x28\xb5\x2f\xfd").is_err());

    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("kernel/drivers/md");
    std::fs::create_dir_all(&md).unwrap();
    std::fs::write(md.join("dm-verity.ko"), &elf).unwrap();
    std::fs::write(md.join("dm-mod.ko"), fake_module(b"depends=\0")).unwrap();
    std::fs::write(md.join("dm-bufio.ko"), fake_module(b"depends=dm-mod\0")).unwrap();
    std::fs::write(
        dir.path().join("modules.builtin"),
        "kernel/crypto/crc32c_generic.ko\n",
    )
    .unwrap();
    let index = ModuleIndex::load(dir.path()).unwrap();
    assert_eq!(index.modules["dm_verity"].soft_pre, ["crc32c"]);
    assert!(index.builtin.contains("crc32c_generic"));
    assert_eq!(
        index.closure(&["dm_verity"]).unwrap(),
        [
            "kernel/drivers/md/dm-mod.ko",
            "kernel/drivers/md/dm-bufio.ko",
            "kernel/drivers/md/dm-verity.ko",
        ]
    );

    // A module that is not ELF names its file.
    std::fs::write(md.join("broken.ko"), b"\x28\xb5\x2f\xfd").unwrap();
    let err = ModuleIndex::load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Modinfo { .. }), "{err}");
    assert!(err.to_string().contains("broken.ko"), "{err}");
}
