//! The rendered configuration `host-ctr` reads ([`constants::HOST_CTR_CONFIG`]): the host
//! containers of `settings.host-containers` and the mirrors and credentials of
//! `settings.container-registry`. The template in `packages/api` writes it; this is its reader.

use crate::error::{self, Result};
use serde::Deserialize;
use snafu::{OptionExt, ResultExt};
use std::collections::BTreeMap;
use std::path::Path;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostCtrConfig {
    /// Host containers by name.
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerConfig>,
    /// Mirrors by registry host (`*` for every registry).
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Credentials by registry host.
    #[serde(default)]
    pub creds: BTreeMap<String, Credential>,
    /// Bootstrap containers by name (they run in name order, see [`crate::bootstrap`]).
    #[serde(default)]
    pub bootstrap: BTreeMap<String, BootstrapConfig>,
}

/// One bootstrap container (`settings.bootstrap-containers.NAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BootstrapConfig {
    /// The image reference; a container without one cannot run.
    pub source: Option<String>,
    #[serde(default)]
    pub mode: BootstrapMode,
    /// A failure of an essential container fails the boot.
    #[serde(default)]
    pub essential: bool,
    /// Base64, as the setting holds it; decoded into the container's `user-data` file.
    pub user_data: Option<String>,
}

/// When a bootstrap container runs; the model's `BootstrapContainerMode`, as rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootstrapMode {
    /// Not at all (the default).
    #[default]
    Off,
    /// At the next boot; set to `off` after it succeeds.
    Once,
    /// At every boot.
    Always,
}

/// One host container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContainerConfig {
    /// The image reference; a container without one cannot run.
    pub source: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub superpowered: bool,
    /// Base64, as the setting holds it; decoded into the container's `user-data` file.
    pub user_data: Option<String>,
}

/// Mirror endpoints (URLs with a scheme) tried in order before the registry itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// A registry credential: `username` and `password`, or `auth` (base64 of `user:password`),
/// or an `identitytoken`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Credential {
    pub username: Option<String>,
    pub password: Option<String>,
    pub auth: Option<String>,
    pub identitytoken: Option<String>,
}

impl HostCtrConfig {
    /// Reads and parses the rendered file.
    pub fn load(path: &Path) -> Result<HostCtrConfig> {
        let text = std::fs::read_to_string(path).context(error::ReadConfigSnafu { path })?;
        HostCtrConfig::parse(&text).context(error::ParseConfigSnafu { path })
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> std::result::Result<HostCtrConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// The named container, or an error naming the setting to add.
    pub fn container(&self, name: &str) -> Result<&ContainerConfig> {
        self.containers
            .get(name)
            .context(error::NoSuchContainerSnafu { name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rendered_shape() {
        let config = HostCtrConfig::parse(
            r#"
            [containers.admin]
            source = "10.0.2.103:5080/ballast/admin:v1"
            enabled = true
            superpowered = true
            user-data = "aGk="
            [containers.control]
            enabled = false
            [mirrors."10.0.2.103:5080"]
            endpoints = ["http://10.0.2.103:5080"]
            [creds."quay.io"]
            username = "bob"
            password = "pw"
            "#,
        )
        .unwrap();
        let admin = config.container("admin").unwrap();
        assert!(admin.enabled && admin.superpowered);
        assert_eq!(admin.user_data.as_deref(), Some("aGk="));
        assert!(!config.container("control").unwrap().enabled);
        assert_eq!(config.creds["quay.io"].username.as_deref(), Some("bob"));
        let err = config.container("nope").unwrap_err().to_string();
        assert!(err.contains("settings.host-containers.nope"), "{err}");
    }

    #[test]
    fn bootstrap_containers_parse_with_their_modes() {
        let config = HostCtrConfig::parse(
            r#"
            [bootstrap.setup]
            source = "10.0.2.103:5080/ballast/admin:v1"
            mode = "once"
            essential = true
            [bootstrap.later]
            "#,
        )
        .unwrap();
        let setup = &config.bootstrap["setup"];
        assert_eq!(setup.mode, BootstrapMode::Once);
        assert!(setup.essential);
        assert_eq!(config.bootstrap["later"].mode, BootstrapMode::Off);
        assert!(HostCtrConfig::parse("[bootstrap.x]\nmode = \"never\"\n").is_err());
    }

    #[test]
    fn an_empty_file_has_no_containers() {
        assert_eq!(HostCtrConfig::parse("").unwrap(), HostCtrConfig::default());
    }
}
