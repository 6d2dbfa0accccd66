//! Against the real Debian archive. Run with `cargo test -p debian -- --ignored --nocapture`.
//! Indexes and packages are cached under the target directory, so a second run is quick.

use debian::{
    extract, fetch, host_sources, resolve, verify_clearsigned, ArchiveSource, Indexes, Lock,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-cache")
}

fn indexes() -> &'static Indexes {
    static INDEXES: OnceLock<Indexes> = OnceLock::new();
    INDEXES.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or("debian=info".into()))
            .with_test_writer()
            .try_init();
        Indexes::load(&host_sources().unwrap(), &cache()).unwrap()
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn summary(lock: &Lock) -> String {
    format!(
        "{} packages, {} bytes ({:.1} MiB)",
        lock.packages.len(),
        lock.total_size(),
        lock.total_size() as f64 / 1048576.0
    )
}

#[test]
#[ignore = "needs the network (deb.debian.org)"]
fn resolves_systemd() {
    let indexes = indexes();
    assert!(indexes.len() > 50_000, "{} packages", indexes.len());
    let lock = resolve(&strings(&["systemd"]), indexes, &[]).unwrap();
    for needed in [
        "systemd",
        "libc6",
        "libsystemd-shared",
        "mount",
        "libmount1",
    ] {
        assert!(lock.get(needed).is_some(), "{needed} missing");
    }
    println!("systemd: {}", summary(&lock));
    let text = lock.to_toml().unwrap();
    let back: Lock = toml::from_str(&text).unwrap();
    assert_eq!(back, lock);
}

#[test]
#[ignore = "needs the network (deb.debian.org)"]
fn resolves_the_base_set() {
    let indexes = indexes();
    let requests = strings(&["systemd", "linux-image-cloud-amd64", "libc6"]);
    let all = resolve(&requests, indexes, &[]).unwrap();
    println!(
        "systemd linux-image-cloud-amd64 libc6, no excludes: {}",
        summary(&all)
    );
    let excludes = strings(&[
        "debconf",
        "perl-base",
        "dpkg",
        "install-info",
        "init-system-helpers",
    ]);
    let trimmed = resolve(&requests, indexes, &excludes).unwrap();
    println!(
        "systemd linux-image-cloud-amd64 libc6, excluding {}: {}",
        excludes.join(","),
        summary(&trimmed)
    );
    for p in &trimmed.packages {
        println!(
            "  {} {} {} <- {}",
            p.name,
            p.version,
            p.source_uri.rsplit('/').next().unwrap(),
            if p.required_by.is_empty() {
                "(requested)".to_string()
            } else {
                p.required_by.join(", ")
            }
        );
    }
    for excluded in &excludes {
        assert!(trimmed.get(excluded).is_none(), "{excluded} was excluded");
    }
    assert!(trimmed.get("linux-image-cloud-amd64").is_some());
    assert!(trimmed
        .packages
        .iter()
        .any(|p| p.name.starts_with("linux-image-6.") && p.name.ends_with("-cloud-amd64")));
}

#[test]
#[ignore = "needs the network (deb.debian.org)"]
fn fetches_and_extracts_hostname() {
    let lock = resolve(&strings(&["hostname"]), indexes(), &strings(&["libc6"])).unwrap();
    assert_eq!(lock.packages.len(), 1, "{lock:?}");
    let paths = fetch(&lock, &cache()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let written = extract(&paths[0], root.path()).unwrap();
    let binary = ["bin/hostname", "usr/bin/hostname"]
        .iter()
        .map(|p| root.path().join(p))
        .find(|p| p.exists())
        .expect("hostname binary unpacked");
    assert!(written.contains(&binary));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    println!(
        "hostname {}: {} entries, binary at {}",
        lock.packages[0].version,
        written.len(),
        binary.display()
    );
}

#[test]
#[ignore = "needs the network (deb.debian.org)"]
fn a_tampered_inrelease_is_refused() {
    let source = ArchiveSource::new("http://deb.debian.org/debian", "bookworm-updates");
    let url = source.inrelease_url();
    let mut signed = reqwest::blocking::get(&url)
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    verify_clearsigned(&signed, &source.signed_by, &url).unwrap();
    let at = signed
        .windows(7)
        .position(|w| w == b"SHA256:")
        .expect("SHA256 list");
    signed[at + 20] ^= 0x01; // change one hex digit of the first hash
    let err = verify_clearsigned(&signed, &source.signed_by, &url)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Refusing"), "{err}");
    println!("{err}");
}
