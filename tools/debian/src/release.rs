//! Signed `InRelease` files: checking the signature with `gpgv` and reading the checksums.

use crate::deb822;
use crate::error::{
    BadSignatureSnafu, GpgvSpawnSnafu, IoSnafu, MissingKeyringSnafu, ReleaseExpiredSnafu,
    ReleaseSyntaxSnafu, Result, SuiteMismatchSnafu,
};
use snafu::{ensure, ResultExt};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};
use tracing::debug;

/// Size and sha256 of one file listed in a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The fields of a (verified) Release file that this crate uses.
#[derive(Debug, Clone, Default)]
pub struct Release {
    /// `Origin`, e.g. `Debian`.
    pub origin: Option<String>,
    /// `Suite`, e.g. `oldstable`.
    pub suite: Option<String>,
    /// `Codename`, e.g. `bookworm-security`.
    pub codename: Option<String>,
    /// `Date` as written.
    pub date: Option<String>,
    /// `Valid-Until` as written.
    pub valid_until: Option<String>,
    /// Whether files may be fetched from `by-hash/SHA256/<hash>` (`Acquire-By-Hash: yes`).
    pub acquire_by_hash: bool,
    /// The `SHA256` list: path relative to the suite directory -> entry.
    pub sha256: BTreeMap<String, FileEntry>,
}

impl Release {
    /// Parses the signed text of an `InRelease` file (what [`verify_clearsigned`] returns).
    /// `what` names the file in messages.
    pub fn parse(text: &str, what: &str) -> Result<Release> {
        let paragraphs = deb822::parse(text, false, what)?;
        let syntax = |message: String| {
            ReleaseSyntaxSnafu {
                url: what.to_string(),
                message,
            }
            .fail()
        };
        let [paragraph] = paragraphs.as_slice() else {
            return syntax(format!(
                "expected one paragraph, found {}",
                paragraphs.len()
            ));
        };
        let field = |name: &str| paragraph.get(name).map(str::to_string);
        let mut release = Release {
            origin: field("Origin"),
            suite: field("Suite"),
            codename: field("Codename"),
            date: field("Date"),
            valid_until: field("Valid-Until"),
            acquire_by_hash: paragraph
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256: BTreeMap::new(),
        };
        let Some(list) = paragraph.get("SHA256") else {
            return syntax("it has no SHA256 list".to_string());
        };
        for line in deb822::value_lines(list) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hash, size, path] = parts.as_slice() else {
                return syntax(format!("malformed SHA256 line '{line}'"));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return syntax(format!("malformed sha256 '{hash}'"));
            }
            let Ok(size) = size.parse::<u64>() else {
                return syntax(format!("malformed size '{size}'"));
            };
            release.sha256.insert(
                path.to_string(),
                FileEntry {
                    sha256: hash.to_ascii_lowercase(),
                    size,
                },
            );
        }
        Ok(release)
    }

    /// The entry for `path` (relative to the suite directory), if listed.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.sha256.get(path)
    }

    /// Refuses a Release file that describes another suite than `expected` (compared with both
    /// `Suite` and `Codename`, as apt does).
    pub fn check_suite(&self, expected: &str, what: &str) -> Result<()> {
        let matches = [&self.suite, &self.codename]
            .iter()
            .any(|v| v.as_deref() == Some(expected));
        ensure!(
            matches,
            SuiteMismatchSnafu {
                url: what,
                expected,
                found: format!(
                    "{} ({})",
                    self.codename.as_deref().unwrap_or("?"),
                    self.suite.as_deref().unwrap_or("?")
                ),
            }
        );
        Ok(())
    }

    /// Refuses a Release file whose `Valid-Until` lies before `now`.
    pub fn check_valid_until(&self, now: OffsetDateTime, what: &str) -> Result<()> {
        let Some(valid_until) = &self.valid_until else {
            return Ok(());
        };
        let Some(deadline) = parse_release_date(valid_until) else {
            return ReleaseSyntaxSnafu {
                url: what,
                message: format!("cannot read Valid-Until '{valid_until}'"),
            }
            .fail();
        };
        ensure!(
            now <= deadline,
            ReleaseExpiredSnafu {
                url: what,
                valid_until: valid_until.clone(),
            }
        );
        Ok(())
    }
}

