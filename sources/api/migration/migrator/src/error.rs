//! Errors of the migrator. Each names the path, version or migration it is about and, where
//! there is one, what to do about it. None of them leaves the datastore changed: the switch to
//! a migrated copy is the last step of a run, and nothing fails after it.
use crate::Version;
use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// Everything that fails once the store's version is known is wrapped in this, so that
    /// the message says which move failed.
    #[snafu(display("Cannot move the datastore from version {from} to {to}: {source}"))]
    Move {
        from: Version,
        to: Version,
        #[snafu(source(from(Error, Box::new)))]
        source: Box<Error>,
    },

    #[snafu(display(
        "Another migrator is working on {}; wait for it to finish (lock file {})",
        base.display(),
        lock.display()
    ))]
    Locked { base: PathBuf, lock: PathBuf },

    #[snafu(display(
        "The datastore directory {} is not named v<version>, so its version is unknown; \
         point 'current' at a directory such as v1.2.0",
        path.display()
    ))]
    UnversionedStore { path: PathBuf },

    #[snafu(display("Invalid version '{version}': {reason}"))]
    InvalidVersion { version: String, reason: String },

    #[snafu(display(
        "Version {version} has more than three numbers, which the update manifest's semantic \
         versions cannot express"
    ))]
    UnsupportedVersion { version: Version },

    #[snafu(display(
        "Cannot read the unverified migrations directory {}: {source}",
        dir.display()
    ))]
    ReadMigrationsDir {
        dir: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "Migration file {} is not named migrate_v<version>_<name> ({reason}); rename or remove it",
        path.display()
    ))]
    BadMigrationName { path: PathBuf, reason: String },

    #[snafu(display("Migration {} is not an executable file; fix its mode", path.display()))]
    NotExecutable { path: PathBuf },

    #[snafu(display(
        "Cannot read the trusted root {}: {source}; it is part of the OS image \
         (/usr/share/updates/root.json), so the image is incomplete",
        path.display()
    ))]
    ReadRoot {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "The migration metadata in {} does not verify against the trusted root {}: {source}; \
         the updater saves it during an update, so it is damaged or was not made by this \
         repository",
        dir.display(),
        root.display()
    ))]
    LoadMirror {
        dir: PathBuf,
        root: PathBuf,
        source: Box<tough::error::Error>,
    },

    #[snafu(display("Cannot read manifest.json from the signed migration metadata in {}: {source}", dir.display()))]
    ManifestRead {
        dir: PathBuf,
        source: Box<tough::error::Error>,
    },

    #[snafu(display(
        "The signed metadata in {} lists no manifest.json, so it cannot say which migrations \
         to run",
        dir.display()
    ))]
    ManifestMissing { dir: PathBuf },

    #[snafu(display("The signed manifest.json in {} is invalid: {source}", dir.display()))]
    ManifestParse {
        dir: PathBuf,
        #[snafu(source(from(update_metadata::Error, Box::new)))]
        source: Box<update_metadata::Error>,
    },

    #[snafu(display("The signed manifest has no usable path from {from} to {to}: {source}"))]
    ManifestPath {
        from: Version,
        to: Version,
        #[snafu(source(from(update_metadata::Error, Box::new)))]
        source: Box<update_metadata::Error>,
    },

    #[snafu(display(
        "The signed manifest lists '{name}' as a migration, which is refused: {reason}"
    ))]
    BadListedName { name: String, reason: String },

    #[snafu(display(
        "The signed manifest lists migration {name}, whose version is not between {from} and \
         {to}; the repository's manifest is wrong"
    ))]
    MigrationOutOfRange {
        name: String,
        from: String,
        to: String,
    },

    #[snafu(display(
        "Migration {name} is listed in the manifest but is not a target signed by the targets \
         key, so it is refused"
    ))]
    MigrationNotSigned { name: String },

    #[snafu(display(
        "Migration {name} is signed but missing from the migration metadata ({} does not \
         exist); the update that saved it was incomplete",
        path.display()
    ))]
    MigrationMissing { name: String, path: PathBuf },

    #[snafu(display(
        "Migration {name} ({}) does not match the length and sha256 signed for it ({detail}), \
         so it is refused",
        path.display()
    ))]
    MigrationMismatch {
        name: String,
        path: PathBuf,
        detail: String,
    },

    #[snafu(display("Cannot create a memory file for migration {name}: {source}"))]
    MemoryFile { name: String, source: nix::Error },

    #[snafu(display("Cannot fill the memory file of migration {name}: {source}"))]
    WriteMemoryFile {
        name: String,
        source: std::io::Error,
    },

    #[snafu(display("Cannot seal the memory file of migration {name}: {source}"))]
    Seal { name: String, source: nix::Error },

    #[snafu(display("Migration {name} is refused after sealing: {reason}"))]
    SealMismatch { name: String, reason: String },

    #[snafu(display("Cannot start the runtime that reads the signed metadata: {source}"))]
    Runtime { source: std::io::Error },

    #[snafu(display(
        "Cannot make a scratch directory for the signed metadata in {}: {source}",
        path.display()
    ))]
    ScratchDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("{} cannot be written as a file:// URL", path.display()))]
    FileUrl { path: PathBuf },

    #[snafu(display(
        "Cannot open the datastore {} to migrate it: {source}; stop whatever uses it (the API \
         server) and try again",
        path.display()
    ))]
    OpenSource {
        path: PathBuf,
        source: datastore::Error,
    },

    #[snafu(display("Cannot finish the migrated copy {}: {source}", path.display()))]
    OpenCopy {
        path: PathBuf,
        source: datastore::Error,
    },

    #[snafu(display("Filesystem operation on {} failed: {source}", path.display()))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot start migration {name}: {source}"))]
    Spawn {
        name: String,
        source: std::io::Error,
    },

    #[snafu(display("Migration {name} ({direction}) failed with {status}: {message}"))]
    MigrationFailed {
        name: String,
        direction: String,
        status: std::process::ExitStatus,
        /// The migration's own last words (its error message).
        message: String,
    },

    #[snafu(display("Cannot read os-release file {}: {source}", path.display()))]
    ReadOsRelease {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "os-release file {} is malformed: {source}; pass --target-version instead",
        path.display()
    ))]
    OsReleaseSyntax {
        path: PathBuf,
        source: os_release::SyntaxError,
    },

    #[snafu(display(
        "os-release file {} has no VERSION_ID; pass --target-version instead",
        path.display()
    ))]
    NoVersionId { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
