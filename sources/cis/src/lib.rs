//! # Background
//!
//! Operators of container hosts are asked to show that a node meets the CIS benchmark. Ballast
//! answers that over the API (`GET /report/cis`, `apiclient report cis`), without a shell on the
//! node: this crate holds one check per recommendation of the CIS Bottlerocket Benchmark, the
//! list Bottlerocket's own report (bloodhound) checks, 28 items of which 15 are at level 1, 13
//! at level 2 and 4 are left to a person. What each item asks for is the benchmark's; how it is
//! checked here is Ballast's: values are read from files (`/proc/sys`, securityfs, mount table,
//! modprobe and journald configuration, the journal's file modes, the firewall's loaded
//! ruleset), unit states from systemd, and every result carries the facts it was decided on.
//!
//! On `node` and `dev`, every automatic item passes with the default settings except 1.5.1
//! (SELinux), which waits for Ballast's SELinux policy. Several defaults exist for this report:
//! the firewall (`settings.firewall`), `user.max_user_namespaces = 0`,
//! `kernel.unprivileged_bpf_disabled = 1`, udf and sctp blocked, and the persistent journal.
//!
//! Where Ballast reads an item differently from Bottlerocket, on purpose:
//! - 3.4.1.1 and 3.4.2.1 (default deny): Ballast's firewall drops inbound traffic by default and
//!   leaves outbound and forwarded traffic alone (containers publish their ports through their
//!   own network, and the node must reach its registries and update repository), so the check
//!   asks for an input chain that drops by default; the evidence says that forward and output
//!   are open. Bottlerocket's check wants the three iptables chains at DROP.
//! - 1.1.1.1 and 3.3.1 (udf, sctp): a module the image does not ship cannot be loaded, which
//!   passes as well as a modprobe `install NAME /bin/false` (Ballast has both by default).
//! - 1.5.2 (lockdown): `confidentiality` passes as well as `integrity`: it includes it.
//! - 2.1.1.1 (time synchronization): Ballast uses systemd-timesyncd, not chrony.
//!
//! # Usage
//!
//! ```no_run
//! use cis::{Level, Node, Systemctl};
//!
//! let systemctl = Systemctl::new(vec!["systemctl".to_string()]);
//! let node = Node::new("/", &systemctl);
//! let report = cis::report(&node, Level::Two);
//! println!("{}", report.to_text());
//! ```
//!
//! Tests give [`Node::new`] a fixture tree and a map of unit states ([`FixedUnits`]) instead.
//!
//! # Current limitations
//!
//! - The firewall items read the ruleset as `ballast-firewall.service` recorded it right after
//!   loading it (`nft -j list ruleset`, in [`constants::FIREWALL_LOADED_JSON`]): the API
//!   server's sandbox has neither netlink nor CAP_NET_ADMIN to ask the kernel. A ruleset
//!   changed later by hand (from a superpowered container) is not seen.
//! - The firewall checks understand the shapes Ballast's template writes and the common
//!   spellings of the same rules (`iif`/`iifname`, an address or a /32 or /128 prefix); an
//!   equivalent ruleset written very differently may fail them.
//! - journald's effective configuration is worked out from the files (the main file, then
//!   drop-ins by name); the command line and credentials journald may also read are not.
//! - 4.1.2 passes when there are no journal files at all (nothing is readable by others); 4.1.1.1
//!   is the item that asks for them.
#![forbid(unsafe_code)]

mod checks;
mod firewall;
mod node;

pub use api_types::cis::{CisMode, CisReport, CisResult, CisStatus};
pub use checks::{Item, ITEMS, TIME_SYNC_UNIT};
pub use node::{FixedUnits, Node, Systemctl, UnitStates};

/// The benchmark the items come from.
pub const BENCHMARK: &str = "CIS Bottlerocket Benchmark v1.0.0";

/// A profile level of the benchmark; level 2 includes level 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The basic profile.
    One,
    /// The basic profile and the stricter one.
    Two,
}

impl Level {
    /// The level as its number.
    pub fn number(self) -> u8 {
        match self {
            Level::One => 1,
            Level::Two => 2,
        }
    }

    /// The level numbered `number`, if it is 1 or 2.
    pub fn from_number(number: u8) -> Option<Level> {
        match number {
            1 => Some(Level::One),
            2 => Some(Level::Two),
            _ => None,
        }
    }
}

/// Runs every item up to `level` against `node`, in benchmark order.
pub fn report(node: &Node<'_>, level: Level) -> CisReport {
    let results = ITEMS
        .iter()
        .filter(|item| item.level <= level.number())
        .map(|item| item.run(node))
        .collect();
    let report = CisReport::new(BENCHMARK, level.number(), results);
    tracing::info!(
        level = level.number(),
        passed = report.passed,
        failed = report.failed,
        manual = report.manual,
        "CIS report"
    );
    report
}
