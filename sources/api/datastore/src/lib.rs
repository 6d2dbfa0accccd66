//! The settings datastore: a key/value store with pending transactions, atomic commits and a
//! bounded history of what every commit changed.
//!
//! # Background
//!
//! Every setting of a Ballast host lives in this store, and the API server is its only writer.
//! As in Bottlerocket, a key is a dotted name (`settings.motd`) and each key is one small file
//! holding JSON text (`"hi"`, `42`, `["a","b"]`). A change is first written into a named
//! *pending* transaction and becomes visible in *live* only when the transaction is committed.
//! Metadata (which services a key affects, the template of a file, ...) is a second map keyed by
//! (data key, single-segment metadata key) and exists only in live.
//!
//! Bottlerocket commits by copying pending files into live one at a time, so a crash in the
//! middle leaves half a commit behind. This store does not: a commit first writes a *redo
//! journal* listing every key it changes with its old and new value, and flushes it; that single
//! flush is the commit point. Then the changes are applied to live and the transaction is
//! removed; making those steps durable and writing the history record happens right after, on a
//! background thread, and every later write waits for it. Opening the store replays a journal
//! that was not finished, so after a crash at any instant live holds either everything from a
//! commit or nothing from it. The step-by-step argument is in the [`filesystem`] module. The
//! history records double as an undo log ([`DataStore::undo`]).
//!
//! On disk ([`FilesystemDataStore`]):
//!
//! ```text
//! <base>/current -> v<version>                 relative symlink
//! <base>/v<version>/live/settings/motd         "hi"
//! <base>/v<version>/live/settings/motd.affected-services   metadata of settings.motd
//! <base>/v<version>/pending/<tx>/settings/...  pending values of transaction <tx>
//! <base>/v<version>/pending/<tx>/.staged-at.json  when each of them was staged (commit id)
//! <base>/v<version>/journal                    the last commit (header with checksum + JSON)
//! <base>/v<version>/history/<id, 20 digits>.json   one CommitRecord per commit, newest 256
//! <base>/v<version>/lock                       flock held by the handle that opened the store
//! ```
//!
//! Each key segment becomes one path component, percent-encoded except for ASCII letters,
//! digits, `_` and `-`, so no key can reach outside the store and a `.` in a file name always
//! separates a data key from its metadata key (`<data key path>.<metadata key>`). Every file is
//! replaced atomically (temporary file in the same directory, fsync, rename, fsync of the
//! directory); names starting with `.` are temporary files or trash and never keys.
//!
//! ## Commits that yield to newer values
//!
//! A pending value is a proposal made against live as it was when the value was staged. The
//! store remembers, for every pending key, the id of the newest commit at the moment the key was
//! last staged. [`DataStore::commit_transaction_keeping_newer`] commits a transaction except for
//! the keys that some commit changed *after* they were staged: those are **stale**, keep their
//! newer live value, are logged, are not part of the returned record and are dropped with the
//! transaction. [`DataStore::commit_transaction`] commits every key, whatever happened since
//! it was staged (the last commit wins).
//!
//! The yielding commit exists for the boot: storewolf stages defaults, early-boot-config user
//! data and sundog generated values in the launch transaction while the API server already
//! answers, and a user may commit a setting before settings-committer commits the launch
//! transaction. Those boot values must not replace what the user committed meanwhile, whatever
//! the order of the commits; the API server therefore commits the launch transaction, and only
//! that one, with [`DataStore::commit_transaction_keeping_newer`]. A boot value staged *after* a
//! user's commit of the same key is newer and does replace it (user data that the boot stages
//! after a user's `set` wins, as user data does on every boot).
//!
//! Why not every transaction: a client's own transaction is that client's decision, made when
//! it commits; two clients that stage and commit the same key concurrently get the usual
//! outcome, the last commit wins, rather than a commit that answers success and changes nothing.
//!
//! # Usage
//!
//! ```
//! use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
//! use std::collections::BTreeMap;
//!
//! # fn main() -> datastore::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let mut ds = FilesystemDataStore::create(dir.path(), "1.0.0")?;
//! let tx = Committed::Pending { tx: "default".to_string() };
//! let motd = Key::new(KeyType::Data, "settings.motd")?;
//! ds.set_keys(&BTreeMap::from([(motd.clone(), "\"hi\"".to_string())]), &tx)?;
//! let record = ds.commit_transaction("default", None)?;
//! assert_eq!(record.changes[0].key, "settings.motd");
//! assert_eq!(ds.get_key(&motd, &Committed::Live)?.as_deref(), Some("\"hi\""));
//! ds.undo(Some(record.id), None)?;
//! assert_eq!(ds.get_key(&motd, &Committed::Live)?, None);
//! # Ok(())
//! # }
//! ```
//!
//! Later runs use `FilesystemDataStore::open(&base.join("current"))`, which also completes a
//! commit that a crash interrupted. [`MemoryDataStore`] implements the same trait in memory for
//! unit tests of other crates. [`serialization`] converts between nested JSON and key/value
//! pairs.
//!
//! # Current limitations
//!
//! - One handle at a time: `open` takes an exclusive `flock` and fails with [`Error::Locked`]
//!   while another handle (in any process, including this one) holds it. Callers share one
//!   handle behind a lock.
//! - Commits are atomic; writes straight to live (`set_keys`/`unset_key` with
//!   [`Committed::Live`], metadata) and to pending are atomic and durable per key only. Direct
//!   live writes are meant for seeding defaults.
//! - A commit is durable when `commit_transaction` returns, but its history file appears and its
//!   transaction directory is deleted a moment later (see [`FilesystemDataStore::sync`]);
//!   `history()` already includes it. A process that is killed in between finishes it on the
//!   next `open`.
//! - A key cannot be both a value and a group (`a.b` and `a.b.c`); such a write or commit fails
//!   with [`Error::KeyConflict`] before anything changes.
//! - If applying a commit fails with an I/O error after its journal is written, reads by the same
//!   handle may see part of it until the next writing call (or the next `open`) finishes it; the
//!   commit then counts as done.
//! - A commit whose pending values all equal live changes nothing; it is not recorded in the
//!   history and returns a record with id 0 and no changes.
//! - Emptied directories are left in place when keys are deleted.
//! - Staleness is judged from the history: for a key staged before the oldest commit record
//!   still kept (more than [`DEFAULT_HISTORY_LIMIT`] commits ago) only the records that remain
//!   count. A pending key with no staging record (staged by an older version of this crate, or
//!   whose record was lost in a crash; pending writes are not flushed) is never stale.
//! - The crash test kills the writer with SIGKILL, which keeps the page cache; behaviour under
//!   power loss rests on the fsync ordering argued in [`filesystem`], not on a test.
//! - There are no migrations between versions yet: `create` on an existing store opens it as it
//!   is, whatever version `current` points to.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

