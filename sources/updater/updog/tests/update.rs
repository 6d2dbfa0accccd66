//! updog against a real repository served over HTTP on 127.0.0.1 and a real disk image file:
//! the happy path, every refusal, waves, version locks, downgrades, the migrations mirror and
//! the detection of an update that rolled back.

mod common;

use common::{Fixture, BOOT_SIZE, HASH_SIZE, ROOT_SIZE};
use disk_layout::{write_flags, BootSet, Layout, PartitionRole};
use repo::repository::add_migrations;
use repo::tough::{
    ExpirationEnforcement, FilesystemTransport, IntoVec, RepositoryLoader, TargetName,
};
use repo::{AddOptions, Expirations, KeyDir, KeyOptions, Span, Timestamp, WavePolicy};
use std::path::Path;
use std::process::Command;
use updog::Outcome;

fn versions(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["version"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_writes_the_inactive_set_then_applies_and_reverts() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    let published = f.publish("1.1.0").await;

    let check = f.json(&["check-update"]).await;
    assert_eq!(check["running"]["version"], "1.0.0");
    assert_eq!(check["running"]["variant"], "dev");
    assert_eq!(check["running"]["arch"], "x86_64");
    assert_eq!(check["running"]["build_id"], "b100");
    assert_eq!(check["chosen"]["version"], "1.1.0");
    assert_eq!(check["chosen"]["images"]["root"], published.images.root);
    assert_eq!(versions(&check["updates"]), ["1.1.0"]);
    let all = f.json(&["check-update", "--all"]).await;
    assert_eq!(versions(&all["updates"]), ["1.1.0", "1.0.0"]);
    let (result, text) = f.run(&["check-update"]).await;
    result.unwrap();
    assert!(text.contains("Update available: dev 1.1.0"), "{text}");

    let before = f.flags();
    let progress = f.path("progress.json");
    let written = f
        .json(&[
            "update-image",
            "--progress-file",
            progress.to_str().unwrap(),
        ])
        .await;
    assert_eq!(written["set"], "B");
    assert_eq!(written["image"]["version"], "1.1.0");
    assert_eq!(written["image"]["build_id"], "b110");
    assert_eq!(written["migrations"], serde_json::json!([]));

    // The inactive partitions hold exactly the decompressed images.
    assert!(f.inactive_holds("1.1.0"));
    // BOOT-B is valid (one try) but not yet next; A is as it was.
    let flags = f.flags();
    assert_eq!(flags.get(BootSet::A), before.get(BootSet::A));
    assert_eq!(flags.get(BootSet::B).tries_left, 1);
    assert_eq!(flags.get(BootSet::B).priority, 0);
    assert!(!flags.get(BootSet::B).successful);

    let sets = f.sets_json();
    assert_eq!(sets["A"]["version"], "1.0.0");
    assert_eq!(sets["B"]["version"], "1.1.0");
    assert_eq!(sets["B"]["build_id"], "b110");
    assert!(sets["pending"].is_null());

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    assert_eq!(report["phase"], "done");
    assert_eq!(report["targets_done"], 3);
    assert_eq!(report["targets_total"], 3);
    assert_eq!(report["target"], published.images.hash);
    assert_eq!(report["bytes_written"], HASH_SIZE as u64);
    assert!(report["download_expected"].as_u64().unwrap() > 0);
    assert!(report.get("bytes_expected").is_some());

    // Targets were fetched under their consistent-snapshot names over HTTP.
    let requests = f.server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/targets/")
                && r.ends_with(&format!(".{}", published.images.root))),
        "{requests:?}"
    );

    let status = f.json(&["status"]).await;
    assert_eq!(status["active_set"], "A");
    assert_eq!(status["next_boot"], "A");
    assert_eq!(status["inactive"]["set"], "B");
    assert_eq!(status["inactive"]["image"]["version"], "1.1.0");
    assert_eq!(status["inactive"]["valid"], true);
    assert_eq!(status["inactive"]["successful"], false);
    assert!(status["failed_update"].is_null());

    let applied = f.json(&["update-apply"]).await;
    assert_eq!(applied["next_boot"], "B");
    assert_eq!(f.flags().get(BootSet::B).priority, 2);
    assert_eq!(
        f.sets_json()["pending"],
        serde_json::json!({"set": "B", "version": "1.1.0"})
    );

    let reverted = f.json(&["update-revert"]).await;
    assert_eq!(reverted["next_boot"], "A");
    assert!(f.sets_json()["pending"].is_null());

    // Apply again with a reboot; the test's reboot command leaves a mark.
    let mark = f.path("rebooted");
    let command = format!("touch {}", mark.display());
    let (result, _) = f
        .run(&["--reboot-command", &command, "update-apply", "--reboot"])
        .await;
    result.unwrap();
    assert!(mark.exists(), "the reboot command ran");
    assert_eq!(f.json(&["status"]).await["next_boot"], "B");

    // Booted into B: both sets are known; the try stays pending until the boot is marked
    // successful (it could still end at the boot deadline), then it is over.
    f.write_config(0, "latest", false);
    let mut booted = f;
    booted.active = BootSet::B;
    booted.write_os_release("1.1.0");
    let status = booted.json(&["status"]).await;
    assert_eq!(status["running"]["version"], "1.1.0");
    assert_eq!(status["inactive"]["image"]["version"], "1.0.0");
    assert!(status["failed_update"].is_null());
    assert_eq!(booted.sets_json()["pending"]["set"], "B");
    let mut flags = booted.flags();
    flags.mark_successful_boot(BootSet::B);
    write_flags(&booted.disk, &flags).unwrap();
    let status = booted.json(&["status"]).await;
    assert!(status["failed_update"].is_null());
    assert!(booted.sets_json()["pending"].is_null());
    let (result, _) = booted.run(&["update-image"]).await;
    assert_eq!(result.unwrap(), Outcome::NoUpdate, "1.1.0 is the newest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exit_status_and_messages() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    let updog = env!("CARGO_BIN_EXE_updog");
    let run = |command: &[&str]| {
        let argv = f.argv(command);
        Command::new(updog).args(&argv[1..]).output().unwrap()
    };

    let out = run(&["check-update", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(check["chosen"].is_null());

    let out = run(&["update-image"]);
    assert_eq!(out.status.code(), Some(3), "nothing to do: {out:?}");
    let out = run(&["update"]);
    assert_eq!(out.status.code(), Some(3), "nothing to do: {out:?}");

    let out = run(&["update-apply"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("upgrade-to-inactive refused"), "{stderr}");

    std::fs::write(f.path("updog.toml"), "seed = 1\n").unwrap();
    let out = run(&["check-update"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("updog.toml") && stderr.contains("metadata_base_url"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_oversized_targets_leave_the_inactive_set_unbootable() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    f.publish("1.1.0").await;
    // A first update makes B valid, so the failures below visibly clear it.
    f.json(&["update-image"]).await;
    assert_eq!(f.flags().get(BootSet::B).tries_left, 1);
    let a = f.flags().get(BootSet::A);

    let next = f.publish("1.2.0").await;
    let root = f.target_file(&next.images.root);
    let good = std::fs::read(&root).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    std::fs::write(&root, &bad).unwrap();

    let message = f.error(&["update-image"]).await;
    assert!(message.contains(&next.images.root), "{message}");
    assert!(message.contains("does not match the sha256"), "{message}");
    assert!(
        message.contains("inactive set B was left unbootable"),
        "{message}"
    );
    let flags = f.flags();
    assert_eq!(flags.get(BootSet::A), a, "the running set is untouched");
    assert!(!flags.get(BootSet::B).is_bootable());
    assert!(f.sets_json()["B"].is_null(), "B no longer holds 1.1.0");
    let status = f.json(&["status"]).await;
    assert_eq!(status["inactive"]["valid"], false);
    assert_eq!(status["next_boot"], "A");

    // The same bytes plus a tail: longer than the signed length.
    std::fs::write(&root, &good).unwrap();
    let hash = f.target_file(&next.images.hash);
    let mut long = std::fs::read(&hash).unwrap();
    long.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&hash, &long).unwrap();
    let progress = f.path("progress.json");
    let message = f
        .error(&[
            "update-image",
            "--progress-file",
            progress.to_str().unwrap(),
        ])
        .await;
    assert!(message.contains(&next.images.hash), "{message}");
    assert!(message.contains("larger than the length"), "{message}");
    assert!(!f.flags().get(BootSet::B).is_bootable());
    assert_eq!(f.flags().get(BootSet::A), a);
    let report = updog::progress::read(&progress).unwrap();
    assert_eq!(report["phase"], "failed");
    assert_eq!(report["target"], next.images.hash);
    assert_eq!(report["targets_done"], 2);

    // Repaired, the update goes through.
    std::fs::write(&hash, &long[..long.len() - 4096]).unwrap();
    f.json(&["update-image"]).await;
    assert!(f.inactive_holds("1.2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_or_foreign_metadata_is_refused_before_the_disk_is_touched() {
    let mut f = Fixture::new().await;
    let month_ago = Timestamp::now() - Span::new().hours(30 * 24);
    let stale = AddOptions {
        now: month_ago,
        expirations: Expirations {
            targets: Span::new().days(60),
            snapshot: Span::new().days(60),
            timestamp: Span::new().days(1),
        },
        ..AddOptions::default()
    };
    f.publish_with("dev", "x86_64", "1.1.0", stale).await;
    let before = f.snapshot();
    let message = f.error(&["update-image"]).await;
    assert!(message.contains("timestamp metadata"), "{message}");
    assert!(message.contains("expired"), "{message}");
    assert_eq!(f.snapshot(), before);
    let message = f.error(&["check-update"]).await;
    assert!(message.contains("expired"), "{message}");

    // A repository signed by other keys than the root of trust.
    repo::refresh(&f.repo, &f.keys, &Expirations::default(), Timestamp::now())
        .await
        .unwrap();
    f.json(&["check-update"]).await;
    let theirs = KeyDir::generate(f.path("their-keys"), &KeyOptions::default())
        .await
        .unwrap();
    let mut argv = f.argv(&["update-image"]);
    let root_arg = argv.iter().position(|a| a == "--root-json").unwrap() + 1;
    argv[root_arg] = theirs.root_json().display().to_string();
    let args = <updog::Args as clap::Parser>::try_parse_from(argv).unwrap();
    let err = updog::run(&args, &mut Vec::new()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, updog::Error::Untrusted { .. }), "{message}");
    assert!(message.contains("not signed by the keys"), "{message}");
    assert_eq!(f.snapshot(), before);

    // A timestamp signed by other keys, dropped into the repository.
    let other = repo::RepoDir::new(f.path("other-repo"));
    let set = f.images["dev x86_64 1.1.0"].clone();
    repo::add_images(&other, &theirs, &set, &AddOptions::default())
        .await
        .unwrap();
    std::fs::copy(
        other.metadata_dir().join("timestamp.json"),
        f.repo.metadata_dir().join("timestamp.json"),
    )
    .unwrap();
    let message = f.error(&["update-image"]).await;
    assert!(message.contains("timestamp metadata"), "{message}");
    assert!(message.contains("not signed by the keys"), "{message}");
    assert_eq!(f.snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrades_and_other_variants() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    f.publish("1.1.0").await;
    f.publish_with("node", "x86_64", "2.0.0", AddOptions::default())
        .await;
    f.publish_with("dev", "aarch64", "2.1.0", AddOptions::default())
        .await;
    f.write_os_release("1.1.0");
    let before = f.snapshot();

    let message = f.error(&["update-image", "--image", "1.0.0"]).await;
    assert!(
        message.contains("older than the running 1.1.0"),
        "{message}"
    );
    assert!(message.contains("--allow-downgrade"), "{message}");
    assert_eq!(f.snapshot(), before);

    let message = f.error(&["update-image", "--image", "2.0.0"]).await;
    assert!(message.contains("for node x86_64"), "{message}");
    let message = f.error(&["update-image", "--image", "2.1.0"]).await;
    assert!(message.contains("for dev aarch64"), "{message}");
    let message = f.error(&["update-image", "--image", "9.9.9"]).await;
    assert!(message.contains("available: 1.1.0, 1.0.0"), "{message}");
    assert_eq!(f.snapshot(), before);

    // Nothing newer for dev x86_64: the others are not offered.
    let check = f.json(&["check-update"]).await;
    assert!(check["chosen"].is_null());
    let (result, _) = f.run(&["update-image", "--image", "1.1.0"]).await;
    assert_eq!(result.unwrap(), Outcome::NoUpdate, "the running version");

    let written = f
        .json(&["update-image", "--image", "1.0.0", "--allow-downgrade"])
        .await;
    assert_eq!(written["image"]["version"], "1.0.0");
    assert!(f.inactive_holds("1.0.0"));
    assert_eq!(f.flags().get(BootSet::B).tries_left, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_and_version_lock() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    f.publish("1.1.0").await;
    // 1.2.0 in waves: the first tenth of the fleet from two hours ago, everyone in a month.
    let now = Timestamp::now();
    let policy = WavePolicy::parse(
        &format!(
            "[[waves]]\nstart_after = \"{}\"\nfleet_percentage = 10\n\
             [[waves]]\nstart_after = \"{}\"\nfleet_percentage = 100\n",
            Timestamp::from_second(now.as_second() - 7200).unwrap(),
            Timestamp::from_second(now.as_second() + 30 * 86400).unwrap(),
        ),
        Path::new("waves.toml"),
    )
    .unwrap();
    let waved = AddOptions {
        waves: policy,
        ..AddOptions::default()
    };
    f.publish_with("dev", "x86_64", "1.2.0", waved).await;

    // Seed 0 is in the open wave.
    let check = f.json(&["check-update"]).await;
    assert_eq!(check["chosen"]["version"], "1.2.0");

    // Seed 1500 waits: 1.1.0 is the newest it may take.
    f.write_config(1500, "latest", false);
    let check = f.json(&["check-update"]).await;
    assert_eq!(check["chosen"]["version"], "1.1.0");
    assert_eq!(versions(&check["updates"]), ["1.1.0"]);
    let check = f.json(&["check-update", "--ignore-waves"]).await;
    assert_eq!(check["chosen"]["version"], "1.2.0");
    f.write_config(1500, "latest", true);
    assert_eq!(
        f.json(&["check-update"]).await["chosen"]["version"],
        "1.2.0"
    );

    // Running 1.1.0 with seed 1500: nothing to do until its wave opens.
    f.write_os_release("1.1.0");
    f.write_config(1500, "latest", false);
    let (result, _) = f.run(&["update-image"]).await;
    assert_eq!(result.unwrap(), Outcome::NoUpdate);
    assert!(!f.flags().get(BootSet::B).is_bootable(), "nothing written");
    let written = f.json(&["update-image", "--ignore-waves"]).await;
    assert_eq!(written["image"]["version"], "1.2.0");

    // A version lock takes exactly that version, whatever is newer.
    f.write_os_release("1.0.0");
    f.write_config(0, "v1.1.0", false);
    let check = f.json(&["check-update"]).await;
    assert_eq!(check["chosen"]["version"], "1.1.0");
    let written = f.json(&["update-image"]).await;
    assert_eq!(written["image"]["version"], "1.1.0");
    assert!(f.inactive_holds("1.1.0"));
    // Locked to the running version: nothing to do.
    f.write_config(0, "1.0.0", false);
    assert!(f.json(&["check-update"]).await["chosen"].is_null());
    let (result, _) = f.run(&["update-image"]).await;
    assert_eq!(result.unwrap(), Outcome::NoUpdate);
}

/// Files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_mirror_holds_the_signed_metadata_and_the_migrations_on_the_way() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    f.publish("1.1.0").await;
    f.publish("1.2.0").await;
    f.publish("1.3.0").await;
    let v = |s: &str| -> repo::Version { s.parse().unwrap() };
    let migration = |name: &str| {
        let path = f.path(&format!("migrations-src/{name}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\necho {name}\n")).unwrap();
        path
    };
    let files_a = [migration("migrate_v1.1.0_a"), migration("migrate_v1.1.0_b")];
    let files_c = [migration("migrate_v1.2.0_c")];
    let files_d = [migration("migrate_v1.3.0_d")];
    add_migrations(&f.repo, &f.keys, v("1.0.0"), v("1.1.0"), &files_a)
        .await
        .unwrap();
    add_migrations(&f.repo, &f.keys, v("1.1.0"), v("1.2.0"), &files_c)
        .await
        .unwrap();
    add_migrations(&f.repo, &f.keys, v("1.2.0"), v("1.3.0"), &files_d)
        .await
        .unwrap();

    // A stale mirror from an earlier update is replaced as a whole.
    let mirror = f.path("migrations");
    std::fs::create_dir_all(mirror.join("targets")).unwrap();
    std::fs::write(mirror.join("targets/stale"), b"old").unwrap();

    let written = f.json(&["update-image", "--image", "1.2.0"]).await;
    assert_eq!(
        written["migrations"],
        serde_json::json!(["migrate_v1.1.0_a", "migrate_v1.1.0_b", "migrate_v1.2.0_c"])
    );
    assert_eq!(files_in(&mirror), ["metadata", "targets"]);

    // Metadata exactly as the repository serves it.
    let metadata = files_in(&mirror.join("metadata"));
    let repo_metadata = files_in(&f.repo.metadata_dir());
    let newest = |suffix: &str| {
        repo_metadata
            .iter()
            .filter(|n| n.ends_with(suffix) && n.as_str() != suffix)
            .max_by_key(|n| n.split('.').next().unwrap().parse::<u64>().unwrap())
            .unwrap()
            .clone()
    };
    let expected = vec![
        "1.root.json".to_string(),
        newest(".snapshot.json"),
        newest(".targets.json"),
        "timestamp.json".to_string(),
    ];
    assert_eq!(metadata, expected);
    for name in &metadata {
        assert_eq!(
            std::fs::read(mirror.join("metadata").join(name)).unwrap(),
            std::fs::read(f.repo.metadata_dir().join(name)).unwrap(),
            "{name}"
        );
    }

    // Targets under their consistent-snapshot names: the manifest and the three on the way.
    let targets = files_in(&mirror.join("targets"));
    assert_eq!(targets.len(), 4, "{targets:?}");
    let manifests: Vec<&String> = targets
        .iter()
        .filter(|t| t.ends_with(".manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{targets:?}");
    let manifest = std::fs::read(mirror.join("targets").join(manifests[0])).unwrap();
    assert_eq!(
        std::fs::read(f.repo.targets_dir().join(manifests[0])).unwrap(),
        manifest
    );
    let manifest = repo::Manifest::parse(&manifest).unwrap();
    assert_eq!(manifest.migrations.len(), 3, "the newest manifest");
    for name in ["migrate_v1.1.0_a", "migrate_v1.1.0_b", "migrate_v1.2.0_c"] {
        let file = f.target_file(name);
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(targets.contains(&file_name), "{name}: {targets:?}");
        assert_eq!(
            std::fs::read(mirror.join("targets").join(&file_name)).unwrap(),
            std::fs::read(&file).unwrap()
        );
    }

    // The migrator's view: tough over file:// with the same root of trust.
    let root = std::fs::read(f.keys.root_json()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let loaded = RepositoryLoader::new(
        &root,
        url::Url::from_directory_path(mirror.join("metadata")).unwrap(),
        url::Url::from_directory_path(mirror.join("targets")).unwrap(),
    )
    .transport(FilesystemTransport)
    .datastore(scratch.path())
    .expiration_enforcement(ExpirationEnforcement::Unsafe)
    .load()
    .await
    .unwrap();
    let bytes = loaded
        .read_target(&TargetName::new("migrate_v1.2.0_c").unwrap())
        .await
        .unwrap()
        .unwrap()
        .into_vec()
        .await
        .unwrap();
    assert_eq!(bytes, b"#!/bin/sh\necho migrate_v1.2.0_c\n");

    // A downgrade from 1.3.0 to 1.1.0 runs the same steps backward.
    f.write_os_release("1.3.0");
    let written = f
        .json(&["update-image", "--image", "1.1.0", "--allow-downgrade"])
        .await;
    assert_eq!(
        written["migrations"],
        serde_json::json!(["migrate_v1.3.0_d", "migrate_v1.2.0_c"])
    );
    let targets = files_in(&mirror.join("targets"));
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert!(targets.iter().any(|t| t.ends_with(".migrate_v1.3.0_d")));
    assert!(!targets.iter().any(|t| t.ends_with(".migrate_v1.1.0_a")));

    // A migration that does not match the signed metadata stops the update before the disk.
    let target = f.target_file("migrate_v1.3.0_d");
    std::fs::write(&target, b"#!/bin/sh\nrm -rf /\n").unwrap();
    let before = f.snapshot();
    let message = f
        .error(&["update-image", "--image", "1.2.0", "--allow-downgrade"])
        .await;
    assert!(message.contains("migrate_v1.3.0_d"), "{message}");
    assert_eq!(
        f.snapshot(),
        before,
        "the mirror is written before the disk"
    );
    // The previous mirror is still whole, and no half-written one is left beside it.
    let kept = mirror.join("targets").join(target.file_name().unwrap());
    assert_eq!(
        std::fs::read(kept).unwrap(),
        b"#!/bin/sh\necho migrate_v1.3.0_d\n"
    );
    assert_eq!(files_in(&mirror.join("targets")).len(), 3);
    assert!(
        files_in(f.dir.path())
            .iter()
            .all(|n| !n.starts_with(".migrations.new-")),
        "{:?}",
        files_in(f.dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_rolled_back_is_reported_until_the_next_update() {
    let mut f = Fixture::new().await;
    f.publish("1.0.0").await;
    f.publish("1.1.0").await;
    f.json(&["update-image"]).await;
    f.json(&["update-apply"]).await;

    // The reset: GRUB takes B's one try (and records it in the GPT, as signpost does at the
    // next command). B never marks itself successful; the next reset goes back to A.
    let mut flags = f.flags();
    assert_eq!(flags.next_boot_set(), Some(BootSet::B));
    write_flags(&f.disk, &flags).unwrap();
    grubenv::sync_disk(&f.disk).unwrap();
    // B runs, and something asks for the status before its boot deadline (the update daemon
    // does at every boot): the try is still pending, not over.
    f.active = BootSet::B;
    f.write_os_release("1.1.0");
    assert!(f.json(&["status"]).await["failed_update"].is_null());
    assert_eq!(f.sets_json()["pending"]["set"], "B");
    f.active = BootSet::A;
    f.write_os_release("1.0.0");
    assert_eq!(flags.next_boot_set(), Some(BootSet::A), "B's try is spent");
    write_flags(&f.disk, &flags).unwrap();
    grubenv::sync_disk(&f.disk).unwrap();

    let status = f.json(&["status"]).await;
    assert_eq!(status["active_set"], "A");
    assert_eq!(status["next_boot"], "A");
    assert_eq!(
        status["failed_update"],
        serde_json::json!({"version": "1.1.0", "set": "B"})
    );
    assert_eq!(status["inactive"]["bootable"], false);
    let (result, text) = f.run(&["status"]).await;
    result.unwrap();
    assert!(text.contains("Failed update: 1.1.0 in set B"), "{text}");
    assert!(f.sets_json()["pending"].is_null());
    // It stays reported.
    assert_eq!(
        f.json(&["status"]).await["failed_update"]["version"],
        "1.1.0"
    );

    // The next update-image clears it.
    f.publish("1.2.0").await;
    f.json(&["update-image"]).await;
    assert!(f.json(&["status"]).await["failed_update"].is_null());
    assert!(f.inactive_holds("1.2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_too_small_for_the_image_is_refused() {
    let layout = Layout {
        root_mib: 2,
        hash_mib: 1,
        ..Layout::small()
    };
    assert!((ROOT_SIZE as u64) > 2 << 20 && BOOT_SIZE > 0);
    let mut f = Fixture::with_layout(&layout).await;
    let published = f.publish("1.1.0").await;
    let a = f.flags().get(BootSet::A);
    let message = f.error(&["update-image"]).await;
    assert!(message.contains(&published.images.root), "{message}");
    assert!(
        message.contains("more than the 2097152 bytes of ROOT-B"),
        "{message}"
    );
    assert!(
        message.contains("inactive set B was left unbootable"),
        "{message}"
    );
    assert!(!f.flags().get(BootSet::B).is_bootable());
    assert_eq!(f.flags().get(BootSet::A), a);
    // Nothing was written past ROOT-B: HASH-B, right after it, is still empty.
    assert!(f
        .partition(PartitionRole::Hash(BootSet::B), 4096)
        .iter()
        .all(|&b| b == 0));
}
