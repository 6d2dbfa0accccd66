//! The image's one layer: a tar of the root tree in a fixed order with fixed metadata,
//! gzip-compressed, hashed both ways (the tar's sha256 is the config's `diff_id`, the gzip's
//! the manifest's layer digest) while it is written.

use crate::error::{IoSnafu, Result, UnsupportedFileSnafu};
use sha2::{Digest as _, Sha256};
use snafu::ResultExt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What [`write_layer`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the gzip stream, lowercase hex.
    pub digest: String,
    /// Size of the gzip stream in bytes.
    pub size: u64,
    /// sha256 of the uncompressed tar, lowercase hex.
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes.
    pub tar_size: u64,
    /// Number of entries (files, directories, symlinks) in the tar.
    pub entries: usize,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hash.finalize()), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One entry of the tree, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir(PathBuf),
    File(PathBuf),
    Symlink(PathBuf),
}

/// Every entry below `root` (not following symlinks), directories before their contents, each
/// directory's names in byte order: the same order on every host and every run.
pub(crate) fn walk(root: &Path) -> Result<Vec<Entry>> {
    fn into(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .context(IoSnafu {
                action: "list",
                path: &dir,
            })?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .context(IoSnafu {
                action: "list",
                path: &dir,
            })?;
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let path = root.join(&rel);
            let kind = fs::symlink_metadata(&path)
                .context(IoSnafu {
                    action: "inspect",
                    path: &path,
                })?
                .file_type();
            if kind.is_dir() {
                out.push(Entry::Dir(rel.clone()));
                into(root, &rel, out)?;
            } else if kind.is_file() {
                out.push(Entry::File(rel));
            } else if kind.is_symlink() {
                out.push(Entry::Symlink(rel));
            } else {
                return UnsupportedFileSnafu { path }.fail();
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    into(root, Path::new(""), &mut out)?;
    Ok(out)
}

/// A tar header with everything that could differ between hosts or runs fixed: owner 0:0
/// without names, `mtime`, the permission bits of the file (setuid and sticky kept).
fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// Writes the tar of `root` gzip-compressed to `out`, every entry with owner 0:0 and
/// modification time `mtime` (SOURCE_DATE_EPOCH), in [`walk`] order. The same tree gives the
/// same bytes.
pub fn write_layer(root: &Path, mtime: u64, out: &Path) -> Result<LayerInfo> {
    let io_error = |action: &str| IoSnafu {
        action: action.to_string(),
        path: out.to_path_buf(),
    };
    let file = File::create(out).context(io_error("create"))?;
    // The gzip header carries no name and no time (flate2 writes mtime 0 unless told).
    let gzip = flate2::GzBuilder::new().write(
        Hashing::new(io::BufWriter::new(file)),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    let entries = walk(root)?;
    for entry in &entries {
        let (rel, path) = match entry {
            Entry::Dir(rel) | Entry::File(rel) | Entry::Symlink(rel) => (rel, root.join(rel)),
        };
        let meta = fs::symlink_metadata(&path).context(IoSnafu {
            action: "inspect",
            path: &path,
        })?;
        let mode = meta.permissions().mode();
        match entry {
            Entry::Dir(_) => {
                let mut h = header(tar::EntryType::Directory, mode, 0, mtime);
                tar.append_data(&mut h, rel, io::empty())
                    .context(io_error("write"))?;
            }
            Entry::File(_) => {
                let mut h = header(tar::EntryType::Regular, mode, meta.len(), mtime);
                let source = File::open(&path).context(IoSnafu {
                    action: "read",
                    path: &path,
                })?;
                tar.append_data(&mut h, rel, source)
                    .context(io_error("write"))?;
            }
            Entry::Symlink(_) => {
                let target = fs::read_link(&path).context(IoSnafu {
                    action: "read the link",
                    path: &path,
                })?;
                let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
                tar.append_link(&mut h, rel, &target)
                    .context(io_error("write"))?;
            }
        }
    }
    let hashed_tar = tar.into_inner().context(io_error("finish the tar in"))?;
    let (gzip, diff_id, tar_size) = hashed_tar.finish();
    let hashed_gzip = gzip
        .finish()
        .context(io_error("finish the gzip stream in"))?;
    let (mut file, digest, size) = hashed_gzip.finish();
    file.flush().context(io_error("write"))?;
    Ok(LayerInfo {
        digest,
        size,
        diff_id,
        tar_size,
        entries: entries.len(),
    })
}
