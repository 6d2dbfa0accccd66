//! The grammar of dotted settings keys such as `settings.kernel.sysctl."net.ipv4.ip_forward"`.
//!
//! # Background
//!
//! A key names one value in the datastore. The model builds keys while it validates a settings
//! document (to name the key it refuses), the defaults loader builds metadata keys, and the
//! datastore parses keys and turns each segment into a file name. Before this crate the model
//! and the datastore had a quoting rule each, and they differed (the model escaped `"` and `\`,
//! the datastore refused them), so a key the model accepted could fail only when it was stored.
//! This crate is the one rule both import. It has no I/O and no dependencies.
//!
//! # The grammar
//!
//! * A key is one or more segments joined by `.`.
//! * A segment made only of ASCII letters, digits, `_` and `-` is written bare.
//! * Any other segment is written inside double quotes; inside the quotes every character is
//!   allowed except `"`, `\` and control characters. There is no escaping: a segment holding `"`
//!   or `\` is not a valid segment at all, which keeps the grammar trivially reversible.
//! * A segment is not empty, is not made only of dots, and its datastore file name (the segment
//!   percent-encoded, see [`encoded_len`]) is at most [`MAX_SEGMENT_FILE_NAME_LEN`] bytes.
//! * The whole key, written canonically (quotes only where needed), is at most [`MAX_KEY_LEN`]
//!   bytes, as in Bottlerocket.
//!
//! # Usage
//!
//! ```
//! let key = settings_key::join_checked(["settings", "kernel", "sysctl", "net.ipv4.ip_forward"])
//!     .unwrap();
//! assert_eq!(key, r#"settings.kernel.sysctl."net.ipv4.ip_forward""#);
//! assert_eq!(settings_key::split(&key).unwrap()[3], "net.ipv4.ip_forward");
//! assert!(settings_key::check_segment("say \"hi\"").is_err());
//! ```
//!
//! # Current limitations
//!
//! * [`join`] and [`push_segment`] never fail, so that error messages can always name a key;
//!   for a segment that [`check_segment`] refuses their output is for people to read, and
//!   [`split`] will not read it back. Use [`join_checked`] for keys that are to be stored.
//! * Arrays are values, not keys: `[index]` suffixes in messages are not part of the grammar.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

/// Longest key accepted, in bytes of its canonical name.
pub const MAX_KEY_LEN: usize = 255;

/// Longest file name a segment may become in the datastore (Linux's `NAME_MAX`).
pub const MAX_SEGMENT_FILE_NAME_LEN: usize = 255;

/// Longest map key that is always storable as one segment below `parent` (a canonical key such
/// as `settings.kernel.sysctl`), for map-key types made of ASCII letters, digits, `_` and `-`
/// with single separators such as `.` or `/` between them (never first, last or doubled).
///
/// Such a key of `n` characters has at most `(n - 1) / 2` separators, each of which the
/// datastore stores as three bytes, and it is written in quotes when it has one; both the file
/// name ([`MAX_SEGMENT_FILE_NAME_LEN`]) and the whole key ([`MAX_KEY_LEN`]) must fit. Models
/// and API documents derive their length limits from this, so the limit has one home.
pub const fn max_separated_segment_len(parent: &str) -> usize {
    let by_file_name = MAX_SEGMENT_FILE_NAME_LEN.div_ceil(2);
    // parent + '.' + '"' + segment + '"'
    let by_key = MAX_KEY_LEN.saturating_sub(parent.len() + 3);
    if by_file_name < by_key {
        by_file_name
    } else {
        by_key
    }
}

/// Longest quoted segment content the [`key_pattern`]s allow: every printable ASCII character
/// other than a letter, digit, `_` or `-` is stored as three bytes.
pub const MAX_PATTERN_QUOTED_LEN: usize = MAX_SEGMENT_FILE_NAME_LEN / 3;

/// A regular expression for one segment as written in a key, for API documents: a bare segment,
/// or a quoted one of printable ASCII (not `"` or `\`, nor `,` when `in_list`) that does not
/// start with `.`, of at most [`MAX_PATTERN_QUOTED_LEN`] characters. It is a subset of the
/// grammar (quoted segments may also hold other Unicode text), chosen so that every segment it
/// matches is storable. Written in the syntax ECMA-262, Rust's `regex` and Python's `re` share.
pub fn segment_pattern(in_list: bool) -> String {
    // Printable ASCII is \x20-\x7E; leave out '"' (\x22), ',' (\x2C), '.' (\x2E), '\' (\x5C).
    let comma = if in_list { "" } else { r"\x2C" };
    let first = format!(r"\x20\x21\x23-\x2B{comma}\x2D\x2F-\x5B\x5D-\x7E");
    let rest = format!(r"{first}\x2E");
    let more = MAX_PATTERN_QUOTED_LEN - 1;
    format!(r#"(?:[A-Za-z0-9_-]+|"[{first}][{rest}]{{0,{more}}}")"#)
}

/// An anchored regular expression for one dotted key (see [`segment_pattern`]); the length of
/// the whole key ([`MAX_KEY_LEN`]) is for the document's `maxLength`.
pub fn key_pattern() -> String {
    let segment = segment_pattern(false);
    format!(r"^{segment}(?:\.{segment})*$")
}

/// An anchored regular expression for a comma-separated list of keys (see [`segment_pattern`]).
pub fn key_list_pattern() -> String {
    let segment = segment_pattern(true);
    let key = format!(r"{segment}(?:\.{segment})*");
    format!(r"^{key}(?:,{key})*$")
}

/// Why a key or a segment is refused. The message names the key (or segment) and says what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key (or segment) as given, or as it would be written.
    pub key: String,
    /// What is wrong with it, as a sentence fragment.
    pub reason: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid key '{}': {}", self.key, self.reason)
    }
}

