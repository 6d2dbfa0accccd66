//! Staging a variant's root tree: everything the disk builder needs to make the erofs root
//! image, plus the kernel and the initramfs module list beside it.

use crate::defaults::{
    merge_defaults, package_defaults_files, shared_defaults_files, DEFAULTS_IMAGE_PATH,
};
use crate::elf;
use crate::error::{
    BadGlobSnafu, BadVersionSnafu, FileConflictSnafu, ForbiddenPathSnafu, IoSnafu,
    KeepMatchedNothingSnafu, KernelSnafu, MissingBinarySnafu, Result,
};
use crate::kmod;
use crate::lock::{load_lock, lock_subset};
use crate::systemd;
use crate::tree::{self, Kind};
use crate::variant::Variant;
use globset::{GlobBuilder, GlobMatcher};
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::{debug, info};

/// Top-level links of the merged-/usr layout, in the image and in the scratch tree.
pub const MERGED_USR_LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// Empty directories of the root image: mount points early-init and systemd use, and `/root`
/// (the dev shell's home). `/etc` stays empty: early-init mounts a tmpfs there and fills it
/// from [`FACTORY_ETC`].
pub const MOUNT_POINTS: &[&str] = &[
    "dev", "etc", "local", "opt", "proc", "root", "run", "sys", "tmp", "var",
];

/// Where the initial contents of `/etc` live in the image.
pub const FACTORY_ETC: &str = constants::FACTORY_ETC_IN_IMAGE;

/// The list of files the initramfs reads ahead while systemd starts (see early-init).
pub const READAHEAD_PATH: &str = constants::READAHEAD_LIST_IN_IMAGE;

/// Programs on the way to a working API, in the order they start; the read-ahead list holds
/// each with the libraries it loads.
pub const READAHEAD_PROGRAMS: &[&str] = &[
    "usr/lib/systemd/systemd",
    "usr/lib/systemd/systemd-journald",
    "usr/bin/migrator",
    "usr/bin/storewolf",
    "usr/bin/apiserver",
];

/// Where os-release goes in the image (and `/etc/os-release` links to it).
pub const OS_RELEASE_PATH: &str = constants::OS_RELEASE_IN_IMAGE;

/// Paths that never belong in an image: documentation, translations, package manager state.
pub const FORBIDDEN_PREFIXES: &[&str] = &[
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "var/lib/dpkg/",
    "usr/bin/dpkg",
    "usr/bin/apt",
];

/// What [`stage_root`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRoot {
    /// The staged root tree (`out/rootfs`): becomes the erofs root image.
    pub root_dir: PathBuf,
    /// The kernel image (`out/vmlinuz`), outside the root tree, for BOOT-A/B.
    pub kernel: PathBuf,
    /// Kernel release, e.g. `6.1.0-28-cloud-amd64` (modules are under
    /// `/usr/lib/modules/<kernel_version>` in the root tree).
    pub kernel_version: String,
    /// Modules the initramfs loads, dependencies first, relative to
    /// `root_dir/usr/lib/modules/<kernel_version>` (write them to the initramfs at the same
    /// relative place below `lib/modules/<kernel_version>/` and list them, in this order, in
    /// its `/etc/modules.order`).
    pub initramfs_modules: Vec<String>,
    /// The variant's kernel parameters (the disk builder adds the `ballast.*` ones).
    pub cmdline: Vec<String>,
    /// Number of regular files in the root tree.
    pub files: usize,
    /// Total size of the regular files in the root tree, in bytes.
    pub bytes: u64,
}

/// Checks a version or build id for os-release and the datastore: letters, digits and
/// `._+-`, starting with a letter or digit.
fn check_id(value: &str, what: &str) -> Result<()> {
    ensure!(
        !value.is_empty()
            && value.len() <= 64
            && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)),
        BadVersionSnafu {
            value,
            message: format!(
                "a {what} must be 1-64 letters, digits or ._+- and start with a letter or digit (the datastore uses the version in directory names)"
            ),
        }
    );
    Ok(())
}

/// The os-release text of an image.
pub fn os_release(variant: &str, version: &str, build_id: &str) -> String {
    let version_with_variant = format!("{version} ({variant})");
    let pretty_name = format!("Ballast {version_with_variant}");
    os_release::render(&[
        (os_release::NAME, "Ballast"),
        (os_release::ID, "ballast"),
        (os_release::VERSION_ID, version),
        (os_release::VERSION, &version_with_variant),
        (os_release::PRETTY_NAME, &pretty_name),
        (os_release::VARIANT_ID, variant),
        (os_release::BUILD_ID, build_id),
        (os_release::ARCH, imagebuilder::ARCH),
    ])
}

