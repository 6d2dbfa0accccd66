//! End to end through the real boot chain: OVMF -> GRUB (BOOTX64.EFI with the embedded A/B
//! script) -> kernel + initramfs from BOOT-x -> early init -> dm-verity erofs root -> a stand-in
//! for systemd that reports and powers off.
//!
//! 1. A fresh image boots set A.
//! 2. A second build (another version) is written onto BOOT-B/ROOT-B/HASH-B as an update would,
//!    the GPT bits are set to "try B once" with disk-layout's signpost operations and the GRUB
//!    environment is derived from them: the VM boots B, and GRUB has cleared the try on disk.
//! 3. B never marked its boot successful, so the next boot is A again.
//! 4. The boot-time reconcile records the used try in the GPT; after "B marked successful" the
//!    VM boots B without a try.
//!
//! QEMU runs in TCG (vmtest's default). Needs qemu-system-x86, ovmf, the image build's host
//! tools and apt (for Debian's cloud kernel, cached in `<workspace>/build/vmtest/kernel`). About
//! a minute on two cores (four boots of 8-10 s each); the first run also downloads the kernel
//! and builds the static early init and test init. Timings:
//! `cargo test -p imagebuilder --test uefi_boot -- --nocapture`.

use disk_layout::{read_flags, read_layout, write_flags, BootSet, Layout, PartitionRole};
use imagebuilder::grubenv::{self, BootSelection};
use imagebuilder::{build_image, BuildManifest, Format, ImageInput};
use kmod_index::ModuleIndex;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vmtest::{debkernel, Vm, VmConfig};

