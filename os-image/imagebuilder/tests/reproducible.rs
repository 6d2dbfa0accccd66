//! Two builds from the same inputs give byte-identical outputs (raw, qcow2, vmdk, update images,
//! manifest), even when the root tree was staged at another time and in another order; a
//! different build ID changes the salt and root hash. The outputs are also checked with the
//! reference tools (veritysetup, debugfs, mtools, sgdisk) where they are installed.
//!
//! Needs the host tools of the image build (see the crate documentation) and qemu-utils; uses
//! a dummy kernel, so nothing boots here (tests/uefi_boot.rs does that).

use disk_layout::{BootSet, Layout};
use imagebuilder::{build_image, grubenv, BuildManifest, Format, ImageInput};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const KVER: &str = "6.1.0-test-amd64";

fn small_layout() -> Layout {
    Layout {
        efi_mib: 16,
        boot_mib: 32,
        root_mib: 64,
        hash_mib: 1,
        reserved_mib: 1,
        private_mib: 4,
        data_mib: Some(16),
    }
}

/// Deterministic pseudo-random bytes (so the "kernel" and files do not compress to nothing).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tiny root tree. `reverse` creates the entries in the opposite order, and every file gets
/// the current time, so two trees differ in everything the build must ignore.
fn root_tree(dir: &Path, reverse: bool, marker: &str) {
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        ("usr/bin/tool".into(), noise(300_000, 1), 0o755),
        (
            "usr/share/factory/etc/hostname".into(),
            marker.into(),
            0o644,
        ),
        ("etc/os-release".into(), b"NAME=Ballast\n".to_vec(), 0o644),
        (
            format!("usr/lib/modules/{KVER}/kernel/fs/erofs/erofs.ko"),
            noise(40_000, 2),
            0o644,
        ),
        (
            format!("usr/lib/modules/{KVER}/kernel/drivers/md/dm-verity.ko"),
            noise(30_000, 3),
            0o644,
        ),
    ];
    for i in 0..40 {
        files.push((
            format!("usr/share/doc/f{i:02}"),
            noise(1000 + i, i as u64),
            0o644,
        ));
    }
    let mut dirs = vec!["proc", "sys", "dev", "run", "tmp", "var", "opt", "local"];
    if reverse {
        files.reverse();
        dirs.reverse();
    }
    for d in dirs {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    for (path, data, mode) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("../usr/bin/tool", dir.join("usr/share/tool-link")).unwrap();
}

fn input(work: &Path, root: &Path, out: &str, build_id: &str) -> ImageInput {
    let kernel = work.join("vmlinuz");
    let init = work.join("init");
    if !kernel.exists() {
        fs::write(&kernel, noise(2_000_000, 7)).unwrap();
        fs::write(&init, noise(500_000, 8)).unwrap();
    }
    ImageInput {
        root_dir: root.to_path_buf(),
        kernel,
        kernel_version: KVER.into(),
        initramfs_modules: vec![
            "kernel/drivers/md/dm-verity.ko".into(),
            "kernel/fs/erofs/erofs.ko".into(),
        ],
        init_binary: init,
        cmdline: vec!["console=ttyS0,115200n8".into(), "quiet".into()],
        layout: small_layout(),
        disk_size_mib: None,
        formats: vec![Format::Qcow2, Format::Vmdk],
        variant: "test".into(),
        version: "1.0.0".into(),
        build_id: build_id.into(),
        out_dir: work.join(out),
        source_date_epoch: 1_700_000_000,
    }
}

fn outputs(dir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let sha = imagebuilder::disk::sha256_file(&dir.join(&n)).unwrap();
            (n, sha)
        })
        .collect()
}

/// Whether the reference `program` is there to check with (under CI it must be).
fn have(program: &str) -> bool {
    hosttools::require_tool(program)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shows the build's progress log (with `--nocapture`).
fn log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "imagebuilder=info".into()),
        )
        .try_init();
}

