//! Package definitions: `packages/<name>/package.toml` plus an optional `files/` tree.

use crate::error::{
    InvalidDefinitionSnafu, IoSnafu, ParseDefinitionSnafu, ReadDefinitionSnafu, Result,
};
use serde::Deserialize;
use snafu::{ensure, ResultExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Directory of package definitions, relative to the repository root.
pub const PACKAGES_DIR: &str = "packages";
/// Name of a package's definition file.
pub const PACKAGE_FILE: &str = "package.toml";
/// Name of a package's tree of files copied into the root as-is.
pub const FILES_DIR: &str = "files";

/// One package: what it takes from Debian, which of our binaries it installs, its own files and
/// the systemd units it enables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Directory name under `packages/`.
    pub name: String,
    /// The package directory.
    pub dir: PathBuf,
    /// `[package]` table.
    pub info: PackageInfo,
    /// `[debian]` table.
    pub debian: DebianSection,
    /// `[cargo]` table.
    pub cargo: CargoSection,
    /// `[systemd]` table.
    pub systemd: SystemdSection,
    /// `[kernel]` table; at most one package of a variant has it.
    pub kernel: Option<KernelSection>,
    /// `files/`, when the package has one.
    pub files_dir: Option<PathBuf>,
}

/// `[package]`: description and relations to other packages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageInfo {
    /// One line saying what the package is for.
    pub description: String,
    /// Other Ballast packages that must be in the same variant.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// `[debian]`: Debian binary packages and the files kept from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DebianSection {
    /// Debian package names; their `Depends` closure goes into the one lock.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Globs (relative to `/`, merged-usr spelling: `usr/bin/x`, never `bin/x`) of files kept in
    /// the image. `*` stays within a path component, `**` crosses them. Files under `etc/` are
    /// moved to `usr/share/factory/etc/`, which early-init copies to the tmpfs `/etc` at boot.
    #[serde(default)]
    pub keep: Vec<String>,
}

/// `[cargo]`: binaries of this workspace installed into `/usr/bin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CargoSection {
    /// Binary names as cargo builds them (`target/release/<name>`).
    #[serde(default)]
    pub binaries: Vec<String>,
}

/// `[systemd]`: unit enablement, made with symlinks under `/usr/lib/systemd/system`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SystemdSection {
    /// Units enabled through their own `[Install]` section (`WantedBy=`, `RequiredBy=`,
    /// `Also=`). Template instances are written `name@instance.service`.
    #[serde(default)]
    pub enable: Vec<String>,
    /// Explicit links for units without an `[Install]` section: target unit -> units it wants.
    #[serde(default)]
    pub wants: BTreeMap<String, Vec<String>>,
    /// Units masked with a link to `/dev/null`.
    #[serde(default)]
    pub mask: Vec<String>,
    /// The unit `default.target` points to.
    #[serde(default)]
    pub default_target: Option<String>,
}

/// `[kernel]`: the kernel image and which modules go into the image and the initramfs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSection {
    /// Module names kept in the root image (with their dependencies).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Module names the initramfs loads to reach the root (with their dependencies). They
    /// must be kept in the image as well (they are added to `modules` automatically).
    #[serde(default)]
    pub initramfs_modules: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PackageFile {
    package: PackageInfo,
    #[serde(default)]
    debian: DebianSection,
    #[serde(default)]
    cargo: CargoSection,
    #[serde(default)]
    systemd: SystemdSection,
    #[serde(default)]
    kernel: Option<KernelSection>,
}

