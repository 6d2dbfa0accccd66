//! Errors of a migration. Each names the key, metadata entry or path it is about.
use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// The command line does not follow the migration interface.
    #[snafu(display(
        "{message}\nA migration is run as: NAME --source-datastore DIR --target-datastore DIR \
         (--forward | --backward)"
    ))]
    Usage { message: String },

    #[snafu(display(
        "Cannot open the target datastore {}: {source}; the migrator passes a copy it has just \
         made, so check that the path is a datastore version directory",
        path.display()
    ))]
    OpenTarget {
        path: PathBuf,
        source: datastore::Error,
    },

    #[snafu(display("'{key}' is not a valid {kind} key: {source}"))]
    InvalidKey {
        key: String,
        kind: &'static str,
        source: datastore::Error,
    },

    #[snafu(display("Cannot read {key} from the target datastore: {source}"))]
    Read {
        key: String,
        source: datastore::Error,
    },

    #[snafu(display("Cannot write {key} to the target datastore: {source}"))]
    Write {
        key: String,
        source: datastore::Error,
    },

    #[snafu(display("The stored value of {key} is not JSON: {source}"))]
    CorruptValue {
        key: String,
        source: serde_json::Error,
    },

    /// A rename would overwrite a key that already holds a value.
    #[snafu(display(
        "Cannot rename {from} to {to}: {to} already holds a value; the store has both the old \
         and the new name, so remove one of them with the previous OS version and update again"
    ))]
    RenameConflict { from: String, to: String },

    #[snafu(display(
        "Cannot keep the removed value of {key} at {} for a later downgrade: {source}",
        path.display()
    ))]
    SaveValue {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A custom migration step gave up.
    #[snafu(display("{message}"))]
    Failed { message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
