//! A minimal device-mapper client over the raw ioctls of `linux/dm-ioctl.h`.
//!
//! Only three requests are needed to bring up a verity device: `DM_DEV_CREATE` (an empty mapped
//! device), `DM_TABLE_LOAD` (the inactive table) and `DM_DEV_SUSPEND` without the suspend flag
//! (which makes the loaded table live). Requests are encoded field by field into a byte buffer at
//! the offsets of `struct dm_ioctl` (312 bytes) and `struct dm_target_spec` (40 bytes), so the
//! only `unsafe` is the `ioctl` call itself. The `devicemapper` crate was not used: it pulls in
//! bindgen-generated bindings and a much larger dependency tree than these three calls justify in
//! a static PID 1.

use crate::error::{DmControlSnafu, DmIoctlSnafu, DmRequestSnafu, Result};
use boot_params::VerityRoot;
use nix::errno::Errno;
use snafu::ResultExt;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The device-mapper control node created by devtmpfs when dm-mod is loaded.
pub const CONTROL: &str = "/dev/mapper/control";

/// Size of the verity data and hash blocks Ballast uses.
pub const VERITY_BLOCK_SIZE: u64 = 4096;

const DM_IOCTL_TYPE: u8 = 0xfd;
const DM_DEV_CREATE_CMD: u8 = 3;
const DM_DEV_REMOVE_CMD: u8 = 4;
const DM_DEV_SUSPEND_CMD: u8 = 6;
const DM_TABLE_LOAD_CMD: u8 = 9;

/// `sizeof(struct dm_ioctl)`.
const HEADER_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC_SIZE: usize = 40;
const NAME_LEN: usize = 128;
const TYPE_NAME_LEN: usize = 16;
const VERSION: [u32; 3] = [4, 0, 0];

/// `DM_READONLY_FLAG`.
pub const READONLY_FLAG: u32 = 1 << 0;

/// One line of a device-mapper table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start_sector: u64,
    pub sectors: u64,
    pub target_type: String,
    pub params: String,
}

impl Target {
    /// The table line in `dmsetup table` syntax.
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.start_sector, self.sectors, self.target_type, self.params
        )
    }
}

/// A dm-verity mapping with Ballast's fixed choices: format version 1, sha256, 4096-byte data and
/// hash blocks, `restart_on_corruption`, and `try_verify_in_tasklet` (blocks whose hashes are
/// already cached are checked right in the I/O completion instead of a workqueue round trip,
/// which shortens every read of the root; Linux 6.0 and later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTarget {
    pub data_device: PathBuf,
    pub hash_device: PathBuf,
    pub data_blocks: u64,
    pub hash_start_block: u64,
    pub root_hash: String,
    /// Hex salt or `-`.
    pub salt: String,
}

impl VerityTarget {
    /// The mapping of `verity` (from the kernel command line) once its partitions have been
    /// found as `data_device` and `hash_device`.
    pub fn new(verity: &VerityRoot, data_device: PathBuf, hash_device: PathBuf) -> Self {
        VerityTarget {
            data_device,
            hash_device,
            data_blocks: verity.data_blocks,
            hash_start_block: verity.hash_start_block,
            root_hash: verity.root_hash.clone(),
            salt: verity.salt.clone(),
        }
    }

    /// The mapping as a device-mapper target covering the whole verified data area.
    pub fn target(&self) -> Target {
        Target {
            start_sector: 0,
            sectors: self.data_blocks * (VERITY_BLOCK_SIZE / 512),
            target_type: "verity".to_string(),
            params: format!(
                "1 {} {} {bs} {bs} {} {} sha256 {} {} 2 restart_on_corruption try_verify_in_tasklet",
                self.data_device.display(),
                self.hash_device.display(),
                self.data_blocks,
                self.hash_start_block,
                self.root_hash,
                self.salt,
                bs = VERITY_BLOCK_SIZE,
            ),
        }
    }
}

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    pub major: u64,
    pub minor: u64,
}

