//! Key names: parsing, validation, canonical quoting and the mapping of a key to a relative path.
//!
//! The grammar is the `settings-key` crate's, shared with the model so that every key the model
//! accepts can be stored: a data key is a list of segments written with dots between them. A
//! segment made only of `[A-Za-z0-9_-]` is written as it is; any other segment is written inside
//! double quotes, where every character is allowed except `"`, `\` and control characters. So
//! the sysctl `net.ipv4.ip_forward` is the single segment in
//! `settings.kernel.sysctl."net.ipv4.ip_forward"`. This module adds the file layout: each segment
//! becomes one percent-encoded path component.
//!
//! A key's name is always kept in canonical form: quotes appear only where they are needed, so
//! `settings."motd"` and `settings.motd` are the same key and both are named `settings.motd`.

use crate::error::{InvalidKeySnafu, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::path::{Path, PathBuf};

/// Data keys are dotted names ("settings.network.hostname"); a segment that itself contains a dot
/// is written quoted ("settings.kernel.sysctl.\"net.ipv4.ip_forward\""). Metadata keys are a
/// single segment ("affected-services").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    Data,
    Meta,
}

/// A validated key. Ordering and equality follow the canonical name (then the type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    name: String,
    segments: Vec<String>,
    key_type: KeyType,
}

/// Longest key name accepted, in bytes.
pub const MAX_KEY_NAME_LEN: usize = settings_key::MAX_KEY_LEN;

/// Longest single path component a segment may turn into once percent-encoded (the usual Linux
/// NAME_MAX).
pub const MAX_ENCODED_SEGMENT_LEN: usize = settings_key::MAX_SEGMENT_FILE_NAME_LEN;

/// Characters that are percent-encoded in a path component: everything except ASCII letters,
/// digits, `_` and `-`. In particular `.`, `/`, `%` and NUL are always encoded, which is what
/// keeps every key inside the store directory and keeps the `.` free as the metadata separator.
const SEGMENT_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-');

/// True when the segment can be written without quotes.
pub(crate) fn is_bare_segment(segment: &str) -> bool {
    settings_key::is_bare(segment)
}

/// Writes a raw segment the way it appears in a key name: bare when possible, quoted otherwise.
pub(crate) fn quote_segment(segment: &str) -> String {
    settings_key::quote(segment).into_owned()
}

/// Percent-encodes one raw segment into a path component.
pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT_ENCODE_SET).to_string()
}

/// Decodes a path component back into a raw segment. Returns None for anything our own encoder
/// would not have produced (bad escapes, non-UTF-8, non-canonical escapes such as `%61`), so
/// stray files never turn into keys.
pub(crate) fn decode_segment(component: &str) -> Option<String> {
    let decoded = percent_decode_str(component).decode_utf8().ok()?;
    if encode_segment(&decoded) == component {
        Some(decoded.into_owned())
    } else {
        None
    }
}

/// Why a raw segment is not acceptable, if it is not.
fn segment_problem(segment: &str) -> Option<String> {
    settings_key::segment_problem(segment)
}

impl Key {
    /// Parses and validates a key name; refuses empty segments, NUL/control characters, names over
    /// 255 bytes, unbalanced quotes, and (for Meta) more than one segment.
    pub fn new(key_type: KeyType, name: impl AsRef<str>) -> crate::Result<Key> {
        let name = name.as_ref();
        let invalid = |reason: String| InvalidKeySnafu { name, reason }.fail();
        if name.is_empty() {
            return invalid("the name is empty".to_string());
        }
        if let Err(e) = settings_key::check_len(name) {
            return invalid(e.reason);
        }
        let segments = match settings_key::split(name) {
            Ok(segments) => segments,
            Err(e) => return invalid(e.reason),
        };
        Self::from_raw(key_type, segments, name)
    }

    /// Builds a key from raw (unquoted) segments, quoting where needed.
    pub fn from_segments(key_type: KeyType, segments: &[impl AsRef<str>]) -> crate::Result<Key> {
        let segments: Vec<String> = segments.iter().map(|s| s.as_ref().to_string()).collect();
        let shown = settings_key::join(&segments);
        Self::from_raw(key_type, segments, &shown)
    }

