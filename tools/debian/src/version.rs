//! Debian version numbers and their ordering.
//!
//! A version is `[epoch:]upstream[-revision]`. Two versions are ordered by epoch (a number), then by
//! upstream part, then by revision, where the two string parts use dpkg's rule: the string is read as
//! alternating runs of non-digits and digits; non-digit runs compare character by character with
//! letters before all other characters and `~` before everything, even the end of the string; digit
//! runs compare as numbers. A missing revision compares equal to `0`.

use crate::error::{BadVersionSnafu, Result};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A parsed Debian version. Equality and ordering follow `dpkg --compare-versions`, so `1.0` equals
/// `0:1.0-0`; the original spelling is kept for display.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    epoch: u64,
    // byte ranges into `text`
    upstream: (usize, usize),
    revision: (usize, usize),
}

impl Version {
    /// Parses a version, refusing the forms dpkg refuses outright (empty, non-numeric epoch, empty
    /// upstream part, characters outside `[A-Za-z0-9.+~:-]`).
    pub fn parse(text: &str) -> Result<Version> {
        let text = text.trim();
        let bad = |message: &str| {
            BadVersionSnafu {
                version: text.to_string(),
                message: message.to_string(),
            }
            .fail()
        };
        if text.is_empty() {
            return bad("it is empty");
        }
        let (epoch, rest_start) = match text.find(':') {
            Some(colon) => {
                let digits = &text[..colon];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return bad("the epoch before ':' must be a number");
                }
                match digits.parse::<u64>() {
                    Ok(epoch) => (epoch, colon + 1),
                    Err(_) => return bad("the epoch is too large"),
                }
            }
            None => (0, 0),
        };
        let rest = &text[rest_start..];
        let (upstream, revision) = match rest.rfind('-') {
            Some(dash) => (
                (rest_start, rest_start + dash),
                (rest_start + dash + 1, text.len()),
            ),
            None => ((rest_start, text.len()), (text.len(), text.len())),
        };
        if upstream.0 == upstream.1 {
            return bad("the upstream part is empty");
        }
        if let Some(c) = text[rest_start..]
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':')))
        {
            return bad(&format!("the character '{c}' is not allowed"));
        }
        Ok(Version {
            text: text.to_string(),
            epoch,
            upstream,
            revision,
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch (0 when not written).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The upstream part.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    /// The Debian revision ("" when not written).
    pub fn revision(&self) -> &str {
        &self.text[self.revision.0..self.revision.1]
    }
}

impl FromStr for Version {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| compare_part(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Compares two version strings the way `dpkg --compare-versions` does.
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

/// Weight of one non-digit character (or the end of the run, `None`) in dpkg's ordering.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's comparison of one upstream or revision string.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit runs, character by character; the shorter run is padded with "end" (weight 0).
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let order = weight(ca).cmp(&weight(cb));
            if order != Ordering::Equal {
                return order;
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit runs, as numbers of any length.
        let (da, ra) = split_digits(a);
        let (db, rb) = split_digits(b);
        let order = compare_numbers(da, db);
        if order != Ordering::Equal {
            return order;
        }
        a = ra;
        b = rb;
    }
    Ordering::Equal
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at(n)
}

fn compare_numbers(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let a = &a[strip(a)..];
    let b = &b[strip(b)..];
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// (a, b, expected ordering of a relative to b)
    const PAIRS: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Ordering::Equal),
        ("1.0", "1.0-0", Ordering::Equal),
        ("0:1.0", "1.0", Ordering::Equal),
        ("1.0-1", "1.0-2", Ordering::Less),
        ("1.0", "1.1", Ordering::Less),
        ("1.10", "1.9", Ordering::Greater),
        ("1.01", "1.1", Ordering::Equal),
        ("1:0.1", "2.0", Ordering::Greater),
        ("2:1.0", "10:0.1", Ordering::Less),
        ("1.0~rc1", "1.0", Ordering::Less),
        ("1.0~rc1", "1.0~rc2", Ordering::Less),
        ("1.0~~", "1.0~", Ordering::Less),
        ("1.0~~a", "1.0~~", Ordering::Greater),
        ("1.0~", "1.0", Ordering::Less),
        ("1.0", "1.0a", Ordering::Less),
        ("1.0a", "1.0b", Ordering::Less),
        ("1.0a", "1.0.", Ordering::Less),
        ("1.0+", "1.0.", Ordering::Less),
        ("1.0+b1", "1.0", Ordering::Greater),
        ("1.0-1+b1", "1.0-1", Ordering::Greater),
        ("1.0-1+b1", "1.0-2", Ordering::Less),
        ("1.0-1~bpo12+1", "1.0-1", Ordering::Less),
        ("1.0-1+deb12u1", "1.0-1", Ordering::Greater),
        ("1.0-1+deb12u1", "1.0-1+deb12u2", Ordering::Less),
        ("252.38-1~deb12u1", "252.36-1~deb12u1", Ordering::Greater),
        ("252.38-1~deb12u1", "252.38-1", Ordering::Less),
        ("2.36-9+deb12u10", "2.36-9+deb12u9", Ordering::Greater),
        ("6.1.0-37", "6.1.0-9", Ordering::Greater),
        ("6.1.140-1", "6.1.137-1", Ordering::Greater),
        ("1:2.38.1-5+deb12u3", "2.39", Ordering::Greater),
        ("0.0", "0", Ordering::Greater),
        ("0", "00", Ordering::Equal),
        ("1a", "1A", Ordering::Greater),
        ("1Z", "1a", Ordering::Less),
        ("a", "1", Ordering::Greater),
        ("1.2.3", "1.2.3.0", Ordering::Less),
        ("1.2-3-4", "1.2-3-5", Ordering::Less),
        ("1.2-3-4", "1.2-3", Ordering::Greater),
        ("1:1.2-3", "1:1.2-3", Ordering::Equal),
        ("3.0.8-1", "3.0.11-1", Ordering::Less),
        ("1.2.13.dfsg-1", "1.2.13-1", Ordering::Greater),
        ("1:1.2.13.dfsg-1", "1.3", Ordering::Greater),
        ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3", Ordering::Less),
        ("20230210", "20230210.1", Ordering::Less),
        ("1.0-0.1", "1.0-1", Ordering::Less),
        ("1.0-a", "1.0-1", Ordering::Greater),
        ("1.0~beta1+dfsg-1", "1.0~beta1-1", Ordering::Greater),
        ("1.0.0~alpha", "1.0.0~beta", Ordering::Less),
        (
            "99999999999999999999999",
            "99999999999999999999998",
            Ordering::Greater,
        ),
        ("1.0-00001", "1.0-1", Ordering::Equal),
        ("5:1.0", "4:99", Ordering::Greater),
        ("1.0+~", "1.0+", Ordering::Less),
        ("1.0.~1", "1.0.", Ordering::Less),
    ];

    #[test]
    fn known_pairs() {
        for (a, b, expected) in PAIRS {
            assert_eq!(
                compare_versions(a, b).unwrap(),
                *expected,
                "comparing {a} with {b}"
            );
            assert_eq!(
                compare_versions(b, a).unwrap(),
                expected.reverse(),
                "comparing {b} with {a}"
            );
        }
    }

    /// The table above must agree with dpkg itself, the reference implementation.
    #[test]
    fn agrees_with_dpkg() {
        if !hosttools::require_tool("dpkg") {
            return;
        }
        for (a, b, expected) in PAIRS {
            for (op, ours) in [
                ("lt", *expected == Ordering::Less),
                ("eq", *expected == Ordering::Equal),
                ("gt", *expected == Ordering::Greater),
            ] {
                let status = Command::new("dpkg")
                    .args(["--compare-versions", a, op, b])
                    .status()
                    .unwrap();
                assert_eq!(
                    status.success(),
                    ours,
                    "dpkg --compare-versions {a} {op} {b} disagrees with us"
                );
            }
        }
    }

    #[test]
    fn parts() {
        let v = Version::parse("1:2.38.1-5+deb12u3").unwrap();
        assert_eq!(v.epoch(), 1);
        assert_eq!(v.upstream(), "2.38.1");
        assert_eq!(v.revision(), "5+deb12u3");
        assert_eq!(v.to_string(), "1:2.38.1-5+deb12u3");
        let v = Version::parse("1.2-3-4").unwrap();
        assert_eq!(v.upstream(), "1.2-3");
        assert_eq!(v.revision(), "4");
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "a:1", ":1", "1:", "1.0 beta", "-1", "1.0_1"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
