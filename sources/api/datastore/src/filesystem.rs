//! [`FilesystemDataStore`]: one file per key under a version directory; commits made atomic by a
//! redo journal. See the crate documentation for the layout.
//!
//! # How a commit stays all or nothing
//!
//! The version directory holds one journal file, `journal`, that is overwritten in place by
//! every commit. It holds a header line with the length and a checksum of the body, then the
//! body: the commit record (every changed key with its old and new value) and the pending
//! transaction to drop. A commit goes like this:
//!
//! 1. Read the pending keys of the transaction and the live values they replace; keep the keys
//!    whose value differs; refuse key conflicts. Nothing has been written.
//! 2. Write the journal and flush it (one `fdatasync`). **This is the commit point.** A torn
//!    write fails the checksum and counts as "no commit"; a complete one is replayed by `open`.
//! 3. Apply the changes to live and rename `pending/<tx>` to a trash name. Each new value is
//!    put in place by a rename: the pending file itself (already on disk, holding exactly that
//!    value) or, for an undo, a freshly written temporary file; deleted keys are unlinked. None
//!    of this is flushed yet: the journal can redo all of it. The commit returns here.
//! 4. In the background: flush every file and directory step 3 touched, then write the record
//!    durably as `history/<id>.json`, then delete the trash. Once the history record is durable
//!    the journal is *retired*: `open` only replays a journal whose id is newer than every
//!    history record. The next operation that writes anything waits for this step first, so a
//!    journal is never replayed over later changes, and the next commit never overwrites a
//!    journal that is still needed.
//!
//! Replaying writes every new value from the journal and deletes every deleted key (whatever
//! step 3 had or had not done), removes the transaction, flushes all of it and then writes the
//! history record, so it is harmless when some or all of step 3 had already happened. A crash before the
//! journal is complete on disk leaves the store as before the commit, with the transaction
//! still pending; a crash after leaves it as after the commit once `open` has run.
//!
//! **Group commit** ([`DataStore::commit_transactions`]): several transactions committed together
//! are consecutive commits with consecutive ids in one journal (frame version 2), so step 2 is
//! one write and one flush for all of them, step 3 applies them in order and step 4 settles
//! them together, renaming their history records in id order. `open` replays the commits of the
//! journal newer than every history record. A transaction that repeats one in the batch, or
//! whose keys lie above or below a key an earlier commit of the batch changes, goes to the next
//! batch, so every conflict check sees live as the commits before it left it.
//!
//! Why not write the journal through a temporary file and move it into the history at the end
//! of the commit: that needs five or more flushes in a row before a commit returns (journal
//! data, its directory, the live files, their directories, the pending directory, the history
//! directories), each a few milliseconds on a virtual disk. Here a commit waits for one.

use crate::error::{
    CorruptFileSnafu, EmptyTransactionSnafu, GroupCommitSnafu, InvalidKeySnafu,
    InvalidVersionSnafu, IoSnafu, LockedSnafu, NoSuchCommitSnafu, NotADatastoreSnafu, Result,
};
use crate::fsutil::{self, SyncSet, TMP_PREFIX};
use crate::key::{decode_segment, encode_segment, quote_segment, split_prefix};
use crate::{
    change_keys, check_conflicts, now_rfc3339, require_data_key, require_json, require_meta_key,
    undo_transaction_name, validate_transaction_name, Caller, Change, CommitRecord, Committed,
    DataStore, Key, KeyType, DEFAULT_HISTORY_LIMIT,
};
use nix::fcntl::{Flock, FlockArg};
use snafu::{ensure, IntoError, ResultExt};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tracing::{debug, info, warn};

const LIVE: &str = "live";
const PENDING: &str = "pending";
const HISTORY: &str = "history";
const JOURNAL: &str = "journal";
const LOCK: &str = "lock";
const CURRENT: &str = "current";
/// Beside a pending transaction's keys: pending key name -> id of the newest commit when the
/// key was staged (see "Commits that yield to newer values" in the crate documentation). Its name starts with
/// a `.`, so it is never taken for a key, and it goes wherever the transaction directory goes.
const STAGED_AT: &str = ".staged-at.json";

/// The journal body: a commit record plus what else the commit must finish.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Journal {
    #[serde(flatten)]
    record: CommitRecord,
    /// Pending transaction to remove with the commit (None for an undo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_pending: Option<String>,
}

/// The journal file format: `BALLAST-JOURNAL <version> <body length> <FNV-1a 64 of body,
/// hex>\n<body>`. Version 1 holds one commit (a [`Journal`] object); version 2 holds a batch of
/// consecutive commits made durable together (group commit), as `{"commits": [Journal, ...]}`
/// oldest first. A batch of one is written as version 1. Bytes after the body (left by a longer
/// earlier journal) are ignored.
mod frame {
    use super::Journal;

    const MAGIC: &str = "BALLAST-JOURNAL";
    const VERSION: &str = "1";
    const BATCH_VERSION: &str = "2";

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Batch {
        commits: Vec<Journal>,
    }

