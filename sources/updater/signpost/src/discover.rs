//! Which disk a node booted from, and which partition set is running.
//!
//! GRUB starts the kernel with `ballast.root=PARTLABEL=ROOT-A` (or `-B`): the loader fills in the
//! letter of the set it chose, and the early init opens that partition as the dm-verity data
//! device under `/`. So the command line names the running set, and the partition it names
//! leads to the disk: in sysfs every partition is a directory inside its disk's directory
//! (`/sys/class/block/vda3` links to `.../block/vda/vda3`).
//!
//! [`find_boot_disk`] takes the command line text and the two directories (normally
//! `/sys/class/block` and `/dev`) as arguments, so tests can hand it a made-up tree.

use crate::error::{
    AmbiguousRootSnafu, BadRootParamSnafu, DiskNodeMissingSnafu, NoRootParamSnafu,
    NotARootPartitionSnafu, ParentDiskSnafu, Result, RootNotFoundSnafu, ScanSysfsSnafu,
};
use boot_params::{Cmdline, DeviceSpec, ROOT};
use disk_layout::{BootSet, PartitionRole};
use early_init::uevent::{parse_block_uevent, BlockDevice};
use snafu::{ensure, OptionExt, ResultExt};
use std::path::{Path, PathBuf};

/// The boot disk and the running set of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDisk {
    /// Whole-disk device node, e.g. `/dev/vda`.
    pub disk: PathBuf,
    /// The set the running system booted from.
    pub active: BootSet,
    /// The kernel name of the running ROOT partition, e.g. `vda3`.
    pub root_devname: String,
}

/// How `ballast.root=` names the partition.
enum RootSpec {
    Label(String),
    DevName(String),
}

