//! Dotted keys such as `settings.network.hostname`.
//!
//! A segment made only of ASCII letters, digits, `-` and `_` is written as is. Any other segment
//! (one holding a dot, a slash, a space, or an empty one) is written in double quotes, with `"` and
//! `\` escaped by a backslash: `settings.kernel.sysctl."net.ipv4.ip_forward"`. The same rule is used
//! for the keys in [`crate::ValidationError`], for metadata keys in [`crate::Defaults`], and by
//! [`crate::affected_services`].

use std::fmt;

/// True when a segment can be written without quotes.
fn is_plain(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Appends one segment to a dotted key, quoting it when needed. An empty `key` gets no leading dot.
pub fn push_segment(key: &mut String, segment: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    if is_plain(segment) {
        key.push_str(segment);
    } else {
        key.push('"');
        for c in segment.chars() {
            if c == '"' || c == '\\' {
                key.push('\\');
            }
            key.push(c);
        }
        key.push('"');
    }
}

/// Joins segments into a dotted key.
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

/// A dotted key that [`split`] could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedKey {
    /// The key as given.
    pub key: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for MalformedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed key '{}': {}", self.key, self.reason)
    }
}

impl std::error::Error for MalformedKey {}

/// Splits a dotted key into its segments, undoing the quoting of [`join`]. Unquoted segments may
/// hold any character but `.` and `"`; they must not be empty.
pub fn split(key: &str) -> Result<Vec<String>, MalformedKey> {
    let fail = |reason| MalformedKey {
        key: key.to_string(),
        reason,
    };
    let mut segments = Vec::new();
    let mut chars = key.chars().peekable();
    loop {
        let mut segment = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(fail("unterminated quoted segment")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => segment.push(c),
                        None => return Err(fail("ends in the middle of an escape")),
                    },
                    Some(c) => segment.push(c),
                }
            }
            match chars.next() {
                None => {
                    segments.push(segment);
                    return Ok(segments);
                }
                Some('.') => segments.push(segment),
                Some(_) => return Err(fail("a quoted segment must be followed by '.'")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        if segment.is_empty() {
                            return Err(fail("empty segment"));
                        }
                        segments.push(segment);
                        return Ok(segments);
                    }
                    Some('.') => {
                        if segment.is_empty() {
                            return Err(fail("empty segment"));
                        }
                        segments.push(segment);
                        break;
                    }
                    Some('"') => return Err(fail("a quote may only open a segment")),
                    Some(c) => segment.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_quotes_only_when_needed() {
        assert_eq!(
            join(["settings", "network", "hostname"]),
            "settings.network.hostname"
        );
        assert_eq!(
            join(["settings", "kernel", "sysctl", "net.ipv4.ip_forward"]),
            r#"settings.kernel.sysctl."net.ipv4.ip_forward""#
        );
        assert_eq!(join(["a", "", "b\"c\\"]), "a.\"\".\"b\\\"c\\\\\"");
    }

    #[test]
    fn split_undoes_join() {
        for segments in [
            vec!["settings"],
            vec!["settings", "ntp", "time-servers"],
            vec!["settings", "kernel", "sysctl", "net/ipv4/ip_forward"],
            vec!["a", "", "with \"quote\" and \\ slash", "x.y"],
        ] {
            let key = join(&segments);
            assert_eq!(split(&key).unwrap(), segments, "key {key}");
        }
    }

    #[test]
    fn split_refuses_malformed_keys() {
        for key in ["", "a..b", "a.", ".a", "\"open", "\"a\"b", "a\"b", "\"a\\"] {
            assert!(split(key).is_err(), "{key:?} should be refused");
        }
    }
}
