//! Durable file operations: atomic replacement of files, directory creation, and the fsyncs that
//! make both survive a power loss.
//!
//! A flush to the disk is what a commit mostly costs (milliseconds each on a virtual disk), so
//! independent flushes are issued from several threads at once; the block layer merges them.

use crate::error::{IoSnafu, Result};
use snafu::ResultExt;
use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name prefix of temporary files; nothing else in the store starts with it.
pub(crate) const TMP_PREFIX: &str = ".tmp-";
/// Name prefix of directories being removed.
pub(crate) const TRASH_PREFIX: &str = ".trash-";

pub(crate) const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Most threads used to issue flushes at once.
const MAX_SYNC_THREADS: usize = 8;

pub(crate) fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// Makes an entry change in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .context(IoSnafu { path: dir })
}

/// Makes the contents of the file at `path` durable.
fn fdatasync_path(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_data())
        .context(IoSnafu { path })
}

/// Runs `op` on every item, on up to [`MAX_SYNC_THREADS`] threads; the first error wins.
fn in_parallel<T: Sync>(items: &[T], op: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    if items.len() <= 1 {
        return items.iter().try_for_each(&op);
    }
    let chunk = items.len().div_ceil(MAX_SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().try_for_each(&op)))
            .collect();
        let mut result = Ok(());
        for worker in workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

/// Files and directories whose changes must be flushed before an operation is durable. Each is
/// flushed once however often it changed.
#[derive(Debug, Default)]
pub(crate) struct SyncSet {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl SyncSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add_dir(&mut self, dir: &Path) {
        if !self.dirs.contains(dir) {
            self.dirs.insert(dir.to_path_buf());
        }
    }

    pub(crate) fn add_file(&mut self, file: &Path) {
        self.files.insert(file.to_path_buf());
    }

    /// Adds everything `other` holds.
    pub(crate) fn extend(&mut self, other: SyncSet) {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
    }

    /// Flushes file contents first, then the directories naming them.
    pub(crate) fn run(&self) -> Result<()> {
        let files: Vec<&PathBuf> = self.files.iter().collect();
        in_parallel(&files, |f| fdatasync_path(f))?;
        let dirs: Vec<&PathBuf> = self.dirs.iter().collect();
        in_parallel(&dirs, |d| match File::open(d) {
            // A directory that has gone since it was recorded (a pending transaction's
            // directory moved to the trash by the same commit) has no entries left to persist;
            // the rename that took it away is covered by its parent, which is in the set.
            Err(e) if is_absent(&e) => Ok(()),
            opened => opened
                .and_then(|f| f.sync_all())
                .context(IoSnafu { path: *d }),
        })
    }
}

/// True when the error means "there is nothing at this path" (including an ancestor that is a
/// file rather than a directory).
pub(crate) fn is_absent(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// Makes `dir` and any missing parents. The parent of every directory created is recorded in
/// `sync`, so that the new entries can be made durable.
pub(crate) fn ensure_dir(dir: &Path, sync: &mut SyncSet) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(std::io::Error::from(ErrorKind::NotADirectory))
                .context(IoSnafu { path: dir })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).context(IoSnafu { path: dir }),
    }
    let parent = parent_of(dir);
    ensure_dir(parent, sync)?;
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "created directory");
            sync.add_dir(parent);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).context(IoSnafu { path: dir }),
    }
}

/// Writes `contents` into a new temporary file in `dir` and returns its path and handle.
fn write_temp(dir: &Path, contents: &[u8]) -> Result<(PathBuf, File)> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_suffix()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .and_then(|mut file| file.write_all(contents).map(|()| file));
    match written {
        Ok(file) => Ok((tmp, file)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e).context(IoSnafu { path: &tmp })
        }
    }
}

