//! The one Debian lock of the repository (`packages/debian.lock`): refreshing it from the
//! package definitions, and refusing to build from a lock that no longer matches them.

use crate::error::{
    InvalidDefinitionSnafu, LockMissingSnafu, LockOutdatedSnafu, ParseDefinitionSnafu,
    ReadDefinitionSnafu, Result,
};
use crate::package::{list_packages, load_package};
use debian::{Indexes, Lock, LockedPackage};
use serde::Deserialize;
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use tracing::info;

/// The exclude list, relative to the repository root.
pub const EXCLUDES_PATH: &str = "packages/debian-excludes.toml";
/// Where Debian indexes and `.deb` files are cached, relative to the repository root.
pub const CACHE_DIR: &str = "build/cache/debian";

/// What [`update_lock`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDiff {
    /// The lock file written.
    pub path: PathBuf,
    /// Whether there was no lock before.
    pub created: bool,
    /// One line per change: `+ name version`, `- name version`, `~ name old -> new`.
    pub changes: Vec<String>,
    /// Number of packages in the new lock.
    pub packages: usize,
    /// Total size of the locked `.deb` files in bytes.
    pub total_size: u64,
}

impl std::fmt::Display for LockDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        write!(
            f,
            "{}: {} {} packages, {:.1} MiB of .deb files{}",
            self.path.display(),
            if self.created {
                "created with"
            } else {
                "now pins"
            },
            self.packages,
            self.total_size as f64 / (1024.0 * 1024.0),
            if self.changes.is_empty() && !self.created {
                " (unchanged)"
            } else {
                ""
            }
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcludesFile {
    /// Package name -> why the image does without it.
    exclude: BTreeMap<String, String>,
}

/// Reads the exclude list: Debian packages left out of every dependency closure, each with the
/// reason. The reason must not be empty, so that nobody wonders later why a package is missing.
pub fn load_excludes(root: &Path) -> Result<Vec<String>> {
    let path = root.join(EXCLUDES_PATH);
    let text = std::fs::read_to_string(&path).context(ReadDefinitionSnafu { path: &path })?;
    let file: ExcludesFile = toml::from_str(&text).context(ParseDefinitionSnafu { path: &path })?;
    for (name, reason) in &file.exclude {
        ensure!(
            !reason.trim().is_empty(),
            InvalidDefinitionSnafu {
                path: &path,
                message: format!("exclude '{name}' needs a reason"),
            }
        );
    }
    Ok(file.exclude.into_keys().collect())
}

/// The Debian packages that all package and container image definitions ask for (every
/// package, not only those of one variant: there is one lock for all variants and images),
/// sorted and without duplicates. A variant takes only its own part of the lock, so what an
/// image asks for never reaches an OS image.
pub fn lock_requests(root: &Path) -> Result<Vec<String>> {
    let mut requests = BTreeSet::new();
    for name in list_packages(root)? {
        requests.extend(load_package(root, &name)?.debian.packages);
    }
    for name in crate::container::list_container_images(root)? {
        requests.extend(
            crate::container::load_container_image(root, &name)?
                .debian
                .packages,
        );
    }
    Ok(requests.into_iter().collect())
}

/// Path of the lock below the repository root.
pub fn lock_path(root: &Path) -> PathBuf {
    root.join(debian::LOCK_PATH)
}

/// Refreshes `packages/debian.lock` (what `cargo xtask lock` runs): resolves the union of all
/// packages' `[debian].packages` minus the exclude list against the archives named by the
/// host's apt sources (signature-checked indexes, cached in [`CACHE_DIR`]), writes the lock and
/// says what changed.
pub fn update_lock(root: &Path) -> Result<LockDiff> {
    let sources = debian::host_sources()?;
    update_lock_from(root, &sources, &root.join(CACHE_DIR))
}

/// [`update_lock`] with explicit archive sources and cache directory.
pub fn update_lock_from(
    root: &Path,
    sources: &[debian::ArchiveSource],
    cache_dir: &Path,
) -> Result<LockDiff> {
    let requests = lock_requests(root)?;
    let excludes = load_excludes(root)?;
    info!(
        "resolving {} requested Debian packages ({} excluded)",
        requests.len(),
        excludes.len()
    );
    let indexes = Indexes::load(sources, cache_dir)?;
    let lock = debian::resolve(&requests, &indexes, &excludes)?;
    let path = lock_path(root);
    let old = if path.exists() {
        Some(Lock::load(&path)?)
    } else {
        None
    };
    let changes = old.as_ref().map(|o| o.diff(&lock)).unwrap_or_default();
    lock.save(&path)?;
    Ok(LockDiff {
        path,
        created: old.is_none(),
        changes,
        packages: lock.packages.len(),
        total_size: lock.total_size(),
    })
}

/// Loads the lock and checks that it was made from exactly the current package definitions
/// and exclude list; otherwise the error says to run `cargo xtask lock`.
pub fn load_lock(root: &Path) -> Result<Lock> {
    let path = lock_path(root);
    ensure!(path.exists(), LockMissingSnafu { path: &path });
    let lock = Lock::load(&path)?;
    debian::check_lock(&lock)?;
    let requests: BTreeSet<String> = lock_requests(root)?.into_iter().collect();
    let excludes: BTreeSet<String> = load_excludes(root)?.into_iter().collect();
    let locked_requests: BTreeSet<String> = lock.requests.iter().cloned().collect();
    let locked_excludes: BTreeSet<String> = lock.excludes.iter().cloned().collect();
    let mut problems = Vec::new();
    let missing: Vec<&str> = requests
        .difference(&locked_requests)
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "packages ask for {} that the lock does not cover",
            missing.join(", ")
        ));
    }
    let stale: Vec<&str> = locked_requests
        .difference(&requests)
        .map(String::as_str)
        .collect();
    if !stale.is_empty() {
        problems.push(format!(
            "the lock still pins {} that no package asks for any more",
            stale.join(", ")
        ));
    }
    if excludes != locked_excludes {
        problems.push(format!(
            "the exclude list ({EXCLUDES_PATH}) changed since the lock was made"
        ));
    }
    ensure!(
        problems.is_empty(),
        LockOutdatedSnafu {
            path,
            details: problems.join("; "),
        }
    );
    Ok(lock)
}

