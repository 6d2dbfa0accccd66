//! Runs the `migrator` binary in the mode images use: migrations only from a signed TUF
//! repository (made with the `repo` crate, as `cargo xtask repo` does), verified and run from
//! sealed memory. The test migration programs of `tests/fixture/` are the targets.
//!
//! One repository is built per test process and every test gets its own mirror of it (metadata
//! copied, targets hard-linked; a test that changes a target replaces its link). Its metadata is
//! signed as of 60 days ago, so it has expired: every test here also shows that the migrator
//! does not enforce expiration.
//!
//! The repository: images of 1.0.0 and the migrations
//! `(1.0.0, 1.1.0)`: add-colour, `(1.1.0, 1.2.0)`: rename-motd, `(1.2.0, 1.3.0)`: drop-legacy,
//! `(1.3.0, 1.4.0)`: explode (fails). Besides, `migrate_v1.2.0_explode` is a signed target that
//! the manifest does not list.

mod common;

use common::*;
use repo::repository::{add_migrations_with, MigrationOptions};
use repo::time::add_span;
use repo::tough::editor::signed::PathExists;
use repo::tough::editor::RepositoryEditor;
use repo::{
    add_images, AddOptions, Expirations, ImageFile, ImageSet, KeyDir, KeyOptions, RepoDir, Span,
    Timestamp, Version,
};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The shared repository: its directory and keys (kept for the whole test process).
struct Shared {
    _dir: tempfile::TempDir,
    repo: RepoDir,
    keys: KeyDir,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(build_repo())
    })
}

fn v(text: &str) -> Version {
    text.parse().unwrap()
}

/// When the shared repository was signed: long enough ago that all of it has expired.
fn signed_at() -> Timestamp {
    Timestamp::now() - Span::new().hours(24 * 60)
}

async fn build_repo() -> Shared {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyDir::generate(
        dir.path().join("keys"),
        &KeyOptions {
            now: signed_at(),
            ..KeyOptions::default()
        },
    )
    .await
    .unwrap();
    let repo = RepoDir::new(dir.path().join("repo"));
    let images_dir = dir.path().join("images");
    fs::create_dir(&images_dir).unwrap();
    let image = |name: &str| {
        let path = images_dir.join(name);
        fs::write(&path, name.repeat(64)).unwrap();
        ImageFile::new(path)
    };
    let images = ImageSet {
        variant: "dev".into(),
        arch: "x86_64".into(),
        version: v("1.0.0"),
        build_id: "test".into(),
        boot: image("boot.ext4"),
        root: image("root.erofs"),
        hash: image("root.verity"),
    };
    add_images(
        &repo,
        &keys,
        &images,
        &AddOptions {
            now: signed_at(),
            ..AddOptions::default()
        },
    )
    .await
    .unwrap();

    // Each program under its migration name, as a release would ship it.
    let files = dir.path().join("files");
    fs::create_dir(&files).unwrap();
    let file = |name: &str, program: &str| {
        let path = files.join(name);
        fs::copy(program, &path).unwrap();
        path
    };
    let options = MigrationOptions {
        now: signed_at(),
        ..MigrationOptions::default()
    };
    let pairs = [
        ("1.0.0", "1.1.0", CHAIN[0]),
        ("1.1.0", "1.2.0", CHAIN[1]),
        ("1.2.0", "1.3.0", CHAIN[2]),
        ("1.3.0", "1.4.0", ("migrate_v1.4.0_explode", *EXPLODE)),
    ];
    for (from, to, (name, program)) in pairs {
        add_migrations_with(
            &repo,
            &keys,
            v(from),
            v(to),
            &[file(name, program)],
            &options,
        )
        .await
        .unwrap();
    }
    sign_unlisted_target(&repo, &keys, &file("migrate_v1.2.0_explode", *EXPLODE)).await;
    Shared {
        _dir: dir,
        repo,
        keys,
    }
}

