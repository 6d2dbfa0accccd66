//! Filesystem work: mounts, the DATA partition, /etc, and the switch to the new root.

use crate::error::{
    CopySnafu, CreateDirSnafu, DataNotBlankSnafu, MkfsSnafu, MountSnafu, NoMkfsSnafu,
    ReadFileSnafu, Result, SyscallSnafu,
};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};
use snafu::ResultExt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{lchown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `RAMFS_MAGIC` from linux/magic.h (nix 0.29 has no constant for it).
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Creates `path` and its parents with mode 0755 if missing.
pub fn mkdir_p(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .context(CreateDirSnafu { path })
}

/// Mounts a filesystem of type `fstype` from `source` on `target`, creating `target` if missing.
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mkdir_p(target)?;
    mount(Some(source), target, Some(fstype), flags, data).context(MountSnafu {
        what: format!("{fstype} ({source})"),
        target,
    })
}

/// Bind-mounts `source` on `target`; `target` must already exist (it may be on a read-only fs).
pub fn bind(source: &Path, target: &Path) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(MountSnafu {
        what: format!("bind of {}", source.display()),
        target,
    })
}

/// Moves the mount at `source` to `target`.
pub fn move_mount(source: &Path, target: &Path) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .context(MountSnafu {
        what: format!("move of {}", source.display()),
        target,
    })
}

/// Mounts /proc, /sys, /dev (devtmpfs) and /run (tmpfs).
pub fn mount_api_filesystems() -> Result<()> {
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount_fs("proc", Path::new("/proc"), "proc", common, None)?;
    mount_fs("sysfs", Path::new("/sys"), "sysfs", common, None)?;
    mount_fs(
        "devtmpfs",
        Path::new("/dev"),
        "devtmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    mount_fs(
        "tmpfs",
        Path::new("/run"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
}

/// What the first bytes of the DATA partition say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataState {
    /// An ext2/3/4 superblock magic is present.
    Ext4,
    /// Only zero bytes: never formatted.
    Blank,
    /// Something else is there; never format it.
    Unknown,
}

/// How many leading bytes [`classify_data_header`] looks at.
pub const DATA_PROBE_BYTES: usize = 64 * 1024;

/// Classifies the first [`DATA_PROBE_BYTES`] of a partition.
pub fn classify_data_header(head: &[u8]) -> DataState {
    // The ext superblock starts at byte 1024; its magic 0xEF53 is at offset 0x38 in it.
    if head.len() >= 1082 && head[1080] == 0x53 && head[1081] == 0xef {
        DataState::Ext4
    } else if head.iter().all(|&b| b == 0) {
        DataState::Blank
    } else {
        DataState::Unknown
    }
}

fn read_head(device: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(DATA_PROBE_BYTES);
    fs::File::open(device)
        .and_then(|f| f.take(DATA_PROBE_BYTES as u64).read_to_end(&mut head))
        .context(ReadFileSnafu { path: device })?;
    Ok(head)
}

/// Places where a `mkfs.ext4` in the initramfs may live.
const MKFS_CANDIDATES: [&str; 4] = [
    "/usr/sbin/mkfs.ext4",
    "/sbin/mkfs.ext4",
    "/usr/bin/mkfs.ext4",
    "/bin/mkfs.ext4",
];

/// Mounts the DATA partition at `target` as ext4, formatting it first only if it is blank and the
/// initramfs has `mkfs.ext4`. Returns whether it was formatted.
pub fn mount_data(device: &Path, target: &Path) -> Result<bool> {
    let mut formatted = false;
    match classify_data_header(&read_head(device)?) {
        DataState::Ext4 => {}
        DataState::Unknown => return DataNotBlankSnafu { device }.fail(),
        DataState::Blank => {
            let mkfs = MKFS_CANDIDATES
                .iter()
                .map(Path::new)
                .find(|p| p.exists())
                .ok_or_else(|| NoMkfsSnafu { device }.build())?;
            let output = std::process::Command::new(mkfs)
                .args(["-q", "-F", "-L", "DATA"])
                .arg(device)
                .output()
                .map_err(|e| {
                    MkfsSnafu {
                        device,
                        detail: e.to_string(),
                    }
                    .build()
                })?;
            if !output.status.success() {
                return MkfsSnafu {
                    device,
                    detail: format!(
                        "{}: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                }
                .fail();
            }
            formatted = true;
        }
    }
    mount_fs(
        &device.to_string_lossy(),
        target,
        "ext4",
        MsFlags::MS_NOATIME,
        None,
    )?;
    Ok(formatted)
}

/// Copies the tree at `from` into the existing directory `to`, keeping modes, ownership and
/// symlinks. Device nodes, FIFOs and sockets are skipped. Returns the number of entries copied.
pub fn copy_tree(from: &Path, to: &Path) -> Result<usize> {
    let ctx = |from: &Path, to: &Path| CopySnafu {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
    };
    let mut copied = 0;
    let entries = fs::read_dir(from).context(ctx(from, to))?;
    for entry in entries {
        let entry = entry.context(ctx(from, to))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src).context(ctx(&src, &dst))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            match fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).context(ctx(&src, &dst)),
            }
            copied += copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src).context(ctx(&src, &dst))?;
            std::os::unix::fs::symlink(target, &dst).context(ctx(&src, &dst))?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).context(ctx(&src, &dst))?;
        } else {
            continue;
        }
        lchown(&dst, Some(meta.uid()), Some(meta.gid())).context(ctx(&src, &dst))?;
        if !kind.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .context(ctx(&src, &dst))?;
        }
        copied += 1;
    }
    Ok(copied)
}

