//! Repositories built from small fake partition images in a temporary directory, read back with
//! tough's client over `file://` URLs as a node would.

use repo::tough::editor::signed::PathExists;
use repo::tough::editor::RepositoryEditor;
use repo::tough::schema::RoleType;
use repo::tough::{IntoVec, RepositoryLoader, TargetName};
use repo::{
    add_images, refresh, refresh_timestamp, AddOptions, Error, Expirations, ImageFile, ImageSet,
    KeyDir, KeyOptions, Manifest, RepoDir, Span, Timestamp, Version, WavePolicy,
};
use std::path::{Path, PathBuf};

/// Three images of a few KiB whose bytes depend on `version`.
fn fake_images(dir: &Path, version: &str) -> ImageSet {
    let images = dir.join(format!("images-{version}"));
    std::fs::create_dir_all(&images).unwrap();
    let file = |name: &str, size: usize| {
        let path = images.join(name);
        let seed = format!("{name} {version} ");
        let bytes: Vec<u8> = seed.bytes().cycle().take(size).collect();
        std::fs::write(&path, bytes).unwrap();
        ImageFile::new(path)
    };
    ImageSet {
        variant: "dev".into(),
        arch: "x86_64".into(),
        version: version.parse().unwrap(),
        build_id: "abc123".into(),
        boot: file("boot.ext4", 8192),
        root: file("root.erofs", 16384),
        hash: file("root.verity", 4096),
    }
}

async fn keys(dir: &Path, name: &str) -> KeyDir {
    KeyDir::generate(dir.join(name), &KeyOptions::default())
        .await
        .unwrap()
}

fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(bytes).unwrap()
}

/// The file under `targets/` that holds target `name` (`<sha256>.<name>`).
fn target_file(repo: &RepoDir, name: &str) -> PathBuf {
    let suffix = format!(".{name}");
    std::fs::read_dir(repo.targets_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no file for {name}"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn build_then_read_back_with_tough() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path(), "keys").await;
    let repo = RepoDir::new(dir.path().join("repo"));
    let images = fake_images(dir.path(), "1.0.0");

    let published = add_images(&repo, &keys, &images, &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(
        published.images.boot,
        "ballast-dev-x86_64-1.0.0-abc123-boot.ext4.zst"
    );
    assert_eq!(
        published.images.hash,
        "ballast-dev-x86_64-1.0.0-abc123-root.verity.zst"
    );
    assert_eq!(
        files_in(&repo.metadata_dir()),
        [
            "1.root.json",
            "1.snapshot.json",
            "1.targets.json",
            "timestamp.json"
        ]
    );

    // A node's view: tough's client, the root of trust, file:// URLs.
    let root = std::fs::read(keys.root_json()).unwrap();
    let client = RepositoryLoader::new(
        &root,
        repo.metadata_url().unwrap(),
        repo.targets_url().unwrap(),
    )
    .load()
    .await
    .unwrap();
    assert_eq!(client.targets().signed.targets.len(), 4);
    for (image, name) in [
        (&images.boot, &published.images.boot),
        (&images.root, &published.images.root),
        (&images.hash, &published.images.hash),
    ] {
        let stream = client
            .read_target(&TargetName::new(name.as_str()).unwrap())
            .await
            .unwrap()
            .expect("listed");
        let bytes = stream.into_vec().await.unwrap();
        assert_eq!(
            zstd_decode(&bytes),
            std::fs::read(&image.path).unwrap(),
            "{name}"
        );
    }
    let manifest = client
        .read_target(&TargetName::new("manifest.json").unwrap())
        .await
        .unwrap()
        .unwrap()
        .into_vec()
        .await
        .unwrap();
    let manifest = Manifest::parse(&manifest).unwrap();
    assert_eq!(manifest.updates.len(), 1);
    let update = &manifest.updates[0];
    assert_eq!(
        (update.variant.as_str(), update.arch.as_str()),
        ("dev", "x86_64")
    );
    assert_eq!(update.version, Version::new(1, 0, 0));
    assert_eq!(update.max_version, Version::new(1, 0, 0));
    assert!(update.waves.is_empty());
    assert_eq!(update.images, published.images);
    assert!(manifest.migrations.is_empty());
    let json: serde_json::Value = serde_json::from_slice(&manifest.to_json().unwrap()).unwrap();
    assert!(json["migrations"].is_object(), "{json}");

    let checked = repo.validate(&keys.root_json()).await.unwrap();
    assert_eq!(checked.targets.len(), 4);
    let boot = checked
        .targets
        .iter()
        .find(|t| t.name == published.images.boot)
        .unwrap();
    assert_eq!(boot.decompressed, Some(8192));
    assert_eq!(checked.expires.len(), 4);

    // A second version with waves: both entries, one ceiling, every role signed again.
    let options = AddOptions {
        waves: WavePolicy::gradual(),
        ..AddOptions::default()
    };
    let second = add_images(&repo, &keys, &fake_images(dir.path(), "1.1.0"), &options)
        .await
        .unwrap();
    assert_eq!(
        (
            second.versions.targets,
            second.versions.snapshot,
            second.versions.timestamp
        ),
        (2, 2, 2)
    );
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    assert_eq!(checked.targets.len(), 7);
    let updates = &checked.manifest.updates;
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].version, Version::new(1, 1, 0));
    assert!(updates
        .iter()
        .all(|u| u.max_version == Version::new(1, 1, 0)));
    assert_eq!(updates[0].waves.len(), 7);
    assert!(updates[1].waves.is_empty());
    // The first publication's files are still there for clients in the middle of an update.
    let metadata = files_in(&repo.metadata_dir());
    for name in ["1.targets.json", "2.targets.json", "2.snapshot.json"] {
        assert!(metadata.contains(&name.to_string()), "{metadata:?}");
    }
    assert_eq!(
        files_in(&repo.targets_dir()).len(),
        8,
        "two manifests, six images"
    );
}

