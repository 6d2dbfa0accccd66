//! The update API with the real updater: the apiserver runs `updog` against a GPT disk image
//! file (`--disk`/`--active A`) and a signed TUF repository made with the `repo` crate and
//! served over HTTP on 127.0.0.1. Nothing here needs root or touches the host's disks.

use disk_layout::{BootSet, Layout, PartitionRole, MIB};
use repo::serve::ServedDir;
use repo::{add_images, AddOptions, ImageFile, ImageSet, KeyDir, KeyOptions, RepoDir, Version};
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testserver::disk::make_boot_disk;
use testserver::TestServer;

const WAIT: Duration = Duration::from_secs(120);

/// A partition image of `len` bytes that differs from the other images.
fn image(path: &Path, len: usize, salt: u8) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (((i as u64 * 2_654_435_761) >> 7) as u8) ^ salt)
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn partition_bytes(disk: &Path, role: PartitionRole, len: usize) -> Vec<u8> {
    let layout = disk_layout::read_layout(disk).unwrap();
    let part = layout.partition(role).unwrap();
    let mut file = std::fs::File::open(disk).unwrap();
    file.seek(SeekFrom::Start(part.offset)).unwrap();
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes).unwrap();
    bytes
}

fn next_boot(disk: &Path) -> Option<BootSet> {
    disk_layout::read_flags(disk).unwrap().peek_next_boot_set()
}

fn act(server: &TestServer, route: &str) -> Value {
    let (code, body) = server.raw("POST", route, None);
    assert_eq!(code, 204, "POST {route}: {body}");
    let start = Instant::now();
    loop {
        let s = server.json("GET", "/updates/status", None);
        if s["most_recent_command"]["cmd_status"] != "Running" {
            assert_eq!(
                s["most_recent_command"]["cmd_status"], "Success",
                "POST {route}: {s:#}"
            );
            return s;
        }
        assert!(start.elapsed() < WAIT, "POST {route} still running: {s:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Files {
    disk: PathBuf,
    boot: Vec<u8>,
    root: Vec<u8>,
    hash: Vec<u8>,
    command: String,
}

/// A disk running 0.1.0 from set A, and a repository offering 0.2.0, served on 127.0.0.1.
fn setup(work: &Path) -> (Files, ServedDir) {
    let arch = std::env::consts::ARCH;
    // Set A running and successful, B empty, room for the images beyond the layout.
    let layout = Layout::small();
    let disk = make_boot_disk(work, &layout, layout.min_disk_size() + 8 * MIB);

    let images = work.join("images");
    std::fs::create_dir(&images).unwrap();
    let boot = image(&images.join("boot.ext4"), (1 << 20) + 4096, 1);
    let root = image(&images.join("root.erofs"), (3 << 20) + 4096, 2);
    let hash = image(&images.join("root.verity"), 64 << 10, 3);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys = rt
        .block_on(KeyDir::generate(work.join("keys"), &KeyOptions::default()))
        .unwrap();
    let repo = RepoDir::new(work.join("repo"));
    let set = ImageSet {
        variant: "test".into(),
        arch: arch.into(),
        version: Version::new(0, 2, 0),
        build_id: "e2e".into(),
        boot: ImageFile::new(images.join("boot.ext4")),
        root: ImageFile::new(images.join("root.erofs")),
        hash: ImageFile::new(images.join("root.verity")),
    };
    rt.block_on(add_images(&repo, &keys, &set, &AddOptions::default()))
        .unwrap();
    let served = ServedDir::start(repo.dir()).unwrap();
    let url = served.url();

    let config = work.join("updog.toml");
    std::fs::write(
        &config,
        format!(
            "metadata_base_url = \"{url}metadata/\"\ntargets_base_url = \"{url}targets/\"\n\
             seed = 100\n"
        ),
    )
    .unwrap();
    let os_release = work.join("os-release");
    std::fs::write(
        &os_release,
        format!("VARIANT_ID=test\nVERSION_ID=0.1.0\nBUILD_ID=abc123\nARCH={arch}\n"),
    )
    .unwrap();
    let updog = testserver::build_workspace_bin("updog", "updog");
    let command = format!(
        "{} --config {} --os-release {} --root-json {} --cache-dir {} --migrations-dir {} \
         --disk {} --active A --log-level warn",
        updog.display(),
        config.display(),
        os_release.display(),
        keys.root_json().display(),
        work.join("cache").display(),
        work.join("migrations").display(),
        disk.display(),
    );
    let files = Files {
        disk,
        boot,
        root,
        hash,
        command,
    };
    (files, served)
}

#[test]
fn real_updog_full_cycle_on_a_disk_image_from_a_served_repository() {
    let work = tempfile::tempdir().unwrap();
    let (files, served) = setup(work.path());

    let mut server = TestServer::start();
    server.kill();
    server.updater_command = files.command.clone();
    server.spawn();

    let s = server.json("GET", "/updates/status", None);
    assert_eq!(s["update_state"], "Idle", "{s:#}");
    assert_eq!(s["active_partition"]["image"]["version"], "0.1.0");
    assert_eq!(s["active_partition"]["next_to_boot"], true);
    assert_eq!(s["staging_partition"], Value::Null);

    let s = act(&server, "/actions/refresh-updates");
    assert_eq!(s["update_state"], "Available", "{s:#}");
    assert_eq!(s["chosen_update"]["version"], "0.2.0");
    assert_eq!(s["available_updates"], serde_json::json!(["0.2.0"]));
    assert!(
        served
            .requests()
            .iter()
            .any(|r| r.contains("timestamp.json")),
        "updog fetched the repository over HTTP: {:?}",
        served.requests()
    );

    let s = act(&server, "/actions/prepare-update");
    assert_eq!(s["update_state"], "Staged", "{s:#}");
    assert_eq!(s["staging_partition"]["image"]["version"], "0.2.0");
    assert_eq!(s["staging_partition"]["next_to_boot"], false);
    // The images landed on set B, byte for byte; set A was not touched.
    for (set, expect) in [(BootSet::B, true), (BootSet::A, false)] {
        for (role, bytes) in [
            (PartitionRole::Boot(set), &files.boot),
            (PartitionRole::Root(set), &files.root),
            (PartitionRole::Hash(set), &files.hash),
        ] {
            let on_disk = partition_bytes(&files.disk, role, bytes.len());
            assert_eq!(&on_disk == bytes, expect, "{role:?}");
        }
    }
    assert_eq!(next_boot(&files.disk), Some(BootSet::A));

    let s = act(&server, "/actions/activate-update");
    assert_eq!(s["update_state"], "Ready", "{s:#}");
    assert_eq!(s["staging_partition"]["next_to_boot"], true);
    assert_eq!(next_boot(&files.disk), Some(BootSet::B));

    let s = act(&server, "/actions/deactivate-update");
    assert_eq!(s["update_state"], "Staged", "{s:#}");
    assert_eq!(next_boot(&files.disk), Some(BootSet::A));
}