/// Stages the root tree of `variant` into `out/rootfs` (see the crate documentation for the
/// steps). `root` is the repository, `cache_dir` the Debian cache ([`crate::CACHE_DIR`] below the
/// repository), `cargo_bin_dir` the directory holding the variant's release binaries
/// (`target/release`), `version` and `build_id` go into os-release. `out` is emptied first.
pub fn stage_root(
    root: &Path,
    variant: &Variant,
    cache_dir: &Path,
    cargo_bin_dir: &Path,
    version: &str,
    build_id: &str,
    out: &Path,
) -> Result<StagedRoot> {
    let started = Instant::now();
    check_id(version, "version")?;
    check_id(build_id, "build id")?;
    info!(
        "staging variant {} ({version}, build {build_id}) into {}",
        variant.name,
        out.display()
    );

    // 1. The Debian packages of this variant, fetched and checked against the lock.
    let rootfs = out.join("rootfs");
    tree::remove(&rootfs)?;
    tree::remove(&out.join("vmlinuz"))?;
    let scratch = unpack_locked(
        root,
        &variant.debian_requests(),
        cache_dir,
        out,
        "this variant",
    )?;
    info!("unpacked the Debian packages ({:.1?})", started.elapsed());

    // 2. Kernel and modules.
    let kernel_version = find_kernel_version(&scratch)?;
    let kernel_src = scratch
        .join("boot")
        .join(format!("vmlinuz-{kernel_version}"));
    ensure!(
        kernel_src.is_file(),
        KernelSnafu {
            message: format!(
                "the kernel package has modules for {kernel_version} but no /boot/vmlinuz-{kernel_version}"
            ),
        }
    );
    kmod::depmod(&scratch, &kernel_version)?;
    let modules_rel = Path::new("usr/lib/modules").join(&kernel_version);
    let index = kmod::load_index(&scratch.join(&modules_rel), &kernel_version)?;
    let kernel_section = variant
        .kernel_package()
        .kernel
        .clone()
        .expect("the kernel package has a [kernel] table");
    let mut wanted_modules = kernel_section.initramfs_modules.clone();
    wanted_modules.extend(kernel_section.modules.iter().cloned());
    wanted_modules.extend(variant.kernel_modules.iter().cloned());
    let modules = kmod::closure(&index, &wanted_modules, &kernel_version)?;
    let initramfs_modules =
        kmod::closure(&index, &kernel_section.initramfs_modules, &kernel_version)?;
    info!(
        "kernel {kernel_version}: {} modules kept, {} for the initramfs",
        modules.len(),
        initramfs_modules.len()
    );

    // 3. Select files kept from Debian packages.
    let mut owners: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut kept: BTreeSet<PathBuf> = BTreeSet::new();
    let candidates: Vec<PathBuf> = tree::walk(&scratch)?
        .into_iter()
        .filter(|(path, kind)| {
            *kind != Kind::Dir
                && !path.starts_with("usr/lib/modules")
                && !path.starts_with("boot")
                && !MERGED_USR_LINKS
                    .iter()
                    .any(|(link, _)| path == Path::new(link))
        })
        .map(|(path, _)| path)
        .collect();
    for package in &variant.packages {
        for pattern in &package.debian.keep {
            keep_matching(&scratch, &candidates, &package.name, pattern, |entry| {
                owners
                    .entry(entry.clone())
                    .or_insert_with(|| package.name.clone());
                kept.insert(entry);
            })?;
        }
    }
    info!("{} entries kept from Debian packages", kept.len());

    // 4. Our binaries and files, laid over the Debian tree (they win over Debian files).
    let mut ours: BTreeMap<PathBuf, String> = BTreeMap::new();
    for package in &variant.packages {
        copy_ours(
            &package.name,
            &package.cargo.binaries,
            package.files_dir.as_deref(),
            cargo_bin_dir,
            &scratch,
            |rel| {
                claim(&mut ours, &rel, &package.name)?;
                if kept.contains(&rel) {
                    debug!(
                        "{}: {} replaces the Debian file",
                        package.name,
                        rel.display()
                    );
                }
                kept.insert(rel);
                Ok(())
            },
        )?;
    }

    // 5. Shared libraries and the loader the kept programs need.
    let added = elf::add_closure(&scratch, &mut kept)?;
    info!(
        "{} shared libraries and links added by the ELF closure",
        added.len()
    );

    // 6. The root tree.
    make_skeleton(&rootfs)?;
    for dir in MOUNT_POINTS {
        tree::mkdir_p(&rootfs.join(dir))?;
    }
    tree::set_mode(&rootfs.join("tmp"), 0o1777)?;
    tree::set_mode(&rootfs.join("root"), 0o700)?;
    tree::mkdir_p(&rootfs.join(FACTORY_ETC))?;
    for rel in &kept {
        if let Some(bad) = FORBIDDEN_PREFIXES.iter().find(|p| {
            let rel = rel.to_string_lossy();
            rel.starts_with(*p) || rel == p.trim_end_matches('/')
        }) {
            return ForbiddenPathSnafu {
                path: format!("/{}", rel.display()),
                prefix: bad.trim_end_matches('/'),
                owner: owners
                    .get(rel)
                    .or(ours.get(rel))
                    .map(|p| format!("package '{p}'"))
                    .unwrap_or_else(|| "the shared library closure".to_string()),
            }
            .fail();
        }
        let dest = image_path(rel);
        tree::copy_entry(&scratch.join(rel), &rootfs.join(&dest), None)?;
    }
    for module in &modules {
        let rel = modules_rel.join(module);
        tree::copy_entry(&scratch.join(&rel), &rootfs.join(&rel), Some(0o644))?;
    }
    for file in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let rel = modules_rel.join(file);
        if scratch.join(&rel).is_file() {
            tree::copy_entry(&scratch.join(&rel), &rootfs.join(&rel), Some(0o644))?;
        }
    }
    kmod::depmod(&rootfs, &kernel_version)?;
    let kernel = out.join("vmlinuz");
    tree::copy_entry(&kernel_src, &kernel, Some(0o644))?;

    // 7. Identity and defaults.
    tree::write_file(
        &rootfs.join(OS_RELEASE_PATH),
        os_release(&variant.name, version, build_id).as_bytes(),
        0o644,
    )?;
    tree::symlink(
        &Path::new("..").join(OS_RELEASE_PATH),
        &rootfs.join(FACTORY_ETC).join("os-release"),
    )?;
    let mut defaults_files = shared_defaults_files(root)?;
    let package_dirs: Vec<&Path> = variant.packages.iter().map(|p| p.dir.as_path()).collect();
    defaults_files.extend(package_defaults_files(&package_dirs));
    defaults_files.extend(variant.defaults.iter().cloned());
    let shown: Vec<String> = defaults_files
        .iter()
        .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
        .collect();
    let defaults = merge_defaults(&defaults_files, &shown)?;
    tree::write_file(
        &rootfs.join(DEFAULTS_IMAGE_PATH),
        defaults.as_bytes(),
        0o644,
    )?;

    // 8. systemd units.
    for package in &variant.packages {
        systemd::apply(&rootfs, package)?;
    }
    let pruned = systemd::prune_dangling_links(&rootfs)?;
    debug!("{} links to absent units removed", pruned.len());

    // 9. What the initramfs reads ahead to warm the page cache for the first programs.
    let readahead = readahead_list(&rootfs)?;
    tree::write_file(
        &rootfs.join(READAHEAD_PATH),
        readahead.join("\n").as_bytes(),
        0o644,
    )?;

    tree::remove(&scratch)?;
    let (files, bytes) = tree_size(&rootfs)?;
    info!(
        "staged {}: {files} files, {:.1} MiB, in {:.1?}",
        rootfs.display(),
        bytes as f64 / 1048576.0,
        started.elapsed()
    );
    Ok(StagedRoot {
        root_dir: rootfs,
        kernel,
        kernel_version,
        initramfs_modules,
        cmdline: variant.kernel_parameters.clone(),
        files,
        bytes,
    })
}

