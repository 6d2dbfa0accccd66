//! Building blocks for datastore migrations, so that the common cases are one line in a
//! migration's `main()`.
//!
//! # Background
//!
//! When the OS version changes, the `migrator` copies the settings datastore and runs the
//! migrations between the two versions on the copy, one program per migration. A migration is
//! named `migrate_v<version>_<name>` after the version it migrates *to*, and is run as
//!
//! ```text
//! migrate_v1.2.0_rename-motd --source-datastore DIR --target-datastore DIR (--forward | --backward)
//! ```
//!
//! (Bottlerocket's interface). The target starts as an exact copy of the source's live data and
//! metadata; a migration changes the target in place and leaves the source alone. `--forward`
//! runs when updating to the migration's version or past it, `--backward` when going back below
//! it, so every step here says what it does in both directions.
//!
//! # Usage
//!
//! ```no_run
//! use migration_helpers::{migrate, AddSetting, RenameSetting};
//! use serde_json::json;
//!
//! fn main() -> std::process::ExitCode {
//!     migrate((
//!         AddSetting::new("settings.motd-colour", json!("blue")),
//!         RenameSetting::new("settings.greeting", "settings.motd"),
//!     ))
//! }
//! ```
//!
//! A tuple of steps runs them in order going forward and in reverse order going backward. Steps:
//!
//! | step | forward | backward |
//! |---|---|---|
//! | [`AddSetting`] | sets the default when the key is unset (and metadata) | removes the key (and that metadata) |
//! | [`RemoveSetting`] | removes the key or group, keeping the values aside | puts the kept values back (else an optional default) |
//! | [`RenameSetting`] | moves a key or group, with its metadata, to the new name | moves it back |
//! | [`ReplaceDefault`] | old default -> new default, only where the value is still the old default | the reverse |
//! | [`ReplaceMetadata`] | sets a metadata entry (e.g. `template`) to the new value | sets it back |
//! | [`Custom`] | any function over the [`Store`] | any function |
//!
//! Values removed by [`RemoveSetting`] are kept in `<target>/migration-saved/<key path>`
//! (outside `live`, so no daemon sees them); the migrator carries that directory along with
//! live data, so a later downgrade can restore what the user had.
//!
//! # Current limitations
//!
//! - Only live data and metadata are migrated; the migrator drops pending transactions.
//! - [`ReplaceDefault`] cannot tell a value the user set on purpose from the untouched default
//!   when the two are equal (no datastore records who wrote a value).
#![forbid(unsafe_code)]

pub mod error;

pub use error::{Error, Result};

use clap::Parser;
use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use error::{
    CorruptValueSnafu, FailedSnafu, InvalidKeySnafu, OpenTargetSnafu, ReadSnafu,
    RenameConflictSnafu, SaveValueSnafu, UsageSnafu, WriteSnafu,
};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing::{debug, info, warn};

/// Directory inside a datastore version directory that keeps values removed by a migration.
pub const SAVED_DIR: &str = constants::MIGRATION_SAVED_DIR;

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
        })
    }
}

/// The migration command line (Bottlerocket's interface).
#[derive(Debug, Clone, Parser)]
#[command(about = "Migrates a copy of the Ballast settings datastore")]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["forward", "backward"])))]
pub struct MigrationArgs {
    /// The datastore as it was before this migration (read only).
    #[arg(long)]
    pub source_datastore: PathBuf,
    /// The copy to change in place.
    #[arg(long)]
    pub target_datastore: PathBuf,
    /// Migrate to this migration's version.
    #[arg(long)]
    pub forward: bool,
    /// Migrate back below this migration's version.
    #[arg(long)]
    pub backward: bool,
}

impl MigrationArgs {
    /// Parses `args` (the first item is the program name).
    pub fn parse_from_args<I, T>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::try_parse_from(args).map_err(|e| {
            UsageSnafu {
                message: e.to_string().trim_end().to_string(),
            }
            .build()
        })
    }

    pub fn direction(&self) -> Direction {
        if self.backward {
            Direction::Backward
        } else {
            Direction::Forward
        }
    }
}

/// One migration step, reversible.
pub trait Migration {
    fn forward(&self, store: &mut Store) -> Result<()>;
    fn backward(&self, store: &mut Store) -> Result<()>;
}

impl<M: Migration + ?Sized> Migration for &M {
    fn forward(&self, store: &mut Store) -> Result<()> {
        (**self).forward(store)
    }
    fn backward(&self, store: &mut Store) -> Result<()> {
        (**self).backward(store)
    }
}

