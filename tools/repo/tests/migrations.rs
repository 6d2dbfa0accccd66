//! Settings migrations in a repository: added with `add_migrations`, read back with tough's
//! client over `file://` URLs as the node's migrator does, and checked by `validate`.

use repo::repository::{add_migrations, add_migrations_with, MigrationOptions};
use repo::tough::editor::signed::PathExists;
use repo::tough::editor::RepositoryEditor;
use repo::tough::{IntoVec, RepositoryLoader, TargetName};
use repo::{
    add_images, AddOptions, Error, ImageFile, ImageSet, KeyDir, KeyOptions, Manifest, RepoDir,
    Span, Timestamp, Version,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Three small fake images of `version`.
fn fake_images(dir: &Path, version: &str) -> ImageSet {
    let images = dir.join(format!("images-{version}"));
    std::fs::create_dir_all(&images).unwrap();
    let file = |name: &str| {
        let path = images.join(name);
        std::fs::write(&path, format!("{name} {version}").repeat(100)).unwrap();
        ImageFile::new(path)
    };
    ImageSet {
        variant: "dev".into(),
        arch: "x86_64".into(),
        version: version.parse().unwrap(),
        build_id: "abc123".into(),
        boot: file("boot.ext4"),
        root: file("root.erofs"),
        hash: file("root.verity"),
    }
}

/// A repository with the images of 1.0.0 and 1.1.0, its keys, and a directory for files.
async fn repo_with_two_versions(dir: &Path) -> (RepoDir, KeyDir) {
    let keys = KeyDir::generate(dir.join("keys"), &KeyOptions::default())
        .await
        .unwrap();
    let repo = RepoDir::new(dir.join("repo"));
    for version in ["1.0.0", "1.1.0"] {
        add_images(
            &repo,
            &keys,
            &fake_images(dir, version),
            &AddOptions::default(),
        )
        .await
        .unwrap();
    }
    (repo, keys)
}

/// A file called `name` holding `contents`, in `dir/files`.
fn migration_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let path = files.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn v(text: &str) -> Version {
    text.parse().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn read_target(repo: &RepoDir, keys: &KeyDir, name: &str) -> Vec<u8> {
    let root = std::fs::read(keys.root_json()).unwrap();
    let client = RepositoryLoader::new(
        &root,
        repo.metadata_url().unwrap(),
        repo.targets_url().unwrap(),
    )
    .load()
    .await
    .unwrap();
    client
        .read_target(&TargetName::new(name).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name} is not a target"))
        .into_vec()
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_are_signed_and_listed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, keys) = repo_with_two_versions(dir.path()).await;
    // Given in this order on purpose: the list keeps it, it is not sorted.
    let files = [
        migration_file(dir.path(), "migrate_v1.1.0_rename-b", "program b"),
        migration_file(dir.path(), "migrate_v1.1.0_add-a", "program a"),
    ];
    let published = add_migrations(&repo, &keys, v("1.0.0"), v("1.1.0"), &files)
        .await
        .unwrap();
    assert_eq!(
        published.names,
        ["migrate_v1.1.0_rename-b", "migrate_v1.1.0_add-a"]
    );
    assert_eq!(published.versions.targets, 3);

    // A node's view: the manifest lists the pair, each migration is a verified target.
    let manifest = Manifest::parse(&read_target(&repo, &keys, "manifest.json").await).unwrap();
    assert_eq!(
        manifest.migrations[&(v("1.0.0"), v("1.1.0"))],
        published.names
    );
    assert_eq!(manifest.updates.len(), 2, "the updates are kept");
    assert_eq!(
        read_target(&repo, &keys, "migrate_v1.1.0_add-a").await,
        b"program a"
    );
    // Under its consistent-snapshot name, as the migrator's mirror has it.
    let sha = hex::encode(Sha256::digest(b"program b"));
    assert!(repo
        .targets_dir()
        .join(format!("{sha}.migrate_v1.1.0_rename-b"))
        .is_file());

    let checked = repo.validate(&keys.root_json()).await.unwrap();
    let names: Vec<&str> = checked.targets.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"migrate_v1.1.0_add-a"), "{names:?}");
    assert!(names.contains(&"migrate_v1.1.0_rename-b"), "{names:?}");
    assert_eq!(checked.manifest.migrations, manifest.migrations);

    // Images added later keep the migrations.
    add_images(
        &repo,
        &keys,
        &fake_images(dir.path(), "1.2.0"),
        &AddOptions::default(),
    )
    .await
    .unwrap();
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    assert_eq!(checked.manifest.migrations, manifest.migrations);
}

