//! `signpost`: reads and changes which partition set of a Ballast disk boots.
//!
//! # Background
//!
//! A Ballast disk has two partition sets, A and B (see `disk_layout`). The running system uses
//! one; an update is written to the other, which then gets one try. The state lives in the GPT
//! attribute bits of BOOT-A and BOOT-B (priority 48-51, tries left 52-55, successful 56) and in
//! bit 57 of PRIVATE ("a boot ever succeeded"), as in Bottlerocket, so `sgdisk -A N:show` shows
//! it. Stock GRUB cannot read those bits, so a GRUB environment block on the EFI system
//! partition carries a copy of the decision (`grubenv`); GRUB spends a one-shot try in that block
//! itself. The GPT bits stay the one source of truth: every command here first records a try
//! GRUB used into the GPT, then changes the bits, writes the GPT, and derives the block again.
//!
//! In the update flow (DESIGN.md), the updater runs `clear-inactive`, writes the new images to
//! the inactive set, runs `mark-inactive-valid` and `upgrade-to-inactive`, and reboots. The new
//! image marks itself with `mark-successful-boot` once it is up; if it never does, GRUB has
//! already spent its single try and the next reset boots the old set.
//!
//! The commands, on the active set X and the inactive set Y:
//!
//! | command                   | effect                                                      |
//! |---------------------------|-------------------------------------------------------------|
//! | `status`                  | show both sets, the next boot and the GRUB block            |
//! | `mark-successful-boot`    | X successful; PRIVATE bit 57 set                            |
//! | `clear-inactive`          | Y priority 0, tries 0, not successful                       |
//! | `mark-inactive-valid`     | Y tries 1                                                   |
//! | `upgrade-to-inactive`     | Y priority 2, not successful; X priority 1 (needs Y valid)  |
//! | `cancel-upgrade`          | Y priority 0; X priority 2                                  |
//! | `rollback-to-inactive`    | Y priority 2; X priority 1 (needs Y bootable)               |
//! | `reconcile`               | only record a try GRUB used and derive the block again      |
//! | `has-boot-ever-succeeded` | print `true` or `false` (PRIVATE bit 57)                    |
//! | `boot-deadline`           | reset the node if X is not marked successful in time        |
//!
//! # Which disk and which set
//!
//! On a node, [`find_boot_disk`] reads `ballast.root=PARTLABEL=ROOT-A|B` (or a `/dev/...` path)
//! from the kernel command line, which GRUB writes with the letter of the set it booted, and
//! finds that partition and its disk under `/sys/class/block` and `/dev`. Elsewhere (tests, an
//! image file on a build host) the disk and set are given with `--disk` and `--active`.
//!
//! # Usage
//!
//! ```no_run
//! use disk_layout::BootSet;
//! use signpost::{Operation, Signpost};
//!
//! let signpost = Signpost::new("ballast.img", BootSet::A);
//! signpost.apply(Operation::ClearInactive)?;
//! // ... write BOOT-B, ROOT-B, HASH-B ...
//! signpost.apply(Operation::MarkInactiveValid)?;
//! let status = signpost.apply(Operation::UpgradeToInactive)?;
//! assert_eq!(status.next, BootSet::B);
//! # Ok::<(), signpost::Error>(())
//! ```
//!
//! ```text
//! signpost status [--json]
//! signpost --disk ballast.img --active A upgrade-to-inactive
//! ```
//!
//! `status --json` prints `api_types::boot::BootState` ([`Status::to_document`]), the document
//! the API server reads for `GET /status`; it is declared in `api-types` so both sides agree.
//!
//! # Current limitations
//!
//! * No lock: two signpost processes changing the same disk at once can lose a change. On a
//!   node only the updater and the boot-time units run it, one after another.
//! * Only one try is ever given to a new set, as in Bottlerocket.
//! * Discovery trusts the command line: a disk whose ROOT partition is named by a custom
//!   `ballast.root=` outside the A/B plan is refused rather than guessed.
//! * `has-boot-ever-succeeded` prints `true` or `false`; it does not write
//!   `/etc/has-boot-ever-succeeded` itself (a unit can redirect its output).
#![forbid(unsafe_code)]

pub mod deadline;
pub mod discover;
pub mod error;

pub use discover::{find_boot_disk, BootDisk};
pub use error::{Error, Result};

use disk_layout::{read_flags, write_flags, BootFlags, BootSet, PartitionFlags};
use error::{FlagsSnafu, GrubEnvSnafu, ReadCmdlineSnafu, RefusedSnafu};
use grubenv::BootSelection;
use snafu::ResultExt;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the kernel command line is read on a node.
pub const CMDLINE_PATH: &str = "/proc/cmdline";
/// Where block devices are listed on a node.
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";
/// Where device nodes are on a node.
pub const DEV_DIR: &str = "/dev";