pub mod error;
pub mod filesystem;
mod fsutil;
pub mod key;
pub mod memory;
pub mod serialization;

pub use api_types::audit::Caller;
pub use error::{Error, Result};
pub use filesystem::FilesystemDataStore;
pub use key::{Key, KeyType};
pub use memory::MemoryDataStore;

use error::{InvalidKeySnafu, InvalidTransactionSnafu, InvalidValueSnafu, KeyConflictSnafu};
use snafu::ResultExt;

/// Which view of the store an operation reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Committed {
    Live,
    Pending { tx: String },
}

/// One change inside a commit: `old`/`new` are the stored JSON texts, `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What the settings history keeps for every commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitRecord {
    /// Monotonic sequence number, starting at 1. A commit that changed nothing is not recorded
    /// and reports id 0.
    pub id: u64,
    /// RFC 3339 UTC time of the commit.
    pub time: String,
    /// Transaction name that was committed (for an undo: `undo-<id>`).
    pub transaction: String,
    /// Only keys whose value actually changed, sorted by key.
    pub changes: Vec<Change>,
    /// Who asked for the commit (the API server passes the peer credentials of the request);
    /// absent for commits made without one (the boot's own tools writing the store directly,
    /// the server reverting a provisional change on its own) and in records written before
    /// callers were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}

