//! Errors of the updater. Each names the file, URL, target or partition involved and, where
//! there is one, what to do about it.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can stop a command.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("cannot read the updater configuration '{}': {source}", path.display()))]
    ReadConfig { path: PathBuf, source: io::Error },

    #[snafu(display(
        "the updater configuration '{}' is invalid: {source} (it is rendered from \
         settings.updates; set the missing or wrong setting through the API)",
        path.display()
    ))]
    ParseConfig {
        path: PathBuf,
        source: toml::de::Error,
    },

    #[snafu(display("the updater configuration '{}' is invalid: {reason}", path.display()))]
    BadConfig { path: PathBuf, reason: String },

    #[snafu(display("cannot read the OS release file '{}': {source}", path.display()))]
    ReadOsRelease { path: PathBuf, source: io::Error },

    #[snafu(display("the OS release file '{}' is malformed: {source}", path.display()))]
    OsReleaseSyntax {
        path: PathBuf,
        source: os_release::SyntaxError,
    },

    #[snafu(display("the OS release file '{}' has no {key}", path.display()))]
    OsReleaseKey { path: PathBuf, key: &'static str },

    #[snafu(display(
        "VERSION_ID={value} in '{}' is not a semantic version (x.y.z): {source}",
        path.display()
    ))]
    OsReleaseVersion {
        path: PathBuf,
        value: String,
        source: semver::Error,
    },

    #[snafu(display(
        "cannot read the root of trust '{}': {source}; it ships in the image, so the image is \
         incomplete or --root-json names the wrong file",
        path.display()
    ))]
    ReadRoot { path: PathBuf, source: io::Error },

    #[snafu(display("{url} is not a usable repository URL: {reason}"))]
    BadUrl { url: String, reason: String },

    #[snafu(display("cannot find this node's boot disk: {source}"))]
    FindDisk {
        #[snafu(source(from(signpost::Error, Box::new)))]
        source: Box<signpost::Error>,
    },

    #[snafu(display("cannot {operation} on '{}': {source}", disk.display()))]
    Signpost {
        operation: &'static str,
        disk: PathBuf,
        #[snafu(source(from(signpost::Error, Box::new)))]
        source: Box<signpost::Error>,
    },

    #[snafu(display("cannot read the partition table of '{}': {source}", disk.display()))]
    Layout {
        disk: PathBuf,
        source: disk_layout::Error,
    },

    #[snafu(display(
        "cannot load the update repository {url} with the root of trust '{}': {source}",
        root.display()
    ))]
    LoadRepo {
        url: String,
        root: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "the {role} metadata of the update repository {url} is not signed by the keys that the \
         root of trust '{}' names, so it was refused and nothing was written (the URL points at \
         another repository, or someone tampered with this one): {source}",
        root.display()
    ))]
    Untrusted {
        url: String,
        role: tough::schema::RoleType,
        root: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "the {role} metadata of the update repository {url} has expired, so it cannot be \
         trusted and nothing was written; the publisher must refresh the repository (or, if \
         the repository is current, this node's clock is wrong)"
    ))]
    Expired {
        url: String,
        role: tough::schema::RoleType,
    },

    #[snafu(display("the update repository {url} has no signed manifest.json target"))]
    ManifestMissing { url: String },

    #[snafu(display("{source}"))]
    Manifest { source: update_metadata::Error },

    #[snafu(display(
        "{version} is not in the update repository for {variant} {arch}; available: {available}"
    ))]
    NoSuchVersion {
        version: semver::Version,
        variant: String,
        arch: String,
        available: String,
    },

    #[snafu(display(
        "{version} in the update repository is for {other}, not for this node's {variant} \
         {arch}; an image of another variant or arch would not boot here, so nothing was written"
    ))]
    OtherVariant {
        version: semver::Version,
        variant: String,
        arch: String,
        other: String,
    },

    #[snafu(display(
        "{version} is older than the running {running}; a downgrade must be asked for with \
         --allow-downgrade (settings migrations then run backward at its first boot)"
    ))]
    Downgrade {
        version: semver::Version,
        running: semver::Version,
    },

    #[snafu(display(
        "the manifest lists {name} as the {kind} image of {version}, but it is not a signed \
         target of the repository; the repository is broken, nothing was written"
    ))]
    ImageNotSigned {
        name: String,
        kind: &'static str,
        version: semver::Version,
    },

    #[snafu(display(
        "the migration {name} listed in the manifest is not a signed target of the repository; \
         the repository is broken, nothing was written"
    ))]
    MigrationNotSigned { name: String },

    #[snafu(display("{name} is not a signed target of the update repository"))]
    TargetNotSigned { name: String },

    #[snafu(display("cannot fetch target {name}: {source}"))]
    FetchTarget {
        name: String,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display("target {name} {problem}: {source}"))]
    TargetVerify {
        name: String,
        problem: &'static str,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "target {name} is not a valid zstd stream although it matches the signed metadata: \
         {source}; the repository published a broken image"
    ))]
    Decompress { name: String, source: io::Error },

    #[snafu(display(
        "target {name} decompresses to more than the {size} bytes of {partition} on '{}'; the \
         disk's partitions are too small for this image",
        disk.display()
    ))]
    PartitionOverflow {
        name: String,
        partition: &'static str,
        size: u64,
        disk: PathBuf,
    },

    #[snafu(display(
        "cannot write target {name} to {partition} on '{}': {source}",
        disk.display()
    ))]
    WritePartition {
        name: String,
        partition: &'static str,
        disk: PathBuf,
        source: io::Error,
    },

    #[snafu(display(
        "{source}; the inactive set {set} was left unbootable and the running set is untouched"
    ))]
    Incomplete {
        set: disk_layout::BootSet,
        #[snafu(source(from(Error, Box::new)))]
        source: Box<Error>,
    },

    #[snafu(display("cannot open the disk '{}' for writing: {source}", disk.display()))]
    OpenDisk { disk: PathBuf, source: io::Error },

    #[snafu(display("cannot {action} '{}': {source}", path.display()))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[snafu(display("cannot save migration target {name} into '{}': {source}", dir.display()))]
    SaveMigration {
        name: String,
        dir: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "the migrations mirror written to '{}' does not load back with tough: {source}; the \
         repository changed while it was read, try again",
        dir.display()
    ))]
    VerifyMirror {
        dir: PathBuf,
        #[snafu(source(from(tough::error::Error, Box::new)))]
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "the migrations mirror in '{}' holds targets metadata version {mirror}, but version \
         {fetched} was fetched; the repository changed while it was read, try again",
        dir.display()
    ))]
    MirrorVersion {
        dir: PathBuf,
        mirror: u64,
        fetched: u64,
    },

    #[snafu(display("cannot encode {what} as JSON: {source}"))]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },

    #[snafu(display(
        "another updog is changing this node's update state (lock '{}' is held); wait for it to \
         finish",
        path.display()
    ))]
    Busy { path: PathBuf },

    #[snafu(display("the reboot command is empty"))]
    EmptyRebootCommand,

    #[snafu(display("cannot run the reboot command `{command}`: {source}"))]
    RebootSpawn { command: String, source: io::Error },

    #[snafu(display("the reboot command `{command}` failed with {status}"))]
    RebootFailed {
        command: String,
        status: std::process::ExitStatus,
    },

    #[snafu(display("a background task failed: {source}"))]
    Join { source: tokio::task::JoinError },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
