//! The updater's inputs on the node: `/etc/updog.toml` (rendered from `settings.updates`) and
//! `/etc/os-release` (what is running).

use crate::error::{self, Result};
use os_release::OsRelease;
use serde::{Deserialize, Serialize};
use snafu::{ensure, OptionExt, ResultExt};
use std::path::{Path, PathBuf};
use update_metadata::{Version, MAX_SEED};
use url::Url;

/// `/etc/updog.toml`. See the crate documentation for the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub metadata_base_url: Url,
    pub targets_base_url: Url,
    /// This node's place in update waves, 0 to 2047.
    pub seed: u32,
    /// `None` for `latest`.
    pub version_lock: Option<Version>,
    pub ignore_waves: bool,
    pub https_proxy: Option<String>,
    /// Hosts reached without the proxy.
    pub no_proxy: Vec<String>,
}

/// `no_proxy` as a list or as one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NoProxy {
    List(Vec<String>),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    metadata_base_url: String,
    targets_base_url: String,
    seed: u32,
    #[serde(default = "latest")]
    version_lock: String,
    #[serde(default)]
    ignore_waves: bool,
    #[serde(default)]
    https_proxy: Option<String>,
    #[serde(default)]
    no_proxy: Option<NoProxy>,
}

fn latest() -> String {
    "latest".to_string()
}

impl Config {
    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).context(error::ReadConfigSnafu { path })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).context(error::ParseConfigSnafu { path })?;
        let bad = |reason: String| error::BadConfigSnafu { path, reason }.build();
        ensure!(
            raw.seed < MAX_SEED,
            error::BadConfigSnafu {
                path,
                reason: format!("seed {} is not between 0 and {}", raw.seed, MAX_SEED - 1),
            }
        );
        let version_lock = match raw.version_lock.trim() {
            "latest" => None,
            lock => Some(
                Version::parse(lock.strip_prefix('v').unwrap_or(lock)).map_err(|e| {
                    bad(format!(
                        "version_lock {lock:?} is neither \"latest\" nor a version: {e}"
                    ))
                })?,
            ),
        };
        let no_proxy = match raw.no_proxy {
            None => Vec::new(),
            Some(NoProxy::List(list)) => list,
            Some(NoProxy::Text(text)) => text
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        Ok(Config {
            metadata_base_url: base_url(&raw.metadata_base_url)
                .map_err(|e| bad(format!("metadata_base_url: {e}")))?,
            targets_base_url: base_url(&raw.targets_base_url)
                .map_err(|e| bad(format!("targets_base_url: {e}")))?,
            seed: raw.seed,
            version_lock,
            ignore_waves: raw.ignore_waves,
            https_proxy: raw
                .https_proxy
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .map(with_scheme),
            no_proxy,
        })
    }

    /// The environment variables that make the HTTP client use the configured proxy
    /// (`HTTPS_PROXY`, `NO_PROXY`); empty without a proxy. The binary sets them before it starts
    /// any thread.
    pub fn proxy_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(proxy) = &self.https_proxy {
            env.push(("HTTPS_PROXY", proxy.clone()));
            if !self.no_proxy.is_empty() {
                env.push(("NO_PROXY", self.no_proxy.join(",")));
            }
        }
        env
    }
}

/// A proxy given as `host:port` (which settings.network accepts) with `http://` in front. The
/// HTTP client reads `host:port` as a URL whose scheme is the host name and then ignores the
/// proxy without a word.
fn with_scheme(proxy: String) -> String {
    if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    }
}

/// A repository base URL, with the final `/` that URL joining needs.
pub fn base_url(text: &str) -> Result<Url> {
    let text = text.trim();
    let with_slash = if text.ends_with('/') {
        text.to_string()
    } else {
        format!("{text}/")
    };
    let url = Url::parse(&with_slash).map_err(|e| {
        error::BadUrlSnafu {
            url: text,
            reason: e.to_string(),
        }
        .build()
    })?;
    ensure!(
        matches!(url.scheme(), "http" | "https" | "file"),
        error::BadUrlSnafu {
            url: text,
            reason: "only http://, https:// and file:// are supported",
        }
    );
    Ok(url)
}

/// What an image is: the fields of os-release that tell images apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageId {
    pub variant: String,
    pub arch: String,
    pub version: Version,
    /// `None` when not known (an update whose target names do not carry it).
    pub build_id: Option<String>,
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.variant, self.arch, self.version)?;
        if let Some(build) = &self.build_id {
            write!(f, " (build {build})")?;
        }
        Ok(())
    }
}

impl ImageId {
    /// Reads VARIANT_ID, ARCH, VERSION_ID and BUILD_ID from an os-release file.
    pub fn from_os_release(path: &Path) -> Result<ImageId> {
        let text = std::fs::read_to_string(path).context(error::ReadOsReleaseSnafu { path })?;
        Self::parse_os_release(&text, path)
    }