/// Fetches the locked Debian packages that `requests` need (checked against the lock) and
/// unpacks them, merged-/usr, into a fresh `out/scratch`, which it returns. `what` names the
/// requester in the log.
pub(crate) fn unpack_locked(
    root: &Path,
    requests: &[String],
    cache_dir: &Path,
    out: &Path,
    what: &str,
) -> Result<PathBuf> {
    let lock = load_lock(root)?;
    let subset = lock_subset(&lock, requests, &crate::lock::lock_path(root))?;
    info!(
        "{what}: {} Debian packages ({:.1} MiB)",
        subset.packages.len(),
        subset.total_size() as f64 / 1048576.0
    );
    let debs = debian::fetch(&subset, cache_dir)?;
    tree::mkdir_p(out)?;
    let scratch = out.join("scratch");
    let unpack_dir = out.join("unpack");
    tree::remove(&scratch)?;
    make_skeleton(&scratch)?;
    for deb in &debs {
        tree::remove(&unpack_dir)?;
        debian::extract(deb, &unpack_dir)?;
        merge_usr(&unpack_dir, &scratch)?;
    }
    tree::remove(&unpack_dir)?;
    Ok(scratch)
}

/// Hands every entry of `scratch` that keep pattern `pattern` of `owner` selects to `keep`:
/// each matching candidate that is not a directory, and a matching link brings what it points
/// to. A pattern that matches nothing is an error.
pub(crate) fn keep_matching(
    scratch: &Path,
    candidates: &[PathBuf],
    owner: &str,
    pattern: &str,
    mut keep: impl FnMut(PathBuf),
) -> Result<()> {
    let matcher = glob(owner, pattern)?;
    let mut matched = 0;
    for path in candidates.iter().filter(|p| matcher.is_match(p)) {
        matched += 1;
        for entry in tree::link_chain(scratch, path)?.unwrap_or_else(|| vec![path.clone()]) {
            if tree::kind(scratch, &entry)? != Some(Kind::Dir) {
                keep(entry);
            }
        }
    }
    ensure!(
        matched > 0,
        KeepMatchedNothingSnafu {
            package: owner,
            pattern,
        }
    );
    Ok(())
}