/// Reads and checks `packages/<name>/package.toml` below the repository `root`.
pub fn load_package(root: &Path, name: &str) -> Result<Package> {
    let dir = root.join(PACKAGES_DIR).join(name);
    let path = dir.join(PACKAGE_FILE);
    let text = std::fs::read_to_string(&path).context(ReadDefinitionSnafu { path: &path })?;
    let file: PackageFile = toml::from_str(&text).context(ParseDefinitionSnafu { path: &path })?;
    let invalid = |message: String| InvalidDefinitionSnafu {
        path: path.clone(),
        message,
    };
    ensure!(
        !file.package.description.trim().is_empty(),
        invalid("[package].description must say what the package is for".into())
    );
    for debian in &file.debian.packages {
        ensure!(
            !debian.is_empty()
                && debian
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)),
            invalid(format!(
                "'{debian}' in [debian].packages is not a Debian package name"
            ))
        );
    }
    for pattern in &file.debian.keep {
        ensure!(
            !pattern.starts_with('/') && !pattern.split('/').any(|p| p == ".."),
            invalid(format!(
                "keep pattern '{pattern}' must be relative to / (no leading '/', no '..')"
            ))
        );
        let first = pattern.split('/').next().unwrap_or_default();
        ensure!(
            !matches!(first, "bin" | "sbin" | "lib" | "lib64"),
            invalid(format!(
                "keep pattern '{pattern}' uses the unmerged path /{first}; write usr/{first}/... \
                 (the image has /bin, /sbin, /lib and /lib64 as links into /usr)"
            ))
        );
    }
    for binary in &file.cargo.binaries {
        ensure!(
            !binary.is_empty() && !binary.contains('/'),
            invalid(format!(
                "'{binary}' in [cargo].binaries is not a binary name"
            ))
        );
    }
    let files_dir = dir.join(FILES_DIR);
    let files_dir = match std::fs::metadata(&files_dir) {
        Ok(meta) if meta.is_dir() => Some(files_dir),
        Ok(_) => return invalid(format!("{} is not a directory", files_dir.display())).fail(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(source).context(IoSnafu {
                action: "inspect",
                path: files_dir,
            })
        }
    };
    Ok(Package {
        name: name.to_string(),
        dir,
        info: file.package,
        debian: file.debian,
        cargo: file.cargo,
        systemd: file.systemd,
        kernel: file.kernel,
        files_dir,
    })
}

/// Names of all packages (directories under `packages/` holding a `package.toml`), sorted.
pub fn list_packages(root: &Path) -> Result<Vec<String>> {
    list_definition_dirs(&root.join(PACKAGES_DIR), PACKAGE_FILE)
}

/// Sorted names of the subdirectories of `dir` that contain `file`. A missing `dir` is empty.
pub(crate) fn list_definition_dirs(dir: &Path, file: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(source).context(IoSnafu {
                action: "list",
                path: dir,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.context(IoSnafu {
            action: "list",
            path: dir,
        })?;
        if entry.path().join(file).is_file() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, text: &str) {
        let dir = root.join(PACKAGES_DIR).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PACKAGE_FILE), text).unwrap();
    }

    #[test]
    fn loads_a_full_definition() {
        let temp = tempfile::tempdir().unwrap();
        write(
            temp.path(),
            "api",
            r#"
            [package]
            description = "the API"
            requires = ["systemd"]
            [debian]
            packages = ["libc6"]
            keep = ["usr/lib/x86_64-linux-gnu/libc.so.6"]
            [cargo]
            binaries = ["apiserver"]
            [systemd]
            enable = ["apiserver.service"]
            wants = { "sysinit.target" = ["a.service"] }
            mask = ["b.service"]
            default-target = "multi-user.target"
            "#,
        );
        std::fs::create_dir_all(temp.path().join("packages/api/files/usr")).unwrap();
        let package = load_package(temp.path(), "api").unwrap();
        assert_eq!(package.info.requires, ["systemd"]);
        assert_eq!(package.cargo.binaries, ["apiserver"]);
        assert_eq!(package.systemd.wants["sysinit.target"], ["a.service"]);
        assert!(package.files_dir.is_some());
        assert!(package.kernel.is_none());
        assert_eq!(list_packages(temp.path()).unwrap(), ["api"]);
    }

    #[test]
    fn refuses_bad_definitions() {
        let temp = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("[package]\ndescription = \"x\"\nfoo = 1\n", "unknown field"),
            ("[package]\ndescription = \" \"\n", "description"),
            (
                "[package]\ndescription = \"x\"\n[debian]\nkeep = [\"bin/bash\"]\n",
                "usr/bin",
            ),
            (
                "[package]\ndescription = \"x\"\n[debian]\nkeep = [\"/usr/bin/bash\"]\n",
                "relative",
            ),
            (
                "[package]\ndescription = \"x\"\n[debian]\npackages = [\"Bash\"]\n",
                "not a Debian package name",
            ),
        ] {
            write(temp.path(), "bad", text);
            let error = load_package(temp.path(), "bad").unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
