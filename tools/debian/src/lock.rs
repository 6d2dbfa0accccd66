//! The lock file (`packages/debian.lock`) and the dependency resolution that produces it.

use crate::error::{
    AmbiguousVirtualSnafu, BadLockEntrySnafu, IoSnafu, LockSerializeSnafu, LockSyntaxSnafu, Result,
    UnknownPackageSnafu, UnsatisfiableSnafu,
};
use crate::index::{write_atomically, Indexes};
use crate::packages::{alternatives_to_string, BinaryPackage, Relation};
use crate::version::Version;
use serde::{Deserialize, Serialize};
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use tracing::{info, warn};

/// Where the lock lives in the repository.
pub const LOCK_PATH: &str = "packages/debian.lock";

/// The comment at the top of every lock file.
pub const LOCK_HEADER: &str = "\
# Debian packages that go into the Ballast image, pinned by version, size and sha256.
# Generated from the archive's signed indexes; do not edit by hand.
# Refresh it (after a Debian point release, or to change the package list) with:
#     cargo xtask lock
# and commit the result. `requests` and `excludes` are the inputs the lock was made from;
# `required-by` says which locked packages depend on each entry.
";

/// A resolved, pinned set of Debian packages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Lock {
    /// Package names the lock was resolved from.
    #[serde(default)]
    pub requests: Vec<String>,
    /// Package names left out of the dependency closure on purpose.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// The pinned packages, sorted by name.
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// Path in the archive's pool, relative to `source-uri`.
    pub filename: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// sha256 of the `.deb`, lower-case hex.
    pub sha256: String,
    /// Base URI of the archive that serves it (e.g. `http://deb.debian.org/debian-security`).
    pub source_uri: String,
    /// Locked packages whose dependencies this package satisfies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_by: Vec<String>,
}

impl LockedPackage {
    /// Full download URL of the `.deb`.
    pub fn url(&self) -> String {
        format!(
            "{}/{}",
            self.source_uri.trim_end_matches('/'),
            self.filename
        )
    }

    /// File name of the `.deb` (the last part of `filename`).
    pub fn file_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }

    /// Refuses entries that could not have come from [`resolve`]: a bad hash, a pool path that
    /// leaves the pool, a source that is not http(s).
    pub fn check(&self) -> Result<()> {
        let bad = |message: &str| {
            BadLockEntrySnafu {
                package: self.name.clone(),
                message: message.to_string(),
            }
            .fail()
        };
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad("sha256 must be 64 lower-case hex digits");
        }
        if !self.filename.starts_with("pool/")
            || !self.filename.ends_with(".deb")
            || self
                .filename
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return bad("filename must be a pool/.../*.deb path");
        }
        if !(self.source_uri.starts_with("http://") || self.source_uri.starts_with("https://")) {
            return bad("source-uri must be an http(s) URL");
        }
        Version::parse(&self.version)?;
        Ok(())
    }
}

impl Lock {
    /// Reads a lock file.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = std::fs::read_to_string(path).context(IoSnafu {
            action: "read the lock file",
            path,
        })?;
        toml::from_str(&text).context(LockSyntaxSnafu { path })
    }

    /// The lock as TOML, with [`LOCK_HEADER`] on top and packages sorted by name.
    pub fn to_toml(&self) -> Result<String> {
        let mut sorted = self.clone();
        sorted.packages.sort_by(|a, b| a.name.cmp(&b.name));
        let body = toml::to_string_pretty(&sorted).context(LockSerializeSnafu)?;
        Ok(format!("{LOCK_HEADER}\n{body}"))
    }

    /// Writes the lock (atomically), creating the parent directory if needed.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).context(IoSnafu {
                action: "create directory",
                path: dir,
            })?;
        }
        write_atomically(path, self.to_toml()?.as_bytes())
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&LockedPackage> {
        self.packages.iter().find(|p| p.name == name)
    }

    /// Sum of all `.deb` sizes in bytes.
    pub fn total_size(&self) -> u64 {
        self.packages.iter().map(|p| p.size).sum()
    }

    /// Human-readable differences from `self` to `newer` (added, removed, changed versions), for
    /// showing what a refresh changed.
    pub fn diff(&self, newer: &Lock) -> Vec<String> {
        let old: BTreeMap<&str, &LockedPackage> =
            self.packages.iter().map(|p| (p.name.as_str(), p)).collect();
        let new: BTreeMap<&str, &LockedPackage> = newer
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
        names
            .into_iter()
            .filter_map(|name| match (old.get(name), new.get(name)) {
                (Some(o), None) => Some(format!("- {name} {}", o.version)),
                (None, Some(n)) => Some(format!("+ {name} {}", n.version)),
                (Some(o), Some(n)) if o.version != n.version || o.sha256 != n.sha256 => {
                    Some(format!("~ {name} {} -> {}", o.version, n.version))
                }
                _ => None,
            })
            .collect()
    }
}

