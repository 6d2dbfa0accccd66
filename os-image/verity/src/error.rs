//! Errors returned by this crate.
//!
//! Every message says what went wrong and, where there is one, what to do about it.

use snafu::Snafu;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building, checking or describing a hash tree.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "{which} block size {size} is not supported: use a power of two between 512 and 524288 \
         (Ballast uses 4096)"
    ))]
    InvalidBlockSize { which: &'static str, size: u32 },

    #[snafu(display(
        "the salt is {len} bytes long, but dm-verity accepts at most {max}: use a shorter salt \
         (32 bytes is usual)"
    ))]
    SaltTooLong { len: usize, max: usize },

    #[snafu(display("the data is empty: dm-verity needs at least one {block_size}-byte block"))]
    EmptyData { block_size: u32 },

    #[snafu(display(
        "the data is {len} bytes long, which is not a multiple of the {block_size}-byte data \
         block size; veritysetup would silently leave the last {tail} bytes unprotected, so this \
         is refused: pad the image first (for example `truncate -s %{block_size} FILE`)"
    ))]
    UnalignedData {
        len: u64,
        block_size: u32,
        tail: u64,
    },

    #[snafu(display("the data is too large for a dm-verity tree: {blocks} blocks"))]
    TooManyBlocks { blocks: u64 },

    #[snafu(display("failed to read the data at byte offset {offset}: {source}"))]
    ReadData { offset: u64, source: io::Error },

    #[snafu(display(
        "the data ended after {got} bytes, but {expected} bytes were announced: was the file \
         changed or truncated while it was being hashed?"
    ))]
    ShortData { got: u64, expected: u64 },

    #[snafu(display("failed to write the hash tree: {source}"))]
    WriteHash { source: io::Error },

    #[snafu(display("failed to read the hash tree: {source}"))]
    ReadHash { source: io::Error },

    #[snafu(display("cannot open the data file '{}': {source}", path.display()))]
    OpenData { path: PathBuf, source: io::Error },

    #[snafu(display("cannot find the size of the data file '{}': {source}", path.display()))]
    DataSize { path: PathBuf, source: io::Error },

    #[snafu(display(
        "cannot create the hash file '{}': {source} (check that its directory exists and is \
         writable)",
        path.display()
    ))]
    CreateHash { path: PathBuf, source: io::Error },

    #[snafu(display("cannot open the hash file '{}': {source}", path.display()))]
    OpenHash { path: PathBuf, source: io::Error },

    #[snafu(display("cannot read random bytes for the salt from /dev/urandom: {source}"))]
    RandomSalt { source: io::Error },

    #[snafu(display("'{input}' is not valid hexadecimal: {reason}"))]
    InvalidHex { input: String, reason: String },

    #[snafu(display(
        "a root hash must be 32 bytes (64 hex digits) for sha256, but {len} bytes were given"
    ))]
    RootHashLength { len: usize },

    #[snafu(display(
        "root hash mismatch: expected {expected}, but the data gives {actual}; the data, the salt \
         or the expected root hash is wrong"
    ))]
    RootHashMismatch { expected: String, actual: String },

    #[snafu(display(
        "the hash tree is {actual} bytes long, but this data needs {expected} bytes: was it \
         built for other data or with other block sizes?"
    ))]
    HashTreeLength { expected: u64, actual: u64 },

    #[snafu(display(
        "the hash tree differs from the one computed from the data, first at byte offset {offset}: \
         rebuild it with `verity format`"
    ))]
    HashTreeMismatch { offset: u64 },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
