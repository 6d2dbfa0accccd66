//! [`MemoryDataStore`]: the same contract as the filesystem store, kept in maps. Meant for unit
//! tests of crates that use a [`DataStore`]; it behaves like [`crate::FilesystemDataStore`] for
//! keys, transactions, commits, history and undo, without touching the disk.

use crate::error::{EmptyTransactionSnafu, NoSuchCommitSnafu, Result};
use crate::{
    check_conflicts, now_rfc3339, require_data_key, require_json, require_meta_key,
    undo_transaction_name, validate_transaction_name, Caller, Change, CommitRecord, Committed,
    DataStore, Key, KeyType, DEFAULT_HISTORY_LIMIT,
};
use snafu::ensure;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone)]
pub struct MemoryDataStore {
    live: BTreeMap<Key, String>,
    pending: BTreeMap<String, BTreeMap<Key, String>>,
    /// tx -> pending key -> id of the newest commit when the key was staged
    staged_at: BTreeMap<String, BTreeMap<Key, u64>>,
    /// data key -> metadata key -> value
    metadata: BTreeMap<Key, BTreeMap<Key, String>>,
    history: VecDeque<CommitRecord>,
    history_limit: usize,
    last_id: u64,
}

impl Default for MemoryDataStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Keys of `map` that lie strictly under `key` segment-wise.
fn below<'a>(map: &'a BTreeMap<Key, String>, key: &'a Key) -> impl Iterator<Item = &'a Key> + 'a {
    map.keys()
        .filter(move |k| k.segments().len() > key.segments().len() && k.starts_with_segments(key))
}

fn check_map_conflicts(
    map: &BTreeMap<Key, String>,
    sets: &BTreeSet<&Key>,
    deletes: &BTreeSet<&Key>,
) -> Result<()> {
    check_conflicts(
        sets,
        deletes,
        |key| Ok(map.contains_key(key)),
        |key, deletes| {
            Ok(below(map, key)
                .find(|k| !deletes.contains(k))
                .map(|k| k.name().to_string()))
        },
    )
}

impl MemoryDataStore {
    pub fn new() -> Self {
        MemoryDataStore {
            live: BTreeMap::new(),
            pending: BTreeMap::new(),
            staged_at: BTreeMap::new(),
            metadata: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            last_id: 0,
        }
    }

    /// Keeps at most `limit` commit records (at least 1).
    pub fn with_history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit.max(1);
        self.prune();
        self
    }

    fn prune(&mut self) {
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
    }

    fn map(&self, committed: &Committed) -> Result<Option<&BTreeMap<Key, String>>> {
        Ok(match committed {
            Committed::Live => Some(&self.live),
            Committed::Pending { tx } => {
                validate_transaction_name(tx)?;
                self.pending.get(tx)
            }
        })
    }

    fn map_mut(&mut self, committed: &Committed) -> Result<&mut BTreeMap<Key, String>> {
        Ok(match committed {
            Committed::Live => &mut self.live,
            Committed::Pending { tx } => {
                validate_transaction_name(tx)?;
                self.pending.entry(tx.clone()).or_default()
            }
        })
    }

    /// Commits `tx`; with `keeping_newer`, keys changed by a commit since they were staged
    /// keep their live value.
    fn commit_pending(
        &mut self,
        tx: &str,
        keeping_newer: bool,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        validate_transaction_name(tx)?;
        let mut pending = self.pending.get(tx).cloned().unwrap_or_default();
        ensure!(!pending.is_empty(), EmptyTransactionSnafu { tx });
        if let (true, Some(staged_at)) = (keeping_newer, self.staged_at.get(tx)) {
            let mut stale = BTreeSet::new();
            let oldest = staged_at.values().min().copied().unwrap_or(self.last_id);
            for record in self.history.iter().filter(|r| r.id > oldest) {
                crate::mark_stale(staged_at, record, &mut stale);
            }
            crate::drop_stale(tx, &mut pending, &stale);
        }
        let changes = pending
            .into_iter()
            .filter_map(|(key, new)| {
                let old = self.live.get(&key).cloned();
                (old.as_ref() != Some(&new)).then(|| Change {
                    key: key.name().to_string(),
                    old,
                    new: Some(new),
                })
            })
            .collect();
        let record = self.run_commit(tx, changes, caller)?;
        self.pending.remove(tx);
        self.staged_at.remove(tx);
        Ok(record)
    }

    fn run_commit(
        &mut self,
        transaction: &str,
        changes: Vec<Change>,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        if changes.is_empty() {
            return Ok(CommitRecord {
                id: 0,
                time: now_rfc3339(),
                transaction: transaction.to_string(),
                changes,
                caller: caller.cloned(),
            });
        }
        let keys = crate::change_keys(&changes)?;
        let sets = keys
            .iter()
            .zip(&changes)
            .filter(|(_, c)| c.new.is_some())
            .map(|(k, _)| k)
            .collect();
        let deletes = keys
            .iter()
            .zip(&changes)
            .filter(|(_, c)| c.new.is_none())
            .map(|(k, _)| k)
            .collect();
        check_map_conflicts(&self.live, &sets, &deletes)?;
        for (key, change) in keys.iter().zip(&changes) {
            match &change.new {
                Some(value) => self.live.insert(key.clone(), value.clone()),
                None => self.live.remove(key),
            };
        }
        self.last_id += 1;
        let record = CommitRecord {
            id: self.last_id,
            time: now_rfc3339(),
            transaction: transaction.to_string(),
            changes,
            caller: caller.cloned(),
        };
        self.history.push_back(record.clone());
        self.prune();
        Ok(record)
    }
}