/// Copies `owner`'s workspace binaries (to `usr/bin`, mode 0755) and its `files/` tree (0755
/// when executable, else 0644) into `scratch`, calling `add` with each path it wrote.
pub(crate) fn copy_ours(
    owner: &str,
    binaries: &[String],
    files_dir: Option<&Path>,
    cargo_bin_dir: &Path,
    scratch: &Path,
    mut add: impl FnMut(PathBuf) -> Result<()>,
) -> Result<()> {
    for binary in binaries {
        let from = cargo_bin_dir.join(binary);
        ensure!(
            from.is_file(),
            MissingBinarySnafu {
                package: owner,
                name: binary,
                dir: cargo_bin_dir,
            }
        );
        let rel = Path::new("usr/bin").join(binary);
        tree::copy_entry(&from, &scratch.join(&rel), Some(0o755))?;
        add(rel)?;
    }
    if let Some(files) = files_dir {
        for (rel, kind) in tree::walk(files)? {
            if kind == Kind::Dir {
                continue;
            }
            let mode = std::fs::symlink_metadata(files.join(&rel))
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
                .context(IoSnafu {
                    action: "inspect",
                    path: files.join(&rel),
                })?;
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            tree::copy_entry(&files.join(&rel), &scratch.join(&rel), Some(mode))?;
            add(rel)?;
        }
    }
    Ok(())
}

/// Where a tree path goes in the image: `etc/...` moves to the factory copy of `/etc`.
/// [`READAHEAD_PROGRAMS`] present in `rootfs`, each followed by the regular files of its
/// shared library closure not listed yet: paths relative to the root, in start order.
pub fn readahead_list(rootfs: &Path) -> Result<Vec<String>> {
    let mut listed = BTreeSet::new();
    let mut list = Vec::new();
    for program in READAHEAD_PROGRAMS {
        let program = PathBuf::from(program);
        if !matches!(tree::kind(rootfs, &program)?, Some(Kind::File)) {
            continue;
        }
        let mut closure = BTreeSet::from([program.clone()]);
        let added = elf::add_closure(rootfs, &mut closure)?;
        for rel in std::iter::once(program).chain(added) {
            if matches!(tree::kind(rootfs, &rel)?, Some(Kind::File)) && listed.insert(rel.clone()) {
                list.push(rel.display().to_string());
            }
        }
    }
    Ok(list)
}

fn image_path(rel: &Path) -> PathBuf {
    match rel.strip_prefix("etc") {
        Ok(rest) => Path::new(FACTORY_ETC).join(rest),
        Err(_) => rel.to_path_buf(),
    }
}

fn claim(owners: &mut BTreeMap<PathBuf, String>, rel: &Path, package: &str) -> Result<()> {
    if let Some(first) = owners.get(rel) {
        return FileConflictSnafu {
            first: first.clone(),
            second: package,
            path: format!("/{}", rel.display()),
        }
        .fail();
    }
    owners.insert(rel.to_path_buf(), package.to_string());
    Ok(())
}

/// A keep pattern of the package or container image `owner`, compiled.
pub(crate) fn glob(owner: &str, pattern: &str) -> Result<GlobMatcher> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .context(BadGlobSnafu {
            package: owner,
            pattern,
        })?
        .compile_matcher())
}

/// The `/usr` directories and the merged-/usr links at the top of a tree.
pub(crate) fn make_skeleton(dir: &Path) -> Result<()> {
    for (link, target) in MERGED_USR_LINKS {
        tree::mkdir_p(&dir.join(target))?;
        tree::symlink(Path::new(target), &dir.join(link))?;
    }
    Ok(())
}