/// Adds `path` as a signed target without listing it in the manifest.
async fn sign_unlisted_target(repo: &RepoDir, keys: &KeyDir, path: &Path) {
    let current = repo::load(
        &repo.metadata_url().unwrap(),
        &repo.targets_url().unwrap(),
        &keys.root_json(),
        repo::tough::ExpirationEnforcement::Unsafe,
    )
    .await
    .unwrap();
    let mut editor = RepositoryEditor::from_repo(keys.root_json(), current.clone())
        .await
        .unwrap();
    let (name, target) = RepositoryEditor::build_target(path).await.unwrap();
    editor.add_target(name, target).unwrap();
    let next = |v: std::num::NonZeroU64| v.checked_add(1).unwrap();
    let expirations = Expirations::default();
    editor
        .targets_version(next(current.targets().signed.version))
        .unwrap()
        .targets_expires(add_span(signed_at(), expirations.targets).unwrap())
        .unwrap()
        .snapshot_version(next(current.snapshot().signed.version))
        .snapshot_expires(add_span(signed_at(), expirations.snapshot).unwrap())
        .timestamp_version(next(current.timestamp().signed.version))
        .timestamp_expires(add_span(signed_at(), expirations.timestamp).unwrap());
    let signed = editor.sign(&keys.signing_keys().unwrap()).await.unwrap();
    signed
        .copy_target(path, &repo.targets_dir(), PathExists::Skip, None)
        .await
        .unwrap();
    signed.write(repo.metadata_dir()).await.unwrap();
}

/// A private mirror of the shared repository in `dir`, as the updater would save it.
fn mirror(dir: &Path) -> PathBuf {
    let shared = shared();
    let mirror = dir.join("mirror");
    for (part, from) in [
        ("metadata", shared.repo.metadata_dir()),
        ("targets", shared.repo.targets_dir()),
    ] {
        let to = mirror.join(part);
        fs::create_dir_all(&to).unwrap();
        for entry in fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if part == "metadata" {
                fs::copy(entry.path(), target).unwrap();
            } else {
                fs::hard_link(entry.path(), target).unwrap();
            }
        }
    }
    mirror
}

fn signed(mirror: &Path) -> Source {
    Source::Signed {
        repo: mirror.to_path_buf(),
        root: shared().keys.root_json(),
    }
}

/// The file of target `name` in a mirror (`targets/<sha256>.<name>`).
fn target_file(mirror: &Path, name: &str) -> PathBuf {
    let suffix = format!(".{name}");
    fs::read_dir(mirror.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no file for {name}"))
}

/// Replaces a mirror's file (never writing through the hard link to the shared one).
fn replace_file(path: &Path, contents: &[u8]) {
    fs::remove_file(path).unwrap();
    fs::write(path, contents).unwrap();
}

/// Runs the migrator with the test programs logging to `log`; returns its output.
fn run_logged(base: &Path, source: &Source, to: &str, log: &Path) -> std::process::Output {
    migrator(base, source, to)
        .env("BALLAST_TEST_MIGRATION_LOG", log)
        .output()
        .unwrap()
}

/// What the test programs logged: (argv[0], /proc/self/exe) per run.
fn started(log: &Path) -> Vec<(String, String)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (arg0, exe) = l.split_once(' ').unwrap();
            (arg0.to_string(), exe.to_string())
        })
        .collect()
}

#[test]
fn chain_forward_and_back_through_the_signed_path() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    // The metadata has expired: a node's updater would refuse it, the migrator does not.
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(RepoDir::new(&mirror).load(&shared().keys.root_json()))
        .unwrap_err();
    assert!(matches!(err, repo::Error::Expired { .. }), "{err}");

    check_chain(&base, &signed(&mirror));
}

