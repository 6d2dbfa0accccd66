//! Default settings and the metadata that ties settings to services and files.
//!
//! A defaults document is TOML in Bottlerocket's shape, with four top-level tables, all optional:
//!
//! ```toml
//! [settings]                      # default values, checked like any settings document
//! motd = "Welcome to Ballast!"
//!
//! [metadata.settings.motd]        # metadata attached to the key settings.motd
//! affected-services = ["motd"]
//!
//! [metadata.settings.updates.seed]
//! setting-generator = "bork seed"
//!
//! [services.motd]                 # what to render and run when an affected setting changes
//! configuration-files = ["motd"]
//! restart-commands = []
//!
//! [configuration-files.motd]      # one rendered file
//! path = "/etc/motd"
//! template-path = "/usr/share/templates/motd"
//! mode = "0644"                   # optional
//! ```
//!
//! # How metadata tables are read
//!
//! Under `[metadata]`, the table path spells the data key and the entries of the innermost table
//! are the metadata. Going through a table's entries:
//! * an entry named after a known metadata kind ([`METADATA_NAMES`]: `affected-services`,
//!   `setting-generator`, `template`) is a metadata value for the key spelled so far, whatever its
//!   TOML type (`setting-generator` may be a string or a table);
//! * any other entry whose value is a table is one more level of the data key;
//! * any other entry is refused as an unknown metadata name (this catches typos such as
//!   `affected-service`).
//!
//! So `[metadata.settings.network] affected-services = [..]` and
//! `[metadata.settings.network.hostname] affected-services = [..]` may sit side by side. The
//! consequence of the rule is that a data key segment named like a metadata kind cannot carry
//! metadata. Data keys are joined with the quoting rules of [`crate::key`], so
//! `[metadata.settings.kernel.sysctl."net.ipv4.ip_forward"]` gives
//! `settings.kernel.sysctl."net.ipv4.ip_forward"`.
//!
//! # Merging
//!
//! Files are merged in order with [`Defaults::merge`], later wins: settings are merged deeply
//! (objects key by key; lists and scalars replaced whole), metadata per data key and metadata
//! name, and services and configuration files per entry (a later file that mentions a service
//! defines it completely).

use crate::error::{self, DefaultsError, ValidationError};
use crate::key;
use crate::model::{ConfigurationFile, Service};
use crate::settings::Settings;
use crate::validate::{deserialize_at, parse_settings};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet};

/// Metadata kinds understood in `[metadata...]` tables.
pub const METADATA_NAMES: &[&str] = &[AFFECTED_SERVICES, SETTING_GENERATOR, TEMPLATE];

/// Metadata: services to re-render and restart when the key (or anything under it) changes.
pub const AFFECTED_SERVICES: &str = "affected-services";
/// Metadata: command whose output fills the key when it has no value after defaults and user data.
pub const SETTING_GENERATOR: &str = "setting-generator";
/// Metadata: template for the key's value.
pub const TEMPLATE: &str = "template";

/// Metadata by dotted data key (e.g. `settings.ntp`), then by metadata name.
pub type Metadata = BTreeMap<String, BTreeMap<String, Value>>;

/// One defaults document, or several merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Default settings: the JSON object under `settings`, already checked.
    pub settings: Value,
    /// Metadata by dotted data key, then metadata name.
    pub metadata: Metadata,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Configuration files by name.
    pub configuration_files: BTreeMap<String, ConfigurationFile>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            settings: Value::Object(Map::new()),
            metadata: Metadata::new(),
            services: BTreeMap::new(),
            configuration_files: BTreeMap::new(),
        }
    }
}

