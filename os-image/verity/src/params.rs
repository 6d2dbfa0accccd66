//! The parameters a hash tree is built with.

use crate::error::{self, Result};
use snafu::{ensure, ResultExt};
use std::io::Read;

/// Size of a sha256 digest, the only hash this crate builds trees with.
pub const DIGEST_SIZE: usize = 32;

/// Longest salt the kernel and veritysetup accept.
pub const MAX_SALT_SIZE: usize = 256;

/// Block size Ballast uses for both data and hash blocks.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;

/// Salt length used by [`VerityParams::with_random_salt`] (the same as veritysetup's default).
pub const DEFAULT_SALT_SIZE: usize = 32;

/// How a hash tree is built: hash format 1, sha256, the salt and the two block sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// Salt hashed in front of every block; may be empty, at most [`MAX_SALT_SIZE`] bytes.
    pub salt: Vec<u8>,
    /// Size of the data blocks being protected; a power of two from 512 to 512 KiB.
    pub data_block_size: u32,
    /// Size of the hash blocks holding the digests; a power of two from 512 to 512 KiB.
    pub hash_block_size: u32,
}

impl VerityParams {
    /// Parameters with the given salt and 4096-byte data and hash blocks.
    pub fn new(salt: Vec<u8>) -> Self {
        Self {
            salt,
            data_block_size: DEFAULT_BLOCK_SIZE,
            hash_block_size: DEFAULT_BLOCK_SIZE,
        }
    }

    /// Parameters with a fresh 32-byte random salt (read from `/dev/urandom`), as
    /// `veritysetup format` uses when no salt is given.
    pub fn with_random_salt() -> Result<Self> {
        let mut salt = vec![0u8; DEFAULT_SALT_SIZE];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut salt))
            .context(error::RandomSaltSnafu)?;
        Ok(Self::new(salt))
    }

    /// Check the block sizes and the salt length.
    pub fn validate(&self) -> Result<()> {
        for (which, size) in [
            ("data", self.data_block_size),
            ("hash", self.hash_block_size),
        ] {
            ensure!(
                size.is_power_of_two() && (512..=512 * 1024).contains(&size),
                error::InvalidBlockSizeSnafu { which, size }
            );
        }
        ensure!(
            self.salt.len() <= MAX_SALT_SIZE,
            error::SaltTooLongSnafu {
                len: self.salt.len(),
                max: MAX_SALT_SIZE
            }
        );
        Ok(())
    }

    /// Digests stored in one hash block.
    pub fn hashes_per_block(&self) -> u64 {
        u64::from(self.hash_block_size) / DIGEST_SIZE as u64
    }

    /// The salt as lowercase hex, or `-` when it is empty (the spelling veritysetup and the
    /// kernel table use for "no salt").
    pub fn salt_hex(&self) -> String {
        if self.salt.is_empty() {
            "-".to_string()
        } else {
            crate::to_hex(&self.salt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let mut p = VerityParams::new(vec![1; 32]);
        p.validate().unwrap();
        p.data_block_size = 4095;
        assert!(p.validate().is_err());
        p.data_block_size = 256;
        assert!(p.validate().is_err());
        p.data_block_size = 1024;
        p.hash_block_size = 1 << 20;
        assert!(p.validate().is_err());
        p.hash_block_size = 512;
        p.validate().unwrap();
        p.salt = vec![0; 257];
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most 256"));
    }

    #[test]
    fn random_salt_differs() {
        let a = VerityParams::with_random_salt().unwrap();
        let b = VerityParams::with_random_salt().unwrap();
        assert_eq!(a.salt.len(), 32);
        assert_ne!(a.salt, b.salt);
    }

    #[test]
    fn salt_spelling() {
        assert_eq!(VerityParams::new(vec![]).salt_hex(), "-");
        assert_eq!(VerityParams::new(vec![0xab, 1]).salt_hex(), "ab01");
    }
}
