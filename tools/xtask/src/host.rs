//! What the build host needs: the workspace root, host commands, and the Debian packages each
//! `cargo xtask` command needs, installed before its first step when we are root (or named in
//! an exact apt-get line when we are not).
//!
//! Which package provides which program is `hosttools::TABLE`; this module says which programs
//! each step of a command runs ([`Step::tools`]) and which steps each command has
//! ([`COMMANDS`]). A test (tests/host_tools.rs) scans the build-host code for the programs it
//! starts and checks both lists against it.

use anyhow::{bail, Context, Result};
use hosttools::Probe;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The workspace root (tools/xtask/../..).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the xtask crate lives inside the workspace")
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set (relative to the workspace
/// root when relative), else `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// Runs a command in the workspace root, streaming its output; fails naming the command.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: running {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command in the workspace root with each line of its output (stdout and stderr)
/// written to stderr behind `[tag] `, so that commands running at once stay readable.
pub fn run_prefixed(tag: &str, program: &str, args: &[&str]) -> Result<std::process::ExitStatus> {
    let mut command = Command::new(program);
    command.args(args).current_dir(root());
    run_command_prefixed(tag, command)
}

/// Runs a prepared command with each line of its output written to stderr behind `[tag] `,
/// like [`run_prefixed`].
pub fn run_command_prefixed(tag: &str, mut command: Command) -> Result<std::process::ExitStatus> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    fn relay(tag: &str, from: impl Read) {
        for line in BufReader::new(from).split(b'\n').map_while(|l| l.ok()) {
            eprintln!("[{tag}] {}", String::from_utf8_lossy(&line));
        }
    }
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    std::thread::scope(|scope| {
        scope.spawn(|| relay(tag, stdout));
        scope.spawn(|| relay(tag, stderr));
    });
    child
        .wait()
        .with_context(|| format!("cannot wait for {program}"))
}

/// A part of a command that runs host programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Resolving packages/debian.lock against the signed archive indexes.
    Lock,
    /// Building an image: the Debian packages are fetched and checked (gpgv), modules indexed
    /// (depmod), filesystems made and the disk assembled (imagebuilder), qcow2/vmdk converted.
    Build,
    /// Booting an image in QEMU on a qcow2 overlay, with UEFI firmware.
    Boot,
    /// The workspace's tests, which compare our code with the reference tools.
    Tests,
    /// `bench verity`: our hash tree against veritysetup.
    BenchVerity,
    /// `bench update`: updog against curl | tee | sha256sum, on a FAT test disk.
    BenchUpdate,
    /// Container images: the Debian packages are fetched and checked against the lock.
    Images,
    /// A registry on loopback (Debian's docker-registry) and pushing image layouts to it.
    Registry,
}

impl Step {
    /// The programs (and files, by absolute path) this step runs or reads.
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Step::Lock => &["gpgv", hosttools::DEBIAN_KEYRING],
            Step::Build => &[
                "gpgv",
                hosttools::DEBIAN_KEYRING,
                "depmod",
                "mkfs.erofs",
                "mkfs.ext4",
                "debugfs",
                "mkfs.fat",
                "mmd",
                "mcopy",
                "grub-mkimage",
                hosttools::GRUB_EFI_MODULE,
                "qemu-img",
                "git",
                "cp",
                // containerd-client's build script compiles containerd's API with protoc
                // (host-ctr, a binary of the image, and the workspace's tests use it).
                "protoc",
            ],
            Step::Boot => &["qemu-img", "qemu-system-x86_64", hosttools::OVMF_CODE],
            Step::Tests => &[
                "veritysetup",
                "sgdisk",
                "cpio",
                "zcat",
                "sh",
                "fsck.erofs",
                "e2fsck",
                "mdir",
                "mkfs.vfat",
                "dpkg",
                "dpkg-deb",
                "apt-cache",
                "apt-get",
                // GET /logs runs journalctl; its tests write journals with journal-remote.
                "journalctl",
                hosttools::JOURNAL_REMOTE,
                // GET /units tests run a systemd user manager in a mount namespace; the support
                // bundle's tests read the archive with tar and its headers with curl.
                "unshare",
                "tar",
                "curl",
                // Log shipping tests: the uploader against the receiver, the rendered
                // configuration bound over /etc in a private mount namespace.
                hosttools::JOURNAL_UPLOAD,
                "mount",
                // host-ctr's tests pull into and run containers on a real containerd;
                // apiserver's tests/exec.rs runs `apiclient exec` against one, on a terminal
                // that script(1) makes.
                "containerd",
                "runc",
                "script",
                // The firewall's ruleset is checked and loaded by the real nft (in a network
                // namespace of its own), and the CIS checks read what nft lists.
                "nft",
            ],
            Step::BenchVerity => &["veritysetup"],
            Step::Images => &["gpgv", hosttools::DEBIAN_KEYRING],
            Step::Registry => &["docker-registry", "skopeo"],
            Step::BenchUpdate => &[
                "curl",
                "sh",
                "tee",
                "sha256sum",
                "sync",
                "mkfs.vfat",
                "mcopy",
            ],
        }
    }
}

