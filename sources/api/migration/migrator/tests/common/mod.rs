//! Helpers shared by the migrator's integration tests: a seeded datastore, the test migration
//! programs, and views of a store's files.
#![allow(dead_code)]

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::LazyLock;

pub const MIGRATOR: &str = env!("CARGO_BIN_EXE_migrator");
/// A test migration program from `tools/migration-fixtures`, built on first use.
fn fixture(bin: &str) -> &'static str {
    let path = testserver::build_workspace_bin("migration-fixtures", bin);
    Box::leak(path.to_string_lossy().into_owned().into_boxed_str())
}

/// The chain 1.0.0 -> 1.1.0 -> 1.2.0 -> 1.3.0: each migration's name and its program.
pub static CHAIN: LazyLock<[(&str, &str); 3]> = LazyLock::new(|| {
    [
        (
            "migrate_v1.1.0_add-colour",
            fixture("migrator-test-add-colour"),
        ),
        (
            "migrate_v1.2.0_rename-motd",
            fixture("migrator-test-rename-motd"),
        ),
        (
            "migrate_v1.3.0_drop-legacy",
            fixture("migrator-test-drop-legacy"),
        ),
    ]
});
/// A migration that writes into its copy and then fails.
pub static EXPLODE: LazyLock<&str> = LazyLock::new(|| fixture("migrator-test-explode"));

pub fn data(name: &str) -> Key {
    Key::new(KeyType::Data, name).unwrap()
}

pub fn meta(name: &str) -> Key {
    Key::new(KeyType::Meta, name).unwrap()
}

/// A store at version 1.0.0 under `<dir>/datastore` with user values, metadata, a history
/// record and a stale pending transaction. Returns the base directory.
pub fn seed_store(dir: &Path) -> PathBuf {
    seed_store_at(dir, "1.0.0")
}

