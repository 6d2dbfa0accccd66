//! # Background
//!
//! The build host runs programs that are not part of this workspace: `mkfs.erofs`, `sgdisk`,
//! `qemu-img`, `qemu-system-x86_64`, `veritysetup`, `cpio`, ... A fresh Debian 12 machine has
//! few of them. This crate is the one place that says which Debian package provides each of
//! them ([`TABLE`]), so that `cargo xtask` can install what a command needs before its first
//! step, and a test (in xtask) can check that every program the build-host code starts is
//! listed here.
//!
//! It has no dependencies and does no I/O beyond looking at the file system, so every test of
//! the workspace can use [`require_tool`] as a dev-dependency.
//!
//! # Usage
//!
//! ```
//! // Which packages would a fresh host need for these programs?
//! let probe = hosttools::Probe::Root(std::path::PathBuf::from("/nonexistent"));
//! let packages = hosttools::missing_packages(&["sgdisk", "qemu-img"], &probe).unwrap();
//! assert_eq!(packages, ["gdisk", "qemu-utils"]);
//! ```
//!
//! In a test that compares with a host tool:
//!
//! ```no_run
//! if !hosttools::require_tool("sgdisk") {
//!     return; // skipped locally, with a message; under CI this panicked instead
//! }
//! ```
//!
//! # Current limitations
//!
//! - Debian 12 (bookworm) package names, x86_64 host only.
//! - A program is found by name in the usual bin and sbin directories (and `PATH` for
//!   [`Probe::Host`]); its version is not checked.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a host tool comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A Debian package (installed with apt-get).
    Debian(&'static str),
    /// The Rust toolchain that runs `cargo xtask` (rustup), always there.
    RustToolchain,
}

/// A program (by name, looked up in the bin directories) or a file (by absolute path) that
/// the build host needs, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tool {
    pub program: &'static str,
    pub source: Source,
}

const fn deb(program: &'static str, package: &'static str) -> Tool {
    Tool {
        program,
        source: Source::Debian(package),
    }
}

/// The OVMF firmware `vmtest` boots UEFI images with (it also accepts the `_4M` pair).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// A GRUB module that shows the x86_64 EFI modules are installed (grub-mkimage reads them).
pub const GRUB_EFI_MODULE: &str = "/usr/lib/grub/x86_64-efi/linux.mod";
/// Writes journal files from the journal export format; the tests of `GET /logs` make their
/// journals with it. Outside the bin directories, so named by path.
pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
/// Sends journal entries to a systemd-journal-remote receiver (the node's log shipping runs
/// the same program); the receiver's tests upload journal files with it. Same package as
/// [`JOURNAL_REMOTE`]; outside the bin directories, so named by path.
pub const JOURNAL_UPLOAD: &str = "/lib/systemd/systemd-journal-upload";
/// systemd's manager; the tests of `GET /units` run it as a user manager. Outside the bin
/// directories, so named by path.
pub const SYSTEMD: &str = "/lib/systemd/systemd";
/// The keyring the Debian archive's signed indexes are checked against.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Every external program or file that build-host code (tools/, os-image/, and the tests of
/// sources/) uses, with the package that provides it. Sorted by program.
///
/// grub-mkimage is in grub-common, but the build needs the x86_64 EFI modules too, and
/// grub-efi-amd64-bin brings both; so the table names it for both.
pub const TABLE: &[Tool] = &[
    deb("apt-cache", "apt"),
    deb("apt-get", "apt"),
    Tool {
        program: "cargo",
        source: Source::RustToolchain,
    },
    deb("containerd", "containerd"),
    deb("cp", "coreutils"),
    deb("cpio", "cpio"),
    deb("curl", "curl"),
    deb("debugfs", "e2fsprogs"),
    deb("depmod", "kmod"),
    deb("docker-registry", "docker-registry"),
    deb("dpkg", "dpkg"),
    deb("dpkg-deb", "dpkg"),
    deb("e2fsck", "e2fsprogs"),
    deb("fsck.erofs", "erofs-utils"),
    deb("git", "git"),
    deb("gpgv", "gpgv"),
    deb("grub-mkimage", "grub-efi-amd64-bin"),
    deb("journalctl", "systemd"),
    deb("mcopy", "mtools"),
    deb("mdir", "mtools"),
    deb("mkfs.erofs", "erofs-utils"),
    deb("mkfs.ext4", "e2fsprogs"),
    deb("mkfs.fat", "dosfstools"),
    deb("mkfs.vfat", "dosfstools"),
    deb("mmd", "mtools"),
    deb("mount", "mount"),
    deb("nft", "nftables"),
    deb("protoc", "protobuf-compiler"),
    deb("qemu-img", "qemu-utils"),
    deb("qemu-system-x86_64", "qemu-system-x86"),
    deb("runc", "runc"),
    deb("script", "bsdutils"),
    deb("sgdisk", "gdisk"),
    deb("sh", "dash"),
    deb("sha256sum", "coreutils"),
    deb("skopeo", "skopeo"),
    deb("sync", "coreutils"),
    deb("systemctl", "systemd"),
    deb("systemd-analyze", "systemd"),
    deb("tar", "tar"),
    deb("tee", "coreutils"),
    deb("unshare", "util-linux"),
    deb("veritysetup", "cryptsetup-bin"),
    deb("zcat", "gzip"),
    deb(DEBIAN_KEYRING, "debian-archive-keyring"),
    deb(GRUB_EFI_MODULE, "grub-efi-amd64-bin"),
    deb(JOURNAL_REMOTE, "systemd-journal-remote"),
    deb(JOURNAL_UPLOAD, "systemd-journal-remote"),
    deb(OVMF_CODE, "ovmf"),
    deb(SYSTEMD, "systemd"),
];

