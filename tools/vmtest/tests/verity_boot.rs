//! End to end: the early init, on Debian 12's cloud kernel, opens a dm-verity protected erofs
//! root by GPT partition name, mounts DATA and /etc, switches root and starts the next init;
//! the same disk with one flipped byte in the root image does not get that far; and a broken
//! command line ends in the init's own failure message and a power-off.
//!
//! Needs the host's apt (for the kernel package), qemu-system-x86, erofs-utils, cryptsetup-bin,
//! gdisk and e2fsprogs. Artifacts go to `<workspace>/build/vmtest/`, console logs to
//! `<workspace>/build/vmtest/logs/`. The first run downloads the kernel and builds two static
//! binaries; later runs reuse them.

use boot_params::{BootParams, DeviceSpec, FailureAction, VerityRoot};
use kmod_index::ModuleIndex;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vmtest::cpio::CpioWriter;
use vmtest::{debkernel, Drive, Vm, VmConfig};

/// What the test init in the root image prints once it runs.
const MARKER: &str = "BALLAST-TEST-ROOT-OK";
/// Modules the early init needs on the cloud kernel (their dependencies are added).
const MODULES: &[&str] = &["virtio_pci", "virtio_blk", "dm_verity", "erofs"];
const SALT: &str = "5eed0000ba11a570000000000000000000000000000000000000000000000001";
const TARGET: &str = "x86_64-unknown-linux-gnu";
const MIB: u64 = 1024 * 1024;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn build_dir() -> PathBuf {
    workspace().join("build/vmtest")
}

/// Runs a command, panicking with its output if it fails; returns standard output.
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

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing; install it with: apt-get install -y --no-install-recommends {package}"
    );
}

/// Builds a static release binary with a separate target directory (so it never waits for the
/// outer `cargo test`'s lock) and returns its path.
fn cargo_static(args: &[&str], artifact: &str) -> PathBuf {
    let target_dir = build_dir().join("cargo-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            TARGET,
            "--target-dir",
        ])
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

fn initramfs(path: &Path, init: &Path, kernel: &debkernel::DebianKernel) -> Vec<String> {
    let index = ModuleIndex::load(&kernel.modules_dir).expect("module index");
    let order = index.closure(MODULES).expect("module closure");
    let mut w = CpioWriter::new(Vec::new());
    for dir in ["proc", "sys", "dev", "run", "sysroot", "etc"] {
        w.dir(dir, 0o755).unwrap();
    }
    w.char_device("dev/console", 0o600, 5, 1).unwrap();
    w.file("init", 0o755, &fs::read(init).unwrap()).unwrap();
    let mut list = String::from("# written by the vmtest verity_boot test\n");
    for rel in &order {
        let data = fs::read(kernel.modules_dir.join(rel)).unwrap();
        let inside = format!("lib/modules/{}/{rel}", kernel.release);
        w.file(&inside, 0o644, &data).unwrap();
        list.push_str(&format!("{rel}\n"));
    }
    w.file(
        constants::MODULES_ORDER_IN_INITRAMFS,
        0o644,
        list.as_bytes(),
    )
    .unwrap();
    fs::write(path, w.finish().unwrap()).unwrap();
    order
}

/// The root image: the test init plus the mount points and factory /etc the early init needs.
fn root_image(work: &Path, testinit: &Path) -> PathBuf {
    let stage = work.join("rootfs");
    let _ = fs::remove_dir_all(&stage);
    for dir in [
        "sbin",
        "etc",
        "var",
        "opt",
        "local",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        constants::FACTORY_ETC_IN_IMAGE,
    ] {
        fs::create_dir_all(stage.join(dir)).unwrap();
    }
    fs::copy(testinit, stage.join("sbin/testinit")).unwrap();
    fs::write(
        stage.join(constants::FACTORY_ETC_IN_IMAGE).join("hostname"),
        "ballast-verity-test\n",
    )
    .unwrap();
    let image = work.join("root.erofs");
    let _ = fs::remove_file(&image);
    run(Command::new("mkfs.erofs")
        .args([
            "--quiet",
            "-T0",
            "--all-root",
            "-U",
            "ba11a570-0000-4000-8000-000000000001",
        ])
        .arg(&image)
        .arg(&stage));
    image
}