/// [`seed_store`] at another version.
pub fn seed_store_at(dir: &Path, version: &str) -> PathBuf {
    let base = dir.join("datastore");
    let mut ds = FilesystemDataStore::create(&base, version).unwrap();
    let live: BTreeMap<Key, String> = [
        ("settings.timeout", "30"),
        ("settings.ntp.servers", r#"["a.example","b.example"]"#),
        ("settings.ntp.iburst", "true"),
        ("settings.legacy", r#""keep me""#),
        ("settings.hostname", r#""node-1""#),
        ("settings.kernel.sysctl.\"net.ipv4.ip_forward\"", r#""1""#),
    ]
    .into_iter()
    .map(|(k, v)| (data(k), v.to_string()))
    .collect();
    let metadata = BTreeMap::from([
        (
            (meta("affected-services"), data("settings.motd")),
            r#"["motd"]"#.to_string(),
        ),
        (
            (meta("affected-services"), data("settings.ntp")),
            r#"["chrony"]"#.to_string(),
        ),
        (
            (meta("template"), data("configuration-files.motd")),
            r#""old {{x}}""#.to_string(),
        ),
    ]);
    ds.set_live_batch(&live, &metadata).unwrap();
    // The user's own motd, through a commit (so there is history to leave behind).
    let tx = Committed::Pending {
        tx: "user".to_string(),
    };
    ds.set_keys(
        &BTreeMap::from([(data("settings.motd"), r#""user motd""#.to_string())]),
        &tx,
    )
    .unwrap();
    ds.commit_transaction("user", None).unwrap();
    let stale = Committed::Pending {
        tx: "stale".to_string(),
    };
    ds.set_keys(
        &BTreeMap::from([(data("settings.hostname"), r#""pending""#.to_string())]),
        &stale,
    )
    .unwrap();
    ds.sync().unwrap();
    base
}

/// Where a test's migrations come from, as the migrator is told.
#[derive(Debug, Clone)]
pub enum Source {
    /// `--unsigned-migrations-dir DIR` (development mode).
    Unsigned(PathBuf),
    /// `--repo-dir DIR --root-json ROOT` (what images use).
    Signed { repo: PathBuf, root: PathBuf },
}

impl Source {
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        match self {
            Source::Unsigned(dir) => vec!["--unsigned-migrations-dir".into(), dir.into()],
            Source::Signed { repo, root } => vec![
                "--repo-dir".into(),
                repo.into(),
                "--root-json".into(),
                root.into(),
            ],
        }
    }
}

/// An unverified migrations directory with the chain and `extra` (name, program) linked to
/// their programs, and a file that is not a migration.
pub fn migrations_dir(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let migrations = dir.join("migrations");
    fs::create_dir_all(&migrations).unwrap();
    for (name, program) in CHAIN.iter().chain(extra) {
        std::os::unix::fs::symlink(program, migrations.join(name)).unwrap();
    }
    fs::write(migrations.join("README"), "not a migration").unwrap();
    migrations
}

pub fn migrator(base: &Path, source: &Source, to: &str) -> Command {
    let mut command = Command::new(MIGRATOR);
    command
        .arg("--datastore-path")
        .arg(base)
        .args(source.args())
        .arg("--target-version")
        .arg(to)
        .arg("--log-level")
        .arg("debug");
    command
}

pub fn run(base: &Path, source: &Source, to: &str) -> Output {
    migrator(base, source, to).output().unwrap()
}

pub fn run_ok(base: &Path, source: &Source, to: &str) {
    let out = run(base, source, to);
    assert!(
        out.status.success(),
        "migrating to {to} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last line of the migrator's stderr: what the console shows.
pub fn console(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .next_back()
        .unwrap_or_default()
        .to_string()
}

/// Every file under `dir` (data and metadata) with its contents; hidden files skipped.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn live(base: &Path) -> BTreeMap<String, String> {
    snapshot(&base.join("current/live"))
}

pub fn current_name(base: &Path) -> String {
    fs::read_link(base.join("current"))
        .unwrap()
        .display()
        .to_string()
}

/// Names in the base directory, sorted.
pub fn entries(base: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn value(base: &Path, key: &str) -> Option<String> {
    let path = data(key).path_under(&base.join("current/live"));
    fs::read_to_string(path).ok()
}

pub fn metadata(base: &Path, key: &str, meta: &str) -> Option<String> {
    let path = data(key).path_under(&base.join("current/live"));
    let file = format!(
        "{}.{meta}",
        path.file_name().unwrap().to_string_lossy().into_owned()
    );
    fs::read_to_string(path.with_file_name(file)).ok()
}

/// Runs the chain on the fresh store `base` forward (at once), back (one step, then the rest)
/// and forward again (one step at a time), checking every setting on the way.
pub fn check_chain(base: &Path, source: &Source) {
    let base = base.to_path_buf();
    let original = live(&base);
    assert_eq!(current_name(&base), "v1.0.0");

    run_ok(&base, source, "1.3.0");
    assert_eq!(current_name(&base), "v1.3.0");
    assert_eq!(
        value(&base, "settings.colour").as_deref(),
        Some(r#""blue""#)
    );
    assert_eq!(value(&base, "settings.timeout").as_deref(), Some("60"));
    assert_eq!(
        value(&base, "settings.greeting").as_deref(),
        Some(r#""user motd""#)
    );
    assert_eq!(value(&base, "settings.motd"), None);
    assert_eq!(
        metadata(&base, "settings.greeting", "affected-services").as_deref(),
        Some(r#"["motd"]"#)
    );
    assert_eq!(
        value(&base, "settings.time.servers").as_deref(),
        Some(r#"["a.example","b.example"]"#)
    );
    assert_eq!(
        metadata(&base, "settings.time", "affected-services").as_deref(),
        Some(r#"["chrony"]"#)
    );
    assert_eq!(value(&base, "settings.legacy"), None);
    assert_eq!(
        metadata(&base, "configuration-files.motd", "template").as_deref(),
        Some(r#""new {{x}}""#)
    );
    assert_eq!(
        value(&base, "settings.kernel.sysctl.\"net.ipv4.ip_forward\"").as_deref(),
        Some(r#""1""#)
    );
    // Pending transactions and history stay behind with the old version.
    assert!(snapshot(&base.join("current/pending")).is_empty());
    assert!(snapshot(&base.join("current/history")).is_empty());
    assert!(!snapshot(&base.join("v1.0.0/history")).is_empty());
    // The old store is kept as it was, for a rollback.
    assert_eq!(snapshot(&base.join("v1.0.0/live")), original);
    assert_eq!(
        entries(&base),
        ["current", "migrator.lock", "v1.0.0", "v1.3.0"]
    );
    // The new store opens and works.
    let mut ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    assert!(ds.list_transactions().unwrap().is_empty());
    ds.set_keys(
        &BTreeMap::from([(data("settings.colour"), r#""red""#.to_string())]),
        &Committed::Pending {
            tx: "t".to_string(),
        },
    )
    .unwrap();
    ds.commit_transaction("t", None).unwrap();
    drop(ds);

    // Back, one step at a time and then the rest; the user's change in 1.3.0 is dropped with
    // the setting that 1.0.0 does not know.
    run_ok(&base, source, "1.2.0");
    assert_eq!(current_name(&base), "v1.2.0");
    assert_eq!(
        value(&base, "settings.legacy").as_deref(),
        Some(r#""keep me""#)
    );
    assert_eq!(
        entries(&base),
        ["current", "migrator.lock", "v1.2.0", "v1.3.0"]
    );
    run_ok(&base, source, "1.0.0");
    assert_eq!(current_name(&base), "v1.0.0");
    assert_eq!(live(&base), original);
    assert!(snapshot(&base.join("current/migration-saved")).is_empty());
    assert_eq!(
        entries(&base),
        ["current", "migrator.lock", "v1.0.0", "v1.2.0"]
    );

    // Already there: nothing to do (1.0 is the same version as 1.0.0).
    run_ok(&base, source, "1.0");
    assert_eq!(current_name(&base), "v1.0.0");

    // Forward again in single steps gives the same store as the direct run.
    for version in ["1.1.0", "1.2.0", "1.3.0"] {
        run_ok(&base, source, version);
        assert_eq!(current_name(&base), format!("v{version}"));
    }
    assert_eq!(
        value(&base, "settings.greeting").as_deref(),
        Some(r#""user motd""#)
    );
    assert_eq!(value(&base, "settings.legacy"), None);
}