/// Each `cargo xtask` command and the steps it may go through. A command ensures the tools of
/// all its steps before its first one, so nothing fails late after a long build.
pub const COMMANDS: &[(&str, &[Step])] = &[
    ("build", &[Step::Build]),
    ("run", &[Step::Build, Step::Boot]),
    (
        "test",
        &[Step::Build, Step::Boot, Step::Tests, Step::Registry],
    ),
    ("lock", &[Step::Lock]),
    ("images", &[Step::Images, Step::Registry]),
    ("registry", &[Step::Registry]),
    ("repo", &[]),
    ("bench api", &[]),
    ("bench boot", &[Step::Build, Step::Boot]),
    ("bench verity", &[Step::BenchVerity]),
    ("bench image", &[Step::Build]),
    ("bench settings", &[Step::Boot]),
    ("bench update", &[Step::BenchUpdate]),
    ("bench updater", &[Step::Boot]),
    ("bench ops", &[Step::Boot]),
];

/// The steps of `command` (a name in [`COMMANDS`]).
pub fn steps_of(command: &str) -> &'static [Step] {
    COMMANDS
        .iter()
        .find(|(name, _)| *name == command)
        .map(|(_, steps)| *steps)
        .unwrap_or_else(|| panic!("`{command}` is not in host::COMMANDS"))
}

/// Every tool `steps` need, sorted and without duplicates.
pub fn tools_of(steps: &[Step]) -> Vec<&'static str> {
    steps
        .iter()
        .flat_map(|s| s.tools().iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The packages to install for `steps`, as `probe` sees the host.
pub fn packages_to_install(steps: &[Step], probe: &Probe) -> Result<Vec<&'static str>> {
    Ok(hosttools::missing_packages(&tools_of(steps), probe)?)
}

/// Set to a directory (e.g. an empty one) to check for host tools there instead of on this
/// machine: with an empty directory every command installs its full package list, as on a
/// fresh host. CI uses this to prove that `cargo xtask run` ensures all it uses.
pub const PROBE_ROOT_VAR: &str = "XTASK_HOST_PROBE_ROOT";

/// Where [`ensure`] looks for tools: the host, or [`PROBE_ROOT_VAR`]'s directory.
pub fn probe() -> Probe {
    match std::env::var_os(PROBE_ROOT_VAR) {
        Some(dir) if !dir.is_empty() => Probe::Root(PathBuf::from(dir)),
        _ => Probe::Host,
    }
}

/// Packages this process already installed or found (with a probe root, the probe would
/// report them missing again on every call).
static ENSURED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Makes sure everything `command` (a name in [`COMMANDS`]) runs is installed.
pub fn ensure_for(command: &str) -> Result<()> {
    ensure(steps_of(command))
}

