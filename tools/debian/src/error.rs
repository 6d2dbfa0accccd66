//! Errors of the Debian archive client.
//!
//! Every message says what went wrong and, where there is one, what the user can do about it.

use snafu::Snafu;
use std::path::PathBuf;

/// The command that refreshes `packages/debian.lock` from the archive's current indexes.
pub const REFRESH_COMMAND: &str = "cargo xtask lock";

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading apt sources, indexes, the lock or a `.deb`.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    // ----- apt sources -----
    #[snafu(display("Cannot read apt sources file {}: {source}", path.display()))]
    ReadSources {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Malformed deb822 text in {what} at line {line}: {message}"))]
    Deb822Syntax {
        what: String,
        line: usize,
        message: String,
    },

    #[snafu(display(
        "apt source stanza starting at line {line} of {what} is unusable: {message}"
    ))]
    BadSource {
        what: String,
        line: usize,
        message: String,
    },

    #[snafu(display(
        "No archive sources were given; pass at least one (see `default_sources()`)"
    ))]
    NoSources,

    // ----- network -----
    #[snafu(display("Cannot set up the HTTP client: {source}"))]
    HttpClient { source: reqwest::Error },

    #[snafu(display(
        "Request to {url} failed: {source}. Check the network and the mirror address"
    ))]
    Http { url: String, source: reqwest::Error },

    #[snafu(display("{url} answered HTTP {status}"))]
    HttpStatus { url: String, status: u16 },

    #[snafu(display("{url} does not exist on the mirror (HTTP 404)"))]
    NotFound { url: String },

    // ----- signatures and Release files -----
    #[snafu(display(
        "Cannot run gpgv to check the archive signature: {source}. Install it with `apt-get install gpgv`"
    ))]
    GpgvSpawn { source: std::io::Error },

    #[snafu(display(
        "Refusing {url}: its OpenPGP signature does not verify against keyring(s) {keyrings}. \
         gpgv said:\n{details}\nCheck the Signed-By keyring in the apt sources (package \
         debian-archive-keyring) and that the mirror is not serving a tampered or stale file"
    ))]
    BadSignature {
        url: String,
        keyrings: String,
        details: String,
    },

    #[snafu(display("Signed-By keyring {} does not exist; install debian-archive-keyring or fix the apt sources", path.display()))]
    MissingKeyring { path: PathBuf },

    #[snafu(display("Cannot parse the Release data of {url}: {message}"))]
    ReleaseSyntax { url: String, message: String },

    #[snafu(display(
        "Refusing {url}: it describes suite '{found}', not the requested '{expected}' (mirror misconfigured or a downgrade attempt)"
    ))]
    SuiteMismatch {
        url: String,
        expected: String,
        found: String,
    },

    #[snafu(display(
        "Refusing {url}: it expired at {valid_until}. The mirror is stale, or this machine's clock is wrong"
    ))]
    ReleaseExpired { url: String, valid_until: String },

    #[snafu(display(
        "{url} lists no index for {path} (.xz, .gz or uncompressed); is the component/architecture right?"
    ))]
    IndexNotListed { url: String, path: String },

    // ----- integrity -----
    #[snafu(display("{what}: size is {actual} bytes, the signed index says {expected}"))]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[snafu(display("{what}: sha256 is {actual}, the signed index says {expected}"))]
    HashMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[snafu(display(
        "Package {package}: the downloaded file has {actual}, the lock expects {expected} ({url}). \
         The mirror served something else; try again later or another mirror, and do not edit \
         the lock by hand"
    ))]
    DebMismatch {
        /// name and version
        package: String,
        url: String,
        /// `sha256 HEX, N bytes`
        expected: String,
        /// `sha256 HEX, N bytes`
        actual: String,
    },

    #[snafu(display(
        "Package {package} {version} is pinned in the lock but the archive no longer serves it \
         ({url} answered 404; Debian keeps only current versions). Refresh the lock with \
         `{REFRESH_COMMAND}` and commit packages/debian.lock"
    ))]
    PackageGone {
        package: String,
        version: String,
        url: String,
    },

    // ----- index and control data -----
    #[snafu(display("Cannot decompress {what}: {source}"))]
    Decompress {
        what: String,
        source: std::io::Error,
    },

    #[snafu(display("{what} is not UTF-8 text"))]
    NotUtf8 { what: String },

    #[snafu(display("Invalid Debian version '{version}': {message}"))]
    BadVersion { version: String, message: String },

    #[snafu(display("Invalid relationship '{text}': {message}"))]
    BadRelation { text: String, message: String },

    #[snafu(display("Invalid package stanza at line {line} of {what}: {message}"))]
    BadStanza {
        what: String,
        line: usize,
        message: String,
    },

    // ----- resolution -----
    #[snafu(display(
        "Package '{name}' is not in any of the loaded indexes ({suites}); check the spelling with `apt-cache policy {name}`"
    ))]
    UnknownPackage { name: String, suites: String },

    #[snafu(display(
        "'{name}' is a virtual package provided by several packages ({providers}); request one of them explicitly"
    ))]
    AmbiguousVirtual { name: String, providers: String },

    #[snafu(display(
        "Cannot satisfy {field} '{relation}' of {package}: {reason}. Add a provider to the \
         requested packages, or add the dependency to the exclude list if the image does not need it"
    ))]
    Unsatisfiable {
        /// name and version
        package: String,
        field: String,
        relation: String,
        reason: String,
    },

    // ----- lock -----
    #[snafu(display("Cannot parse lock file {}: {source}. Regenerate it with `{REFRESH_COMMAND}`", path.display()))]
    LockSyntax {
        path: PathBuf,
        source: toml::de::Error,
    },

    #[snafu(display("Cannot serialize the lock: {source}"))]
    LockSerialize { source: toml::ser::Error },

    #[snafu(display("Lock entry for {package} is unusable: {message}. Regenerate the lock with `{REFRESH_COMMAND}`"))]
    BadLockEntry { package: String, message: String },

    // ----- .deb files -----
    #[snafu(display("{} is not a Debian binary package: {message}", path.display()))]
    NotADeb { path: PathBuf, message: String },

    #[snafu(display(
        "{} contains the entry '{entry}' that would land outside {}; refusing to extract it",
        deb.display(), dest.display()
    ))]
    UnsafeEntry {
        deb: PathBuf,
        dest: PathBuf,
        entry: String,
    },

    #[snafu(display("Cannot extract {} into {}: {source}", deb.display(), dest.display()))]
    Extract {
        deb: PathBuf,
        dest: PathBuf,
        source: std::io::Error,
    },

    // ----- local files -----
    #[snafu(display("Cannot {action} {}: {source}", path.display()))]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },
}