/// Where a path of a Debian package lands in a merged-/usr tree: `bin/x` -> `usr/bin/x`, and
/// the same for `sbin`, `lib` and `lib64`.
fn merged_path(rel: &Path) -> PathBuf {
    let mut components = rel.components();
    if let Some(first) = components.next() {
        if let Some((_, target)) = MERGED_USR_LINKS
            .iter()
            .find(|(link, _)| first.as_os_str() == *link)
        {
            return Path::new(target).join(components.as_path());
        }
    }
    rel.to_path_buf()
}

/// Moves the unpacked package tree `from` into the merged-/usr tree `to` (Debian 12 packages
/// still ship files under /bin, /sbin and /lib; the image merges them into /usr like a
/// Debian 12 installation does). A later package replaces an earlier package's file.
pub(crate) fn merge_usr(from: &Path, to: &Path) -> Result<()> {
    for (rel, kind) in tree::walk(from)? {
        let dest = to.join(merged_path(&rel));
        match kind {
            Kind::Dir => tree::mkdir_p(&dest)?,
            _ => {
                tree::remove(&dest)?;
                std::fs::rename(from.join(&rel), &dest).context(IoSnafu {
                    action: "move an unpacked file to",
                    path: &dest,
                })?;
            }
        }
    }
    Ok(())
}

fn find_kernel_version(scratch: &Path) -> Result<String> {
    let dir = scratch.join("usr/lib/modules");
    let mut versions = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(&dir).context(IoSnafu {
            action: "list",
            path: &dir,
        })? {
            let entry = entry.context(IoSnafu {
                action: "list",
                path: &dir,
            })?;
            if entry.path().join("kernel").is_dir() {
                versions.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    versions.sort();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => KernelSnafu {
            message: "no Debian package of this variant ships kernel modules; the kernel \
                      package must ask for a linux-image package"
                .to_string(),
        }
        .fail(),
        many => KernelSnafu {
            message: format!(
                "several kernels in the variant ({}); ask for exactly one linux-image package",
                many.join(", ")
            ),
        }
        .fail(),
    }
}

pub(crate) fn tree_size(dir: &Path) -> Result<(usize, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for (rel, kind) in tree::walk(dir)? {
        if kind == Kind::File {
            files += 1;
            bytes += std::fs::metadata(dir.join(&rel))
                .context(IoSnafu {
                    action: "inspect",
                    path: dir.join(&rel),
                })?
                .len();
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_os_release() {
        check_id("0.1.0", "version").unwrap();
        check_id("1.2.3-rc1+git.abc", "version").unwrap();
        for bad in ["", "-1", "1 2", "a/b", "é", "1~rc1"] {
            assert!(check_id(bad, "version").is_err(), "{bad}");
        }
        let text = os_release("dev", "0.1.0", "abc123");
        // Byte for byte what earlier builds wrote, so rebuilds of old versions stay identical.
        assert_eq!(
            text,
            "NAME=Ballast\nID=ballast\nVERSION_ID=0.1.0\nVERSION=\"0.1.0 (dev)\"\n\
             PRETTY_NAME=\"Ballast 0.1.0 (dev)\"\nVARIANT_ID=dev\nBUILD_ID=abc123\nARCH=x86_64\n"
        );
        let info = models::OsInfo::from_os_release(&text).unwrap();
        assert_eq!(info.variant_id, "dev");
        assert_eq!(info.version_id, "0.1.0");
        assert_eq!(info.build_id, "abc123");
        assert_eq!(info.pretty_name, "Ballast 0.1.0 (dev)");
        assert_eq!(info.arch, "x86_64");
    }

    #[test]
    fn merges_usr() {
        assert_eq!(
            merged_path(Path::new("bin/bash")),
            Path::new("usr/bin/bash")
        );
        assert_eq!(
            merged_path(Path::new("lib64/ld-linux-x86-64.so.2")),
            Path::new("usr/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(merged_path(Path::new("libexec/x")), Path::new("libexec/x"));
        assert_eq!(merged_path(Path::new("usr/lib/x")), Path::new("usr/lib/x"));
    }

    #[test]
    fn etc_moves_to_the_factory() {
        assert_eq!(
            image_path(Path::new("etc/passwd")),
            Path::new("usr/share/factory/etc/passwd")
        );
        assert_eq!(image_path(Path::new("etcetera")), Path::new("etcetera"));
        assert_eq!(image_path(Path::new("usr/bin/x")), Path::new("usr/bin/x"));
    }
}