/// Replaces each file atomically and durably: every new content goes to a temporary file in the
/// target's directory, all of them are flushed, renamed over their targets, and then every
/// directory involved is flushed. On return all files are durable.
pub(crate) fn write_files_durable(items: &[(PathBuf, &[u8])]) -> Result<()> {
    let mut sync = SyncSet::new();
    let mut temps: Vec<(PathBuf, File)> = Vec::with_capacity(items.len());
    let cleanup = |temps: &[(PathBuf, File)]| {
        for (tmp, _) in temps {
            let _ = fs::remove_file(tmp);
        }
    };
    for (path, contents) in items {
        let dir = parent_of(path);
        let made = ensure_dir(dir, &mut sync).and_then(|()| write_temp(dir, contents));
        match made {
            Ok(temp) => temps.push(temp),
            Err(e) => {
                cleanup(&temps);
                return Err(e);
            }
        }
    }
    if let Err(e) = in_parallel(&temps, |(tmp, file)| {
        file.sync_data().context(IoSnafu { path: tmp })
    }) {
        cleanup(&temps);
        return Err(e);
    }
    for (index, ((tmp, _), (path, _))) in temps.iter().zip(items).enumerate() {
        if let Err(e) = fs::rename(tmp, path) {
            cleanup(&temps[index..]);
            return Err(e).context(IoSnafu { path });
        }
        sync.add_dir(parent_of(path));
    }
    sync.run()
}

/// Replaces one file atomically (temporary file + rename) without waiting for the disk; the
/// file and its directory are recorded in `sync` for a later flush.
pub(crate) fn write_file_unsynced(path: &Path, contents: &[u8], sync: &mut SyncSet) -> Result<()> {
    let dir = parent_of(path);
    ensure_dir(dir, sync)?;
    let (tmp, file) = write_temp(dir, contents)?;
    drop(file);
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).context(IoSnafu { path });
    }
    sync.add_file(path);
    sync.add_dir(dir);
    Ok(())
}

/// First half of a durable replacement split in two: writes `contents` to a temporary file next
/// to `path` and records it in `sync`, so that its data is flushed with whatever else `sync`
/// holds. Returns the temporary file for [`commit_staged_all`] (or [`discard_staged`]).
pub(crate) fn stage_file(path: &Path, contents: &[u8], sync: &mut SyncSet) -> Result<PathBuf> {
    let dir = parent_of(path);
    ensure_dir(dir, sync)?;
    let (tmp, file) = write_temp(dir, contents)?;
    drop(file);
    sync.add_file(&tmp);
    Ok(tmp)
}

/// Second half: renames the staged files, whose data must already be flushed, over their
/// targets in order, then flushes each directory once.
pub(crate) fn commit_staged_all(tmps: &[PathBuf], paths: &[&Path]) -> Result<()> {
    let mut sync = SyncSet::new();
    for (index, (tmp, path)) in tmps.iter().zip(paths).enumerate() {
        if let Err(e) = fs::rename(tmp, path) {
            tmps[index..].iter().for_each(|tmp| discard_staged(tmp));
            return Err(e).context(IoSnafu { path: *path });
        }
        sync.add_dir(parent_of(path));
    }
    sync.run()
}

/// Deletes a staged file that will not be used (a leftover is also removed by the next `open`).
pub(crate) fn discard_staged(tmp: &Path) {
    let _ = fs::remove_file(tmp);
}

/// Moves the file `from` over `to` (same file system) without waiting for the disk; records
/// both directories and the file in `sync`. Returns false when `from` does not exist.
pub(crate) fn move_file_unsynced(from: &Path, to: &Path, sync: &mut SyncSet) -> Result<bool> {
    let dir = parent_of(to);
    ensure_dir(dir, sync)?;
    match fs::rename(from, to) {
        Ok(()) => {
            sync.add_file(to);
            sync.add_dir(dir);
            sync.add_dir(parent_of(from));
            Ok(true)
        }
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(e).context(IoSnafu { path: to }),
    }
}

/// Removes a file if it is there; records its directory in `sync`.
pub(crate) fn remove_file(path: &Path, sync: &mut SyncSet) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync.add_dir(parent_of(path));
            Ok(())
        }
        Err(e) if is_absent(&e) || e.kind() == ErrorKind::IsADirectory => Ok(()),
        Err(e) => Err(e).context(IoSnafu { path }),
    }
}

/// Reads a whole file; None when it does not exist or is a directory.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_absent(&e) || e.kind() == ErrorKind::IsADirectory => Ok(None),
        Err(e) => Err(e).context(IoSnafu { path }),
    }
}

