//! Runs the `migrator` binary on real datastores with the test migration programs of
//! `tests/fixture/` from an unverified directory (development mode): a chain 1.0.0 -> 1.1.0 ->
//! 1.2.0 -> 1.3.0, forward and back, a failing migration, and SIGKILL at random moments.

mod common;

use common::*;
use datastore::{Committed, DataStore, FilesystemDataStore};
use rand::Rng;
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn chain_forward_then_back_restores_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let source = Source::Unsigned(migrations_dir(dir.path(), &[]));
    check_chain(&base, &source);
}

#[test]
fn renamed_user_value_moves_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let migrations = Source::Unsigned(migrations_dir(dir.path(), &[]));
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
    let dir_path = migrations_dir(dir.path(), &[("migrate_v1.2.0_explode", *EXPLODE)]);
    let migrations = Source::Unsigned(dir_path.clone());
    let before = snapshot(&base.join("v1.0.0"));

    let out = run(&base, &migrations, "1.3.0");
    assert!(!out.status.success());
    let line = console(&out);
    assert!(
        line.starts_with("migrator: Cannot move the datastore from version 1.0.0 to 1.3.0"),
        "{line}"
    );
    assert!(
        line.contains("migrate_v1.2.0_explode (forward) failed"),
        "{line}"
    );
    assert!(line.contains("gives up on purpose"), "{line}");
    assert!(line.ends_with(migrator::AFTER_FAILURE), "{line}");
    assert_eq!(current_name(&base), "v1.0.0");
    assert_eq!(snapshot(&base.join("v1.0.0")), before);
    assert_eq!(entries(&base), ["current", "migrator.lock", "v1.0.0"]);

    // Once the bad migration is gone, the same run succeeds.
    fs::remove_file(dir_path.join("migrate_v1.2.0_explode")).unwrap();
    run_ok(&base, &migrations, "1.3.0");
    assert_eq!(value(&base, "settings.half-done"), None);
}

#[test]
fn clear_errors_for_a_missing_store_or_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = migrations_dir(dir.path(), &[]);
    let migrations = Source::Unsigned(dir_path.clone());
    // No store yet (first boot): nothing to do, and nothing is created.
    let nothing = dir.path().join("nothing");
    fs::create_dir(&nothing).unwrap();
    run_ok(&nothing, &migrations, "1.1.0");
    assert!(entries(&nothing).is_empty());

    let base = seed_store(dir.path());
    let out = run(
        &base,
        &Source::Unsigned(dir.path().join("no-such-dir")),
        "1.1.0",
    );
    assert!(!out.status.success());
    let line = console(&out);
    assert!(
        line.contains(
            "from version 1.0.0 to 1.1.0: Cannot read the unverified migrations directory"
        ),
        "{line}"
    );
    assert!(line.contains("no-such-dir"), "{line}");

    // A migration that cannot be run is refused before anything happens.
    let not_executable = dir_path.join("migrate_v1.1.0_zz-not-executable");
    fs::write(&not_executable, "").unwrap();
    let out = run(&base, &migrations, "1.1.0");
    assert!(
        console(&out).contains("is not an executable file"),
        "{out:?}"
    );
    fs::remove_file(&not_executable).unwrap();

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

    // Bottlerocket's spelling: the `current` link as --datastore-path.
    let out = Command::new(MIGRATOR)
        .arg("--datastore-path")
        .arg(base.join("current"))
        .arg("--unsigned-migrations-dir")
        .arg(&dir_path)
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
        .arg("--unsigned-migrations-dir")
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
    let migrations = Source::Unsigned(migrations_dir(dir.path(), &[]));

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
