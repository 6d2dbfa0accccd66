//! Runs the migration program on real datastores, as the migrator would: on a copy, forward
//! and backward.

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const PROGRAM: &str = env!("CARGO_BIN_EXE_rename-ntp-servers");
const SERVERS: &str = r#"["time.example","10.0.0.1:123"]"#;

fn key(name: &str) -> Key {
    Key::new(KeyType::Data, name).unwrap()
}

/// A store with `pairs` in live; returns the version directory.
fn store(base: &Path, pairs: &[(&str, &str)]) -> std::path::PathBuf {
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

fn get(dir: &Path, name: &str) -> Option<String> {
    let ds = FilesystemDataStore::open(dir).unwrap();
    ds.get_key(&key(name), &Committed::Live).unwrap()
}

#[test]
fn time_servers_become_servers_and_back() {
    let base = tempfile::tempdir().unwrap();
    let dir = store(
        base.path(),
        &[
            ("settings.ntp.time-servers", SERVERS),
            ("settings.motd", r#""hi""#),
        ],
    );
    {
        let mut ds = FilesystemDataStore::open(&dir).unwrap();
        let meta = Key::new(KeyType::Meta, "setting-generator").unwrap();
        ds.set_metadata(&meta, &key("settings.ntp.time-servers"), r#""gen""#)
            .unwrap();
    }

    let out = run(&dir, "--forward");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&dir, "settings.ntp.servers").as_deref(), Some(SERVERS));
    assert_eq!(get(&dir, "settings.ntp.time-servers"), None);
    assert_eq!(get(&dir, "settings.motd").as_deref(), Some(r#""hi""#));
    let ds = FilesystemDataStore::open(&dir).unwrap();
    let meta = Key::new(KeyType::Meta, "setting-generator").unwrap();
    assert_eq!(
        ds.get_metadata(&meta, &key("settings.ntp.servers"))
            .unwrap()
            .as_deref(),
        Some(r#""gen""#)
    );
    drop(ds);

    let out = run(&dir, "--backward");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get(&dir, "settings.ntp.time-servers").as_deref(),
        Some(SERVERS)
    );
    assert_eq!(get(&dir, "settings.ntp.servers"), None);
}

#[test]
fn a_store_without_the_setting_is_left_alone() {
    let base = tempfile::tempdir().unwrap();
    let dir = store(base.path(), &[("settings.motd", r#""hi""#)]);
    let out = run(&dir, "--forward");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(&dir, "settings.ntp.servers"), None);
    assert_eq!(get(&dir, "settings.motd").as_deref(), Some(r#""hi""#));
}

#[test]
fn both_names_set_is_refused_without_a_change() {
    let base = tempfile::tempdir().unwrap();
    let dir = store(
        base.path(),
        &[
            ("settings.ntp.time-servers", SERVERS),
            ("settings.ntp.servers", r#"["other.example"]"#),
        ],
    );
    let out = run(&dir, "--forward");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("settings.ntp.servers already holds a value"),
        "{stderr}"
    );
    assert_eq!(
        get(&dir, "settings.ntp.time-servers").as_deref(),
        Some(SERVERS)
    );
    assert_eq!(
        get(&dir, "settings.ntp.servers").as_deref(),
        Some(r#"["other.example"]"#)
    );
}