/// What to do about one dependency.
enum Choice<'a> {
    /// Already satisfied by this chosen package.
    Chosen(String),
    /// Left out because the user excluded this package.
    Excluded(String),
    /// Satisfied by adding this package.
    New(&'a BinaryPackage),
    /// Cannot be satisfied, with the reasons for each alternative.
    Impossible(String),
}

struct Chosen<'a> {
    package: &'a BinaryPackage,
    required_by: BTreeSet<String>,
}

/// Resolves `requests` (package names) to the closure of their `Pre-Depends` and `Depends` over
/// `indexes`, and pins every package of the closure.
///
/// For each dependency, an alternative already in the closure wins; otherwise the first
/// alternative that exists as a real package with a fitting version, or is provided by one, is
/// taken. An alternative naming an excluded package (or a virtual package an excluded package
/// provides) leaves the whole dependency out: the user has decided the image does without it.
/// When several packages provide a virtual package, the first by name is taken and a warning
/// names the others. Each edge is logged ("X pulled in by Y"), and recorded in `required-by`.
///
/// `Recommends`, `Suggests`, `Conflicts` and `Breaks` are not considered, nor is `Essential`
/// (packages that everything silently relies on must be requested explicitly).
pub fn resolve(requests: &[String], indexes: &Indexes, exclude: &[String]) -> Result<Lock> {
    let excluded: BTreeSet<&str> = exclude.iter().map(|s| s.trim()).collect();
    let mut chosen: BTreeMap<String, Chosen<'_>> = BTreeMap::new();
    let mut queue: VecDeque<&BinaryPackage> = VecDeque::new();

    for request in requests {
        let name = request.trim();
        if name.is_empty() {
            continue;
        }
        if excluded.contains(name) {
            warn!("{name} is both requested and excluded; leaving it out");
            continue;
        }
        let package = match indexes.package(name) {
            Some(package) => package,
            None => {
                let providers = indexes.providers(name);
                match providers.as_slice() {
                    [] => {
                        return UnknownPackageSnafu {
                            name,
                            suites: indexes.describe(),
                        }
                        .fail()
                    }
                    [(only, _)] => {
                        info!("{name} is virtual; taking its only provider {}", only.name);
                        *only
                    }
                    many => {
                        return AmbiguousVirtualSnafu {
                            name,
                            providers: names_of(many.iter().map(|(p, _)| *p)),
                        }
                        .fail()
                    }
                }
            }
        };
        if !chosen.contains_key(&package.name) {
            info!("{} {} requested", package.name, package.version);
            chosen.insert(
                package.name.clone(),
                Chosen {
                    package,
                    required_by: BTreeSet::new(),
                },
            );
            queue.push_back(package);
        }
    }

    while let Some(package) = queue.pop_front() {
        for (field, dependencies) in [
            ("Pre-Depends", &package.pre_depends),
            ("Depends", &package.depends),
        ] {
            for alternatives in dependencies {
                match choose(alternatives, indexes, &chosen, &excluded) {
                    Choice::Chosen(name) => {
                        if let Some(entry) = chosen.get_mut(&name) {
                            if name != package.name {
                                entry.required_by.insert(package.name.clone());
                            }
                        }
                    }
                    Choice::Excluded(name) => info!(
                        "{}: {field} '{}' left out ({name} is excluded)",
                        package.name,
                        alternatives_to_string(alternatives)
                    ),
                    Choice::New(dependency) => {
                        info!(
                            "{} {} pulled in by {} ({field}: {})",
                            dependency.name,
                            dependency.version,
                            package.name,
                            alternatives_to_string(alternatives)
                        );
                        chosen.insert(
                            dependency.name.clone(),
                            Chosen {
                                package: dependency,
                                required_by: BTreeSet::from([package.name.clone()]),
                            },
                        );
                        queue.push_back(dependency);
                    }
                    Choice::Impossible(reason) => {
                        return UnsatisfiableSnafu {
                            package: format!("{} {}", package.name, package.version),
                            field,
                            relation: alternatives_to_string(alternatives),
                            reason,
                        }
                        .fail()
                    }
                }
            }
        }
    }

    let packages: Vec<LockedPackage> = chosen
        .into_values()
        .map(|c| LockedPackage {
            name: c.package.name.clone(),
            version: c.package.version.to_string(),
            architecture: c.package.architecture.clone(),
            filename: c.package.filename.clone(),
            size: c.package.size,
            sha256: c.package.sha256.clone(),
            source_uri: c.package.source_uri.clone(),
            required_by: c.required_by.into_iter().collect(),
        })
        .collect();
    let lock = Lock {
        requests: requests.iter().map(|s| s.trim().to_string()).collect(),
        excludes: exclude.iter().map(|s| s.trim().to_string()).collect(),
        packages,
    };
    info!(
        "resolved {} packages, {} bytes of .deb files",
        lock.packages.len(),
        lock.total_size()
    );
    Ok(lock)
}

