use super::*;
use crate::Error;
use std::os::unix::fs::PermissionsExt;

fn key(name: &str) -> Key {
    Key::new(KeyType::Data, name).unwrap()
}

fn meta(name: &str) -> Key {
    Key::new(KeyType::Meta, name).unwrap()
}

fn tx(name: &str) -> Committed {
    Committed::Pending {
        tx: name.to_string(),
    }
}

fn pairs(list: &[(&str, &str)]) -> BTreeMap<Key, String> {
    list.iter().map(|(k, v)| (key(k), v.to_string())).collect()
}

fn live(ds: &FilesystemDataStore, name: &str) -> Option<String> {
    ds.get_key(&key(name), &Committed::Live).unwrap()
}

fn new_store() -> (tempfile::TempDir, FilesystemDataStore) {
    let dir = tempfile::tempdir().unwrap();
    let ds = FilesystemDataStore::create(dir.path(), "1.0").unwrap();
    (dir, ds)
}

#[test]
fn layout_on_disk() {
    let (dir, mut ds) = new_store();
    let base = dir.path();
    assert_eq!(
        fs::read_link(base.join("current")).unwrap(),
        Path::new("v1.0")
    );
    assert_eq!(ds.path(), base.join("v1.0"));
    ds.set_keys(&pairs(&[("settings.motd", "\"hi\"")]), &tx("default"))
        .unwrap();
    assert_eq!(
        fs::read_to_string(base.join("v1.0/pending/default/settings/motd")).unwrap(),
        "\"hi\""
    );
    ds.commit_transaction("default", None).unwrap();
    ds.sync().unwrap();
    let file = base.join("v1.0/live/settings/motd");
    assert_eq!(fs::read_to_string(&file).unwrap(), "\"hi\"");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!base.join("v1.0/pending/default").exists());
    assert!(base.join("v1.0/journal").is_file());
    assert!(base
        .join("v1.0/history/00000000000000000001.json")
        .is_file());

    ds.set_metadata(
        &meta("affected-services"),
        &key("settings.motd"),
        "[\"motd\"]",
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(base.join("v1.0/live/settings/motd.affected-services")).unwrap(),
        "[\"motd\"]"
    );
    let k = key("settings.kernel.sysctl.\"net.ipv4.ip_forward\"");
    ds.set_keys(&BTreeMap::from([(k, "\"1\"".into())]), &Committed::Live)
        .unwrap();
    assert!(base
        .join("v1.0/live/settings/kernel/sysctl/net%2Eipv4%2Eip_forward")
        .is_file());
}

#[test]
fn create_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = FilesystemDataStore::create(dir.path(), "1.0").unwrap();
    ds.set_keys(&pairs(&[("settings.motd", "\"hi\"")]), &Committed::Live)
        .unwrap();
    // A second handle cannot open it while the first is alive.
    assert!(matches!(
        FilesystemDataStore::open(&dir.path().join("current")),
        Err(Error::Locked { .. })
    ));
    drop(ds);
    let ds = FilesystemDataStore::create(dir.path(), "1.0").unwrap();
    assert_eq!(live(&ds, "settings.motd").as_deref(), Some("\"hi\""));
    drop(ds);
    // Another version finds the existing store and leaves it alone.
    let ds = FilesystemDataStore::create(dir.path(), "2.0").unwrap();
    assert_eq!(ds.path(), dir.path().join("v1.0"));
    assert_eq!(live(&ds, "settings.motd").as_deref(), Some("\"hi\""));
    assert!(!dir.path().join("v2.0").exists());
    drop(ds);
    assert!(matches!(
        FilesystemDataStore::create(dir.path(), "../x"),
        Err(Error::InvalidVersion { .. })
    ));
    assert!(matches!(
        FilesystemDataStore::open(dir.path()),
        Err(Error::NotADatastore { .. })
    ));
    let ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
    assert_eq!(live(&ds, "settings.motd").as_deref(), Some("\"hi\""));
}