/// Finds the boot disk and the running set from the kernel command line (`cmdline`, the text of
/// `/proc/cmdline`), the block devices in `sys_class_block` (normally `/sys/class/block`) and
/// the device nodes in `dev` (normally `/dev`).
pub fn find_boot_disk(cmdline: &str, sys_class_block: &Path, dev: &Path) -> Result<BootDisk> {
    // The last occurrence wins, as for any kernel parameter.
    let value = Cmdline::parse(cmdline)
        .get(ROOT)
        .context(NoRootParamSnafu)?
        .to_string();
    // The early init accepts any /dev path; a partition of a disk is /dev/<name>.
    let spec = match DeviceSpec::parse(ROOT, &value) {
        Ok(DeviceSpec::PartLabel(label)) => RootSpec::Label(label),
        Ok(DeviceSpec::Path(path)) => match path
            .to_str()
            .and_then(|p| p.strip_prefix("/dev/"))
            .filter(|name| !name.contains('/'))
        {
            Some(name) => RootSpec::DevName(name.to_string()),
            None => return BadRootParamSnafu { value }.fail(),
        },
        Err(_) => return BadRootParamSnafu { value }.fail(),
    };
    if let RootSpec::Label(label) = &spec {
        // Fail early on a label that cannot be a Ballast root, before looking at devices.
        ensure!(
            matches!(
                PartitionRole::from_name(label),
                Some(PartitionRole::Root(_))
            ),
            BadRootParamSnafu { value: &value }
        );
    }

    let devices = scan(sys_class_block)?;
    let matches: Vec<&BlockDevice> = devices
        .iter()
        .filter(|d| match &spec {
            RootSpec::Label(label) => d.partname.as_deref() == Some(label.as_str()),
            RootSpec::DevName(name) => &d.devname == name,
        })
        .collect();
    let root = match matches[..] {
        [one] => one,
        [] => {
            return RootNotFoundSnafu {
                value,
                seen: describe(&devices),
            }
            .fail()
        }
        _ => {
            return AmbiguousRootSnafu {
                label: value.trim_start_matches("PARTLABEL="),
                devices: matches
                    .iter()
                    .map(|d| d.devname.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .fail()
        }
    };

    let entry = sys_class_block.join(&root.devname);
    let number = std::fs::read_to_string(entry.join("partition"))
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok());
    let active = root_set(root, number).context(NotARootPartitionSnafu {
        devname: &root.devname,
        name: root.partname.clone(),
        number,
    })?;

    let disk_name = parent_disk(&entry, &root.devname)?;
    let disk = dev.join(&disk_name);
    ensure!(disk.exists(), DiskNodeMissingSnafu { path: &disk });
    Ok(BootDisk {
        disk,
        active,
        root_devname: root.devname.clone(),
    })
}

/// The set of a ROOT partition: from its GPT name, or from its number when it has no name.
fn root_set(root: &BlockDevice, number: Option<u32>) -> Option<BootSet> {
    let role = match &root.partname {
        Some(name) => PartitionRole::from_name(name),
        None => {
            let number = number?;
            PartitionRole::ALL
                .iter()
                .copied()
                .find(|r| r.number() == number)
        }
    };
    match role {
        Some(PartitionRole::Root(set)) => Some(set),
        _ => None,
    }
}

/// The kernel name of the disk holding the partition whose sysfs entry is `entry`: the
/// directory the entry sits in, which must describe a whole disk.
fn parent_disk(entry: &Path, devname: &str) -> Result<String> {
    let fail = |reason: String| {
        ParentDiskSnafu {
            devname,
            path: entry,
            reason,
        }
        .fail()
    };
    let real = match std::fs::canonicalize(entry) {
        Ok(real) => real,
        Err(e) => return fail(format!("cannot resolve the sysfs entry: {e}")),
    };
    let Some(parent) = real.parent() else {
        return fail("the sysfs entry has no parent directory".to_string());
    };
    let text = match std::fs::read_to_string(parent.join("uevent")) {
        Ok(text) => text,
        Err(e) => {
            return fail(format!(
                "cannot read {}: {e}",
                parent.join("uevent").display()
            ))
        }
    };
    match parse_block_uevent(&text) {
        Some(disk) if disk.devtype.as_deref() == Some("disk") => Ok(disk.devname),
        Some(other) => fail(format!(
            "its parent {} is a {}, not a disk",
            other.devname,
            other.devtype.as_deref().unwrap_or("device of unknown type")
        )),
        None => fail(format!("{} names no device", parent.display())),
    }
}

/// Every block device announced under `sys_class_block`, sorted by name.
fn scan(sys_class_block: &Path) -> Result<Vec<BlockDevice>> {
    let entries = std::fs::read_dir(sys_class_block).context(ScanSysfsSnafu {
        path: sys_class_block,
    })?;
    let mut devices = Vec::new();
    for entry in entries {
        let entry = entry.context(ScanSysfsSnafu {
            path: sys_class_block,
        })?;
        // A device can go away between listing and reading; skip it then.
        if let Ok(text) = std::fs::read_to_string(entry.path().join("uevent")) {
            devices.extend(parse_block_uevent(&text));
        }
    }
    devices.sort_by(|a, b| a.devname.cmp(&b.devname));
    Ok(devices)
}

/// `vda, vda3(ROOT-A)`, for error messages.
fn describe(devices: &[BlockDevice]) -> String {
    if devices.is_empty() {
        return "none".to_string();
    }
    devices
        .iter()
        .map(|d| match &d.partname {
            Some(name) => format!("{}({name})", d.devname),
            None => d.devname.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::os::unix::fs::symlink;

    /// A made-up sysfs and /dev, laid out as the kernel does: devices under
    /// `devices/.../block/<disk>/<partition>`, links to them in `class/block`.
    struct FakeSys {
        _dir: tempfile::TempDir,
        class_block: PathBuf,
        dev: PathBuf,
        devices: PathBuf,
    }

    impl FakeSys {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let class_block = dir.path().join("sys/class/block");
            let dev = dir.path().join("dev");
            let devices = dir.path().join("sys/devices/pci0000:00/virtio2/block");
            for d in [&class_block, &dev, &devices] {
                std::fs::create_dir_all(d).unwrap();
            }
            FakeSys {
                _dir: dir,
                class_block,
                dev,
                devices,
            }
        }

        fn disk(&self, name: &str) {
            let dir = self.devices.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("uevent"),
                format!("MAJOR=254\nMINOR=0\nDEVNAME={name}\nDEVTYPE=disk\nDISKSEQ=9\n"),
            )
            .unwrap();
            symlink(&dir, self.class_block.join(name)).unwrap();
            std::fs::write(self.dev.join(name), b"").unwrap();
        }

        fn partition(&self, disk: &str, number: u32, partname: Option<&str>) -> String {
            // The kernel puts a "p" between a disk name ending in a digit and the number.
            let p = if disk.ends_with(|c: char| c.is_ascii_digit()) {
                "p"
            } else {
                ""
            };
            let name = format!("{disk}{p}{number}");
            let dir = self.devices.join(disk).join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let mut uevent = format!(
                "MAJOR=254\nMINOR={number}\nDEVNAME={name}\nDEVTYPE=partition\nPARTN={number}\n"
            );
            if let Some(partname) = partname {
                uevent.push_str(&format!("PARTNAME={partname}\n"));
            }
            std::fs::write(dir.join("uevent"), uevent).unwrap();
            std::fs::write(dir.join("partition"), format!("{number}\n")).unwrap();
            symlink(&dir, self.class_block.join(&name)).unwrap();
            std::fs::write(self.dev.join(&name), b"").unwrap();
            name
        }

        /// A whole Ballast disk with every partition of the plan.
        fn ballast_disk(&self, disk: &str) {
            self.disk(disk);
            for role in PartitionRole::ALL {
                self.partition(disk, role.number(), Some(role.name()));
            }
        }

        fn find(&self, cmdline: &str) -> Result<BootDisk> {
            find_boot_disk(cmdline, &self.class_block, &self.dev)
        }
    }

    const CMDLINE_A: &str = "BOOT_IMAGE=/vmlinuz console=ttyS0,115200n8 \
        ballast.root=PARTLABEL=ROOT-A ballast.hash=PARTLABEL=HASH-A ballast.roothash=00 \
        ballast.data=PARTLABEL=DATA";

    #[test]
    fn finds_disk_and_set_from_the_partition_label() {
        let sys = FakeSys::new();
        sys.disk("loop0");
        sys.ballast_disk("vda");
        // A device-mapper device and an unrelated disk are ignored.
        sys.disk("dm-0");
        sys.disk("vdb");
        sys.partition("vdb", 1, Some("scratch"));

        let found = sys.find(CMDLINE_A).unwrap();
        assert_eq!(
            found,
            BootDisk {
                disk: sys.dev.join("vda"),
                active: BootSet::A,
                root_devname: "vda3".into(),
            }
        );
        let found = sys.find(&CMDLINE_A.replace("ROOT-A", "ROOT-B")).unwrap();
        assert_eq!(found.active, BootSet::B);
        assert_eq!(found.root_devname, "vda7");
        assert_eq!(found.disk, sys.dev.join("vda"));
    }

    #[test]
    fn finds_disk_and_set_from_a_device_path() {
        let sys = FakeSys::new();
        sys.ballast_disk("nvme0n1");
        let found = sys
            .find("quiet ballast.root=/dev/nvme0n1p7 ballast.hash=/dev/nvme0n1p8")
            .unwrap();
        assert_eq!(found.active, BootSet::B);
        assert_eq!(found.disk, sys.dev.join("nvme0n1"));

        // Without a partition name the number decides.
        let sys = FakeSys::new();
        sys.disk("sda");
        sys.partition("sda", 3, None);
        let found = sys.find("ballast.root=/dev/sda3").unwrap();
        assert_eq!(found.active, BootSet::A);
    }

    #[test]
    fn last_root_parameter_wins_and_quotes_are_removed() {
        let sys = FakeSys::new();
        sys.ballast_disk("vda");
        let found = sys
            .find("ballast.root=PARTLABEL=ROOT-A \"ballast.root=PARTLABEL=ROOT-B\"")
            .unwrap();
        assert_eq!(found.active, BootSet::B);
    }

    #[test]
    fn refusals_name_the_problem() {
        let sys = FakeSys::new();
        sys.ballast_disk("vda");

        let err = sys.find("console=ttyS0 quiet").unwrap_err();
        assert!(matches!(err, Error::NoRootParam), "{err}");
        assert!(err.to_string().contains("--disk and --active"), "{err}");

        for bad in [
            "ballast.root=ROOT-A",
            "ballast.root=PARTLABEL=",
            "ballast.root=PARTLABEL=DATA",
            "ballast.root=/dev/",
            "ballast.root=/dev/mapper/root",
        ] {
            let err = sys.find(bad).unwrap_err();
            assert!(matches!(err, Error::BadRootParam { .. }), "{bad}: {err}");
        }

        let err = sys.find("ballast.root=/dev/vdz3").unwrap_err();
        assert!(matches!(err, Error::RootNotFound { .. }), "{err}");
        assert!(err.to_string().contains("vda3(ROOT-A)"), "{err}");

        // A partition that is not a ROOT partition.
        let err = sys.find("ballast.root=/dev/vda2").unwrap_err();
        assert!(matches!(err, Error::NotARootPartition { .. }), "{err}");

        // A second Ballast disk makes the label ambiguous.
        sys.ballast_disk("vdb");
        let err = sys.find(CMDLINE_A).unwrap_err();
        assert!(matches!(err, Error::AmbiguousRoot { .. }), "{err}");
        assert!(err.to_string().contains("vda3, vdb3"), "{err}");
        // A device path is still unambiguous.
        assert_eq!(
            sys.find("ballast.root=/dev/vdb3").unwrap().disk,
            sys.dev.join("vdb")
        );
    }

    #[test]
    fn missing_disk_node_or_parent() {
        let sys = FakeSys::new();
        sys.ballast_disk("vda");
        std::fs::remove_file(sys.dev.join("vda")).unwrap();
        let err = sys.find(CMDLINE_A).unwrap_err();
        assert!(matches!(err, Error::DiskNodeMissing { .. }), "{err}");

        // A partition entry whose parent is not a disk.
        let sys = FakeSys::new();
        let dir = sys.devices.join("odd/vdc3");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("uevent"),
            "DEVNAME=vdc3\nDEVTYPE=partition\nPARTNAME=ROOT-A\n",
        )
        .unwrap();
        symlink(&dir, sys.class_block.join("vdc3")).unwrap();
        let err = sys.find(CMDLINE_A).unwrap_err();
        assert!(matches!(err, Error::ParentDisk { .. }), "{err}");
    }
}
