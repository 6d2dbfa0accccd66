//! Which archives to read: apt's deb822 `.sources` entries, narrowed to what the image uses.

use crate::deb822;
use crate::error::{BadSourceSnafu, ReadSourcesSnafu, Result};
use snafu::ResultExt;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// The host's apt sources file that lists Debian's archives.
pub const HOST_SOURCES_FILE: &str = "/etc/apt/sources.list.d/debian.sources";

/// The keyring Debian's archives are signed with (package debian-archive-keyring).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The only component the image takes packages from.
pub const COMPONENT: &str = "main";

/// The only architecture the image is built for.
pub const ARCHITECTURE: &str = "amd64";

/// One suite of one archive, e.g. `http://deb.debian.org/debian` + `bookworm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSource {
    /// Base URI of the archive, without a trailing slash.
    pub uri: String,
    /// Suite or codename, e.g. `bookworm-security`.
    pub suite: String,
    /// Component, always [`COMPONENT`] for now.
    pub component: String,
    /// Architecture, always [`ARCHITECTURE`] for now.
    pub architecture: String,
    /// Keyrings (OpenPGP key files) that may sign the suite's `InRelease`.
    pub signed_by: Vec<PathBuf>,
}

impl ArchiveSource {
    /// A source for `uri` and `suite`, component main, amd64, signed by Debian's keyring.
    pub fn new(uri: &str, suite: &str) -> ArchiveSource {
        ArchiveSource {
            uri: uri.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            component: COMPONENT.to_string(),
            architecture: ARCHITECTURE.to_string(),
            signed_by: vec![PathBuf::from(DEBIAN_KEYRING)],
        }
    }

    /// URL of the suite's signed `InRelease` file.
    pub fn inrelease_url(&self) -> String {
        format!("{}/dists/{}/InRelease", self.uri, self.suite)
    }

    /// Path of the binary package index relative to the suite directory, without compression
    /// suffix, as listed in `InRelease` (e.g. `main/binary-amd64/Packages`).
    pub fn packages_path(&self) -> String {
        format!("{}/binary-{}/Packages", self.component, self.architecture)
    }

    /// URL of a file below the suite directory.
    pub fn dists_url(&self, path: &str) -> String {
        format!("{}/dists/{}/{}", self.uri, self.suite, path)
    }
}

impl std::fmt::Display for ArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}/{}",
            self.uri, self.suite, self.component, self.architecture
        )
    }
}

/// Debian 12's archives as a stock installation lists them: bookworm and bookworm-updates from
/// `http://deb.debian.org/debian`, bookworm-security from `http://deb.debian.org/debian-security`.
pub fn default_sources() -> Vec<ArchiveSource> {
    vec![
        ArchiveSource::new("http://deb.debian.org/debian", "bookworm"),
        ArchiveSource::new("http://deb.debian.org/debian", "bookworm-updates"),
        ArchiveSource::new("http://deb.debian.org/debian-security", "bookworm-security"),
    ]
}

/// Reads [`HOST_SOURCES_FILE`]; when it does not exist or lists nothing usable, falls back to
/// [`default_sources`] with a warning. A file that exists but cannot be parsed is an error.
pub fn host_sources() -> Result<Vec<ArchiveSource>> {
    sources_or_defaults(Path::new(HOST_SOURCES_FILE))
}

/// Like [`host_sources`] for another file.
pub fn sources_or_defaults(path: &Path) -> Result<Vec<ArchiveSource>> {
    if !path.exists() {
        warn!(
            "{} does not exist; using Debian 12's default archives",
            path.display()
        );
        return Ok(default_sources());
    }
    let sources = read_sources_file(path)?;
    if sources.is_empty() {
        warn!(
            "{} lists no enabled 'deb' source with component main for amd64; using Debian 12's default archives",
            path.display()
        );
        return Ok(default_sources());
    }
    Ok(sources)
}

/// Reads one deb822 `.sources` file; see [`parse_sources`].
pub fn read_sources_file(path: &Path) -> Result<Vec<ArchiveSource>> {
    let text = std::fs::read_to_string(path).context(ReadSourcesSnafu { path })?;
    parse_sources(&text, &path.display().to_string())
}

