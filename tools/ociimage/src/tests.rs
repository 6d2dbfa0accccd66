use super::*;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

/// A small root tree with what real trees hold: nested directories, executables, a setuid
/// file, a symlink, an empty directory and a path longer than a plain tar header takes.
fn tree(dir: &Path) {
    let long = "d".repeat(60);
    for sub in ["usr/bin", "tmp", &format!("usr/lib/{long}/{long}")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("usr/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        dir.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.join("usr/bin/su"), b"setuid").unwrap();
    std::fs::set_permissions(
        dir.join("usr/bin/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(dir.join(format!("usr/lib/{long}/{long}/data")), b"x").unwrap();
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
}

fn spec() -> ImageSpec {
    ImageSpec {
        entrypoint: vec!["/usr/bin/tool".into()],
        cmd: vec!["--flag".into()],
        env: vec!["PATH=/usr/bin".into()],
        working_dir: Some("/tmp".into()),
        labels: (0..8)
            .map(|i| (format!("label.{i}"), i.to_string()))
            .collect(),
        source_date_epoch: 1_700_000_000,
        tag: "0.1.0".into(),
    }
}

#[test]
fn the_same_tree_gives_the_same_digests() {
    // Two copies of the tree made at different times in different places: nothing of the
    // host (path, file times, owner) may reach the digests.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    tree(&a.path().join("root"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    tree(&b.path().join("tree-somewhere-else"));
    let first = write_layout(&a.path().join("root"), &spec(), &a.path().join("oci")).unwrap();
    let second = write_layout(
        &b.path().join("tree-somewhere-else"),
        &spec(),
        &b.path().join("layout"),
    )
    .unwrap();
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_eq!(first.config_digest, second.config_digest);
    assert_eq!(first.layer_digest, second.layer_digest);
    assert!(first.manifest_digest.starts_with("sha256:"));

    // A different epoch is a different image.
    let mut later = spec();
    later.source_date_epoch += 1;
    let third = write_layout(&a.path().join("root"), &later, &a.path().join("oci2")).unwrap();
    assert_ne!(first.layer_digest, third.layer_digest);
    assert_ne!(first.diff_id, third.diff_id);

    // What read_layout finds is what write_layout said.
    let read = read_layout(&a.path().join("oci")).unwrap();
    assert_eq!(read, first);
}

#[test]
fn the_layer_is_sorted_root_owned_and_dated() {
    let temp = tempfile::tempdir().unwrap();
    tree(&temp.path().join("root"));
    let image = write_layout(&temp.path().join("root"), &spec(), &temp.path().join("oci")).unwrap();
    let blob = |digest: &str| {
        temp.path()
            .join("oci/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let bytes = std::fs::read(blob(&image.layer_digest)).unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        image.layer_digest
    );
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&tar_bytes))),
        image.diff_id
    );
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 0);
        assert_eq!(header.mtime().unwrap(), 1_700_000_000);
        assert_eq!(header.username().unwrap(), Some(""));
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = header.mode().unwrap();
        match path.as_str() {
            "usr/bin/su" => assert_eq!(mode, 0o4755),
            "usr/bin/tool" => assert_eq!(mode, 0o755),
            "tmp" | "tmp/" => assert_eq!(mode, 0o1777),
            "bin" => assert_eq!(
                entry.link_name().unwrap().unwrap().to_string_lossy(),
                "usr/bin"
            ),
            _ => {}
        }
        seen.push(path.trim_end_matches('/').to_string());
    }
    let long = "d".repeat(60);
    let data = format!("usr/lib/{long}/{long}/data");
    assert!(seen.contains(&data), "{seen:?}");
    // Directories before their contents, names in byte order within each directory.
    assert_eq!(&seen[..5], ["bin", "tmp", "usr", "usr/bin", "usr/bin/su"]);

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&image.config_digest)).unwrap()).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/tool");
    assert_eq!(config["config"]["Cmd"][0], "--flag");
    assert_eq!(config["config"]["Env"][0], "PATH=/usr/bin");
    assert_eq!(config["config"]["WorkingDir"], "/tmp");
    assert_eq!(config["config"]["Labels"]["label.3"], "3");
    assert_eq!(config["rootfs"]["diff_ids"][0], image.diff_id.as_str());

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(temp.path().join("oci/index.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.as_str()
    );
    assert_eq!(
        index["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
        "0.1.0"
    );
    let layout = std::fs::read_to_string(temp.path().join("oci/oci-layout")).unwrap();
    assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
}

#[test]
fn keys_are_sorted_at_every_depth() {
    let value = serde_json::json!({"b": {"z": 1, "a": [{"y": 0, "x": 1}]}, "a": 2});
    assert_eq!(
        serde_json::to_string(&canonical(value)).unwrap(),
        r#"{"a":2,"b":{"a":[{"x":1,"y":0}],"z":1}}"#
    );
}

#[test]
fn device_nodes_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let error = write_layout(&root, &spec(), &temp.path().join("oci")).unwrap_err();
    assert!(error.to_string().contains("sock"), "{error}");
    drop(socket);
}
