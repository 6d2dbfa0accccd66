//! Runs the `migrator` binary on real datastores with the test migrations of
//! `tests/fixture/test_migration.rs`: a chain 1.0.0 -> 1.1.0 -> 1.2.0 -> 1.3.0, forward and
//! back, a failing migration, and SIGKILL at random moments.

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use rand::Rng;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MIGRATOR: &str = env!("CARGO_BIN_EXE_migrator");
const FIXTURE: &str = env!("CARGO_BIN_EXE_migrator-test-migration");
const CHAIN: [&str; 3] = [
    "migrate_v1.1.0_add-colour",
    "migrate_v1.2.0_rename-motd",
    "migrate_v1.3.0_drop-legacy",
];

fn data(name: &str) -> Key {
    Key::new(KeyType::Data, name).unwrap()
}

fn meta(name: &str) -> Key {
    Key::new(KeyType::Meta, name).unwrap()
}

/// A store at version 1.0.0 under `<dir>/datastore` with user values, metadata, a history
/// record and a stale pending transaction. Returns the base directory.
fn seed_store(dir: &Path) -> PathBuf {
    let base = dir.join("datastore");
    let mut ds = FilesystemDataStore::create(&base, "1.0.0").unwrap();
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
    ds.commit_transaction("user").unwrap();
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

/// A migrations directory with the chain (and `extra`) linked to the fixture program.
fn migrations_dir(dir: &Path, extra: &[&str]) -> PathBuf {
    let migrations = dir.join("migrations");
    fs::create_dir_all(&migrations).unwrap();
    for name in CHAIN.iter().chain(extra) {
        std::os::unix::fs::symlink(FIXTURE, migrations.join(name)).unwrap();
    }
    fs::write(migrations.join("README"), "not a migration").unwrap();
    migrations
}

fn migrator(base: &Path, migrations: &Path, to: &str) -> Command {
    let mut command = Command::new(MIGRATOR);
    command
        .arg("--datastore-path")
        .arg(base)
        .arg("--migrations-dir")
        .arg(migrations)
        .arg("--target-version")
        .arg(to)
        .arg("--log-level")
        .arg("debug");
    command
}

fn run(base: &Path, migrations: &Path, to: &str) -> Output {
    migrator(base, migrations, to).output().unwrap()
}

fn run_ok(base: &Path, migrations: &Path, to: &str) {
    let out = run(base, migrations, to);
    assert!(
        out.status.success(),
        "migrating to {to} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir` (data and metadata) with its contents; hidden files skipped.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
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

fn live(base: &Path) -> BTreeMap<String, String> {
    snapshot(&base.join("current/live"))
}

fn current_name(base: &Path) -> String {
    fs::read_link(base.join("current"))
        .unwrap()
        .display()
        .to_string()
}

/// Names in the base directory, sorted.
fn entries(base: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn value(base: &Path, key: &str) -> Option<String> {
    let path = data(key).path_under(&base.join("current/live"));
    fs::read_to_string(path).ok()
}

fn metadata(base: &Path, key: &str, meta: &str) -> Option<String> {
    let path = data(key).path_under(&base.join("current/live"));
    let file = format!(
        "{}.{meta}",
        path.file_name().unwrap().to_string_lossy().into_owned()
    );
    fs::read_to_string(path.with_file_name(file)).ok()
}

#[test]
fn chain_forward_then_back_restores_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let migrations = migrations_dir(dir.path(), &[]);
    let original = live(&base);

    run_ok(&base, &migrations, "1.3.0");
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
    ds.commit_transaction("t").unwrap();
    drop(ds);

    // Back, one step at a time and then the rest; the user's change in 1.3.0 is dropped with
    // the setting that 1.0.0 does not know.
    run_ok(&base, &migrations, "1.2.0");
    assert_eq!(current_name(&base), "v1.2.0");
    assert_eq!(
        value(&base, "settings.legacy").as_deref(),
        Some(r#""keep me""#)
    );
    assert_eq!(
        entries(&base),
        ["current", "migrator.lock", "v1.2.0", "v1.3.0"]
    );
    run_ok(&base, &migrations, "1.0.0");
    assert_eq!(current_name(&base), "v1.0.0");
    assert_eq!(live(&base), original);
    assert!(snapshot(&base.join("current/migration-saved")).is_empty());
    assert_eq!(
        entries(&base),
        ["current", "migrator.lock", "v1.0.0", "v1.2.0"]
    );

    // Already there: nothing to do (1.0 is the same version as 1.0.0).
    run_ok(&base, &migrations, "1.0");
    assert_eq!(current_name(&base), "v1.0.0");

    // Forward again in single steps gives the same store as the direct run.
    for version in ["1.1.0", "1.2.0", "1.3.0"] {
        run_ok(&base, &migrations, version);
        assert_eq!(current_name(&base), format!("v{version}"));
    }
    assert_eq!(
        value(&base, "settings.greeting").as_deref(),
        Some(r#""user motd""#)
    );
    assert_eq!(value(&base, "settings.legacy"), None);
}

#[test]
fn renamed_user_value_moves_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let migrations = migrations_dir(dir.path(), &[]);
    run_ok(&base, &migrations, "1.2.0");
    assert_eq!(
        value(&base, "settings.greeting").as_deref(),
        Some(r#""user motd""#)
    );
    assert_eq!(value(&base, "settings.motd"), None);
    // The user changes it under the new name; going back carries the new value to the old name.
    let mut ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    ds.set_keys(
        &BTreeMap::from([(data("settings.greeting"), r#""changed""#.to_string())]),
        &Committed::Live,
    )
    .unwrap();
    drop(ds);
    run_ok(&base, &migrations, "1.0.0");
    assert_eq!(
        value(&base, "settings.motd").as_deref(),
        Some(r#""changed""#)
    );
    assert_eq!(value(&base, "settings.greeting"), None);
    assert_eq!(
        metadata(&base, "settings.motd", "affected-services").as_deref(),
        Some(r#"["motd"]"#)
    );
}

#[test]
fn a_failing_migration_leaves_everything_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    // Runs after add-colour (1.1.0) and before rename-motd within 1.2.0 (name order).
    let migrations = migrations_dir(dir.path(), &["migrate_v1.2.0_explode"]);
    let before = snapshot(&base.join("v1.0.0"));

    let out = run(&base, &migrations, "1.3.0");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("migrate_v1.2.0_explode"), "{stderr}");
    assert!(stderr.contains("gives up on purpose"), "{stderr}");
    assert!(stderr.contains("left unchanged"), "{stderr}");
    assert_eq!(current_name(&base), "v1.0.0");
    assert_eq!(snapshot(&base.join("v1.0.0")), before);
    assert_eq!(entries(&base), ["current", "migrator.lock", "v1.0.0"]);

    // Once the bad migration is gone, the same run succeeds.
    fs::remove_file(migrations.join("migrate_v1.2.0_explode")).unwrap();
    run_ok(&base, &migrations, "1.3.0");
    assert_eq!(value(&base, "settings.half-done"), None);
}

#[test]
fn clear_errors_for_a_missing_store_or_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = migrations_dir(dir.path(), &[]);
    let out = run(&dir.path().join("nothing"), &migrations, "1.1.0");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("current"), "{stderr}");

    let base = seed_store(dir.path());
    let out = run(&base, &dir.path().join("no-such-dir"), "1.1.0");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No migration path from 1.0.0 to 1.1.0"),
        "{stderr}"
    );
    assert!(stderr.contains("no-such-dir"), "{stderr}");

    let out = run(&base, &migrations, "1.x");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1.x"));

    // A store in use by another handle (the API server) is refused, and nothing changes.
    let ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    let out = run(&base, &migrations, "1.1.0");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    drop(ds);
    assert_eq!(current_name(&base), "v1.0.0");

    // Bottlerocket's spelling: the `current` link as --datastore-path, --migration-directory.
    let out = Command::new(MIGRATOR)
        .arg("--datastore-path")
        .arg(base.join("current"))
        .arg("--migration-directory")
        .arg(&migrations)
        .arg("--target-version")
        .arg("1.1.0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current_name(&base), "v1.1.0");
}

#[test]
fn target_version_from_os_release() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let migrations = migrations_dir(dir.path(), &[]);
    let os_release = dir.path().join("os-release");
    fs::write(&os_release, "NAME=Ballast\nVERSION_ID=1.2.0\n").unwrap();
    let out = Command::new(MIGRATOR)
        .arg("--datastore-path")
        .arg(&base)
        .arg("--migrations-dir")
        .arg(&migrations)
        .arg("--migrate-to-version-from-os-release")
        .arg("--os-release")
        .arg(&os_release)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current_name(&base), "v1.2.0");
}

/// How many SIGKILLs the crash test delivers; `BALLAST_MIGRATOR_CRASH_ITERATIONS` overrides.
fn crash_iterations() -> usize {
    std::env::var("BALLAST_MIGRATOR_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

#[test]
fn sigkill_at_any_moment_leaves_a_complete_store() {
    const NAP_MS: &str = "2";
    let dir = tempfile::tempdir().unwrap();
    let migrations = migrations_dir(dir.path(), &[]);

    // Reference run: what the old and the new store hold, and how long a run takes.
    let reference = dir.path().join("reference");
    let base = seed_store(&reference);
    let old = live(&base);
    let started = Instant::now();
    let out = migrator(&base, &migrations, "1.3.0")
        .env("BALLAST_TEST_MIGRATION_NAP_MS", NAP_MS)
        .output()
        .unwrap();
    let duration = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = live(&base);
    assert_ne!(old, new);

    let mut rng = rand::rng();
    let (mut saw_old, mut saw_new) = (0, 0);
    for iteration in 0..crash_iterations() {
        let work = dir.path().join(format!("run-{iteration}"));
        let base = seed_store(&work);
        // Kill anywhere from the start to a little after a normal run would have finished.
        let limit = duration.as_micros() as u64 * 6 / 5 + 1;
        let delay = Duration::from_micros(rng.random_range(0..limit));
        let mut child = migrator(&base, &migrations, "1.3.0")
            .env("BALLAST_TEST_MIGRATION_NAP_MS", NAP_MS)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();

        let current = current_name(&base);
        let found = live(&base);
        match current.as_str() {
            "v1.0.0" => {
                assert_eq!(found, old, "iteration {iteration}: old store damaged");
                saw_old += 1;
            }
            "v1.3.0" => {
                assert_eq!(found, new, "iteration {iteration}: new store incomplete");
                saw_new += 1;
            }
            other => panic!("iteration {iteration}: current points at {other}"),
        }
        // A rerun finishes the job and cleans up.
        run_ok(&base, &migrations, "1.3.0");
        assert_eq!(current_name(&base), "v1.3.0", "iteration {iteration}");
        assert_eq!(live(&base), new, "iteration {iteration}");
        assert_eq!(
            snapshot(&base.join("v1.0.0/live")),
            old,
            "iteration {iteration}"
        );
        assert_eq!(
            entries(&base),
            ["current", "migrator.lock", "v1.0.0", "v1.3.0"],
            "iteration {iteration}"
        );
        fs::remove_dir_all(&work).unwrap();
    }
    eprintln!(
        "crash test: {saw_old} kills left the old store current, {saw_new} the new one \
         (a run takes {duration:?})"
    );
}