/// `veritysetup format --no-superblock`; returns the root hash.
fn verity_format(data: &Path, hash: &Path) -> String {
    let _ = fs::remove_file(hash);
    let out = run(Command::new("veritysetup")
        .args([
            "format",
            "--no-superblock",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
        ])
        .arg(format!("--salt={SALT}"))
        .arg(data)
        .arg(hash));
    out.lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no root hash in veritysetup output:\n{out}"))
}

/// Writes a GPT disk with one partition per `(name, image)`, each starting on a MiB boundary,
/// and returns the byte offset of each partition.
fn gpt_disk(path: &Path, parts: &[(&str, &Path)]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut next = MIB;
    let mut sgdisk = Command::new("sgdisk");
    sgdisk.arg("--clear");
    for (i, (name, image)) in parts.iter().enumerate() {
        let size = fs::metadata(image).unwrap().len().div_ceil(MIB) * MIB;
        let n = i + 1;
        let (first, last) = (next / 512, (next + size) / 512 - 1);
        sgdisk.arg(format!("--new={n}:{first}:{last}"));
        sgdisk.arg(format!("--change-name={n}:{name}"));
        offsets.push(next);
        next += size;
    }
    let _ = fs::remove_file(path);
    File::create(path).unwrap().set_len(next + MIB).unwrap();
    run(sgdisk.arg(path));
    let mut disk = OpenOptions::new().write(true).open(path).unwrap();
    for ((_, image), offset) in parts.iter().zip(&offsets) {
        disk.seek(SeekFrom::Start(*offset)).unwrap();
        disk.write_all(&fs::read(image).unwrap()).unwrap();
    }
    offsets
}

