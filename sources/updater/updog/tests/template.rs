//! The shipped template of /etc/updog.toml (package `updater`), rendered the way
//! thar-be-settings renders it, must give a file that updog accepts and that carries the
//! update and proxy settings.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use updog::config::Config;

fn template() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../packages/updater/files/usr/share/templates/updog-toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

fn render(settings: Value) -> Config {
    let (path, text) = template();
    let rendered = schnauzer::render_template(
        &path.display().to_string(),
        &text,
        &json!({ "settings": settings }),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Config::parse(&rendered, Path::new(constants::UPDOG_CONFIG))
        .unwrap_or_else(|e| panic!("updog refuses the rendered file: {e}\n{rendered}"))
}

fn updates() -> Value {
    json!({
        "metadata-base-url": "https://updates.example.com/dev/x86_64/",
        "targets-base-url": "https://updates.example.com/targets/",
        "seed": 0,
        "version-lock": "v0.2.0",
        "ignore-waves": true
    })
}

#[test]
fn update_settings_reach_the_file() {
    let config = render(json!({ "updates": updates() }));
    assert_eq!(
        config.metadata_base_url.as_str(),
        "https://updates.example.com/dev/x86_64/"
    );
    assert_eq!(config.seed, 0, "a seed of 0 is a seed, not a missing one");
    assert_eq!(
        config
            .version_lock
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("0.2.0")
    );
    assert!(config.ignore_waves);
    assert!(config.proxy_env().is_empty(), "no proxy was set");
}

#[test]
fn the_proxy_settings_of_the_network_reach_the_file() {
    let config = render(json!({
        "updates": updates(),
        "network": {
            "hostname": "node-1",
            "http-proxy": "http://plain.example:3128",
            "https-proxy": "proxy.example:3129",
            "no-proxy": ["10.0.0.0/8", ".internal.example", "odd\"name"]
        }
    }));
    assert_eq!(
        config.proxy_env(),
        [
            ("HTTPS_PROXY", "http://proxy.example:3129".to_string()),
            (
                "NO_PROXY",
                "10.0.0.0/8,.internal.example,odd\"name".to_string()
            )
        ]
    );
}
