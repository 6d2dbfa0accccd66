//! `cargo xtask bench boot|verity|image`: figures printed as ratios against a reference run in
//! the same invocation.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use xtask::image::{self, BuildOptions, Built};
use xtask::vm::{BootOptions, Node};

fn dev_image() -> Result<Built> {
    match image::existing(image::DEFAULT_VARIANT, &image::default_version()) {
        Some(built) => Ok(built),
        None => image::build(&BuildOptions::variant(image::DEFAULT_VARIANT)),
    }
}

/// A bare kernel with a trivial initramfs (just a static /init): the reference for boot time.
/// The kernel timestamp (`[   12.345678] ...`) of the first console or dmesg line containing
/// `pattern`: time since the kernel started, in the guest's own clock.
fn kernel_timestamp(log: &str, pattern: &str) -> Option<Duration> {
    let line = log.lines().find(|l| l.contains(pattern))?;
    let open = line.find('[')?;
    let close = line[open..].find(']')? + open;
    let secs: f64 = line[open + 1..close].trim().parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

/// Wall time from QEMU's start and guest kernel time to the bare kernel running /init.
fn bare_kernel_boot(built: &Built, memory_mib: u32) -> Result<(Duration, Duration)> {
    let dir = xtask::host::root().join("build/run/bench-bare");
    std::fs::create_dir_all(&dir)?;
    let initrd = dir.join("initrd.cpio");
    let init = std::fs::read(xtask::image::build_init()?)?;
    let mut cpio = newc::CpioWriter::new(std::fs::File::create(&initrd)?);
    cpio.dir("dev", 0o755)?;
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.file("init", 0o755, &init)?;
    cpio.finish()?;
    let kernel = built.out_dir.join("stage/vmlinuz");
    let config = vmtest::VmConfig::direct(&kernel, Some(initrd), "console=ttyS0 panic=-1")
        .name("bench-bare")
        .memory_mib(memory_mib)
        .log_dir(&dir);
    let mut vm = vmtest::Vm::start(config)?;
    let marker = "Run /init as init process";
    let t = vm.wait_for_console(marker, Duration::from_secs(120))?;
    vm.kill()?;
    let guest = kernel_timestamp(&vm.console_log(), marker)
        .context("the bare kernel's console has no timestamp on its /init line")?;
    Ok((t, guest))
}

pub fn boot(rounds: usize) -> Result<()> {
    xtask::host::ensure_for("bench boot")?;
    let built = dev_image()?;
    let memory = BootOptions::new("bench").memory_mib;
    let (mut bare, mut full, mut bare_guest, mut full_guest) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (b, bg) = bare_kernel_boot(&built, memory)?;
        let mut node = Node::boot(&built, &BootOptions::new("bench-boot"))?;
        let f = node.wait_for_api(Duration::from_secs(300))?;
        // The API server notes its readiness in the kernel log; its timestamp is guest time
        // since the kernel started, without QEMU's start, the firmware and GRUB.
        let (dmesg, _) = node.vm.run_shell(
            &format!(
                "dmesg | grep -E 'Run /init|switching root|systemd\\[1\\]: systemd [0-9]|{}'",
                apiserver_ready_marker()
            ),
            Duration::from_secs(120),
        )?;
        let (journal, _) = node.vm.run_shell(
            "journalctl -b -o short-monotonic --no-pager | grep -E 'Start.* (storewolf|apiserver)'",
            Duration::from_secs(120),
        )?;
        println!("round {round}: guest timeline (kernel clock):");
        for line in dmesg.lines().chain(journal.lines()) {
            println!("    {}", line.chars().take(110).collect::<String>());
        }
        let fg = kernel_timestamp(&dmesg, apiserver_ready_marker())
            .with_context(|| format!("no readiness line in the guest's kernel log: {dmesg}"))?;
        drop(node);
        println!(
            "round {round}: bare kernel to init {:.2} s wall, {:.2} s kernel clock; dev image to API answering {:.2} s wall (firmware, GRUB, kernel, init, systemd, bridge), {:.2} s kernel clock",
            b.as_secs_f64(),
            bg.as_secs_f64(),
            f.as_secs_f64(),
            fg.as_secs_f64()
        );
        bare.push(b);
        full.push(f);
        bare_guest.push(bg);
        full_guest.push(fg);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (b, f) = (median(&mut bare), median(&mut full));
    let (bg, fg) = (median(&mut bare_guest), median(&mut full_guest));
    println!(
        "boot to API ready, kernel clock (from the kernel's start): {:.2} s = {:.2}x a bare kernel + trivial initramfs reaching init ({:.2} s); median of {rounds}, QEMU TCG, same memory and CPUs",
        fg.as_secs_f64(),
        fg.as_secs_f64() / bg.as_secs_f64(),
        bg.as_secs_f64()
    );
    println!(
        "boot to API ready, wall clock (from QEMU's start, incl. UEFI firmware and GRUB, which the bare kernel skips): {:.2} s = {:.2}x ({:.2} s)",
        f.as_secs_f64(),
        f.as_secs_f64() / b.as_secs_f64(),
        b.as_secs_f64()
    );
    Ok(())
}

fn apiserver_ready_marker() -> &'static str {
    "apiserver: API ready on"
}

