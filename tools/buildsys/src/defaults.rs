//! The settings defaults file installed for storewolf: the shared defaults of
//! `sources/models/defaults.d/`, then each package's own `defaults.toml` (in the variant's
//! package order: a package that brings a service can bring its settings, metadata, service
//! and file definitions), then the variant's files; merged and checked with the model.

use crate::error::{DefaultsSnafu, IoSnafu, Result};
use snafu::ResultExt;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The shared defaults directory, relative to the repository root.
pub const SHARED_DEFAULTS_DIR: &str = "sources/models/defaults.d";
/// Where the merged file goes inside the image.
pub const DEFAULTS_IMAGE_PATH: &str = constants::DEFAULTS_IN_IMAGE;

/// The shared defaults files in merge order (file name order).
pub fn shared_defaults_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(SHARED_DEFAULTS_DIR);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).context(IoSnafu {
        action: "list",
        path: &dir,
    })? {
        let path = entry
            .context(IoSnafu {
                action: "list",
                path: &dir,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Name of the optional defaults file in a package directory.
pub const PACKAGE_DEFAULTS_FILE: &str = "defaults.toml";

/// The `defaults.toml` of each package directory in `package_dirs` that has one, in order.
pub fn package_defaults_files(package_dirs: &[&Path]) -> Vec<PathBuf> {
    package_dirs
        .iter()
        .map(|dir| dir.join(PACKAGE_DEFAULTS_FILE))
        .filter(|path| path.is_file())
        .collect()
}

/// Merges `files` in order (later wins) with the rules of `models::Defaults::merge`: settings
/// deeply, metadata per data key and metadata name, services and configuration files per entry.
/// The result is checked with the model (settings types, metadata names, references between
/// services and files) and returned as TOML text with a header naming the inputs (as given in
/// `shown_names`, so no absolute build paths end up in the image).
pub fn merge_defaults(files: &[PathBuf], shown_names: &[String]) -> Result<String> {
    let mut merged = Table::new();
    for path in files {
        let text = std::fs::read_to_string(path).context(IoSnafu {
            action: "read",
            path,
        })?;
        // Check each file alone first, so that an error names the file at fault.
        models::Defaults::from_toml_str(&text).map_err(|e| {
            DefaultsSnafu {
                path,
                message: e.to_string(),
            }
            .build()
        })?;
        let table: Table = toml::from_str(&text).map_err(|e| {
            DefaultsSnafu {
                path,
                message: e.to_string(),
            }
            .build()
        })?;
        merge_document(&mut merged, table);
    }
    let body = toml::to_string_pretty(&merged).map_err(|e| {
        DefaultsSnafu {
            path: PathBuf::from("(merged)"),
            message: e.to_string(),
        }
        .build()
    })?;
    let parsed = models::Defaults::from_toml_str(&body).map_err(|e| {
        DefaultsSnafu {
            path: PathBuf::from("(merged)"),
            message: e.to_string(),
        }
        .build()
    })?;
    parsed.check_references().map_err(|e| {
        DefaultsSnafu {
            path: PathBuf::from("(merged)"),
            message: e.to_string(),
        }
        .build()
    })?;
    let mut text = String::from(
        "# Settings defaults of this image, read by storewolf at boot. Generated at build time by\n\
         # merging, in this order (later wins):\n",
    );
    for name in shown_names {
        text.push_str(&format!("#   {name}\n"));
    }
    text.push('\n');
    text.push_str(&body);
    Ok(text)
}

fn merge_document(into: &mut Table, later: Table) {
    for (name, value) in later {
        match (name.as_str(), value) {
            ("services" | "configuration-files", Value::Table(entries)) => {
                let slot = into
                    .entry(name.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(existing) = slot {
                    // A later file that names an entry defines it completely.
                    existing.extend(entries);
                } else {
                    *slot = Value::Table(entries);
                }
            }
            ("metadata", Value::Table(entries)) => {
                let slot = into
                    .entry(name.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                merge_metadata(slot, Value::Table(entries));
            }
            (_, value) => merge_deep(
                into.entry(name.clone())
                    .or_insert_with(|| Value::Table(Table::new())),
                value,
            ),
        }
    }
}

/// Tables merge key by key; anything else replaces.
fn merge_deep(into: &mut Value, later: Value) {
    match (into, later) {
        (Value::Table(existing), Value::Table(later)) => {
            for (key, value) in later {
                match existing.get_mut(&key) {
                    Some(slot) => merge_deep(slot, value),
                    None => {
                        existing.insert(key, value);
                    }
                }
            }
        }
        (slot, later) => *slot = later,
    }
}

/// Like [`merge_deep`], except that a metadata value (an entry named like a metadata kind)
/// replaces the earlier one whole, even when it is a table.
fn merge_metadata(into: &mut Value, later: Value) {
    match (into, later) {
        (Value::Table(existing), Value::Table(later)) => {
            for (key, value) in later {
                let is_metadata = models::defaults::METADATA_NAMES.contains(&key.as_str());
                match existing.get_mut(&key) {
                    Some(slot) if !is_metadata => merge_metadata(slot, value),
                    _ => {
                        existing.insert(key, value);
                    }
                }
            }
        }
        (slot, later) => *slot = later,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_defaults_come_in_package_order() {
        let temp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            temp.path().join("a"),
            temp.path().join("b"),
            temp.path().join("c"),
        );
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::write(c.join(PACKAGE_DEFAULTS_FILE), "[settings]\nmotd = \"c\"\n").unwrap();
        std::fs::write(a.join(PACKAGE_DEFAULTS_FILE), "[settings]\nmotd = \"a\"\n").unwrap();
        let files = package_defaults_files(&[&c, &b, &a]);
        assert_eq!(
            files,
            vec![c.join(PACKAGE_DEFAULTS_FILE), a.join(PACKAGE_DEFAULTS_FILE)]
        );
        let merged = merge_defaults(&files, &["c".into(), "a".into()]).unwrap();
        assert!(merged.contains("motd = \"a\""), "{merged}");
    }

    #[test]
    fn merges_like_the_model() {
        let temp = tempfile::tempdir().unwrap();
        let a = temp.path().join("a.toml");
        let b = temp.path().join("b.toml");
        std::fs::write(
            &a,
            r#"
            [settings]
            motd = "a"
            [settings.ntp]
            time-servers = ["a", "b"]
            [metadata.settings.motd]
            affected-services = ["motd"]
            [metadata.settings.updates.seed.setting-generator]
            command = "bork seed"
            strength = "weak"
            [services.motd]
            configuration-files = ["motd"]
            restart-commands = ["/usr/bin/true"]
            [configuration-files.motd]
            path = "/etc/motd"
            template-path = "/usr/share/templates/motd"
            "#,
        )
        .unwrap();
        std::fs::write(
            &b,
            r#"
            [settings]
            timezone = "Europe/Paris"
            [settings.ntp]
            time-servers = ["c"]
            [metadata.settings.updates.seed]
            setting-generator = "bork seed --strong"
            [services.motd]
            configuration-files = ["motd"]
            "#,
        )
        .unwrap();
        let text = merge_defaults(&[a, b], &["a.toml".into(), "b.toml".into()]).unwrap();
        assert!(text.starts_with("# Settings defaults"));
        assert!(text.contains("#   b.toml"));
        let table: Table = toml::from_str(&text).unwrap();
        assert_eq!(table["settings"]["motd"].as_str(), Some("a"));
        assert_eq!(table["settings"]["timezone"].as_str(), Some("Europe/Paris"));
        assert_eq!(
            table["settings"]["ntp"]["time-servers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            table["metadata"]["settings"]["updates"]["seed"]["setting-generator"].as_str(),
            Some("bork seed --strong")
        );
        // The later service definition replaced the earlier one whole.
        assert!(table["services"]["motd"].get("restart-commands").is_none());
        let parsed = models::Defaults::from_toml_str(&text).unwrap();
        assert_eq!(parsed.services.len(), 1);
    }

    #[test]
    fn reports_the_bad_file() {
        let temp = tempfile::tempdir().unwrap();
        let bad = temp.path().join("bad.toml");
        std::fs::write(&bad, "[settings]\nno-such-setting = 1\n").unwrap();
        let error = merge_defaults(&[bad], &["bad.toml".into()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("bad.toml"), "{error}");
    }

    /// The test package of the rename demo points resolv.conf at its own template, which must
    /// win over the shared definition and exist in the package.
    #[test]
    fn a_package_replaces_a_shared_configuration_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let package = root.join(crate::PACKAGES_DIR).join("test-next-dns-names");
        let mut files = shared_defaults_files(&root).unwrap();
        files.extend(package_defaults_files(&[&package]));
        let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let table: Table = toml::from_str(&merge_defaults(&files, &shown).unwrap()).unwrap();
        let file = &table["configuration-files"]["resolv-conf"];
        let template = file["template-path"].as_str().unwrap();
        assert_eq!(template, "/usr/share/templates/resolv-conf-next");
        assert_eq!(file["path"].as_str(), Some("/etc/resolv.conf"));
        assert!(
            package
                .join(crate::package::FILES_DIR)
                .join(template.trim_start_matches('/'))
                .is_file(),
            "{template} is not in the package"
        );
        // The other shared entries stay.
        assert_eq!(
            table["configuration-files"]["motd"]["template-path"].as_str(),
            Some("/usr/share/templates/motd")
        );
    }
}
