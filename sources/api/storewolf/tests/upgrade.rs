//! A node moves to a new OS version whose defaults add a setting: the new default is seeded,
//! values the user set survive, and image data (metadata, services) follows the new image.

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use models::Defaults;

fn live(base: &std::path::Path, key: &str) -> Option<String> {
    let ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    ds.get_key(&Key::new(KeyType::Data, key).unwrap(), &Committed::Live)
        .unwrap()
}

#[test]
fn a_new_version_adds_its_defaults_and_keeps_user_values() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("datastore");
    let v1 = models::shared_defaults();
    storewolf::run(&base, "0.1.0", &v1, true).unwrap();
    assert!(live(&base, "settings.dns.search-list").is_none());

    // The user changes the motd on 0.1.0.
    {
        let mut ds = FilesystemDataStore::open(&base.join("current")).unwrap();
        let tx = Committed::Pending { tx: "user".into() };
        let pairs = std::collections::BTreeMap::from([(
            Key::new(KeyType::Data, "settings.motd").unwrap(),
            "\"set by the user\"".to_string(),
        )]);
        ds.set_keys(&pairs, &tx).unwrap();
        ds.commit_transaction("user", None).unwrap();
    }

    // 0.2.0 ships a different motd default, a new setting and a new service.
    let v2 = v1.merge(
        Defaults::from_toml_str(
            r#"
            [settings]
            motd = "Welcome to 0.2.0"
            [settings.dns]
            search-list = ["example.internal"]
            [metadata.settings.dns]
            affected-services = ["dns", "new-service"]
            [services.new-service]
            configuration-files = []
            restart-commands = []
            "#,
        )
        .unwrap(),
    );
    let seeded = storewolf::run(&base, "0.2.0", &v2, true).unwrap();
    assert!(
        seeded
            .settings
            .contains(&"settings.dns.search-list".to_string()),
        "{:?}",
        seeded.settings
    );
    assert!(!seeded.settings.contains(&"settings.motd".to_string()));
    assert_eq!(
        live(&base, "settings.motd").as_deref(),
        Some("\"set by the user\"")
    );
    assert_eq!(
        live(&base, "settings.dns.search-list").as_deref(),
        Some("[\"example.internal\"]")
    );
    let ds = FilesystemDataStore::open(&base.join("current")).unwrap();
    assert!(!ds
        .get_prefix("services.new-service", &Committed::Live)
        .unwrap()
        .is_empty());
}
