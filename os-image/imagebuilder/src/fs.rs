//! File system images made with the host's tools, reproducibly: erofs for ROOT, ext4 for BOOT,
//! PRIVATE and DATA, FAT for the EFI system partition.

use crate::error::{self, Result};
use crate::tools::{self, DEBUGFS, MCOPY, MKFS_EROFS, MKFS_EXT4, MKFS_FAT, MMD};
use snafu::ResultExt;
use std::fs::{self, File, FileTimes};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Compression of the root image: lz4hc at its highest level, in 256 KiB physical clusters, as
/// Bottlerocket does. erofs-utils 1.5 (Debian 12) supports it and Linux 5.13 or later reads it.
pub const EROFS_COMPRESSION: &str = "lz4hc,12";
/// Physical cluster size for [`EROFS_COMPRESSION`].
pub const EROFS_PCLUSTER_BYTES: u64 = 256 * 1024;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> error::Error {
    let path = path.to_path_buf();
    move |source| error::Error::Io {
        action,
        path,
        source,
    }
}

/// Makes the compressed erofs image of `root_dir` at `out`: every file owned by root, every
/// timestamp `epoch`, a fixed UUID. The image is padded to a whole number of 4096-byte blocks.
/// Returns its size.
pub fn make_erofs(root_dir: &Path, out: &Path, uuid: Uuid, epoch: u64) -> Result<u64> {
    let _ = fs::remove_file(out);
    let mut cmd = tools::command(MKFS_EROFS, epoch)?;
    cmd.arg("--quiet")
        .arg(format!("-z{EROFS_COMPRESSION}"))
        .arg(format!("-C{EROFS_PCLUSTER_BYTES}"))
        .arg(format!("-T{epoch}"))
        .arg("--all-root")
        .arg(format!("-U{uuid}"))
        .arg(out)
        .arg(root_dir);
    tools::run(&mut cmd)?;
    let size = fs::metadata(out)
        .map_err(io("read the size of", out))?
        .len();
    let padded = size.div_ceil(4096) * 4096;
    if padded != size {
        File::options()
            .write(true)
            .open(out)
            .and_then(|f| f.set_len(padded))
            .map_err(io("pad", out))?;
    }
    Ok(padded)
}

/// What an ext4 image looks like.
#[derive(Debug, Clone)]
pub struct Ext4Spec<'a> {
    /// File system label.
    pub label: &'a str,
    /// Size of the image in bytes (a multiple of 4096).
    pub size: u64,
    pub uuid: Uuid,
    /// Seed of the directory hash (otherwise random).
    pub hash_seed: Uuid,
    /// Give it a journal (the writable partitions) or not (BOOT, which is never written on a
    /// node except by the updater, as a whole).
    pub journal: bool,
    /// Directory whose contents become the file system's contents.
    pub content: Option<&'a Path>,
    pub epoch: u64,
}

/// The `mke2fs.conf` used for every image, so that the host's own defaults (which change
/// between e2fsprogs releases and distributions) do not leak into the image. The features are
/// ones GRUB 2.06's ext2 driver and Linux 6.1 both read.
const MKE2FS_CONF: &str = "\
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
	reserved_ratio = 1

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		inode_ratio = 4096
	}
	floppy = {
		inode_ratio = 8192
	}
";

/// Makes an ext4 image at `out`. With content, every inode gets owner root and timestamps
/// `epoch` afterwards (mke2fs copies owners and times from the source files, including change
/// times that cannot be set on the host).
pub fn make_ext4(out: &Path, spec: &Ext4Spec<'_>, work: &Path) -> Result<()> {
    let conf = work.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).map_err(io("write", &conf))?;
    let _ = fs::remove_file(out);
    File::create(out)
        .and_then(|f| f.set_len(spec.size))
        .map_err(io("create", out))?;

    let mut cmd = tools::command(MKFS_EXT4, spec.epoch)?;
    cmd.env("MKE2FS_CONFIG", &conf)
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"])
        .args(["-L", spec.label])
        .arg(format!("-U{}", spec.uuid))
        .arg(format!(
            "-Ehash_seed={},root_owner=0:0,lazy_itable_init=0",
            spec.hash_seed
        ));
    if !spec.journal {
        cmd.args(["-O", "^has_journal"]);
    }
    if let Some(dir) = spec.content {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(out);
    tools::run(&mut cmd)?;

    if let Some(dir) = spec.content {
        normalize_inodes(out, dir, spec.epoch)?;
    }
    Ok(())
}