fn names_of<'a>(packages: impl Iterator<Item = &'a BinaryPackage>) -> String {
    packages
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a provider offering `provided` (its `Provides` version, if any) satisfies `relation`:
/// an unversioned relation accepts any provider, a versioned one only a provider that names a
/// fitting version.
fn provider_fits(relation: &Relation, provided: Option<&Version>) -> bool {
    match (&relation.constraint, provided) {
        (None, _) => true,
        (Some(_), Some(version)) => relation.accepts(version),
        (Some(_), None) => false,
    }
}

fn choose<'a>(
    alternatives: &[Relation],
    indexes: &'a Indexes,
    chosen: &BTreeMap<String, Chosen<'a>>,
    excluded: &BTreeSet<&str>,
) -> Choice<'a> {
    // Something already in the closure satisfies it?
    for relation in alternatives {
        if let Some(c) = chosen.get(&relation.name) {
            if relation.accepts(&c.package.version) {
                return Choice::Chosen(relation.name.clone());
            }
        }
        for (provider, provided) in indexes.providers(&relation.name) {
            if chosen.contains_key(&provider.name) && provider_fits(relation, provided) {
                return Choice::Chosen(provider.name.clone());
            }
        }
    }

    let mut reasons = Vec::new();
    for relation in alternatives {
        if excluded.contains(relation.name.as_str()) {
            return Choice::Excluded(relation.name.clone());
        }
        if let Some(package) = indexes.package(&relation.name) {
            if relation.accepts(&package.version) {
                return Choice::New(package);
            }
            reasons.push(format!(
                "{} is available only at version {}",
                relation.name, package.version
            ));
        }
        let providers: Vec<&BinaryPackage> = indexes
            .providers(&relation.name)
            .into_iter()
            .filter(|(_, provided)| provider_fits(relation, *provided))
            .map(|(p, _)| p)
            .collect();
        if let Some(excluded_provider) = providers
            .iter()
            .find(|p| excluded.contains(p.name.as_str()))
        {
            return Choice::Excluded(excluded_provider.name.clone());
        }
        match providers.as_slice() {
            [] => {
                if indexes.package(&relation.name).is_none() {
                    reasons.push(format!("nothing is named or provides {relation}"));
                }
            }
            [only] => return Choice::New(only),
            [first, ..] => {
                warn!(
                    "{} is provided by {}; taking {} (request another one explicitly to change that)",
                    relation.name,
                    names_of(providers.iter().copied()),
                    first.name
                );
                return Choice::New(first);
            }
        }
    }
    Choice::Impossible(reasons.join("; "))
}