/// The contract every datastore implements. Data keys hold JSON texts (a scalar or an array);
/// metadata is a (data key, metadata key) -> JSON text map that lives only in `live`.
pub trait DataStore {
    /// Data keys populated under `prefix` (a plain string prefix on the dotted key name, "" = all).
    fn list_populated_keys(&self, prefix: &str, committed: &Committed) -> Result<BTreeSet<Key>>;
    fn get_key(&self, key: &Key, committed: &Committed) -> Result<Option<String>>;
    /// All data keys and values under `prefix`.
    fn get_prefix(&self, prefix: &str, committed: &Committed) -> Result<BTreeMap<Key, String>>;
    /// Writes every pair, each atomically. Writing to `Live` directly is for defaults seeding only.
    fn set_keys(&mut self, pairs: &BTreeMap<Key, String>, committed: &Committed) -> Result<()>;
    fn unset_key(&mut self, key: &Key, committed: &Committed) -> Result<()>;

    /// Metadata: map data key -> set of metadata keys populated, for data keys under `prefix`
    /// (a metadata key of `Some(name)` filters to that one).
    fn list_populated_metadata(
        &self,
        prefix: &str,
        metadata_key: Option<&Key>,
    ) -> Result<BTreeMap<Key, BTreeSet<Key>>>;
    fn get_metadata(&self, metadata_key: &Key, data_key: &Key) -> Result<Option<String>>;
    fn set_metadata(&mut self, metadata_key: &Key, data_key: &Key, value: &str) -> Result<()>;
    fn unset_metadata(&mut self, metadata_key: &Key, data_key: &Key) -> Result<()>;

    /// Writes data keys straight to live together with metadata entries (keyed by
    /// (metadata key, data key)), as one batch. Everything is validated and checked for key
    /// conflicts before anything is written. Each file is replaced atomically and all of them are
    /// durable when this returns, but they are flushed together instead of one by one, so a crash
    /// part-way may leave some entries written and others not (never a half-written file). Meant
    /// for seeding image defaults, where the next run fills in whatever is missing.
    fn set_live_batch(
        &mut self,
        data: &BTreeMap<Key, String>,
        metadata: &BTreeMap<(Key, Key), String>,
    ) -> Result<()>;