/// Lists every file under `dir`, relative to it.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_key_escapes_the_store() {
    let (dir, mut ds) = new_store();
    let nasty = [
        vec!["..", "..", "escape"],
        vec!["settings", "../../../../tmp/escape"],
        vec!["/etc/passwd"],
        vec!["settings", "a/b/../c"],
        vec!["settings", "%2e%2e"],
        vec!["settings", "..."],
        vec!["settings", " x"],
    ];
    let mut written = BTreeMap::new();
    for segments in &nasty {
        match Key::from_segments(KeyType::Data, segments) {
            Ok(k) => {
                written.insert(k, "1".to_string());
            }
            Err(Error::InvalidKey { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // NUL, too-long names and traversal spelled in a name are refused outright.
    for bad in [
        "settings.a\0b",
        "settings.\"a\0b\"",
        &format!("settings.{}", "a".repeat(300)),
        "settings...",
        "settings./etc",
        "../etc",
    ] {
        assert!(Key::new(KeyType::Data, bad).is_err(), "accepted {bad:?}");
    }
    assert!(written.len() >= 4);
    ds.set_keys(&written, &Committed::Live).unwrap();
    ds.set_keys(&written, &tx("t")).unwrap();
    ds.commit_transaction("t", None).ok();
    for k in written.keys() {
        ds.set_metadata(&meta("\"m/../x\""), k, "1").unwrap();
    }
    // Everything written lies under live/ or pending/ of the version directory.
    for file in all_files(dir.path()) {
        if file == Path::new("current") {
            continue;
        }
        let first = file.components().next().unwrap().as_os_str().to_owned();
        assert_eq!(first, "v1.0", "{file:?} outside the version directory");
        let second = file.components().nth(1).unwrap().as_os_str().to_owned();
        assert!(
            ["live", "pending", "history", "lock", "journal"].contains(&second.to_str().unwrap()),
            "{file:?}"
        );
    }
    let listed = ds.list_populated_keys("", &Committed::Live).unwrap();
    assert_eq!(listed, written.keys().cloned().collect());
    for k in written.keys() {
        assert_eq!(
            ds.get_key(k, &Committed::Live).unwrap().as_deref(),
            Some("1")
        );
    }
}

#[test]
fn commit_moves_only_changes() {
    let (_dir, mut ds) = new_store();
    ds.set_keys(
        &pairs(&[("settings.a", "1"), ("settings.b", "2")]),
        &Committed::Live,
    )
    .unwrap();
    ds.set_keys(
        &pairs(&[
            ("settings.a", "1"),
            ("settings.b", "3"),
            ("settings.c.d", "\"x\""),
        ]),
        &tx("default"),
    )
    .unwrap();
    // Pending is visible in its transaction only.
    assert_eq!(live(&ds, "settings.b").as_deref(), Some("2"));
    assert_eq!(
        ds.get_key(&key("settings.b"), &tx("default"))
            .unwrap()
            .as_deref(),
        Some("3")
    );
    let record = ds.commit_transaction("default", None).unwrap();
    assert_eq!(record.id, 1);
    assert_eq!(record.transaction, "default");
    assert_eq!(
        record.changes,
        vec![
            Change {
                key: "settings.b".into(),
                old: Some("2".into()),
                new: Some("3".into())
            },
            Change {
                key: "settings.c.d".into(),
                old: None,
                new: Some("\"x\"".into())
            },
        ]
    );
    assert_eq!(live(&ds, "settings.b").as_deref(), Some("3"));
    assert_eq!(live(&ds, "settings.c.d").as_deref(), Some("\"x\""));
    assert!(ds.list_transactions().unwrap().is_empty());
    assert!(matches!(
        ds.commit_transaction("default", None),
        Err(Error::EmptyTransaction { .. })
    ));
    assert!(matches!(
        ds.commit_transaction("bad name", None),
        Err(Error::InvalidTransaction { .. })
    ));

    // Pending values equal to live: nothing recorded, transaction removed, id 0.
    ds.set_keys(&pairs(&[("settings.a", "1")]), &tx("same"))
        .unwrap();
    let record = ds.commit_transaction("same", None).unwrap();
    assert_eq!(record.id, 0);
    assert!(record.changes.is_empty());
    assert!(ds.list_transactions().unwrap().is_empty());
    assert_eq!(ds.history().unwrap().len(), 1);
    // The next real commit still gets the next id.
    ds.set_keys(&pairs(&[("settings.a", "5")]), &tx("t"))
        .unwrap();
    assert_eq!(ds.commit_transaction("t", None).unwrap().id, 2);
}

#[test]
fn prefixes_and_listing() {
    let (_dir, mut ds) = new_store();
    ds.set_keys(
        &pairs(&[
            ("settings.ntp.time-servers", "[\"a\"]"),
            ("settings.ntpx", "1"),
            ("settings.motd", "\"m\""),
            ("settings.kernel.sysctl.\"net.ipv4.ip_forward\"", "\"1\""),
            ("settings.kernel.sysctl.\"net.core.x\"", "\"2\""),
            ("services.ntp.restart-commands", "[]"),
        ]),
        &Committed::Live,
    )
    .unwrap();
    let names = |prefix: &str| -> Vec<String> {
        ds.list_populated_keys(prefix, &Committed::Live)
            .unwrap()
            .iter()
            .map(|k| k.name().to_string())
            .collect()
    };
    assert_eq!(
        names("settings.ntp"),
        ["settings.ntp.time-servers", "settings.ntpx"]
    );
    assert_eq!(names("settings.ntp."), ["settings.ntp.time-servers"]);
    assert_eq!(
        names("settings.nt"),
        ["settings.ntp.time-servers", "settings.ntpx"]
    );
    assert_eq!(names("services").len(), 1);
    assert_eq!(names("").len(), 6);
    assert_eq!(names("settings.").len(), 5);
    assert_eq!(
        names("settings.kernel.sysctl.\"net.ipv4"),
        ["settings.kernel.sysctl.\"net.ipv4.ip_forward\""]
    );
    assert_eq!(
        names("settings.kernel.sysctl.\"net.ipv4.ip_forward\"").len(),
        1
    );
    assert!(names("nothing").is_empty());
    assert!(names("set tings").is_empty());
    let values = ds.get_prefix("settings.ntp.", &Committed::Live).unwrap();
    assert_eq!(values[&key("settings.ntp.time-servers")], "[\"a\"]");
    // A group is not a value.
    assert_eq!(live(&ds, "settings.ntp"), None);
    assert_eq!(live(&ds, "settings.motd.x"), None);
    // Unknown transactions read as empty.
    assert!(ds
        .list_populated_keys("", &tx("nothing-here"))
        .unwrap()
        .is_empty());
}

#[test]
fn metadata() {
    let (_dir, mut ds) = new_store();
    let affected = meta("affected-services");
    let template = meta("template");
    ds.set_keys(
        &pairs(&[("settings.ntp.time-servers", "[]")]),
        &Committed::Live,
    )
    .unwrap();
    ds.set_metadata(&affected, &key("settings.ntp"), "[\"chronyd\"]")
        .unwrap();
    ds.set_metadata(
        &template,
        &key("configuration-files.chrony.template-path"),
        "\"x\"",
    )
    .unwrap();
    ds.set_metadata(&affected, &key("settings.motd"), "[\"motd\"]")
        .unwrap();
    assert_eq!(
        ds.get_metadata(&affected, &key("settings.ntp"))
            .unwrap()
            .as_deref(),
        Some("[\"chronyd\"]")
    );
    assert_eq!(
        ds.get_metadata(&template, &key("settings.ntp")).unwrap(),
        None
    );
    let all = ds.list_populated_metadata("", None).unwrap();
    assert_eq!(all.len(), 3);
    let settings = ds
        .list_populated_metadata("settings.", Some(&affected))
        .unwrap();
    assert_eq!(
        settings.keys().map(Key::name).collect::<Vec<_>>(),
        ["settings.motd", "settings.ntp"]
    );
    assert!(ds
        .list_populated_metadata("settings.", Some(&template))
        .unwrap()
        .is_empty());
    // Metadata files are not data keys, and data keys are not metadata.
    assert_eq!(
        ds.list_populated_keys("settings.", &Committed::Live)
            .unwrap()
            .len(),
        1
    );
    ds.unset_metadata(&affected, &key("settings.ntp")).unwrap();
    assert_eq!(
        ds.get_metadata(&affected, &key("settings.ntp")).unwrap(),
        None
    );
    // Wrong key types are refused.
    assert!(ds.get_metadata(&key("a.b"), &key("a")).is_err());
    assert!(ds.get_key(&affected, &Committed::Live).is_err());
    assert!(matches!(
        ds.set_metadata(&affected, &key("a"), "{"),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn transactions() {
    let (_dir, mut ds) = new_store();
    ds.set_keys(
        &pairs(&[("settings.a", "1"), ("settings.b", "2")]),
        &tx("one"),
    )
    .unwrap();
    ds.set_keys(&pairs(&[("settings.c", "3")]), &tx("two"))
        .unwrap();
    assert_eq!(
        ds.list_transactions().unwrap(),
        BTreeSet::from(["one".to_string(), "two".to_string()])
    );
    let removed = ds.delete_transaction("one").unwrap();
    assert_eq!(
        removed.iter().map(Key::name).collect::<Vec<_>>(),
        ["settings.a", "settings.b"]
    );
    assert!(ds.delete_transaction("one").unwrap().is_empty());
    // A transaction whose only key was unset is not listed.
    ds.unset_key(&key("settings.c"), &tx("two")).unwrap();
    assert!(ds.list_transactions().unwrap().is_empty());
    assert!(matches!(
        ds.commit_transaction("two", None),
        Err(Error::EmptyTransaction { .. })
    ));
    for bad in ["", "../live", "a/b", &"x".repeat(65)] {
        assert!(matches!(
            ds.set_keys(&pairs(&[("a", "1")]), &tx(bad)),
            Err(Error::InvalidTransaction { .. })
        ));
        assert!(ds.delete_transaction(bad).is_err());
        assert!(ds.get_key(&key("a"), &tx(bad)).is_err());
    }
    assert!(matches!(
        ds.set_keys(&pairs(&[("settings.a", "not json")]), &tx("one")),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn conflicts_are_refused_before_anything_changes() {
    let (dir, mut ds) = new_store();
    ds.set_keys(&pairs(&[("settings.a", "1")]), &Committed::Live)
        .unwrap();
    assert!(matches!(
        ds.set_keys(&pairs(&[("settings.a.b", "1")]), &Committed::Live),
        Err(Error::KeyConflict { .. })
    ));
    assert!(matches!(
        ds.set_keys(&pairs(&[("x.y", "1"), ("x.y.z", "2")]), &tx("t")),
        Err(Error::KeyConflict { .. })
    ));
    ds.set_keys(
        &pairs(&[("settings.a.b", "1"), ("settings.c", "1")]),
        &tx("t"),
    )
    .unwrap();
    assert!(matches!(
        ds.commit_transaction("t", None),
        Err(Error::KeyConflict { .. })
    ));
    // Live untouched, pending intact, no journal, no history.
    assert_eq!(live(&ds, "settings.c"), None);
    assert_eq!(ds.list_populated_keys("", &tx("t")).unwrap().len(), 2);
    assert_eq!(
        fs::metadata(dir.path().join("v1.0/journal")).unwrap().len(),
        0
    );
    assert!(ds.history().unwrap().is_empty());

    // A value may turn into a group, and back, when one commit deletes the one and sets the other.
    ds.delete_transaction("t").unwrap();
    ds.set_keys(&pairs(&[("g.leaf", "1")]), &Committed::Live)
        .unwrap();
    ds.set_metadata(&meta("m"), &key("g.leaf"), "1").unwrap();
    let to_group = vec![
        Change {
            key: "g.leaf".into(),
            old: Some("1".into()),
            new: None,
        },
        Change {
            key: "g.leaf.x".into(),
            old: None,
            new: Some("5".into()),
        },
    ];
    let record = ds.run_commit("reshape", to_group, None, None).unwrap();
    assert_eq!(live(&ds, "g.leaf"), None);
    assert_eq!(live(&ds, "g.leaf.x").as_deref(), Some("5"));
    // Metadata of g.leaf stays where it was.
    assert_eq!(
        ds.get_metadata(&meta("m"), &key("g.leaf"))
            .unwrap()
            .as_deref(),
        Some("1")
    );
    ds.undo(Some(record.id), None).unwrap();
    assert_eq!(live(&ds, "g.leaf").as_deref(), Some("1"));
    assert_eq!(live(&ds, "g.leaf.x"), None);
    // But not while something else is still stored below.
    assert!(matches!(
        ds.set_metadata(&meta("m"), &key("g.leaf.y.z"), "1"),
        Err(Error::KeyConflict { .. })
    ));
    ds.unset_key(&key("g.leaf"), &Committed::Live).unwrap();
    ds.set_metadata(&meta("m"), &key("g.leaf.y.z"), "1")
        .unwrap();
    ds.set_keys(&pairs(&[("g.leaf", "2")]), &tx("t")).unwrap();
    assert!(matches!(
        ds.commit_transaction("t", None),
        Err(Error::KeyConflict { .. })
    ));
}

#[test]
fn history_is_bounded_and_ids_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = FilesystemDataStore::create(dir.path(), "1")
        .unwrap()
        .with_history_limit(3);
    for n in 1..=5 {
        ds.set_keys(&pairs(&[("settings.n", &n.to_string())]), &tx("t"))
            .unwrap();
        assert_eq!(ds.commit_transaction("t", None).unwrap().id, n);
    }
    let history = ds.history().unwrap();
    assert_eq!(history.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(
        history[2].changes,
        vec![Change {
            key: "settings.n".into(),
            old: Some("4".into()),
            new: Some("5".into())
        }]
    );
    assert!(matches!(
        ds.undo(Some(1), None),
        Err(Error::NoSuchCommit { id: 1 })
    ));
    ds.sync().unwrap();
    assert_eq!(
        fs::read_dir(dir.path().join("v1/history")).unwrap().count(),
        3
    );
    drop(ds);

    let mut ds = FilesystemDataStore::open(&dir.path().join("current"))
        .unwrap()
        .with_history_limit(2);
    assert_eq!(ds.history().unwrap().len(), 2);
    ds.set_keys(&pairs(&[("settings.n", "6")]), &tx("t"))
        .unwrap();
    assert_eq!(ds.commit_transaction("t", None).unwrap().id, 6);
    assert_eq!(
        ds.history()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [5, 6]
    );
    ds.sync().unwrap();
    assert_eq!(
        fs::read_dir(dir.path().join("v1/history")).unwrap().count(),
        2
    );
    for record in ds.history().unwrap() {
        time::OffsetDateTime::parse(&record.time, &time::format_description::well_known::Rfc3339)
            .unwrap();
    }
}

#[test]
fn default_history_limit_is_256() {
    let (_dir, mut ds) = new_store();
    assert_eq!(ds.history_limit(), 256);
    for n in 1..=260 {
        ds.set_keys(&pairs(&[("settings.n", &n.to_string())]), &tx("t"))
            .unwrap();
        ds.commit_transaction("t", None).unwrap();
    }
    let history = ds.history().unwrap();
    assert_eq!(history.len(), 256);
    assert_eq!(history[0].id, 5);
    assert_eq!(history[255].id, 260);
}

#[test]
fn undo_restores_old_values() {
    let (_dir, mut ds) = new_store();
    ds.set_keys(&pairs(&[("settings.a", "1")]), &Committed::Live)
        .unwrap();
    ds.set_keys(
        &pairs(&[("settings.a", "2"), ("settings.b", "3")]),
        &tx("t"),
    )
    .unwrap();
    let commit = ds.commit_transaction("t", None).unwrap();
    let undo = ds.undo(Some(commit.id), None).unwrap();
    assert_eq!(undo.transaction, format!("undo-{}", commit.id));
    assert_eq!(undo.id, commit.id + 1);
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("1"));
    assert_eq!(live(&ds, "settings.b"), None);
    assert_eq!(
        undo.changes,
        vec![
            Change {
                key: "settings.a".into(),
                old: Some("2".into()),
                new: Some("1".into())
            },
            Change {
                key: "settings.b".into(),
                old: Some("3".into()),
                new: None
            },
        ]
    );
    // Undoing the undo (the newest) brings the commit back.
    let redo = ds.undo(None, None).unwrap();
    assert_eq!(redo.transaction, format!("undo-{}", undo.id));
    assert_eq!(live(&ds, "settings.b").as_deref(), Some("3"));
    // Undoing something already undone changes nothing and records nothing.
    ds.undo(Some(undo.id), None).unwrap();
    let again = ds.undo(Some(undo.id), None).unwrap();
    assert_eq!(again.id, 0);
    assert!(again.changes.is_empty());
    assert!(matches!(
        ds.undo(Some(999), None),
        Err(Error::NoSuchCommit { id: 999 })
    ));
    let (_dir2, mut empty) = new_store();
    assert!(matches!(
        empty.undo(None, None),
        Err(Error::NoSuchCommit { .. })
    ));
}

/// A journal as a commit would write it.
fn journal(id: u64, tx: &str, changes: &[(&str, Option<&str>, Option<&str>)]) -> Journal {
    Journal {
        record: CommitRecord {
            id,
            time: "2024-01-01T00:00:00Z".to_string(),
            transaction: tx.to_string(),
            changes: changes
                .iter()
                .map(|(key, old, new)| Change {
                    key: key.to_string(),
                    old: old.map(str::to_string),
                    new: new.map(str::to_string),
                })
                .collect(),
            caller: None,
        },
        drop_pending: Some(tx.to_string()),
    }
}

#[test]
fn journal_frames() {
    let j = journal(3, "t", &[("settings.a", None, Some("1"))]);
    let mut bytes = frame::encode(&j).unwrap();
    assert_eq!(frame::decode(&bytes).unwrap(), j);
    // Trailing bytes from an older, longer journal are ignored.
    bytes.extend_from_slice(b"old tail");
    assert_eq!(frame::decode(&bytes).unwrap(), j);
    // Any torn or damaged write is refused.
    let good = frame::encode(&j).unwrap();
    for cut in [0, 5, 20, good.len() - 1] {
        assert!(
            frame::decode(&good[..cut]).is_err(),
            "accepted a cut at {cut}"
        );
    }
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 1;
    assert!(frame::decode(&flipped).is_err());
}

#[test]
fn open_finishes_a_hand_made_journal() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let mut ds = FilesystemDataStore::create(base, "1").unwrap();
    ds.set_keys(
        &pairs(&[("settings.a", "1"), ("settings.gone", "\"bye\"")]),
        &Committed::Live,
    )
    .unwrap();
    ds.set_keys(&pairs(&[("settings.x", "0")]), &tx("t"))
        .unwrap();
    drop(ds);

    let vdir = base.join("v1");
    // The state a crash in the middle of applying commit 7 would leave: journal written, one key
    // already applied, a temporary file, a half-removed trash directory, pending still there.
    let j = journal(
        7,
        "t",
        &[
            ("settings.a", Some("1"), Some("2")),
            ("settings.gone", Some("\"bye\""), None),
            ("settings.new.\"x.y\"", None, Some("[1,2]")),
        ],
    );
    fs::write(vdir.join("journal"), frame::encode(&j).unwrap()).unwrap();
    fs::write(vdir.join("live/settings/a"), "2").unwrap();
    fs::write(vdir.join("live/settings/.tmp-0123"), "garbage").unwrap();
    fs::create_dir_all(vdir.join("pending/.trash-1/settings")).unwrap();
    fs::write(vdir.join("pending/.trash-1/settings/q"), "1").unwrap();

    let mut ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("2"));
    assert_eq!(live(&ds, "settings.gone"), None);
    assert_eq!(live(&ds, "settings.new.\"x.y\"").as_deref(), Some("[1,2]"));
    assert!(ds.list_transactions().unwrap().is_empty());
    assert!(!vdir.join("live/settings/.tmp-0123").exists());
    assert!(!vdir.join("pending/.trash-1").exists());
    assert!(vdir.join("history/00000000000000000007.json").is_file());
    let history = ds.history().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, 7);
    assert_eq!(history[0].transaction, "t");
    // The next commit continues after the journal's id.
    ds.set_keys(&pairs(&[("settings.a", "3")]), &tx("t"))
        .unwrap();
    assert_eq!(ds.commit_transaction("t", None).unwrap().id, 8);
    // The recovered record can be undone like any other.
    ds.undo(Some(7), None).unwrap();
    assert_eq!(live(&ds, "settings.gone").as_deref(), Some("\"bye\""));
    assert_eq!(live(&ds, "settings.new.\"x.y\""), None);
    drop(ds);

    // Reopening does not replay the (retired) journal again over the undo.
    let ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    assert_eq!(live(&ds, "settings.gone").as_deref(), Some("\"bye\""));
    assert_eq!(
        ds.history()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [7, 8, 9]
    );
}

#[test]
fn torn_journal_means_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = FilesystemDataStore::create(dir.path(), "1").unwrap();
    ds.set_keys(&pairs(&[("settings.a", "1")]), &tx("t"))
        .unwrap();
    drop(ds);
    let j = journal(1, "t", &[("settings.a", None, Some("1"))]);
    let bytes = frame::encode(&j).unwrap();
    fs::write(dir.path().join("v1/journal"), &bytes[..bytes.len() - 2]).unwrap();
    let ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
    assert_eq!(live(&ds, "settings.a"), None);
    assert_eq!(
        ds.list_transactions().unwrap(),
        BTreeSet::from(["t".to_string()])
    );
    assert!(ds.history().unwrap().is_empty());
}

#[test]
fn retired_journal_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = FilesystemDataStore::create(dir.path(), "1").unwrap();
    ds.set_keys(&pairs(&[("settings.a", "1")]), &tx("t"))
        .unwrap();
    ds.commit_transaction("t", None).unwrap();
    // Changed after the commit, outside any transaction.
    ds.set_keys(&pairs(&[("settings.a", "2")]), &Committed::Live)
        .unwrap();
    ds.set_keys(&pairs(&[("settings.b", "1")]), &tx("t"))
        .unwrap();
    drop(ds);
    let ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("2"));
    assert_eq!(
        ds.list_transactions().unwrap(),
        BTreeSet::from(["t".to_string()])
    );
}

#[test]
fn commit_is_visible_before_it_settles() {
    let (_dir, mut ds) = new_store();
    ds.set_keys(&pairs(&[("settings.a", "1")]), &tx("t"))
        .unwrap();
    let record = ds.commit_transaction("t", None).unwrap();
    // Without waiting: live, transactions and history already show the commit.
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("1"));
    assert!(ds.list_transactions().unwrap().is_empty());
    assert_eq!(ds.history().unwrap(), vec![record.clone()]);
    ds.sync().unwrap();
    assert_eq!(ds.history().unwrap(), vec![record]);
}

#[test]
fn stray_files_are_not_keys() {
    let (dir, ds) = new_store();
    let live_dir = dir.path().join("v1.0/live");
    fs::create_dir_all(live_dir.join("settings")).unwrap();
    fs::write(live_dir.join("settings/%61"), "1").unwrap();
    fs::write(live_dir.join("settings/%zz"), "1").unwrap();
    fs::write(live_dir.join("settings/.hidden"), "1").unwrap();
    fs::write(live_dir.join("settings/ok"), "1").unwrap();
    let keys = ds.list_populated_keys("", &Committed::Live).unwrap();
    assert_eq!(
        keys.iter().map(Key::name).collect::<Vec<_>>(),
        ["settings.ok"]
    );
}

#[test]
fn a_group_commit_is_one_commit_after_the_other_with_one_journal() {
    let (dir, mut ds) = new_store();
    ds.set_keys(
        &pairs(&[("settings.a", "0"), ("settings.g.x", "0")]),
        &Committed::Live,
    )
    .unwrap();
    ds.set_keys(
        &pairs(&[("settings.a", "1"), ("settings.b", "1")]),
        &tx("one"),
    )
    .unwrap();
    // The same key as "one": the later value wins.
    ds.set_keys(&pairs(&[("settings.a", "2")]), &tx("two"))
        .unwrap();
    // Equal to what "one" and "two" leave: a commit that changes nothing.
    ds.set_keys(&pairs(&[("settings.b", "1")]), &tx("same"))
        .unwrap();
    // Would turn settings.b, which "one" gives a value, into a group: refused, as it would be
    // one commit after the other, and only in a batch that sees "one" applied.
    ds.set_keys(&pairs(&[("settings.b.c", "3")]), &tx("below"))
        .unwrap();
    ds.set_keys(&pairs(&[("settings.g.x", "4")]), &tx("four"))
        .unwrap();
    let results = ds.commit_transactions(&[
        ("one", None),
        ("two", None),
        ("same", None),
        ("empty", None),
        ("below", None),
        ("four", None),
        ("two", None),
    ]);
    let ids: Vec<_> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|record| record.id)
                .map_err(|e| e.to_string())
        })
        .collect();
    assert_eq!(
        ids[..4],
        [
            Ok(1),
            Ok(2),
            Ok(0),
            Err("Transaction 'empty' has no pending changes".to_string())
        ]
    );
    assert!(
        matches!(results[4], Err(Error::KeyConflict { .. })),
        "{:?}",
        results[4]
    );
    assert_eq!(ids[5], Ok(3));
    assert!(matches!(results[6], Err(Error::EmptyTransaction { .. })));
    let two = results[1].as_ref().unwrap();
    assert_eq!(two.changes.len(), 1);
    assert_eq!(
        two.changes[0].old.as_deref(),
        Some("1"),
        "old value is the one commit one left"
    );
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("2"));
    assert_eq!(live(&ds, "settings.b").as_deref(), Some("1"));
    assert_eq!(live(&ds, "settings.g.x").as_deref(), Some("4"));
    assert_eq!(
        ds.list_transactions().unwrap(),
        BTreeSet::from(["below".to_string()])
    );
    ds.sync().unwrap();
    let history: Vec<u64> = ds.history().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(history, [1, 2, 3]);
    // "one" and "two" shared a journal; "four" came in the next batch.
    let journal = frame::decode_batch(&fs::read(dir.path().join("v1.0/journal")).unwrap()).unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].record.id, 3);
    drop(ds);
    let ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("2"));
    assert_eq!(ds.history().unwrap().len(), 3);
}