/// The table's entry for `program`.
pub fn lookup(program: &str) -> Option<&'static Tool> {
    TABLE.iter().find(|t| t.program == program)
}

/// The Debian package of `program`, if the table has it and it comes from Debian.
pub fn package_of(program: &str) -> Option<&'static str> {
    match lookup(program)?.source {
        Source::Debian(package) => Some(package),
        Source::RustToolchain => None,
    }
}

/// The directories a program is looked for in, besides `PATH` (the sbin directories are not
/// on an unprivileged user's `PATH`).
const BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Where to look for tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// This machine: `PATH`, then the bin and sbin directories.
    Host,
    /// A file system tree standing in for `/` (only its bin and sbin directories, no `PATH`).
    /// An empty directory is a host that has none of the tools: what a fresh machine needs.
    Root(PathBuf),
}

impl Probe {
    /// Whether `program` (a name, or an absolute path to a file) is there.
    pub fn has(&self, program: &str) -> bool {
        self.find(program).is_some()
    }

    /// Where `program` is, if it is there.
    pub fn find(&self, program: &str) -> Option<PathBuf> {
        let (root, path_var) = match self {
            Probe::Host => (Path::new("/"), std::env::var_os("PATH")),
            Probe::Root(root) => (root.as_path(), None),
        };
        if let Some(relative) = program.strip_prefix('/') {
            let file = root.join(relative);
            return file.is_file().then_some(file);
        }
        let from_path = path_var
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        from_path
            .into_iter()
            .chain(
                BIN_DIRS
                    .iter()
                    .map(|d| root.join(d.trim_start_matches('/'))),
            )
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    }
}

/// A program the table does not know: add it to [`TABLE`] with its Debian package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTool(pub String);

impl fmt::Display for UnknownTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not in hosttools::TABLE; add it there with the Debian package that provides it",
            self.0
        )
    }
}

impl std::error::Error for UnknownTool {}

/// The Debian packages to install so that every one of `programs` is there, as `probe` sees
/// the machine: sorted, without duplicates. Tools of the Rust toolchain are never missing.
pub fn missing_packages(
    programs: &[&str],
    probe: &Probe,
) -> Result<Vec<&'static str>, UnknownTool> {
    let mut packages = BTreeSet::new();
    for program in programs {
        let tool = lookup(program).ok_or_else(|| UnknownTool(program.to_string()))?;
        if let Source::Debian(package) = tool.source {
            if !probe.has(program) {
                packages.insert(package);
            }
        }
    }
    Ok(packages.into_iter().collect())
}

