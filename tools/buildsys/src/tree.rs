//! File tree helpers: resolving paths inside an image tree as if it were `/`, walking trees in
//! a stable order, and copying entries with normalized permissions.

use crate::error::{IoSnafu, Result, SymlinkLoopSnafu};
use snafu::ResultExt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links one resolution may follow (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Mode of directories the build creates.
pub const DIR_MODE: u32 = 0o755;

/// Kinds of tree entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else (device, FIFO, socket); never expected in package trees.
    Other,
}

fn kind_of(meta: &fs::Metadata) -> Kind {
    let t = meta.file_type();
    if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// The kind of `root/rel` without following a final symlink, or `None` if it does not exist.
pub fn kind(root: &Path, rel: &Path) -> Result<Option<Kind>> {
    let path = root.join(rel);
    match fs::symlink_metadata(&path) {
        Ok(meta) => Ok(Some(kind_of(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc_enotdir()) => Ok(None),
        Err(source) => Err(source).context(IoSnafu {
            action: "inspect",
            path,
        }),
    }
}

fn libc_enotdir() -> i32 {
    20 // ENOTDIR on Linux
}

/// Resolves `path` (absolute or relative, interpreted inside `root` as if `root` were `/`)
/// to its canonical form relative to `root`, following symlinks (absolute link targets are
/// taken relative to `root`, and `..` never leaves it). The final component is followed only if
/// `follow_last`. Returns `None` when a component does not exist.
pub fn resolve(root: &Path, path: &Path, follow_last: bool) -> Result<Option<PathBuf>> {
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut pending, path);
    pending.reverse();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&part);
        let is_last = pending.is_empty();
        match kind(root, &candidate)? {
            None => return Ok(None),
            Some(Kind::Symlink) if follow_last || !is_last => {
                links += 1;
                snafu::ensure!(links <= MAX_LINKS, SymlinkLoopSnafu { path });
                let target = fs::read_link(root.join(&candidate)).context(IoSnafu {
                    action: "read the link",
                    path: root.join(&candidate),
                })?;
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                let mut more = Vec::new();
                push_components(&mut more, &target);
                for part in more.into_iter().rev() {
                    pending.push(part);
                }
            }
            Some(_) => current = candidate,
        }
    }
    Ok(Some(current))
}

fn push_components(out: &mut Vec<std::ffi::OsString>, path: &Path) {
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part.to_os_string()),
            Component::ParentDir => out.push("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

/// The entries that make `path` reachable inside `root`: the entry itself at its canonical
/// directory, then, while it is a symlink, the entry its target names, and so on. The last
/// element is not a symlink. `None` if `path` does not exist (or a link in the chain dangles).
pub fn link_chain(root: &Path, path: &Path) -> Result<Option<Vec<PathBuf>>> {
    let mut chain = Vec::new();
    let mut next = path.to_path_buf();
    loop {
        snafu::ensure!(chain.len() <= MAX_LINKS, SymlinkLoopSnafu { path });
        let Some(file_name) = next.file_name().map(|n| n.to_os_string()) else {
            // "/" or a path ending in "..": resolve it fully, it is a directory.
            return Ok(resolve(root, &next, true)?.map(|p| {
                chain.push(p);
                chain
            }));
        };
        let parent = next.parent().unwrap_or(Path::new(""));
        let Some(parent) = resolve(root, parent, true)? else {
            return Ok(None);
        };
        let entry = parent.join(&file_name);
        match kind(root, &entry)? {
            None => return Ok(None),
            Some(Kind::Symlink) => {
                let target = fs::read_link(root.join(&entry)).context(IoSnafu {
                    action: "read the link",
                    path: root.join(&entry),
                })?;
                chain.push(entry);
                next = if target.is_absolute() {
                    target
                } else {
                    parent.join(target)
                };
            }
            Some(_) => {
                chain.push(entry);
                return Ok(Some(chain));
            }
        }
    }
}

/// Every entry below `dir` (not following symlinks), as paths relative to `dir`, sorted, with
/// their kinds. Directories come before their contents.
pub fn walk(dir: &Path) -> Result<Vec<(PathBuf, Kind)>> {
    let mut out = Vec::new();
    walk_into(dir, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk_into(base: &Path, rel: &Path, out: &mut Vec<(PathBuf, Kind)>) -> Result<()> {
    let dir = base.join(rel);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).context(IoSnafu {
        action: "list",
        path: &dir,
    })? {
        let entry = entry.context(IoSnafu {
            action: "list",
            path: &dir,
        })?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let meta = fs::symlink_metadata(base.join(&rel)).context(IoSnafu {
            action: "inspect",
            path: base.join(&rel),
        })?;
        let kind = kind_of(&meta);
        out.push((rel.clone(), kind));
        if kind == Kind::Dir {
            walk_into(base, &rel, out)?;
        }
    }
    Ok(())
}

/// Creates `dir` and missing parents with mode 0755.
pub fn mkdir_p(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdir_p(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => set_mode(dir, DIR_MODE),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(source) => Err(source).context(IoSnafu {
            action: "create directory",
            path: dir,
        }),
    }
}

/// Sets permission bits.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).context(IoSnafu {
        action: "set the mode of",
        path,
    })
}