    /// Names of transactions with pending keys.
    fn list_transactions(&self) -> Result<BTreeSet<String>>;
    /// Removes a pending transaction; returns the keys it held.
    fn delete_transaction(&mut self, tx: &str) -> Result<BTreeSet<Key>>;
    /// Atomically moves every pending key of `tx` into live (all or nothing, also across a crash),
    /// removes the transaction and records history. Returns the record (changes may be empty when
    /// the pending values equal live ones; callers decide what "empty" means via `pending keys`).
    /// `caller` is recorded in the record (and so in the history).
    fn commit_transaction(&mut self, tx: &str, caller: Option<&Caller>) -> Result<CommitRecord>;
    /// Like [`DataStore::commit_transaction`], except that a key which another commit changed
    /// after it was staged in `tx` keeps its live value (see "Commits that yield to newer
    /// values" in the crate documentation). Meant for the boot's launch transaction.
    fn commit_transaction_keeping_newer(
        &mut self,
        tx: &str,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord>;
    /// Commits several transactions, in order, as [`DataStore::commit_transaction`] would one
    /// after the other, with one result each. The filesystem store makes as many of them as it
    /// can durable with one flush (group commit); each is still all or nothing, and an `Ok` still
    /// means durable. A later transaction's value for a key wins over an earlier one's.
    /// Each transaction comes with the caller to record for it.
    fn commit_transactions(
        &mut self,
        txs: &[(&str, Option<&Caller>)],
    ) -> Vec<Result<CommitRecord>> {
        txs.iter()
            .map(|(tx, caller)| self.commit_transaction(tx, *caller))
            .collect()
    }

    /// Commits explicit values as one commit named `transaction`, all or nothing (also across a
    /// crash), recorded in the history like any commit: each data key gets its value, or is
    /// deleted when the value is `None`; keys that already hold that value are left out. With
    /// `drop_pending`, that pending transaction is removed by the same commit. This is how a
    /// change made by the server itself (try-mode: starting, confirming or reverting a
    /// provisional change) becomes live together with its bookkeeping, and how a deletion is
    /// committed (a pending transaction can only hold values).
    fn commit_values(
        &mut self,
        transaction: &str,
        values: &BTreeMap<Key, Option<String>>,
        drop_pending: Option<&str>,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord>;

    /// Newest last; bounded (oldest dropped).
    fn history(&self) -> Result<Vec<CommitRecord>>;
    /// Reverts commit `id` (or the newest when None) as a new commit named `undo-<id>`.
    fn undo(&mut self, id: Option<u64>, caller: Option<&Caller>) -> Result<CommitRecord>;
}

/// How many commit records the history keeps unless told otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 256;

/// Longest transaction name accepted.
pub const MAX_TRANSACTION_NAME_LEN: usize = 64;

/// The rule of [`validate_transaction_name`] as an anchored regular expression, for API
/// documents.
pub fn transaction_name_pattern() -> String {
    format!("^[A-Za-z0-9_-]{{1,{MAX_TRANSACTION_NAME_LEN}}}$")
}

/// Transaction names: 1..=64 chars of [A-Za-z0-9_-].
pub fn validate_transaction_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the name is empty".to_string()
    } else if name.len() > MAX_TRANSACTION_NAME_LEN {
        format!(
            "it is {} characters long; at most {MAX_TRANSACTION_NAME_LEN} are allowed",
            name.len()
        )
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        format!("character {c:?} is not allowed; use letters, digits, '_' and '-'")
    } else {
        return Ok(());
    };
    InvalidTransactionSnafu { name, reason }.fail()
}

// ---- Helpers shared by both implementations ----

/// The current time as RFC 3339 in UTC.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// The transaction name an undo of `id` is committed under.
pub(crate) fn undo_transaction_name(id: u64) -> String {
    format!("undo-{id}")
}

pub(crate) fn require_data_key(key: &Key) -> Result<()> {
    if key.key_type() != KeyType::Data {
        return InvalidKeySnafu {
            name: key.name(),
            reason: "a metadata key was given where a data key is needed",
        }
        .fail();
    }
    Ok(())
}

pub(crate) fn require_meta_key(key: &Key) -> Result<()> {
    if key.key_type() != KeyType::Meta {
        return InvalidKeySnafu {
            name: key.name(),
            reason: "a data key was given where a metadata key is needed",
        }
        .fail();
    }
    Ok(())
}

/// Refuses text that is not JSON, so nothing unreadable is ever stored.
pub(crate) fn require_json(key: &Key, text: &str) -> Result<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .context(InvalidValueSnafu { key: key.name() })
}

/// The keys strictly above `key`, shortest first ("a.b.c" gives "a", "a.b").
pub(crate) fn ancestors(key: &Key) -> impl Iterator<Item = Key> + '_ {
    (1..key.segments().len())
        .filter_map(move |len| Key::from_segments(key.key_type(), &key.segments()[..len]).ok())
}