impl<M: Migration + ?Sized> Migration for Box<M> {
    fn forward(&self, store: &mut Store) -> Result<()> {
        (**self).forward(store)
    }
    fn backward(&self, store: &mut Store) -> Result<()> {
        (**self).backward(store)
    }
}

/// Steps in order going forward, in reverse order going backward.
impl<M: Migration> Migration for Vec<M> {
    fn forward(&self, store: &mut Store) -> Result<()> {
        self.iter().try_for_each(|m| m.forward(store))
    }
    fn backward(&self, store: &mut Store) -> Result<()> {
        self.iter().rev().try_for_each(|m| m.backward(store))
    }
}

macro_rules! tuple_migration {
    ($($name:ident : $index:tt),+ ; $($rev:tt),+) => {
        /// Steps in order going forward, in reverse order going backward.
        impl<$($name: Migration),+> Migration for ($($name,)+) {
            fn forward(&self, store: &mut Store) -> Result<()> {
                $(self.$index.forward(store)?;)+
                Ok(())
            }
            fn backward(&self, store: &mut Store) -> Result<()> {
                $(self.$rev.backward(store)?;)+
                Ok(())
            }
        }
    };
}
tuple_migration!(A: 0; 0);
tuple_migration!(A: 0, B: 1; 1, 0);
tuple_migration!(A: 0, B: 1, C: 2; 2, 1, 0);
tuple_migration!(A: 0, B: 1, C: 2, D: 3; 3, 2, 1, 0);
tuple_migration!(A: 0, B: 1, C: 2, D: 3, E: 4; 4, 3, 2, 1, 0);
tuple_migration!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5; 5, 4, 3, 2, 1, 0);

/// The whole of a migration's `main()`: parses the command line, logs to stderr, runs
/// `migration` on the target datastore and reports an error on stderr with a failing exit code.
pub fn migrate(migration: impl Migration) -> ExitCode {
    // The migrator relays these lines to the journal; `logging` keeps colour codes out of it.
    logging::init(logging::LevelFilter::INFO);
    let name = std::env::args()
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "migration".to_string());
    match MigrationArgs::parse_from_args(std::env::args_os())
        .and_then(|args| run(&args, &migration))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `migration` in the direction the arguments ask for.
pub fn run(args: &MigrationArgs, migration: &dyn Migration) -> Result<()> {
    let mut store = Store::open(&args.target_datastore)?;
    let direction = args.direction();
    info!(
        source = %args.source_datastore.display(),
        target = %args.target_datastore.display(),
        %direction,
        "migrating"
    );
    match direction {
        Direction::Forward => migration.forward(&mut store),
        Direction::Backward => migration.backward(&mut store),
    }?;
    store.sync()
}

fn data_key(name: &str) -> Result<Key> {
    Key::new(KeyType::Data, name).context(InvalidKeySnafu {
        key: name,
        kind: "data",
    })
}

fn meta_key(name: &str) -> Result<Key> {
    Key::new(KeyType::Meta, name).context(InvalidKeySnafu {
        key: name,
        kind: "metadata",
    })
}

fn parse_value(key: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).context(CorruptValueSnafu { key })
}

fn describe_meta(key: &str, meta: &str) -> String {
    format!("metadata {meta} of {key}")
}

/// The target datastore as a migration sees it: live data and metadata, values as JSON.
pub struct Store {
    ds: FilesystemDataStore,
    dir: PathBuf,
}

