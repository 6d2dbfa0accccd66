//! Finding block devices without udev.
//!
//! Each entry of `/sys/class/block` has a `uevent` file of `KEY=value` lines; partitions carry
//! `PARTNAME=` with their GPT partition name. devtmpfs creates `/dev/<DEVNAME>` by itself, so a
//! partition name is resolved by scanning those files, retrying until the disk driver has
//! announced the partition or a timeout passes.

use crate::error::{AmbiguousLabelSnafu, DeviceTimeoutSnafu, Result, ScanBlockSnafu};
use boot_params::DeviceSpec;
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One block device as announced in its `uevent` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// `DEVNAME=`, the node name under /dev (`vda1`).
    pub devname: String,
    /// `DEVTYPE=`, `disk` or `partition`.
    pub devtype: Option<String>,
    /// `PARTNAME=`, the GPT partition name, for partitions that have one.
    pub partname: Option<String>,
    /// `MAJOR=` and `MINOR=`.
    pub major: Option<u64>,
    pub minor: Option<u64>,
}

/// Parses `KEY=value` lines into a map; lines without `=` are ignored.
pub fn parse_uevent_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Parses a block device's `uevent` file; `None` when it has no `DEVNAME`.
pub fn parse_block_uevent(text: &str) -> Option<BlockDevice> {
    let mut map = parse_uevent_map(text);
    let devname = map.remove("DEVNAME").filter(|n| !n.is_empty())?;
    Some(BlockDevice {
        devname,
        devtype: map.remove("DEVTYPE"),
        partname: map.remove("PARTNAME"),
        major: map.get("MAJOR").and_then(|v| v.parse().ok()),
        minor: map.get("MINOR").and_then(|v| v.parse().ok()),
    })
}

/// Reads every `uevent` under `class_dir` (normally `/sys/class/block`), sorted by name.
pub fn scan_block_devices(class_dir: &Path) -> Result<Vec<BlockDevice>> {
    let entries = std::fs::read_dir(class_dir).context(ScanBlockSnafu { path: class_dir })?;
    let mut devices = Vec::new();
    for entry in entries {
        let entry = entry.context(ScanBlockSnafu { path: class_dir })?;
        // A device can vanish between listing and reading; skip it then.
        if let Ok(text) = std::fs::read_to_string(entry.path().join("uevent")) {
            devices.extend(parse_block_uevent(&text));
        }
    }
    devices.sort_by(|a, b| a.devname.cmp(&b.devname));
    Ok(devices)
}

/// The device whose GPT partition name is `label`; an error if more than one has it.
pub fn find_by_partlabel<'a>(
    devices: &'a [BlockDevice],
    label: &str,
) -> Result<Option<&'a BlockDevice>> {
    let matches: Vec<&BlockDevice> = devices
        .iter()
        .filter(|d| d.partname.as_deref() == Some(label))
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => AmbiguousLabelSnafu {
            label,
            devices: many
                .iter()
                .map(|d| d.devname.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .fail(),
    }
}

/// A short list of what is there, for error messages: `vda, vda1(ROOT-A), vda2(HASH-A)`.
pub fn describe(devices: &[BlockDevice]) -> String {
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

/// Where to look; the defaults are the real system paths, tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct DeviceDirs {
    pub sys_class_block: PathBuf,
    pub dev: PathBuf,
}

