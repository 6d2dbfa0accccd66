//! The `journal-upload` package wires `settings.logs.remote` to systemd-journal-upload: its
//! defaults name the file and the restart, its template renders the uploader's configuration
//! (empty while no URL is set or shipping is disabled, which keeps the unit from starting:
//! see its drop-in).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../packages/journal-upload")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The package's defaults over the shared ones, as the build merges them.
fn defaults() -> models::Defaults {
    let own = models::Defaults::from_toml_str(&read(&package().join("defaults.toml")))
        .unwrap_or_else(|e| panic!("the package's defaults.toml is invalid: {e}"));
    let merged = models::shared_defaults().merge(own);
    merged.check_references().unwrap();
    merged
}

fn render(settings: &Value) -> String {
    models::parse_settings(settings).unwrap_or_else(|e| panic!("example settings invalid: {e}"));
    let path = package().join("files/usr/share/templates/journal-upload-conf");
    schnauzer::render_template(
        &path.display().to_string(),
        &read(&path),
        &json!({ "settings": settings }),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_url_setting_renders_the_uploader_file_and_restarts_it() {
    let defaults = defaults();
    for key in [
        constants::LOGS_REMOTE_URL_KEY,
        "settings.logs.remote.enabled",
    ] {
        let services = models::affected_services(&defaults.metadata, key);
        assert_eq!(
            services.into_iter().collect::<Vec<_>>(),
            ["journal-upload"],
            "{key}"
        );
    }
    let service = &defaults.services["journal-upload"];
    let file = &defaults.configuration_files[&service.configuration_files[0]];
    assert_eq!(file.path, constants::JOURNAL_UPLOAD_CONF);
    assert!(
        file.template_path.ends_with("/journal-upload-conf"),
        "{}",
        file.template_path
    );
    // No shell on `node`: the command is a program and its words, and it does not wait for
    // the unit (which is ordered after configured.target, while the boot's render is before).
    assert_eq!(
        service.restart_commands,
        [format!(
            "/usr/bin/systemctl --no-block restart {}",
            constants::JOURNAL_UPLOAD_UNIT
        )]
    );
    // Nothing ships by default.
    assert!(
        defaults.settings.get("logs").is_none(),
        "{}",
        defaults.settings
    );
}

#[test]
fn a_url_gives_the_upload_section_and_no_url_an_empty_file() {
    let text = render(&json!({"logs": {"remote": {"url": "http://10.0.2.102:19532"}}}));
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines, ["[Upload]", "URL=http://10.0.2.102:19532"], "{text}");
    let enabled =
        render(&json!({"logs": {"remote": {"url": "http://logs.example.com", "enabled": true}}}));
    assert!(
        enabled.ends_with("\n[Upload]\nURL=http://logs.example.com\n"),
        "{enabled}"
    );
    for unset in [
        json!({}),
        json!({"logs": {}}),
        json!({"logs": {"remote": {}}}),
        json!({"logs": {"remote": {"url": null}}}),
        json!({"logs": {"remote": {"enabled": true}}}),
        json!({"logs": {"remote": {"url": "http://10.0.2.102:19532", "enabled": false}}}),
    ] {
        assert_eq!(render(&unset), "", "for {unset}");
    }
    assert_eq!(render(&models::shared_defaults().settings), "");
}

/// The unit starts only with a non-empty file: the drop-in's condition names the rendered
/// path, and the package enables the unit it keeps from Debian.
#[test]
fn the_unit_waits_for_a_rendered_url() {
    let drop_in = read(&package().join(format!(
        "files/usr/lib/systemd/system/{}.d/ballast.conf",
        constants::JOURNAL_UPLOAD_UNIT
    )));
    assert!(
        drop_in.contains(&format!(
            "\nConditionFileNotEmpty={}\n",
            constants::JOURNAL_UPLOAD_CONF
        )),
        "{drop_in}"
    );
    assert!(drop_in.contains("\nAfter=configured.target\n"), "{drop_in}");
    let package: toml::Table = toml::from_str(&read(&package().join("package.toml"))).unwrap();
    assert_eq!(
        package["systemd"]["enable"].as_array().unwrap()[0].as_str(),
        Some(constants::JOURNAL_UPLOAD_UNIT)
    );
    let keep = package["debian"]["keep"].as_array().unwrap();
    assert!(keep.iter().any(|k| k.as_str()
        == Some(&format!(
            "usr/lib/systemd/system/{}",
            constants::JOURNAL_UPLOAD_UNIT
        ))));
}