/// Sets owner, group and all four timestamps of every inode copied from `dir` (and of the root
/// directory and lost+found) with debugfs.
fn normalize_inodes(image: &Path, dir: &Path, epoch: u64) -> Result<()> {
    let mut paths = vec![String::from("/"), String::from("/lost+found")];
    list_tree(dir, dir, &mut paths)?;
    let mut script = String::new();
    for path in &paths {
        let quoted = format!("\"{path}\"");
        for field in ["uid", "gid"] {
            script.push_str(&format!("sif {quoted} {field} 0\n"));
        }
        for field in ["atime", "mtime", "ctime", "crtime"] {
            script.push_str(&format!("sif {quoted} {field} @{epoch}\n"));
            script.push_str(&format!("sif {quoted} {field}_extra 0\n"));
        }
    }
    let script_path = image.with_extension("debugfs");
    fs::write(&script_path, script).map_err(io("write", &script_path))?;
    let mut cmd = tools::command(DEBUGFS, epoch)?;
    cmd.arg("-w").arg("-f").arg(&script_path).arg(image);
    let shown = tools::show(&cmd);
    let output = cmd
        .output()
        .context(error::ToolStartSnafu { command: &shown })?;
    let _ = fs::remove_file(&script_path);
    // debugfs exits 0 even when a request fails; its complaints go to standard error, after
    // its version banner.
    let complaints: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .map(str::to_string)
        .collect();
    if !output.status.success() || !complaints.is_empty() {
        return error::ToolErrorsSnafu {
            command: shown,
            stderr: complaints.join("\n"),
        }
        .fail();
    }
    Ok(())
}

/// Every path below `dir`, as absolute paths inside the image, sorted.
fn list_tree(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io("read the directory", dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io("read the directory", dir))?;
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(base).expect("below base");
        let name = format!("/{}", rel.to_string_lossy());
        if name.contains('"') || name.contains('\n') {
            return error::InvalidInputSnafu {
                reason: format!("the file name {name:?} cannot be passed to debugfs"),
            }
            .fail();
        }
        out.push(name);
        if path.is_dir() && !path.is_symlink() {
            list_tree(base, &path, out)?;
        }
    }
    Ok(())
}

/// Sets the access and modification times of `path` (file or directory) to `epoch`.
pub fn set_times(path: &Path, epoch: u64) -> Result<()> {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    File::open(path)
        .and_then(|f| f.set_times(FileTimes::new().set_accessed(time).set_modified(time)))
        .map_err(io("set the timestamps of", path))
}

/// A FAT image of `size` bytes labelled `EFI-SYSTEM`, holding `files` (image path, host
/// path). Directories are created as needed. Timestamps come from `epoch` (mtools reads
/// `SOURCE_DATE_EPOCH` and `-m` keeps the source files' times, which the caller set).
pub fn make_fat(
    out: &Path,
    size: u64,
    volume_id: &str,
    files: &[(&str, &Path)],
    epoch: u64,
) -> Result<()> {
    let _ = fs::remove_file(out);
    File::create(out)
        .and_then(|f| f.set_len(size))
        .map_err(io("create", out))?;
    let mut cmd = tools::command(MKFS_FAT, epoch)?;
    // --invariant fixes the remaining time-based fields; -i after it sets our volume ID.
    cmd.args(["--invariant", "-i", volume_id, "-n", "EFI-SYSTEM"])
        .arg(out);
    tools::run(&mut cmd)?;

    let mut dirs: Vec<String> = Vec::new();
    for (inside, _) in files {
        let mut prefix = String::new();
        let parts: Vec<&str> = inside.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix.push('/');
            prefix.push_str(part);
            if !dirs.contains(&prefix) {
                dirs.push(prefix.clone());
            }
        }
    }
    if !dirs.is_empty() {
        let mut cmd = tools::command(MMD, epoch)?;
        cmd.arg("-i").arg(out);
        cmd.args(dirs.iter().map(|d| format!("::{d}")));
        tools::run(&mut cmd)?;
    }
    for (inside, host) in files {
        let mut cmd = tools::command(MCOPY, epoch)?;
        cmd.arg("-m")
            .arg("-i")
            .arg(out)
            .arg(host)
            .arg(format!("::{inside}"));
        tools::run(&mut cmd)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_trees_sorted_and_nested() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("grub")).unwrap();
        fs::write(dir.path().join("vmlinuz"), "k").unwrap();
        fs::write(dir.path().join("grub/grub.cfg"), "c").unwrap();
        fs::write(dir.path().join("initrd"), "i").unwrap();
        let mut out = Vec::new();
        list_tree(dir.path(), dir.path(), &mut out).unwrap();
        assert_eq!(out, ["/grub", "/grub/grub.cfg", "/initrd", "/vmlinuz"]);
    }
}