#[test]
fn open_finishes_a_group_journal_from_its_first_unrecorded_commit() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let mut ds = FilesystemDataStore::create(base, "1").unwrap();
    ds.set_keys(&pairs(&[("settings.a", "1")]), &tx("t"))
        .unwrap();
    ds.commit_transaction("t", None).unwrap();
    drop(ds);
    let vdir = base.join("v1");
    // Commits 2 and 3 in one journal; a crash left commit 2 recorded and 3 not applied.
    let batch = [
        journal(2, "u", &[("settings.a", Some("1"), Some("2"))]),
        journal(
            3,
            "v",
            &[
                ("settings.a", Some("2"), Some("3")),
                ("settings.b", None, Some("3")),
            ],
        ),
    ];
    let bytes = frame::encode_batch(&batch).unwrap();
    assert_eq!(frame::decode_batch(&bytes).unwrap(), batch);
    assert!(frame::decode(&bytes).is_err(), "a group is not one commit");
    fs::write(vdir.join("journal"), &bytes).unwrap();
    fs::write(vdir.join("live/settings/a"), "2").unwrap();
    fs::write(
        vdir.join("history/00000000000000000002.json"),
        serialize_record(&batch[0].record).unwrap(),
    )
    .unwrap();
    let mut ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    assert_eq!(live(&ds, "settings.a").as_deref(), Some("3"));
    assert_eq!(live(&ds, "settings.b").as_deref(), Some("3"));
    let ids: Vec<u64> = ds.history().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    ds.set_keys(&pairs(&[("settings.a", "4")]), &tx("t"))
        .unwrap();
    assert_eq!(ds.commit_transaction("t", None).unwrap().id, 4);
}

