//! What the checks read: files below a root directory, and unit states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a check learns whether a systemd unit is running.
pub trait UnitStates {
    /// The unit's `ActiveState` (`active`, `inactive`, `failed`, ...), or why it is not known.
    fn active_state(&self, unit: &str) -> Result<String, String>;
}

/// Unit states from `systemctl show --property=ActiveState --value UNIT`.
#[derive(Debug, Clone)]
pub struct Systemctl {
    argv: Vec<String>,
}

impl Systemctl {
    /// systemctl run as `argv` (a program and arguments that come before `show`).
    pub fn new(argv: Vec<String>) -> Systemctl {
        Systemctl { argv }
    }
}

impl UnitStates for Systemctl {
    fn active_state(&self, unit: &str) -> Result<String, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("no systemctl command is configured".to_string());
        };
        let output = Command::new(program)
            .args(args)
            .args(["show", "--property=ActiveState", "--value", unit])
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{program} show {unit} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }
}

/// Unit states from a map, for tests; a unit not in it is `inactive`.
#[derive(Debug, Clone, Default)]
pub struct FixedUnits(pub BTreeMap<String, String>);

impl UnitStates for FixedUnits {
    fn active_state(&self, unit: &str) -> Result<String, String> {
        Ok(self
            .0
            .get(unit)
            .cloned()
            .unwrap_or_else(|| "inactive".to_string()))
    }
}

/// The node the checks look at: a root directory (`/` on the node, a fixture tree in tests) and
/// its unit states.
pub struct Node<'a> {
    root: PathBuf,
    units: &'a dyn UnitStates,
}

impl<'a> Node<'a> {
    /// The node whose files are below `root`.
    pub fn new(root: impl Into<PathBuf>, units: &'a dyn UnitStates) -> Node<'a> {
        Node {
            root: root.into(),
            units,
        }
    }

    /// Where the node's absolute `path` is on this machine.
    pub(crate) fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The text of the node's file `path`, or a sentence saying why it cannot be read.
    pub(crate) fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(self.path(path)).map_err(|e| format!("cannot read {path}: {e}"))
    }

    /// The names of the entries of the node's directory `path`, sorted; empty when it is missing.
    pub(crate) fn list(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(path))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The value of sysctl `key` (`net.ipv4.tcp_syncookies`), from /proc/sys.
    pub(crate) fn sysctl(&self, key: &str) -> Result<String, String> {
        self.read(&format!("/proc/sys/{}", key.replace('.', "/")))
            .map(|v| v.trim().to_string())
    }

    /// The unit's `ActiveState`.
    pub(crate) fn unit_state(&self, unit: &str) -> Result<String, String> {
        self.units.active_state(unit)
    }

    /// The root directory (for walking trees).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}