    /// Parses os-release text with the one os-release reader ([`os_release::OsRelease`]);
    /// `path` is only used in error messages.
    pub fn parse_os_release(text: &str, path: &Path) -> Result<ImageId> {
        let fields = OsRelease::parse(text).context(error::OsReleaseSyntaxSnafu { path })?;
        let get = |key: &'static str| -> Result<String> {
            fields
                .non_empty(key)
                .map(str::to_string)
                .context(error::OsReleaseKeySnafu { path, key })
        };
        let version_text = get(os_release::VERSION_ID)?;
        let version = Version::parse(&version_text).context(error::OsReleaseVersionSnafu {
            path,
            value: &version_text,
        })?;
        Ok(ImageId {
            variant: get(os_release::VARIANT_ID)?,
            arch: get(os_release::ARCH)?,
            version,
            build_id: get(os_release::BUILD_ID).ok(),
        })
    }

    /// The image an update entry describes; the build is read from the boot image's target
    /// name (`ballast-<variant>-<arch>-<version>-<build>-boot.ext4.zst`) when it has that form.
    pub fn of_update(update: &update_metadata::Update) -> ImageId {
        let prefix = format!(
            "ballast-{}-{}-{}-",
            update.variant, update.arch, update.version
        );
        let build_id = update
            .images
            .boot
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("-boot.ext4.zst"))
            .filter(|b| !b.is_empty())
            .map(str::to_string);
        ImageId {
            variant: update.variant.clone(),
            arch: update.arch.clone(),
            version: update.version.clone(),
            build_id,
        }
    }
}

/// The paths the commands work with; the defaults are the node's.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config: PathBuf,
    pub os_release: PathBuf,
    pub root_json: PathBuf,
    pub cache_dir: PathBuf,
    pub migrations_dir: PathBuf,
    /// Where the boot's health gate records failed checks.
    pub health_failure: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file() {
        let path = Path::new(constants::UPDOG_CONFIG);
        let config = Config::parse(
            "metadata_base_url = \"https://updates.example.com/dev/x86_64\"\n\
             targets_base_url = \"https://updates.example.com/targets/\"\n\
             seed = 1234\n\
             version_lock = \"v1.2.3\"\n\
             ignore_waves = true\n\
             https_proxy = \"http://proxy:3128\"\n\
             no_proxy = \"localhost, 10.0.0.0/8\"\n",
            path,
        )
        .unwrap();
        assert_eq!(
            config.metadata_base_url.as_str(),
            "https://updates.example.com/dev/x86_64/"
        );
        assert_eq!(config.seed, 1234);
        assert_eq!(config.version_lock, Some(Version::new(1, 2, 3)));
        assert!(config.ignore_waves);
        assert_eq!(config.no_proxy, ["localhost", "10.0.0.0/8"]);
        assert_eq!(
            config.proxy_env(),
            [
                ("HTTPS_PROXY", "http://proxy:3128".to_string()),
                ("NO_PROXY", "localhost,10.0.0.0/8".to_string())
            ]
        );

        let minimal = "metadata_base_url = \"http://127.0.0.1:1/metadata/\"\n\
                       targets_base_url = \"http://127.0.0.1:1/targets/\"\nseed = 0\n";
        let config = Config::parse(minimal, path).unwrap();
        assert_eq!(config.version_lock, None);
        assert!(!config.ignore_waves);
        assert!(config.proxy_env().is_empty());
        let list = format!("{minimal}https_proxy = \"http://p\"\nno_proxy = [\"a\", \"b\"]\n");
        assert_eq!(Config::parse(&list, path).unwrap().no_proxy, ["a", "b"]);
        let bare = format!("{minimal}https_proxy = \"proxy.internal:3128\"\n");
        assert_eq!(
            Config::parse(&bare, path).unwrap().https_proxy.as_deref(),
            Some("http://proxy.internal:3128")
        );

        for (bad, why) in [
            (minimal.replace("seed = 0", "seed = 2048"), "seed 2048"),
            (format!("{minimal}version_lock = \"1.2\"\n"), "version_lock"),
            (format!("{minimal}colour = \"blue\"\n"), "unknown field"),
            (
                minimal.replace("http://127.0.0.1:1/metadata/", "ftp://x/"),
                "only http",
            ),
        ] {
            let err = Config::parse(&bad, path).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains(constants::UPDOG_CONFIG),
                "{why}: {err}"
            );
        }
    }

    #[test]
    fn os_release_and_update_names() {
        let path = Path::new(constants::OS_RELEASE);
        let text = "NAME=Ballast\nID=ballast\nVERSION_ID=1.2.0\n\
                    PRETTY_NAME=\"Ballast 1.2.0 (dev)\"\nVARIANT_ID=dev\nBUILD_ID=\"4f2a9c1\"\n\
                    ARCH=x86_64\n";
        let id = ImageId::parse_os_release(text, path).unwrap();
        assert_eq!(
            id,
            ImageId {
                variant: "dev".into(),
                arch: "x86_64".into(),
                version: Version::new(1, 2, 0),
                build_id: Some("4f2a9c1".into()),
            }
        );
        let err = ImageId::parse_os_release("VERSION_ID=1.2.0\n", path).unwrap_err();
        assert!(err.to_string().contains("VARIANT_ID"), "{err}");
        let err = ImageId::parse_os_release("VARIANT_ID=dev\nJUNK\n", path).unwrap_err();
        assert!(
            err.to_string().contains("line 2: expected KEY=value"),
            "{err}"
        );
        let err = ImageId::parse_os_release("VERSION_ID=1.2.0\nVARIANT_ID=\n", path).unwrap_err();
        assert!(err.to_string().contains("VARIANT_ID"), "{err}");
        let err = ImageId::parse_os_release(&text.replace("1.2.0", "1.2"), path).unwrap_err();
        assert!(err.to_string().contains("not a semantic version"), "{err}");

        let update: update_metadata::Update = serde_json::from_str(
            r#"{"variant": "dev", "arch": "x86_64", "version": "1.3.0", "max_version": "1.3.0",
                "images": {"boot": "ballast-dev-x86_64-1.3.0-abc123-boot.ext4.zst",
                           "root": "r", "hash": "h"}}"#,
        )
        .unwrap();
        assert_eq!(
            ImageId::of_update(&update).build_id.as_deref(),
            Some("abc123")
        );
    }
}
