//! The device-mapper table that opens a verity device, and its `dm-mod.create=` form.
//!
//! The verity target line follows the kernel's
//! `Documentation/admin-guide/device-mapper/verity.rst`:
//!
//! ```text
//! <start> <sectors> verity <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//!     <num_data_blocks> <hash_start_block> <algorithm> <root_digest> <salt>
//!     [<#opt_params> <opt_params>...]
//! ```
//!
//! `<start>` is 0 and `<sectors>` the data size in 512-byte sectors. `<hash_start_block>` counts
//! hash blocks from the start of `<hash_dev>` to the top level of the tree: 0 for the trees this
//! crate writes (no superblock), 1 for a hash device that starts with a veritysetup superblock
//! (Bottlerocket's layout). An empty salt is written `-`.
//!
//! `dm-mod.create=` (kernel `Documentation/admin-guide/device-mapper/dm-init.rst`) creates the
//! device at boot without an initramfs tool:
//!
//! ```text
//! dm-mod.create=<name>,<uuid>,<minor>,<flags>,<table>[,<table>...][;<next device>...]
//! ```
//!
//! Ballast leaves uuid and minor empty and uses the flag `ro`, so a root device reads
//! `root,,,ro,0 <sectors> verity 1 ...`. Commas and semicolons separate fields there, so device
//! names may contain neither.

use crate::error::{self, Result};
use crate::params::VerityParams;
use crate::tree::VerityOutput;
use snafu::ensure;

/// What the kernel does when a block does not match its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptionAction {
    /// Fail the read with EIO (the kernel default; no option is written).
    Eio,
    /// Log and return the corrupt data anyway (`ignore_corruption`): for debugging only.
    Ignore,
    /// Reboot the machine (`restart_on_corruption`), so that the boot loader can fall back to
    /// the other partition set. Ballast's choice.
    #[default]
    Restart,
    /// Panic the kernel (`panic_on_corruption`).
    Panic,
}

impl CorruptionAction {
    fn option(self) -> Option<&'static str> {
        match self {
            CorruptionAction::Eio => None,
            CorruptionAction::Ignore => Some("ignore_corruption"),
            CorruptionAction::Restart => Some("restart_on_corruption"),
            CorruptionAction::Panic => Some("panic_on_corruption"),
        }
    }
}

/// Everything needed to write a verity target line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTable {
    /// Device holding the data, e.g. `/dev/vda3` or `PARTUUID=<uuid>/PARTNROFF=1`.
    pub data_device: String,
    /// Device holding the hash tree.
    pub hash_device: String,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// Hash blocks to skip at the start of the hash device (0 without a superblock).
    pub hash_start_block: u64,
    /// The root hash.
    pub root_hash: [u8; 32],
    /// The salt (may be empty).
    pub salt: Vec<u8>,
    /// What to do on a hash mismatch.
    pub on_corruption: CorruptionAction,
    /// Return zeroes for blocks whose hash is the hash of a zero block without reading them
    /// (`ignore_zero_blocks`, which Bottlerocket sets). Off by default: every block is read
    /// and checked.
    pub ignore_zero_blocks: bool,
}

impl VerityTable {
    /// A table for a tree this crate built: no superblock, reboot on corruption.
    pub fn new(
        output: &VerityOutput,
        params: &VerityParams,
        data_device: impl Into<String>,
        hash_device: impl Into<String>,
    ) -> Self {
        Self {
            data_device: data_device.into(),
            hash_device: hash_device.into(),
            data_block_size: params.data_block_size,
            hash_block_size: params.hash_block_size,
            data_blocks: output.data_blocks,
            hash_start_block: 0,
            root_hash: output.root_hash,
            salt: params.salt.clone(),
            on_corruption: CorruptionAction::default(),
            ignore_zero_blocks: false,
        }
    }