impl DevNum {
    /// Decodes the kernel's `huge_encode_dev` form returned in `dm_ioctl.dev`.
    pub fn from_kernel(dev: u64) -> Self {
        DevNum {
            major: (dev >> 8) & 0xfff,
            minor: (dev & 0xff) | ((dev >> 12) & 0xfff00),
        }
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Encodes a `dm_ioctl` request followed by `targets` (for `DM_TABLE_LOAD`).
pub fn encode_request(name: &str, flags: u32, targets: &[Target]) -> Result<Vec<u8>> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') || name.contains('\0') {
        return bad(
            name,
            "the name must have 1 to 127 characters and no / or NUL".into(),
        );
    }
    let mut buf = vec![0u8; HEADER_SIZE];
    for target in targets {
        if target.target_type.is_empty() || target.target_type.len() >= TYPE_NAME_LEN {
            return bad(
                name,
                format!("target type {:?} is too long", target.target_type),
            );
        }
        if target.params.contains('\0') {
            return bad(name, "target parameters contain NUL".into());
        }
        let start = buf.len();
        let mut spec = [0u8; SPEC_SIZE];
        spec[0..8].copy_from_slice(&target.start_sector.to_ne_bytes());
        spec[8..16].copy_from_slice(&target.sectors.to_ne_bytes());
        spec[24..24 + target.target_type.len()].copy_from_slice(target.target_type.as_bytes());
        buf.extend_from_slice(&spec);
        buf.extend_from_slice(target.params.as_bytes());
        buf.push(0);
        buf.resize(buf.len().next_multiple_of(8), 0);
        // `next` is the distance from this spec to the following one.
        let next =
            u32::try_from(buf.len() - start).or_else(|_| bad(name, "table too large".into()))?;
        buf[start + 20..start + 24].copy_from_slice(&next.to_ne_bytes());
    }
    let data_size = u32::try_from(buf.len()).or_else(|_| bad(name, "table too large".into()))?;
    let target_count =
        u32::try_from(targets.len()).or_else(|_| bad(name, "too many targets".into()))?;
    for (i, v) in VERSION.iter().enumerate() {
        buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    buf[12..16].copy_from_slice(&data_size.to_ne_bytes());
    buf[16..20].copy_from_slice(&(HEADER_SIZE as u32).to_ne_bytes());
    buf[20..24].copy_from_slice(&target_count.to_ne_bytes());
    buf[28..32].copy_from_slice(&flags.to_ne_bytes());
    buf[48..48 + name.len()].copy_from_slice(name.as_bytes());
    Ok(buf)
}

fn bad<T>(name: &str, reason: String) -> Result<T> {
    DmRequestSnafu { name, reason }.fail()
}

/// The `dev` field of a reply.
fn reply_dev(buf: &[u8]) -> u64 {
    let mut dev = [0u8; 8];
    dev.copy_from_slice(&buf[40..48]);
    u64::from_ne_bytes(dev)
}

/// An open device-mapper control node.
pub struct Control {
    file: std::fs::File,
}

impl Control {
    /// Opens the control node.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .context(DmControlSnafu { path })?;
        Ok(Control { file })
    }

