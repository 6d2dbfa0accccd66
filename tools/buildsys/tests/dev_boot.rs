//! End to end: stage the `dev` variant, make a dm-verity protected erofs root of it, put it on a
//! GPT disk with a DATA partition, build an initramfs around early-init with the modules the
//! staging reported, boot it under QEMU (TCG) and wait until systemd has started the API server
//! and `ballast-ready.service` has printed the API's `GET /os` answer. Then ask the API for `/os`
//! through the virtio-serial bridge from the host side.
//!
//! Ignored by default (it takes a few minutes on the first run: it builds release binaries and
//! a static early-init, and downloads the locked Debian packages). Run it with
//!
//! ```text
//! cargo test -p buildsys --test dev_boot -- --ignored --nocapture
//! ```
//!
//! Needs qemu-system-x86, erofs-utils, cryptsetup-bin, gdisk, e2fsprogs and kmod on the host.
//! Artifacts go to `<workspace>/build/buildsys-test/`, console logs to its `logs/`.

use boot_params::{BootParams, FailureAction};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vmtest::cpio::CpioWriter;
use vmtest::{Drive, Vm, VmConfig};

const SALT: &str = "ba11a570000000000000000000000000000000000000000000000000000000d1";
const TARGET: &str = "x86_64-unknown-linux-gnu";
const MIB: u64 = 1024 * 1024;
/// What `ballast-ready.service` prints once the API answers (its `GET /os` answer).
const READY: &str = "\"variant_id\":\"";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn build_dir() -> PathBuf {
    workspace().join("build/buildsys-test")
}

/// Shared with the vmtest crate's own VM test, so the static early-init is built once.
fn cargo_target_dir() -> PathBuf {
    workspace().join("build/vmtest/cargo-target")
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

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing; install it with: apt-get install -y --no-install-recommends {package}"
    );
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(workspace())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    command
}

/// Release builds of the workspace binaries the variant installs; returns their directory.
fn build_binaries(names: &[String]) -> PathBuf {
    let mut command = cargo();
    command
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(cargo_target_dir());
    for name in names {
        command.args(["--bin", name]);
    }
    run(&mut command);
    cargo_target_dir().join("release")
}

/// The static early-init, built the way the vmtest crate's VM test builds it.
fn build_early_init() -> PathBuf {
    run(cargo()
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            TARGET,
            "-p",
            "early-init",
            "--bin",
            "init",
            "--target-dir",
        ])
        .arg(cargo_target_dir())
        .env("RUSTFLAGS", "-C target-feature=+crt-static"));
    cargo_target_dir().join(TARGET).join("release/init")
}

fn initramfs(path: &Path, init: &Path, staged: &buildsys::StagedRoot) {
    let modules_dir = staged
        .root_dir
        .join("usr/lib/modules")
        .join(&staged.kernel_version);
    let mut w = CpioWriter::new(Vec::new());
    for dir in ["proc", "sys", "dev", "run", "sysroot", "etc"] {
        w.dir(dir, 0o755).unwrap();
    }
    w.char_device("dev/console", 0o600, 5, 1).unwrap();
    w.file("init", 0o755, &fs::read(init).unwrap()).unwrap();
    let mut list = String::from("# modules reported by buildsys::stage_root\n");
    for module in &staged.initramfs_modules {
        let inside = format!("lib/modules/{}/{module}", staged.kernel_version);
        w.file(&inside, 0o644, &fs::read(modules_dir.join(module)).unwrap())
            .unwrap();
        list.push_str(module);
        list.push('\n');
    }
    w.file(
        constants::MODULES_ORDER_IN_INITRAMFS,
        0o644,
        list.as_bytes(),
    )
    .unwrap();
    fs::write(path, w.finish().unwrap()).unwrap();
}

fn erofs(image: &Path, tree: &Path) {
    let _ = fs::remove_file(image);
    run(Command::new("mkfs.erofs")
        .args([
            "--quiet",
            "-zlz4hc",
            "-T0",
            "--all-root",
            "-U",
            "ba11a570-0000-4000-8000-0000000000d1",
        ])
        .arg(image)
        .arg(tree));
}

