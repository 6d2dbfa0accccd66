//! Runs the migration program on real datastores as the migrator does: on a copy, forward and
//! backward.

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROGRAM: &str = env!("CARGO_BIN_EXE_rename-dns-search-list");
const OLD: &str = "settings.dns.search-list";
const NEW: &str = "settings.dns.search-domains";
const DOMAINS: &str = r#"["example.test","corp.example"]"#;

fn key(name: &str) -> Key {
    Key::new(KeyType::Data, name).unwrap()
}

/// A store with `pairs` in live; returns the version directory.
fn store(base: &Path, pairs: &[(&str, &str)]) -> PathBuf {
    let mut ds = FilesystemDataStore::create(base, "0.1.0").unwrap();
    let live: BTreeMap<Key, String> = pairs.iter().map(|(k, v)| (key(k), v.to_string())).collect();
    ds.set_keys(&live, &Committed::Live).unwrap();
    ds.path().to_path_buf()
}

fn run(dir: &Path, direction: &str) -> Output {
    Command::new(PROGRAM)
        .arg("--source-datastore")
        .arg(dir)
        .arg("--target-datastore")
        .arg(dir)
        .arg(direction)
        .output()
        .unwrap()
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(dir: &Path, name: &str) -> Option<String> {
    let ds = FilesystemDataStore::open(dir).unwrap();
    ds.get_key(&key(name), &Committed::Live).unwrap()
}

#[test]
fn search_list_becomes_search_domains_and_back() {
    let base = tempfile::tempdir().unwrap();
    let dir = store(
        base.path(),
        &[
            (OLD, DOMAINS),
            ("settings.dns.name-servers", r#"["10.0.0.2"]"#),
        ],
    );

    succeeded(&run(&dir, "--forward"));
    assert_eq!(get(&dir, NEW).as_deref(), Some(DOMAINS));
    assert_eq!(get(&dir, OLD), None);
    assert_eq!(
        get(&dir, "settings.dns.name-servers").as_deref(),
        Some(r#"["10.0.0.2"]"#)
    );
    // The old key's file is gone, not only hidden.
    assert!(!dir.join("live/settings/dns/search-list").exists());
    assert!(dir.join("live/settings/dns/search-domains").is_file());

    succeeded(&run(&dir, "--backward"));
    assert_eq!(get(&dir, OLD).as_deref(), Some(DOMAINS));
    assert_eq!(get(&dir, NEW), None);
}

#[test]
fn a_store_without_the_setting_is_left_alone() {
    let base = tempfile::tempdir().unwrap();
    let dir = store(base.path(), &[("settings.motd", r#""hi""#)]);
    succeeded(&run(&dir, "--forward"));
    assert_eq!(get(&dir, NEW), None);
    assert_eq!(get(&dir, "settings.motd").as_deref(), Some(r#""hi""#));
    succeeded(&run(&dir, "--backward"));
    assert_eq!(get(&dir, OLD), None);
}

#[test]
fn both_names_set_is_refused_without_a_change() {
    let base = tempfile::tempdir().unwrap();
    let dir = store(
        base.path(),
        &[(OLD, DOMAINS), (NEW, r#"["other.example"]"#)],
    );
    let out = run(&dir, "--forward");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(NEW), "{stderr}");
    assert_eq!(get(&dir, OLD).as_deref(), Some(DOMAINS));
    assert_eq!(get(&dir, NEW).as_deref(), Some(r#"["other.example"]"#));
}