impl std::error::Error for KeyError {}

/// True for the characters a bare (unquoted) segment is made of.
pub fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// True when `segment` can be written without quotes.
pub fn is_bare(segment: &str) -> bool {
    !segment.is_empty() && segment.chars().all(is_bare_char)
}

/// Length in bytes of the file name the datastore makes of `segment`: every byte that is not an
/// ASCII letter, digit, `_` or `-` is percent-encoded as three bytes (`.` becomes `%2E`).
pub fn encoded_len(segment: &str) -> usize {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                1
            } else {
                3
            }
        })
        .sum()
}

/// Why `segment` is not a valid segment, if it is not.
pub fn segment_problem(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return Some("it has an empty segment".to_string());
    }
    if let Some(c) = segment.chars().find(|c| c.is_control()) {
        return Some(format!(
            "segment {segment:?} contains the control character {c:?}"
        ));
    }
    if segment.contains('"') || segment.contains('\\') {
        return Some(format!(
            "segment {segment:?} contains '\"' or '\\', which a key cannot hold"
        ));
    }
    if segment.chars().all(|c| c == '.') {
        return Some(format!("segment {segment:?} is made only of dots"));
    }
    let file_name = encoded_len(segment);
    if file_name > MAX_SEGMENT_FILE_NAME_LEN {
        return Some(format!(
            "segment {segment:?} is too long to be stored: its file name would be {file_name} \
             bytes, at most {MAX_SEGMENT_FILE_NAME_LEN} are allowed (characters other than \
             letters, digits, '_' and '-' count three bytes each)"
        ));
    }
    None
}

/// Checks one segment.
pub fn check_segment(segment: &str) -> Result<(), KeyError> {
    match segment_problem(segment) {
        None => Ok(()),
        Some(reason) => Err(KeyError {
            key: quote(segment).into_owned(),
            reason,
        }),
    }
}

/// Writes a segment as it appears in a key: bare when possible, else in double quotes.
pub fn quote(segment: &str) -> Cow<'_, str> {
    if is_bare(segment) {
        Cow::Borrowed(segment)
    } else {
        Cow::Owned(format!("\"{segment}\""))
    }
}

/// Appends one segment to a dotted key, quoting it when needed; an empty `key` gets no dot.
pub fn push_segment(key: &mut String, segment: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(&quote(segment));
}

/// Joins segments into a dotted key without checking them (see the crate's limitations).
pub fn join<I, S>(segments: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut key = String::new();
    for segment in segments {
        push_segment(&mut key, segment.as_ref());
    }
    key
}

/// Joins segments into a dotted key, refusing an invalid segment, no segment at all, or a key
/// longer than [`MAX_KEY_LEN`].
pub fn join_checked<I, S>(segments: I) -> Result<String, KeyError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let segments: Vec<S> = segments.into_iter().collect();
    let key = join(segments.iter().map(AsRef::as_ref));
    let fail = |reason: String| {
        Err(KeyError {
            key: key.clone(),
            reason,
        })
    };
    if segments.is_empty() {
        return fail("the name is empty".to_string());
    }
    if let Some(problem) = segments.iter().find_map(|s| segment_problem(s.as_ref())) {
        return fail(problem);
    }
    check_len(&key)?;
    Ok(key)
}

/// Refuses a key name longer than [`MAX_KEY_LEN`] bytes.
pub fn check_len(key: &str) -> Result<(), KeyError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError {
            key: key.to_string(),
            reason: format!(
                "it is {} bytes long; at most {MAX_KEY_LEN} are allowed",
                key.len()
            ),
        });
    }
    Ok(())
}

/// Splits a key into its raw segments, undoing the quoting, and checks each segment. Accepts
/// needless quotes (`settings."motd"` is `["settings", "motd"]`); refuses empty names, control
/// characters, unbalanced quotes and characters outside quotes that a bare segment cannot hold.
/// The length of the whole name is not checked here (see [`check_len`]).
pub fn split(key: &str) -> Result<Vec<String>, KeyError> {
    split_unchecked(key)
        .and_then(
            |segments| match segments.iter().find_map(|s| segment_problem(s)) {
                None => Ok(segments),
                Some(problem) => Err(problem),
            },
        )
        .map_err(|reason| KeyError {
            key: key.to_string(),
            reason,
        })
}