impl Store {
    /// Opens the datastore version directory `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let ds = FilesystemDataStore::open(dir).context(OpenTargetSnafu { path: dir })?;
        Ok(Store {
            dir: ds.path().to_path_buf(),
            ds,
        })
    }

    /// The version directory being migrated.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The live value of `key`, if set.
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        let k = data_key(key)?;
        match self
            .ds
            .get_key(&k, &Committed::Live)
            .context(ReadSnafu { key })?
        {
            Some(text) => Ok(Some(parse_value(key, &text)?)),
            None => Ok(None),
        }
    }

    /// `key` itself and every key below it (`key.*`), with their values.
    pub fn get_tree(&self, key: &str) -> Result<BTreeMap<String, Value>> {
        let k = data_key(key)?;
        let mut out = BTreeMap::new();
        if let Some(value) = self.get(k.name())? {
            out.insert(k.name().to_string(), value);
        }
        let below = self
            .ds
            .get_prefix(&format!("{}.", k.name()), &Committed::Live)
            .context(ReadSnafu { key })?;
        for (key, text) in below {
            let value = parse_value(key.name(), &text)?;
            out.insert(key.name().to_string(), value);
        }
        Ok(out)
    }

    /// Sets the live value of `key`.
    pub fn set(&mut self, key: &str, value: &Value) -> Result<()> {
        let k = data_key(key)?;
        let pairs = BTreeMap::from([(k, value.to_string())]);
        self.ds
            .set_keys(&pairs, &Committed::Live)
            .context(WriteSnafu { key })
    }

    /// Removes `key` from live (nothing happens when it is unset).
    pub fn remove(&mut self, key: &str) -> Result<()> {
        let k = data_key(key)?;
        self.ds
            .unset_key(&k, &Committed::Live)
            .context(WriteSnafu { key })
    }

    /// Every metadata entry of `key`.
    pub fn metadata_of(&self, key: &str) -> Result<BTreeMap<String, Value>> {
        let k = data_key(key)?;
        let listed = self
            .ds
            .list_populated_metadata(k.name(), None)
            .context(ReadSnafu { key })?;
        let mut out = BTreeMap::new();
        if let Some(metas) = listed.get(&k) {
            for meta in metas {
                if let Some(value) = self.get_metadata(k.name(), meta.name())? {
                    out.insert(meta.name().to_string(), value);
                }
            }
        }
        Ok(out)
    }

    pub fn get_metadata(&self, key: &str, meta: &str) -> Result<Option<Value>> {
        let (k, m) = (data_key(key)?, meta_key(meta)?);
        let what = describe_meta(key, meta);
        match self
            .ds
            .get_metadata(&m, &k)
            .context(ReadSnafu { key: &what })?
        {
            Some(text) => Ok(Some(parse_value(&what, &text)?)),
            None => Ok(None),
        }
    }

    pub fn set_metadata(&mut self, key: &str, meta: &str, value: &Value) -> Result<()> {
        let (k, m) = (data_key(key)?, meta_key(meta)?);
        self.ds
            .set_metadata(&m, &k, &value.to_string())
            .context(WriteSnafu {
                key: describe_meta(key, meta),
            })
    }

    pub fn remove_metadata(&mut self, key: &str, meta: &str) -> Result<()> {
        let (k, m) = (data_key(key)?, meta_key(meta)?);
        self.ds.unset_metadata(&m, &k).context(WriteSnafu {
            key: describe_meta(key, meta),
        })
    }

    fn saved_path(&self, key: &str) -> Result<PathBuf> {
        Ok(data_key(key)?.path_under(&self.dir.join(SAVED_DIR)))
    }

    /// Keeps `value` of a removed `key` aside (durably) for a later downgrade.
    pub fn save_value(&mut self, key: &str, value: &Value) -> Result<()> {
        let path = self.saved_path(key)?;
        write_durably(&path, value.to_string().as_bytes())
            .context(SaveValueSnafu { key, path: &path })
    }

    /// Takes back the values kept aside for `key` and keys below it (they are deleted).
    pub fn take_saved(&mut self, key: &str) -> Result<BTreeMap<String, Value>> {
        let root = self.dir.join(SAVED_DIR);
        let path = self.saved_path(key)?;
        let mut out = BTreeMap::new();
        let mut files = Vec::new();
        collect_files(&path, &mut files).context(SaveValueSnafu { key, path: &path })?;
        for file in files {
            let Some(name) = key_name_of(&root, &file) else {
                continue;
            };
            let text = fs::read_to_string(&file).context(SaveValueSnafu {
                key: &name,
                path: &file,
            })?;
            out.insert(name.clone(), parse_value(&name, &text)?);
            fs::remove_file(&file).context(SaveValueSnafu {
                key: &name,
                path: &file,
            })?;
        }
        Ok(out)
    }

    /// Flushes everything written so far.
    pub fn sync(&mut self) -> Result<()> {
        self.ds.sync().context(WriteSnafu {
            key: "(final flush)",
        })
    }
}

