//! Binary package indexes (`Packages` files) and package relationships.

use crate::deb822;
use crate::error::{BadRelationSnafu, BadStanzaSnafu, Result};
use crate::version::Version;
use std::fmt;
use tracing::warn;

/// A version comparison in a relationship, e.g. `>=` in `libc6 (>= 2.34)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=`
    Equal,
    /// `>=`
    GreaterOrEqual,
    /// `>>`
    Greater,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "<<" => Op::Less,
            // `<` and `>` are obsolete spellings of `<=` and `>=`.
            "<=" | "<" => Op::LessOrEqual,
            "=" => Op::Equal,
            ">=" | ">" => Op::GreaterOrEqual,
            ">>" => Op::Greater,
            _ => return None,
        })
    }

    /// Whether `candidate OP wanted` holds.
    pub fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        use std::cmp::Ordering::*;
        let order = candidate.cmp(wanted);
        match self {
            Op::Less => order == Less,
            Op::LessOrEqual => order != Greater,
            Op::Equal => order == Equal,
            Op::GreaterOrEqual => order != Less,
            Op::Greater => order == Greater,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Less => "<<",
            Op::LessOrEqual => "<=",
            Op::Equal => "=",
            Op::GreaterOrEqual => ">=",
            Op::Greater => ">>",
        })
    }
}

/// One alternative of a relationship: a package name, an optional architecture qualifier
/// (`:any`, `:native`, `:amd64`) and an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier after `:`, if any.
    pub arch: Option<String>,
    /// Version constraint, if any.
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether a package named `self.name` at `version` satisfies this relation.
    pub fn accepts(&self, version: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, wanted)| op.holds(version, wanted))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(arch) = &self.arch {
            write!(f, ":{arch}")?;
        }
        if let Some((op, version)) = &self.constraint {
            write!(f, " ({op} {version})")?;
        }
        Ok(())
    }
}

/// A dependency: alternatives separated by `|`, any one of which satisfies it.
pub type Alternatives = Vec<Relation>;