fn split_unchecked(name: &str) -> Result<Vec<String>, String> {
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("it contains the control character {c:?}"));
    }
    let mut segments = Vec::new();
    let mut rest = name;
    loop {
        let after = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| "it has an unbalanced quote".to_string())?;
            let segment = &quoted[..end];
            if segment.contains('\\') {
                return Err("a backslash is not allowed inside quotes".to_string());
            }
            segments.push(segment.to_string());
            let after = &quoted[end + 1..];
            if !after.is_empty() && !after.starts_with('.') {
                return Err("a closing quote must end the segment (expected '.')".to_string());
            }
            after
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let segment = &rest[..end];
            if let Some(c) = segment.chars().find(|c| !is_bare_char(*c)) {
                return Err(if c == '"' {
                    "a quote may only start a segment".to_string()
                } else {
                    format!(
                        "character {c:?} is only allowed inside a quoted segment, \
                         e.g. a.\"b{c}c\""
                    )
                });
            }
            if segment.is_empty() {
                return Err("it has an empty segment".to_string());
            }
            segments.push(segment.to_string());
            &rest[end..]
        };
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None => return Ok(segments),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bare_and_quoted_segments() {
        let key = r#"settings.kernel.sysctl."net.ipv4.ip_forward""#;
        let segments = split(key).unwrap();
        assert_eq!(
            segments,
            ["settings", "kernel", "sysctl", "net.ipv4.ip_forward"]
        );
        assert_eq!(join(&segments), key);
        assert_eq!(
            split("a.\"b c/d é\".e_f-G9").unwrap(),
            ["a", "b c/d é", "e_f-G9"]
        );
    }

    #[test]
    fn needless_quotes_are_read_and_not_written() {
        assert_eq!(split("settings.\"motd\"").unwrap(), ["settings", "motd"]);
        assert_eq!(join(["settings", "motd"]), "settings.motd");
    }

    /// Every segment the grammar accepts survives join and split unchanged.
    #[test]
    fn join_and_split_round_trip() {
        let samples = [
            "motd",
            "net.ipv4.ip_forward",
            "net/ipv4/conf/eth0.100/rp_filter",
            "my.label",
            "a b",
            "é ü 日本",
            "%2e%2e",
            "..a",
            "x-y_Z9",
            "'single'",
            "{braces}[0]",
        ];
        for a in samples {
            for b in samples {
                let segments = ["settings", a, b];
                let key = join_checked(segments).unwrap();
                assert_eq!(split(&key).unwrap(), segments, "key {key}");
            }
        }
    }

    #[test]
    fn refused_keys() {
        let long = "a".repeat(256);
        for key in [
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
        ] {
            assert!(split(key).is_err(), "accepted {key:?}");
        }
        assert!(check_len(&long).is_err());
        assert!(check_len(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn refused_segments_name_the_problem() {
        let err = join_checked(["a", "q\"uote"]).unwrap_err();
        assert!(err.reason.contains("'\"'"), "{err}");
        assert!(join_checked(["a", "back\\slash"]).is_err());
        assert!(join_checked(["a", ""]).is_err());
        assert!(join_checked(["a", "nul\0"]).is_err());
        let none: [&str; 0] = [];
        assert!(join_checked(none).is_err());
    }

    #[test]
    fn file_name_limit_counts_encoded_bytes() {
        assert_eq!(encoded_len("a.b"), 5);
        assert_eq!(encoded_len("é"), 6);
        assert!(check_segment(&"x".repeat(255)).is_ok());
        assert!(check_segment(&"x".repeat(256)).is_err());
        // 100 characters, but 50 of them are '/' (3 bytes each): 200 bytes, fine.
        assert!(check_segment(&"a/".repeat(50)).is_ok());
        // 150 characters, 75 of them '/': 300 bytes, too long for a file name.
        let err = check_segment(&"a/".repeat(75)).unwrap_err();
        assert!(err.reason.contains("300 bytes"), "{err}");
    }

    #[test]
    fn separated_segment_limit_fits_the_store() {
        // The worst case: a separator at every other character, but never last.
        let worst = |n: usize| -> String {
            (0..n)
                .map(|i| if i % 2 == 1 && i + 1 < n { '.' } else { 'a' })
                .collect()
        };
        let parent = "settings.kernel.sysctl";
        let n = max_separated_segment_len(parent);
        assert_eq!(n, 128);
        assert!(join_checked([parent, worst(n).as_str()]).is_ok());
        assert!(join_checked([parent, worst(n + 1).as_str()]).is_err());
        // A long parent leaves less room for the key.
        let long_parent = "p".repeat(200);
        let n = max_separated_segment_len(&long_parent);
        assert!(join_checked([long_parent.as_str(), worst(n).as_str()]).is_ok());
        assert!(join_checked([long_parent.as_str(), &"a".repeat(n + 1)]).is_ok());
        assert!(join_checked([long_parent.as_str(), &worst(n + 2)]).is_err());
    }

    #[test]
    fn whole_key_limit() {
        let segment = "x".repeat(240);
        assert!(join_checked(["settings", segment.as_str()]).is_ok());
        let err = join_checked(["settings", "kernel", segment.as_str()]).unwrap_err();
        assert!(err.to_string().contains("at most 255"), "{err}");
    }
}