#[test]
fn verity_root_boots_and_corruption_is_caught() {
    let started = Instant::now();
    for (tool, package) in [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.erofs", "erofs-utils"),
        ("veritysetup", "cryptsetup-bin"),
        ("sgdisk", "gdisk"),
        ("mkfs.ext4", "e2fsprogs"),
    ] {
        need(tool, package);
    }
    let build = build_dir();
    fs::create_dir_all(&build).unwrap();
    // Per-run scratch space, so that concurrent test runs do not share images; console logs are
    // kept in build/vmtest/logs.
    let scratch = tempfile::Builder::new()
        .prefix("verity-e2e-")
        .tempdir_in(&build)
        .unwrap();
    let work = scratch.path().to_path_buf();

    let kernel = debkernel::fetch_cloud_kernel(&build.join("kernel")).expect("kernel package");
    let init = cargo_static(&["-p", "early-init", "--bin", "init"], "init");
    let testinit = cargo_static(
        &["-p", "vmtest", "--example", "testinit"],
        "examples/testinit",
    );
    let prepared = started.elapsed();

    let initrd = work.join("initramfs.cpio");
    let modules = initramfs(&initrd, &init, &kernel);
    let root = root_image(&work, &testinit);
    let hash = work.join("root.hash");
    let root_hash = verity_format(&root, &hash);
    let root_bytes = fs::read(&root).unwrap();
    assert_eq!(
        root_bytes.len() % 4096,
        0,
        "erofs image is not block aligned"
    );
    let data_blocks = root_bytes.len() / 4096;
    let data = work.join("data.ext4");
    let _ = fs::remove_file(&data);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "DATA"])
        .arg(&data)
        .arg("16M"));
    let disk = work.join("disk.img");
    let offsets = gpt_disk(
        &disk,
        &[("ROOT-A", &root), ("HASH-A", &hash), ("DATA", &data)],
    );

    let params = BootParams {
        verity: VerityRoot {
            root: DeviceSpec::PartLabel("ROOT-A".into()),
            hash: DeviceSpec::PartLabel("HASH-A".into()),
            root_hash: root_hash.clone(),
            salt: SALT.into(),
            data_blocks: data_blocks as u64,
            hash_start_block: 0,
            data: Some(DeviceSpec::PartLabel("DATA".into())),
        },
        init: "/sbin/testinit".into(),
        debug: false,
        on_failure: FailureAction::PowerOff,
    };
    let append = format!("console=ttyS0 panic=-1 {params}");
    let boot_with = |name: &str, disk: &Path, append: String| {
        let config = VmConfig::direct(&kernel.vmlinuz, Some(initrd.clone()), append)
            .name(name)
            .memory_mib(512)
            .drive(Drive::raw(disk).snapshot())
            .log_dir(build.join("logs"));
        Vm::start(config).expect("start QEMU")
    };
    let boot = |name: &str, disk: &Path| boot_with(name, disk, append.clone());

    // Boot 1: intact image.
    let boot1_started = Instant::now();
    let mut vm = boot("verity-good", &disk);
    let to_init = vm
        .wait_for_console("Run /init as init process", Duration::from_secs(120))
        .unwrap();
    let to_marker = vm
        .wait_for_console(MARKER, Duration::from_secs(120))
        .unwrap();
    vm.wait_for_exit(Duration::from_secs(60)).unwrap();
    let boot1 = boot1_started.elapsed();
    let log = vm.console_log();
    for expected in [
        "ballast-init: loaded",
        "dm-verity device root",
        "testinit: mount / erofs ro",
        "testinit: mount /etc tmpfs rw",
        "testinit: mount /local ext4 rw",
        "testinit: mount /var ext4 rw",
        "testinit: /etc/hostname=ballast-verity-test",
        "testinit: /var is writable",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} missing; console log {}",
            vm.log_path().display()
        );
    }
    drop(vm);

    // Boot 2: one byte of the root image flipped, inside the test init's own text, a block the
    // filesystem only reads when the init runs.
    let bad_disk = work.join("disk-corrupt.img");
    fs::copy(&disk, &bad_disk).unwrap();
    let at = root_bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER.as_bytes())
        .expect("marker text inside the root image");
    {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&bad_disk)
            .unwrap();
        f.seek(SeekFrom::Start(offsets[0] + at as u64)).unwrap();
        f.write_all(&[root_bytes[at] ^ 0x01]).unwrap();
    }
    let boot2_started = Instant::now();
    let mut vm = boot("verity-corrupt", &bad_disk);
    let detected = vm
        .wait_for_console("is corrupted", Duration::from_secs(120))
        .map_err(|e| e.to_string());
    vm.wait_for_exit(Duration::from_secs(60)).unwrap();
    let boot2 = boot2_started.elapsed();
    let log = vm.console_log();
    assert!(
        !log.contains(MARKER),
        "the corrupted root still ran the test init; console log {}",
        vm.log_path().display()
    );
    let to_error = match detected {
        Ok(t) => t,
        Err(e) => {
            assert!(
                log.contains("ballast-init: FAILED"),
                "no verity error and no init failure: {e}"
            );
            Duration::ZERO
        }
    };
    drop(vm);

    // Boot 3: a malformed root hash. The init must say which step failed and why, then power
    // off (ballast.onfailure=poweroff) instead of leaving the kernel to panic.
    let boot3_started = Instant::now();
    let broken = append.replace(&root_hash, "not-a-hash");
    let mut vm = boot_with("verity-badcmdline", &disk, broken);
    vm.wait_for_console(
        "ballast-init: FAILED at step 'read kernel command line': ballast.roothash=not-a-hash is invalid",
        Duration::from_secs(120),
    )
    .unwrap();
    vm.wait_for_console("powering off in 5 seconds", Duration::from_secs(10))
        .unwrap();
    vm.wait_for_exit(Duration::from_secs(60)).unwrap();
    assert!(
        vm.console_contains("reboot: Power down"),
        "{}",
        vm.console_tail()
    );
    let boot3 = boot3_started.elapsed();
    drop(vm);

    println!(
        "verity-e2e: kernel package {} ({})",
        kernel.package, kernel.release
    );
    println!(
        "verity-e2e: initramfs modules: {}",
        modules
            .iter()
            .map(|m| m.rsplit('/').next().unwrap_or(m))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("verity-e2e: root image {data_blocks} blocks, root hash {root_hash}");
    println!(
        "verity-e2e: QEMU start -> 'Run /init as init process': {:.2} s",
        to_init.as_secs_f64()
    );
    println!(
        "verity-e2e: QEMU start -> {MARKER}: {:.2} s",
        to_marker.as_secs_f64()
    );
    println!(
        "verity-e2e: early init + switch root: {:.2} s",
        (to_marker - to_init).as_secs_f64()
    );
    println!(
        "verity-e2e: corrupted boot: verity error after {:.2} s",
        to_error.as_secs_f64()
    );
    println!(
        "verity-e2e: preparation {:.1} s, good boot {:.1} s, corrupt boot {:.1} s, \
         bad command line boot {:.1} s, total {:.1} s",
        prepared.as_secs_f64(),
        boot1.as_secs_f64(),
        boot2.as_secs_f64(),
        boot3.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