#[test]
fn same_inputs_same_bytes() {
    log();
    let started = std::time::Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root1 = w.join("root1");
    let root2 = w.join("root2");
    root_tree(&root1, false, "ballast-test\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    root_tree(&root2, true, "ballast-test\n");

    let m1 = build_image(&input(w, &root1, "out1", "b1")).unwrap();
    let first = started.elapsed();
    let m2 = build_image(&input(w, &root2, "out2", "b1")).unwrap();
    assert_eq!(m1, m2);
    let o1 = outputs(&w.join("out1"));
    let o2 = outputs(&w.join("out2"));
    assert_eq!(o1, o2);
    let names: Vec<&str> = o1.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "boot.ext4",
            "manifest.json",
            "root.erofs",
            "root.verity",
            "test-1.0.0.img",
            "test-1.0.0.qcow2",
            "test-1.0.0.vmdk"
        ]
    );
    // No work directory is left behind.
    assert_eq!(fs::read_dir(w.join("out1")).unwrap().count(), 7);

    // Another build ID: another salt, root hash, file system UUIDs and partition GUIDs.
    let m3 = build_image(&ImageInput {
        formats: vec![],
        ..input(w, &root1, "out3", "b2")
    })
    .unwrap();
    assert_eq!(m3.formats.len(), 1, "raw only");
    assert_eq!(m3.images.root.size, m1.images.root.size);
    assert_ne!(m3.images.root.sha256, m1.images.root.sha256);
    assert_ne!(m3.salt, m1.salt);
    assert_ne!(m3.root_hash, m1.root_hash);
    assert_ne!(m3.partitions[1].partuuid, m1.partitions[1].partuuid);

    check_manifest(&m1, &w.join("out1"));
    check_with_reference_tools(&m1, &w.join("out1"));
    println!(
        "reproducible: one build {:.1} s; raw {} MiB apparent; boot.ext4 {} KiB of data; \
         root.erofs {} KiB; root.verity {} B; qcow2 {} KiB; vmdk {} KiB",
        first.as_secs_f64(),
        m1.disk(Format::Raw).unwrap().file.size >> 20,
        m1.partition("BOOT-A").unwrap().image_size.unwrap() >> 10,
        m1.images.root.size >> 10,
        m1.images.hash.size,
        m1.disk(Format::Qcow2).unwrap().file.size >> 10,
        m1.disk(Format::Vmdk).unwrap().file.size >> 10,
    );
}

fn check_manifest(m: &BuildManifest, out: &Path) {
    let text = fs::read_to_string(out.join("manifest.json")).unwrap();
    let parsed: BuildManifest = serde_json::from_str(&text).unwrap();
    assert_eq!(&parsed, m);
    assert_eq!(m.arch, "x86_64");
    assert_eq!(m.kernel_version, KVER);
    assert_eq!(m.data_blocks * 4096, m.images.root.size);
    assert_eq!(m.salt.len(), 64);
    assert_eq!(m.partitions.len(), 11);
    assert!(m.partition("BOOT-B").unwrap().image_sha256.is_none());
    assert_eq!(
        m.partition("ROOT-A").unwrap().image_sha256.as_deref(),
        Some(m.images.root.sha256.as_str())
    );
    assert_eq!(
        m.kernel_cmdline_for("B"),
        format!(
            "console=ttyS0,115200n8 quiet ballast.root=PARTLABEL=ROOT-B \
             ballast.hash=PARTLABEL=HASH-B ballast.roothash={} ballast.salt={} \
             ballast.datablocks={} ballast.data=PARTLABEL=DATA",
            m.root_hash, m.salt, m.data_blocks
        )
    );

    // The environment block says "boot A, nothing to try", where the manifest says it is.
    let raw = out.join(&m.disk(Format::Raw).unwrap().file.file);
    let on_disk = grubenv::read_disk(&raw).unwrap();
    assert_eq!(on_disk.offset, m.grubenv.disk_offset);
    let sel = grubenv::BootSelection::from_env(&on_disk.env);
    assert_eq!(sel.boot_set, BootSet::A);
    assert_eq!(sel.try_set, None);
    assert_eq!(
        disk_layout::read_flags(&raw).unwrap(),
        disk_layout::BootFlags::fresh_image()
    );
}

