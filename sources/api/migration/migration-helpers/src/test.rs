use super::*;
use serde_json::json;

/// A fresh store directory with `pairs` in live; returns the temp dir and the version dir.
fn store_with(pairs: &[(&str, Value)]) -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let mut ds = FilesystemDataStore::create(base.path(), "1.0.0").unwrap();
    let map: BTreeMap<Key, String> = pairs
        .iter()
        .map(|(k, v)| (Key::new(KeyType::Data, k).unwrap(), v.to_string()))
        .collect();
    ds.set_keys(&map, &Committed::Live).unwrap();
    let dir = ds.path().to_path_buf();
    (base, dir)
}

#[test]
fn add_setting_both_ways() {
    let (_base, dir) = store_with(&[("settings.motd", json!("hi"))]);
    let add = AddSetting::new("settings.colour", json!("blue"))
        .with_metadata("affected-services", json!(["motd"]));
    let mut store = Store::open(&dir).unwrap();
    add.forward(&mut store).unwrap();
    assert_eq!(store.get("settings.colour").unwrap(), Some(json!("blue")));
    assert_eq!(
        store
            .get_metadata("settings.colour", "affected-services")
            .unwrap(),
        Some(json!(["motd"]))
    );
    // A value already there is kept.
    store.set("settings.colour", &json!("red")).unwrap();
    add.forward(&mut store).unwrap();
    assert_eq!(store.get("settings.colour").unwrap(), Some(json!("red")));
    add.backward(&mut store).unwrap();
    assert_eq!(store.get("settings.colour").unwrap(), None);
    assert!(store.metadata_of("settings.colour").unwrap().is_empty());
    assert_eq!(store.get("settings.motd").unwrap(), Some(json!("hi")));
}

#[test]
fn remove_setting_keeps_the_value_for_a_downgrade() {
    let (_base, dir) = store_with(&[
        ("settings.old.a", json!(1)),
        ("settings.old.\"b.c\"", json!([true])),
        ("settings.motd", json!("hi")),
    ]);
    let remove = RemoveSetting::new("settings.old");
    let mut store = Store::open(&dir).unwrap();
    store
        .set_metadata("settings.old.a", "affected-services", &json!(["x"]))
        .unwrap();
    remove.forward(&mut store).unwrap();
    assert!(store.get_tree("settings.old").unwrap().is_empty());
    assert!(store.metadata_of("settings.old.a").unwrap().is_empty());
    assert!(dir.join(SAVED_DIR).is_dir());
    remove.backward(&mut store).unwrap();
    assert_eq!(
        store.get_tree("settings.old").unwrap(),
        BTreeMap::from([
            ("settings.old.a".to_string(), json!(1)),
            ("settings.old.\"b.c\"".to_string(), json!([true])),
        ])
    );
    // The kept values were taken back; a second backward run has nothing to restore.
    assert!(store.take_saved("settings.old").unwrap().is_empty());

    // Without a kept value, backward sets the optional default.
    let remove = RemoveSetting::new("settings.gone").restoring_default(json!("d"));
    remove.backward(&mut store).unwrap();
    assert_eq!(store.get("settings.gone").unwrap(), Some(json!("d")));
}

#[test]
fn rename_moves_value_and_metadata_and_back() {
    let (_base, dir) = store_with(&[("settings.greeting", json!("user value"))]);
    let rename = RenameSetting::new("settings.greeting", "settings.motd");
    let mut store = Store::open(&dir).unwrap();
    store
        .set_metadata("settings.greeting", "affected-services", &json!(["motd"]))
        .unwrap();
    rename.forward(&mut store).unwrap();
    assert_eq!(store.get("settings.greeting").unwrap(), None);
    assert_eq!(
        store.get("settings.motd").unwrap(),
        Some(json!("user value"))
    );
    assert_eq!(
        store
            .get_metadata("settings.motd", "affected-services")
            .unwrap(),
        Some(json!(["motd"]))
    );
    assert!(store.metadata_of("settings.greeting").unwrap().is_empty());
    rename.backward(&mut store).unwrap();
    assert_eq!(
        store.get("settings.greeting").unwrap(),
        Some(json!("user value"))
    );
    assert_eq!(store.get("settings.motd").unwrap(), None);

    // A taken destination is refused before anything changes, naming both keys.
    store.set("settings.motd", &json!("other")).unwrap();
    let err = rename.forward(&mut store).unwrap_err().to_string();
    assert!(
        err.contains("settings.greeting") && err.contains("settings.motd"),
        "{err}"
    );
    assert_eq!(
        store.get("settings.greeting").unwrap(),
        Some(json!("user value"))
    );
}