fn matching<'a>(
    map: &'a BTreeMap<Key, String>,
    prefix: &str,
) -> impl Iterator<Item = (Key, String)> + 'a {
    let prefix = prefix.to_string();
    map.iter()
        .filter(move |(k, _)| k.name().starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
}

impl DataStore for MemoryDataStore {
    fn list_populated_keys(&self, prefix: &str, committed: &Committed) -> Result<BTreeSet<Key>> {
        Ok(self
            .map(committed)?
            .map(|m| matching(m, prefix).map(|(k, _)| k).collect())
            .unwrap_or_default())
    }

    fn get_key(&self, key: &Key, committed: &Committed) -> Result<Option<String>> {
        require_data_key(key)?;
        Ok(self.map(committed)?.and_then(|m| m.get(key).cloned()))
    }

    fn get_prefix(&self, prefix: &str, committed: &Committed) -> Result<BTreeMap<Key, String>> {
        Ok(self
            .map(committed)?
            .map(|m| matching(m, prefix).collect())
            .unwrap_or_default())
    }

    fn set_keys(&mut self, pairs: &BTreeMap<Key, String>, committed: &Committed) -> Result<()> {
        for (key, value) in pairs {
            require_data_key(key)?;
            require_json(key, value)?;
        }
        let sets = pairs.keys().collect();
        if let Some(map) = self.map(committed)? {
            check_map_conflicts(map, &sets, &BTreeSet::new())?;
        } else {
            check_map_conflicts(&BTreeMap::new(), &sets, &BTreeSet::new())?;
        }
        let map = self.map_mut(committed)?;
        for (key, value) in pairs {
            map.insert(key.clone(), value.clone());
        }
        if let Committed::Pending { tx } = committed {
            let staged = self.staged_at.entry(tx.clone()).or_default();
            for key in pairs.keys() {
                staged.insert(key.clone(), self.last_id);
            }
        }
        Ok(())
    }

    fn unset_key(&mut self, key: &Key, committed: &Committed) -> Result<()> {
        require_data_key(key)?;
        match committed {
            Committed::Live => {
                self.live.remove(key);
            }
            Committed::Pending { tx } => {
                validate_transaction_name(tx)?;
                if let Some(map) = self.pending.get_mut(tx) {
                    map.remove(key);
                }
                if let Some(staged) = self.staged_at.get_mut(tx) {
                    staged.remove(key);
                }
            }
        }
        Ok(())
    }

    fn list_populated_metadata(
        &self,
        prefix: &str,
        metadata_key: Option<&Key>,
    ) -> Result<BTreeMap<Key, BTreeSet<Key>>> {
        if let Some(meta) = metadata_key {
            require_meta_key(meta)?;
        }
        let mut out = BTreeMap::new();
        for (data, metas) in &self.metadata {
            if !data.name().starts_with(prefix) {
                continue;
            }
            let found: BTreeSet<Key> = metas
                .keys()
                .filter(|m| metadata_key.is_none_or(|wanted| wanted == *m))
                .cloned()
                .collect();
            if !found.is_empty() {
                out.insert(data.clone(), found);
            }
        }
        Ok(out)
    }

    fn get_metadata(&self, metadata_key: &Key, data_key: &Key) -> Result<Option<String>> {
        require_meta_key(metadata_key)?;
        require_data_key(data_key)?;
        Ok(self
            .metadata
            .get(data_key)
            .and_then(|m| m.get(metadata_key))
            .cloned())
    }

    fn set_metadata(&mut self, metadata_key: &Key, data_key: &Key, value: &str) -> Result<()> {
        require_meta_key(metadata_key)?;
        require_data_key(data_key)?;
        require_json(data_key, value)?;
        self.metadata
            .entry(data_key.clone())
            .or_default()
            .insert(metadata_key.clone(), value.to_string());
        Ok(())
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
        for ((meta, key), value) in metadata {
            require_meta_key(meta)?;
            require_data_key(key)?;
            require_json(key, value)?;
        }
        let sets = data.keys().collect();
        check_map_conflicts(&self.live, &sets, &BTreeSet::new())?;
        self.live
            .extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        for ((meta, key), value) in metadata {
            self.metadata
                .entry(key.clone())
                .or_default()
                .insert(meta.clone(), value.clone());
        }
        Ok(())
    }