fn check_with_reference_tools(m: &BuildManifest, out: &Path) {
    let raw = out.join(&m.disk(Format::Raw).unwrap().file.file);
    if have("veritysetup") {
        run(Command::new("veritysetup")
            .args(["verify", "--no-superblock", "--hash=sha256"])
            .arg(format!("--salt={}", m.salt))
            .arg(out.join("root.erofs"))
            .arg(out.join("root.verity"))
            .arg(&m.root_hash));
    }
    if have("debugfs") {
        let cfg = run(Command::new("debugfs")
            .args(["-R", "cat /grub/grub.cfg"])
            .arg(out.join("boot.ext4")));
        assert!(
            cfg.contains(&format!("ballast.roothash={}", m.root_hash)),
            "{cfg}"
        );
        let listing = run(Command::new("debugfs")
            .args(["-R", "ls -l /"])
            .arg(out.join("boot.ext4")));
        for name in ["vmlinuz", "initrd", "grub"] {
            assert!(listing.contains(name), "{listing}");
        }
    }
    if have("mdir") {
        let esp = m.partition("EFI-SYSTEM").unwrap();
        let listing = run(Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{}", raw.display(), esp.offset))
            .arg("::/EFI/BOOT"));
        assert!(listing.contains("BOOTX64"), "{listing}");
        assert!(listing.to_lowercase().contains("grubenv"), "{listing}");
    }
    if have("sgdisk") {
        let info = run(Command::new("sgdisk").args(["-i", "2"]).arg(&raw));
        assert!(info.contains("Partition name: 'BOOT-A'"), "{info}");
        let attrs = run(Command::new("sgdisk").args(["-A", "2:show"]).arg(&raw));
        assert!(attrs.contains("48") && attrs.contains("56"), "{attrs}");
    }
    if have("fsck.erofs") {
        run(Command::new("fsck.erofs").arg(out.join("root.erofs")));
    }
    if have("e2fsck") {
        run(Command::new("e2fsck")
            .args(["-f", "-n"])
            .arg(out.join("boot.ext4")));
    }
    if have("qemu-img") {
        for format in [Format::Qcow2, Format::Vmdk] {
            let path: PathBuf = out.join(&m.disk(format).unwrap().file.file);
            run(Command::new("qemu-img").arg("check").arg(&path));
        }
        let converted = out.join("back.img");
        run(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(out.join(&m.disk(Format::Qcow2).unwrap().file.file))
            .arg(&converted));
        assert_eq!(
            imagebuilder::disk::sha256_file(&converted).unwrap(),
            m.disk(Format::Raw).unwrap().file.sha256
        );
        fs::remove_file(converted).unwrap();
    }
}

#[test]
fn bad_inputs_are_refused_with_reasons() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root = w.join("root");
    root_tree(&root, false, "x\n");
    let good = input(w, &root, "out", "b");

    let mut bad = good.clone();
    bad.cmdline.push("dm-mod.create=\"x\"".into());
    let err = build_image(&bad).unwrap_err().to_string();
    assert!(err.contains("GRUB"), "{err}");

    let mut bad = good.clone();
    bad.cmdline.push("ballast.roothash=00".into());
    let err = build_image(&bad).unwrap_err().to_string();
    assert!(err.contains("set by the image builder"), "{err}");

    let mut bad = good.clone();
    bad.initramfs_modules.push("kernel/nope.ko".into());
    let err = build_image(&bad).unwrap_err().to_string();
    assert!(err.contains("kernel/nope.ko"), "{err}");

    let mut bad = good.clone();
    bad.version = "1.0/evil".into();
    assert!(build_image(&bad).is_err());

    // A root tree that does not fit in ROOT.
    let mut bad = good.clone();
    fs::write(root.join("usr/big"), noise(12 << 20, 9)).unwrap();
    bad.layout.root_mib = 8;
    let err = build_image(&bad).unwrap_err().to_string();
    assert!(err.contains("raise root_mib"), "{err}");
    // Nothing but the (empty) output directory was left behind.
    assert_eq!(fs::read_dir(w.join("out")).unwrap().count(), 0);
}