impl Default for DeviceDirs {
    fn default() -> Self {
        DeviceDirs {
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// Resolves a device spec to a device node path, polling until both the announcement and the
/// node exist or `timeout` has passed.
pub fn wait_for_device(spec: &DeviceSpec, dirs: &DeviceDirs, timeout: Duration) -> Result<PathBuf> {
    let start = Instant::now();
    loop {
        let devices = scan_block_devices(&dirs.sys_class_block)?;
        let candidate = match spec {
            DeviceSpec::PartLabel(label) => {
                find_by_partlabel(&devices, label)?.map(|d| dirs.dev.join(&d.devname))
            }
            DeviceSpec::Path(path) => Some(path.clone()),
        };
        if let Some(path) = candidate.filter(|p| p.exists()) {
            return Ok(path);
        }
        if start.elapsed() >= timeout {
            return DeviceTimeoutSnafu {
                what: format!("block device {spec}"),
                waited_secs: timeout.as_secs(),
                seen: describe(&devices),
            }
            .fail();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const PART: &str = "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nDISKSEQ=9\nPARTN=1\nPARTNAME=ROOT-A\n";

    #[test]
    fn parses_partition_uevent() {
        let dev = parse_block_uevent(PART).unwrap();
        assert_eq!(
            dev,
            BlockDevice {
                devname: "vda1".into(),
                devtype: Some("partition".into()),
                partname: Some("ROOT-A".into()),
                major: Some(254),
                minor: Some(1),
            }
        );
    }

    #[test]
    fn parses_disk_uevent_and_rejects_nameless() {
        let dev = parse_block_uevent("MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n").unwrap();
        assert_eq!(dev.partname, None);
        assert_eq!(dev.devtype.as_deref(), Some("disk"));
        assert_eq!(parse_block_uevent("MAJOR=1\nMINOR=0\n"), None);
        assert_eq!(parse_block_uevent("DEVNAME=\n"), None);
        // A partition name can contain '=' and spaces after the first '='.
        let dev = parse_block_uevent("DEVNAME=sda3\nPARTNAME=my=part name\n").unwrap();
        assert_eq!(dev.partname.as_deref(), Some("my=part name"));
    }

    #[test]
    fn finds_labels_and_reports_duplicates() {
        let a = parse_block_uevent(PART).unwrap();
        let mut b = a.clone();
        b.devname = "vdb1".into();
        let devices = vec![a.clone()];
        assert_eq!(find_by_partlabel(&devices, "ROOT-A").unwrap(), Some(&a));
        assert_eq!(find_by_partlabel(&devices, "ROOT-B").unwrap(), None);
        let err = find_by_partlabel(&[a, b], "ROOT-A").unwrap_err();
        assert!(matches!(err, Error::AmbiguousLabel { .. }));
        assert!(err.to_string().contains("vda1, vdb1"), "{err}");
    }

    #[test]
    fn scans_a_fake_sysfs_and_waits() {
        let root = std::env::temp_dir().join(format!("early-init-uevent-{}", std::process::id()));
        let class = root.join("class");
        let dev = root.join("dev");
        for (name, text) in [
            ("vda", "DEVNAME=vda\nDEVTYPE=disk\n".to_string()),
            ("vda1", PART.to_string()),
            (
                "vda2",
                PART.replace("vda1", "vda2").replace("ROOT-A", "HASH-A"),
            ),
        ] {
            std::fs::create_dir_all(class.join(name)).unwrap();
            std::fs::write(class.join(name).join("uevent"), text).unwrap();
        }
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vda2"), "").unwrap();
        let dirs = DeviceDirs {
            sys_class_block: class.clone(),
            dev: dev.clone(),
        };
        let devices = scan_block_devices(&class).unwrap();
        assert_eq!(describe(&devices), "vda, vda1(ROOT-A), vda2(HASH-A)");

        let found = wait_for_device(
            &DeviceSpec::PartLabel("HASH-A".into()),
            &dirs,
            Duration::from_millis(100),
        )
        .unwrap();
        assert_eq!(found, dev.join("vda2"));

        // vda1 is announced but its node is missing; ROOT-B does not exist at all.
        for label in ["ROOT-A", "ROOT-B"] {
            let err = wait_for_device(
                &DeviceSpec::PartLabel(label.into()),
                &dirs,
                Duration::from_millis(60),
            )
            .unwrap_err();
            assert!(err.to_string().contains("vda1(ROOT-A)"), "{err}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