#[test]
fn migrations_run_from_sealed_memory_under_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    let log = dir.path().join("started");
    let out = run_logged(&base, &signed(&mirror), "1.3.0", &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = started(&log);
    let names: Vec<&str> = runs.iter().map(|(arg0, _)| arg0.as_str()).collect();
    assert_eq!(names, CHAIN.map(|(name, _)| name));
    for (name, exe) in &runs {
        assert!(
            exe.starts_with(&format!("/memfd:{name}")),
            "{name} ran from {exe}"
        );
    }

    // Going back runs them backward, in reverse order.
    fs::remove_file(&log).unwrap();
    let out = run_logged(&base, &signed(&mirror), "1.1.0", &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = started(&log).into_iter().map(|(arg0, _)| arg0).collect();
    assert_eq!(names, [CHAIN[2].0, CHAIN[1].0]);
    assert_eq!(current_name(&base), "v1.1.0");
    assert_eq!(
        value(&base, "settings.colour").as_deref(),
        Some(r#""blue""#)
    );
    assert_eq!(
        value(&base, "settings.motd").as_deref(),
        Some(r#""user motd""#)
    );
}

/// Runs to 1.3.0 and checks that the run was refused with `expected` in its console line,
/// before any migration ran, and that the store is as it was.
fn assert_refused(dir: &Path, base: &Path, source: &Source, expected: &[&str]) {
    let before = snapshot(&base.join("v1.0.0"));
    let log = dir.join("started");
    let out = run_logged(base, source, "1.3.0", &log);
    assert!(!out.status.success());
    let line = console(&out);
    assert!(
        line.starts_with("migrator: Cannot move the datastore from version 1.0.0 to 1.3.0"),
        "{line}"
    );
    for part in expected {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert!(line.ends_with(migrator::AFTER_FAILURE), "{line}");
    assert!(
        started(&log).is_empty(),
        "a migration ran: {:?}",
        started(&log)
    );
    assert_eq!(current_name(base), "v1.0.0");
    assert_eq!(snapshot(&base.join("v1.0.0")), before);
    // Nothing left behind either (no copy, no scratch directory of tough's).
    assert_eq!(entries(base), ["current", "migrator.lock", "v1.0.0"]);
}

#[test]
fn a_migration_changed_after_signing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    // The second migration of the path: the first would have run if checks came late.
    let file = target_file(&mirror, "migrate_v1.2.0_rename-motd");
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    replace_file(&file, &bytes);
    assert_refused(
        dir.path(),
        &base,
        &signed(&mirror),
        &[
            "migrate_v1.2.0_rename-motd",
            "does not match the length and sha256",
        ],
    );

    // Another program in its place.
    replace_file(&file, &fs::read(*EXPLODE).unwrap());
    assert_refused(
        dir.path(),
        &base,
        &signed(&mirror),
        &[
            "migrate_v1.2.0_rename-motd",
            "does not match",
            "its sha256 is",
        ],
    );

    // The genuine program with something appended.
    let original = shared().repo.targets_dir().join(file.file_name().unwrap());
    let mut longer = fs::read(&original).unwrap();
    longer.extend_from_slice(b"#!/bin/sh\n");
    replace_file(&file, &longer);
    assert_refused(
        dir.path(),
        &base,
        &signed(&mirror),
        &[
            "migrate_v1.2.0_rename-motd",
            "longer than the signed length",
        ],
    );

    // Once the genuine file is back, the same run succeeds.
    replace_file(&file, &fs::read(original).unwrap());
    run_ok(&base, &signed(&mirror), "1.3.0");
    assert_eq!(current_name(&base), "v1.3.0");
}

#[test]
fn a_listed_migration_missing_from_the_mirror_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    let file = target_file(&mirror, "migrate_v1.3.0_drop-legacy");
    fs::remove_file(&file).unwrap();
    assert_refused(
        dir.path(),
        &base,
        &signed(&mirror),
        &[
            "migrate_v1.3.0_drop-legacy",
            "missing",
            &file.display().to_string(),
        ],
    );
}

#[test]
fn metadata_not_signed_by_the_trusted_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    let other = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(KeyDir::generate(
            dir.path().join("other-keys"),
            &KeyOptions::default(),
        ))
        .unwrap();
    let source = Source::Signed {
        repo: mirror.clone(),
        root: other.root_json(),
    };
    assert_refused(
        dir.path(),
        &base,
        &source,
        &["does not verify against the trusted root"],
    );

    // A targets metadata file changed after signing.
    let source = signed(&mirror);
    let targets = fs::read_dir(mirror.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".targets.json"))
        .max()
        .unwrap();
    let text = fs::read_to_string(&targets).unwrap();
    let sha_of_explode = hex::encode(Sha256::digest(fs::read(*EXPLODE).unwrap()));
    let sha_of_drop = hex::encode(Sha256::digest(fs::read(CHAIN[2].1).unwrap()));
    fs::write(&targets, text.replace(&sha_of_drop, &sha_of_explode)).unwrap();
    assert_refused(dir.path(), &base, &source, &["does not verify"]);
}