#[tokio::test]
async fn same_version_is_refused_unless_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path(), "keys").await;
    let repo = RepoDir::new(dir.path().join("repo"));
    let images = fake_images(dir.path(), "2.0.0");
    add_images(&repo, &keys, &images, &AddOptions::default())
        .await
        .unwrap();
    let before = files_in(&repo.metadata_dir());
    let err = add_images(&repo, &keys, &images, &AddOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err}");
    assert!(err.to_string().contains("--replace"), "{err}");
    assert_eq!(files_in(&repo.metadata_dir()), before, "nothing written");

    // A rebuild of the same version: the old images leave the metadata.
    let rebuilt = ImageSet {
        build_id: "def456".into(),
        ..images
    };
    let options = AddOptions {
        replace: true,
        ..AddOptions::default()
    };
    add_images(&repo, &keys, &rebuilt, &options).await.unwrap();
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    assert_eq!(checked.manifest.updates.len(), 1);
    let names: Vec<&str> = checked.targets.iter().map(|t| t.name.as_str()).collect();
    assert!(names.iter().all(|n| !n.contains("abc123")), "{names:?}");
    assert_eq!(names.len(), 4);
}

#[tokio::test]
async fn tampered_target_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path(), "keys").await;
    let repo = RepoDir::new(dir.path().join("repo"));
    let published = add_images(
        &repo,
        &keys,
        &fake_images(dir.path(), "1.0.0"),
        &AddOptions::default(),
    )
    .await
    .unwrap();

    let file = target_file(&repo, &published.images.root);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::TargetVerify { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&published.images.root)
            && message.contains("changed or damaged after signing"),
        "{message}"
    );

    // A truncated target fails too.
    bytes.truncate(10);
    std::fs::write(&file, &bytes).unwrap();
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::TargetVerify { .. }), "{err}");
}

#[tokio::test]
async fn expired_metadata_fails_until_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path(), "keys").await;
    let repo = RepoDir::new(dir.path().join("repo"));
    let now = Timestamp::now();
    let month_ago = now - Span::new().hours(30 * 24);
    let options = AddOptions {
        now: month_ago,
        expirations: Expirations {
            targets: Span::new().days(60),
            snapshot: Span::new().days(60),
            timestamp: Span::new().days(1),
        },
        ..AddOptions::default()
    };
    add_images(&repo, &keys, &fake_images(dir.path(), "1.0.0"), &options)
        .await
        .unwrap();

    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                role: RoleType::Timestamp,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refresh-timestamp"), "{err}");

    let expires = refresh_timestamp(&repo, &keys, Span::new().days(7), now)
        .await
        .unwrap();
    assert!(expires > now);
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    let timestamp = checked
        .expires
        .iter()
        .find(|(role, _)| *role == RoleType::Timestamp)
        .unwrap();
    assert_eq!(timestamp.1, expires);
    let client = repo.load(&keys.root_json()).await.unwrap();
    assert_eq!(client.timestamp().signed.version.get(), 2);
    assert_eq!(
        client.snapshot().signed.version.get(),
        1,
        "only the timestamp changed"
    );

    // Expired targets metadata: refresh signs every role again.
    let options = AddOptions {
        now: month_ago,
        expirations: Expirations {
            targets: Span::new().days(1),
            snapshot: Span::new().days(60),
            timestamp: Span::new().days(60),
        },
        ..AddOptions::default()
    };
    add_images(&repo, &keys, &fake_images(dir.path(), "1.1.0"), &options)
        .await
        .unwrap();
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Expired {
                role: RoleType::Targets,
                ..
            }
        ),
        "{err}"
    );
    let versions = refresh(&repo, &keys, &Expirations::default(), now)
        .await
        .unwrap();
    assert_eq!(versions.targets, 3);
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    assert_eq!(checked.manifest.updates.len(), 2);
}

