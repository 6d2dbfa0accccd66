//! The dry-run preview: what committing a transaction would do. thar-be-settings produces it
//! (`thar-be-settings --dry-run --tx NAME` prints it), the API server answers `POST
//! /tx/dry-run` with it unchanged, and `apiclient` prints it for people. Ballast's own route.
//!
//! Field names are kebab-case, like the settings. Every field may be missing when read, so an
//! older client still prints what it understands from a newer server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One setting that would change; `old` and `new` are the values (null when unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct Change {
    pub key: String,
    #[serde(default)]
    pub old: Value,
    #[serde(default)]
    pub new: Value,
}

/// One affected service and whether it would restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct ServicePlan {
    pub name: String,
    #[serde(default)]
    pub restart_commands: Vec<String>,
    #[serde(default)]
    pub would_restart: bool,
}

/// One configuration file whose content would change, with a unified diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct FilePlan {
    pub path: String,
    /// The service the file belongs to.
    #[serde(default)]
    pub service: String,
    pub diff: String,
}

/// The dry-run document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case", default)]
pub struct Preview {
    pub changes: Vec<Change>,
    pub services: Vec<ServicePlan>,
    pub files: Vec<FilePlan>,
}