#[test]
fn every_kind_of_commit_records_its_caller_and_old_records_still_load() {
    let (dir, mut ds) = new_store();
    let alice = Caller {
        uid: 1000,
        gid: 274,
        pid: Some(42),
        program: Some("apiclient".into()),
    };
    let bob = Caller {
        uid: 0,
        gid: 0,
        pid: None,
        program: None,
    };
    ds.set_keys(&pairs(&[("settings.a", "1")]), &tx("one"))
        .unwrap();
    ds.set_keys(&pairs(&[("settings.b", "2")]), &tx("two"))
        .unwrap();
    let batch = ds.commit_transactions(&[("one", Some(&alice)), ("two", Some(&bob))]);
    assert_eq!(batch[0].as_ref().unwrap().caller.as_ref(), Some(&alice));
    assert_eq!(batch[1].as_ref().unwrap().caller.as_ref(), Some(&bob));
    let values = BTreeMap::from([(key("settings.c"), Some("3".to_string()))]);
    ds.commit_values("given", &values, None, Some(&bob))
        .unwrap();
    ds.undo(None, Some(&alice)).unwrap();
    ds.set_keys(&pairs(&[("settings.d", "4")]), &tx("t"))
        .unwrap();
    ds.commit_transaction("t", None).unwrap();
    ds.sync().unwrap();
    drop(ds);

    // A record from before callers were recorded: take the caller out of the first file.
    let history_dir = dir.path().join("current").join(HISTORY);
    let first = history_dir.join(history_file_name(1));
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("caller");
    std::fs::write(&first, old.to_string()).unwrap();

    let ds = FilesystemDataStore::open(&dir.path().join("current")).unwrap();
    let callers: Vec<_> = ds
        .history()
        .unwrap()
        .into_iter()
        .map(|r| (r.transaction, r.caller))
        .collect();
    assert_eq!(
        callers,
        vec![
            ("one".to_string(), None),
            ("two".to_string(), Some(bob.clone())),
            ("given".to_string(), Some(bob)),
            ("undo-3".to_string(), Some(alice)),
            ("t".to_string(), None),
        ]
    );
    // A record without a caller is written without the field.
    let last = std::fs::read_to_string(history_dir.join(history_file_name(5))).unwrap();
    assert!(!last.contains("caller"), "{last}");
}