impl Defaults {
    /// Reads and checks one defaults document. Settings must pass [`parse_settings`]; services
    /// and configuration files must have known fields only; names of services and files must be
    /// plain (letters, digits, `-`, `_`); paths and restart-command programs must be absolute;
    /// `mode` must be 3 or 4 octal digits. References between services and files are checked by
    /// [`Defaults::check_references`], since they may span files.
    pub fn from_toml_str(text: &str) -> Result<Defaults, DefaultsError> {
        let document: toml::Table = toml::from_str(text).context(error::TomlSnafu)?;
        let mut defaults = Defaults::default();
        for (name, value) in document {
            let value = toml_to_json(value, &name)?;
            let Value::Object(table) = value else {
                return error::NotATableSnafu { key: name }.fail();
            };
            match name.as_str() {
                "settings" => {
                    let value = Value::Object(table);
                    parse_settings(&value).context(error::SettingsSnafu)?;
                    defaults.settings = value;
                }
                "metadata" => {
                    collect_metadata(&table, &mut Vec::new(), &mut defaults.metadata)?;
                }
                "services" => {
                    defaults.services = entries(table, "services")?;
                    for (name, service) in &defaults.services {
                        check_service(name, service)?;
                    }
                }
                "configuration-files" => {
                    defaults.configuration_files = entries(table, "configuration-files")?;
                    for (name, file) in &defaults.configuration_files {
                        check_configuration_file(name, file)?;
                    }
                }
                _ => return error::UnknownTableSnafu { name }.fail(),
            }
        }
        Ok(defaults)
    }

    /// Merges `later` over `self`; see the module documentation for the rules.
    pub fn merge(mut self, later: Defaults) -> Defaults {
        merge_json(&mut self.settings, later.settings);
        for (data_key, entries) in later.metadata {
            self.metadata.entry(data_key).or_default().extend(entries);
        }
        self.services.extend(later.services);
        self.configuration_files.extend(later.configuration_files);
        self
    }

    /// The default settings as typed [`Settings`].
    pub fn parsed_settings(&self) -> Result<Settings, ValidationError> {
        parse_settings(&self.settings)
    }

    /// Checks that every configuration file named by a service is defined, and that every
    /// service named in `affected-services` metadata is defined. Run it on the merged result.
    pub fn check_references(&self) -> Result<(), DefaultsError> {
        for (name, service) in &self.services {
            for file in &service.configuration_files {
                ensure!(
                    self.configuration_files.contains_key(file),
                    error::InvalidEntrySnafu {
                        key: key::join(["services", name, "configuration-files"]),
                        reason: format!("configuration file '{file}' is not defined"),
                    }
                );
            }
        }
        for (data_key, entries) in &self.metadata {
            for service in string_list(entries.get(AFFECTED_SERVICES)) {
                ensure!(
                    self.services.contains_key(service),
                    error::InvalidEntrySnafu {
                        key: format!("metadata.{data_key}.{AFFECTED_SERVICES}"),
                        reason: format!("service '{service}' is not defined"),
                    }
                );
            }
        }
        Ok(())
    }
}

/// The services affected by a change to `key`: the `affected-services` metadata of the key and
/// of each of its parents, matched segment by segment (`settings.ntp.time-servers` collects
/// `settings`, `settings.ntp` and `settings.ntp.time-servers`, never `settings.ntpx`). A key that
/// cannot be split (see [`key::split`]) affects nothing. Metadata set on keys *below* `key` is not
/// included; pass the changed leaf keys.
pub fn affected_services(metadata: &Metadata, key: &str) -> BTreeSet<String> {
    let Ok(segments) = key::split(key) else {
        return BTreeSet::new();
    };
    let mut services = BTreeSet::new();
    let mut prefix = String::new();
    for segment in &segments {
        key::push_segment(&mut prefix, segment);
        if let Some(entries) = metadata.get(&prefix) {
            services.extend(string_list(entries.get(AFFECTED_SERVICES)).map(str::to_string));
        }
    }
    services
}

/// The strings of a JSON list, skipping anything else.
fn string_list(value: Option<&Value>) -> impl Iterator<Item = &str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Later wins; objects are merged key by key, everything else is replaced.
fn merge_json(base: &mut Value, later: Value) {
    match (base, later) {
        (Value::Object(base), Value::Object(later)) => {
            for (name, value) in later {
                match base.get_mut(&name) {
                    Some(existing) => merge_json(existing, value),
                    None => {
                        base.insert(name, value);
                    }
                }
            }
        }
        (base, later) => *base = later,
    }
}