    /// Size of the verity device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * u64::from(self.data_block_size) / 512
    }

    /// The table line: `0 <sectors> verity 1 <data> <hash> ... [<n> <options>]`.
    pub fn table_line(&self) -> Result<String> {
        for device in [&self.data_device, &self.hash_device] {
            ensure!(
                !device.is_empty()
                    && !device
                        .chars()
                        .any(|c| c.is_whitespace() || c == ',' || c == ';'),
                error::InvalidDeviceSnafu {
                    device: device.clone()
                }
            );
        }
        let salt = if self.salt.is_empty() {
            "-".to_string()
        } else {
            crate::to_hex(&self.salt)
        };
        let mut line = format!(
            "0 {} verity 1 {} {} {} {} {} {} sha256 {} {}",
            self.sectors(),
            self.data_device,
            self.hash_device,
            self.data_block_size,
            self.hash_block_size,
            self.data_blocks,
            self.hash_start_block,
            crate::to_hex(&self.root_hash),
            salt,
        );
        let options: Vec<&str> = self
            .on_corruption
            .option()
            .into_iter()
            .chain(self.ignore_zero_blocks.then_some("ignore_zero_blocks"))
            .collect();
        if !options.is_empty() {
            line.push_str(&format!(" {} {}", options.len(), options.join(" ")));
        }
        Ok(line)
    }

    /// The value of `dm-mod.create=` for a read-only device called `name`:
    /// `<name>,,,ro,<table line>`.
    pub fn dm_mod_create(&self, name: &str) -> Result<String> {
        ensure!(
            !name.is_empty()
                && name.len() < 128
                && !name
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, ',' | ';' | '/' | '"')),
            error::InvalidDmNameSnafu { name }
        );
        Ok(format!("{name},,,ro,{}", self.table_line()?))
    }

    /// The whole kernel command-line parameter, quoted: `dm-mod.create="<name>,,,ro,..."`.
    pub fn kernel_arg(&self, name: &str) -> Result<String> {
        Ok(format!("dm-mod.create=\"{}\"", self.dm_mod_create(name)?))
    }
}

/// The verity table line for a tree built by this crate (no superblock), e.g.
/// `0 2097152 verity 1 /dev/vda3 /dev/vda4 4096 4096 262144 0 sha256 <root> <salt> 1
/// restart_on_corruption`.
pub fn dm_verity_table(
    output: &VerityOutput,
    params: &VerityParams,
    data_device: &str,
    hash_device: &str,
    on_corruption: CorruptionAction,
) -> Result<String> {
    let mut table = VerityTable::new(output, params, data_device, hash_device);
    table.on_corruption = on_corruption;
    table.table_line()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VerityTable {
        let output = VerityOutput {
            root_hash: [0xab; 32],
            data_blocks: 262_144,
            hash_size: 2065 * 4096,
            levels: 3,
        };
        let params = VerityParams::new(vec![0x01; 32]);
        VerityTable::new(
            &output,
            &params,
            "PARTUUID=1234/PARTNROFF=1",
            "PARTUUID=1234/PARTNROFF=2",
        )
    }

    #[test]
    fn table_line_format() {
        let t = sample();
        let ab = "ab".repeat(32);
        let salt = "01".repeat(32);
        assert_eq!(
            t.table_line().unwrap(),
            format!(
                "0 2097152 verity 1 PARTUUID=1234/PARTNROFF=1 PARTUUID=1234/PARTNROFF=2 \
                 4096 4096 262144 0 sha256 {ab} {salt} 1 restart_on_corruption"
            )
        );
        assert_eq!(
            t.dm_mod_create("root").unwrap(),
            format!("root,,,ro,{}", t.table_line().unwrap())
        );
        assert_eq!(
            t.kernel_arg("root").unwrap(),
            format!("dm-mod.create=\"root,,,ro,{}\"", t.table_line().unwrap())
        );
    }

    #[test]
    fn options_and_empty_salt() {
        let mut t = sample();
        t.salt.clear();
        t.on_corruption = CorruptionAction::Eio;
        t.hash_start_block = 1;
        let line = t.table_line().unwrap();
        assert!(line.ends_with(&format!(" 262144 1 sha256 {} -", "ab".repeat(32))));
        t.ignore_zero_blocks = true;
        t.on_corruption = CorruptionAction::Panic;
        assert!(t
            .table_line()
            .unwrap()
            .ends_with(" - 2 panic_on_corruption ignore_zero_blocks"));
    }

    #[test]
    fn refuses_separators() {
        let mut t = sample();
        t.data_device = "/dev/vda3,bad".into();
        assert!(matches!(
            t.table_line().unwrap_err(),
            crate::Error::InvalidDevice { .. }
        ));
        let t = sample();
        assert!(t.dm_mod_create("a,b").is_err());
        assert!(t.dm_mod_create("").is_err());
        assert!(t.dm_mod_create("dev/root").is_err());
    }
}
