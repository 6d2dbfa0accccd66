//! The datastore's errors. Every variant names the key, transaction or path it is about.
use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Invalid key '{name}': {reason}"))]
    InvalidKey { name: String, reason: String },

    #[snafu(display("Invalid transaction name '{name}': {reason}"))]
    InvalidTransaction { name: String, reason: String },

    #[snafu(display("Transaction '{tx}' has no pending changes"))]
    EmptyTransaction { tx: String },

    #[snafu(display("No commit {id} in the settings history"))]
    NoSuchCommit { id: u64 },

    #[snafu(display("Datastore I/O failed at {}: {source}", path.display()))]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Stored value at {key} is not valid JSON: {source}"))]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },

    #[snafu(display("Cannot serialize settings: {reason}"))]
    Serialization { reason: String },

    /// A value handed to `set_keys`/`set_metadata` is not JSON text.
    #[snafu(display("Value for {key} is not valid JSON text: {source}"))]
    InvalidValue {
        key: String,
        source: serde_json::Error,
    },

    /// A key would be both a value and a group of values ("a.b" set while "a.b.c" exists, or the
    /// reverse). Nothing was written.
    #[snafu(display("Key {key} conflicts with {other}: {reason}"))]
    KeyConflict {
        key: String,
        other: String,
        reason: String,
    },

    /// A datastore file other than a value (journal, history record) cannot be parsed.
    #[snafu(display(
        "Datastore file {} is damaged: {source}; move it away to continue",
        path.display()
    ))]
    CorruptFile {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// The directory is not a datastore (no `live` directory in it).
    #[snafu(display(
        "{} is not a datastore (no 'live' directory); create it first",
        path.display()
    ))]
    NotADatastore { path: PathBuf },

    /// Another process (or another handle in this process) has the datastore open.
    #[snafu(display(
        "Datastore {} is in use by another process or handle; only one may open it at a time",
        path.display()
    ))]
    Locked { path: PathBuf },

    /// A commit was made durable together with others (group commit) and that failed.
    #[snafu(display("Commit of transaction '{tx}' failed: {reason}"))]
    GroupCommit { tx: String, reason: String },

    #[snafu(display("Invalid datastore version '{version}': {reason}"))]
    InvalidVersion { version: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
