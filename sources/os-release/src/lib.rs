//! The os-release format (`os-release(5)`): the build writes it, node programs read it.
//!
//! # Background
//!
//! The image build writes `/usr/lib/os-release` (linked from `/etc/os-release`), and several
//! node programs read it to learn what image is running: the API server for `GET /os`, the
//! updater to find updates for its variant and version, the migrator for the version the
//! datastore must reach. Each used to parse the file its own way, with different quoting
//! rules. This crate is the one parser and the one writer, and it names the fields Ballast
//! uses, so a field the build writes is the field the node reads.
//!
//! It does no I/O: callers read the file and keep its path for their own error messages.
//!
//! # Usage
//!
//! ```
//! use os_release::{OsRelease, VARIANT_ID, VERSION_ID};
//!
//! let text = os_release::render(&[(VARIANT_ID, "dev"), (VERSION_ID, "0.1.0")]);
//! let parsed = OsRelease::parse(&text).unwrap();
//! assert_eq!(parsed.get(VARIANT_ID), Some("dev"));
//! assert_eq!(parsed.get(VERSION_ID), Some("0.1.0"));
//! ```
//!
//! # Current limitations
//!
//! * Lines are `KEY=value`, with `#` comments and blank lines; values are bare, in double
//!   quotes (with `\"`, `\\`, `\$` and `` \` `` escapes) or in single quotes. Shell features
//!   beyond that (variable expansion, line continuations) are refused or taken literally.
//! * `ARCH` is a Ballast addition; os-release(5) has no architecture field.
#![forbid(unsafe_code)]

use snafu::Snafu;
use std::collections::HashMap;

/// The distribution's name, e.g. "Ballast".
pub const NAME: &str = "NAME";
/// The distribution's identifier, e.g. "ballast".
pub const ID: &str = "ID";
/// The version with the variant, for people, e.g. "0.1.0 (dev)".
pub const VERSION: &str = "VERSION";
/// The image version, e.g. "0.1.0".
pub const VERSION_ID: &str = "VERSION_ID";
/// Name and version for people, e.g. "Ballast 0.1.0 (dev)".
pub const PRETTY_NAME: &str = "PRETTY_NAME";
/// The variant the image was built as, e.g. "dev".
pub const VARIANT_ID: &str = "VARIANT_ID";
/// The build identifier, e.g. a commit hash.
pub const BUILD_ID: &str = "BUILD_ID";
/// The CPU architecture the image was built for, e.g. "x86_64" (a Ballast field).
pub const ARCH: &str = "ARCH";

/// A line of os-release text that is not `KEY=value` in the accepted quoting.
#[derive(Debug, Snafu, PartialEq, Eq)]
#[snafu(display("os-release line {line}: {reason}"))]
pub struct SyntaxError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The fields of an os-release document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    values: HashMap<String, String>,
}

impl OsRelease {
    /// Parses os-release text. A key given twice keeps its last value.
    pub fn parse(text: &str) -> Result<OsRelease, SyntaxError> {
        let mut values = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: &str| SyntaxError {
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
        Ok(OsRelease { values })
    }

    /// The value of `key`, if the document has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key` if the document has it and it is not empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

/// Writes os-release text with `fields` in the order given, one `KEY=value` line each. A value
/// with characters other than letters, digits and `._+-:/@,` is double-quoted, with `"`, `\`,
/// `$` and `` ` `` escaped, so [`OsRelease::parse`] gives it back unchanged.
pub fn render(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        out.push_str(key);
        out.push('=');
        if !value.is_empty() && value.chars().all(is_bare) {
            out.push_str(value);
        } else {
            out.push('"');
            for c in value.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push('\n');
    }
    out
}

/// Characters a value may hold without quotes.
fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._+-:/@,".contains(c)
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
VERSION_ID=0.1.0
PRETTY_NAME="Ballast OS 0.1.0 (dev) \"quoted\""
VARIANT_ID='dev'
BUILD_ID=abc1234
EMPTY=
"#;

    #[test]
    fn parses_quoting() {
        let parsed = OsRelease::parse(SAMPLE).unwrap();
        assert_eq!(
            parsed.get(PRETTY_NAME),
            Some("Ballast OS 0.1.0 (dev) \"quoted\"")
        );
        assert_eq!(parsed.get(VARIANT_ID), Some("dev"));
        assert_eq!(parsed.get(BUILD_ID), Some("abc1234"));
        assert_eq!(parsed.get(ARCH), None);
        assert_eq!(parsed.get("EMPTY"), Some(""));
        assert_eq!(parsed.non_empty("EMPTY"), None);
    }

    #[test]
    fn later_values_win() {
        let parsed = OsRelease::parse("VARIANT_ID=a\nVARIANT_ID=b\n").unwrap();
        assert_eq!(parsed.get(VARIANT_ID), Some("b"));
    }

    #[test]
    fn round_trip() {
        let fields = [
            (NAME, "Ballast"),
            (VERSION_ID, "1.2.3-rc.1+build"),
            (PRETTY_NAME, "Ballast 1.2.3 (dev)"),
            ("ODD", "a \"b\" \\c $d `e` 'f'"),
            ("EMPTY", ""),
        ];
        let text = render(&fields);
        let parsed = OsRelease::parse(&text).unwrap();
        for (key, value) in fields {
            assert_eq!(parsed.get(key), Some(value), "{key} in {text}");
        }
    }

    #[test]
    fn renders_simple_values_bare() {
        let text = render(&[(VERSION_ID, "0.1.0"), (VERSION, "0.1.0 (dev)")]);
        assert_eq!(text, "VERSION_ID=0.1.0\nVERSION=\"0.1.0 (dev)\"\n");
    }

    #[test]
    fn refusals() {
        let cases = [
            ("JUNK\n", "line 1: expected KEY=value"),
            ("A=\"open\n", "unterminated double quote"),
            ("A='open\n", "unterminated single quote"),
            ("A=\"x\" y\n", "after the closing quote"),
            ("A=two words\n", "put it in quotes"),
            ("BAD KEY=x\n", "the key must be"),
        ];
        for (text, expected) in cases {
            let err = OsRelease::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
