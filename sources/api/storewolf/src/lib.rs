//! # Background
//!
//! storewolf seeds the datastore at boot, before the API server starts. Defaults come from the
//! model's shared defaults plus the variant's and packages' defaults files (merged in order, later
//! wins). It never overwrites a value that is already live: a user's setting survives every boot
//! and every OS version, while settings that a new OS version introduces get their default.
//!
//! Settings defaults go into the pending launch transaction (`ballast-launch`), so that user data
//! and generators can still change them before the boot-time commit. "A value a user set" is
//! any live value; and since the API server answers before the launch transaction is committed,
//! a value a user commits in that window also wins: the launch transaction is committed with the
//! datastore's `commit_transaction_keeping_newer` (by the API server, and by `--commit` here),
//! which keeps every key committed after it was staged. Metadata, services and
//! configuration files belong to the image, not to the user: they are written straight to live
//! and always reflect the running OS version.
//!
//! # Usage
//!
//! `storewolf --datastore-path /var/lib/ballast/datastore --version 0.1 [--defaults FILE]...`
//! creates the store when missing, drops leftover pending transactions, and seeds it.
//! `--commit` also commits the launch transaction (for hosts without the boot-time committer).
//!
//! # Current limitations
//!
//! - Metadata of settings that a newer OS version no longer declares is left in place.
#![forbid(unsafe_code)]

use datastore::{serialization, Committed, DataStore, FilesystemDataStore, Key, KeyType};
use models::Defaults;
use snafu::{ResultExt, Snafu};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Snafu)]
pub enum Error {
    #[snafu(display("Cannot read defaults file {}: {source}", path.display()))]
    ReadDefaults {
        path: PathBuf,
        source: std::io::Error,
    },
    #[snafu(display("Defaults file {} is invalid: {source}", path.display()))]
    ParseDefaults {
        path: PathBuf,
        source: models::DefaultsError,
    },
    #[snafu(display("Datastore operation failed while seeding defaults: {source}"))]
    Store { source: datastore::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a seeding run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Settings keys that received their default (they were not live yet).
    pub settings: Vec<String>,
    /// Pending transactions dropped because a previous boot left them behind.
    pub dropped_transactions: Vec<String>,
}

/// The model's shared defaults merged with each file in order (later wins).
pub fn load_defaults(files: &[PathBuf]) -> Result<Defaults> {
    let mut defaults = models::shared_defaults();
    for path in files {
        let text = std::fs::read_to_string(path).context(ReadDefaultsSnafu { path })?;
        let more = Defaults::from_toml_str(&text).context(ParseDefaultsSnafu { path })?;
        defaults = defaults.merge(more);
    }
    Ok(defaults)
}

/// Seeds `ds` from `defaults`; see the crate documentation for the rules.
pub fn seed<D: DataStore + ?Sized>(ds: &mut D, defaults: &Defaults) -> Result<Seeded> {
    let mut seeded = Seeded::default();
    for tx in ds.list_transactions().context(StoreSnafu)? {
        ds.delete_transaction(&tx).context(StoreSnafu)?;
        seeded.dropped_transactions.push(tx);
    }

    let wanted = serialization::to_pairs(&defaults.settings, "settings").context(StoreSnafu)?;
    let live = ds
        .list_populated_keys("settings.", &Committed::Live)
        .context(StoreSnafu)?;
    let missing: BTreeMap<Key, String> = wanted
        .into_iter()
        .filter(|(key, _)| !live.contains(key))
        .collect();
    if !missing.is_empty() {
        ds.set_keys(
            &missing,
            &Committed::Pending {
                tx: constants::LAUNCH_TX.to_string(),
            },
        )
        .context(StoreSnafu)?;
    }
    seeded.settings = missing.keys().map(|k| k.name().to_string()).collect();

    // Image data and metadata go to live in one durable batch, so that seeding waits for the
    // disk a fixed number of times however many entries there are. Entries that already hold
    // the wanted value are left alone; on most boots nothing is written at all.
    let services = serde_json::to_value(&defaults.services).map_err(serde_error)?;
    let files = serde_json::to_value(&defaults.configuration_files).map_err(serde_error)?;
    let mut image = serialization::to_pairs(&services, "services").context(StoreSnafu)?;
    image.extend(serialization::to_pairs(&files, "configuration-files").context(StoreSnafu)?);
    let mut current = ds
        .get_prefix("services.", &Committed::Live)
        .context(StoreSnafu)?;
    current.extend(
        ds.get_prefix("configuration-files.", &Committed::Live)
            .context(StoreSnafu)?,
    );
    image.retain(|key, value| current.get(key) != Some(value));

    let mut metadata = BTreeMap::new();
    for (data_key, entries) in &defaults.metadata {
        let data_key = Key::new(KeyType::Data, data_key).context(StoreSnafu)?;
        for (meta, value) in entries {
            let meta_key = Key::new(KeyType::Meta, meta).context(StoreSnafu)?;
            let text = serde_json::to_string(value).map_err(serde_error)?;
            if ds.get_metadata(&meta_key, &data_key).context(StoreSnafu)? != Some(text.clone()) {
                metadata.insert((meta_key, data_key.clone()), text);
            }
        }
    }
    if !image.is_empty() || !metadata.is_empty() {
        ds.set_live_batch(&image, &metadata).context(StoreSnafu)?;
    }
    Ok(seeded)
}

fn serde_error(e: serde_json::Error) -> Error {
    Error::Store {
        source: datastore::Error::Serialization {
            reason: e.to_string(),
        },
    }
}

/// Creates the store under `base` for `version` when missing, seeds it, and optionally commits
/// the launch transaction.
pub fn run(base: &Path, version: &str, defaults: &Defaults, commit: bool) -> Result<Seeded> {
    let mut ds = FilesystemDataStore::create(base, version).context(StoreSnafu)?;
    let seeded = seed(&mut ds, defaults)?;
    if commit && !seeded.settings.is_empty() {
        ds.commit_transaction_keeping_newer(constants::LAUNCH_TX, None)
            .context(StoreSnafu)?;
    }
    Ok(seeded)
}

#[cfg(test)]
mod test {
    use super::*;
    use datastore::MemoryDataStore;