fn verity(data: &Path, hash: &Path) -> String {
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

fn gpt_disk(path: &Path, parts: &[(&str, &Path)]) {
    let mut offsets = Vec::new();
    let mut next = MIB;
    let mut sgdisk = Command::new("sgdisk");
    sgdisk.arg("--clear");
    for (i, (name, image)) in parts.iter().enumerate() {
        let size = fs::metadata(image).unwrap().len().div_ceil(MIB) * MIB;
        let n = i + 1;
        sgdisk.arg(format!(
            "--new={n}:{}:{}",
            next / 512,
            (next + size) / 512 - 1
        ));
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
        std::io::copy(&mut File::open(image).unwrap(), &mut disk).unwrap();
    }
}

/// A staged, imaged and booted variant.
struct Booted {
    vm: Vm,
    staged: buildsys::StagedRoot,
    out: PathBuf,
    bin_dir: PathBuf,
    api_socket: PathBuf,
    root_image_bytes: u64,
    to_init: Duration,
    to_systemd: Duration,
    built: Duration,
    stage_time: Duration,
    image_time: Duration,
}

/// Stages `name`, makes the verity-protected erofs root and the GPT disk, builds the initramfs
/// and starts the VM; returns once systemd runs.
fn boot(name: &str) -> Booted {
    let started = Instant::now();
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.erofs", "erofs-utils"),
        ("veritysetup", "cryptsetup-bin"),
        ("sgdisk", "gdisk"),
        ("mkfs.ext4", "e2fsprogs"),
        ("depmod", "kmod"),
    ] {
        need(tool, package);
    }
    let root = workspace();
    let build = build_dir();
    fs::create_dir_all(&build).unwrap();

    let variant = buildsys::load_variant(&root, name).unwrap();
    let bin_dir = build_binaries(&variant.cargo_binaries());
    let init = build_early_init();
    let built = started.elapsed();

    let stage_started = Instant::now();
    let out = build.join(name);
    let staged = buildsys::stage_root(
        &root,
        &variant,
        &root.join(buildsys::CACHE_DIR),
        &bin_dir,
        "0.1.0",
        "test",
        &out,
    )
    .unwrap();
    let stage_time = stage_started.elapsed();

    let image_started = Instant::now();
    let rootimg = out.join("root.erofs");
    erofs(&rootimg, &staged.root_dir);
    let root_image_bytes = fs::metadata(&rootimg).unwrap().len();
    assert_eq!(
        root_image_bytes % 4096,
        0,
        "erofs image is not block aligned"
    );
    let hash = out.join("root.hash");
    let root_hash = verity(&rootimg, &hash);
    let data = out.join("data.ext4");
    let _ = fs::remove_file(&data);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "DATA"])
        .arg(&data)
        .arg(format!("{}M", variant.layout.data)));
    let disk = out.join("disk.img");
    gpt_disk(
        &disk,
        &[("ROOT-A", &rootimg), ("HASH-A", &hash), ("DATA", &data)],
    );
    let initrd = out.join("initramfs.cpio");
    initramfs(&initrd, &init, &staged);
    let image_time = image_started.elapsed();

    // The verity root as the image builder writes it for set A, and power off on failure.
    let mut params = BootParams::new(imagebuilder::grub::verity_root(
        "A",
        root_hash,
        SALT.to_string(),
        root_image_bytes / 4096,
    ));
    params.on_failure = FailureAction::PowerOff;
    let mut append = staged.cmdline.join(" ");
    append.push_str(&format!(" panic=-1 {params}"));
    let api_socket = out.join("api.sock");
    let _ = fs::remove_file(&api_socket);
    let config = VmConfig::direct(&staged.kernel, Some(initrd.clone()), append)
        .name(format!("buildsys-{name}"))
        .memory_mib(1024)
        .drive(Drive::raw(&disk).snapshot())
        .api_socket(&api_socket)
        .log_dir(build.join("logs"));
    let mut vm = Vm::start(config).expect("start QEMU");
    let wait = Duration::from_secs(240);
    // early-init prints this even with `quiet` (the node variant), unlike the kernel.
    let to_init = vm.wait_for_console("ballast-init: starting", wait).unwrap();
    // systemd's status banner (its log line is hidden by `quiet`).
    let to_systemd = vm.wait_for_console("Welcome to ", wait).unwrap();
    Booted {
        vm,
        staged,
        out,
        bin_dir,
        api_socket,
        root_image_bytes,
        to_init,
        to_systemd,
        built,
        stage_time,
        image_time,
    }
}

/// Waits until the console log contains `pattern` anywhere (status lines come in any order).
fn wait_anywhere(vm: &Vm, pattern: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if vm.console_log().contains(pattern) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks the console for the lines every boot must show and for failures.
fn check_console(log: &str, log_path: &Path) {
    for expected in [
        // Status lines carry color codes and get shortened to the console width, so look for
        // what the units themselves print.
        "ballast-init: loaded",
        "storewolf[",
        "serving the API on /run/api.sock",
        // The end of mark-boot-reached.service's (shortened) "Finished" line.
        "st boot reached configured.target.",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} missing; console log {}",
            log_path.display()
        );
    }
    for unwanted in [
        "FAILED",
        "Failed to start",
        "Failed to find module",
        "ordering cycle",
        "Timed out",
    ] {
        assert!(
            !log.contains(unwanted),
            "{unwanted:?} on the console; console log {}",
            log_path.display()
        );
    }
}