#[tokio::test]
async fn metadata_signed_by_other_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = keys(dir.path(), "ours").await;
    let theirs = keys(dir.path(), "theirs").await;
    let images = fake_images(dir.path(), "1.0.0");
    let repo = RepoDir::new(dir.path().join("repo"));
    let other = RepoDir::new(dir.path().join("other"));
    add_images(&repo, &ours, &images, &AddOptions::default())
        .await
        .unwrap();
    add_images(&other, &theirs, &images, &AddOptions::default())
        .await
        .unwrap();
    repo.validate(&ours.root_json()).await.unwrap();

    // A client trusting another root refuses the repository.
    let err = repo.validate(&theirs.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::LoadRepo { .. }), "{err}");

    // A timestamp signed by another key, dropped into our repository, is refused.
    let timestamp = repo.metadata_dir().join("timestamp.json");
    let good = std::fs::read(&timestamp).unwrap();
    std::fs::copy(other.metadata_dir().join("timestamp.json"), &timestamp).unwrap();
    let err = repo.validate(&ours.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::LoadRepo { .. }), "{err}");
    assert!(err.to_string().contains("timestamp"), "{err}");
    std::fs::write(&timestamp, good).unwrap();

    // Editing our repository with the other keys is refused before anything is written.
    let before = files_in(&repo.metadata_dir());
    let err = add_images(
        &repo,
        &theirs,
        &fake_images(dir.path(), "1.1.0"),
        &AddOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::LoadRepo { .. }), "{err}");
    assert_eq!(files_in(&repo.metadata_dir()), before);

    // Our root with their keys: the roles cannot be signed.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(mixed.join("keys")).unwrap();
    std::fs::copy(ours.root_json(), mixed.join("root.json")).unwrap();
    for key in theirs.key_files().unwrap() {
        std::fs::copy(&key, mixed.join("keys").join(key.file_name().unwrap())).unwrap();
    }
    let err = refresh_timestamp(
        &repo,
        &KeyDir::new(&mixed),
        Span::new().days(7),
        Timestamp::now(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Sign { .. }), "{err}");
    assert!(
        err.to_string().contains("must match the root of trust"),
        "{err}"
    );
    repo.validate(&ours.root_json()).await.unwrap();
}

#[tokio::test]
async fn separate_keys_per_role() {
    let dir = tempfile::tempdir().unwrap();
    let options = KeyOptions {
        separate: true,
        ..KeyOptions::default()
    };
    let keys = KeyDir::generate(dir.path().join("keys"), &options)
        .await
        .unwrap();
    let files: Vec<String> = keys
        .key_files()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["root.pk8", "snapshot.pk8", "targets.pk8", "timestamp.pk8"]
    );
    let root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keys.root_json()).unwrap()).unwrap();
    let mut ids: Vec<String> = ["root", "targets", "snapshot", "timestamp"]
        .iter()
        .map(|role| {
            assert_eq!(root["signed"]["roles"][role]["threshold"], 1);
            root["signed"]["roles"][role]["keyids"][0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one key per role");
    assert_eq!(root["signed"]["consistent_snapshot"], true);

    let repo = RepoDir::new(dir.path().join("repo"));
    add_images(
        &repo,
        &keys,
        &fake_images(dir.path(), "1.0.0"),
        &AddOptions::default(),
    )
    .await
    .unwrap();
    repo.validate(&keys.root_json()).await.unwrap();

    // Without the timestamp key the timestamp cannot be refreshed.
    std::fs::remove_file(keys.dir().join("keys/timestamp.pk8")).unwrap();
    let err = refresh_timestamp(&repo, &keys, Span::new().days(7), Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Sign { .. }), "{err}");

    // Keys are never overwritten.
    let err = KeyDir::generate(keys.dir(), &KeyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeysExist { .. }), "{err}");
}