    fn unset_metadata(&mut self, metadata_key: &Key, data_key: &Key) -> Result<()> {
        require_meta_key(metadata_key)?;
        require_data_key(data_key)?;
        if let Some(metas) = self.metadata.get_mut(data_key) {
            metas.remove(metadata_key);
            if metas.is_empty() {
                self.metadata.remove(data_key);
            }
        }
        Ok(())
    }

    fn list_transactions(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .pending
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(tx, _)| tx.clone())
            .collect())
    }

    fn delete_transaction(&mut self, tx: &str) -> Result<BTreeSet<Key>> {
        validate_transaction_name(tx)?;
        self.staged_at.remove(tx);
        Ok(self
            .pending
            .remove(tx)
            .map(|keys| keys.into_keys().collect())
            .unwrap_or_default())
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

    fn history(&self) -> Result<Vec<CommitRecord>> {
        Ok(self.history.iter().cloned().collect())
    }

    fn commit_values(
        &mut self,
        transaction: &str,
        values: &BTreeMap<Key, Option<String>>,
        drop_pending: Option<&str>,
        caller: Option<&Caller>,
    ) -> Result<CommitRecord> {
        crate::check_values(transaction, values, drop_pending)?;
        let changes = values
            .iter()
            .filter_map(|(key, new)| {
                let old = self.live.get(key).cloned();
                (old != *new).then(|| Change {
                    key: key.name().to_string(),
                    old,
                    new: new.clone(),
                })
            })
            .collect();
        let record = self.run_commit(transaction, changes, caller)?;
        if let Some(tx) = drop_pending {
            self.pending.remove(tx);
            self.staged_at.remove(tx);
        }
        Ok(record)
    }

    fn undo(&mut self, id: Option<u64>, caller: Option<&Caller>) -> Result<CommitRecord> {
        let record = match id {
            Some(id) => self.history.iter().find(|r| r.id == id),
            None => self.history.back(),
        };
        let Some(record) = record.cloned() else {
            return NoSuchCommitSnafu {
                id: id.unwrap_or(0),
            }
            .fail();
        };
        let mut changes = Vec::new();
        for change in record.changes {
            let key = Key::new(KeyType::Data, &change.key)?;
            let current = self.live.get(&key).cloned();
            if current != change.old {
                changes.push(Change {
                    key: change.key,
                    old: current,
                    new: change.old,
                });
            }
        }
        self.run_commit(&undo_transaction_name(record.id), changes, caller)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key(name: &str) -> Key {
        Key::new(KeyType::Data, name).unwrap()
    }

    fn tx(name: &str) -> Committed {
        Committed::Pending {
            tx: name.to_string(),
        }
    }

    #[test]
    fn commit_history_undo() {
        let mut ds = MemoryDataStore::new().with_history_limit(2);
        let pairs = BTreeMap::from([(key("settings.motd"), "\"hi\"".to_string())]);
        ds.set_keys(&pairs, &tx("t")).unwrap();
        assert_eq!(
            ds.list_transactions().unwrap(),
            BTreeSet::from(["t".into()])
        );
        let record = ds.commit_transaction("t", None).unwrap();
        assert_eq!(record.id, 1);
        assert!(ds.list_transactions().unwrap().is_empty());
        assert!(matches!(
            ds.commit_transaction("t", None),
            Err(crate::Error::EmptyTransaction { .. })
        ));
        let undo = ds.undo(None, None).unwrap();
        assert_eq!(undo.transaction, "undo-1");
        assert_eq!(
            ds.get_key(&key("settings.motd"), &Committed::Live).unwrap(),
            None
        );
        ds.set_keys(&pairs, &tx("t")).unwrap();
        ds.commit_transaction("t", None).unwrap();
        let ids: Vec<u64> = ds.history().unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 3]);
        assert!(matches!(
            ds.undo(Some(1), None),
            Err(crate::Error::NoSuchCommit { id: 1 })
        ));
    }

    #[test]
    fn metadata_and_prefixes() {
        let mut ds = MemoryDataStore::default();
        let meta = Key::new(KeyType::Meta, "affected-services").unwrap();
        ds.set_metadata(&meta, &key("settings.ntp"), "[\"chronyd\"]")
            .unwrap();
        let listed = ds.list_populated_metadata("settings.", None).unwrap();
        assert_eq!(listed[&key("settings.ntp")], BTreeSet::from([meta.clone()]));
        ds.unset_metadata(&meta, &key("settings.ntp")).unwrap();
        assert!(ds.list_populated_metadata("", None).unwrap().is_empty());
        assert!(ds.set_metadata(&meta, &key("a"), "not json").is_err());
        let pairs = BTreeMap::from([(key("a.b"), "1".to_string())]);
        ds.set_keys(&pairs, &Committed::Live).unwrap();
        let conflict = BTreeMap::from([(key("a.b.c"), "1".to_string())]);
        assert!(matches!(
            ds.set_keys(&conflict, &Committed::Live),
            Err(crate::Error::KeyConflict { .. })
        ));
    }
}
