//! dm-verity hash trees for Ballast's read-only root image.
//!
//! # Background
//!
//! Ballast boots a read-only erofs root whose every block is checked by the kernel's dm-verity
//! target against a Merkle tree of sha256 digests. The tree lives on its own partition (HASH-A
//! or HASH-B); only its root hash and salt travel on the kernel command line, so changing a single
//! byte of the root image makes the read fail (and, with `restart_on_corruption`, reboots the
//! machine into the other partition set).
//!
//! This crate computes that tree in Rust, so the image build needs no device-mapper and no root.
//! Its output is byte-identical to
//! `veritysetup format --no-superblock --hash=sha256 --data-block-size=4096
//! --hash-block-size=4096 --salt=<hex> DATA HASH`, and the root hash is the one veritysetup
//! prints; the tests compare both against veritysetup itself.
//!
//! The format (hash format version 1):
//!
//! * every data block is hashed as `sha256(salt || block)`;
//! * the digests are packed into hash blocks, `hash_block_size / 32` per block (128 for 4096),
//!   the last block of a level padded with zeroes;
//! * each level is hashed the same way to give the next one, until a level fits in one hash
//!   block; the root hash is `sha256(salt || that top block)`;
//! * the levels are stored top level first, bottom level last;
//! * a single data block needs no tree at all: the root hash is the hash of that block and the
//!   hash output is empty (veritysetup does the same).
//!
//! Building is fast: the data is read in large sequential reads on the calling thread and
//! hashed on every core, with the `sha2` crate picking the CPU's SHA extensions (SHA-NI) at
//! run time when present. `cargo run --release -p verity --example bench` compares the speed
//! with veritysetup on a 1 GiB file.
//!
//! # Usage
//!
//! ```
//! use verity::{build_hash_tree, to_hex, VerityParams};
//!
//! let data = vec![7u8; 4096 * 300];
//! let params = VerityParams::new(vec![0x42; 32]);
//! let mut tree = Vec::new();
//! let output = build_hash_tree(&mut &data[..], data.len() as u64, &mut tree, &params)?;
//! assert_eq!(output.data_blocks, 300);
//! assert_eq!(output.hash_size, tree.len() as u64);
//!
//! // What the image builder puts on the kernel command line (`ballast.roothash=`,
//! // `ballast.salt=`, `ballast.datablocks=`, see the `boot-params` crate); the early init
//! // builds the device-mapper table from them.
//! let (root_hash, salt) = (to_hex(&output.root_hash), params.salt_hex());
//! assert_eq!((root_hash.len(), salt.as_str()), (64, "42".repeat(32).as_str()));
//! # Ok::<(), verity::Error>(())
//! ```
//!
//! For files, [`format_file`] and [`verify_file`] do the opening; the `verity` binary wraps
//! them: `verity format DATA HASH [--salt HEX]` prints the root hash and salt as JSON, and
//! `verity verify DATA HASH --root-hash HEX --salt HEX` checks a tree.
//!
//! # Current limitations
//!
//! * Only hash format 1 with sha256; no superblock is written (the kernel table then uses hash
//!   start block 0), and no forward error correction data.
//! * The data length must be a multiple of the data block size. veritysetup silently ignores a
//!   trailing partial block, leaving it unprotected; this crate refuses such input instead.
//! * The whole tree is kept in memory while it is built: about 1/127 of the data size (8 MiB
//!   for a 1 GiB root image).
#![forbid(unsafe_code)]

mod error;
mod params;
mod tree;

pub use error::{Error, Result};
pub use params::{VerityParams, DEFAULT_BLOCK_SIZE, DEFAULT_SALT_SIZE, DIGEST_SIZE, MAX_SALT_SIZE};
pub use tree::{build_hash_tree, hash_tree_size, level_sizes, verify_hash_tree, VerityOutput};