/// The part of `lock` that `requests` need: the requested packages and everything they depend
/// on, following the lock's `required-by` edges backwards. The result keeps the lock's order.
pub fn lock_subset(lock: &Lock, requests: &[String], lock_file: &Path) -> Result<Lock> {
    let by_name: BTreeMap<&str, &LockedPackage> =
        lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut depends: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for package in &lock.packages {
        for user in &package.required_by {
            depends
                .entry(user.as_str())
                .or_default()
                .push(package.name.as_str());
        }
    }
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::new();
    for request in requests {
        ensure!(
            by_name.contains_key(request.as_str()),
            LockOutdatedSnafu {
                path: lock_file,
                details: format!(
                    "it has no package named '{request}' (if that is a virtual package, ask for \
                     the real package that provides it)"
                ),
            }
        );
        queue.push_back(request.as_str());
    }
    while let Some(name) = queue.pop_front() {
        if wanted.insert(name) {
            for dependency in depends.get(name).into_iter().flatten() {
                queue.push_back(dependency);
            }
        }
    }
    Ok(Lock {
        requests: requests.to_vec(),
        excludes: lock.excludes.clone(),
        packages: lock
            .packages
            .iter()
            .filter(|p| wanted.contains(p.name.as_str()))
            .cloned()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(name: &str, required_by: &[&str]) -> LockedPackage {
        LockedPackage {
            name: name.to_string(),
            version: "1.0".to_string(),
            architecture: "amd64".to_string(),
            filename: format!("pool/main/{name}_1.0_amd64.deb"),
            size: 10,
            sha256: "ab".repeat(32),
            source_uri: "http://deb.debian.org/debian".to_string(),
            required_by: required_by.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn repo(root: &Path, packages: &[(&str, &str)], excludes: &str) {
        for (name, debian) in packages {
            let dir = root.join("packages").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("package.toml"),
                format!("[package]\ndescription = \"x\"\n[debian]\npackages = [{debian}]\n"),
            )
            .unwrap();
        }
        std::fs::write(root.join(EXCLUDES_PATH), excludes).unwrap();
    }

    #[test]
    fn subset_follows_dependencies() {
        let lock = Lock {
            requests: vec!["bash".into(), "systemd".into()],
            excludes: vec![],
            packages: vec![
                locked("bash", &[]),
                locked("libc6", &["bash", "libsystemd", "systemd"]),
                locked("libsystemd", &["systemd"]),
                locked("systemd", &[]),
            ],
        };
        let subset = lock_subset(&lock, &["systemd".to_string()], Path::new("l")).unwrap();
        let names: Vec<&str> = subset.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "libsystemd", "systemd"]);
        let error = lock_subset(&lock, &["awk".to_string()], Path::new("l")).unwrap_err();
        assert!(error.to_string().contains("'awk'"), "{error}");
    }

    #[test]
    fn drift_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        repo(
            root,
            &[("a", "\"bash\""), ("b", "\"bash\", \"systemd\"")],
            "[exclude]\ndebconf = \"no maintainer scripts run\"\n",
        );
        assert_eq!(lock_requests(root).unwrap(), ["bash", "systemd"]);
        assert_eq!(load_excludes(root).unwrap(), ["debconf"]);

        let error = load_lock(root).unwrap_err().to_string();
        assert!(error.contains("cargo xtask lock"), "{error}");

        let mut lock = Lock {
            requests: vec!["bash".into(), "systemd".into()],
            excludes: vec!["debconf".into()],
            packages: vec![locked("bash", &[]), locked("systemd", &[])],
        };
        lock.save(&lock_path(root)).unwrap();
        load_lock(root).unwrap();

        lock.requests = vec!["bash".into(), "coreutils".into()];
        lock.save(&lock_path(root)).unwrap();
        let error = load_lock(root).unwrap_err().to_string();
        assert!(
            error.contains("systemd that the lock does not cover"),
            "{error}"
        );
        assert!(
            error.contains("coreutils that no package asks for"),
            "{error}"
        );
        assert!(error.contains("cargo xtask lock"), "{error}");

        lock.requests = vec!["bash".into(), "systemd".into()];
        lock.excludes = vec![];
        lock.save(&lock_path(root)).unwrap();
        let error = load_lock(root).unwrap_err().to_string();
        assert!(error.contains("exclude list"), "{error}");

        std::fs::write(root.join(EXCLUDES_PATH), "[exclude]\ndebconf = \"\"\n").unwrap();
        let error = load_excludes(root).unwrap_err().to_string();
        assert!(error.contains("needs a reason"), "{error}");
    }
}
