//! Errors returned by this crate.
//!
//! Three families, one per entry point a caller can act on:
//! * [`InvalidValue`]: a scalar did not pass its modeled type's rules (from `TryFrom`/`FromStr`).
//! * [`ValidationError`]: a settings document was refused; it names the dotted key and the reason.
//! * [`DefaultsError`] and [`OsReleaseError`]: a defaults TOML file or an os-release file was refused.

use snafu::Snafu;
use std::fmt;
use std::path::PathBuf;

/// How many characters of a refused value are echoed back in an error message.
const SHOWN_INPUT_CHARS: usize = 64;

/// A value refused by one of the types in [`crate::modeled_types`].
///
/// Displays as `'<input>' is not a valid <kind>: <reason>`, with control characters in the input
/// escaped and very long input shortened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    input: String,
    kind: &'static str,
    reason: String,
}

impl InvalidValue {
    pub(crate) fn new(input: &str, kind: &'static str, reason: impl Into<String>) -> Self {
        InvalidValue {
            input: printable(input),
            kind,
            reason: reason.into(),
        }
    }

    /// What kind of value was expected, e.g. "hostname".
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Why the value was refused, without the value itself.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a valid {}: {}",
            self.input, self.kind, self.reason
        )
    }
}

impl std::error::Error for InvalidValue {}

/// Makes user input safe to echo in a one-line message: escapes control characters and line
/// separators, and cuts it short when it is long (think of a megabyte of base64 user data).
pub(crate) fn printable(input: &str) -> String {
    let mut out = String::new();
    for (count, c) in input.chars().enumerate() {
        if count == SHOWN_INPUT_CHARS {
            out.push_str(&format!(
                "... ({} characters in all)",
                input.chars().count()
            ));
            break;
        }
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A settings document was refused by [`crate::parse_settings`].
///
/// `key` is the full dotted key of the offending value, always starting with `settings`, e.g.
/// `settings.network.hostname` or `settings.kernel.sysctl."net.ipv4.ip_forward"`. Segments that are
/// not plain names (letters, digits, `-`, `_`) are double-quoted; list elements appear as `[n]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted key of the refused value.
    pub key: String,
    /// Human-readable reason, suitable for an HTTP 400 body.
    pub reason: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ValidationError {}

/// A defaults TOML document was refused by [`crate::Defaults::from_toml_str`] or by
/// [`crate::Defaults::check_references`].
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum DefaultsError {
    #[snafu(display("Defaults are not valid TOML: {source}"))]
    Toml { source: toml::de::Error },

    #[snafu(display(
        "Defaults contain an unknown top-level table '{name}'; allowed are settings, metadata, services and configuration-files"
    ))]
    UnknownTable { name: String },

    #[snafu(display("Defaults entry '{key}' must be a table"))]
    NotATable { key: String },

    #[snafu(display("Default settings are invalid: {source}"))]
    Settings { source: ValidationError },

    #[snafu(display("Defaults entry '{key}' is invalid: {reason}"))]
    InvalidEntry { key: String, reason: String },
}

/// An os-release document was refused by [`crate::OsInfo::from_os_release`].
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum OsReleaseError {
    #[snafu(display("Failed to read os-release file {}: {source}", path.display()))]
    ReadOsRelease {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("os-release line {line}: {reason}"))]
    OsReleaseSyntax { line: usize, reason: String },

    #[snafu(display("os-release has no {name}; it is required to describe the OS"))]
    MissingOsReleaseField { name: &'static str },
}