use snafu::ResultExt;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// Lowercase hexadecimal spelling of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Parse hexadecimal (either case). An empty string or `-` gives no bytes, matching how
/// veritysetup spells an empty salt.
pub fn from_hex(text: &str) -> Result<Vec<u8>> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "-" {
        return Ok(Vec::new());
    }
    hex::decode(trimmed).map_err(|e| Error::InvalidHex {
        input: text.to_string(),
        reason: e.to_string(),
    })
}

/// Parse a hexadecimal sha256 root hash (64 hex digits).
pub fn root_hash_from_hex(text: &str) -> Result<[u8; 32]> {
    let bytes = from_hex(text)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::RootHashLength { len: bytes.len() })
}

/// Size of a data file or block device in bytes.
fn data_size(file: &mut File, path: &Path) -> Result<u64> {
    // Seeking to the end works for block devices too, where the metadata length is 0.
    let len = file
        .seek(SeekFrom::End(0))
        .and_then(|len| file.rewind().map(|()| len))
        .context(error::DataSizeSnafu { path })?;
    Ok(len)
}

/// Build the hash tree of the file (or block device) at `data_path` into `hash_path`, which is
/// created or truncated. The whole file is protected, so its size must be a multiple of the data
/// block size.
pub fn format_file(
    data_path: impl AsRef<Path>,
    hash_path: impl AsRef<Path>,
    params: &VerityParams,
) -> Result<VerityOutput> {
    let data_path = data_path.as_ref();
    let hash_path = hash_path.as_ref();
    params.validate()?;
    let mut data = File::open(data_path).context(error::OpenDataSnafu { path: data_path })?;
    let len = data_size(&mut data, data_path)?;
    let mut hash = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(hash_path)
        .context(error::CreateHashSnafu { path: hash_path })?;
    build_hash_tree(&mut data, len, &mut hash, params)
}

/// Check that the tree in `hash_path` (trailing bytes ignored) matches the data in `data_path`
/// and that its root hash is `root_hash`.
pub fn verify_file(
    data_path: impl AsRef<Path>,
    hash_path: impl AsRef<Path>,
    params: &VerityParams,
    root_hash: &[u8],
) -> Result<VerityOutput> {
    let data_path = data_path.as_ref();
    let hash_path = hash_path.as_ref();
    let mut data = File::open(data_path).context(error::OpenDataSnafu { path: data_path })?;
    let len = data_size(&mut data, data_path)?;
    let mut hash = File::open(hash_path).context(error::OpenHashSnafu { path: hash_path })?;
    verify_hash_tree(&mut data, len, &mut hash, params, root_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_helpers() {
        assert_eq!(to_hex(&[0, 0xff, 0x10]), "00ff10");
        assert_eq!(from_hex("00FF10").unwrap(), vec![0, 0xff, 0x10]);
        assert_eq!(from_hex("-").unwrap(), Vec::<u8>::new());
        assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
        let err = from_hex("abc").unwrap_err().to_string();
        assert!(err.contains("'abc' is not valid hexadecimal"), "{err}");
        assert!(from_hex("zz").is_err());
        let root = "11".repeat(32);
        assert_eq!(root_hash_from_hex(&root).unwrap(), [0x11; 32]);
        assert!(matches!(
            root_hash_from_hex("1111").unwrap_err(),
            Error::RootHashLength { len: 2 }
        ));
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let hash = dir.path().join("hash");
        std::fs::write(&data, vec![3u8; 4096 * 200]).unwrap();
        // A stale, longer hash file is truncated.
        std::fs::write(&hash, vec![9u8; 4096 * 10]).unwrap();
        let params = VerityParams::new(vec![1, 2, 3]);
        let out = format_file(&data, &hash, &params).unwrap();
        assert_eq!(std::fs::metadata(&hash).unwrap().len(), out.hash_size);
        assert_eq!(out.hash_size, hash_tree_size(200, &params));
        verify_file(&data, &hash, &params, &out.root_hash).unwrap();

        let missing = dir.path().join("missing");
        let err = format_file(&missing, &hash, &params)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open the data file"), "{err}");
    }
}
