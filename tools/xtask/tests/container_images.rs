//! Container images: the pause image builds reproducibly from the locked Debian packages, and
//! a real registry (Debian's docker-registry on loopback) serves exactly the manifest built
//! after skopeo pushed it.
//!
//! Fast on purpose (a few seconds once catatonit's .deb is cached): pause is one static
//! binary, and it needs no cargo build.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use xtask::containers;

const EPOCH: u64 = 1_700_000_000;

fn build_pause(dir: &Path) -> ociimage::WrittenImage {
    let images = containers::select(&["pause".to_string()]).unwrap();
    assert!(
        images[0].cargo.binaries.is_empty(),
        "this test counts on pause needing no cargo build"
    );
    containers::build_one(
        &images[0],
        &dir.join("no-binaries"),
        "0.1.0",
        EPOCH,
        &dir.join("stage"),
        &dir.join("oci"),
    )
    .unwrap()
}

/// The layer's entries with their modes, owners and times.
fn layer_entries(image: &ociimage::WrittenImage) -> BTreeMap<String, (u32, u64, u64, u64)> {
    let path = image
        .dir
        .join("blobs/sha256")
        .join(image.layer_digest.trim_start_matches("sha256:"));
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string(),
                (
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_pause_image_builds_reproducibly() {
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = build_pause(first_dir.path());
    let second = build_pause(second_dir.path());
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_eq!(first.config_digest, second.config_digest);
    assert_eq!(first.layer_digest, second.layer_digest);
    println!("pause: {} (twice)", first.manifest_digest);

    let entries = layer_entries(&first);
    let catatonit = entries
        .get("usr/bin/catatonit")
        .expect("catatonit in the layer");
    assert_eq!(catatonit.0 & 0o111, 0o111, "catatonit must be executable");
    for (path, (_, uid, gid, mtime)) in &entries {
        assert_eq!((*uid, *gid, *mtime), (0, 0, EPOCH), "{path}");
    }
    assert!(entries.contains_key("tmp") && entries.contains_key("proc"));
    assert!(
        !entries.keys().any(|p| p.starts_with("usr/share/doc")),
        "{entries:?}"
    );

    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            first
                .dir
                .join("blobs/sha256")
                .join(first.config_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/catatonit", "-P"])
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "pause"
    );
    assert!(config["config"]["Env"][0]
        .as_str()
        .unwrap()
        .starts_with("PATH="));
}

#[test]
fn a_real_registry_serves_the_pushed_pause_image() {
    for tool in [registry::REGISTRY_PROGRAM, registry::PUSH_PROGRAM] {
        if !hosttools::require_tool(tool) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let built = build_pause(dir.path());
    let server = registry::Registry::start(&dir.path().join("registry"), 0).unwrap();
    let name = containers::repository("pause");
    server.push(&built.dir, &name, &built.tag).unwrap();

    let served = server.manifest(&name, &built.tag).unwrap();
    assert_eq!(served.digest, built.manifest_digest);
    assert_eq!(served.body_digest, built.manifest_digest);
    assert_eq!(served.media_type, registry::OCI_MANIFEST_TYPE);
    let manifest: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
    assert_eq!(manifest["config"]["digest"], built.config_digest.as_str());
    assert_eq!(manifest["layers"][0]["digest"], built.layer_digest.as_str());
    // By digest as well, as a node pulling a pinned image asks for it.
    let by_digest = server.manifest(&name, &built.manifest_digest).unwrap();
    assert_eq!(by_digest.body, served.body);
}
