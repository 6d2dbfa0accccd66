//! What the updater (`updog --json status`, and the same after `update-apply` and
//! `update-revert`) prints about the node's partition sets. updog writes it, the API server
//! reads it to build the update status document, and the test updater of `testserver` writes
//! it in updog's place.
//!
//! ```json
//! {"running": {"variant": "dev", "arch": "x86_64", "version": "1.0.0", "build_id": "abc"},
//!  "active_set": "A", "next_boot": "B",
//!  "inactive": {"set": "B", "image": {"variant": "dev", "arch": "x86_64", "version": "1.1.0",
//!                                     "build_id": null},
//!               "valid": true, "bootable": true, "successful": false},
//!  "failed_update": null}
//! ```

use crate::update::FailedUpdate;
use serde::{Deserialize, Serialize};

/// An OS image as the updater describes a running or staged one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub variant: String,
    pub arch: String,
    pub version: String,
    /// Null when not known (an image whose target names do not carry it).
    #[serde(default)]
    pub build_id: Option<String>,
}

/// The inactive partition set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InactiveSet {
    /// "A" or "B".
    pub set: String,
    /// The image the updater wrote there, when it knows.
    pub image: Option<ImageInfo>,
    /// It holds a complete update with a try left.
    #[serde(default)]
    pub valid: bool,
    #[serde(default)]
    pub bootable: bool,
    /// It booted successfully before.
    #[serde(default)]
    pub successful: bool,
}

/// The node's partition sets, as `updog --json status` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub running: ImageInfo,
    /// The set the node runs from ("A" or "B").
    pub active_set: String,
    /// The set the node boots next.
    pub next_boot: String,
    pub inactive: InactiveSet,
    /// An update this node rolled back from, if any.
    pub failed_update: Option<FailedUpdate>,
}
