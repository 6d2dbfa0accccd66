//! Downloading pinned packages: cache hits, damaged cache files, bad downloads, vanished versions.
//! Everything is served by a local HTTP server; no network needed.

mod common;

use common::{deb, serve, sha256_hex, Item};
use debian::{deb_cache_dir, extract, fetch, Error, Lock, LockedPackage};
use std::collections::HashMap;

fn package(name: &str, base: &str, data: &[u8]) -> LockedPackage {
    LockedPackage {
        name: name.to_string(),
        version: "1.0-1".to_string(),
        architecture: "amd64".to_string(),
        filename: format!("pool/main/{}/{name}/{name}_1.0-1_amd64.deb", &name[..1]),
        size: data.len() as u64,
        sha256: sha256_hex(data),
        source_uri: base.to_string(),
        required_by: vec![],
    }
}

fn hello_deb() -> Vec<u8> {
    deb(
        &[
            Item::Dir("./", 0o755),
            Item::Dir("./usr/", 0o755),
            Item::Dir("./usr/bin/", 0o755),
            Item::File("./usr/bin/hello", 0o755, b"hello"),
        ],
        "xz",
    )
}

#[test]
fn downloads_verifies_and_reuses_the_cache() {
    let one = hello_deb();
    let two = deb(&[Item::File("./two", 0o644, b"2")], "gz");
    let probe = package("one", "http://x", &one);
    let probe2 = package("two", "http://x", &two);
    let routes = HashMap::from([
        (format!("/debian/{}", probe.filename), (200, one.clone())),
        (format!("/debian/{}", probe2.filename), (200, two.clone())),
    ]);
    let (base, log) = serve(routes);
    let base = format!("{base}/debian");
    let lock = Lock {
        packages: vec![package("one", &base, &one), package("two", &base, &two)],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();

    let paths = fetch(&lock, cache.path()).unwrap();
    assert_eq!(paths.len(), 2);
    assert_eq!(
        paths[0],
        deb_cache_dir(cache.path()).join("one_1.0-1_amd64.deb")
    );
    assert_eq!(std::fs::read(&paths[0]).unwrap(), one);
    assert_eq!(std::fs::read(&paths[1]).unwrap(), two);
    assert_eq!(log.lock().unwrap().len(), 2);

    // Second run: all cached, no requests.
    assert_eq!(fetch(&lock, cache.path()).unwrap(), paths);
    assert_eq!(log.lock().unwrap().len(), 2);

    // The fetched package unpacks.
    let root = tempfile::tempdir().unwrap();
    let written = extract(&paths[0], root.path()).unwrap();
    assert!(written.contains(&root.path().join("usr/bin/hello")));
}

#[test]
fn a_damaged_cache_file_is_downloaded_again() {
    let data = hello_deb();
    let probe = package("hello", "http://x", &data);
    let (base, log) = serve(HashMap::from([(
        format!("/{}", probe.filename),
        (200, data.clone()),
    )]));
    let lock = Lock {
        packages: vec![package("hello", &base, &data)],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let cached = deb_cache_dir(cache.path()).join("hello_1.0-1_amd64.deb");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    let mut flipped = data.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&cached, &flipped).unwrap();

    let paths = fetch(&lock, cache.path()).unwrap();
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0], cached);
    assert_eq!(std::fs::read(&cached).unwrap(), data, "repaired");
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn a_damaged_cache_file_without_network_is_refused() {
    let data = hello_deb();
    // Nothing listens on this port (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lock = Lock {
        packages: vec![package("hello", &format!("http://127.0.0.1:{port}"), &data)],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let cached = deb_cache_dir(cache.path()).join("hello_1.0-1_amd64.deb");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    let mut flipped = data.clone();
    flipped[10] ^= 0x80;
    std::fs::write(&cached, &flipped).unwrap();

    let err = fetch(&lock, cache.path()).unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    assert!(
        !cached.exists(),
        "the damaged file is not left for the image build"
    );
}

#[test]
fn a_download_that_does_not_match_the_lock_stops_the_build() {
    let data = hello_deb();
    let mut served = data.clone();
    let last = served.len() - 1;
    served[last] ^= 0xff;
    let probe = package("hello", "http://x", &data);
    let (base, _log) = serve(HashMap::from([(
        format!("/{}", probe.filename),
        (200, served.clone()),
    )]));
    let lock = Lock {
        packages: vec![package("hello", &base, &data)],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&lock, cache.path()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::DebMismatch { .. }), "{message}");
    assert!(message.contains("hello 1.0-1"), "{message}");
    assert!(message.contains(&sha256_hex(&data)), "{message}");
    assert!(message.contains(&sha256_hex(&served)), "{message}");
    let left: Vec<_> = std::fs::read_dir(deb_cache_dir(cache.path()))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing is kept: {left:?}");
}

#[test]
fn a_vanished_version_names_the_refresh_command() {
    let data = hello_deb();
    let (base, _log) = serve(HashMap::new());
    let lock = Lock {
        packages: vec![package("hello", &base, &data)],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&lock, cache.path()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::PackageGone { .. }), "{message}");
    assert!(message.contains("hello 1.0-1"), "{message}");
    assert!(message.contains("cargo xtask lock"), "{message}");
    assert!(message.contains("404"), "{message}");
}

#[test]
fn an_oversized_answer_is_cut_off() {
    let data = hello_deb();
    let probe = package("hello", "http://x", &data);
    let (base, _log) = serve(HashMap::from([(
        format!("/{}", probe.filename),
        (200, vec![0u8; data.len() * 50]),
    )]));
    let lock = Lock {
        packages: vec![package("hello", &base, &data)],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();
    match fetch(&lock, cache.path()).unwrap_err() {
        Error::DebMismatch { actual, .. } => {
            assert!(
                actual.ends_with(&format!(", {} bytes", data.len() + 1)),
                "{actual}"
            )
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_tampered_lock_is_refused_before_any_download() {
    let data = hello_deb();
    let mut bad = package("hello", "http://127.0.0.1:9", &data);
    bad.filename = "pool/../../../etc/passwd.deb".to_string();
    let lock = Lock {
        packages: vec![bad],
        ..Lock::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&lock, cache.path()).unwrap_err().to_string();
    assert!(
        err.contains("hello") && err.contains("cargo xtask lock"),
        "{err}"
    );
}