pub fn verity(size_mib: u64, rounds: usize) -> Result<()> {
    xtask::host::ensure_for("bench verity")?;
    let dir =
        tempfile::tempdir_in(xtask::host::root().join("build")).or_else(|_| tempfile::tempdir())?;
    let data = dir.path().join("data");
    {
        use rand::RngCore;
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&data)?);
        let mut rng = rand::rng();
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..size_mib {
            rng.fill_bytes(&mut chunk);
            f.write_all(&chunk)?;
        }
    }
    let salt = vec![0x5a; 32];
    let salt_hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let ours_hash = dir.path().join("ours.hash");
    let ref_hash = dir.path().join("ref.hash");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut root = String::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let out = Command::new("veritysetup")
            .args(["format", "--no-superblock", "--hash=sha256"])
            .args(["--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--salt={salt_hex}"))
            .arg(&data)
            .arg(&ref_hash)
            .output()
            .context("cannot run veritysetup")?;
        theirs.push(start.elapsed());
        anyhow::ensure!(out.status.success(), "veritysetup format failed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let reference_root = text
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();

        let start = Instant::now();
        let output =
            verity::format_file(&data, &ours_hash, &verity::VerityParams::new(salt.clone()))?;
        ours.push(start.elapsed());
        root = verity::to_hex(&output.root_hash);
        anyhow::ensure!(
            root == reference_root,
            "root hash differs from veritysetup's: {root} vs {reference_root}"
        );
        anyhow::ensure!(
            std::fs::read(&ours_hash)? == std::fs::read(&ref_hash)?,
            "hash tree differs from veritysetup's"
        );
    }
    ours.sort();
    theirs.sort();
    println!(
        "verity hash tree of {size_mib} MiB: ours {:.3} s, veritysetup format {:.3} s: {:.2}x (best of {rounds}, identical trees, root {root})",
        ours[0].as_secs_f64(),
        theirs[0].as_secs_f64(),
        ours[0].as_secs_f64() / theirs[0].as_secs_f64()
    );
    Ok(())
}

fn dir_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub fn image() -> Result<()> {
    let root = xtask::host::root();
    let variant = image::DEFAULT_VARIANT;
    let version = image::default_version();
    let out = image::variant_dir(variant, &version);
    let _ = std::fs::remove_dir_all(&out);
    xtask::host::ensure_for("bench image")?;
    let start = Instant::now();
    let built = image::build(&BuildOptions::variant(variant))?;
    let clean = start.elapsed();

    // Change one default setting (the dev motd) and build again; binaries and Debian
    // packages come from the caches, as they would for a developer.
    let defaults = root.join("variants").join(variant).join("defaults.toml");
    let original = std::fs::read_to_string(&defaults)?;
    let edited = original.replacen("motd = \"", "motd = \"(bench) ", 1);
    anyhow::ensure!(
        edited != original,
        "{} has no motd to change",
        defaults.display()
    );
    std::fs::write(&defaults, &edited)?;
    let start = Instant::now();
    let rebuilt = image::build(&BuildOptions::variant(variant));
    let incremental = start.elapsed();
    std::fs::write(&defaults, &original)?;
    let rebuilt = rebuilt?;
    anyhow::ensure!(
        rebuilt.manifest.root_hash != built.manifest.root_hash,
        "changing a default did not change the root image"
    );

    let erofs = dir_size(&built.out_dir.join("root.erofs"));
    let staged = walk_size(&built.root_dir);
    println!(
        "root image: {:.1} MiB erofs (lz4hc) for {:.1} MiB of files ({:.2}x), hash tree {:.2} MiB",
        erofs as f64 / 1048576.0,
        staged as f64 / 1048576.0,
        erofs as f64 / staged.max(1) as f64,
        built.manifest.hash_size as f64 / 1048576.0
    );
    println!(
        "image build: clean {:.0} s; after changing one default {:.0} s ({:.2}x the clean build)",
        clean.as_secs_f64(),
        incremental.as_secs_f64(),
        incremental.as_secs_f64() / clean.as_secs_f64()
    );
    Ok(())
}

fn walk_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(m) = e.path().symlink_metadata() {
                if m.is_dir() {
                    total += walk_size(&e.path());
                } else if m.is_file() {
                    total += m.len();
                }
            }
        }
    }
    total
}