#[tokio::test]
async fn bad_names_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, keys) = repo_with_two_versions(dir.path()).await;
    let metadata = files_in(&repo.metadata_dir());
    let targets = files_in(&repo.targets_dir());
    for (name, expected) in [
        ("migrate_v1.0.0_x", "the version they migrate to"),
        ("migrate_v1.1_x", "the version they migrate to"),
        ("rename-x", "migrate_v<VERSION>_<name>"),
        ("migrate_v1.1.0_", "empty"),
        ("migrate_v1.1.0_a b", "ASCII letters"),
    ] {
        let file = migration_file(dir.path(), name, "x");
        let err = add_migrations(&repo, &keys, v("1.0.0"), v("1.1.0"), &[file])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadName { .. }), "{name}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains(expected),
            "{message}"
        );
    }
    let twice = migration_file(dir.path(), "migrate_v1.1.0_x", "x");
    let err = add_migrations(
        &repo,
        &keys,
        v("1.0.0"),
        v("1.1.0"),
        &[twice.clone(), twice],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");

    // Pairs that go backward or nowhere.
    for (from, to) in [("1.2.0", "1.1.0"), ("1.1.0", "1.1.0")] {
        let file = migration_file(dir.path(), &format!("migrate_v{to}_x"), "x");
        let err = add_migrations(&repo, &keys, v(from), v(to), &[file])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestInvalid { .. }), "{err}");
    }
    assert_eq!(files_in(&repo.metadata_dir()), metadata);
    assert_eq!(files_in(&repo.targets_dir()), targets);

    // No repository yet.
    let empty = RepoDir::new(dir.path().join("empty"));
    let file = migration_file(dir.path(), "migrate_v1.1.0_x", "x");
    let err = add_migrations(&empty, &keys, v("1.0.0"), v("1.1.0"), &[file])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRepo { .. }), "{err}");
}

#[tokio::test]
async fn a_pair_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, keys) = repo_with_two_versions(dir.path()).await;
    let first = migration_file(dir.path(), "migrate_v1.1.0_first", "one");
    add_migrations(&repo, &keys, v("1.0.0"), v("1.1.0"), &[first])
        .await
        .unwrap();
    let metadata = files_in(&repo.metadata_dir());
    let second = migration_file(dir.path(), "migrate_v1.1.0_second", "two");
    let err = add_migrations(
        &repo,
        &keys,
        v("1.0.0"),
        v("1.1.0"),
        std::slice::from_ref(&second),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("migrate_v1.1.0_first") && message.contains("--replace"),
        "{message}"
    );
    assert_eq!(files_in(&repo.metadata_dir()), metadata, "nothing signed");

    // Another pair, which replacing the first must leave alone.
    add_migrations(
        &repo,
        &keys,
        v("1.1.0"),
        v("1.2.0"),
        &[migration_file(dir.path(), "migrate_v1.2.0_a", "a")],
    )
    .await
    .unwrap();

    let options = MigrationOptions {
        replace: true,
        ..MigrationOptions::default()
    };
    add_migrations_with(&repo, &keys, v("1.0.0"), v("1.1.0"), &[second], &options)
        .await
        .unwrap();
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    let names: Vec<&str> = checked.targets.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"migrate_v1.1.0_second"), "{names:?}");
    assert!(
        !names.contains(&"migrate_v1.1.0_first"),
        "the replaced migration leaves the metadata: {names:?}"
    );
    assert_eq!(
        checked.manifest.migrations[&(v("1.0.0"), v("1.1.0"))],
        ["migrate_v1.1.0_second"]
    );
    assert_eq!(
        checked.manifest.migrations[&(v("1.1.0"), v("1.2.0"))],
        ["migrate_v1.2.0_a"]
    );
}