    fn checksum(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    pub(super) fn encode(journal: &Journal) -> serde_json::Result<Vec<u8>> {
        frame(VERSION, serde_json::to_vec(journal)?)
    }

    /// One frame for a batch of commits, oldest first.
    pub(super) fn encode_batch(journals: &[Journal]) -> serde_json::Result<Vec<u8>> {
        match journals {
            [one] => encode(one),
            _ => frame(
                BATCH_VERSION,
                serde_json::to_vec(&Batch {
                    commits: journals.to_vec(),
                })?,
            ),
        }
    }

    fn frame(version: &str, body: Vec<u8>) -> serde_json::Result<Vec<u8>> {
        let mut out = format!(
            "{MAGIC} {version} {} {:016x}\n",
            body.len(),
            checksum(&body)
        )
        .into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The commits in `bytes`, oldest first, or why there are none (empty, torn or foreign
    /// content).
    pub(super) fn decode_batch(bytes: &[u8]) -> Result<Vec<Journal>, String> {
        let (version, body) = checked_body(bytes)?;
        if version == VERSION {
            serde_json::from_slice(body)
                .map(|j| vec![j])
                .map_err(|e| format!("bad body: {e}"))
        } else {
            serde_json::from_slice::<Batch>(body)
                .map(|b| b.commits)
                .map_err(|e| format!("bad body: {e}"))
        }
    }

    /// The journal in `bytes` when it holds exactly one commit.
    #[cfg(test)]
    pub(super) fn decode(bytes: &[u8]) -> Result<Journal, String> {
        let mut batch = decode_batch(bytes)?;
        match batch.len() {
            1 => Ok(batch.remove(0)),
            n => Err(format!("{n} commits where one was expected")),
        }
    }

    /// The version and the body of a frame whose checksum matches.
    fn checked_body(bytes: &[u8]) -> Result<(&str, &[u8]), String> {
        if bytes.is_empty() {
            return Err("empty".to_string());
        }
        let header_end = bytes
            .iter()
            .take(80)
            .position(|b| *b == b'\n')
            .ok_or("no header line")?;
        let header = std::str::from_utf8(&bytes[..header_end]).map_err(|_| "bad header")?;
        let fields: Vec<&str> = header.split(' ').collect();
        let [magic, version, len, sum] = fields[..] else {
            return Err(format!("bad header {header:?}"));
        };
        if magic != MAGIC || (version != VERSION && version != BATCH_VERSION) {
            return Err(format!("unknown header {header:?}"));
        }
        let len: usize = len.parse().map_err(|_| "bad length")?;
        let sum = u64::from_str_radix(sum, 16).map_err(|_| "bad checksum field")?;
        let body = bytes
            .get(header_end + 1..header_end + 1 + len)
            .ok_or("body shorter than its header says")?;
        if checksum(body) != sum {
            return Err("checksum mismatch".to_string());
        }
        Ok((version, body))
    }
}

/// The last batch of commits (usually one): applied and visible, durable through its journal,
/// and being settled (step 4) by a background thread.
struct Unsettled {
    journals: Vec<Journal>,
    worker: JoinHandle<Result<()>>,
}

/// A datastore kept in a directory tree. Only one handle may have a given store open.
pub struct FilesystemDataStore {
    /// The version directory holding live/, pending/, history/.
    dir: PathBuf,
    live: PathBuf,
    pending: PathBuf,
    history_dir: PathBuf,
    journal_path: PathBuf,
    journal_file: File,
    history_limit: usize,
    /// Ids of the durable records in history/, oldest first.
    history_ids: VecDeque<u64>,
    /// Highest commit id ever used; the next commit gets one more.
    last_id: u64,
    unsettled: Option<Unsettled>,
    /// Commits, oldest first, whose journal is durable but whose application or settling
    /// failed (or that `open` found unfinished); they are replayed before anything else changes.
    failed: Vec<Journal>,
    _lock: Flock<File>,
}

impl std::fmt::Debug for FilesystemDataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesystemDataStore")
            .field("dir", &self.dir)
            .field("history_limit", &self.history_limit)
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

impl Drop for FilesystemDataStore {
    fn drop(&mut self) {
        if let Err(e) = self.settle() {
            warn!(dir = %self.dir.display(), "last commit left for the next open to finish: {e}");
        }
    }
}

/// Something found while walking a store tree.
enum Found {
    Data { key: Key, path: PathBuf },
    Meta { data: Key, meta: Key },
}

fn validate_version(version: &str) -> Result<()> {
    let reason = if version.is_empty() {
        "it is empty"
    } else if version.len() > 128 {
        "it is longer than 128 characters"
    } else if !version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    {
        "use only letters, digits, '.', '_', '+' and '-'"
    } else {
        return Ok(());
    };
    InvalidVersionSnafu { version, reason }.fail()
}

/// Follows symlinks at the last component only (current -> v1 -> v1.0 ...), each relative to
/// the directory holding the link.
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..16 {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&path).context(IoSnafu { path: &path })?;
                path = match path.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(path),
            Err(e) => return Err(e).context(IoSnafu { path: &path }),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP)).context(IoSnafu { path: &path })
}

fn history_file_name(id: u64) -> String {
    format!("{id:020}.json")
}

fn parse_history_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

fn serialize_record(record: &CommitRecord) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(record).map_err(|e| crate::Error::Serialization {
        reason: format!("cannot write commit record {}: {e}", record.id),
    })
}

/// Walks `dir` (which stands for the key segments in `segments`) and reports every data key and
/// metadata entry whose data key name starts with `prefix`. `filter`, when given, is a text the
/// next segment (as written in a key name) must start with.
fn walk_dir(
    dir: &Path,
    segments: &mut Vec<String>,
    filter: Option<&str>,
    prefix: &str,
    found: &mut dyn FnMut(Found) -> Result<()>,
) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if fsutil::is_absent(&e) => return Ok(()),
        Err(e) => return Err(e).context(IoSnafu { path: dir }),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            // The directory went away while being read (a transaction being removed).
            Err(e) if fsutil::is_absent(&e) => return Ok(()),
            Err(e) => return Err(e).context(IoSnafu { path: dir }),
        };
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        // Temporary files, trash and anything hidden are not keys.
        if name.starts_with('.') {
            continue;
        }
        let (segment_part, meta_part) = match name.split_once('.') {
            Some((segment, meta)) => (segment, Some(meta)),
            None => (name, None),
        };
        let Some(segment) = decode_segment(segment_part) else {
            debug!(path = %entry.path().display(), "skipping a file that is not a key");
            continue;
        };
        if let Some(filter) = filter {
            if !quote_segment(&segment).starts_with(filter) {
                continue;
            }
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        segments.push(segment);
        let result = match meta_part {
            None if file_type.is_dir() => walk_dir(&entry.path(), segments, None, prefix, found),
            None if file_type.is_file() => match Key::from_segments(KeyType::Data, segments) {
                Ok(key) if key.name().starts_with(prefix) => found(Found::Data {
                    key,
                    path: entry.path(),
                }),
                _ => Ok(()),
            },
            Some(meta) if file_type.is_file() => {
                let data = Key::from_segments(KeyType::Data, segments);
                let meta =
                    decode_segment(meta).and_then(|m| Key::from_segments(KeyType::Meta, &[m]).ok());
                match (data, meta) {
                    (Ok(data), Some(meta)) if data.name().starts_with(prefix) => {
                        found(Found::Meta { data, meta })
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
        segments.pop();
        result?;
    }
    Ok(())
}

/// Walks only the part of the tree under `root` that can hold keys starting with `prefix`.
fn walk_prefix(
    root: &Path,
    prefix: &str,
    found: &mut dyn FnMut(Found) -> Result<()>,
) -> Result<()> {
    let parts = split_prefix(prefix);
    let mut dir = root.to_path_buf();
    for segment in &parts.complete {
        dir.push(encode_segment(segment));
    }
    let filter = (parts.partial_is_one_segment && !parts.partial.is_empty())
        .then_some(parts.partial.as_str());
    let mut segments = parts.complete.clone();
    walk_dir(&dir, &mut segments, filter, prefix, found)
}

/// Everything stored strictly below `dir` (the directory of the key with `segments`): data keys
/// by name, metadata as a description. The flag says which is which.
fn stored_below(dir: &Path, segments: &[String]) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut segments = segments.to_vec();
    walk_dir(dir, &mut segments, None, "", &mut |found| {
        match found {
            Found::Data { key, .. } => out.push((key.name().to_string(), true)),
            Found::Meta { data, meta } => out.push((format!("metadata {meta} of {data}"), false)),
        }
        Ok(())
    })?;
    Ok(out)
}

/// A commit after step 1: nothing to record, or its journal entry.
enum Prepared {
    Nothing(CommitRecord),
    Commit(Journal),
}

/// Whether `key` lies strictly above or below a key in `changed` (an equal key does not count).
fn overlaps_other_than_equal(key: &Key, changed: &BTreeMap<Key, Option<String>>) -> bool {
    let len = key.segments().len();
    crate::ancestors(key).any(|above| changed.contains_key(&above))
        || changed.keys().any(|other| {
            other.segments().len() > len && other.segments()[..len] == key.segments()[..]
        })
}

/// A commit's changes by kind: keys given a value (with it) and keys deleted.
type SplitChanges<'a> = (Vec<(Key, &'a str)>, Vec<Key>);