/// The key name a saved-value file stands for (its path below `root`, segments decoded).
fn key_name_of(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).ok()?;
    let segments: Vec<String> = relative
        .components()
        .map(|c| {
            let text = c.as_os_str().to_str()?;
            percent_decode_str(text)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect::<Option<_>>()?;
    Key::from_segments(KeyType::Data, &segments)
        .ok()
        .map(|k| k.name().to_string())
}

/// Regular files at or under `path` (nothing when it does not exist).
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_file() {
        out.push(path.to_path_buf());
    } else if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            collect_files(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Replaces `path` atomically and durably (temporary file, fsync, rename, fsync of the directory).
fn write_durably(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-saved-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_data()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Adds a setting. Forward: gives `key` its default when it is unset (a value already there is
/// kept) and sets the given metadata. Backward: removes the key and that metadata.
#[derive(Debug, Clone)]
pub struct AddSetting {
    key: String,
    default: Value,
    metadata: Vec<(String, Value)>,
}

impl AddSetting {
    pub fn new(key: impl Into<String>, default: Value) -> Self {
        AddSetting {
            key: key.into(),
            default,
            metadata: Vec::new(),
        }
    }

    /// Also sets metadata `meta` (e.g. `affected-services`) of the key.
    pub fn with_metadata(mut self, meta: impl Into<String>, value: Value) -> Self {
        self.metadata.push((meta.into(), value));
        self
    }
}

impl Migration for AddSetting {
    fn forward(&self, store: &mut Store) -> Result<()> {
        if store.get_tree(&self.key)?.is_empty() {
            info!(key = %self.key, default = %self.default, "adding setting");
            store.set(&self.key, &self.default)?;
        } else {
            debug!(key = %self.key, "setting already present; keeping its value");
        }
        for (meta, value) in &self.metadata {
            store.set_metadata(&self.key, meta, value)?;
        }
        Ok(())
    }

    fn backward(&self, store: &mut Store) -> Result<()> {
        info!(key = %self.key, "removing setting that the older version does not know");
        store.remove(&self.key)?;
        for (meta, _) in &self.metadata {
            store.remove_metadata(&self.key, meta)?;
        }
        Ok(())
    }
}

/// Removes a setting or a group of settings. Forward: removes `key` and every key below it,
/// with their metadata, keeping the values aside. Backward: restores the kept values; when
/// none were kept, sets the optional default (otherwise the older version's defaults apply).
#[derive(Debug, Clone)]
pub struct RemoveSetting {
    key: String,
    restore_default: Option<Value>,
}

impl RemoveSetting {
    pub fn new(key: impl Into<String>) -> Self {
        RemoveSetting {
            key: key.into(),
            restore_default: None,
        }
    }

    /// Going backward with no kept value, set `key` to `value`.
    pub fn restoring_default(mut self, value: Value) -> Self {
        self.restore_default = Some(value);
        self
    }
}

impl Migration for RemoveSetting {
    fn forward(&self, store: &mut Store) -> Result<()> {
        for (key, value) in store.get_tree(&self.key)? {
            info!(key, "removing setting");
            store.save_value(&key, &value)?;
            for meta in store.metadata_of(&key)?.keys() {
                store.remove_metadata(&key, meta)?;
            }
            store.remove(&key)?;
        }
        Ok(())
    }

    fn backward(&self, store: &mut Store) -> Result<()> {
        let saved = store.take_saved(&self.key)?;
        if saved.is_empty() {
            if let Some(default) = &self.restore_default {
                if store.get_tree(&self.key)?.is_empty() {
                    info!(key = %self.key, "restoring removed setting with its default");
                    store.set(&self.key, default)?;
                }
            }
        }
        for (key, value) in saved {
            info!(key, "restoring removed setting");
            store.set(&key, &value)?;
        }
        Ok(())
    }
}

/// Renames a setting (or a group: every key below it moves too), with its metadata.
/// Backward: renames it back. A value already at the destination is never overwritten.
#[derive(Debug, Clone)]
pub struct RenameSetting {
    from: String,
    to: String,
}

impl RenameSetting {
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        RenameSetting {
            from: from.into(),
            to: to.into(),
        }
    }

    fn rename(store: &mut Store, from: &str, to: &str) -> Result<()> {
        let from_key = data_key(from)?;
        let to_key = data_key(to)?;
        let moves = store.get_tree(from_key.name())?;
        // Work out every destination first, so that nothing changes if one is taken.
        let mut plan = Vec::with_capacity(moves.len());
        for (old, value) in moves {
            let rest = &old[from_key.name().len()..];
            let new = format!("{}{rest}", to_key.name());
            if store.get(&new)?.is_some() {
                return RenameConflictSnafu { from: old, to: new }.fail();
            }
            let metadata = store.metadata_of(&old)?;
            plan.push((old, new, value, metadata));
        }
        // Metadata on the group key itself (it has no value of its own).
        let group_metadata = if plan.iter().any(|(old, ..)| old == from_key.name()) {
            BTreeMap::new()
        } else {
            store.metadata_of(from_key.name())?
        };
        for meta in group_metadata.keys() {
            store.remove_metadata(from_key.name(), meta)?;
        }
        for (meta, value) in &group_metadata {
            store.set_metadata(to_key.name(), meta, value)?;
        }
        for (old, _, _, metadata) in &plan {
            for meta in metadata.keys() {
                store.remove_metadata(old, meta)?;
            }
            store.remove(old)?;
        }
        for (old, new, value, metadata) in &plan {
            info!(from = old, to = new, "renaming setting");
            store.set(new, value)?;
            for (meta, value) in metadata {
                store.set_metadata(new, meta, value)?;
            }
        }
        Ok(())
    }
}

impl Migration for RenameSetting {
    fn forward(&self, store: &mut Store) -> Result<()> {
        Self::rename(store, &self.from, &self.to)
    }

    fn backward(&self, store: &mut Store) -> Result<()> {
        Self::rename(store, &self.to, &self.from)
    }
}

/// Changes the default of a setting. Forward: where `key` still holds the `old` default it gets
/// the `new` one; a value the user chose is left alone. Backward: the reverse.
#[derive(Debug, Clone)]
pub struct ReplaceDefault {
    key: String,
    old: Value,
    new: Value,
}

impl ReplaceDefault {
    pub fn new(key: impl Into<String>, old: Value, new: Value) -> Self {
        ReplaceDefault {
            key: key.into(),
            old,
            new,
        }
    }

    fn replace(store: &mut Store, key: &str, from: &Value, to: &Value) -> Result<()> {
        match store.get(key)? {
            Some(current) if current == *from => {
                info!(key, %from, %to, "replacing default value");
                store.set(key, to)
            }
            Some(_) => {
                debug!(key, "value differs from the default; keeping it");
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Migration for ReplaceDefault {
    fn forward(&self, store: &mut Store) -> Result<()> {
        Self::replace(store, &self.key, &self.old, &self.new)
    }

    fn backward(&self, store: &mut Store) -> Result<()> {
        Self::replace(store, &self.key, &self.new, &self.old)
    }
}

/// Changes one metadata entry of a key (`None` = absent). Forward: sets it to `new`; backward:
/// to `old`. Metadata belongs to the image, so the entry is set whatever it held; a value other
/// than the expected one is logged.
#[derive(Debug, Clone)]
pub struct ReplaceMetadata {
    key: String,
    meta: String,
    old: Option<Value>,
    new: Option<Value>,
}

impl ReplaceMetadata {
    pub fn new(
        key: impl Into<String>,
        meta: impl Into<String>,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Self {
        ReplaceMetadata {
            key: key.into(),
            meta: meta.into(),
            old,
            new,
        }
    }

    /// The `template` metadata of a key (a configuration file's template).
    pub fn template(key: impl Into<String>, old: &str, new: &str) -> Self {
        Self::new(
            key,
            "template",
            Some(Value::String(old.to_string())),
            Some(Value::String(new.to_string())),
        )
    }

    fn replace(
        &self,
        store: &mut Store,
        expected: &Option<Value>,
        to: &Option<Value>,
    ) -> Result<()> {
        let current = store.get_metadata(&self.key, &self.meta)?;
        if current != *expected && current != *to {
            warn!(key = %self.key, meta = %self.meta, "metadata held an unexpected value; replacing it");
        }
        match to {
            Some(value) => store.set_metadata(&self.key, &self.meta, value),
            None => store.remove_metadata(&self.key, &self.meta),
        }
    }
}

impl Migration for ReplaceMetadata {
    fn forward(&self, store: &mut Store) -> Result<()> {
        self.replace(store, &self.old, &self.new)
    }

    fn backward(&self, store: &mut Store) -> Result<()> {
        self.replace(store, &self.new, &self.old)
    }
}

/// Type of a [`Custom`] step's functions.
pub type StepFn = fn(&mut Store) -> Result<()>;

/// A step written as two functions, for what the other steps do not cover.
#[derive(Debug, Clone, Copy)]
pub struct Custom {
    pub forward: StepFn,
    pub backward: StepFn,
}

impl Migration for Custom {
    fn forward(&self, store: &mut Store) -> Result<()> {
        (self.forward)(store)
    }

    fn backward(&self, store: &mut Store) -> Result<()> {
        (self.backward)(store)
    }
}

/// Does nothing in either direction (a version whose migration has nothing left to do).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOp;

impl Migration for NoOp {
    fn forward(&self, _: &mut Store) -> Result<()> {
        Ok(())
    }
    fn backward(&self, _: &mut Store) -> Result<()> {
        Ok(())
    }
}

/// An error for a [`Custom`] step to give up with.
pub fn fail(message: impl Into<String>) -> Error {
    FailedSnafu {
        message: message.into(),
    }
    .build()
}

#[cfg(test)]
mod test;