    fn ioctl(&self, op: &'static str, cmd: u8, name: &str, request: Vec<u8>) -> Result<Vec<u8>> {
        // Copy into u64 storage so the buffer has the 8-byte alignment of struct dm_ioctl.
        let mut words = vec![0u64; request.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(request.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(bytes);
        }
        let code = nix::request_code_readwrite!(DM_IOCTL_TYPE, cmd, HEADER_SIZE);
        // SAFETY: `words` is a live, 8-byte aligned allocation of at least `data_size` bytes (the
        // value encoded in its header), which is all the kernel reads or writes for these
        // commands; the fd is an open device-mapper control node for the whole call.
        let rc = unsafe { nix::libc::ioctl(self.file.as_raw_fd(), code, words.as_mut_ptr()) };
        Errno::result(rc).context(DmIoctlSnafu { op, name })?;
        Ok(words.iter().flat_map(|w| w.to_ne_bytes()).collect())
    }

    /// Creates device `name` with the given table and activates it. On any failure after the
    /// device was created, it is removed again.
    pub fn create_device(&self, name: &str, targets: &[Target], read_only: bool) -> Result<DevNum> {
        let flags = if read_only { READONLY_FLAG } else { 0 };
        let reply = self.ioctl(
            "create",
            DM_DEV_CREATE_CMD,
            name,
            encode_request(name, flags, &[])?,
        )?;
        let dev = DevNum::from_kernel(reply_dev(&reply));
        let activate = || -> Result<()> {
            self.ioctl(
                "table load",
                DM_TABLE_LOAD_CMD,
                name,
                encode_request(name, flags, targets)?,
            )?;
            self.ioctl(
                "resume",
                DM_DEV_SUSPEND_CMD,
                name,
                encode_request(name, 0, &[])?,
            )?;
            Ok(())
        };
        if let Err(e) = activate() {
            if let Ok(request) = encode_request(name, 0, &[]) {
                let _ = self.ioctl("remove", DM_DEV_REMOVE_CMD, name, request);
            }
            return Err(e);
        }
        Ok(dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target for a command line as the image builder writes it.
    fn verity() -> VerityTarget {
        let root = VerityRoot::parse(&format!(
            "ballast.root=PARTLABEL=ROOT-A ballast.hash=PARTLABEL=HASH-A ballast.roothash={} \
             ballast.salt=00ff ballast.datablocks=2560 ballast.data=PARTLABEL=DATA",
            "ab".repeat(32)
        ))
        .unwrap();
        VerityTarget::new(&root, "/dev/vda1".into(), "/dev/vda2".into())
    }

    #[test]
    fn verity_table_line() {
        let t = verity().target();
        assert_eq!(
            t.line(),
            format!(
                "0 20480 verity 1 /dev/vda1 /dev/vda2 4096 4096 2560 0 sha256 {} 00ff 2 restart_on_corruption try_verify_in_tasklet",
                "ab".repeat(32)
            )
        );
        let mut v = verity();
        v.hash_start_block = 1;
        v.salt = "-".into();
        assert!(v.target().params.contains(" 2560 1 sha256 "));
        assert!(v
            .target()
            .params
            .ends_with(" - 2 restart_on_corruption try_verify_in_tasklet"));
    }

    fn u32_at(buf: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn encodes_header_only_request() {
        let buf = encode_request("root", READONLY_FLAG, &[]).unwrap();
        assert_eq!(buf.len(), HEADER_SIZE);
        assert_eq!(
            [u32_at(&buf, 0), u32_at(&buf, 4), u32_at(&buf, 8)],
            [4, 0, 0]
        );
        assert_eq!(u32_at(&buf, 12), 312); // data_size
        assert_eq!(u32_at(&buf, 16), 312); // data_start
        assert_eq!(u32_at(&buf, 20), 0); // target_count
        assert_eq!(u32_at(&buf, 28), READONLY_FLAG);
        assert_eq!(&buf[48..53], b"root\0");
    }

    #[test]
    fn encodes_table_load() {
        let target = verity().target();
        let buf = encode_request("root", READONLY_FLAG, std::slice::from_ref(&target)).unwrap();
        assert_eq!(buf.len() % 8, 0);
        assert_eq!(u32_at(&buf, 12) as usize, buf.len());
        assert_eq!(u32_at(&buf, 20), 1);
        let spec = &buf[HEADER_SIZE..];
        assert_eq!(u64::from_ne_bytes(spec[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 20480);
        assert_eq!(u32_at(spec, 20) as usize, buf.len() - HEADER_SIZE);
        assert_eq!(&spec[24..31], b"verity\0");
        let params = &spec[SPEC_SIZE..SPEC_SIZE + target.params.len() + 1];
        assert_eq!(&params[..target.params.len()], target.params.as_bytes());
        assert_eq!(params[target.params.len()], 0);
    }

    #[test]
    fn rejects_bad_names_and_types() {
        assert!(encode_request("", 0, &[]).is_err());
        assert!(encode_request(&"x".repeat(128), 0, &[]).is_err());
        assert!(encode_request(&"x".repeat(127), 0, &[]).is_ok());
        assert!(encode_request("a/b", 0, &[]).is_err());
        let mut t = verity().target();
        t.target_type = "x".repeat(16);
        assert!(encode_request("root", 0, &[t]).is_err());
    }

    #[test]
    fn decodes_device_numbers() {
        assert_eq!(
            DevNum::from_kernel((254 << 8) | 3),
            DevNum {
                major: 254,
                minor: 3
            }
        );
        // Minor 300 spills into the high minor bits.
        let dev = (300 & 0xff) | (254 << 8) | ((300 & !0xff) << 12);
        assert_eq!(
            DevNum::from_kernel(dev),
            DevNum {
                major: 254,
                minor: 300
            }
        );
        assert_eq!(
            DevNum {
                major: 254,
                minor: 0
            }
            .to_string(),
            "254:0"
        );
    }
}