/// Renames directory `dir` to a trash name in the same parent, so that it disappears in one
/// step; records the parent in `sync`. Returns the trash path, or None when `dir` did not exist.
/// The caller deletes the trash (leftover trash is deleted when the store is next opened).
pub(crate) fn move_to_trash(dir: &Path, sync: &mut SyncSet) -> Result<Option<PathBuf>> {
    let parent = parent_of(dir);
    let trash = parent.join(format!("{TRASH_PREFIX}{}", random_suffix()));
    match fs::rename(dir, &trash) {
        Ok(()) => {
            sync.add_dir(parent);
            Ok(Some(trash))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(IoSnafu { path: dir }),
    }
}

/// Deletes a trash directory; failures only leave garbage that the next `open` removes.
pub(crate) fn delete_trash(trash: &Path) {
    if let Err(e) = fs::remove_dir_all(trash) {
        tracing::warn!(path = %trash.display(), "cannot delete removed directory yet: {e}");
    }
}

/// Removes a directory tree durably and so that it never appears half-removed. Returns false
/// when there was nothing to remove.
pub(crate) fn remove_tree(dir: &Path) -> Result<bool> {
    let mut sync = SyncSet::new();
    let Some(trash) = move_to_trash(dir, &mut sync)? else {
        return Ok(false);
    };
    sync.run()?;
    delete_trash(&trash);
    Ok(true)
}

/// Deletes temporary files and trash directories left by an interrupted process, anywhere under
/// `dir`.
pub(crate) fn remove_leftovers(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(0),
        Err(e) => return Err(e).context(IoSnafu { path: dir }),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.context(IoSnafu { path: dir })?;
        let path = entry.path();
        let file_type = entry.file_type().context(IoSnafu { path: &path })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TRASH_PREFIX) && file_type.is_dir() {
            fs::remove_dir_all(&path).context(IoSnafu { path: &path })?;
            removed += 1;
        } else if name.starts_with(TMP_PREFIX) && !file_type.is_dir() {
            fs::remove_file(&path).context(IoSnafu { path: &path })?;
            removed += 1;
        } else if file_type.is_dir() {
            removed += remove_leftovers(&path)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod test {
    use super::*;

    fn write_durable(path: &Path, contents: &[u8]) -> Result<()> {
        write_files_durable(&[(path.to_path_buf(), contents)])
    }

    #[test]
    fn atomic_write_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/c");
        write_durable(&target, b"1").unwrap();
        write_durable(&target, b"2").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "2");
        // Only the target is in the directory: no temporary file stays behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c"]);

        fs::write(dir.path().join("a/.tmp-123"), "x").unwrap();
        fs::create_dir_all(dir.path().join("a/b/.trash-1/x")).unwrap();
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 2);
        assert!(target.exists());
        assert!(!dir.path().join("a/.tmp-123").exists());
    }

    #[test]
    fn many_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<(PathBuf, Vec<u8>)> = (0..20)
            .map(|i| {
                (
                    dir.path().join(format!("d{}/f{i}", i % 3)),
                    vec![b'0' + i % 10],
                )
            })
            .collect();
        let refs: Vec<(PathBuf, &[u8])> = items
            .iter()
            .map(|(p, c)| (p.clone(), c.as_slice()))
            .collect();
        write_files_durable(&refs).unwrap();
        for (path, contents) in &items {
            assert_eq!(&fs::read(path).unwrap(), contents);
        }
        // A failure (here: a file where a directory is needed) leaves no temporary files.
        fs::write(dir.path().join("blocker"), "x").unwrap();
        let bad = [
            (dir.path().join("d0/ok"), b"1".as_slice()),
            (dir.path().join("blocker/x"), b"1".as_slice()),
        ];
        assert!(write_files_durable(&bad).is_err());
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 0);
    }

    #[test]
    fn tree_removal() {
        let dir = tempfile::tempdir().unwrap();
        write_durable(&dir.path().join("t/x/y"), b"1").unwrap();
        assert!(remove_tree(&dir.path().join("t")).unwrap());
        assert!(!remove_tree(&dir.path().join("t")).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
