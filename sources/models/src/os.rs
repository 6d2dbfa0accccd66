//! What `GET /os` reports, read from the image's os-release file.

use crate::error::{self, OsReleaseError};
use serde::{Deserialize, Serialize};
use snafu::{OptionExt, ResultExt};
use std::collections::HashMap;
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

    /// Parses os-release text: `KEY=value` lines, `#` comments and blank lines ignored, values
    /// bare, in double quotes (with `\"`, `\\`, `\$` and `` \` `` escapes) or in single quotes
    /// (literal). A key given twice keeps its last value.
    ///
    /// `PRETTY_NAME` falls back to `NAME`, then to "Linux", as os-release(5) says. `VARIANT_ID`,
    /// `VERSION_ID` and `BUILD_ID` are required: an image without them is a build mistake. `ARCH`
    /// (not a standard os-release key) is used when present, otherwise the architecture this
    /// program was built for.
    pub fn from_os_release(text: &str) -> Result<OsInfo, OsReleaseError> {
        let mut values: HashMap<String, String> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: &str| OsReleaseError::OsReleaseSyntax {
                line: index + 1,
                reason: reason.to_string(),
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| syntax("expected KEY=value"))?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(syntax(
                    "the key must be letters, digits and '_' directly before '='",
                ));
            }
            let value = unquote(value).map_err(syntax)?;
            values.insert(key.to_string(), value);
        }

        let mut take = |name: &'static str| -> Result<String, OsReleaseError> {
            values
                .remove(name)
                .context(error::MissingOsReleaseFieldSnafu { name })
        };
        let variant_id = take("VARIANT_ID")?;
        let version_id = take("VERSION_ID")?;
        let build_id = take("BUILD_ID")?;
        let pretty_name = take("PRETTY_NAME")
            .or_else(|_| take("NAME"))
            .unwrap_or_else(|_| "Linux".to_string());
        let arch = take("ARCH").unwrap_or_else(|_| std::env::consts::ARCH.to_string());
        Ok(OsInfo {
            pretty_name,
            variant_id,
            version_id,
            build_id,
            arch,
        })
    }
}

/// Reads one os-release value in shell-like quoting.
fn unquote(value: &str) -> Result<String, &'static str> {
    let mut chars = value.chars();
    let mut out = String::new();
    match value.chars().next() {
        Some('"') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated double quote"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("unterminated double quote"),
                    },
                    Some(c) => out.push(c),
                }
            }
        }
        Some('\'') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated single quote"),
                    Some('\'') => break,
                    Some(c) => out.push(c),
                }
            }
        }
        _ => {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' | '\'' => return Err("a quote may only open a value"),
                    c if c.is_whitespace() => {
                        return Err("unquoted value contains whitespace; put it in quotes")
                    }
                    c => out.push(c),
                }
            }
            return Ok(out);
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err("unexpected text after the closing quote");
    }
    Ok(out)
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