    fn key(name: &str) -> Key {
        Key::new(KeyType::Data, name).unwrap()
    }

    #[test]
    fn seeds_missing_defaults_and_keeps_user_values() {
        let defaults = models::shared_defaults();
        let mut ds = MemoryDataStore::new();
        let live = Committed::Live;
        let user = BTreeMap::from([(key("settings.motd"), "\"mine\"".to_string())]);
        ds.set_keys(&user, &live).unwrap();
        ds.set_keys(&user, &Committed::Pending { tx: "stale".into() })
            .unwrap();

        let seeded = seed(&mut ds, &defaults).unwrap();
        assert_eq!(seeded.dropped_transactions, vec!["stale".to_string()]);
        assert!(!seeded.settings.contains(&"settings.motd".to_string()));
        assert!(seeded.settings.contains(&"settings.timezone".to_string()));
        ds.commit_transaction(constants::LAUNCH_TX, None).unwrap();
        assert_eq!(
            ds.get_key(&key("settings.motd"), &live).unwrap().as_deref(),
            Some("\"mine\"")
        );
        assert!(ds
            .get_key(&key("settings.timezone"), &live)
            .unwrap()
            .is_some());

        // Image data went straight to live, metadata included.
        let meta = Key::new(KeyType::Meta, "affected-services").unwrap();
        assert!(ds
            .get_metadata(&meta, &key("settings.motd"))
            .unwrap()
            .is_some());
        assert!(!ds.get_prefix("services.", &live).unwrap().is_empty());

        // A second boot seeds nothing new.
        let again = seed(&mut ds, &defaults).unwrap();
        assert!(again.settings.is_empty(), "{:?}", again.settings);
        assert!(ds.list_transactions().unwrap().is_empty());
    }

    #[test]
    fn a_bad_defaults_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[settings]\nmotd = 5\n").unwrap();
        let err = load_defaults(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("settings.motd"), "{err}");
    }
}
