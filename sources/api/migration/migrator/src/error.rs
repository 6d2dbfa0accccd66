//! Errors of the migrator. Each names the path, version or migration it is about and, where
//! there is one, what to do about it.
use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "Another migrator is working on {}; wait for it to finish (lock file {})",
        base.display(),
        lock.display()
    ))]
    Locked { base: PathBuf, lock: PathBuf },

    #[snafu(display(
        "No datastore at {}: the 'current' link is missing; create the store first (storewolf) \
         or pass the directory that holds 'current'",
        link.display()
    ))]
    NoDatastore { link: PathBuf },

    #[snafu(display(
        "The datastore directory {} is not named v<version>, so its version is unknown; \
         point 'current' at a directory such as v1.2.0",
        path.display()
    ))]
    UnversionedStore { path: PathBuf },

    #[snafu(display("Invalid version '{version}': {reason}"))]
    InvalidVersion { version: String, reason: String },

    #[snafu(display(
        "No migration path from {from} to {to}: cannot read the migrations directory {}: \
         {source}",
        dir.display()
    ))]
    NoMigrationPath {
        from: String,
        to: String,
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
        "Cannot open the datastore {} to migrate it: {source}; stop whatever uses it (the API \
         server) and try again",
        path.display()
    ))]
    OpenSource {
        path: PathBuf,
        source: datastore::Error,
    },

    #[snafu(display(
        "Cannot finish the migrated copy {}: {source}; the datastore was left unchanged",
        path.display()
    ))]
    OpenCopy {
        path: PathBuf,
        source: datastore::Error,
    },

    #[snafu(display("Filesystem operation on {} failed: {source}", path.display()))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot start migration {name} ({}): {source}", path.display()))]
    Spawn {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "Migration {name} ({direction}) failed with {status}; the datastore was left unchanged. \
         Its error output:\n{stderr}"
    ))]
    MigrationFailed {
        name: String,
        direction: String,
        status: std::process::ExitStatus,
        stderr: String,
    },

    #[snafu(display("Cannot read os-release file {}: {source}", path.display()))]
    ReadOsRelease {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "os-release file {} has no VERSION_ID; pass --target-version instead",
        path.display()
    ))]
    NoVersionId { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
