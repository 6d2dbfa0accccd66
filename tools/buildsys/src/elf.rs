//! Shared library closure: which libraries (and which dynamic loader) the kept ELF files need,
//! found the way the dynamic loader would find them inside the image tree.

use crate::error::{BadElfSnafu, IoSnafu, MissingLibrarySnafu, Result};
use crate::tree::{link_chain, Kind};
use snafu::ResultExt;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use tracing::debug;

/// Where glibc's loader looks when neither `DT_RUNPATH`/`DT_RPATH` nor `ld.so.cache` finds a
/// library (Debian's multiarch build; see `ld.so --help`). The image ships no `ld.so.cache`,
/// so these are what counts at run time.
pub const SYSTEM_LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// The dynamic linking facts of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `PT_INTERP`: the dynamic loader.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` entries.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` directories (colon lists split).
    pub runpath: Vec<String>,
    /// `DT_RPATH` directories (only used when there is no `DT_RUNPATH`).
    pub rpath: Vec<String>,
}

/// Reads the dynamic linking facts of `path`; `None` when it is not an ELF file.
pub fn dynamic_info(path: &Path) -> Result<Option<DynamicInfo>> {
    let bytes = std::fs::read(path).context(IoSnafu {
        action: "read",
        path,
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| {
        BadElfSnafu {
            path,
            message: e.to_string(),
        }
        .build()
    })?;
    let split = |list: &[&str]| -> Vec<String> {
        list.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Some(DynamicInfo {
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        runpath: split(&elf.runpaths),
        rpath: split(&elf.rpaths),
    }))
}

/// Adds to `kept` (paths relative to `root`) everything the kept ELF files need at run time:
/// their loader and `DT_NEEDED` libraries, recursively, with every symlink on the way (e.g.
/// `libz.so.1 -> libz.so.1.2.13`). Libraries are searched in `DT_RPATH` (without
/// `DT_RUNPATH`), `DT_RUNPATH` (with `$ORIGIN` expanded) and [`SYSTEM_LIBRARY_DIRS`]. Returns
/// the entries that were added. A library found nowhere is an error naming the file that
/// needs it.
pub fn add_closure(root: &Path, kept: &mut BTreeSet<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut added = Vec::new();
    let mut queue: VecDeque<PathBuf> = kept
        .iter()
        .filter(|p| matches!(crate::tree::kind(root, p), Ok(Some(Kind::File))))
        .cloned()
        .collect();
    let mut scanned = BTreeSet::new();
    // Libraries found so far by name: the loader reuses an object already loaded under the same
    // name, which is how e.g. libsystemd-core finds libsystemd-shared (found through the
    // systemd binary's RUNPATH) without a RUNPATH of its own.
    let mut loaded: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    while let Some(file) = queue.pop_front() {
        if !scanned.insert(file.clone()) {
            continue;
        }
        let Some(info) = dynamic_info(&root.join(&file))? else {
            continue;
        };
        let origin = Path::new("/").join(file.parent().unwrap_or(Path::new("")));
        let mut wanted: Vec<(String, Vec<PathBuf>)> = Vec::new();
        if let Some(interpreter) = &info.interpreter {
            wanted.push((interpreter.clone(), vec![PathBuf::from(interpreter)]));
        }
        let expand = |dir: &str| -> PathBuf {
            PathBuf::from(
                dir.replace("${ORIGIN}", &origin.to_string_lossy())
                    .replace("$ORIGIN", &origin.to_string_lossy()),
            )
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        if info.runpath.is_empty() {
            dirs.extend(info.rpath.iter().map(|d| expand(d)));
        }
        dirs.extend(info.runpath.iter().map(|d| expand(d)));
        dirs.extend(SYSTEM_LIBRARY_DIRS.iter().map(PathBuf::from));
        for library in &info.needed {
            let candidates = if library.contains('/') {
                vec![PathBuf::from(library)]
            } else {
                dirs.iter().map(|d| d.join(library)).collect()
            };
            wanted.push((library.clone(), candidates));
        }
        for (name, candidates) in wanted {
            let mut found = None;
            for candidate in &candidates {
                if let Some(chain) = link_chain(root, candidate)? {
                    if matches!(
                        crate::tree::kind(root, chain.last().expect("chains are never empty"))?,
                        Some(Kind::File)
                    ) {
                        found = Some(chain);
                        break;
                    }
                }
            }
            let found = found.or_else(|| loaded.get(&name).cloned());
            let Some(chain) = found else {
                return MissingLibrarySnafu {
                    binary: Path::new("/").join(&file).display().to_string(),
                    library: name,
                    searched: candidates
                        .iter()
                        .filter_map(|c| c.parent())
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                }
                .fail();
            };
            for entry in &chain {
                if kept.insert(entry.clone()) {
                    debug!(
                        "{} needs {name}: keeping /{}",
                        file.display(),
                        entry.display()
                    );
                    added.push(entry.clone());
                }
            }
            queue.push_back(chain.last().expect("chains are never empty").clone());
            loaded.entry(name).or_insert(chain);
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_build_hosts_own_binaries() {
        // The build host is Debian 12: /bin/ls is dynamically linked against libc.
        let Some(info) = dynamic_info(Path::new("/bin/ls")).unwrap() else {
            panic!("/bin/ls is not ELF?");
        };
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
        assert_eq!(dynamic_info(Path::new("/etc/hostname")).unwrap(), None);
    }

    #[test]
    fn closure_over_a_copy_of_host_files() {
        // Build a tiny merged-usr tree from the host's own /bin/ls and its libraries.
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        for dir in ["usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (link, target) in [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
        std::fs::copy("/bin/ls", root.join("usr/bin/ls")).unwrap();
        let info = dynamic_info(Path::new("/bin/ls")).unwrap().unwrap();
        let mut queue = info.needed.clone();
        let mut copied = BTreeSet::new();
        while let Some(lib) = queue.pop() {
            let host = Path::new("/lib/x86_64-linux-gnu").join(&lib);
            let real = host.canonicalize().unwrap();
            let name = real.file_name().unwrap();
            let dest = root.join("usr/lib/x86_64-linux-gnu").join(name);
            if copied.insert(lib.clone()) {
                std::fs::copy(&real, &dest).unwrap();
                if name != lib.as_str() {
                    std::os::unix::fs::symlink(
                        name,
                        root.join("usr/lib/x86_64-linux-gnu").join(&lib),
                    )
                    .unwrap();
                }
                if let Some(more) = dynamic_info(&real).unwrap() {
                    queue.extend(more.needed);
                }
            }
        }
        std::fs::copy(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            root.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            root.join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();

        let mut kept = BTreeSet::from([PathBuf::from("usr/bin/ls")]);
        let added = add_closure(root, &mut kept).unwrap();
        assert!(kept.contains(Path::new("usr/lib64/ld-linux-x86-64.so.2")));
        assert!(kept.contains(Path::new("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")));
        assert!(kept.contains(Path::new("usr/lib/x86_64-linux-gnu/libc.so.6")));
        assert!(!added.is_empty());

        // Remove libc: the error names the binary and the library.
        std::fs::remove_file(root.join("usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        let mut kept = BTreeSet::from([PathBuf::from("usr/bin/ls")]);
        let error = add_closure(root, &mut kept).unwrap_err().to_string();
        assert!(
            error.contains("/usr/bin/ls needs the shared library libc.so.6"),
            "{error}"
        );
    }
}