/// A change of the A/B state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The active set came up: mark it successful and record that a boot succeeded.
    MarkSuccessfulBoot,
    /// Make the inactive set unbootable before an update is written to it.
    ClearInactive,
    /// The update on the inactive set is complete: give it one try.
    MarkInactiveValid,
    /// Boot the inactive set next, once.
    UpgradeToInactive,
    /// Undo `UpgradeToInactive`.
    CancelUpgrade,
    /// Boot the inactive set next, which must have booted before or be marked valid.
    RollbackToInactive,
    /// Change no bit: only record a try GRUB used and derive the GRUB block again.
    Reconcile,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 7] = [
        Operation::MarkSuccessfulBoot,
        Operation::ClearInactive,
        Operation::MarkInactiveValid,
        Operation::UpgradeToInactive,
        Operation::CancelUpgrade,
        Operation::RollbackToInactive,
        Operation::Reconcile,
    ];

    /// The command name, e.g. `upgrade-to-inactive`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::MarkSuccessfulBoot => "mark-successful-boot",
            Operation::ClearInactive => "clear-inactive",
            Operation::MarkInactiveValid => "mark-inactive-valid",
            Operation::UpgradeToInactive => "upgrade-to-inactive",
            Operation::CancelUpgrade => "cancel-upgrade",
            Operation::RollbackToInactive => "rollback-to-inactive",
            Operation::Reconcile => "reconcile",
        }
    }

    /// Applies the operation to `flags` with `active` running; a refusal changes nothing.
    pub fn apply_to(self, flags: &mut BootFlags, active: BootSet) -> disk_layout::Result<()> {
        match self {
            Operation::MarkSuccessfulBoot => flags.mark_successful_boot(active),
            Operation::ClearInactive => flags.clear_inactive(active),
            Operation::MarkInactiveValid => flags.mark_inactive_valid(active),
            Operation::UpgradeToInactive => flags.upgrade_to_inactive(active)?,
            Operation::CancelUpgrade => flags.cancel_upgrade(active),
            Operation::RollbackToInactive => flags.rollback_to_inactive(active)?,
            Operation::Reconcile => {}
        }
        Ok(())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The boot fields of one set, as the GPT holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetStatus {
    pub set: BootSet,
    pub priority: u8,
    pub tries_left: u8,
    pub successful: bool,
    /// It booted successfully before, or has priority and tries left.
    pub bootable: bool,
}

impl SetStatus {
    fn new(set: BootSet, flags: PartitionFlags) -> Self {
        SetStatus {
            set,
            priority: flags.priority,
            tries_left: flags.tries_left,
            successful: flags.successful,
            bootable: flags.is_bootable(),
        }
    }
}

/// The GRUB environment block as it is on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrubEnvStatus {
    /// The set GRUB boots when no try is pending.
    pub boot_set: BootSet,
    /// A set GRUB boots once.
    pub try_set: Option<BootSet>,
    /// Whether the block is what the GPT bits give (after recording a try GRUB used).
    pub in_sync: bool,
}

/// The A/B state of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub disk: PathBuf,
    /// The set the running system booted from.
    pub active: BootSet,
    pub inactive: BootSet,
    /// The set GRUB boots at the next reset, from the block on the disk.
    pub next: BootSet,
    /// Both sets as the GPT holds them (what `sgdisk -A N:show` shows), A first.
    pub sets: [SetStatus; 2],
    /// The inactive set has a try (tries left > 0): `upgrade-to-inactive` is allowed.
    pub inactive_valid: bool,
    /// The inactive set is bootable: `rollback-to-inactive` is allowed.
    pub inactive_bootable: bool,
    /// PRIVATE bit 57.
    pub boot_ever_succeeded: bool,
    pub grub_env: GrubEnvStatus,
    /// A set whose try GRUB used but the GPT still counts; the next command records it.
    pub unrecorded_try: Option<BootSet>,
}

impl Status {
    /// The status of `set`.
    pub fn set(&self, set: BootSet) -> &SetStatus {
        &self.sets[match set {
            BootSet::A => 0,
            BootSet::B => 1,
        }]
    }

    /// The status as the document `status --json` prints ([`api_types::boot::BootState`],
    /// declared once for signpost and the API server that reads it).
    pub fn to_document(&self) -> api_types::boot::BootState {
        use api_types::boot::{BootSetState, BootState, GrubEnvState};
        let letter = |set: BootSet| set.letter().to_string();
        BootState {
            disk: self.disk.display().to_string(),
            active: letter(self.active),
            inactive: letter(self.inactive),
            next: letter(self.next),
            sets: self
                .sets
                .iter()
                .map(|s| BootSetState {
                    set: letter(s.set),
                    priority: s.priority,
                    tries_left: s.tries_left,
                    successful: s.successful,
                    bootable: s.bootable,
                })
                .collect(),
            inactive_valid: self.inactive_valid,
            inactive_bootable: self.inactive_bootable,
            boot_ever_succeeded: self.boot_ever_succeeded,
            grub_env: GrubEnvState {
                boot_set: letter(self.grub_env.boot_set),
                try_set: self.grub_env.try_set.map(letter),
                in_sync: self.grub_env.in_sync,
            },
            unrecorded_try: self.unrecorded_try.map(letter),
        }
    }