/// Makes sure every tool of `steps` is installed: installs the missing packages with apt-get
/// when running as root, otherwise fails with the exact command to run.
pub fn ensure(steps: &[Step]) -> Result<()> {
    let mut ensured = ENSURED.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = packages_to_install(steps, &probe())?
        .into_iter()
        .filter(|p| !ensured.contains(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = hosttools::apt_get_line(&missing);
    if !nix::unistd::geteuid().is_root() {
        bail!("missing host packages; run as root: {line}");
    }
    eprintln!(
        "xtask: installing host packages: {} (apt-get update first)",
        missing.join(" ")
    );
    let update = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !matches!(update, Ok(s) if s.success()) {
        eprintln!("xtask: apt-get update failed; trying the install anyway");
    }
    if let Err(e) = apt_install(&missing) {
        // With a probe root the list holds packages this machine already has, and one of them
        // may block the rest (a backports qemu-utils breaks bookworm's qemu-system-x86): try
        // again with only what this machine lacks, letting apt replace what is in the way.
        let absent = packages_to_install(steps, &Probe::Host)?;
        if absent.is_empty() || absent == missing {
            return Err(e);
        }
        eprintln!(
            "xtask: {e:#}; installing only what this machine lacks: {}",
            absent.join(" ")
        );
        apt_install(&absent)?;
    }
    // apt may remove an installed package to make way for another: a machine whose qemu-utils
    // came from bookworm-backports loses it when qemu-system-x86 comes from bookworm, and the
    // boot then fails on qemu-img. So check this machine again and install what went missing.
    let gone = packages_to_install(steps, &Probe::Host)?;
    if !gone.is_empty() {
        eprintln!(
            "xtask: apt-get removed packages this command needs; installing them again: {}",
            gone.join(" ")
        );
        apt_install(&gone)?;
        let still = packages_to_install(steps, &Probe::Host)?;
        if !still.is_empty() {
            bail!(
                "after installing, these packages are still missing: {}; install them and retry: {}",
                still.join(" "),
                hosttools::apt_get_line(&still)
            );
        }
    }
    ensured.extend(missing);
    Ok(())
}

/// `apt-get install` of `packages`, without upgrading any that is there already (with a probe
/// root every package looks missing; the host's own versions must not change because of that).
fn apt_install(packages: &[&'static str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--no-upgrade",
        ])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}); install these packages and retry",
            hosttools::apt_get_line(packages)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_root() -> (tempfile::TempDir, Probe) {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::Root(dir.path().to_path_buf());
        (dir, probe)
    }

    /// The defect of issue 13: `run` booted with qemu-img missing after a long build.
    #[test]
    fn run_on_a_fresh_host_installs_what_booting_needs() {
        let (_dir, probe) = empty_root();
        let packages = packages_to_install(steps_of("run"), &probe).unwrap();
        for needed in [
            "qemu-utils",
            "qemu-system-x86",
            "ovmf",
            "erofs-utils",
            "grub-efi-amd64-bin",
            "mtools",
        ] {
            assert!(packages.contains(&needed), "{needed} not in {packages:?}");
        }
        // Nothing of `run` compares with sgdisk or reads archives with cpio.
        assert!(!packages.contains(&"gdisk"), "{packages:?}");
        assert!(!packages.contains(&"cpio"), "{packages:?}");
    }

    /// The other defect of issue 13: the UEFI fallback test ran cpio, which nothing installed.
    #[test]
    fn test_on_a_fresh_host_installs_all_the_reference_tools() {
        let (_dir, probe) = empty_root();
        let packages = packages_to_install(steps_of("test"), &probe).unwrap();
        for needed in [
            "qemu-utils",
            "qemu-system-x86",
            "ovmf",
            "erofs-utils",
            "gdisk",
            "grub-efi-amd64-bin",
            "mtools",
            "cpio",
            "cryptsetup-bin",
        ] {
            assert!(packages.contains(&needed), "{needed} not in {packages:?}");
        }
    }

    #[test]
    fn every_step_names_only_known_tools() {
        for (command, steps) in COMMANDS {
            for tool in tools_of(steps) {
                assert!(
                    hosttools::lookup(tool).is_some(),
                    "{command}: {tool} is not in hosttools::TABLE"
                );
            }
        }
    }

    #[test]
    fn a_host_with_everything_installs_nothing() {
        let root = tempfile::tempdir().unwrap();
        for tool in tools_of(steps_of("test")) {
            let path = match tool.strip_prefix('/') {
                Some(file) => root.path().join(file),
                None => root.path().join("usr/bin").join(tool),
            };
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let probe = Probe::Root(root.path().to_path_buf());
        assert!(packages_to_install(steps_of("test"), &probe)
            .unwrap()
            .is_empty());
    }
}
