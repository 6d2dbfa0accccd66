//! The update status document served at `GET /updates/status`, and the progress file the
//! updater writes while it prepares an update (shown as the document's `progress`).
//!
//! The document is Bottlerocket's (thar-be-updates) with two fields of Ballast's own at the end,
//! `progress` and `failed_update`, which a Bottlerocket reader ignores and which are optional
//! when reading. Two differences a reader of both may meet:
//!
//! * Before the first action Ballast sends `"most_recent_command": null`, where Bottlerocket
//!   sends a record with `"cmd_status": "Unknown"`; both parse here.
//! * Ballast marks an action still running in the background with `"cmd_status": "Running"`.
//!
//! `exit_status` is an `i32`, as in Bottlerocket and as a process exit code is on Unix
//! (`std::process::ExitStatus::code`). A document with an `exit_status` outside the `i32` range
//! can only come from a broken or foreign server, and is refused when parsed (rather than
//! silently truncated); the round-trip tests pin this down.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the node stands in the update flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UpdateState {
    /// No update is known to be available (or no check was made yet).
    Idle,
    /// The last check found an update to prepare (`chosen_update`).
    Available,
    /// An update is written to the inactive partition set, but the node will not boot it.
    Staged,
    /// The staged update boots next (once); reboot to use it.
    Ready,
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            UpdateState::Idle => "Idle",
            UpdateState::Available => "Available",
            UpdateState::Staged => "Staged",
            UpdateState::Ready => "Ready",
        };
        f.write_str(name)
    }
}

/// An OS image: what is running, what is staged, or what an update would install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateImage {
    pub arch: String,
    pub version: String,
    pub variant: String,
}

/// One partition set and whether the node boots it next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionInfo {
    pub image: UpdateImage,
    pub next_to_boot: bool,
}

/// The update actions, named as in Bottlerocket's status document (`cmd_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CommandType {
    Refresh,
    Prepare,
    Activate,
    Deactivate,
}

impl CommandType {
    /// The name in the status document (`cmd_type`).
    pub fn name(self) -> &'static str {
        match self {
            CommandType::Refresh => "refresh",
            CommandType::Prepare => "prepare",
            CommandType::Activate => "activate",
            CommandType::Deactivate => "deactivate",
        }
    }

    /// The route that starts this action (`POST`).
    pub fn route(self) -> &'static str {
        match self {
            CommandType::Refresh => "/actions/refresh-updates",
            CommandType::Prepare => "/actions/prepare-update",
            CommandType::Activate => "/actions/activate-update",
            CommandType::Deactivate => "/actions/deactivate-update",
        }
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the most recent action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CommandStatus {
    Success,
    Failed,
    /// Still running in the background; poll `GET /updates/status` (Ballast only).
    Running,
    /// Bottlerocket's status before any action ran; Ballast never sends it.
    Unknown,
}

/// The most recent update action and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandRecord {
    pub cmd_type: CommandType,
    pub cmd_status: CommandStatus,
    /// RFC 3339 time (UTC) the action started.
    pub timestamp: String,
    /// The updater's exit code; null while running, or when it was killed by a signal.
    pub exit_status: Option<i32>,
    /// What the updater wrote on stderr (its last 16 KiB), or why the action failed.
    pub stderr: String,
}

/// `phase` of [`UpdateProgress`] while targets are written.
pub const PHASE_DOWNLOAD: &str = "download";
/// `phase` of [`UpdateProgress`] once every target is written.
pub const PHASE_DONE: &str = "done";
/// `phase` of [`UpdateProgress`] after an error (`target` names the one that failed).
pub const PHASE_FAILED: &str = "failed";

