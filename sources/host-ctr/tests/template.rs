//! The contract between the renderer and host-ctr: the shipped `host-ctr-config` template,
//! rendered from settings the model accepts, is what `HostCtrConfig` reads.

use serde_json::json;
use std::path::Path;

fn render(settings: &serde_json::Value) -> String {
    models::parse_settings(settings).unwrap_or_else(|e| panic!("settings invalid: {e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packages/api/files/usr/share/templates/host-ctr-config");
    let text = std::fs::read_to_string(&path).unwrap();
    schnauzer::render_template(
        &path.display().to_string(),
        &text,
        &json!({"settings": settings, "os": {}}),
    )
    .unwrap()
}

#[test]
fn the_rendered_file_is_what_host_ctr_reads() {
    let settings = json!({
        "host-containers": {
            "admin": {"source": "10.0.2.103:5080/ballast/admin:v1", "enabled": true,
                      "superpowered": true, "user-data": "aGk="},
            "control": {"source": "registry.example/ballast/control:v1", "enabled": false},
            "bare": {"enabled": true},
        },
        "bootstrap-containers": {
            "setup": {"source": "10.0.2.103:5080/ballast/admin:v1", "mode": "once",
                      "essential": true, "user-data": "eA=="},
            "plain": {"mode": "always"},
            "unset": {},
        },
        "container-registry": {
            "mirrors": [{"registry": "10.0.2.103:5080", "endpoint": ["http://10.0.2.103:5080"]}],
            "credentials": [
                {"registry": "10.0.2.103:5080", "username": "bob", "password": "p\"w"},
                {"registry": "docker.io", "auth": "Ym9iOnB3"}
            ],
        },
    });
    let config = host_ctr::HostCtrConfig::parse(&render(&settings)).unwrap();
    let admin = config.container("admin").unwrap();
    assert_eq!(
        admin.source.as_deref(),
        Some("10.0.2.103:5080/ballast/admin:v1")
    );
    assert!(admin.enabled && admin.superpowered);
    assert_eq!(admin.user_data.as_deref(), Some("aGk="));
    let control = config.container("control").unwrap();
    assert!(!control.enabled && !control.superpowered);
    assert_eq!(config.container("bare").unwrap().source, None);
    assert_eq!(
        config.mirrors["10.0.2.103:5080"].endpoints,
        ["http://10.0.2.103:5080"]
    );
    assert_eq!(
        config.creds["10.0.2.103:5080"].password.as_deref(),
        Some("p\"w")
    );
    assert!(config.creds.contains_key("registry-1.docker.io"));
    use host_ctr::config::BootstrapMode;
    let setup = &config.bootstrap["setup"];
    assert_eq!(setup.mode, BootstrapMode::Once);
    assert!(setup.essential);
    assert_eq!(setup.user_data.as_deref(), Some("eA=="));
    assert_eq!(config.bootstrap["plain"].mode, BootstrapMode::Always);
    assert!(!config.bootstrap["plain"].essential);
    assert_eq!(config.bootstrap["unset"].mode, BootstrapMode::Off);

    // The shared defaults render to a file host-ctr reads too.
    let defaults = models::shared_defaults().settings;
    let config = host_ctr::HostCtrConfig::parse(&render(&defaults)).unwrap();
    assert!(!config.container("admin").unwrap().enabled);
}