/// Removes whatever is at `path` (file, link or whole directory); nothing if it is absent.
pub fn remove(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).context(IoSnafu {
            action: "remove",
            path,
        }),
        Ok(_) => fs::remove_file(path).context(IoSnafu {
            action: "remove",
            path,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(source).context(IoSnafu {
            action: "inspect",
            path,
        }),
    }
}

/// Writes a file with the given mode, creating parent directories (0755).
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        mkdir_p(parent)?;
    }
    remove(path)?;
    fs::write(path, contents).context(IoSnafu {
        action: "write",
        path,
    })?;
    set_mode(path, mode)
}

/// Creates a symlink `path -> target`, replacing whatever was at `path`.
pub fn symlink(target: &Path, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        mkdir_p(parent)?;
    }
    remove(path)?;
    std::os::unix::fs::symlink(target, path).context(IoSnafu {
        action: "create the symlink",
        path,
    })
}

/// Copies one entry (file, symlink or directory itself, not its contents) from `from` to `to`.
/// File permission bits are kept as given by `mode` (`None` keeps the source's, masked to
/// 0o7777); directories get 0755.
pub fn copy_entry(from: &Path, to: &Path, mode: Option<u32>) -> Result<()> {
    let meta = fs::symlink_metadata(from).context(IoSnafu {
        action: "inspect",
        path: from,
    })?;
    match kind_of(&meta) {
        Kind::Dir => mkdir_p(to),
        Kind::Symlink => {
            let target = fs::read_link(from).context(IoSnafu {
                action: "read the link",
                path: from,
            })?;
            symlink(&target, to)
        }
        Kind::File => {
            if let Some(parent) = to.parent() {
                mkdir_p(parent)?;
            }
            remove(to)?;
            fs::copy(from, to).context(IoSnafu {
                action: "copy to",
                path: to,
            })?;
            set_mode(to, mode.unwrap_or(meta.permissions().mode() & 0o7777))
        }
        Kind::Other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "device nodes, FIFOs and sockets cannot go into the image tree",
        ))
        .context(IoSnafu {
            action: "copy",
            path: from,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink as ln;

    fn tree() -> tempfile::TempDir {
        let temp = tempfile::tempdir().unwrap();
        let r = temp.path();
        fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(r.join("usr/lib64")).unwrap();
        ln("usr/lib", r.join("lib")).unwrap();
        ln("usr/lib64", r.join("lib64")).unwrap();
        fs::write(
            r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            "ld",
        )
        .unwrap();
        ln(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            r.join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        fs::write(r.join("usr/lib/x86_64-linux-gnu/libz.so.1.2.13"), "z").unwrap();
        ln(
            "libz.so.1.2.13",
            r.join("usr/lib/x86_64-linux-gnu/libz.so.1"),
        )
        .unwrap();
        ln("../../../../../etc", r.join("usr/lib/escape")).unwrap();
        ln("loop2", r.join("usr/loop1")).unwrap();
        ln("loop1", r.join("usr/loop2")).unwrap();
        temp
    }

    #[test]
    fn resolves_inside_the_root() {
        let temp = tree();
        let r = temp.path();
        assert_eq!(
            resolve(r, Path::new("/lib64/ld-linux-x86-64.so.2"), true)
                .unwrap()
                .unwrap(),
            Path::new("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            resolve(r, Path::new("/lib64/ld-linux-x86-64.so.2"), false)
                .unwrap()
                .unwrap(),
            Path::new("usr/lib64/ld-linux-x86-64.so.2")
        );
        // ".." stops at the root instead of leaving it.
        assert_eq!(
            resolve(r, Path::new("usr/lib/escape"), true).unwrap(),
            None,
            "etc does not exist inside the root"
        );
        fs::create_dir(r.join("etc")).unwrap();
        assert_eq!(
            resolve(r, Path::new("usr/lib/escape"), true)
                .unwrap()
                .unwrap(),
            Path::new("etc")
        );
        assert!(resolve(r, Path::new("usr/loop1"), true).is_err());
        assert_eq!(resolve(r, Path::new("nope/x"), true).unwrap(), None);
    }

    #[test]
    fn link_chains() {
        let temp = tree();
        let r = temp.path();
        let chain = link_chain(r, Path::new("/lib64/ld-linux-x86-64.so.2"))
            .unwrap()
            .unwrap();
        assert_eq!(
            chain,
            [
                PathBuf::from("usr/lib64/ld-linux-x86-64.so.2"),
                PathBuf::from("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            ]
        );
        let chain = link_chain(r, Path::new("lib/x86_64-linux-gnu/libz.so.1"))
            .unwrap()
            .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            link_chain(r, Path::new("lib/x86_64-linux-gnu/libq.so")).unwrap(),
            None
        );
    }

    #[test]
    fn walks_sorted_without_following_links() {
        let temp = tree();
        let entries = walk(temp.path()).unwrap();
        let names: Vec<String> = entries
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(entries
            .iter()
            .any(|(p, k)| p == Path::new("lib") && *k == Kind::Symlink));
        assert!(!names.iter().any(|n| n.starts_with("lib/")));
    }
}