#[test]
fn migrations_the_manifest_does_not_list_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    // Besides the signed but unlisted migrate_v1.2.0_explode, unsigned programs in targets/
    // under a migration's plain name and under a consistent-snapshot name.
    let explode = fs::read(*EXPLODE).unwrap();
    let sha = hex::encode(Sha256::digest(&explode));
    for name in [
        "migrate_v1.2.0_sneaky".to_string(),
        format!("{sha}.migrate_v1.1.0_sneaky"),
    ] {
        fs::write(mirror.join("targets").join(name), &explode).unwrap();
    }
    let log = dir.path().join("started");
    let out = run_logged(&base, &signed(&mirror), "1.3.0", &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = started(&log).into_iter().map(|(arg0, _)| arg0).collect();
    assert_eq!(names, CHAIN.map(|(name, _)| name));
    assert_eq!(value(&base, "settings.half-done"), None);
}

#[test]
fn a_failing_signed_migration_leaves_the_old_store() {
    let dir = tempfile::tempdir().unwrap();
    let base = seed_store(dir.path());
    let mirror = mirror(dir.path());
    let before = snapshot(&base.join("v1.0.0"));
    let log = dir.path().join("started");
    // Three migrations succeed, then the last of the path writes into its copy and fails.
    let out = run_logged(&base, &signed(&mirror), "1.4.0", &log);
    assert!(!out.status.success());
    assert_eq!(started(&log).len(), 4);
    let line = console(&out);
    assert_eq!(
        line,
        format!(
            "migrator: Cannot move the datastore from version 1.0.0 to 1.4.0: Migration \
             migrate_v1.4.0_explode (forward) failed with exit status: 1: the explode migration \
             gives up on purpose; {}",
            migrator::AFTER_FAILURE
        )
    );
    assert_eq!(current_name(&base), "v1.0.0");
    assert_eq!(snapshot(&base.join("v1.0.0")), before);
    assert_eq!(entries(&base), ["current", "migrator.lock", "v1.0.0"]);
}

#[test]
fn without_migrations_on_the_path_the_store_still_moves() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path());

    // The manifest has no pair between 1.4.0 and 1.5.0 (and back).
    let base = seed_store_at(&dir.path().join("a"), "1.4.0");
    let original = live(&base);
    let log = dir.path().join("started");
    let out = run_logged(&base, &signed(&mirror), "1.5.0", &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current_name(&base), "v1.5.0");
    assert_eq!(live(&base), original);
    let out = run_logged(&base, &signed(&mirror), "1.4.0", &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current_name(&base), "v1.4.0");
    assert!(started(&log).is_empty());

    // No mirror at all: no update saved one, so there is nothing signed to run.
    let base = seed_store(&dir.path().join("b"));
    let original = live(&base);
    let nowhere = Source::Signed {
        repo: dir.path().join("no-mirror"),
        root: shared().keys.root_json(),
    };
    run_ok(&base, &nowhere, "1.3.0");
    assert_eq!(current_name(&base), "v1.3.0");
    assert_eq!(live(&base), original);

    // No store yet (first boot): nothing to do, nothing created.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    run_ok(&empty, &signed(&mirror), "1.3.0");
    assert!(entries(&empty).is_empty());

    // A mirror that exists but holds no metadata is not "no mirror": refused.
    let base = seed_store(&dir.path().join("c"));
    let broken = dir.path().join("broken-mirror");
    fs::create_dir(&broken).unwrap();
    let source = Source::Signed {
        repo: broken,
        root: shared().keys.root_json(),
    };
    assert_refused(&dir.path().join("c"), &base, &source, &["does not verify"]);
}
