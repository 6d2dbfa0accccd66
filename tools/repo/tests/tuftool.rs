//! Interoperability with tuftool, the command-line client of the tough project: a repository
//! made by this crate, served over HTTP, downloads completely with `tuftool download`, and every
//! file it writes matches what was published.
//!
//! tuftool is not part of the build (it pulls in the AWS SDK for its KMS and SSM key sources).
//! Install it into the workspace with
//! `cargo install tuftool --locked --root build/tools` and run
//! `cargo test -p repo --test tuftool -- --ignored`.

use repo::serve::ServedDir;
use repo::{add_images, AddOptions, ImageFile, ImageSet, KeyDir, KeyOptions, RepoDir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// tuftool from `build/tools/bin` of the workspace, else from `PATH`.
fn tuftool() -> Option<PathBuf> {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/tools/bin/tuftool");
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tuftool"))
            .find(|p| p.is_file())
    })
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tuftool: cargo install tuftool --locked --root build/tools"]
async fn tuftool_downloads_what_repo_publishes() {
    let tuftool = tuftool().expect(
        "tuftool is not installed; run `cargo install tuftool --locked --root build/tools`",
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyDir::generate(dir.path().join("keys"), &KeyOptions::default())
        .await
        .unwrap();
    let repo = RepoDir::new(dir.path().join("repo"));
    let mut originals = Vec::new();
    for version in ["1.0.0", "1.1.0"] {
        let images = dir.path().join(format!("images-{version}"));
        std::fs::create_dir_all(&images).unwrap();
        let file = |name: &str, size: usize| {
            let path = images.join(name);
            let bytes: Vec<u8> = format!("{name} {version} ")
                .bytes()
                .cycle()
                .take(size)
                .collect();
            std::fs::write(&path, bytes).unwrap();
            ImageFile::new(path)
        };
        let set = ImageSet {
            variant: "dev".into(),
            arch: "x86_64".into(),
            version: version.parse().unwrap(),
            build_id: "abc123".into(),
            boot: file("boot.ext4", 65536),
            root: file("root.erofs", 200_000),
            hash: file("root.verity", 4096),
        };
        let published = add_images(&repo, &keys, &set, &AddOptions::default())
            .await
            .unwrap();
        for (name, image) in [
            (published.images.boot, &set.boot),
            (published.images.root, &set.root),
            (published.images.hash, &set.hash),
        ] {
            originals.push((name, std::fs::read(&image.path).unwrap()));
        }
    }

    let served = ServedDir::start(repo.dir()).unwrap();
    let out = dir.path().join("download");
    let output = Command::new(&tuftool)
        .arg("download")
        .arg("--root")
        .arg(keys.root_json())
        .arg("--metadata-url")
        .arg(format!("{}metadata/", served.url()))
        .arg("--targets-url")
        .arg(format!("{}targets/", served.url()))
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "tuftool download: {output:?}");

    // tuftool saves the targets under their names in `<out>/targets` (older releases: `<out>`).
    let targets = if out.join("targets").is_dir() {
        out.join("targets")
    } else {
        out.clone()
    };
    let downloaded = files_in(&targets);
    assert_eq!(
        downloaded.len(),
        7,
        "six images and the manifest: {downloaded:?}"
    );
    for (name, original) in &originals {
        let compressed = std::fs::read(targets.join(name)).unwrap();
        assert_eq!(
            &zstd::stream::decode_all(&compressed[..]).unwrap(),
            original,
            "{name}"
        );
    }
    let manifest = std::fs::read(targets.join("manifest.json")).unwrap();
    let manifest = repo::Manifest::parse(&manifest).unwrap();
    assert_eq!(manifest.updates.len(), 2);
    // Every downloaded file is byte for byte the published `<sha256>.<name>` file.
    for name in &downloaded {
        let bytes = std::fs::read(targets.join(name)).unwrap();
        let published = files_in(&repo.targets_dir()).into_iter().find(|f| {
            f.ends_with(&format!(".{name}")) && {
                std::fs::read(repo.targets_dir().join(f)).unwrap() == bytes
            }
        });
        assert!(published.is_some(), "{name} matches no published target");
    }
}