/// Progress of a running prepare: the document's `progress`. Every field may be missing when
/// read, so a reader copes with a progress file written half way by an older updater.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateProgress {
    /// [`PHASE_DOWNLOAD`] while writing, then [`PHASE_DONE`] or [`PHASE_FAILED`].
    #[serde(default)]
    pub phase: String,
    /// The target being written ("boot", "root", "hash" or the target's name).
    #[serde(default)]
    pub target: Option<String>,
    /// Decompressed bytes of this target written to its partition so far.
    #[serde(default)]
    pub bytes_written: u64,
    /// Decompressed size of this target, when known.
    #[serde(default)]
    pub bytes_expected: Option<u64>,
    /// Targets finished.
    #[serde(default)]
    pub targets_done: u32,
    /// Targets to write in all.
    #[serde(default)]
    pub targets_total: u32,
}

/// The progress file `updog update-image --progress-file F` rewrites about every half second:
/// [`UpdateProgress`] plus the download counters, which the status document leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressFile {
    #[serde(flatten)]
    pub progress: UpdateProgress,
    /// Compressed bytes of this target downloaded and verified so far.
    #[serde(default)]
    pub download_bytes: u64,
    /// Compressed size of this target as listed in the signed metadata.
    #[serde(default)]
    pub download_expected: Option<u64>,
}

/// An update the node tried and rolled back from: its new image never marked a boot successful.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailedUpdate {
    pub version: String,
    /// The partition set ("A" or "B") that held it.
    pub set: String,
    /// Why its boot was not marked successful, when its health gate said so: the
    /// `settings.health` checks that still failed (`health checks failed on 1.1.0 after
    /// 120 s: unit app.service is failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// The document served at `GET /updates/status`: Bottlerocket's fields, then Ballast's own
/// (`progress`, `failed_update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateStatus {
    pub update_state: UpdateState,
    /// Versions the last refresh found in the repository for this variant and arch, newest first.
    pub available_updates: Vec<String>,
    /// The update the last refresh chose (honouring version lock and waves), if any.
    pub chosen_update: Option<UpdateImage>,
    /// The running partition set.
    pub active_partition: PartitionInfo,
    /// The other partition set, when it holds a complete image.
    pub staging_partition: Option<PartitionInfo>,
    /// The most recent action; null until the first one.
    pub most_recent_command: Option<CommandRecord>,
    /// Progress of the running prepare; null otherwise.
    #[serde(default)]
    pub progress: Option<UpdateProgress>,
    /// The update this node rolled back from since it booted, if any.
    #[serde(default)]
    pub failed_update: Option<FailedUpdate>,
    /// The update daemon's latest decision; null when no daemon reported since the API
    /// server started (Ballast only).
    #[serde(default)]
    pub daemon: Option<DaemonReport>,
}

/// The route the update daemon sends its [`DaemonReport`] to (`PUT`).
pub const DAEMON_REPORT_URI: &str = "/updates/daemon";

/// What the update daemon decided last and why: the document's `daemon`, which the daemon
/// sends with `PUT /updates/daemon` after every decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DaemonReport {
    /// `settings.updates.policy` in force: manual, check, stage or auto.
    pub policy: String,
    /// RFC 3339 time of the decision.
    pub decided_at: String,
    /// The step taken: wait, refresh, prepare, acquire-lock, activate, reboot or release-lock.
    pub last_decision: String,
    /// Why, in a sentence; after a failed step, what failed.
    pub reason: String,
    /// When the next check is due; null under policy manual or while paused.
    #[serde(default)]
    pub next_check: Option<String>,
    /// When the next maintenance window opens; null when one is open or none is configured.
    #[serde(default)]
    pub next_window: Option<String>,
    /// Until when the open maintenance window lasts, if one is open.
    #[serde(default)]
    pub window_open_until: Option<String>,
    /// `none` (not paused), `indefinite`, or the time the pause ends.
    #[serde(default)]
    pub paused: Option<String>,
    /// The fleet lock: `not-configured`, `held`, `free` or `waiting` (refused; see `reason`).
    #[serde(default)]
    pub lock: Option<String>,
}

impl UpdateStatus {
    /// The running action, if any.
    pub fn running(&self) -> Option<&CommandRecord> {
        self.most_recent_command
            .as_ref()
            .filter(|c| c.cmd_status == CommandStatus::Running)
    }
}