/// The command that installs `packages`.
pub fn apt_get_line(packages: &[&str]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`), where a missing
/// tool is a failure instead of a skipped check.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// For tests that compare with a host tool: `true` when `program` is installed. When it is
/// not, prints which package to install and returns `false` (the caller returns: the check is
/// skipped), or panics under CI, where a skipped comparison would hide a missing dependency.
///
/// Panics when `program` is not in [`TABLE`].
pub fn require_tool(program: &str) -> bool {
    require_tool_in(program, &Probe::Host, in_ci())
}

/// [`require_tool`] looking with `probe`, `ci` saying whether a missing tool is a failure.
pub fn require_tool_in(program: &str, probe: &Probe, ci: bool) -> bool {
    let package = match lookup(program) {
        Some(tool) => tool.source,
        None => panic!("{}", UnknownTool(program.to_string())),
    };
    if probe.has(program) {
        return true;
    }
    let install = match package {
        Source::Debian(package) => apt_get_line(&[package]),
        Source::RustToolchain => "rustup".to_string(),
    };
    if ci {
        panic!(
            "{program} is missing on this CI host, so this test cannot run; install it: {install}"
        );
    }
    eprintln!("NOTICE: {program} is missing, skipping this check (install it: {install})");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        let names: Vec<&str> = TABLE
            .iter()
            .filter(|t| !t.program.starts_with('/'))
            .map(|t| t.program)
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn an_empty_root_needs_every_package() {
        let empty = tempfile::tempdir().unwrap();
        let probe = Probe::Root(empty.path().to_path_buf());
        let all: Vec<&str> = TABLE.iter().map(|t| t.program).collect();
        let missing = missing_packages(&all, &probe).unwrap();
        let expected: BTreeSet<&str> = TABLE
            .iter()
            .filter_map(|t| match t.source {
                Source::Debian(p) => Some(p),
                Source::RustToolchain => None,
            })
            .collect();
        assert_eq!(missing, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_root_with_the_program_needs_nothing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/sbin")).unwrap();
        std::fs::write(root.path().join("usr/sbin/sgdisk"), "").unwrap();
        std::fs::create_dir_all(root.path().join("usr/share/OVMF")).unwrap();
        std::fs::write(root.path().join("usr/share/OVMF/OVMF_CODE.fd"), "").unwrap();
        let probe = Probe::Root(root.path().to_path_buf());
        assert!(missing_packages(&["sgdisk", OVMF_CODE], &probe)
            .unwrap()
            .is_empty());
        assert_eq!(
            missing_packages(&["sgdisk", "qemu-img", "mkfs.ext4", "debugfs"], &probe).unwrap(),
            ["e2fsprogs", "qemu-utils"]
        );
    }

    #[test]
    fn unknown_programs_are_refused() {
        let err = missing_packages(&["frobnicate"], &Probe::Host).unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
    }

    #[test]
    fn the_toolchain_is_never_missing() {
        let empty = tempfile::tempdir().unwrap();
        let probe = Probe::Root(empty.path().to_path_buf());
        assert!(missing_packages(&["cargo"], &probe).unwrap().is_empty());
    }

    #[test]
    fn a_missing_tool_is_skipped_locally() {
        let empty = tempfile::tempdir().unwrap();
        let probe = Probe::Root(empty.path().to_path_buf());
        assert!(!require_tool_in("sgdisk", &probe, false));
    }

    #[test]
    #[should_panic(expected = "apt-get install -y --no-install-recommends gdisk")]
    fn a_missing_tool_fails_under_ci() {
        let empty = tempfile::tempdir().unwrap();
        let probe = Probe::Root(empty.path().to_path_buf());
        require_tool_in("sgdisk", &probe, true);
    }

    #[test]
    fn a_present_tool_is_required_without_a_fuss() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("sbin")).unwrap();
        std::fs::write(root.path().join("sbin/sgdisk"), "").unwrap();
        let probe = Probe::Root(root.path().to_path_buf());
        assert!(require_tool_in("sgdisk", &probe, true));
    }

    #[test]
    #[should_panic(expected = "not in hosttools::TABLE")]
    fn requiring_an_unknown_tool_is_a_bug() {
        require_tool("frobnicate");
    }

    #[test]
    fn apt_line() {
        assert_eq!(
            apt_get_line(&["cpio", "gdisk"]),
            "apt-get install -y --no-install-recommends cpio gdisk"
        );
    }
}