/// The keys of a journal's changes, split into those given a value and those deleted.
fn split_changes(changes: &[Change]) -> Result<SplitChanges<'_>> {
    let mut sets = Vec::new();
    let mut deletes = Vec::new();
    for (key, change) in change_keys(changes)?.into_iter().zip(changes) {
        match &change.new {
            Some(value) => sets.push((key, value.as_str())),
            None => deletes.push(key),
        }
    }
    Ok((sets, deletes))
}

/// Step 4 of a batch of commits: make everything step 3 did durable, then the history records
/// (in id order, one directory flush for all), then delete the trash.
fn settle_commit(
    mut sync: SyncSet,
    records: Vec<(PathBuf, Vec<u8>)>,
    trash: Vec<PathBuf>,
) -> Result<()> {
    // The records go to temporary files that are flushed along with the applied changes; only
    // once all of those are durable are they renamed into place (and the renames flushed), so a
    // durable record still always means a fully durable commit.
    let mut staged = Vec::with_capacity(records.len());
    for (path, record) in &records {
        match fsutil::stage_file(path, record, &mut sync) {
            Ok(tmp) => staged.push(tmp),
            Err(e) => {
                staged.iter().for_each(|tmp| fsutil::discard_staged(tmp));
                return Err(e);
            }
        }
    }
    if let Err(e) = sync.run() {
        staged.iter().for_each(|tmp| fsutil::discard_staged(tmp));
        return Err(e);
    }
    let paths: Vec<&Path> = records.iter().map(|(path, _)| path.as_path()).collect();
    fsutil::commit_staged_all(&staged, &paths)?;
    for trash in trash {
        fsutil::delete_trash(&trash);
    }
    Ok(())
}

impl FilesystemDataStore {
    /// Makes `base_dir/v<version>/{live,pending,history}` and the relative symlink
    /// `base_dir/current -> v<version>` (made atomically: temporary link, rename, fsync), then
    /// opens the store. When `base_dir/current` already exists it just opens that store, even if
    /// it was made for another version (as Bottlerocket does when no migration applies; a
    /// warning is logged).
    pub fn create(base_dir: &Path, version: &str) -> Result<Self> {
        validate_version(version)?;
        let link_target = PathBuf::from(format!("v{version}"));
        let dir = base_dir.join(&link_target);
        let link = base_dir.join(CURRENT);
        match fs::symlink_metadata(&link) {
            Ok(_) => {
                let found = resolve_links(&link)?;
                let same = match (fs::canonicalize(&found), fs::canonicalize(&dir)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if !same {
                    warn!(
                        link = %link.display(),
                        found = %found.display(),
                        wanted = %dir.display(),
                        "the datastore belongs to another version; using it unchanged"
                    );
                }
                return Self::open(&link);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(IoSnafu { path: &link }),
        }

        // The directories and the (empty) journal file must be durable before the link that
        // makes them the store; creating the journal here, and not in `open`, saves `open` a
        // flush of its own.
        let mut sync = SyncSet::new();
        for sub in [LIVE, PENDING, HISTORY] {
            fsutil::ensure_dir(&dir.join(sub), &mut sync)?;
        }
        let journal_path = dir.join(JOURNAL);
        let created = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(fsutil::FILE_MODE)
            .open(&journal_path);
        match created {
            Ok(_) => sync.add_dir(&dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).context(IoSnafu {
                    path: &journal_path,
                })
            }
        }
        sync.run()?;
        // A link left by a crash during an earlier `create`.
        let stale_prefix = format!("{TMP_PREFIX}{CURRENT}-");
        for entry in fs::read_dir(base_dir).context(IoSnafu { path: base_dir })? {
            let entry = entry.context(IoSnafu { path: base_dir })?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&stale_prefix)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        let tmp = base_dir.join(format!("{stale_prefix}{}", fsutil::random_suffix()));
        std::os::unix::fs::symlink(&link_target, &tmp).context(IoSnafu { path: &tmp })?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(e).context(IoSnafu { path: &link });
        }
        fsutil::fsync_dir(base_dir)?;
        info!(link = %link.display(), target = %link_target.display(), "created datastore");
        Self::open(&dir)
    }

    /// Opens the store at `path` (`base_dir/current` or a version directory), takes its lock,
    /// deletes temporary files left by a crash and finishes any interrupted commit.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = resolve_links(path)?;
        let live = dir.join(LIVE);
        ensure!(live.is_dir(), NotADatastoreSnafu { path: &dir });