/// Printed by vmtest's testinit once it runs in the verified root.
const MARKER: &str = "BALLAST-TEST-ROOT-OK";
/// Modules the early init needs on the cloud kernel (dependencies are added).
const MODULES: &[&str] = &["virtio_pci", "virtio_blk", "dm_verity", "erofs"];
const TARGET: &str = "x86_64-unknown-linux-gnu";
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn run(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A static release binary, built in a separate target directory (shared with vmtest's own
/// boot test) so that it never waits for the outer `cargo test`'s lock.
fn cargo_static(args: &[&str], artifact: &str) -> PathBuf {
    let target_dir = workspace().join("build/vmtest/cargo-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(args)
        .current_dir(workspace())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR"));
    let path = target_dir.join(TARGET).join("release").join(artifact);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A root tree whose "systemd" is vmtest's testinit and whose factory /etc/hostname names the
/// build, with the initramfs modules under usr/lib/modules. Returns the module list.
fn root_tree(
    dir: &Path,
    testinit: &Path,
    hostname: &str,
    kernel: &debkernel::DebianKernel,
) -> Vec<String> {
    for d in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
        "var",
        "opt",
        "local",
        "usr/lib/systemd",
        constants::FACTORY_ETC_IN_IMAGE,
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let init = dir.join("usr/lib/systemd/systemd");
    fs::copy(testinit, &init).unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        dir.join(constants::FACTORY_ETC_IN_IMAGE).join("hostname"),
        format!("{hostname}\n"),
    )
    .unwrap();
    let index = ModuleIndex::load(&kernel.modules_dir).expect("module index");
    let order = index.closure(MODULES).expect("module closure");
    let modules_dir = dir.join("usr/lib/modules").join(&kernel.release);
    order
        .iter()
        .map(|rel| {
            let to = modules_dir.join(rel);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(kernel.modules_dir.join(rel), &to).unwrap();
            rel.clone()
        })
        .collect()
}

fn layout() -> Layout {
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

struct Build {
    manifest: BuildManifest,
    out: PathBuf,
}

impl Build {
    fn file(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    fn raw(&self) -> PathBuf {
        self.file(&self.manifest.disk(Format::Raw).unwrap().file.file)
    }
}

fn build(
    work: &Path,
    version: &str,
    testinit: &Path,
    init: &Path,
    kernel: &debkernel::DebianKernel,
) -> Build {
    let root = work.join(format!("root-{version}"));
    let modules = root_tree(&root, testinit, &format!("ballast-v{version}"), kernel);
    let out = work.join(format!("out-{version}"));
    let manifest = build_image(&ImageInput {
        root_dir: root,
        kernel: kernel.vmlinuz.clone(),
        kernel_version: kernel.release.clone(),
        initramfs_modules: modules,
        init_binary: init.to_path_buf(),
        cmdline: ["console=ttyS0", "panic=-1", "ballast.onfailure=poweroff"]
            .into_iter()
            .chain(vmtest::EMULATED_GUEST_PARAMS.iter().copied())
            .map(String::from)
            .collect(),
        layout: layout(),
        disk_size_mib: None,
        formats: vec![Format::Raw],
        variant: "boottest".into(),
        version: version.into(),
        build_id: "uefi-boot-test".into(),
        out_dir: out.clone(),
        source_date_epoch: 1_700_000_000,
    })
    .expect("image build");
    Build { manifest, out }
}

/// Boots `disk` (written to by GRUB's save_env) until the test init powers off; checks that
/// every expected line appeared and that none of `absent` did. Returns the time to the marker.
fn boot(name: &str, disk: &Path, expected: &[&str], absent: &[&str]) -> (Duration, Duration) {
    let started = Instant::now();
    // One vCPU: the test init needs no more, and a guest with one vCPU never waits on an
    // inter-processor interrupt. Twice a CI run's guest stopped for good at 1.1 s of kernel
    // boot, in the stretch where boot-time RCU grace periods are expedited by IPIs to the other
    // vCPU; with a single vCPU that wait cannot happen.
    let config = VmConfig::uefi(disk)
        .name(name)
        .memory_mib(512)
        .cpus(1)
        .log_dir(workspace().join("build/vmtest/logs"));
    let mut vm = Vm::start(config).expect("start QEMU");
    let to_grub = vm
        .wait_for_console("ballast: booting set", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: GRUB never chose a set: {e}"));
    let to_marker = vm
        .wait_for_console(MARKER, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    vm.wait_for_exit(Duration::from_secs(60)).unwrap();
    let log = vm.console_log();
    for line in expected {
        assert!(
            log.contains(line),
            "{name}: {line:?} missing; console log {}",
            vm.log_path().display()
        );
    }
    for line in absent {
        assert!(
            !log.contains(line),
            "{name}: {line:?} present; console log {}",
            vm.log_path().display()
        );
    }
    println!(
        "uefi-boot: {name}: GRUB chose a set after {:.1} s, marker after {:.1} s, VM gone after \
         {:.1} s",
        to_grub.as_secs_f64(),
        to_marker.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    (to_grub, to_marker)
}

fn selection(disk: &Path) -> BootSelection {
    BootSelection::from_env(&grubenv::read_disk(disk).unwrap().env)
}

#[test]
fn uefi_boot_a_then_try_b_then_fall_back() {
    let started = Instant::now();
    vmtest::Firmware::find().expect("OVMF");
    let build_dir = workspace().join("build/imagebuilder");
    fs::create_dir_all(&build_dir).unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("uefi-boot-")
        .tempdir_in(&build_dir)
        .unwrap();
    let work = scratch.path();

    let kernel = debkernel::fetch_cloud_kernel(&workspace().join("build/vmtest/kernel"))
        .expect("Debian cloud kernel");
    let init = cargo_static(&["-p", "early-init", "--bin", "init"], "init");
    let testinit = cargo_static(
        &["-p", "vmtest", "--example", "testinit"],
        "examples/testinit",
    );
    let prepared = started.elapsed();

    let build_started = Instant::now();
    let v1 = build(work, "1.0.0", &testinit, &init, &kernel);
    let build_time = build_started.elapsed();
    let v2 = build(work, "1.0.1", &testinit, &init, &kernel);
    assert_ne!(v1.manifest.root_hash, v2.manifest.root_hash);

    // 1. Fresh image: set A.
    let disk = work.join("disk.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(v1.raw())
        .arg(&disk));
    let (grub1, boot1) = boot(
        "imagebuilder-fresh-a",
        &disk,
        &[
            "ballast: booting set A from (hd0,gpt2)",
            "ballast: loading Ballast 1.0.0",
            "root=/dev/vda3 hash=/dev/vda4",
            "testinit: /etc/hostname=ballast-v1.0.0",
            "testinit: mount / erofs ro",
            "testinit: /var is writable",
        ],
        &["trying set"],
    );
    assert_eq!(
        selection(&disk),
        BootSelection {
            boot_set: BootSet::A,
            try_set: None
        }
    );

    // 2. The update: v2's images onto the B partitions, then signpost's state changes.
    let layout = read_layout(&disk).unwrap();
    for (role, name) in [
        (PartitionRole::Boot(BootSet::B), imagebuilder::BOOT_IMAGE),
        (PartitionRole::Root(BootSet::B), imagebuilder::ROOT_IMAGE),
        (PartitionRole::Hash(BootSet::B), imagebuilder::HASH_IMAGE),
    ] {
        let p = layout.partition(role).unwrap();
        imagebuilder::disk::write_sparse(&disk, p.offset, &v2.file(name)).unwrap();
    }
    let mut flags = read_flags(&disk).unwrap();
    flags.mark_successful_boot(BootSet::A);
    flags.clear_inactive(BootSet::A);
    flags.mark_inactive_valid(BootSet::A);
    flags.upgrade_to_inactive(BootSet::A).unwrap();
    write_flags(&disk, &flags).unwrap();
    let staged = flags;
    grubenv::sync_disk(&disk).unwrap();
    assert_eq!(
        selection(&disk),
        BootSelection {
            boot_set: BootSet::A,
            try_set: Some(BootSet::B)
        }
    );
    let (_, boot2) = boot(
        "imagebuilder-try-b",
        &disk,
        &[
            "ballast: trying set B once",
            "ballast: booting set B from (hd0,gpt6)",
            "ballast: loading Ballast 1.0.1",
            "root=/dev/vda7 hash=/dev/vda8",
            "testinit: /etc/hostname=ballast-v1.0.1",
        ],
        &["booting set A"],
    );
    // GRUB cleared the try on disk before it booted B.
    assert_eq!(
        selection(&disk),
        BootSelection {
            boot_set: BootSet::A,
            try_set: None
        }
    );
    assert_eq!(
        read_flags(&disk).unwrap(),
        staged,
        "GRUB never writes the GPT"
    );

    // 3. B did not mark its boot successful: back to A.
    let (_, boot3) = boot(
        "imagebuilder-fallback-a",
        &disk,
        &[
            "ballast: booting set A from (hd0,gpt2)",
            "testinit: /etc/hostname=ballast-v1.0.0",
        ],
        &["trying set", "booting set B"],
    );

    // 4. A's boot-time reconcile spends B's try in the GPT and leaves A as the boot set.
    let flags = grubenv::reconcile_disk(&disk).unwrap();
    assert_eq!(flags.boot_b.tries_left, 0);
    assert_eq!(flags.peek_next_boot_set(), Some(BootSet::A));
    // Had B come up: it reconciles its try and marks itself successful; B from then on.
    let mut flags = staged;
    flags.boot_b.tries_left = 0;
    flags.mark_successful_boot(BootSet::B);
    write_flags(&disk, &flags).unwrap();
    assert_eq!(
        grubenv::sync_disk(&disk).unwrap(),
        BootSelection {
            boot_set: BootSet::B,
            try_set: None
        }
    );
    let (_, boot4) = boot(
        "imagebuilder-committed-b",
        &disk,
        &[
            "ballast: booting set B from (hd0,gpt6)",
            "testinit: /etc/hostname=ballast-v1.0.1",
        ],
        &["trying set"],
    );

    let m = &v1.manifest;
    let initrd = initrd_path(&v1);
    println!(
        "uefi-boot: kernel {}; initramfs {} KiB (gzip) with {} modules; kernel {} KiB",
        kernel.release,
        fs::metadata(&initrd).unwrap().len() >> 10,
        count_modules(&initrd),
        fs::metadata(&kernel.vmlinuz).unwrap().len() >> 10,
    );
    println!(
        "uefi-boot: image build {:.1} s; boot.ext4 {} MiB, root.erofs {} KiB, root.verity {} B, \
         raw disk {} MiB (apparent)",
        build_time.as_secs_f64(),
        m.images.boot.size >> 20,
        m.images.root.size >> 10,
        m.images.hash.size,
        m.disk(Format::Raw).unwrap().file.size >> 20,
    );
    println!(
        "uefi-boot: QEMU start -> GRUB picks set {:.1} s; -> marker: A {:.1} s, try B {:.1} s, \
         fallback A {:.1} s, committed B {:.1} s; preparation {:.1} s; total {:.1} s",
        grub1.as_secs_f64(),
        boot1.as_secs_f64(),
        boot2.as_secs_f64(),
        boot3.as_secs_f64(),
        boot4.as_secs_f64(),
        prepared.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

fn count_modules(initrd: &Path) -> usize {
    let list = run(Command::new("sh")
        .arg("-c")
        .arg(format!("zcat < '{}' | cpio -t --quiet", initrd.display())));
    list.lines().filter(|l| l.ends_with(".ko")).count()
}

/// The initramfs, copied out of boot.ext4 with debugfs.
fn initrd_path(b: &Build) -> PathBuf {
    let path = b.out.parent().unwrap().join("initrd.extracted");
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /initrd {}", path.display()))
        .arg(b.file(imagebuilder::BOOT_IMAGE)));
    path
}