#[test]
fn rename_a_group() {
    let (_base, dir) = store_with(&[
        ("settings.ntp.servers", json!(["a"])),
        ("settings.ntp.options.iburst", json!(true)),
    ]);
    let rename = RenameSetting::new("settings.ntp", "settings.time");
    let mut store = Store::open(&dir).unwrap();
    store
        .set_metadata("settings.ntp", "affected-services", &json!(["chrony"]))
        .unwrap();
    rename.forward(&mut store).unwrap();
    assert!(store.get_tree("settings.ntp").unwrap().is_empty());
    assert_eq!(
        store.get_tree("settings.time").unwrap().len(),
        2,
        "{:?}",
        store.get_tree("settings.time")
    );
    assert_eq!(
        store
            .get_metadata("settings.time", "affected-services")
            .unwrap(),
        Some(json!(["chrony"]))
    );
    rename.backward(&mut store).unwrap();
    assert_eq!(
        store.get("settings.ntp.options.iburst").unwrap(),
        Some(json!(true))
    );
}

#[test]
fn replace_default_only_touches_the_old_default() {
    let (_base, dir) = store_with(&[("settings.a", json!(30)), ("settings.b", json!(45))]);
    let mut store = Store::open(&dir).unwrap();
    let a = ReplaceDefault::new("settings.a", json!(30), json!(60));
    let b = ReplaceDefault::new("settings.b", json!(30), json!(60));
    let missing = ReplaceDefault::new("settings.c", json!(30), json!(60));
    let all = (a, b, missing);
    all.forward(&mut store).unwrap();
    assert_eq!(store.get("settings.a").unwrap(), Some(json!(60)));
    assert_eq!(store.get("settings.b").unwrap(), Some(json!(45)));
    assert_eq!(store.get("settings.c").unwrap(), None);
    all.backward(&mut store).unwrap();
    assert_eq!(store.get("settings.a").unwrap(), Some(json!(30)));
    assert_eq!(store.get("settings.b").unwrap(), Some(json!(45)));
}

#[test]
fn replace_metadata_and_template() {
    let (_base, dir) = store_with(&[]);
    let mut store = Store::open(&dir).unwrap();
    let key = "configuration-files.motd";
    store
        .set_metadata(key, "template", &json!("old {{x}}"))
        .unwrap();
    let step = ReplaceMetadata::template(key, "old {{x}}", "new {{x}}");
    step.forward(&mut store).unwrap();
    assert_eq!(
        store.get_metadata(key, "template").unwrap(),
        Some(json!("new {{x}}"))
    );
    step.backward(&mut store).unwrap();
    assert_eq!(
        store.get_metadata(key, "template").unwrap(),
        Some(json!("old {{x}}"))
    );
    // None means "absent" on that side.
    let add = ReplaceMetadata::new("settings.x", "setting-generator", None, Some(json!("gen")));
    add.forward(&mut store).unwrap();
    assert_eq!(
        store
            .get_metadata("settings.x", "setting-generator")
            .unwrap(),
        Some(json!("gen"))
    );
    add.backward(&mut store).unwrap();
    assert_eq!(
        store
            .get_metadata("settings.x", "setting-generator")
            .unwrap(),
        None
    );
}

#[test]
fn arguments_follow_the_migration_interface() {
    let args = MigrationArgs::parse_from_args([
        "m",
        "--source-datastore",
        "/a",
        "--target-datastore",
        "/b",
        "--backward",
    ])
    .unwrap();
    assert_eq!(args.direction(), Direction::Backward);
    assert_eq!(args.target_datastore, PathBuf::from("/b"));
    for bad in [
        vec!["m", "--source-datastore", "/a", "--target-datastore", "/b"],
        vec![
            "m",
            "--source-datastore",
            "/a",
            "--target-datastore",
            "/b",
            "--forward",
            "--backward",
        ],
        vec!["m", "--target-datastore", "/b", "--forward"],
    ] {
        let err = MigrationArgs::parse_from_args(bad).unwrap_err().to_string();
        assert!(err.contains("--source-datastore DIR"), "{err}");
    }
}

#[test]
fn bad_keys_and_missing_stores_are_named() {
    let (_base, dir) = store_with(&[]);
    let mut store = Store::open(&dir).unwrap();
    let err = store.set("settings..x", &json!(1)).unwrap_err().to_string();
    assert!(err.contains("settings..x"), "{err}");
    drop(store);
    let err = Store::open(&dir.join("nope")).err().unwrap().to_string();
    assert!(err.contains("nope"), "{err}");
}
