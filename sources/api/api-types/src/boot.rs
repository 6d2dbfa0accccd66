//! The A/B boot state of a node's disk, as `signpost status --json` prints it: which partition
//! set runs, which boots next, the GPT boot fields of both sets and the GRUB environment block
//! derived from them. signpost builds this document from its own status; the API server reads
//! it for `GET /status` (`boot`).

use serde::{Deserialize, Serialize};

/// The boot fields of one partition set, as the GPT holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootSetState {
    /// "A" or "B".
    pub set: String,
    /// GPT priority (bits 48-51): the highest bootable set boots.
    pub priority: u8,
    /// Tries left (bits 52-55): a set not yet successful boots only while it has one.
    pub tries_left: u8,
    /// Marked successful (bit 56): it came up fully once.
    pub successful: bool,
    /// It booted successfully before, or has priority and tries left.
    pub bootable: bool,
}

/// The GRUB environment block on the EFI system partition, as it is on the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrubEnvState {
    /// The set GRUB boots when no try is pending.
    pub boot_set: String,
    /// A set GRUB boots once; null when none.
    pub try_set: Option<String>,
    /// Whether the block is what the GPT bits give (after recording a try GRUB used).
    pub in_sync: bool,
}

/// What `signpost status --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootState {
    /// The disk (device or image file).
    pub disk: String,
    /// The set the running system booted from: "A" or "B".
    pub active: String,
    /// The other set.
    pub inactive: String,
    /// The set GRUB boots at the next reset.
    pub next: String,
    /// Both sets as the GPT holds them (what `sgdisk -A N:show` shows), A first.
    pub sets: Vec<BootSetState>,
    /// The inactive set has a try: an update written to it can be activated.
    pub inactive_valid: bool,
    /// The inactive set is bootable: a rollback to it is possible.
    pub inactive_bootable: bool,
    /// A boot from this disk was ever marked successful (PRIVATE bit 57).
    pub boot_ever_succeeded: bool,
    pub grub_env: GrubEnvState,
    /// A set whose try GRUB used but the GPT still counts; signpost's next command records it.
    pub unrecorded_try: Option<String>,
}