/// Signs `manifest` into `repo` as manifest.json, bypassing the checks of `add_images`.
async fn publish_raw_manifest(repo: &RepoDir, keys: &KeyDir, manifest: &[u8]) {
    let loaded = repo.load(&keys.root_json()).await.unwrap();
    let stage = tempfile::tempdir().unwrap();
    let path = stage.path().join("manifest.json");
    std::fs::write(&path, manifest).unwrap();
    let mut editor = RepositoryEditor::from_repo(keys.root_json(), loaded.clone())
        .await
        .unwrap();
    let (name, target) = RepositoryEditor::build_target(&path).await.unwrap();
    editor.add_target(name, target).unwrap();
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
    signed
        .copy_target(&path, &repo.targets_dir(), PathExists::Skip, None)
        .await
        .unwrap();
    signed.write(repo.metadata_dir()).await.unwrap();
}

#[tokio::test]
async fn inconsistent_manifest_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path(), "keys").await;
    let repo = RepoDir::new(dir.path().join("repo"));
    let published = add_images(
        &repo,
        &keys,
        &fake_images(dir.path(), "1.0.0"),
        &AddOptions::default(),
    )
    .await
    .unwrap();

    // A listed image that is not a target.
    let mut manifest = published.manifest.clone();
    manifest.updates[0].images.hash = "ballast-missing.zst".into();
    publish_raw_manifest(&repo, &keys, &manifest.to_json().unwrap()).await;
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::ManifestInvalid { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("hash image ballast-missing.zst is not a target"),
        "{err}"
    );

    // A version that does not parse.
    let mut json: serde_json::Value =
        serde_json::from_slice(&published.manifest.to_json().unwrap()).unwrap();
    json["updates"][0]["max_version"] = "one point oh".into();
    publish_raw_manifest(&repo, &keys, json.to_string().as_bytes()).await;
    let err = repo.validate(&keys.root_json()).await.unwrap_err();
    assert!(matches!(err, Error::ManifestParse { .. }), "{err}");
    assert!(err.to_string().contains("updates[0].max_version"), "{err}");
}

#[tokio::test]
async fn images_from_a_build_directory() {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build/images/dev-0.3.0");
    std::fs::create_dir_all(&build).unwrap();
    let mut infos = serde_json::Map::new();
    for (kind, file, size) in [
        ("boot", "boot.ext4", 4096),
        ("root", "root.erofs", 8192),
        ("hash", "root.verity", 4096),
    ] {
        let bytes = vec![kind.as_bytes()[0]; size];
        std::fs::write(build.join(file), &bytes).unwrap();
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        infos.insert(
            kind.into(),
            serde_json::json!({"file": file, "size": size, "sha256": sha}),
        );
    }
    let manifest = serde_json::json!({
        "variant": "dev", "version": "0.3.0", "build_id": "0badc0ffee", "arch": "x86_64",
        "kernel_version": "6.1.0", "source_date_epoch": 1_700_000_000u64,
        "root_hash": "00", "salt": "00", "data_blocks": 2, "hash_size": 4096,
        "root_compression": "lz4hc,12", "kernel_cmdline": "quiet",
        "formats": [], "images": infos, "partitions": [],
        "grubenv": {"esp_path": "/EFI/BOOT/grubenv", "disk_offset": 0}
    });
    std::fs::write(build.join("manifest.json"), manifest.to_string()).unwrap();

    let images = ImageSet::from_build_dir(&build).unwrap();
    assert_eq!(images.version, Version::new(0, 3, 0));
    assert_eq!(images.build_id, "0badc0ffee");
    let keys = keys(dir.path(), "keys").await;
    let repo = RepoDir::new(dir.path().join("repo"));
    let published = add_images(&repo, &keys, &images, &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(
        published.images.root,
        "ballast-dev-x86_64-0.3.0-0badc0ffee-root.erofs.zst"
    );

    // An image changed after the build is refused, and the repository stays as it was.
    std::fs::write(build.join("root.erofs"), b"changed").unwrap();
    let images = ImageSet {
        version: Version::new(0, 3, 1),
        ..ImageSet::from_build_dir(&build).unwrap()
    };
    let err = add_images(&repo, &keys, &images, &AddOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageChanged { .. }), "{err}");
    assert!(err.to_string().contains("build again"), "{err}");
    let checked = repo.validate(&keys.root_json()).await.unwrap();
    assert_eq!(checked.manifest.updates.len(), 1);

    // Names that cannot go into a target name are refused.
    let bad = ImageSet {
        variant: "dev/../x".into(),
        ..fake_images(dir.path(), "9.9.9")
    };
    let err = add_images(&repo, &keys, &bad, &AddOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadName { .. }), "{err}");
}
