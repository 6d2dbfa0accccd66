//! Values that would normally be random (file system UUIDs, the verity salt, the FAT volume ID,
//! partition GUIDs), derived instead from the build's identity so that the same inputs always
//! give the same bytes.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The identity of one build: variant, version and build ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSeed {
    bytes: Vec<u8>,
}

impl BuildSeed {
    /// The seed of a build. The parts are separated by NUL bytes, which none of them may
    /// contain, so that different triples never give the same seed.
    pub fn new(variant: &str, version: &str, build_id: &str) -> Self {
        let mut bytes = Vec::new();
        for part in [variant, version, build_id] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        BuildSeed { bytes }
    }

    /// The raw seed, as given to [`disk_layout::create_disk`] for the partition GUIDs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn digest(&self, purpose: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"ballast imagebuilder\0")
            .chain_update(purpose.as_bytes())
            .chain_update([0])
            .chain_update(&self.bytes)
            .finalize()
            .into()
    }

    /// The 32-byte dm-verity salt.
    pub fn verity_salt(&self) -> Vec<u8> {
        self.digest("verity salt").to_vec()
    }

    /// A version 4 style UUID for `purpose` (a file system UUID, an ext4 hash seed, ...).
    pub fn uuid(&self, purpose: &str) -> Uuid {
        let digest = self.digest(purpose);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// The 32-bit volume ID of a FAT file system, as 8 hex digits for `mkfs.fat -i`.
    pub fn fat_volume_id(&self, purpose: &str) -> String {
        hex::encode(&self.digest(purpose)[..4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values_are_stable_and_distinct() {
        let a = BuildSeed::new("dev", "1.0.0", "abc");
        let b = BuildSeed::new("dev", "1.0.0", "abc");
        let c = BuildSeed::new("dev", "1.0.1", "abc");
        // A separator keeps ("dev1", "0") apart from ("dev", "10").
        assert_ne!(
            BuildSeed::new("dev1", "0", "x").as_bytes(),
            BuildSeed::new("dev", "10", "x").as_bytes()
        );
        assert_eq!(a.verity_salt(), b.verity_salt());
        assert_ne!(a.verity_salt(), c.verity_salt());
        assert_eq!(a.verity_salt().len(), 32);
        assert_ne!(a.uuid("erofs"), a.uuid("boot"));
        assert_eq!(a.uuid("erofs").get_version_num(), 4);
        assert_eq!(a.fat_volume_id("esp").len(), 8);
    }
}
