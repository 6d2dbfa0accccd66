//! Unpacking a `.deb` into a directory without root privileges.
//!
//! A `.deb` is an `ar` archive holding `debian-binary` ("2.0"), `control.tar.*` and `data.tar.*`.
//! Only `data.tar` is unpacked: paths, file contents, symlinks, hard links and permission bits
//! (including setuid/setgid) are kept; owners are not (an unprivileged user cannot set them), so
//! [`extract_entries`] reports them for the image builder to apply later.

use crate::error::{ExtractSnafu, IoSnafu, NotADebSnafu, Result, UnsafeEntrySnafu};
use snafu::{ensure, ResultExt};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use tracing::debug;

/// What kind of file a tar entry made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Hard link to an earlier entry.
    HardLink,
    /// Anything else (device, fifo); unpacking those needs root and fails.
    Other,
}

/// One entry of a package's `data.tar` as unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedEntry {
    /// Where it was written (below the destination directory).
    pub path: PathBuf,
    /// Its path inside the image, e.g. `/usr/bin/hostname`.
    pub image_path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits from the package (including setuid, setgid, sticky).
    pub mode: u32,
    /// Owner from the package (not applied).
    pub uid: u64,
    /// Group from the package (not applied).
    pub gid: u64,
    /// Target of a symlink or hard link.
    pub link_target: Option<PathBuf>,
}

/// Unpacks the files of `deb` into `dest` (created if needed) and returns the paths written
/// (files, directories and links, in archive order; `dest` itself is not listed).
pub fn extract(deb: &Path, dest: &Path) -> Result<Vec<PathBuf>> {
    Ok(extract_entries(deb, dest)?
        .into_iter()
        .map(|e| e.path)
        .collect())
}

/// Like [`extract()`], with each entry's kind, mode, owner and link target.
///
/// Entries that would land outside `dest` (`..` components, or a path through a symlink that
/// leaves `dest`) are refused. Existing files are replaced, so several packages can be unpacked
/// into one tree. Directories stay writable for the owner while unpacking and get their
/// packaged mode at the end.
pub fn extract_entries(deb: &Path, dest: &Path) -> Result<Vec<ExtractedEntry>> {
    let file = std::fs::File::open(deb).context(IoSnafu {
        action: "open",
        path: deb,
    })?;
    std::fs::create_dir_all(dest).context(IoSnafu {
        action: "create directory",
        path: dest,
    })?;
    let mut archive = ar::Archive::new(file);
    let mut seen_version = false;
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| not_a_deb(deb, &format!("bad ar archive ({e})")))?;
        let name = String::from_utf8_lossy(member.header().identifier())
            .trim_end_matches('/')
            .to_string();
        debug!("{}: member {name}", deb.display());
        if name == "debian-binary" {
            let mut text = String::new();
            let mut member = member;
            member
                .read_to_string(&mut text)
                .map_err(|e| not_a_deb(deb, &format!("unreadable debian-binary ({e})")))?;
            if !text.trim().starts_with("2.") {
                return Err(not_a_deb(
                    deb,
                    &format!("unsupported format version '{}'", text.trim()),
                ));
            }
            seen_version = true;
            continue;
        }
        let Some(compression) = name.strip_prefix("data.tar") else {
            continue;
        };
        ensure!(
            seen_version,
            NotADebSnafu {
                path: deb,
                message: "data.tar comes before debian-binary",
            }
        );
        let reader: Box<dyn Read> = match compression {
            ".xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(member)),
            ".zst" => Box::new(
                zstd::stream::read::Decoder::new(member).context(ExtractSnafu { deb, dest })?,
            ),
            ".gz" => Box::new(flate2::read::MultiGzDecoder::new(member)),
            "" => Box::new(member),
            other => {
                return Err(not_a_deb(
                    deb,
                    &format!("data.tar{other} uses a compression this tool does not read"),
                ))
            }
        };
        return unpack_tar(reader, deb, dest);
    }
    Err(not_a_deb(deb, "it has no data.tar member"))
}

fn not_a_deb(deb: &Path, message: &str) -> crate::error::Error {
    crate::error::Error::NotADeb {
        path: deb.to_path_buf(),
        message: message.to_string(),
    }
}

fn unpack_tar(reader: impl Read, deb: &Path, dest: &Path) -> Result<Vec<ExtractedEntry>> {
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_preserve_ownerships(false);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);

    let io = |source: std::io::Error| crate::error::Error::Extract {
        deb: deb.to_path_buf(),
        dest: dest.to_path_buf(),
        source,
    };
    let canonical_dest = dest.canonicalize().map_err(io)?;
    let mut written = Vec::new();
    let mut directories = Vec::new();
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let raw_path = entry.path().map_err(io)?.into_owned();
        let mut relative = PathBuf::new();
        for part in raw_path.components() {
            match part {
                Component::Normal(part) => relative.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return UnsafeEntrySnafu {
                        deb,
                        dest,
                        entry: raw_path.display().to_string(),
                    }
                    .fail()
                }
            }
        }
        if relative.as_os_str().is_empty() {
            continue; // the "./" entry: dest itself
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::HardLink,
            _ => EntryKind::Other,
        };
        let mode = header.mode().map_err(io)? & 0o7777;
        let uid = header.uid().map_err(io)?;
        let gid = header.gid().map_err(io)?;
        let link_target = entry.link_name().map_err(io)?.map(|l| l.into_owned());

        let path = dest.join(&relative);
        if kind != EntryKind::Directory {
            remove_existing(&canonical_dest, &path).map_err(io)?;
        }
        let unpacked = entry.unpack_in(dest).map_err(io)?;
        ensure!(
            unpacked,
            UnsafeEntrySnafu {
                deb,
                dest,
                entry: raw_path.display().to_string(),
            }
        );
        if kind == EntryKind::Directory {
            // Keep it writable until the end, so that a read-only directory can still be filled.
            set_mode(&path, mode | 0o700)?;
            directories.push((path.clone(), mode));
        }
        written.push(ExtractedEntry {
            image_path: Path::new("/").join(&relative),
            path,
            kind,
            mode,
            uid,
            gid,
            link_target,
        });
    }
    for (path, mode) in directories.iter().rev() {
        set_mode(path, *mode)?;
    }
    debug!(
        "{}: {} entries unpacked into {}",
        deb.display(),
        written.len(),
        dest.display()
    );
    Ok(written)
}

/// Removes a file or symlink that a new entry replaces (tar does not replace hard links, and
/// replacing a symlink must not write through it). Only inside `dest`: if the parent directory
/// resolves elsewhere, nothing is touched and the unpacking itself refuses the entry.
fn remove_existing(canonical_dest: &Path, path: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.is_dir() {
        return Ok(());
    }
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    if parent.canonicalize()?.starts_with(canonical_dest) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).context(IoSnafu {
        action: "set the mode of",
        path,
    })
}