        let lock_path = dir.join(LOCK);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(fsutil::FILE_MODE)
            .open(&lock_path)
            .context(IoSnafu { path: &lock_path })?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return LockedSnafu { path: &dir }.fail(),
            Err((_, errno)) => {
                return Err(std::io::Error::from(errno)).context(IoSnafu { path: &lock_path })
            }
        };

        let mut sync = SyncSet::new();
        for sub in [PENDING, HISTORY] {
            fsutil::ensure_dir(&dir.join(sub), &mut sync)?;
        }
        let journal_path = dir.join(JOURNAL);
        let journal_existed = journal_path.exists();
        let journal_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(fsutil::FILE_MODE)
            .open(&journal_path)
            .context(IoSnafu {
                path: &journal_path,
            })?;
        if !journal_existed {
            sync.add_dir(&dir);
        }
        sync.run()?;
        let leftovers = fsutil::remove_leftovers(&dir)?;
        if leftovers > 0 {
            info!(
                count = leftovers,
                "removed files left by an interrupted write"
            );
        }

        let history_dir = dir.join(HISTORY);
        let mut ids = Vec::new();
        for entry in fs::read_dir(&history_dir).context(IoSnafu { path: &history_dir })? {
            let entry = entry.context(IoSnafu { path: &history_dir })?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_history_file_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let newest_recorded = ids.last().copied().unwrap_or(0);

        let mut store = FilesystemDataStore {
            live,
            pending: dir.join(PENDING),
            history_dir,
            journal_path,
            journal_file,
            dir,
            history_limit: DEFAULT_HISTORY_LIMIT,
            history_ids: ids.into(),
            last_id: newest_recorded,
            unsettled: None,
            failed: Vec::new(),
            _lock: lock,
        };

        let bytes = fs::read(&store.journal_path).context(IoSnafu {
            path: &store.journal_path,
        })?;
        match frame::decode_batch(&bytes) {
            Ok(journals) => {
                let newest = journals.last().map_or(0, |j| j.record.id);
                store.last_id = store.last_id.max(newest);
                // Commits of the batch whose history record is durable are complete (records
                // become durable in id order, after all the batch's changes).
                let unfinished: Vec<Journal> = journals
                    .into_iter()
                    .filter(|j| j.record.id > newest_recorded)
                    .collect();
                if !unfinished.is_empty() {
                    for journal in &unfinished {
                        info!(
                            id = journal.record.id,
                            tx = %journal.record.transaction,
                            "finishing a commit that was interrupted"
                        );
                    }
                    store.failed = unfinished;
                    store.settle()?;
                }
            }
            Err(reason) if bytes.is_empty() => debug!(reason, "no journal"),
            // A journal write cut short by a crash: that commit never happened.
            Err(reason) => info!(reason, "ignoring an incomplete journal"),
        }
        debug!(dir = %store.dir.display(), last_id = store.last_id, "opened datastore");
        Ok(store)
    }

    /// Keeps at most `limit` commit records (at least 1, so that ids keep growing across
    /// restarts). Older records are pruned at the next commit; `history()` shows the newest
    /// `limit` right away.
    pub fn with_history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit.max(1);
        self
    }

    /// The version directory the store works in (symlinks in the path given to `open` resolved).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The history bound in effect.
    pub fn history_limit(&self) -> usize {
        self.history_limit
    }

    /// Waits until the last commit is settled: every file it touched flushed, its history record
    /// written and its transaction directory deleted. Commits are durable without this (through
    /// the journal); every writing call does it first, and dropping the store does it too.
    pub fn sync(&mut self) -> Result<()> {
        self.settle()
    }

    fn root(&self, committed: &Committed) -> Result<PathBuf> {
        match committed {
            Committed::Live => Ok(self.live.clone()),
            Committed::Pending { tx } => {
                validate_transaction_name(tx)?;
                Ok(self.pending.join(tx))
            }
        }
    }

    /// Path of the file holding metadata `meta` of data key `data`: `<data path>.<meta>`.
    fn metadata_path(&self, meta: &Key, data: &Key) -> Result<PathBuf> {
        require_meta_key(meta)?;
        require_data_key(data)?;
        let path = data.path_under(&self.live);
        let last = data.segments().last().map(|s| encode_segment(s));
        let file_name = format!(
            "{}.{}",
            last.unwrap_or_default(),
            encode_segment(&meta.segments()[0])
        );
        if file_name.len() > crate::key::MAX_ENCODED_SEGMENT_LEN {
            return InvalidKeySnafu {
                name: meta.name(),
                reason: format!("together with {data} it is too long to be stored as a file name"),
            }
            .fail();
        }
        Ok(path.with_file_name(file_name))
    }

    fn read_tree(&self, root: &Path, prefix: &str) -> Result<BTreeMap<Key, String>> {
        let mut out = BTreeMap::new();
        walk_prefix(root, prefix, &mut |found| {
            if let Found::Data { key, path } = found {
                // A file deleted between listing and reading is simply gone.
                if let Some(value) = fsutil::read_optional(&path)? {
                    out.insert(key, value);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Refuses writes that would make a key both a value and a group, in the tree at `root`.
    fn check_tree_conflicts(
        &self,
        root: &Path,
        sets: &BTreeSet<&Key>,
        deletes: &BTreeSet<&Key>,
    ) -> Result<()> {
        check_conflicts(
            sets,
            deletes,
            |key| match fs::metadata(key.path_under(root)) {
                Ok(meta) => Ok(meta.is_file()),
                Err(e) if fsutil::is_absent(&e) => Ok(false),
                Err(e) => Err(e).context(IoSnafu {
                    path: key.path_under(root),
                }),
            },
            |key, deletes| {
                let path = key.path_under(root);
                if !path.is_dir() {
                    return Ok(None);
                }
                let deleted: BTreeSet<&str> = deletes.iter().map(|k| k.name()).collect();
                Ok(stored_below(&path, key.segments())?
                    .into_iter()
                    .find(|(name, is_data)| !(*is_data && deleted.contains(name.as_str())))
                    .map(|(name, _)| name))
            },
        )
    }

    fn corrupt_journal(&self, reason: impl std::fmt::Display) -> crate::Error {
        CorruptFileSnafu {
            path: &self.journal_path,
        }
        .into_error(<serde_json::Error as serde::de::Error>::custom(reason))
    }

    /// Removes the directory of a key that is about to become a value; the conflict check made
    /// sure only emptied directories can be in the way.
    fn clear_directory_in_the_way(path: &Path, sync: &mut SyncSet) -> Result<()> {
        if path.is_dir() {
            fs::remove_dir_all(path).context(IoSnafu { path })?;
            sync.add_dir(path.parent().unwrap_or(Path::new("/")));
        }
        Ok(())
    }

    /// Step 3 of a commit: apply the journal to live and hide the transaction, without flushing.
    /// Returns what must be flushed and the trash to delete.
    ///
    /// A new value that comes from the pending transaction is moved from there into live (the
    /// pending file holds exactly that value and is already on disk), which is cheaper than
    /// writing a new file; the transaction is being dropped anyway, and a replay writes the
    /// values from the journal instead.
    fn apply_unsynced(&self, journal: &Journal) -> Result<(SyncSet, Option<PathBuf>)> {
        let (sets, deletes) =
            split_changes(&journal.record.changes).map_err(|e| self.corrupt_journal(e))?;
        let from = journal
            .drop_pending
            .as_ref()
            .map(|tx| self.pending.join(tx));
        let mut sync = SyncSet::new();
        for key in &deletes {
            fsutil::remove_file(&key.path_under(&self.live), &mut sync)?;
        }
        for (key, value) in &sets {
            let path = key.path_under(&self.live);
            Self::clear_directory_in_the_way(&path, &mut sync)?;
            let moved = match &from {
                Some(from) => fsutil::move_file_unsynced(&key.path_under(from), &path, &mut sync)?,
                None => false,
            };
            if !moved {
                fsutil::write_file_unsynced(&path, value.as_bytes(), &mut sync)?;
            }
        }
        let trash = match &journal.drop_pending {
            Some(tx) => fsutil::move_to_trash(&self.pending.join(tx), &mut sync)?,
            None => None,
        };
        Ok((sync, trash))
    }

    /// Steps 3 and 4 in one go, flushing everything before returning; used to finish a journal
    /// found by `open` or left by a failure. Safe to repeat.
    fn replay_durably(&self, journal: &Journal) -> Result<()> {
        let (sets, deletes) =
            split_changes(&journal.record.changes).map_err(|e| self.corrupt_journal(e))?;
        let mut sync = SyncSet::new();
        for key in &deletes {
            fsutil::remove_file(&key.path_under(&self.live), &mut sync)?;
        }
        let mut items = Vec::with_capacity(sets.len());
        for (key, value) in &sets {
            let path = key.path_under(&self.live);
            Self::clear_directory_in_the_way(&path, &mut sync)?;
            items.push((path, value.as_bytes()));
        }
        sync.run()?;
        fsutil::write_files_durable(&items)?;
        if let Some(tx) = &journal.drop_pending {
            fsutil::remove_tree(&self.pending.join(tx))?;
        }
        let record = serialize_record(&journal.record)?;
        fsutil::write_files_durable(&[(
            self.history_dir.join(history_file_name(journal.record.id)),
            &record,
        )])
    }

    /// Notes that the record `id` is durable in history/ and prunes the oldest records beyond the
    /// limit. A deletion lost in a crash is simply repeated after the next commit.
    fn record_settled(&mut self, id: u64) {
        if self.history_ids.back().is_none_or(|last| *last < id) {
            self.history_ids.push_back(id);
        }
        while self.history_ids.len() > self.history_limit {
            let Some(old) = self.history_ids.pop_front() else {
                break;
            };
            let path = self.history_dir.join(history_file_name(old));
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != ErrorKind::NotFound {
                    warn!(path = %path.display(), "cannot prune history record: {e}");
                }
            }
        }
    }

    /// Finishes the last commit: waits for its background step, or replays it durably when that
    /// step (or applying it) failed. Every writing operation calls this first.
    fn settle(&mut self) -> Result<()> {
        if let Some(unsettled) = self.unsettled.take() {
            let ids = || unsettled.journals.iter().map(|j| j.record.id);
            let (first, last) = (ids().min().unwrap_or(0), ids().max().unwrap_or(0));
            match unsettled.worker.join() {
                Ok(Ok(())) => {
                    for id in ids() {
                        self.record_settled(id);
                    }
                }
                Ok(Err(e)) => {
                    warn!(first, last, "settling commits failed, replaying them: {e}");
                    self.failed.extend(unsettled.journals);
                }
                Err(_) => {
                    warn!(first, last, "settling commits panicked, replaying them");
                    self.failed.extend(unsettled.journals);
                }
            }
        }
        while let Some(journal) = self.failed.first() {
            self.replay_durably(journal)?;
            let id = journal.record.id;
            self.failed.remove(0);
            self.record_settled(id);
        }
        Ok(())
    }

    /// Commits `changes` under the name `transaction` through the journal. With no changes
    /// nothing is recorded; the pending transaction (if any) is still removed.
    fn run_commit(
        &mut self,
        transaction: &str,
        changes: Vec<Change>,
        drop_pending: Option<&str>,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        match self.prepare_commit(transaction, changes, drop_pending, caller, self.last_id + 1)? {
            Prepared::Nothing(record) => Ok(record),
            Prepared::Commit(journal) => {
                let record = journal.record.clone();
                self.write_batch(vec![journal])?;
                Ok(record)
            }
        }
    }

    /// Step 1 of a commit once its changes are known: refuses key conflicts and builds the
    /// journal entry with commit id `id`. With no changes nothing is recorded; the pending
    /// transaction (if any) is removed at once.
    fn prepare_commit(
        &self,
        transaction: &str,
        changes: Vec<Change>,
        drop_pending: Option<&str>,
        caller: Option<&Caller>,
        id: u64,
    ) -> Result<Prepared> {
        if changes.is_empty() {
            if let Some(tx) = drop_pending {
                fsutil::remove_tree(&self.pending.join(tx))?;
            }
            debug!(tx = transaction, "commit changed nothing; not recorded");
            return Ok(Prepared::Nothing(CommitRecord {
                id: 0,
                time: now_rfc3339(),
                transaction: transaction.to_string(),
                changes,
                caller: caller.cloned(),
            }));
        }
        let keys = change_keys(&changes)?;
        let sets: BTreeSet<&Key> = keys
            .iter()
            .zip(&changes)
            .filter(|(_, c)| c.new.is_some())
            .map(|(k, _)| k)
            .collect();
        let deletes: BTreeSet<&Key> = keys
            .iter()
            .zip(&changes)
            .filter(|(_, c)| c.new.is_none())
            .map(|(k, _)| k)
            .collect();
        self.check_tree_conflicts(&self.live, &sets, &deletes)?;
        Ok(Prepared::Commit(Journal {
            record: CommitRecord {
                id,
                time: now_rfc3339(),
                transaction: transaction.to_string(),
                changes,
                caller: caller.cloned(),
            },
            drop_pending: drop_pending.map(str::to_string),
        }))
    }

    /// Steps 2 to 4 for consecutive commits (ids in order, the first one more than `last_id`):
    /// one journal write and one flush make all of them durable at once, then they are applied
    /// in order and settled together in the background. `Ok` means every one is durable.
    fn write_batch(&mut self, journals: Vec<Journal>) -> Result<()> {
        let Some(last) = journals.last().map(|j| j.record.id) else {
            return Ok(());
        };
        let frame = frame::encode_batch(&journals).map_err(|e| crate::Error::Serialization {
            reason: format!("cannot write the commit journal: {e}"),
        })?;
        let mut records = Vec::with_capacity(journals.len());
        for journal in &journals {
            records.push((
                self.history_dir.join(history_file_name(journal.record.id)),
                serialize_record(&journal.record)?,
            ));
        }

        // Step 2, the commit point. After an error here the journal may or may not be on disk;
        // finishing it (through `failed`) makes the outcome definite: committed.
        self.last_id = last;
        if let Err(e) = self
            .journal_file
            .write_all_at(&frame, 0)
            .and_then(|()| self.journal_file.sync_data())
        {
            self.failed.extend(journals);
            return Err(e).context(IoSnafu {
                path: &self.journal_path,
            });
        }

        // Step 3, one commit after the other, so that a later commit's value wins.
        let mut sync = SyncSet::new();
        let mut trash = Vec::new();
        for journal in &journals {
            match self.apply_unsynced(journal) {
                Ok((applied, removed)) => {
                    sync.extend(applied);
                    trash.extend(removed);
                }
                Err(e) => {
                    warn!(
                        id = journal.record.id,
                        "applying commit failed, replaying it: {e}"
                    );
                    self.failed.extend(journals);
                    return self.settle();
                }
            }
        }
        for journal in &journals {
            debug!(
                id = journal.record.id,
                tx = journal.record.transaction,
                changes = journal.record.changes.len(),
                "committed"
            );
        }

        // Step 4, in the background.
        let spawned = std::thread::Builder::new()
            .name("datastore-settle".to_string())
            .spawn(move || settle_commit(sync, records, trash));
        match spawned {
            Ok(worker) => self.unsettled = Some(Unsettled { journals, worker }),
            Err(e) => {
                debug!("cannot start a settling thread ({e}); settling now");
                self.failed.extend(journals);
                self.settle()?;
            }
        }
        Ok(())
    }

    /// Group commit: commits as many of `txs`, from the front, as can share one journal write
    /// and one flush, and returns their results (at least one unless `txs` is empty). A
    /// transaction is left for the next batch when it repeats one already in the batch, or when
    /// one of its keys lies above or below a key that an earlier commit of the batch changes
    /// (its conflict check must see that commit applied). A key that an earlier commit of the
    /// batch changes too is fine: the later value wins, as one commit after the other.
    /// The caller has settled the previous commit.
    fn commit_batch(&mut self, txs: &[(&str, Option<&Caller>)]) -> Vec<Result<CommitRecord>> {
        let mut prepared: Vec<Result<Prepared>> = Vec::new();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        // Keys changed by earlier commits of the batch, with their new values.
        let mut overlay: BTreeMap<Key, Option<String>> = BTreeMap::new();
        let mut next_id = self.last_id + 1;
        for &(tx, caller) in txs {
            if !names.insert(tx) {
                break;
            }
            let pending = validate_transaction_name(tx)
                .and_then(|()| self.read_tree(&self.pending.join(tx), ""));
            let pending = match pending {
                Ok(pending) if pending.is_empty() => {
                    prepared.push(EmptyTransactionSnafu { tx }.fail());
                    continue;
                }
                Ok(pending) => pending,
                Err(e) => {
                    prepared.push(Err(e));
                    continue;
                }
            };
            if pending
                .keys()
                .any(|key| overlaps_other_than_equal(key, &overlay))
            {
                break;
            }
            let changes = self.changes_over(pending, &overlay);
            let result = changes
                .and_then(|changes| self.prepare_commit(tx, changes, Some(tx), caller, next_id));
            if let Ok(Prepared::Commit(journal)) = &result {
                next_id += 1;
                for change in &journal.record.changes {
                    if let Ok(key) = Key::new(KeyType::Data, &change.key) {
                        overlay.insert(key, change.new.clone());
                    }
                }
            }
            prepared.push(result);
        }
        let journals: Vec<Journal> = prepared
            .iter()
            .filter_map(|p| match p {
                Ok(Prepared::Commit(journal)) => Some(journal.clone()),
                _ => None,
            })
            .collect();
        let outcome = self.write_batch(journals).map_err(|e| e.to_string());
        let mut first_failure = true;
        prepared
            .into_iter()
            .zip(txs)
            .map(|(result, (tx, _))| match result? {
                Prepared::Nothing(record) => Ok(record),
                Prepared::Commit(journal) => match &outcome {
                    Ok(()) => Ok(journal.record),
                    Err(reason) => {
                        let reason = if std::mem::take(&mut first_failure) {
                            reason.clone()
                        } else {
                            format!("it shared its flush with an earlier commit: {reason}")
                        };
                        GroupCommitSnafu { tx: *tx, reason }.fail()
                    }
                },
            })
            .collect()
    }

    /// The changes `pending` makes to live as it will be after the commits in `overlay`.
    fn changes_over(
        &self,
        pending: BTreeMap<Key, String>,
        overlay: &BTreeMap<Key, Option<String>>,
    ) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for (key, new) in pending {
            let old = match overlay.get(&key) {
                Some(value) => value.clone(),
                None => fsutil::read_optional(&key.path_under(&self.live))?,
            };
            if old.as_ref() != Some(&new) {
                changes.push(Change {
                    key: key.name().to_string(),
                    old,
                    new: Some(new),
                });
            }
        }
        Ok(changes)
    }

    /// Commits pending transaction `tx`; with `keeping_newer`, keys changed by a commit since
    /// they were staged keep their live value.
    fn commit_pending(
        &mut self,
        tx: &str,
        keeping_newer: bool,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        validate_transaction_name(tx)?;
        self.settle()?;
        let mut pending = self.read_tree(&self.pending.join(tx), "")?;
        ensure!(!pending.is_empty(), EmptyTransactionSnafu { tx });
        if keeping_newer {
            let stale = self.stale_keys(tx)?;
            crate::drop_stale(tx, &mut pending, &stale);
        }
        let mut changes = Vec::new();
        for (key, new) in pending {
            let old = fsutil::read_optional(&key.path_under(&self.live))?;
            if old.as_ref() != Some(&new) {
                changes.push(Change {
                    key: key.name().to_string(),
                    old,
                    new: Some(new),
                });
            }
        }
        self.run_commit(tx, changes, Some(tx), caller)
    }

    /// When each key of pending transaction `tx` was staged. A missing or unreadable record
    /// (pending writes are not flushed) counts as empty: such keys are never stale.
    fn read_staged_at(&self, tx: &str) -> Result<BTreeMap<Key, u64>> {
        let path = self.pending.join(tx).join(STAGED_AT);
        let Some(text) = fsutil::read_optional(&path)? else {
            return Ok(BTreeMap::new());
        };
        let names: BTreeMap<String, u64> = match serde_json::from_str(&text) {
            Ok(names) => names,
            Err(e) => {
                warn!(path = %path.display(), "ignoring an unreadable staging record: {e}");
                return Ok(BTreeMap::new());
            }
        };
        Ok(names
            .into_iter()
            .filter_map(|(name, id)| Key::new(KeyType::Data, &name).ok().map(|key| (key, id)))
            .collect())
    }

    /// Notes that `keys` of pending transaction `tx` were staged now, i.e. after commit
    /// `last_id`. Written like the pending values: atomically, not flushed.
    fn record_staged(
        &self,
        tx: &str,
        keys: impl Iterator<Item = Key>,
        sync: &mut SyncSet,
    ) -> Result<()> {
        let mut staged = self.read_staged_at(tx)?;
        for key in keys {
            staged.insert(key, self.last_id);
        }
        let names: BTreeMap<&str, u64> = staged.iter().map(|(k, id)| (k.name(), *id)).collect();
        let text = serde_json::to_vec(&names).map_err(|e| crate::Error::Serialization {
            reason: format!("cannot write the staging record of transaction {tx}: {e}"),
        })?;
        fsutil::write_file_unsynced(&self.pending.join(tx).join(STAGED_AT), &text, sync)
    }

    /// The keys of pending transaction `tx` that a commit changed after they were staged.
    fn stale_keys(&self, tx: &str) -> Result<BTreeSet<Key>> {
        let staged_at = self.read_staged_at(tx)?;
        let mut stale = BTreeSet::new();
        let Some(oldest) = staged_at.values().min().copied() else {
            return Ok(stale);
        };
        for (id, record) in self.known_records() {
            if id <= oldest {
                continue;
            }
            match record {
                Some(record) => crate::mark_stale(&staged_at, record, &mut stale),
                None => crate::mark_stale(&staged_at, &self.read_record(id)?, &mut stale),
            }
        }
        Ok(stale)
    }

    fn read_record(&self, id: u64) -> Result<CommitRecord> {
        let path = self.history_dir.join(history_file_name(id));
        let Some(text) = fsutil::read_optional(&path)? else {
            return NoSuchCommitSnafu { id }.fail();
        };
        serde_json::from_str(&text).context(CorruptFileSnafu { path })
    }

    /// The commit records from newest to oldest that are visible, as (id, record if in memory).
    fn known_records(&self) -> Vec<(u64, Option<&CommitRecord>)> {
        let mut known: Vec<(u64, Option<&CommitRecord>)> =
            self.history_ids.iter().map(|id| (*id, None)).collect();
        let in_memory = self
            .unsettled
            .iter()
            .flat_map(|u| &u.journals)
            .chain(&self.failed);
        for journal in in_memory {
            let id = journal.record.id;
            if known.last().is_none_or(|(last, _)| *last < id) {
                known.push((id, Some(&journal.record)));
            }
        }
        let skip = known.len().saturating_sub(self.history_limit);
        known.split_off(skip)
    }
}

impl DataStore for FilesystemDataStore {
    fn list_populated_keys(&self, prefix: &str, committed: &Committed) -> Result<BTreeSet<Key>> {
        let root = self.root(committed)?;
        let mut out = BTreeSet::new();
        walk_prefix(&root, prefix, &mut |found| {
            if let Found::Data { key, .. } = found {
                out.insert(key);
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn get_key(&self, key: &Key, committed: &Committed) -> Result<Option<String>> {
        require_data_key(key)?;
        fsutil::read_optional(&key.path_under(&self.root(committed)?))
    }

    fn get_prefix(&self, prefix: &str, committed: &Committed) -> Result<BTreeMap<Key, String>> {
        self.read_tree(&self.root(committed)?, prefix)
    }

    fn set_keys(&mut self, pairs: &BTreeMap<Key, String>, committed: &Committed) -> Result<()> {
        let root = self.root(committed)?;
        for (key, value) in pairs {
            require_data_key(key)?;
            require_json(key, value)?;
        }
        if committed == &Committed::Live {
            self.settle()?;
        }
        let sets: BTreeSet<&Key> = pairs.keys().collect();
        self.check_tree_conflicts(&root, &sets, &BTreeSet::new())?;
        if let Committed::Pending { tx } = committed {
            // Pending values need atomic replacement but not durability: a commit records
            // them in its journal before it makes them live, and storewolf drops every pending
            // transaction at boot, so waiting for the disk here would only slow `apiclient set`.
            // Nor do they wait for the previous commit to settle: settling touches live and
            // history only, and that commit already moved its own transaction to the trash.
            let mut unsynced = SyncSet::new();
            // Recorded before the values, so that a value is never newer than its record.
            self.record_staged(tx, pairs.keys().cloned(), &mut unsynced)?;
            for (key, value) in pairs {
                fsutil::write_file_unsynced(
                    &key.path_under(&root),
                    value.as_bytes(),
                    &mut unsynced,
                )?;
            }
            return Ok(());
        }
        let items: Vec<(PathBuf, &[u8])> = pairs
            .iter()
            .map(|(key, value)| (key.path_under(&root), value.as_bytes()))
            .collect();
        fsutil::write_files_durable(&items)
    }

    fn unset_key(&mut self, key: &Key, committed: &Committed) -> Result<()> {
        require_data_key(key)?;
        let root = self.root(committed)?;
        self.settle()?;
        let mut sync = SyncSet::new();
        fsutil::remove_file(&key.path_under(&root), &mut sync)?;
        sync.run()
    }

    fn list_populated_metadata(
        &self,
        prefix: &str,
        metadata_key: Option<&Key>,
    ) -> Result<BTreeMap<Key, BTreeSet<Key>>> {
        if let Some(meta) = metadata_key {
            require_meta_key(meta)?;
        }
        let mut out: BTreeMap<Key, BTreeSet<Key>> = BTreeMap::new();
        walk_prefix(&self.live, prefix, &mut |found| {
            if let Found::Meta { data, meta } = found {
                if metadata_key.is_none_or(|wanted| *wanted == meta) {
                    out.entry(data).or_default().insert(meta);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn get_metadata(&self, metadata_key: &Key, data_key: &Key) -> Result<Option<String>> {
        match self.metadata_path(metadata_key, data_key) {
            Ok(path) => fsutil::read_optional(&path),
            // Metadata whose file name would be too long was never stored: there is none.
            Err(crate::Error::InvalidKey { .. })
                if require_meta_key(metadata_key).is_ok() && require_data_key(data_key).is_ok() =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn set_metadata(&mut self, metadata_key: &Key, data_key: &Key, value: &str) -> Result<()> {
        let entry = BTreeMap::from([((metadata_key.clone(), data_key.clone()), value.to_string())]);
        self.set_live_batch(&BTreeMap::new(), &entry)
    }

    fn set_live_batch(
        &mut self,
        data: &BTreeMap<Key, String>,
        metadata: &BTreeMap<(Key, Key), String>,
    ) -> Result<()> {
        for (key, value) in data {
            require_data_key(key)?;
            require_json(key, value)?;
        }
        let mut items: Vec<(PathBuf, &[u8])> = Vec::with_capacity(data.len() + metadata.len());
        for ((meta, key), value) in metadata {
            items.push((self.metadata_path(meta, key)?, value.as_bytes()));
            require_json(key, value)?;
        }
        if items.is_empty() && data.is_empty() {
            return Ok(());
        }
        self.settle()?;
        let sets: BTreeSet<&Key> = data.keys().collect();
        self.check_tree_conflicts(&self.live, &sets, &BTreeSet::new())?;
        // Metadata may sit on a group key, but not below a key that holds a value, whether it
        // holds one already or is given one by this batch. Many entries share their groups.
        let mut clear: BTreeSet<Key> = BTreeSet::new();
        for (_, key) in metadata.keys() {
            for above in crate::ancestors(key) {
                if clear.contains(&above) {
                    continue;
                }
                let is_value = sets.contains(&above)
                    || fs::metadata(above.path_under(&self.live)).is_ok_and(|m| m.is_file());
                if is_value {
                    return crate::error::KeyConflictSnafu {
                        key: key.name(),
                        other: above.name(),
                        reason: "the other key holds a value, so nothing can be stored under it",
                    }
                    .fail();
                }
                clear.insert(above);
            }
        }
        items.extend(
            data.iter()
                .map(|(key, value)| (key.path_under(&self.live), value.as_bytes())),
        );
        // One batch: every file is written to a temporary name first, then all are flushed
        // together, renamed into place and their directories flushed together.
        fsutil::write_files_durable(&items)
    }

    fn unset_metadata(&mut self, metadata_key: &Key, data_key: &Key) -> Result<()> {
        let path = self.metadata_path(metadata_key, data_key)?;
        self.settle()?;
        let mut sync = SyncSet::new();
        fsutil::remove_file(&path, &mut sync)?;
        sync.run()
    }

    fn list_transactions(&self) -> Result<BTreeSet<String>> {
        let entries = match fs::read_dir(&self.pending) {
            Ok(entries) => entries,
            Err(e) if fsutil::is_absent(&e) => return Ok(BTreeSet::new()),
            Err(e) => {
                return Err(e).context(IoSnafu {
                    path: &self.pending,
                })
            }
        };
        let mut out = BTreeSet::new();
        for entry in entries {
            let entry = entry.context(IoSnafu {
                path: &self.pending,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_transaction_name(&name).is_err() {
                continue;
            }
            let mut any = false;
            walk_dir(&entry.path(), &mut Vec::new(), None, "", &mut |found| {
                any |= matches!(found, Found::Data { .. });
                Ok(())
            })?;
            if any {
                out.insert(name);
            }
        }
        Ok(out)
    }

    fn delete_transaction(&mut self, tx: &str) -> Result<BTreeSet<Key>> {
        validate_transaction_name(tx)?;
        self.settle()?;
        let keys = self.list_populated_keys("", &Committed::Pending { tx: tx.to_string() })?;
        fsutil::remove_tree(&self.pending.join(tx))?;
        debug!(tx, keys = keys.len(), "deleted transaction");
        Ok(keys)
    }

    fn commit_transaction(&mut self, tx: &str, caller: Option<&Caller>) -> Result<CommitRecord> {
        self.commit_pending(tx, false, caller)
    }

    fn commit_transaction_keeping_newer(
        &mut self,
        tx: &str,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        self.commit_pending(tx, true, caller)
    }

    fn commit_transactions(
        &mut self,
        txs: &[(&str, Option<&Caller>)],
    ) -> Vec<Result<CommitRecord>> {
        let mut results = Vec::with_capacity(txs.len());
        while results.len() < txs.len() {
            let rest = &txs[results.len()..];
            if let Err(e) = self.settle() {
                // The first of the rest gets the error; the others try again.
                results.push(Err(e));
                continue;
            }
            let records = self.commit_batch(rest);
            if records.is_empty() {
                // The first transaction always fits an empty batch; this is only a safeguard
                // against looping.
                results.push(self.commit_transaction(rest[0].0, rest[0].1));
            }
            results.extend(records);
        }
        results
    }

    fn history(&self) -> Result<Vec<CommitRecord>> {
        self.known_records()
            .into_iter()
            .map(|(id, record)| match record {
                Some(record) => Ok(record.clone()),
                None => self.read_record(id),
            })
            .collect()
    }

    fn commit_values(
        &mut self,
        transaction: &str,
        values: &BTreeMap<Key, Option<String>>,
        drop_pending: Option<&str>,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        crate::check_values(transaction, values, drop_pending)?;
        self.settle()?;
        if let Some(tx) = drop_pending {
            // Applying a commit moves a dropped transaction's pending file into live instead of
            // writing the value again; a pending value that differs from the one given must
            // not be moved, so it goes first (the transaction is dropped by this commit).
            let dir = self.pending.join(tx);
            let mut sync = SyncSet::new();
            for (key, value) in values {
                let path = key.path_under(&dir);
                if fsutil::read_optional(&path)? != *value {
                    fsutil::remove_file(&path, &mut sync)?;
                }
            }
        }
        let mut changes = Vec::new();
        for (key, new) in values {
            let old = fsutil::read_optional(&key.path_under(&self.live))?;
            if old != *new {
                changes.push(Change {
                    key: key.name().to_string(),
                    old,
                    new: new.clone(),
                });
            }
        }
        self.run_commit(transaction, changes, drop_pending, caller)
    }

    fn undo(&mut self, id: Option<u64>, caller: Option<&Caller>) -> Result<CommitRecord> {
        self.settle()?;
        let known = self.known_records();
        let id = match id {
            Some(id) => id,
            None => known
                .last()
                .map(|(id, _)| *id)
                .ok_or(crate::Error::NoSuchCommit { id: 0 })?,
        };
        ensure!(
            known.iter().any(|(known, _)| *known == id),
            NoSuchCommitSnafu { id }
        );
        let record = self.read_record(id)?;
        let mut changes = Vec::new();
        for change in record.changes {
            let key = Key::new(KeyType::Data, &change.key)?;
            let current = fsutil::read_optional(&key.path_under(&self.live))?;
            if current != change.old {
                changes.push(Change {
                    key: change.key,
                    old: current,
                    new: change.old,
                });
            }
        }
        self.run_commit(&undo_transaction_name(id), changes, None, caller)
    }
}

#[cfg(test)]
mod test;