/// Reads a Release date such as `Sat, 28 Nov 2026 00:53:02 UTC` (RFC 2822 style, UTC or GMT or
/// `+0000`; the day name is optional).
pub fn parse_release_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.split_once(',').map_or(text, |(_, rest)| rest);
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, clock, zone] = parts.as_slice() else {
        return None;
    };
    if !matches!(*zone, "UTC" | "GMT" | "UT" | "Z" | "+0000") {
        return None;
    }
    let month = match month.to_ascii_lowercase().as_str() {
        "jan" => Month::January,
        "feb" => Month::February,
        "mar" => Month::March,
        "apr" => Month::April,
        "may" => Month::May,
        "jun" => Month::June,
        "jul" => Month::July,
        "aug" => Month::August,
        "sep" => Month::September,
        "oct" => Month::October,
        "nov" => Month::November,
        "dec" => Month::December,
        _ => return None,
    };
    let date = Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    let hms: Vec<u8> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let time = Time::from_hms(*h, *m, *s).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Checks the OpenPGP signature of a clear-signed file (`InRelease`) with `gpgv` against
/// `keyrings`, and returns the text that was signed, exactly as `gpgv` recovered it, so nothing
/// outside the signature can sneak into what is parsed afterwards.
///
/// The file is accepted when at least one signature is good and valid (`VALIDSIG`) and none is
/// bad, expired or made by a revoked or expired key. Signatures by keys missing from the keyrings
/// are ignored when another one is good (Debian signs with several keys).
pub fn verify_clearsigned(signed: &[u8], keyrings: &[PathBuf], what: &str) -> Result<String> {
    for keyring in keyrings {
        ensure!(
            keyring.exists(),
            MissingKeyringSnafu {
                path: keyring.clone()
            }
        );
    }
    let dir = tempfile::tempdir().context(IoSnafu {
        action: "create a temporary directory in",
        path: std::env::temp_dir(),
    })?;
    let input = dir.path().join("InRelease");
    let output = dir.path().join("Release");
    write_file(&input, signed)?;

    let mut command = Command::new("gpgv");
    command.arg("--status-fd").arg("1");
    for keyring in keyrings {
        command.arg("--keyring").arg(keyring);
    }
    command.arg("--output").arg(&output).arg(&input);
    debug!("running {command:?}");
    let result = command.output().context(GpgvSpawnSnafu)?;
    let status = String::from_utf8_lossy(&result.stdout);
    let verdict = judge_gpgv_status(&status);
    let keyring_list = keyrings
        .iter()
        .map(|k| k.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Err(reason) = verdict {
        return BadSignatureSnafu {
            url: what,
            keyrings: keyring_list,
            details: format!(
                "{reason}\n{}",
                String::from_utf8_lossy(&result.stderr).trim()
            ),
        }
        .fail();
    }
    ensure!(
        result.status.success() || output.exists(),
        BadSignatureSnafu {
            url: what,
            keyrings: keyring_list,
            details: String::from_utf8_lossy(&result.stderr).trim().to_string(),
        }
    );
    let text = std::fs::read(&output).context(IoSnafu {
        action: "read gpgv's output",
        path: &output,
    })?;
    String::from_utf8(text).map_err(|_| crate::error::Error::NotUtf8 {
        what: what.to_string(),
    })
}

/// Reads gpgv's `--status-fd` lines; `Ok(fingerprints)` of the valid signatures when acceptable.
fn judge_gpgv_status(status: &str) -> std::result::Result<Vec<String>, String> {
    let mut valid = Vec::new();
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        match words.next() {
            Some("VALIDSIG") => valid.push(words.next().unwrap_or("?").to_string()),
            Some(bad @ ("BADSIG" | "EXPSIG" | "EXPKEYSIG" | "REVKEYSIG")) => {
                return Err(format!("gpgv reported {bad}: {rest}"));
            }
            _ => {}
        }
    }
    if valid.is_empty() {
        Err("no good signature by a key in the keyring(s)".to_string())
    } else {
        Ok(valid)
    }
}

