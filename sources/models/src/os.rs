//! What `GET /os` reports, read from the image's os-release file.

use crate::error::{self, OsReleaseError};
use os_release::OsRelease;
use serde::{Deserialize, Serialize};
use snafu::{OptionExt, ResultExt};
use std::path::Path;
use utoipa::ToSchema;

/// Description of the running OS image. Field names are snake_case, as in Bottlerocket's `/os`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// Human-readable name and version, e.g. "Ballast OS 0.1.0 (dev)".
    pub pretty_name: String,
    /// Variant the image was built as, e.g. "dev".
    pub variant_id: String,
    /// Image version, e.g. "0.1.0".
    pub version_id: String,
    /// Build identifier, e.g. a commit hash.
    pub build_id: String,
    /// CPU architecture, e.g. "x86_64" or "aarch64".
    pub arch: String,
}

impl OsInfo {
    /// Reads an os-release file (see `os-release(5)`).
    pub fn from_path(path: &Path) -> Result<OsInfo, OsReleaseError> {
        let text = std::fs::read_to_string(path).context(error::ReadOsReleaseSnafu { path })?;
        Self::from_os_release(&text)
    }

    /// Parses os-release text with the one os-release reader ([`os_release::OsRelease`]).
    ///
    /// `PRETTY_NAME` falls back to `NAME`, then to "Linux", as os-release(5) says. `VARIANT_ID`,
    /// `VERSION_ID` and `BUILD_ID` are required: an image without them is a build mistake. `ARCH`
    /// (not a standard os-release key) is used when present, otherwise the architecture this
    /// program was built for.
    pub fn from_os_release(text: &str) -> Result<OsInfo, OsReleaseError> {
        let fields = OsRelease::parse(text).map_err(|e| OsReleaseError::OsReleaseSyntax {
            line: e.line,
            reason: e.reason,
        })?;
        let take = |name: &'static str| -> Result<String, OsReleaseError> {
            fields
                .get(name)
                .map(str::to_string)
                .context(error::MissingOsReleaseFieldSnafu { name })
        };
        let variant_id = take(os_release::VARIANT_ID)?;
        let version_id = take(os_release::VERSION_ID)?;
        let build_id = take(os_release::BUILD_ID)?;
        let pretty_name = take(os_release::PRETTY_NAME)
            .or_else(|_| take(os_release::NAME))
            .unwrap_or_else(|_| "Linux".to_string());
        let arch = take(os_release::ARCH).unwrap_or_else(|_| std::env::consts::ARCH.to_string());
        Ok(OsInfo {
            pretty_name,
            variant_id,
            version_id,
            build_id,
            arch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# Written at image build time.
NAME=Ballast
ID=ballast
VERSION_ID=0.1.0
PRETTY_NAME="Ballast OS 0.1.0 (dev) \"quoted\""
VARIANT_ID='dev'
BUILD_ID=abc1234
HOME_URL="https://example.invalid/ballast"
"#;

    #[test]
    fn parses_sample() {
        let info = OsInfo::from_os_release(SAMPLE).unwrap();
        assert_eq!(info.pretty_name, "Ballast OS 0.1.0 (dev) \"quoted\"");
        assert_eq!(info.variant_id, "dev");
        assert_eq!(info.version_id, "0.1.0");
        assert_eq!(info.build_id, "abc1234");
        assert_eq!(info.arch, std::env::consts::ARCH);
    }

    #[test]
    fn arch_and_name_fallbacks() {
        let text = "NAME=Ballast\nVARIANT_ID=dev\nVERSION_ID=1.0.0\nBUILD_ID=x\nARCH=aarch64\n";
        let info = OsInfo::from_os_release(text).unwrap();
        assert_eq!(info.pretty_name, "Ballast");
        assert_eq!(info.arch, "aarch64");
        let info = OsInfo::from_os_release("VARIANT_ID=a\nVERSION_ID=b\nBUILD_ID=c").unwrap();
        assert_eq!(info.pretty_name, "Linux");
    }

    #[test]
    fn later_values_win() {
        let text = "VARIANT_ID=a\nVARIANT_ID=b\nVERSION_ID=1\nBUILD_ID=2\n";
        assert_eq!(OsInfo::from_os_release(text).unwrap().variant_id, "b");
    }

    #[test]
    fn serializes_snake_case() {
        let info = OsInfo::from_os_release(SAMPLE).unwrap();
        let json = serde_json::to_value(&info).unwrap();
        for field in [
            "pretty_name",
            "variant_id",
            "version_id",
            "build_id",
            "arch",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("VARIANT_ID=a\nVERSION_ID=1\n", "has no BUILD_ID"),
            ("JUNK\n", "line 1: expected KEY=value"),
            ("A=\"open\n", "unterminated double quote"),
            ("A='open\n", "unterminated single quote"),
            ("A=\"x\" y\n", "after the closing quote"),
            ("A=two words\n", "put it in quotes"),
            ("BAD KEY=x\n", "the key must be"),
        ];
        for (text, expected) in cases {
            let err = OsInfo::from_os_release(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