    /// Common validation of raw segments; `shown` is what error messages call the key.
    fn from_raw(key_type: KeyType, segments: Vec<String>, shown: &str) -> Result<Key> {
        let invalid = |reason: String| {
            InvalidKeySnafu {
                name: shown,
                reason,
            }
            .fail()
        };
        if segments.is_empty() {
            return invalid("the name is empty".to_string());
        }
        if key_type == KeyType::Meta && segments.len() != 1 {
            return invalid(format!(
                "a metadata key is a single segment, this one has {}",
                segments.len()
            ));
        }
        if let Some(problem) = segments.iter().find_map(|s| segment_problem(s)) {
            return invalid(problem);
        }
        let name = settings_key::join(&segments);
        if let Err(e) = settings_key::check_len(&name) {
            return invalid(e.reason);
        }
        Ok(Key {
            name,
            segments,
            key_type,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
    /// True when `self` equals `prefix` or lies under it segment-wise
    /// ("settings.ntp.time-servers" starts_with_segments "settings.ntp", but not "settings.nt").
    pub fn starts_with_segments(&self, prefix: &Key) -> bool {
        self.segments.len() >= prefix.segments.len()
            && self.segments[..prefix.segments.len()] == prefix.segments[..]
    }

    /// The key's location relative to a store root: one percent-encoded path component per
    /// segment. Only ASCII letters, digits, `_`, `-` and `%` can appear in a component, so the
    /// result never contains `..`, `/` inside a component, or NUL.
    pub fn relative_path(&self) -> PathBuf {
        self.segments.iter().map(|s| encode_segment(s)).collect()
    }

    /// Path of this data key's file under `root`.
    pub fn path_under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        for segment in &self.segments {
            path.push(encode_segment(segment));
        }
        path
    }

    /// The key's segments before the last one, as a key (None for a one-segment key).
    pub fn parent(&self) -> Option<Key> {
        if self.segments.len() < 2 {
            return None;
        }
        Key::from_segments(self.key_type, &self.segments[..self.segments.len() - 1]).ok()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// A key-name prefix as used by the `prefix` arguments of the datastore: the complete leading
/// segments (those followed by a dot) and the unfinished rest. Used to walk only the directory
/// that can hold matches.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PrefixParts {
    /// Raw segments that every matching key starts with.
    pub(crate) complete: Vec<String>,
    /// The text after the last complete segment; a matching key's next segment, as written in
    /// the key name, starts with it.
    pub(crate) partial: String,
    /// False when the partial text could span more than one segment; then no filter may be
    /// applied to the next segment and only the final name comparison decides.
    pub(crate) partial_is_one_segment: bool,
}

pub(crate) fn split_prefix(prefix: &str) -> PrefixParts {
    let mut complete = Vec::new();
    let mut rest = prefix;
    loop {
        // Try to take one complete segment followed by a dot.
        let taken = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.find('"').and_then(|end| {
                let segment = &quoted[..end];
                quoted[end + 1..]
                    .strip_prefix('.')
                    .map(|next| (segment, next))
            })
        } else {
            rest.find('.').map(|end| (&rest[..end], &rest[end + 1..]))
        };
        match taken {
            Some((segment, next))
                if segment_problem(segment).is_none()
                    && (is_bare_segment(segment) || rest.starts_with('"')) =>
            {
                complete.push(segment.to_string());
                rest = next;
            }
            _ => break,
        }
    }
    // The rest fits inside one segment when it has no dot, or when it is an unfinished quote.
    let partial_is_one_segment =
        !rest.contains('.') || (rest.starts_with('"') && !rest[1..].contains('"'));
    PrefixParts {
        complete,
        partial: rest.to_string(),
        partial_is_one_segment,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn data(name: &str) -> Key {
        Key::new(KeyType::Data, name).unwrap()
    }

    #[test]
    fn bare_and_quoted_segments() {
        let k = data("settings.kernel.sysctl.\"net.ipv4.ip_forward\"");
        assert_eq!(
            k.segments(),
            ["settings", "kernel", "sysctl", "net.ipv4.ip_forward"]
        );
        assert_eq!(k.name(), "settings.kernel.sysctl.\"net.ipv4.ip_forward\"");
        let k = data("a.\"b c/d é\".e_f-G9");
        assert_eq!(k.segments(), ["a", "b c/d é", "e_f-G9"]);
    }

    #[test]
    fn names_are_canonical() {
        let k = data("settings.\"motd\"");
        assert_eq!(k.name(), "settings.motd");
        assert_eq!(k, data("settings.motd"));
    }

    #[test]
    fn from_segments_quotes_when_needed() {
        let k =
            Key::from_segments(KeyType::Data, &["settings", "node-labels", "my.label"]).unwrap();
        assert_eq!(k.name(), "settings.node-labels.\"my.label\"");
        assert_eq!(Key::new(KeyType::Data, k.name()).unwrap(), k);
        assert!(Key::from_segments(KeyType::Data, &["a", ""]).is_err());
        assert!(Key::from_segments(KeyType::Data, &["a", "q\"uote"]).is_err());
        assert!(Key::from_segments(KeyType::Data, &["a", "nul\0"]).is_err());
        let none: [&str; 0] = [];
        assert!(Key::from_segments(KeyType::Data, &none).is_err());
    }

    #[test]
    fn refused_names() {
        let long = "a".repeat(256);
        let cases = [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "..",
            "a.\"..\"",
            "a.\".\"",
            "a/b",
            "a b",
            "a\0b",
            "a\nb",
            "a.\"b\nc\"",
            "a.\"unbalanced",
            "a.\"x\"y",
            "a.b\"c\"",
            "a.\"b\\c\"",
            "a.\"\"",
            long.as_str(),
        ];
        for name in cases {
            assert!(Key::new(KeyType::Data, name).is_err(), "accepted {name:?}");
        }
        assert!(Key::new(KeyType::Data, "a".repeat(255)).is_ok());
    }

    #[test]
    fn meta_keys_have_one_segment() {
        assert!(Key::new(KeyType::Meta, "affected-services").is_ok());
        assert!(Key::new(KeyType::Meta, "\"a.b\"").is_ok());
        assert!(Key::new(KeyType::Meta, "a.b").is_err());
    }

    #[test]
    fn ordering_is_by_name() {
        let mut keys = [data("b"), data("a.z"), data("a")];
        keys.sort();
        let names: Vec<_> = keys.iter().map(Key::name).collect();
        assert_eq!(names, ["a", "a.z", "b"]);
    }

    #[test]
    fn segment_prefix() {
        assert!(data("settings.ntp.time-servers").starts_with_segments(&data("settings.ntp")));
        assert!(!data("settings.ntp.time-servers").starts_with_segments(&data("settings.nt")));
    }

    #[test]
    fn paths_are_percent_encoded() {
        let k = data("settings.kernel.sysctl.\"net.ipv4/x y%\"");
        assert_eq!(
            k.relative_path(),
            PathBuf::from("settings/kernel/sysctl/net%2Eipv4%2Fx%20y%25")
        );
        assert_eq!(
            decode_segment("net%2Eipv4%2Fx%20y%25").unwrap(),
            "net.ipv4/x y%"
        );
        assert_eq!(decode_segment("%61"), None);
        assert_eq!(decode_segment("%zz"), None);
    }

    #[test]
    fn no_key_leaves_the_root() {
        use std::path::Component;
        let tricky = [
            vec!["..".to_string()],
            vec!["a".into(), "../../etc/passwd".into()],
            vec!["/etc".into(), "x".into()],
            vec!["...".into()],
            vec![".hidden".into()],
            vec!["a.b".into(), "%2e%2e".into()],
            vec!["é".repeat(40)],
            vec!["x".repeat(250)],
            vec!["\0".into()],
        ];
        for segments in tricky {
            let Ok(key) = Key::from_segments(KeyType::Data, &segments) else {
                continue;
            };
            let path = key.relative_path();
            for component in path.components() {
                let Component::Normal(c) = component else {
                    panic!("{path:?} has a non-normal component");
                };
                let c = c.to_str().unwrap();
                assert!(c.len() <= 255, "{c} too long");
                assert!(c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)));
            }
            assert_eq!(path.components().count(), segments.len());
        }
    }

    /// The shared grammar's idea of a segment's file name length is this module's encoding.
    #[test]
    fn encoded_length_matches_the_grammar() {
        for segment in [
            "motd",
            "net.ipv4.ip_forward",
            "a b/c%d",
            "é日本",
            "x-y_Z9",
            "..a",
        ] {
            assert_eq!(
                encode_segment(segment).len(),
                settings_key::encoded_len(segment),
                "{segment}"
            );
        }
    }

    #[test]
    fn prefix_split() {
        let p = split_prefix("settings.kernel.sysctl.\"net.ip");
        assert_eq!(p.complete, ["settings", "kernel", "sysctl"]);
        assert_eq!(p.partial, "\"net.ip");
        assert!(p.partial_is_one_segment);
        let p = split_prefix("settings.");
        assert_eq!(p.complete, ["settings"]);
        assert_eq!(p.partial, "");
        let p = split_prefix("settings.\"a.b\".c");
        assert_eq!(p.complete, ["settings", "a.b"]);
        assert_eq!(p.partial, "c");
        let p = split_prefix("");
        assert!(p.complete.is_empty());
        let p = split_prefix("set tings.x");
        assert!(p.complete.is_empty());
        assert!(!p.partial_is_one_segment);
    }
}
