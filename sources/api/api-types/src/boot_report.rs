//! Where the boot's time went: `GET /report/boot` answers with a [`BootReport`], which
//! `apiclient report boot` prints. Ballast's own route (Bottlerocket's operators run
//! `systemd-analyze` in the admin container).
//!
//! Every duration and point in time is in microseconds, as systemd keeps them. A phase that
//! systemd does not know (the firmware and the loader report theirs only on UEFI with a loader
//! that tells; a user manager has no kernel or initrd phase) is `null`, never an error; a boot
//! still under way has `finished: false` and no userspace or total time yet.

use serde::{Deserialize, Serialize};

/// The boot's phases and, for each unit asked about, the chain of units it waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootReport {
    /// Whether the service manager has finished starting up (its FinishTimestamp is set);
    /// false while the boot is still in progress.
    pub finished: bool,
    /// How long each phase took.
    pub phases: BootPhases,
    /// One chain per unit asked about, in the order asked.
    pub chains: Vec<CriticalChain>,
}

/// How long each phase of the boot took, in microseconds; `null` when systemd does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootPhases {
    /// The firmware, until it started the loader.
    pub firmware_us: Option<u64>,
    /// The boot loader, until it started the kernel.
    pub loader_us: Option<u64>,
    /// The kernel, until it started the initrd (or, without one, the service manager).
    pub kernel_us: Option<u64>,
    /// The initrd, until it handed over to the service manager of the root file system.
    pub initrd_us: Option<u64>,
    /// The service manager, from its start until it finished starting up.
    pub userspace_us: Option<u64>,
    /// The whole boot: from the firmware (or the kernel, when the firmware does not say) until
    /// the service manager finished; just `userspace_us` when the kernel's start is unknown.
    pub total_us: Option<u64>,
}

/// The units a unit waited for, the way `systemd-analyze critical-chain` finds them: from the
/// unit, follow its `After=` dependency that became active last, then that one's, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CriticalChain {
    /// The unit asked about, e.g. "apiserver.service".
    pub target: String,
    /// Its load state ("loaded", "not-found", ...): a unit that is not loaded has an empty
    /// chain (a default target absent from this node is reported so, not as an error).
    pub load_state: String,
    /// The unit itself first, then what it waited for, each before what that waited for.
    pub units: Vec<ChainUnit>,
}

/// One unit of a [`CriticalChain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainUnit {
    /// The unit's name, e.g. "storewolf.service".
    pub name: String,
    /// Its active state now ("active", "inactive", "failed", ...).
    pub active_state: String,
    /// When it (last) became active, in microseconds after the service manager started
    /// (systemd-analyze's "@"); `null` if it never did.
    pub active_at_us: Option<u64>,
    /// How long it took to start, from leaving the inactive state to becoming active
    /// (systemd-analyze's "+"); `null` when unknown.
    pub start_us: Option<u64>,
    /// When it stopped being active after that, if it did, in microseconds after the service
    /// manager started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_us: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_phases_are_null_and_round_trip() {
        let report = BootReport {
            finished: true,
            phases: BootPhases {
                userspace_us: Some(172_075),
                total_us: Some(172_075),
                ..BootPhases::default()
            },
            chains: vec![CriticalChain {
                target: "t.target".into(),
                load_state: "loaded".into(),
                units: vec![ChainUnit {
                    name: "t.target".into(),
                    active_state: "active".into(),
                    active_at_us: Some(2_535_485),
                    start_us: Some(0),
                    stopped_at_us: None,
                }],
            }],
        };
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["phases"]["kernel_us"].is_null());
        assert_eq!(json["phases"]["userspace_us"], 172_075);
        assert!(json["chains"][0]["units"][0].get("stopped_at_us").is_none());
        let back: BootReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