#[test]
#[ignore = "stages and boots the dev variant under TCG: about 30 s warm, minutes on the first run"]
fn dev_variant_boots_to_a_working_api() {
    let started = Instant::now();
    let mut booted = boot("dev");
    let to_ready = booted
        .vm
        .wait_for_console(READY, Duration::from_secs(240))
        .unwrap();
    wait_anywhere(
        &booted.vm,
        "st boot reached configured.target.",
        Duration::from_secs(60),
    );

    // The host end of the API bridge, as a separate process, and apiclient through it.
    let bridge_socket = booted.out.join("bridge.sock");
    let _ = fs::remove_file(&bridge_socket);
    let mut bridge = Command::new(booted.bin_dir.join("apibridge"))
        .args(["host", "--qemu-socket"])
        .arg(&booted.api_socket)
        .arg("--listen")
        .arg(&bridge_socket)
        .spawn()
        .expect("start the host end of apibridge");
    let mut os = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if bridge_socket.exists() {
            let output = Command::new(booted.bin_dir.join("apiclient"))
                .arg("--socket-path")
                .arg(&bridge_socket)
                .args(["get", "os"])
                .output()
                .unwrap();
            if output.status.success() {
                os = String::from_utf8_lossy(&output.stdout).into_owned();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = bridge.kill();
    let _ = bridge.wait();

    let log = booted.vm.console_log();
    let log_path = booted.vm.log_path().to_path_buf();
    drop(booted.vm);
    check_console(&log, &log_path);
    assert!(
        log.contains("\"variant_id\":\"dev\""),
        "ballast-ready.service did not print GET /os; console log {}",
        log_path.display()
    );
    assert!(
        os.contains("\"build_id\": \"test\""),
        "GET /os through the API bridge failed or was wrong ({os:?}); console log {}",
        log_path.display()
    );

    let staged = &booted.staged;
    println!(
        "dev-boot: root tree {} files, {:.1} MiB; erofs (lz4hc) {:.1} MiB; kernel {}",
        staged.files,
        staged.bytes as f64 / MIB as f64,
        booted.root_image_bytes as f64 / MIB as f64,
        staged.kernel_version
    );
    println!(
        "dev-boot: initramfs modules: {}",
        staged.initramfs_modules.join(" ")
    );
    println!(
        "dev-boot: QEMU start -> early-init: {:.2} s, -> systemd: {:.2} s, -> {READY}: {:.2} s \
         (systemd -> ready {:.2} s)",
        booted.to_init.as_secs_f64(),
        booted.to_systemd.as_secs_f64(),
        to_ready.as_secs_f64(),
        (to_ready - booted.to_systemd).as_secs_f64(),
    );
    println!(
        "dev-boot: cargo builds {:.1} s, stage {:.1} s, images {:.1} s, total {:.1} s",
        booted.built.as_secs_f64(),
        booted.stage_time.as_secs_f64(),
        booted.image_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "dev-boot: GET /os over the bridge: {}",
        os.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}

#[test]
#[ignore = "stages and boots the node variant under TCG: about 30 s warm, minutes on the first run"]
fn node_variant_boots_without_a_shell() {
    let started = Instant::now();
    let booted = boot("node");
    let reached = wait_anywhere(
        &booted.vm,
        "st boot reached configured.target.",
        Duration::from_secs(240),
    );
    let to_reached = booted.vm.elapsed();
    let log = booted.vm.console_log();
    let log_path = booted.vm.log_path().to_path_buf();
    drop(booted.vm);
    assert!(
        reached,
        "no boot-reached line; console log {}",
        log_path.display()
    );
    check_console(&log, &log_path);
    assert!(
        !log.contains("apibridge") && !log.contains("console-shell"),
        "node runs development units; console log {}",
        log_path.display()
    );
    println!(
        "node-boot: root tree {} files, {:.1} MiB; erofs (lz4hc) {:.1} MiB",
        booted.staged.files,
        booted.staged.bytes as f64 / MIB as f64,
        booted.root_image_bytes as f64 / MIB as f64,
    );
    println!(
        "node-boot: QEMU start -> early-init: {:.2} s, -> systemd: {:.2} s, -> boot reached: \
         about {:.1} s; total {:.1} s",
        booted.to_init.as_secs_f64(),
        booted.to_systemd.as_secs_f64(),
        to_reached.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
