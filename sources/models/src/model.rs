//! The whole API tree: settings plus the service and file bookkeeping that drives config rendering.

use crate::os::OsInfo;
use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Everything the API server holds. `settings` is user-facing; `services` and
/// `configuration-files` come from defaults and tell the config renderer what to write and what
/// to restart; `os` describes the running image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Model {
    /// Settings tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// Services by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, Service>>,
    /// Rendered configuration files by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_files: Option<BTreeMap<String, ConfigurationFile>>,
    /// Running OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
}

/// A service affected by settings: after a change, its configuration files are re-rendered and
/// then its restart commands run, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Service {
    /// Names of entries in `configuration-files`.
    #[serde(default)]
    pub configuration_files: Vec<String>,
    /// Commands run after rendering, each an absolute program path followed by arguments.
    #[serde(default)]
    pub restart_commands: Vec<String>,
}

/// A file rendered from a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigurationFile {
    /// Absolute path of the rendered file.
    pub path: String,
    /// Absolute path of the template.
    pub template_path: String,
    /// Octal permission bits such as `0644`; the renderer's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}