/// Converts TOML to JSON, refusing what JSON cannot carry.
fn toml_to_json(value: toml::Value, at: &str) -> Result<Value, DefaultsError> {
    let invalid = |reason: &str| DefaultsError::InvalidEntry {
        key: at.to_string(),
        reason: reason.to_string(),
    };
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| invalid("infinite and NaN numbers are not supported"))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(_) => {
            return Err(invalid("TOML dates are not supported; use a string"))
        }
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => {
            let mut map = Map::new();
            for (name, item) in table {
                let mut child = at.to_string();
                key::push_segment(&mut child, &name);
                map.insert(name, toml_to_json(item, &child)?);
            }
            Value::Object(map)
        }
    })
}

/// Walks `[metadata...]`; see the module documentation for the rule.
fn collect_metadata(
    table: &Map<String, Value>,
    path: &mut Vec<String>,
    out: &mut Metadata,
) -> Result<(), DefaultsError> {
    for (name, value) in table {
        if METADATA_NAMES.contains(&name.as_str()) {
            let data_key = key::join(path.iter());
            let entry_key = format!("metadata.{}", key::join(path.iter().chain([name])));
            ensure!(
                !path.is_empty(),
                error::InvalidEntrySnafu {
                    key: entry_key,
                    reason:
                        "metadata must name the key it describes, as in [metadata.settings.motd]",
                }
            );
            check_metadata_value(name, value).map_err(|reason| DefaultsError::InvalidEntry {
                key: entry_key,
                reason,
            })?;
            out.entry(data_key)
                .or_default()
                .insert(name.clone(), value.clone());
        } else if let Value::Object(inner) = value {
            path.push(name.clone());
            collect_metadata(inner, path, out)?;
            path.pop();
        } else {
            return error::InvalidEntrySnafu {
                key: format!("metadata.{}", key::join(path.iter().chain([name]))),
                reason: format!(
                    "'{name}' is not a known metadata name ({}) and its value is not a table",
                    METADATA_NAMES.join(", ")
                ),
            }
            .fail();
        }
    }
    Ok(())
}

fn check_metadata_value(name: &str, value: &Value) -> Result<(), String> {
    match name {
        AFFECTED_SERVICES => match value.as_array() {
            Some(items)
                if items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Ok(())
            }
            _ => Err("must be a list of service names".to_string()),
        },
        SETTING_GENERATOR => match value {
            Value::String(s) if !s.trim().is_empty() => Ok(()),
            Value::Object(_) => Ok(()),
            _ => Err("must be a command string or a table".to_string()),
        },
        TEMPLATE => match value {
            Value::String(_) => Ok(()),
            _ => Err("must be a string".to_string()),
        },
        _ => Ok(()),
    }
}

/// Deserializes a table of named entries, naming the offending key on failure.
fn entries<T: DeserializeOwned>(
    table: Map<String, Value>,
    prefix: &str,
) -> Result<BTreeMap<String, T>, DefaultsError> {
    deserialize_at(&Value::Object(table), prefix).map_err(|e| DefaultsError::InvalidEntry {
        key: e.key,
        reason: e.reason,
    })
}

fn check_name(kind: &str, name: &str) -> Result<(), DefaultsError> {
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        error::InvalidEntrySnafu {
            key: key::join([kind, name]),
            reason: "names may only use letters, digits, '-' and '_'",
        }
    );
    Ok(())
}

fn check_service(name: &str, service: &Service) -> Result<(), DefaultsError> {
    check_name("services", name)?;
    for (index, command) in service.restart_commands.iter().enumerate() {
        ensure!(
            command.starts_with('/'),
            error::InvalidEntrySnafu {
                key: format!(
                    "{}[{index}]",
                    key::join(["services", name, "restart-commands"])
                ),
                reason: format!("'{command}' must start with the absolute path of a program"),
            }
        );
    }
    Ok(())
}