/// Writes alternatives the way control files do (`a (>= 1) | b`).
pub fn alternatives_to_string(alternatives: &[Relation]) -> String {
    alternatives
        .iter()
        .map(Relation::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parses a relationship field (`Depends`, `Pre-Depends`, `Provides`, ...): comma-separated
/// dependencies, each a `|`-separated list of alternatives.
///
/// Architecture restrictions in brackets and build profiles in angle brackets (which only occur
/// in source packages) are refused, as are malformed constraints.
pub fn parse_relations(text: &str) -> Result<Vec<Alternatives>> {
    let mut result = Vec::new();
    for dependency in text.split(',') {
        if dependency.trim().is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alternative in dependency.split('|') {
            alternatives.push(parse_relation(alternative.trim())?);
        }
        result.push(alternatives);
    }
    Ok(result)
}

fn parse_relation(text: &str) -> Result<Relation> {
    let bad = |message: &str| {
        BadRelationSnafu {
            text: text.to_string(),
            message: message.to_string(),
        }
        .fail()
    };
    if text.contains(['[', '<']) && !text.contains('(') {
        return bad(
            "architecture restrictions and build profiles are not expected in binary packages",
        );
    }
    let (head, constraint) = match text.find('(') {
        Some(open) => {
            let Some(close_rel) = text[open..].find(')') else {
                return bad("missing ')'");
            };
            let close = open + close_rel;
            if !text[close + 1..].trim().is_empty() {
                return bad("unexpected text after ')'");
            }
            let inner = text[open + 1..close].trim();
            let op_len = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let Some(op) = Op::parse(&inner[..op_len]) else {
                return bad("unknown version operator");
            };
            let version = Version::parse(inner[op_len..].trim())?;
            (text[..open].trim(), Some((op, version)))
        }
        None => (text.trim(), None),
    };
    let (name, arch) = match head.split_once(':') {
        Some((name, arch)) => (name, Some(arch.to_string())),
        None => (head, None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return bad("invalid package name");
    }
    Ok(Relation {
        name: name.to_string(),
        arch,
        constraint,
    })
}

/// One binary package as described by a `Packages` index.
#[derive(Debug, Clone)]
pub struct BinaryPackage {
    /// `Package`
    pub name: String,
    /// `Version`
    pub version: Version,
    /// `Architecture` (`amd64` or `all`)
    pub architecture: String,
    /// `Filename`: path of the `.deb` relative to the archive base (`pool/...`)
    pub filename: String,
    /// `Size` in bytes
    pub size: u64,
    /// `SHA256`, lower-case hex
    pub sha256: String,
    /// `Depends`
    pub depends: Vec<Alternatives>,
    /// `Pre-Depends`
    pub pre_depends: Vec<Alternatives>,
    /// `Provides` (each entry a single relation; only `=` constraints are meaningful)
    pub provides: Vec<Relation>,
    /// `Multi-Arch` (`same`, `foreign`, `allowed`), if set
    pub multi_arch: Option<String>,
    /// `Essential: yes`
    pub essential: bool,
    /// Base URI of the archive the index came from (set by the loader; empty when parsed alone)
    pub source_uri: String,
    /// Suite the index came from (set by the loader; empty when parsed alone)
    pub suite: String,
}

/// Parses a `Packages` index. Stanzas that lack a mandatory field or hold malformed values are
/// skipped with a warning (one bad entry in 60,000 must not stop a build that does not use it);
/// `what` names the index in messages. A file that is not deb822 at all is an error.
pub fn parse_packages(text: &str, what: &str) -> Result<Vec<BinaryPackage>> {
    let mut packages = Vec::new();
    for paragraph in deb822::parse(text, false, what)? {
        match package_from(&paragraph, what) {
            Ok(package) => packages.push(package),
            Err(error) => warn!("skipping an entry of {what}: {error}"),
        }
    }
    Ok(packages)
}

fn package_from(paragraph: &deb822::Paragraph<'_>, what: &str) -> Result<BinaryPackage> {
    let required = |name: &str| -> Result<&str> {
        match paragraph.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => BadStanzaSnafu {
                what,
                line: paragraph.line,
                message: format!("missing field {name}"),
            }
            .fail(),
        }
    };
    let name = required("Package")?;
    let size_text = required("Size")?;
    let Ok(size) = size_text.parse::<u64>() else {
        return BadStanzaSnafu {
            what,
            line: paragraph.line,
            message: format!("package {name}: invalid Size '{size_text}'"),
        }
        .fail();
    };
    let sha256 = required("SHA256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return BadStanzaSnafu {
            what,
            line: paragraph.line,
            message: format!("package {name}: invalid SHA256"),
        }
        .fail();
    }
    let relations = |field: &str| parse_relations(paragraph.get(field).unwrap_or(""));
    let provides = relations("Provides")?.into_iter().flatten().collect();
    Ok(BinaryPackage {
        name: name.to_string(),
        version: Version::parse(required("Version")?)?,
        architecture: required("Architecture")?.to_string(),
        filename: required("Filename")?.to_string(),
        size,
        sha256,
        depends: relations("Depends")?,
        pre_depends: relations("Pre-Depends")?,
        provides,
        multi_arch: paragraph.get("Multi-Arch").map(str::to_string),
        essential: paragraph
            .get("Essential")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        source_uri: String::new(),
        suite: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: hostname
Version: 3.23+nmu1
Installed-Size: 46
Maintainer: Debian
Architecture: amd64
Depends: libc6 (>= 2.34)
Pre-Depends: dpkg (>= 1.15.8)
Description: utility to set/show the host name or domain name
 This package provides commands which can be used to display the system's
 DNS name, and to display or set its hostname or NIS domain name.
Multi-Arch: foreign
Tag: admin::configuring
Section: admin
Priority: required
Essential: yes
Filename: pool/main/h/hostname/hostname_3.23+nmu1_amd64.deb
Size: 10516
SHA256: 4AD0F6D1D4A5A8E0D1C3A4F5E6B7C8D9E0F1A2B3C4D5E6F708192A3B4C5D6E7F

Package: mawk
Version: 1.3.4.20200120-3.1
Architecture: amd64
Provides: awk, mawk-x (= 1.2)
Depends: libc6 (>= 2.34),
 libfoo1 | libbar2:any (<< 3~) | libbaz
Filename: pool/main/m/mawk/mawk_1.3.4.20200120-3.1_amd64.deb
Size: 127312
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: broken
Version: 1.0
Architecture: amd64
Filename: pool/main/b/broken/broken_1.0_amd64.deb
SHA256: 0000000000000000000000000000000000000000000000000000000000000002
";

    #[test]
    fn parses_stanzas_and_skips_broken_ones() {
        let packages = parse_packages(INDEX, "test").unwrap();
        assert_eq!(packages.len(), 2, "the stanza without Size is skipped");
        let hostname = &packages[0];
        assert_eq!(hostname.name, "hostname");
        assert_eq!(hostname.version.as_str(), "3.23+nmu1");
        assert_eq!(hostname.architecture, "amd64");
        assert_eq!(
            hostname.filename,
            "pool/main/h/hostname/hostname_3.23+nmu1_amd64.deb"
        );
        assert_eq!(hostname.size, 10516);
        assert_eq!(
            hostname.sha256,
            "4ad0f6d1d4a5a8e0d1c3a4f5e6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f"
        );
        assert_eq!(hostname.multi_arch.as_deref(), Some("foreign"));
        assert!(hostname.essential);
        assert_eq!(hostname.pre_depends[0][0].to_string(), "dpkg (>= 1.15.8)");

        let mawk = &packages[1];
        assert!(!mawk.essential);
        assert_eq!(mawk.provides.len(), 2);
        assert_eq!(mawk.provides[1].to_string(), "mawk-x (= 1.2)");
        assert_eq!(mawk.depends.len(), 2);
        assert_eq!(
            alternatives_to_string(&mawk.depends[1]),
            "libfoo1 | libbar2:any (<< 3~) | libbaz"
        );
        assert_eq!(mawk.depends[1][1].arch.as_deref(), Some("any"));
    }

    #[test]
    fn relation_syntax() {
        let r = parse_relations("a (>=1.0), b(<< 2) | c:native ,, d (= 1:2-3)").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0][0].constraint.as_ref().unwrap().0, Op::GreaterOrEqual);
        assert_eq!(r[1][1].name, "c");
        assert_eq!(r[2][0].to_string(), "d (= 1:2-3)");
        for bad in [
            "a (>= )",
            "a (~ 1)",
            "a (>= 1",
            "A",
            "a (>= 1) x",
            "a [amd64]",
        ] {
            assert!(parse_relations(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn constraints() {
        let v = |s: &str| Version::parse(s).unwrap();
        let rel = |s: &str| parse_relations(s).unwrap().remove(0).remove(0);
        assert!(rel("x (>= 2.34)").accepts(&v("2.36-9+deb12u10")));
        assert!(!rel("x (>= 2.37)").accepts(&v("2.36-9+deb12u10")));
        assert!(rel("x (<< 3~)").accepts(&v("2.9")));
        assert!(!rel("x (<< 3~)").accepts(&v("3.0")));
        assert!(rel("x (= 1.0-0)").accepts(&v("1.0")));
        assert!(rel("x (>> 1.0)").accepts(&v("1.0+b1")));
        assert!(rel("x (<= 1.0)").accepts(&v("1.0~rc1")));
        assert!(rel("x").accepts(&v("0")));
    }
}
