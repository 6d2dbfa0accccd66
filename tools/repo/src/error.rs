//! Errors returned by the repository tool.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while making keys, adding images, signing or validating.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "signing keys already exist in '{}'; making new ones would orphan every repository signed \
         with them, so nothing was written (remove the directory first if that is really wanted)",
        dir.display()
    ))]
    KeysExist { dir: PathBuf },

    #[snafu(display(
        "no signing keys in '{}' (expected root.json and keys/*.pk8); make them with `cargo xtask \
         repo keys`",
        dir.display()
    ))]
    NoKeys { dir: PathBuf },

    #[snafu(display("cannot generate a signing key: the system random source failed"))]
    GenerateKey,

    #[snafu(display("cannot use the key '{}': {source}", path.display()))]
    ParseKey {
        path: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display("cannot compute the key ID of '{}': {source}", path.display()))]
    KeyId {
        path: PathBuf,
        #[snafu(source(from(tough::schema::Error, Box::new)))]
        source: Box<tough::schema::Error>,
    },

    #[snafu(display("cannot sign root.json: {source}"))]
    SignRoot {
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display("cannot {action} '{}': {source}", path.display()))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[snafu(display("cannot turn '{}' into a file:// URL: it must be an absolute path", path.display()))]
    FileUrl { path: PathBuf },

    #[snafu(display(
        "cannot read the build manifest '{}': {source}; build the images first with `cargo xtask \
         build`",
        path.display()
    ))]
    BuildManifest {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[snafu(display("{what} {value:?} cannot go into a target name: {reason}"))]
    BadName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    #[snafu(display(
        "'{}' does not match the build manifest (sha256 {actual}, manifest says {expected}): the \
         build directory changed after the build; build again",
        path.display()
    ))]
    ImageChanged {
        path: PathBuf,
        actual: String,
        expected: String,
    },

    #[snafu(display("cannot compress '{}' with zstd: {source}", path.display()))]
    Compress { path: PathBuf, source: io::Error },

    #[snafu(display(
        "the repository at {url} cannot be loaded with the root of trust '{}': {source}",
        root.display()
    ))]
    LoadRepo {
        url: String,
        root: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "the {role} metadata of the repository at {url} has expired; run `cargo xtask repo \
         refresh-timestamp` (timestamp) or `cargo xtask repo refresh` (any role) with the signing \
         keys"
    ))]
    Expired {
        url: String,
        role: tough::schema::RoleType,
    },

    #[snafu(display(
        "the target {name} failed verification against the signed metadata: {source}; the file in \
         the repository was changed or damaged after signing, add the images again"
    ))]
    TargetVerify {
        name: String,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "there is no repository in '{}' (no metadata/timestamp.json); add images first with \
         `cargo xtask repo add`",
        dir.display()
    ))]
    NoRepo { dir: PathBuf },

    #[snafu(display("the repository at {url} has no manifest.json target"))]
    ManifestMissing { url: String },

    #[snafu(display(
        "the target {name} is listed in manifest.json but missing from the repository"
    ))]
    TargetMissing { name: String },

    #[snafu(display(
        "the target {name} is not a valid zstd stream: {source}; add the images again"
    ))]
    Decompress { name: String, source: io::Error },

    #[snafu(display("{what} is not a valid target name: {source}"))]
    TargetName {
        what: String,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display("cannot update the repository metadata: {source}"))]
    Edit {
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "cannot sign the repository metadata: {source}; the keys in '{}' must match the root of \
         trust root.json beside them",
        keys.display()
    ))]
    Sign {
        keys: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display("cannot write the repository to '{}': {source}", path.display()))]
    WriteRepo {
        path: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display("manifest.json does not parse at {path}: {message}"))]
    ManifestParse { path: String, message: String },

    #[snafu(display("cannot serialize manifest.json: {source}"))]
    ManifestSerialize { source: serde_json::Error },

    #[snafu(display("manifest.json is inconsistent:\n  - {}", problems.join("\n  - ")))]
    ManifestInvalid { problems: Vec<String> },

    #[snafu(display(
        "{variant} {arch} {version} is already in the repository; pass --replace to replace it \
         (nodes that already installed it keep the old build)"
    ))]
    Duplicate {
        variant: String,
        arch: String,
        version: semver::Version,
    },

    #[snafu(display(
        "max_version {max_version} is lower than the version {version} being added: nodes would \
         never be offered it"
    ))]
    MaxBelowVersion {
        version: semver::Version,
        max_version: semver::Version,
    },

    #[snafu(display("the wave policy '{}' is invalid: {reason}", path.display()))]
    WavePolicy { path: PathBuf, reason: String },

    #[snafu(display("the waves are invalid: {reason}"))]
    Waves { reason: String },

    #[snafu(display("cannot add {span} to {base}: {source}"))]
    TimeOverflow {
        base: jiff::Timestamp,
        span: jiff::Span,
        source: jiff::Error,
    },

    #[snafu(display("a background task failed: {source}"))]
    Join { source: tokio::task::JoinError },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Manifest, wave and time errors keep the variants they had when that code lived here, so that
/// callers matching on them see no difference.
impl From<update_metadata::Error> for Error {
    fn from(e: update_metadata::Error) -> Self {
        use update_metadata::Error as M;
        match e {
            M::ManifestParse { path, message } => Error::ManifestParse { path, message },
            M::ManifestSerialize { source } => Error::ManifestSerialize { source },
            M::ManifestInvalid { problems } => Error::ManifestInvalid { problems },
            M::MigrationsOverlap { first, second } => Error::ManifestInvalid {
                problems: vec![format!("migrations {first} and {second} overlap")],
            },
            M::Duplicate {
                variant,
                arch,
                version,
            } => Error::Duplicate {
                variant,
                arch,
                version,
            },
            M::MaxBelowVersion {
                version,
                max_version,
            } => Error::MaxBelowVersion {
                version,
                max_version,
            },
            M::ReadWavePolicy { path, source } => Error::Io {
                action: "read",
                path,
                source,
            },
            M::WavePolicy { path, reason } => Error::WavePolicy { path, reason },
            M::Waves { reason } => Error::Waves { reason },
            M::TimeOverflow { base, span, source } => Error::TimeOverflow { base, span, source },
        }
    }
}