fn check_configuration_file(name: &str, file: &ConfigurationFile) -> Result<(), DefaultsError> {
    check_name("configuration-files", name)?;
    for (field, path) in [("path", &file.path), ("template-path", &file.template_path)] {
        ensure!(
            path.starts_with('/') && !path.split('/').any(|s| s == ".."),
            error::InvalidEntrySnafu {
                key: key::join(["configuration-files", name, field]),
                reason: format!("'{path}' must be an absolute path without '..'"),
            }
        );
    }
    if let Some(mode) = &file.mode {
        ensure!(
            (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b)),
            error::InvalidEntrySnafu {
                key: key::join(["configuration-files", name, "mode"]),
                reason: format!("'{mode}' must be 3 or 4 octal digits, such as 0644"),
            }
        );
    }
    Ok(())
}

/// The shared defaults files, in the order they are merged (file name order).
const SHARED_DEFAULTS_FILES: &[(&str, &str)] = &[
    ("10-host.toml", include_str!("../defaults.d/10-host.toml")),
    (
        "20-updates.toml",
        include_str!("../defaults.d/20-updates.toml"),
    ),
    (
        "30-containers.toml",
        include_str!("../defaults.d/30-containers.toml"),
    ),
];

/// The defaults every variant starts from: the files of `sources/models/defaults.d/`, embedded
/// at build time and merged in file name order. A variant merges its own files over these.
///
/// The embedded files are checked by this crate's tests, so this does not fail in practice; a
/// broken file would panic here with its name and the reason.
pub fn shared_defaults() -> Defaults {
    SHARED_DEFAULTS_FILES
        .iter()
        .map(|(name, text)| {
            Defaults::from_toml_str(text)
                .unwrap_or_else(|e| panic!("embedded defaults file {name} is invalid: {e}"))
        })
        .fold(Defaults::default(), Defaults::merge)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_all_tables() {
        let defaults = Defaults::from_toml_str(
            r#"
            [settings]
            motd = "hi"
            [settings.kernel.sysctl]
            "net.ipv4.ip_forward" = "1"

            [metadata.settings.motd]
            affected-services = ["motd"]
            [metadata.settings.network]
            affected-services = ["containerd"]
            [metadata.settings.network.hostname]
            affected-services = ["hostname"]
            setting-generator = "netdog generate-hostname"
            [metadata.settings.kernel.sysctl."net.ipv4.ip_forward"]
            template = "1"
            [metadata.settings.updates.seed.setting-generator]
            command = "bork seed"
            strength = "weak"

            [services.motd]
            configuration-files = ["motd"]
            restart-commands = []

            [configuration-files.motd]
            path = "/etc/motd"
            template-path = "/usr/share/templates/motd"
            mode = "0644"
            "#,
        )
        .unwrap();
        assert_eq!(
            defaults.settings,
            json!({"motd": "hi", "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}})
        );
        let keys: Vec<&str> = defaults.metadata.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                r#"settings.kernel.sysctl."net.ipv4.ip_forward""#,
                "settings.motd",
                "settings.network",
                "settings.network.hostname",
                "settings.updates.seed",
            ]
        );
        assert_eq!(
            defaults.metadata["settings.network.hostname"][SETTING_GENERATOR],
            json!("netdog generate-hostname")
        );
        assert_eq!(
            defaults.metadata["settings.updates.seed"][SETTING_GENERATOR],
            json!({"command": "bork seed", "strength": "weak"})
        );
        assert_eq!(
            defaults.services["motd"],
            Service {
                configuration_files: vec!["motd".into()],
                restart_commands: vec![],
            }
        );
        assert_eq!(
            defaults.configuration_files["motd"].mode.as_deref(),
            Some("0644")
        );
        defaults.check_references().unwrap_err();
    }

    #[test]
    fn empty_document_is_empty_defaults() {
        assert_eq!(Defaults::from_toml_str("").unwrap(), Defaults::default());
    }

    fn refusal(text: &str) -> String {
        Defaults::from_toml_str(text)
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            ("[settings\n", "not valid TOML"),
            ("[unknown]\na = 1\n", "unknown top-level table 'unknown'"),
            ("settings = 1\n", "'settings' must be a table"),
            (
                "[settings.network]\nhostname = \"Bad_Host\"\n",
                "settings.network.hostname: 'Bad_Host' is not a valid hostname",
            ),
            ("[settings]\nmotdd = \"x\"\n", "settings.motdd: unknown field `motdd`"),
            ("[settings]\nmotd = 1979-05-27\n", "settings.motd' is invalid: TOML dates"),
            (
                "[metadata.settings.motd]\naffected-service = [\"motd\"]\n",
                "'metadata.settings.motd.affected-service' is invalid: 'affected-service' is not a known metadata name",
            ),
            (
                "[metadata.settings.motd]\naffected-services = \"motd\"\n",
                "must be a list of service names",
            ),
            ("[metadata.settings.motd]\ntemplate = 1\n", "must be a string"),
            ("[metadata]\naffected-services = [\"x\"]\n", "must name the key it describes"),
            (
                "[services.motd]\nconfiguration-file = [\"motd\"]\n",
                "'services.motd.configuration-file' is invalid: unknown field",
            ),
            (
                "[services.motd]\nrestart-commands = [\"systemctl restart x\"]\n",
                "'services.motd.restart-commands[0]' is invalid",
            ),
            ("[services.\"a b\"]\n", "'services.\"a b\"' is invalid: names may only use"),
            (
                "[services]\nmotd = [[\"motd\"], []]\n",
                "'services.motd' is invalid: invalid type: sequence, expected struct Service",
            ),
            (
                "[configuration-files.motd]\npath = \"/etc/motd\"\n",
                "'configuration-files.motd' is invalid: missing field `template-path`",
            ),
            (
                "[configuration-files.motd]\npath = \"etc/motd\"\ntemplate-path = \"/t\"\n",
                "'configuration-files.motd.path' is invalid",
            ),
            (
                "[configuration-files.motd]\npath = \"/etc/../motd\"\ntemplate-path = \"/t\"\n",
                "'configuration-files.motd.path' is invalid",
            ),
            (
                "[configuration-files.motd]\npath = \"/etc/motd\"\ntemplate-path = \"/t\"\nmode = \"644x\"\n",
                "'configuration-files.motd.mode' is invalid",
            ),
        ];
        for (text, expected) in cases {
            let message = refusal(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn merge_is_deep_and_later_wins() {
        let first = Defaults::from_toml_str(
            r#"
            [settings]
            motd = "first"
            [settings.ntp]
            time-servers = ["a.example", "b.example"]
            [settings.kernel.sysctl]
            "vm.a" = "1"
            "vm.b" = "1"
            [metadata.settings.ntp]
            affected-services = ["timesyncd"]
            template = "t"
            [services.timesyncd]
            configuration-files = ["timesyncd"]
            restart-commands = ["/usr/bin/true"]
            [configuration-files.timesyncd]
            path = "/etc/a"
            template-path = "/t/a"
            "#,
        )
        .unwrap();
        let later = Defaults::from_toml_str(
            r#"
            [settings.ntp]
            time-servers = ["c.example"]
            [settings.kernel.sysctl]
            "vm.b" = "2"
            [metadata.settings.ntp]
            affected-services = ["chronyd"]
            [services.timesyncd]
            configuration-files = []
            "#,
        )
        .unwrap();
        let merged = first.merge(later);
        assert_eq!(
            merged.settings,
            json!({
                "motd": "first",
                "ntp": {"time-servers": ["c.example"]},
                "kernel": {"sysctl": {"vm.a": "1", "vm.b": "2"}}
            })
        );
        assert_eq!(
            merged.metadata["settings.ntp"][AFFECTED_SERVICES],
            json!(["chronyd"])
        );
        assert_eq!(merged.metadata["settings.ntp"][TEMPLATE], json!("t"));
        assert_eq!(merged.services["timesyncd"], Service::default());
        assert_eq!(merged.configuration_files["timesyncd"].path, "/etc/a");
        merged.parsed_settings().unwrap();
    }

    #[test]
    fn affected_services_follow_prefixes_segment_by_segment() {
        let mut metadata = Metadata::new();
        let mut add = |key: &str, services: &[&str]| {
            metadata
                .entry(key.to_string())
                .or_default()
                .insert(AFFECTED_SERVICES.to_string(), json!(services));
        };
        add("settings.ntp", &["timesyncd"]);
        add("settings.ntp.time-servers", &["time-check"]);
        add("settings.ntpx", &["wrong"]);
        add("settings.network", &["containerd"]);
        add("settings.network.hostname", &["hostname"]);
        add(
            r#"settings.kernel.sysctl."net.ipv4.ip_forward""#,
            &["forwarding"],
        );
        add("settings.kernel", &["kernel"]);
        metadata
            .entry("settings.motd".to_string())
            .or_default()
            .insert(TEMPLATE.to_string(), json!("x"));

        let set =
            |key: &str| -> Vec<String> { affected_services(&metadata, key).into_iter().collect() };
        assert_eq!(
            set("settings.ntp.time-servers"),
            ["time-check", "timesyncd"]
        );
        assert_eq!(set("settings.ntp"), ["timesyncd"]);
        assert!(set("settings").is_empty());
        assert!(set("settings.nt").is_empty());
        assert_eq!(set("settings.network.hostname"), ["containerd", "hostname"]);
        assert_eq!(
            set(r#"settings.kernel.sysctl."net.ipv4.ip_forward""#),
            ["forwarding", "kernel"]
        );
        assert_eq!(set("settings.kernel.sysctl.net"), ["kernel"]);
        assert!(set("settings.motd").is_empty());
        assert!(set("settings..ntp").is_empty());
    }

    #[test]
    fn shared_defaults_are_valid_and_consistent() {
        let defaults = shared_defaults();
        let settings = defaults.parsed_settings().unwrap();
        assert_eq!(settings.motd.as_deref(), Some("Welcome to Ballast!"));
        assert_eq!(settings.timezone.as_deref(), Some("Etc/UTC"));
        let updates = settings.updates.unwrap();
        assert_eq!(updates.version_lock.as_deref(), Some("latest"));
        assert_eq!(updates.ignore_waves, Some(false));
        assert_eq!(updates.seed, None, "the seed is generated, not defaulted");
        assert_eq!(
            defaults.metadata["settings.updates.seed"][SETTING_GENERATOR],
            json!("bork seed")
        );
        defaults.check_references().unwrap();
        for (name, service) in &defaults.services {
            for file in &service.configuration_files {
                assert!(
                    defaults.configuration_files.contains_key(file),
                    "service {name} names missing file {file}"
                );
            }
        }
        for (name, file) in &defaults.configuration_files {
            assert_eq!(file.template_path, format!("/usr/share/templates/{name}"));
        }
        assert_eq!(
            affected_services(&defaults.metadata, "settings.ntp.time-servers"),
            BTreeSet::from(["timesyncd".to_string()])
        );
        assert_eq!(
            affected_services(&defaults.metadata, "settings.network.hostname"),
            BTreeSet::from(["hostname".to_string()])
        );
        assert!(
            affected_services(&defaults.metadata, "settings.network.https-proxy")
                .contains("containerd")
        );
    }

    #[test]
    fn every_embedded_file_parses_alone() {
        for (name, text) in SHARED_DEFAULTS_FILES {
            Defaults::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn embedded_list_matches_defaults_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("defaults.d");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = SHARED_DEFAULTS_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            on_disk, embedded,
            "list every defaults.d file in SHARED_DEFAULTS_FILES, in name order"
        );
    }
}
