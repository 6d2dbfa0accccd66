//! `manifest.json`: what a build produced, for the orchestrator, the update repository tool and
//! humans.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Disk image formats. The raw image is always written; the others are converted from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `<variant>-<version>.img`, a plain disk image (sparse on the build host).
    Raw,
    /// `<variant>-<version>.qcow2` (compat 1.1), for QEMU/KVM and OpenStack.
    Qcow2,
    /// `<variant>-<version>.vmdk`, stream-optimized, for VMware.
    Vmdk,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Raw, Format::Qcow2, Format::Vmdk];

    /// File name extension of the disk image.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "img",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
        }
    }

    /// The name used in variant files and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown image format {s:?}; expected raw, qcow2 or vmdk"))
    }
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File name inside the output directory.
    pub file: String,
    /// Size in bytes (the apparent size; raw images are sparse).
    pub size: u64,
    /// sha256 of the whole file, lowercase hex.
    pub sha256: String,
}

/// A disk image in one format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskImage {
    pub format: Format,
    #[serde(flatten)]
    pub file: FileInfo,
}

/// The three images an update writes onto the inactive partition set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateImages {
    /// `boot.ext4`, for BOOT-A or BOOT-B: kernel, initramfs, grub.cfg.
    pub boot: FileInfo,
    /// `root.erofs`, for ROOT-A or ROOT-B.
    pub root: FileInfo,
    /// `root.verity`, the hash tree, for HASH-A or HASH-B.
    pub hash: FileInfo,
}

/// One partition of the disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub number: u32,
    pub name: String,
    /// Unique partition GUID.
    pub partuuid: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Size and sha256 of the image written into the partition (before the zero fill up to
    /// the partition size); absent for partitions left empty (BOOT-B, ROOT-B, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_sha256: Option<String>,
}

/// Where the GRUB environment block is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrubEnvLocation {
    /// Path on the EFI system partition.
    pub esp_path: String,
    /// Byte offset of the 1024-byte block from the start of the disk.
    pub disk_offset: u64,
}

/// Everything a build produced; written as `manifest.json` beside the images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildManifest {
    pub variant: String,
    pub version: String,
    pub build_id: String,
    pub arch: String,
    pub kernel_version: String,
    pub source_date_epoch: u64,
    /// dm-verity root hash of `root.erofs`, lowercase hex.
    pub root_hash: String,
    /// dm-verity salt, lowercase hex.
    pub salt: String,
    /// Number of 4096-byte blocks of `root.erofs`.
    pub data_blocks: u64,
    /// Size of the hash tree in bytes.
    pub hash_size: u64,
    /// erofs compression of the root image (`lz4hc,12`).
    pub root_compression: String,
    /// The kernel command line in `grub.cfg`; `${ballast_set}` is A or B at boot.
    pub kernel_cmdline: String,
    /// The disk image in every format written (raw first).
    pub formats: Vec<DiskImage>,
    /// The update images.
    pub images: UpdateImages,
    /// The disk's partitions.
    pub partitions: Vec<PartitionEntry>,
    pub grubenv: GrubEnvLocation,
}

impl BuildManifest {
    /// The disk image in `format`, if it was written.
    pub fn disk(&self, format: Format) -> Option<&DiskImage> {
        self.formats.iter().find(|d| d.format == format)
    }

    /// The partition named `name`.
    pub fn partition(&self, name: &str) -> Option<&PartitionEntry> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The kernel command line GRUB passes when it boots `set` (`"A"` or `"B"`).
    pub fn kernel_cmdline_for(&self, set: &str) -> String {
        self.kernel_cmdline.replace("${ballast_set}", set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_serialize() {
        assert_eq!("qcow2".parse::<Format>().unwrap(), Format::Qcow2);
        assert!("ova"
            .parse::<Format>()
            .unwrap_err()
            .contains("raw, qcow2 or vmdk"));
        assert_eq!(serde_json::to_string(&Format::Vmdk).unwrap(), "\"vmdk\"");
        let image = DiskImage {
            format: Format::Raw,
            file: FileInfo {
                file: "dev-1.0.img".into(),
                size: 1,
                sha256: "00".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&image).unwrap(),
            r#"{"format":"raw","file":"dev-1.0.img","size":1,"sha256":"00"}"#
        );
    }
}