/// Checks that writing `sets` and removing `deletes` leaves no key that is both a value and a
/// group of values. `is_leaf(k)` says whether k holds a value now; `first_blocker_below(k,
/// deletes)` names something stored strictly below k that would survive the change, if any.
pub(crate) fn check_conflicts(
    sets: &BTreeSet<&Key>,
    deletes: &BTreeSet<&Key>,
    mut is_leaf: impl FnMut(&Key) -> Result<bool>,
    mut first_blocker_below: impl FnMut(&Key, &BTreeSet<&Key>) -> Result<Option<String>>,
) -> Result<()> {
    // Groups already known to hold no value; many keys share them.
    let mut clear: BTreeSet<Key> = BTreeSet::new();
    for key in sets {
        for above in ancestors(key) {
            if clear.contains(&above) {
                continue;
            }
            if sets.contains(&above) {
                return KeyConflictSnafu {
                    key: key.name(),
                    other: above.name(),
                    reason: "both are being given a value, but one lies under the other",
                }
                .fail();
            }
            if !deletes.contains(&above) && is_leaf(&above)? {
                return KeyConflictSnafu {
                    key: key.name(),
                    other: above.name(),
                    reason: "the other key holds a value, so nothing can be stored under it",
                }
                .fail();
            }
            clear.insert(above);
        }
        if let Some(other) = first_blocker_below(key, deletes)? {
            return KeyConflictSnafu {
                key: key.name(),
                other,
                reason: "the other is stored under this key, so this key cannot hold a value",
            }
            .fail();
        }
    }
    Ok(())
}

/// The staged keys that `record` changed after they were staged: `staged_at` maps a pending key
/// to the id of the newest commit when it was staged, so a record with a higher id is newer.
pub(crate) fn mark_stale(
    staged_at: &BTreeMap<Key, u64>,
    record: &CommitRecord,
    stale: &mut BTreeSet<Key>,
) {
    for change in &record.changes {
        if let Ok(key) = Key::new(KeyType::Data, &change.key) {
            if staged_at.get(&key).is_some_and(|at| *at < record.id) {
                stale.insert(key);
            }
        }
    }
}

/// Removes the stale keys from `pending` and logs them.
pub(crate) fn drop_stale(tx: &str, pending: &mut BTreeMap<Key, String>, stale: &BTreeSet<Key>) {
    for key in stale {
        if pending.remove(key).is_some() {
            tracing::info!(
                tx,
                key = key.name(),
                "not committing a value staged before a newer commit of the same key"
            );
        }
    }
}

/// Checks the values given to [`DataStore::commit_values`] and the names involved.
pub(crate) fn check_values(
    transaction: &str,
    values: &BTreeMap<Key, Option<String>>,
    drop_pending: Option<&str>,
) -> Result<()> {
    validate_transaction_name(transaction)?;
    if let Some(tx) = drop_pending {
        validate_transaction_name(tx)?;
    }
    for (key, value) in values {
        require_data_key(key)?;
        if let Some(text) = value {
            require_json(key, text)?;
        }
    }
    Ok(())
}