/// Checks every entry of `lock` (see [`LockedPackage::check`]) and that names are unique.
pub fn check_lock(lock: &Lock) -> Result<()> {
    let mut seen = BTreeSet::new();
    for package in &lock.packages {
        package.check()?;
        ensure!(
            seen.insert(package.name.as_str()),
            BadLockEntrySnafu {
                package: package.name.as_str(),
                message: "it is listed twice",
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::PackageIndex;
    use crate::packages::parse_packages;
    use crate::sources::ArchiveSource;

    fn stanza(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/main/{name}_{version}_amd64.deb\nSize: 100\nSHA256: {}\n{extra}\n",
            "ab".repeat(32)
        )
    }

    fn indexes() -> Indexes {
        let main = [
            stanza("app", "1.0-1", "Depends: libc6 (>= 2.34), awk, debconf (>= 0.5) | debconf-2.0, libssl3 | libssl1.1\nPre-Depends: init-system-helpers (>= 1.54~)"),
            stanza("libc6", "2.36-9+deb12u9", "Depends: libgcc-s1"),
            stanza("libgcc-s1", "12.2.0-14", "Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)"),
            stanza("gcc-12-base", "12.2.0-14", ""),
            stanza("mawk", "1.3.4-3", "Provides: awk"),
            stanza("original-awk", "2012-12-20-6", "Provides: awk"),
            stanza("debconf", "1.5.82", ""),
            stanza("cdebconf", "0.270", "Provides: debconf-2.0"),
            stanza("libssl3", "3.0.15-1~deb12u1", ""),
            stanza("init-system-helpers", "1.65.2", ""),
            stanza("needs-new", "1", "Depends: libc6 (>= 2.40)"),
            stanza("needs-virtual-version", "1", "Depends: mail-transport-agent (>= 2) | exim4"),
            stanza("postfix", "3.7", "Provides: mail-transport-agent"),
            stanza("exim4", "4.96", ""),
            stanza("self-provider", "1", "Provides: self-virtual\nDepends: self-virtual"),
        ]
        .join("\n");
        let security = stanza("libc6", "2.36-9+deb12u10", "Depends: libgcc-s1");
        let make = |uri: &str, suite: &str, text: &str| {
            let source = ArchiveSource::new(uri, suite);
            let mut packages = parse_packages(text, suite).unwrap();
            for p in &mut packages {
                p.source_uri = source.uri.clone();
                p.suite = suite.to_string();
            }
            PackageIndex { source, packages }
        };
        Indexes::new(vec![
            make("http://deb.debian.org/debian", "bookworm", &main),
            make(
                "http://deb.debian.org/debian-security",
                "bookworm-security",
                &security,
            ),
        ])
    }

    fn names(lock: &Lock) -> Vec<&str> {
        lock.packages.iter().map(|p| p.name.as_str()).collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn closure_with_excludes() {
        let indexes = indexes();
        let lock = resolve(
            &strings(&["app"]),
            &indexes,
            &strings(&["debconf", "init-system-helpers"]),
        )
        .unwrap();
        assert_eq!(
            names(&lock),
            [
                "app",
                "gcc-12-base",
                "libc6",
                "libgcc-s1",
                "libssl3",
                "mawk"
            ],
            "awk goes to the first provider by name; debconf and init-system-helpers are excluded"
        );
        let libc = lock.get("libc6").unwrap();
        assert_eq!(libc.version, "2.36-9+deb12u10", "the security update wins");
        assert_eq!(libc.source_uri, "http://deb.debian.org/debian-security");
        assert_eq!(libc.required_by, ["app", "libgcc-s1"]);
        assert_eq!(lock.get("gcc-12-base").unwrap().required_by, ["libgcc-s1"]);
        assert_eq!(lock.total_size(), 600);
        assert_eq!(lock.requests, ["app"]);
        assert_eq!(lock.excludes, ["debconf", "init-system-helpers"]);
    }

    #[test]
    fn without_excludes_the_first_alternative_is_taken() {
        let lock = resolve(&strings(&["app"]), &indexes(), &[]).unwrap();
        assert!(lock.get("debconf").is_some());
        assert!(lock.get("cdebconf").is_none());
        assert!(lock.get("init-system-helpers").is_some());
    }

    #[test]
    fn a_chosen_alternative_is_preferred() {
        let lock = resolve(&strings(&["original-awk", "app"]), &indexes(), &[]).unwrap();
        assert!(lock.get("mawk").is_none());
        assert_eq!(lock.get("original-awk").unwrap().required_by, ["app"]);
    }

    #[test]
    fn virtual_versions_and_self_provides() {
        let lock = resolve(&strings(&["needs-virtual-version"]), &indexes(), &[]).unwrap();
        assert_eq!(
            names(&lock),
            ["exim4", "needs-virtual-version"],
            "an unversioned Provides cannot satisfy a versioned dependency"
        );
        let lock = resolve(&strings(&["self-provider"]), &indexes(), &[]).unwrap();
        assert_eq!(names(&lock), ["self-provider"]);
        assert!(lock.packages[0].required_by.is_empty());
    }

    #[test]
    fn clear_errors() {
        let indexes = indexes();
        let err = resolve(&strings(&["nope"]), &indexes, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'nope'") && err.contains("bookworm-security"),
            "{err}"
        );
        let err = resolve(&strings(&["awk"]), &indexes, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mawk, original-awk"), "{err}");
        let err = resolve(&strings(&["needs-new"]), &indexes, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("libc6 (>= 2.40)") && err.contains("2.36-9+deb12u10"),
            "{err}"
        );
        // A virtual package with one provider is fine as a request.
        let lock = resolve(&strings(&["debconf-2.0"]), &indexes, &[]).unwrap();
        assert_eq!(names(&lock), ["cdebconf"]);
    }

    #[test]
    fn lock_round_trip() {
        let lock = resolve(&strings(&["app"]), &indexes(), &strings(&["debconf"])).unwrap();
        let text = lock.to_toml().unwrap();
        assert!(text.starts_with(LOCK_HEADER));
        assert!(text.contains("cargo xtask lock"));
        assert!(text.contains("[[package]]\nname = \"app\""));
        assert!(text.contains("source-uri = \"http://deb.debian.org/debian\""));
        let back: Lock = toml::from_str(&text).unwrap();
        assert_eq!(back, lock);
        check_lock(&back).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("packages/debian.lock");
        lock.save(&path).unwrap();
        assert_eq!(Lock::load(&path).unwrap(), lock);

        let mut newer = lock.clone();
        newer.packages.retain(|p| p.name != "mawk");
        newer.packages[0].version = "1.0-2".into();
        assert_eq!(
            lock.diff(&newer),
            ["~ app 1.0-1 -> 1.0-2", "- mawk 1.3.4-3"]
        );
    }

    #[test]
    fn lock_entry_checks() {
        let lock = resolve(&strings(&["libc6"]), &indexes(), &[]).unwrap();
        let good = lock.packages[0].clone();
        good.check().unwrap();
        for (field, value) in [
            ("filename", "pool/../../etc/passwd.deb"),
            ("filename", "/etc/x.deb"),
            ("sha256", "ABC"),
            ("source", "file:///"),
        ] {
            let mut bad = good.clone();
            match field {
                "filename" => bad.filename = value.into(),
                "sha256" => bad.sha256 = value.into(),
                _ => bad.source_uri = value.into(),
            }
            let err = bad.check().unwrap_err().to_string();
            assert!(err.contains("cargo xtask lock"), "{err}");
        }
        let twice = Lock {
            packages: vec![good.clone(), good],
            ..Lock::default()
        };
        assert!(check_lock(&twice).is_err());
        let err = Lock::load(Path::new("/nonexistent/debian.lock")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/debian.lock"));
    }
}
