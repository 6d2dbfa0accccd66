//! A Debian kernel for VM tests, fetched with the build host's own apt.
//!
//! This is a test convenience: it takes whatever version the host's apt lists currently name,
//! and relies on apt's own signature checks of those lists. Image builds use the pinned,
//! verified package set instead.

use crate::error::{CommandOutputSnafu, CommandSnafu, CommandStartSnafu, IoSnafu, Result};
use snafu::ResultExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian 12 meta package of the cloud kernel flavour (virtio drivers, small).
pub const CLOUD_KERNEL_META: &str = "linux-image-cloud-amd64";

/// An unpacked Debian kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianKernel {
    /// The versioned package, e.g. `linux-image-6.1.0-48-cloud-amd64`.
    pub package: String,
    /// The `.deb` file it came from.
    pub deb: PathBuf,
    /// The kernel release (`uname -r`), e.g. `6.1.0-48-cloud-amd64`.
    pub release: String,
    /// Where the package was unpacked.
    pub root: PathBuf,
    /// `<root>/boot/vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// `<root>/lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// Runs a command and returns its standard output, or an error with its standard error.
pub(crate) fn run(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .context(CommandStartSnafu { command: &shown })?;
    if !output.status.success() {
        return CommandSnafu {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }
        .fail();
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The versioned package a meta package depends on, from `apt-cache depends` output.
pub fn parse_depends(output: &str, prefix: &str) -> Option<String> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|pkg| pkg.starts_with(prefix))
        .map(str::to_string)
}

/// Resolves [`CLOUD_KERNEL_META`] to its current versioned package and unpacks it under
/// `cache_dir/<package>` unless that was already done.
pub fn fetch_cloud_kernel(cache_dir: &Path) -> Result<DebianKernel> {
    let depends = run(Command::new("apt-cache").args(["depends", CLOUD_KERNEL_META]))?;
    let package = parse_depends(&depends, "linux-image-").ok_or_else(|| {
        CommandOutputSnafu {
            command: format!("apt-cache depends {CLOUD_KERNEL_META}"),
            reason: "no linux-image-* dependency; run apt-get update".to_string(),
        }
        .build()
    })?;
    fetch_kernel_package(cache_dir, &package)
}

/// Downloads (`apt-get download`) and unpacks (`dpkg-deb -x`) one kernel package into
/// `cache_dir/<package>`, reusing an earlier complete unpack. Concurrent callers (two test
/// processes) each work in their own scratch directories and the first to finish wins.
pub fn fetch_kernel_package(cache_dir: &Path, package: &str) -> Result<DebianKernel> {
    let root = cache_dir.join(package);
    let marker = root.join(".ballast-complete");
    let debs = cache_dir.join("debs");
    if !marker.exists() {
        let scratch = cache_dir.join(format!(".fetch-{package}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).context(IoSnafu { path: &scratch })?;
        std::fs::create_dir_all(&debs).context(IoSnafu { path: &debs })?;
        let result = unpack(package, &debs, &scratch, &root, &marker);
        let _ = std::fs::remove_dir_all(&scratch);
        result?;
    }
    let deb = PathBuf::from(
        std::fs::read_to_string(&marker)
            .context(IoSnafu { path: &marker })?
            .trim(),
    );
    let modules = root.join("lib/modules");
    let release = std::fs::read_dir(&modules)
        .context(IoSnafu { path: &modules })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| {
            CommandOutputSnafu {
                command: format!("dpkg-deb -x {}", deb.display()),
                reason: format!("{} is empty", modules.display()),
            }
            .build()
        })?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.exists() {
        return CommandOutputSnafu {
            command: format!("dpkg-deb -x {}", deb.display()),
            reason: format!("{} is missing", vmlinuz.display()),
        }
        .fail();
    }
    Ok(DebianKernel {
        package: package.to_string(),
        deb,
        modules_dir: modules.join(&release),
        release,
        root,
        vmlinuz,
    })
}

fn unpack(package: &str, debs: &Path, scratch: &Path, root: &Path, marker: &Path) -> Result<()> {
    let deb = match find_deb(debs, package)? {
        Some(deb) => deb,
        None => {
            run(Command::new("apt-get")
                .args(["download", "-q", package])
                .current_dir(scratch))?;
            let fetched = find_deb(scratch, package)?.ok_or_else(|| {
                CommandOutputSnafu {
                    command: format!("apt-get download {package}"),
                    reason: format!("no {package}_*.deb in {}", scratch.display()),
                }
                .build()
            })?;
            let deb = debs.join(fetched.file_name().expect("a file name"));
            std::fs::rename(&fetched, &deb).context(IoSnafu { path: &deb })?;
            deb
        }
    };
    let tree = scratch.join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    std::fs::write(tree.join(".ballast-complete"), deb.display().to_string())
        .context(IoSnafu { path: &tree })?;
    if marker.exists() {
        return Ok(()); // another process finished first
    }
    let _ = std::fs::remove_dir_all(root); // an interrupted earlier attempt
    match std::fs::rename(&tree, root) {
        Ok(()) => Ok(()),
        Err(_) if marker.exists() => Ok(()),
        Err(source) => Err(source).context(IoSnafu { path: root }),
    }
}

fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(std::fs::read_dir(dir)
        .context(IoSnafu { path: dir })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_versioned_image_package() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n";
        assert_eq!(
            parse_depends(out, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-48-cloud-amd64")
        );
        assert_eq!(parse_depends("x\n  Recommends: y\n", "linux-image-"), None);
    }
}