/// Parses the key names of a commit's changes (they come from our own records).
pub(crate) fn change_keys(changes: &[Change]) -> Result<Vec<Key>> {
    changes
        .iter()
        .map(|c| Key::new(KeyType::Data, &c.key))
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn transaction_names() {
        for good in ["default", "a", "apiclient-set-Ab_9", &"x".repeat(64)] {
            validate_transaction_name(good).unwrap();
        }
        for bad in [
            "",
            "a b",
            "../x",
            "a/b",
            ".trash",
            "é",
            "a\0",
            &"x".repeat(65),
        ] {
            assert!(validate_transaction_name(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn stores_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<FilesystemDataStore>();
        shareable::<MemoryDataStore>();
        shareable::<Error>();
    }

    fn k(name: &str) -> Key {
        Key::new(KeyType::Data, name).unwrap()
    }

    fn stage(ds: &mut dyn DataStore, tx: &str, pairs: &[(&str, &str)]) {
        let pairs = pairs
            .iter()
            .map(|(key, value)| (k(key), format!("{value:?}")))
            .collect();
        ds.set_keys(&pairs, &Committed::Pending { tx: tx.to_string() })
            .unwrap();
    }

    fn live(ds: &dyn DataStore, name: &str) -> Option<String> {
        ds.get_key(&k(name), &Committed::Live)
            .unwrap()
            .map(|text| serde_json::from_str(&text).unwrap())
    }

    fn changed(record: &CommitRecord) -> Vec<&str> {
        record.changes.iter().map(|c| c.key.as_str()).collect()
    }

    /// The boot's case: defaults, user data and generated values are staged in the launch
    /// transaction, a user commits in between, and the launch commit comes last.
    fn a_commit_beats_values_staged_before_it(ds: &mut dyn DataStore) {
        stage(
            ds,
            "launch",
            &[
                ("settings.motd", "default motd"),
                ("settings.timezone", "UTC"),
                ("settings.hostname", "generated"),
            ],
        );
        stage(ds, "user", &[("settings.motd", "hello from the user")]);
        ds.commit_transaction("user", None).unwrap();
        stage(ds, "user", &[("settings.hostname", "user-host")]);
        ds.commit_transaction("user", None).unwrap();
        // Staged after the user's commit of the same key: newer, so it wins.
        stage(ds, "launch", &[("settings.hostname", "from user data")]);

        let record = ds.commit_transaction_keeping_newer("launch", None).unwrap();
        assert_eq!(changed(&record), ["settings.hostname", "settings.timezone"]);
        assert_eq!(
            live(ds, "settings.motd").as_deref(),
            Some("hello from the user")
        );
        assert_eq!(live(ds, "settings.timezone").as_deref(), Some("UTC"));
        assert_eq!(
            live(ds, "settings.hostname").as_deref(),
            Some("from user data")
        );
        assert!(ds.list_transactions().unwrap().is_empty());

        // The order of commits does not decide: a yielding commit that only holds stale keys
        // changes nothing.
        stage(ds, "a", &[("settings.motd", "from a")]);
        stage(ds, "b", &[("settings.motd", "from b")]);
        ds.commit_transaction("b", None).unwrap();
        let record = ds.commit_transaction_keeping_newer("a", None).unwrap();
        assert_eq!(record.id, 0, "{record:?}");
        assert_eq!(live(ds, "settings.motd").as_deref(), Some("from b"));
        assert!(ds.list_transactions().unwrap().is_empty());

        // An ordinary commit still commits everything: the last commit wins.
        stage(ds, "a", &[("settings.motd", "from a")]);
        stage(ds, "b", &[("settings.motd", "from b")]);
        ds.commit_transaction("b", None).unwrap();
        let record = ds.commit_transaction("a", None).unwrap();
        assert_eq!(changed(&record), ["settings.motd"]);
        assert_eq!(live(ds, "settings.motd").as_deref(), Some("from a"));

        // An undo is a commit too.
        stage(ds, "c", &[("settings.motd", "from c")]);
        ds.undo(None, None).unwrap();
        ds.commit_transaction_keeping_newer("c", None).unwrap();
        assert_eq!(live(ds, "settings.motd").as_deref(), Some("from b"));

        // Staging and committing with nothing in between is unaffected, and restaging a key
        // makes it current again.
        stage(ds, "d", &[("settings.motd", "old plan")]);
        stage(ds, "e", &[("settings.motd", "from e")]);
        ds.commit_transaction("e", None).unwrap();
        stage(ds, "d", &[("settings.motd", "new plan")]);
        let record = ds.commit_transaction_keeping_newer("d", None).unwrap();
        assert_eq!(changed(&record), ["settings.motd"]);
        assert_eq!(live(ds, "settings.motd").as_deref(), Some("new plan"));
    }

    /// Explicit values commit as one recorded commit: values set, `None` deleted, equal values
    /// left out, the dropped transaction gone, and a differing pending value never wins.
    fn explicit_values_commit_as_one(ds: &mut dyn DataStore) {
        stage(
            ds,
            "seed",
            &[("settings.motd", "old"), ("settings.timezone", "UTC")],
        );
        ds.commit_transaction("seed", None).unwrap();
        stage(
            ds,
            "try",
            &[("settings.motd", "staged"), ("settings.hostname", "h")],
        );
        let values = BTreeMap::from([
            (k("settings.motd"), Some("\"given\"".to_string())),
            (k("settings.timezone"), None),
            (k("settings.hostname"), Some("\"h\"".to_string())),
            (k("ballast.note"), Some("{\"a\":1}".to_string())),
        ]);
        let record = ds
            .commit_values("try-x", &values, Some("try"), None)
            .unwrap();
        assert_eq!(record.transaction, "try-x");
        assert_eq!(
            changed(&record),
            [
                "ballast.note",
                "settings.hostname",
                "settings.motd",
                "settings.timezone"
            ]
        );
        assert_eq!(live(ds, "settings.motd").as_deref(), Some("given"));
        assert_eq!(live(ds, "settings.timezone"), None);
        assert_eq!(live(ds, "settings.hostname").as_deref(), Some("h"));
        assert!(ds.list_transactions().unwrap().is_empty());
        assert_eq!(ds.history().unwrap().last().unwrap().id, record.id);
        // Values equal to live change nothing and are not recorded.
        let same = BTreeMap::from([(k("settings.motd"), Some("\"given\"".to_string()))]);
        assert_eq!(ds.commit_values("again", &same, None, None).unwrap().id, 0);
        // Bad input is refused before anything is written.
        let bad = BTreeMap::from([(k("settings.motd"), Some("not json".to_string()))]);
        assert!(ds.commit_values("bad", &bad, None, None).is_err());
        assert!(ds.commit_values("bad name", &same, None, None).is_err());
        assert_eq!(live(ds, "settings.motd").as_deref(), Some("given"));
    }

    #[test]
    fn memory_store_commits_explicit_values() {
        explicit_values_commit_as_one(&mut MemoryDataStore::new());
    }

    #[test]
    fn filesystem_store_commits_explicit_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = FilesystemDataStore::create(dir.path(), "1").unwrap();
        explicit_values_commit_as_one(&mut ds);
        drop(ds);
        let ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
        assert_eq!(live(&ds, "settings.motd").as_deref(), Some("given"));
        assert_eq!(live(&ds, "settings.timezone"), None);
    }

    #[test]
    fn memory_store_keeps_commits_newer_than_staged_values() {
        a_commit_beats_values_staged_before_it(&mut MemoryDataStore::new());
    }

    #[test]
    fn filesystem_store_keeps_commits_newer_than_staged_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = FilesystemDataStore::create(dir.path(), "1").unwrap();
        a_commit_beats_values_staged_before_it(&mut ds);
    }

    #[test]
    fn staging_times_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = FilesystemDataStore::create(dir.path(), "1").unwrap();
        stage(&mut ds, "seed", &[("settings.timezone", "UTC")]);
        ds.commit_transaction("seed", None).unwrap();
        stage(
            &mut ds,
            "launch",
            &[
                ("settings.motd", "default"),
                ("settings.timezone", "Etc/UTC"),
            ],
        );
        drop(ds);
        let mut ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
        stage(&mut ds, "user", &[("settings.motd", "mine")]);
        ds.commit_transaction("user", None).unwrap();
        drop(ds);
        let mut ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
        let record = ds.commit_transaction_keeping_newer("launch", None).unwrap();
        assert_eq!(changed(&record), ["settings.timezone"]);
        assert_eq!(live(&ds, "settings.motd").as_deref(), Some("mine"));
        assert_eq!(live(&ds, "settings.timezone").as_deref(), Some("Etc/UTC"));
    }

    #[test]
    fn time_is_rfc3339_utc() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339).unwrap();
    }
}