pub(crate) fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).context(IoSnafu {
        action: "create",
        path,
    })?;
    file.write_all(data).context(IoSnafu {
        action: "write",
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "\
Origin: Debian
Label: Debian-Security
Suite: oldstable-security
Version: 12
Codename: bookworm-security
Date: Sat, 21 Nov 2026 00:53:02 UTC
Valid-Until: Sat, 28 Nov 2026 00:53:02 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64 armhf i386 ppc64el
Components: updates/main updates/contrib updates/non-free-firmware updates/non-free
Description: Debian 12 - Security Updates
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/binary-amd64/Packages
SHA256:
 eb517821ea447f4a108a390e79b9b3c9115289ca8c142d0a38ffddef38ccefcc  2523192 main/binary-amd64/Packages
 8575ec1f224d635ce30646a2a1388bee267a7f37fae3f997687643c9ebb8fb43   378100 main/binary-amd64/Packages.xz
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855        0 contrib/Contents-amd64
";

    #[test]
    fn parses_the_sha256_list() {
        let r = Release::parse(RELEASE, "t").unwrap();
        assert_eq!(r.origin.as_deref(), Some("Debian"));
        assert_eq!(r.codename.as_deref(), Some("bookworm-security"));
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 3);
        assert_eq!(
            r.file("main/binary-amd64/Packages.xz"),
            Some(&FileEntry {
                sha256: "8575ec1f224d635ce30646a2a1388bee267a7f37fae3f997687643c9ebb8fb43"
                    .to_string(),
                size: 378100
            })
        );
        assert!(r.file("main/binary-arm64/Packages.xz").is_none());
    }

    #[test]
    fn suite_and_expiry_checks() {
        let r = Release::parse(RELEASE, "t").unwrap();
        r.check_suite("bookworm-security", "t").unwrap();
        r.check_suite("oldstable-security", "t").unwrap();
        assert!(r.check_suite("bookworm", "t").is_err());

        let before = parse_release_date("Fri, 27 Nov 2026 23:00:00 UTC").unwrap();
        let after = parse_release_date("29 Nov 2026 00:00:00 GMT").unwrap();
        r.check_valid_until(before, "t").unwrap();
        let err = r.check_valid_until(after, "t").unwrap_err().to_string();
        assert!(err.contains("expired") && err.contains("clock"), "{err}");
    }

    #[test]
    fn malformed_release() {
        assert!(Release::parse("Origin: x\n", "t").is_err());
        assert!(Release::parse("SHA256:\n abc 1 x\n", "t").is_err());
        assert!(Release::parse("A: 1\n\nB: 2\n", "t").is_err());
    }

    #[test]
    fn gpgv_status_judgement() {
        let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 6ED0 Debian\n[GNUPG:] VALIDSIG 4CB5 2026\n[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 1234 1 8 01 0 9\n[GNUPG:] NO_PUBKEY 1234\n";
        assert_eq!(judge_gpgv_status(good).unwrap(), ["4CB5"]);
        let bad = "[GNUPG:] VALIDSIG 4CB5\n[GNUPG:] BADSIG 6ED0 Debian\n";
        assert!(judge_gpgv_status(bad).unwrap_err().contains("BADSIG"));
        let missing = "[GNUPG:] ERRSIG 1234 1 8 01 0 9\n[GNUPG:] NO_PUBKEY 1234\n";
        assert!(judge_gpgv_status(missing).is_err());
    }

    /// A real signature check needs a key and gpgv: a tampered `InRelease` must be refused.
    #[test]
    fn gpgv_refuses_an_unsigned_or_tampered_file() {
        assert_eq!(crate::sources::DEBIAN_KEYRING, hosttools::DEBIAN_KEYRING);
        let keyring = PathBuf::from(crate::sources::DEBIAN_KEYRING);
        if !hosttools::require_tool("gpgv") || !hosttools::require_tool(hosttools::DEBIAN_KEYRING) {
            return;
        }
        let fake = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{RELEASE}-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"
        );
        let err = verify_clearsigned(fake.as_bytes(), std::slice::from_ref(&keyring), "fake")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Refusing fake"), "{err}");
        let err = verify_clearsigned(RELEASE.as_bytes(), &[keyring], "plain")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Refusing plain"), "{err}");
        let err = verify_clearsigned(b"x", &["/nonexistent.gpg".into()], "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("debian-archive-keyring"), "{err}");
    }
}
