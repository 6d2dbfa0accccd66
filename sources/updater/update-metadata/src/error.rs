//! Errors of the update metadata: a manifest that does not parse or does not hold together, a
//! wave policy that makes no sense, a time that overflows.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading, changing or checking update metadata.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("manifest.json does not parse at {path}: {message}"))]
    ManifestParse { path: String, message: String },

    #[snafu(display("cannot serialize manifest.json: {source}"))]
    ManifestSerialize { source: serde_json::Error },

    #[snafu(display("manifest.json is inconsistent:\n  - {}", problems.join("\n  - ")))]
    ManifestInvalid { problems: Vec<String> },

    #[snafu(display(
        "the manifest's migrations {first} and {second} overlap, so there is no order to run \
         them in; the repository must list each step between two versions once"
    ))]
    MigrationsOverlap { first: String, second: String },

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

    #[snafu(display("cannot read the wave policy '{}': {source}", path.display()))]
    ReadWavePolicy { path: PathBuf, source: io::Error },

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
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