/// Signs `manifest` and `extra` files into `repo` as targets, bypassing `add_migrations`.
async fn publish_raw(repo: &RepoDir, keys: &KeyDir, manifest: &Manifest, extra: &[PathBuf]) {
    let loaded = repo.load(&keys.root_json()).await.unwrap();
    let stage = tempfile::tempdir().unwrap();
    let path = stage.path().join("manifest.json");
    std::fs::write(&path, manifest.to_json().unwrap()).unwrap();
    let mut editor = RepositoryEditor::from_repo(keys.root_json(), loaded.clone())
        .await
        .unwrap();
    let files: Vec<PathBuf> = extra.iter().cloned().chain([path]).collect();
    for file in &files {
        let (name, target) = RepositoryEditor::build_target(file).await.unwrap();
        editor.add_target(name, target).unwrap();
    }
    let next = |v: std::num::NonZeroU64| v.checked_add(1).unwrap();
    let expires = Timestamp::now() + Span::new().hours(24);
    editor
        .targets_version(next(loaded.targets().signed.version))
        .unwrap()
        .targets_expires(expires)
        .unwrap()
        .snapshot_version(next(loaded.snapshot().signed.version))
        .snapshot_expires(expires)
        .timestamp_version(next(loaded.timestamp().signed.version))
        .timestamp_expires(expires);
    let signed = editor.sign(&keys.signing_keys().unwrap()).await.unwrap();
    for file in &files {
        signed
            .copy_target(file, &repo.targets_dir(), PathExists::Skip, None)
            .await
            .unwrap();
    }
    signed.write(repo.metadata_dir()).await.unwrap();
}

#[tokio::test]
async fn validation_covers_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, keys) = repo_with_two_versions(dir.path()).await;
    let file = migration_file(dir.path(), "migrate_v1.1.0_a", "program a");
    let published = add_migrations(&repo, &keys, v("1.0.0"), v("1.1.0"), &[file])
        .await
        .unwrap();

    // Its bytes changed after signing.
    let sha = hex::encode(Sha256::digest(b"program a"));
    let stored = repo.targets_dir().join(format!("{sha}.migrate_v1.1.0_a"));
    std::fs::write(&stored, "program A").unwrap();
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::TargetVerify { .. }), "{err}");
    assert!(err.to_string().contains("migrate_v1.1.0_a"), "{err}");
    std::fs::write(&stored, "program a").unwrap();
    repo.validate(&keys.root_json()).await.unwrap();

    // Listed but not a target.
    let mut manifest = published.manifest.clone();
    manifest
        .migrations
        .insert((v("1.1.0"), v("1.2.0")), vec!["migrate_v1.2.0_gone".into()]);
    publish_raw(&repo, &keys, &manifest, &[]).await;
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::ManifestInvalid { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("migration migrate_v1.2.0_gone for (1.1.0, 1.2.0) is not a target"),
        "{err}"
    );

    // A target, but named for another version than the one its pair migrates to.
    let wrong = migration_file(dir.path(), "migrate_v1.3.0_b", "program b");
    let mut manifest = published.manifest.clone();
    manifest
        .migrations
        .insert((v("1.1.0"), v("1.2.0")), vec!["migrate_v1.3.0_b".into()]);
    publish_raw(&repo, &keys, &manifest, &[wrong]).await;
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("migration migrate_v1.3.0_b for (1.1.0, 1.2.0)"),
        "{err}"
    );
}