/// Parses deb822 apt sources. Keeps, for every URI and suite, the stanzas that are enabled, have
/// type `deb`, include component `main` and (if they restrict architectures) `amd64`; the result is
/// narrowed to component main and amd64. Stanzas that do not qualify are skipped with a debug
/// message. `what` names the input in messages.
///
/// `Signed-By` must name keyring files; inline keys and fingerprints are refused because `gpgv`
/// needs a keyring file. Without `Signed-By`, Debian's keyring is assumed.
pub fn parse_sources(text: &str, what: &str) -> Result<Vec<ArchiveSource>> {
    let mut sources = Vec::new();
    for paragraph in deb822::parse(text, true, what)? {
        let words = |name: &str| -> Vec<String> {
            paragraph
                .get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let bad = |message: String| {
            BadSourceSnafu {
                what,
                line: paragraph.line,
                message,
            }
            .fail()
        };

        if let Some(enabled) = paragraph.get("Enabled") {
            if enabled.eq_ignore_ascii_case("no") {
                debug!("{what}:{}: disabled stanza skipped", paragraph.line);
                continue;
            }
        }
        let types = words("Types");
        if types.is_empty() {
            return bad("it has no 'Types' field".to_string());
        }
        if !types.iter().any(|t| t == "deb") {
            debug!("{what}:{}: not a 'deb' stanza, skipped", paragraph.line);
            continue;
        }
        let uris = words("URIs");
        let suites = words("Suites");
        if uris.is_empty() || suites.is_empty() {
            return bad("it needs both 'URIs' and 'Suites'".to_string());
        }
        if !words("Components").iter().any(|c| c == COMPONENT) {
            debug!(
                "{what}:{}: no component '{COMPONENT}', skipped",
                paragraph.line
            );
            continue;
        }
        let arches = words("Architectures");
        if !arches.is_empty() && !arches.iter().any(|a| a == ARCHITECTURE) {
            debug!("{what}:{}: not for {ARCHITECTURE}, skipped", paragraph.line);
            continue;
        }
        let signed_by = match paragraph.get("Signed-By") {
            None => vec![PathBuf::from(DEBIAN_KEYRING)],
            Some(value) if value.contains("BEGIN PGP PUBLIC KEY BLOCK") => {
                return bad(
                    "its 'Signed-By' holds an inline key; save the key to a keyring file and name that file instead"
                        .to_string(),
                );
            }
            Some(value) => {
                let mut keyrings = Vec::new();
                for item in value
                    .split([' ', '\t', '\n', ','])
                    .filter(|s| !s.is_empty())
                {
                    if !item.starts_with('/') {
                        return bad(format!(
                            "'Signed-By: {item}' is not an absolute keyring path (fingerprints are not supported)"
                        ));
                    }
                    keyrings.push(PathBuf::from(item));
                }
                keyrings
            }
        };
        for uri in &uris {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                debug!(
                    "{what}:{}: URI {uri} is not http(s), skipped",
                    paragraph.line
                );
                continue;
            }
            for suite in &suites {
                if suite.ends_with('/') {
                    debug!(
                        "{what}:{}: flat repository suite '{suite}' is not supported, skipped",
                        paragraph.line
                    );
                    continue;
                }
                let mut source = ArchiveSource::new(uri, suite);
                source.signed_by = signed_by.clone();
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn host_file_gives_the_defaults() {
        assert_eq!(parse_sources(HOST, "host").unwrap(), default_sources());
    }

    #[test]
    fn skips_what_the_image_does_not_use() {
        let text = "\
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: contrib non-free
Signed-By: /k.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Architectures: arm64

Types: deb
URIs: http://example.org/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb deb-src
URIs: http://mirror.example/debian/ file:/srv/local
Suites: bookworm ./
Components: main contrib
Architectures: amd64 i386
Signed-By: /a.gpg,
 /b.gpg
";
        let sources = parse_sources(text, "t").unwrap();
        assert_eq!(sources.len(), 1);
        let s = &sources[0];
        assert_eq!(s.uri, "http://mirror.example/debian");
        assert_eq!(s.suite, "bookworm");
        assert_eq!(s.component, "main");
        assert_eq!(s.architecture, "amd64");
        assert_eq!(s.signed_by, [PathBuf::from("/a.gpg"), "/b.gpg".into()]);
        assert_eq!(
            s.inrelease_url(),
            "http://mirror.example/debian/dists/bookworm/InRelease"
        );
        assert_eq!(s.packages_path(), "main/binary-amd64/Packages");
    }

    #[test]
    fn default_keyring_when_signed_by_is_missing() {
        let text = "Types: deb\nURIs: http://x/debian\nSuites: bookworm\nComponents: main\n";
        let sources = parse_sources(text, "t").unwrap();
        assert_eq!(sources[0].signed_by, [PathBuf::from(DEBIAN_KEYRING)]);
    }

    #[test]
    fn refuses_unusable_stanzas() {
        let inline = "Types: deb\nURIs: http://x/\nSuites: s\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n";
        let err = parse_sources(inline, "t").unwrap_err().to_string();
        assert!(err.contains("inline key"), "{err}");
        let fpr = "Types: deb\nURIs: http://x/\nSuites: s\nComponents: main\nSigned-By: 4CB50190207B4758A3F73A796ED0E7B82643E131\n";
        let err = parse_sources(fpr, "t").unwrap_err().to_string();
        assert!(err.contains("fingerprints"), "{err}");
        let no_suites = "Types: deb\nURIs: http://x/\nComponents: main\n";
        let err = parse_sources(no_suites, "t").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("Suites"), "{err}");
        assert!(parse_sources("Types deb\n", "t").is_err());
    }

    #[test]
    fn missing_file_falls_back_to_defaults() {
        let sources = sources_or_defaults(Path::new("/nonexistent/debian.sources")).unwrap();
        assert_eq!(sources, default_sources());
    }
}