/// Whether `path` is on a ramfs or tmpfs, i.e. safe to empty before switching root.
fn is_ram_backed(path: &Path) -> bool {
    statfs(path)
        .map(|s| {
            let magic = s.filesystem_type();
            magic == TMPFS_MAGIC || magic.0 == RAMFS_MAGIC
        })
        .unwrap_or(false)
}

/// Deletes everything below `dir` that is on device `dev`, not crossing into other mounts.
/// Errors are ignored: this only frees memory.
fn delete_contents(dir: &Path, dev: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            delete_contents(&path, dev);
            let _ = fs::remove_dir(&path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Makes `new_root` the root directory: moves the API filesystems into it, frees the initramfs
/// (best effort, and only if / really is a ramfs or tmpfs), moves `new_root` onto `/` and
/// chroots into it.
pub fn switch_root(new_root: &Path) -> Result<()> {
    for api in ["/proc", "/sys", "/dev", "/run"] {
        let target: PathBuf = new_root.join(api.trim_start_matches('/'));
        move_mount(Path::new(api), &target)?;
    }
    let sys = |op: &str| SyscallSnafu { op: op.to_string() };
    nix::unistd::chdir(new_root).context(sys(&format!("chdir {}", new_root.display())))?;
    if std::process::id() == 1 && is_ram_backed(Path::new("/")) {
        if let Ok(meta) = fs::symlink_metadata("/") {
            delete_contents(Path::new("/"), meta.dev());
        }
    }
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).context(MountSnafu {
        what: format!("move of {}", new_root.display()),
        target: PathBuf::from("/"),
    })?;
    nix::unistd::chroot(".").context(sys("chroot ."))?;
    nix::unistd::chdir("/").context(sys("chdir /"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_data_partition_heads() {
        let mut head = vec![0u8; DATA_PROBE_BYTES];
        assert_eq!(classify_data_header(&head), DataState::Blank);
        head[1080] = 0x53;
        head[1081] = 0xef;
        assert_eq!(classify_data_header(&head), DataState::Ext4);
        head[1081] = 0;
        assert_eq!(classify_data_header(&head), DataState::Unknown);
        assert_eq!(classify_data_header(&[]), DataState::Blank);
    }

    #[test]
    fn copies_trees_with_modes_and_links() {
        let root = std::env::temp_dir().join(format!("early-init-copy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let src = root.join("factory/etc");
        let dst = root.join("etc");
        mkdir_p(&src.join("ssh")).unwrap();
        mkdir_p(&dst).unwrap();
        fs::write(src.join("hostname"), "ballast\n").unwrap();
        fs::write(src.join("ssh/key"), "secret").unwrap();
        fs::set_permissions(src.join("ssh/key"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("../run/resolv.conf", src.join("resolv.conf")).unwrap();

        assert_eq!(copy_tree(&src, &dst).unwrap(), 4);
        assert_eq!(
            fs::read_to_string(dst.join("hostname")).unwrap(),
            "ballast\n"
        );
        let mode = fs::metadata(dst.join("ssh/key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_link(dst.join("resolv.conf")).unwrap(),
            PathBuf::from("../run/resolv.conf")
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