    /// The status as pretty JSON: [`Status::to_document`].
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.to_document()).context(error::JsonSnafu)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "Disk:           {}", self.disk.display())?;
        writeln!(f, "Active set:     {}", self.active)?;
        writeln!(f, "Next boot:      {}", self.next)?;
        for s in &self.sets {
            writeln!(
                f,
                "Set {}:          priority={} tries_left={} successful={}{}",
                s.set,
                s.priority,
                s.tries_left,
                s.successful,
                if s.bootable { " (bootable)" } else { "" }
            )?;
        }
        writeln!(
            f,
            "Inactive set {}: valid={} bootable={}",
            self.inactive,
            yes_no(self.inactive_valid),
            yes_no(self.inactive_bootable)
        )?;
        writeln!(
            f,
            "Boot ever succeeded: {}",
            yes_no(self.boot_ever_succeeded)
        )?;
        write!(
            f,
            "GRUB environment: boot_set={} try_set={} ({})",
            self.grub_env.boot_set,
            self.grub_env.try_set.map_or("", BootSet::letter),
            if self.grub_env.in_sync {
                "in sync with the GPT"
            } else {
                "NOT in sync with the GPT; any command other than status fixes it"
            }
        )?;
        if let Some(set) = self.unrecorded_try {
            write!(
                f,
                "\nGRUB used the try of set {set}; the GPT records it at the next command"
            )?;
        }
        Ok(())
    }
}

/// One disk and the set running from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signpost {
    disk: PathBuf,
    active: BootSet,
}

impl Signpost {
    /// Works on `disk` (a whole-disk device or an image file) with `active` as the running set.
    pub fn new(disk: impl Into<PathBuf>, active: BootSet) -> Self {
        Signpost {
            disk: disk.into(),
            active,
        }
    }

    /// The boot disk and running set of this node, from `/proc/cmdline`, `/sys/class/block` and
    /// `/dev` (see [`find_boot_disk`]).
    pub fn on_this_node() -> Result<Self> {
        let cmdline = std::fs::read_to_string(CMDLINE_PATH)
            .context(ReadCmdlineSnafu { path: CMDLINE_PATH })?;
        let found = find_boot_disk(&cmdline, Path::new(SYS_CLASS_BLOCK), Path::new(DEV_DIR))?;
        Ok(Signpost::new(found.disk, found.active))
    }

    /// The disk.
    pub fn disk(&self) -> &Path {
        &self.disk
    }

    /// The running set.
    pub fn active(&self) -> BootSet {
        self.active
    }

    fn read_flags(&self) -> Result<BootFlags> {
        read_flags(&self.disk).context(FlagsSnafu { disk: &self.disk })
    }

    fn read_env(&self) -> Result<BootSelection> {
        let env = grubenv::read_disk(&self.disk).context(GrubEnvSnafu { disk: &self.disk })?;
        Ok(BootSelection::from_env(&env.env))
    }

    /// The A/B state; changes nothing.
    pub fn status(&self) -> Result<Status> {
        let flags = self.read_flags()?;
        let env = self.read_env()?;
        let mut effective = flags;
        let unrecorded_try = grubenv::record_consumed_try(&mut effective, &env);
        let inactive = self.active.other();
        Ok(Status {
            disk: self.disk.clone(),
            active: self.active,
            inactive,
            // What GRUB's script does with the block at the next reset.
            next: env.try_set.unwrap_or(env.boot_set),
            sets: BootSet::ALL.map(|set| SetStatus::new(set, flags.get(set))),
            inactive_valid: effective.get(inactive).tries_left > 0,
            inactive_bootable: effective.get(inactive).is_bootable(),
            boot_ever_succeeded: flags.ever_succeeded,
            grub_env: GrubEnvStatus {
                boot_set: env.boot_set,
                try_set: env.try_set,
                in_sync: BootSelection::from_flags(&effective) == env,
            },
            unrecorded_try,
        })
    }

    /// Applies `operation`: records a try GRUB used, changes the bits, writes the GPT (only if
    /// a bit changed) and derives the GRUB block again. A refused operation writes nothing.
    /// Returns the state afterwards.
    pub fn apply(&self, operation: Operation) -> Result<Status> {
        let before = self.read_flags()?;
        let env = self.read_env()?;
        let mut flags = before;
        if let Some(set) = grubenv::record_consumed_try(&mut flags, &env) {
            tracing::info!(%set, "GRUB used the pending try of set {set}; recording it in the GPT");
        }
        operation
            .apply_to(&mut flags, self.active)
            .context(RefusedSnafu {
                operation: operation.name(),
                active: self.active,
            })?;
        if flags != before {
            write_flags(&self.disk, &flags).context(FlagsSnafu { disk: &self.disk })?;
            tracing::info!(
                disk = %self.disk.display(),
                "{operation}: {flags}"
            );
        }
        let selection =
            grubenv::sync_disk(&self.disk).context(GrubEnvSnafu { disk: &self.disk })?;
        tracing::debug!(?selection, "GRUB environment derived from the GPT");
        self.status()
    }

    /// PRIVATE bit 57: whether any boot from this disk was ever marked successful.
    pub fn has_boot_ever_succeeded(&self) -> Result<bool> {
        Ok(self.read_flags()?.ever_succeeded)
    }
}
