//! `GET /report/boot`: where the boot's time went, read from systemd with `systemctl show`
//! (`--systemctl`, the program `GET /units` runs).
//!
//! The phases come from the manager's own timestamps (`systemctl show
//! --property=FirmwareTimestampMonotonic,...`), computed as `systemd-analyze time` does: the
//! firmware and loader timestamps count back from the kernel's start, the kernel runs from 0
//! until the initrd (or the manager) starts, the manager's phase ends when it finished
//! starting up. A timestamp systemd does not have (0, or an empty `KernelTimestamp`) makes its
//! phase unknown rather than the request fail; `FinishTimestampMonotonic` 0 is a boot still in
//! progress.
//!
//! Each chain is built as `systemd-analyze critical-chain` builds it: from the unit asked
//! about, take its `After=` dependencies, keep those that became active (and not after the unit
//! itself did), follow the one that became active last, and repeat, at most
//! [`MAX_CHAIN_UNITS`] units deep. A unit's times are those of its latest activation
//! (`ActiveEnterTimestampMonotonic`, `InactiveExitTimestampMonotonic`,
//! `ActiveExitTimestampMonotonic`).

use crate::command::CommandLine;
use crate::error::ApiError;
use api_types::boot_report::{BootPhases, BootReport, ChainUnit, CriticalChain};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// The manager's timestamps the phases are computed from.
pub const MANAGER_PROPERTIES: &str = "FirmwareTimestampMonotonic,LoaderTimestampMonotonic,\
     KernelTimestamp,InitRDTimestampMonotonic,UserspaceTimestampMonotonic,FinishTimestampMonotonic";
/// A unit's properties a chain is built from.
pub const UNIT_PROPERTIES: &str = "Id,LoadState,ActiveState,After,ActiveEnterTimestampMonotonic,\
     InactiveExitTimestampMonotonic,ActiveExitTimestampMonotonic";
/// Most units in one chain (the unit asked about included).
pub const MAX_CHAIN_UNITS: usize = 32;
/// The chains reported when the request names none: the API ready, and the settings applied.
pub const DEFAULT_TARGETS: &[&str] = &[constants::API_SERVER_UNIT, constants::CONFIGURED_TARGET];

/// The query of `GET /report/boot`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootReportQuery {
    /// One unit whose chain to report instead of the default ones.
    pub target: Option<String>,
}

impl BootReportQuery {
    /// The units whose chains to report, checked, and whether the caller named them (a unit
    /// the caller named must exist; a default one absent from the node is reported empty).
    pub fn targets(&self) -> Result<(Vec<String>, bool), ApiError> {
        match &self.target {
            Some(name) => {
                // unit_name leaves room for the ".service" it may add.
                let unit = crate::logs::unit_name("target", name)?;
                // A template (`getty@.service`) is a valid name, but no unit runs under it, and
                // `systemctl show` refuses it: systemd has no such unit.
                if unit
                    .rsplit_once('.')
                    .is_some_and(|(stem, _)| stem.ends_with('@'))
                {
                    return Err(ApiError::not_found(format!(
                        "?target=: '{unit}' is a template; name one of its instances (e.g. \
                         getty@tty1.service), see GET /units"
                    )));
                }
                Ok((vec![unit], true))
            }
            None => Ok((
                DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect(),
                false,
            )),
        }
    }
}

/// The manager's timestamps, in microseconds of the monotonic clock (firmware and loader:
/// before the kernel's start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerTimes {
    pub firmware: u64,
    pub loader: u64,
    /// Whether the kernel's start is known (`KernelTimestamp` is set; not for a user manager).
    pub kernel_known: bool,
    pub initrd: u64,
    pub userspace: u64,
    pub finish: u64,
}

/// One unit's properties, as `systemctl show` printed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitTimes {
    pub load_state: String,
    pub active_state: String,
    pub after: Vec<String>,
    /// `ActiveEnterTimestampMonotonic`.
    pub active_enter: u64,
    /// `InactiveExitTimestampMonotonic`.
    pub inactive_exit: u64,
    /// `ActiveExitTimestampMonotonic`.
    pub active_exit: u64,
}

/// The `KEY=value` blocks of `systemctl show`, one per unit asked about (separated by empty
/// lines); `expected` blocks, or an error quoting the output.
pub fn parse_show(stdout: &[u8], expected: usize) -> Result<Vec<BTreeMap<String, String>>, String> {
    let text = String::from_utf8_lossy(stdout);
    let blocks: Vec<BTreeMap<String, String>> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    if blocks.len() != expected {
        let shown: String = text.trim().chars().take(200).collect();
        return Err(format!(
            "systemctl show printed {} blocks of properties for {expected} units: {shown:?}. \
             Is --systemctl systemd's systemctl?",
            blocks.len()
        ));
    }
    Ok(blocks)
}

/// A timestamp property: 0 when absent or empty.
fn number(block: &BTreeMap<String, String>, key: &str) -> Result<u64, String> {
    match block.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|e| format!("systemctl show printed {key}={v:?}, not a number: {e}")),
    }
}

/// The manager's timestamps from `systemctl show --property=`[`MANAGER_PROPERTIES`].
pub fn parse_manager(stdout: &[u8]) -> Result<ManagerTimes, String> {
    let block = parse_show(stdout, 1)?.remove(0);
    Ok(ManagerTimes {
        firmware: number(&block, "FirmwareTimestampMonotonic")?,
        loader: number(&block, "LoaderTimestampMonotonic")?,
        kernel_known: block
            .get("KernelTimestamp")
            .is_some_and(|v| !v.trim().is_empty() && v.trim() != "n/a"),
        initrd: number(&block, "InitRDTimestampMonotonic")?,
        userspace: number(&block, "UserspaceTimestampMonotonic")?,
        finish: number(&block, "FinishTimestampMonotonic")?,
    })
}

/// Units' properties from `systemctl show UNIT... --property=`[`UNIT_PROPERTIES`].
pub fn parse_units(stdout: &[u8], expected: usize) -> Result<Vec<UnitTimes>, String> {
    parse_show(stdout, expected)?
        .into_iter()
        .map(|block| {
            Ok(UnitTimes {
                load_state: block.get("LoadState").cloned().unwrap_or_default(),
                active_state: block.get("ActiveState").cloned().unwrap_or_default(),
                after: block
                    .get("After")
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default(),
                active_enter: number(&block, "ActiveEnterTimestampMonotonic")?,
                inactive_exit: number(&block, "InactiveExitTimestampMonotonic")?,
                active_exit: number(&block, "ActiveExitTimestampMonotonic")?,
            })
        })
        .collect()
}

/// The phases, as `systemd-analyze time` computes them (see the module's documentation).
pub fn phases(t: &ManagerTimes) -> BootPhases {
    let known = |v: u64| (v > 0).then_some(v);
    let finished = t.finish > 0;
    let kernel_done = if t.initrd > 0 { t.initrd } else { t.userspace };
    let userspace = (finished && t.userspace > 0).then(|| t.finish.saturating_sub(t.userspace));
    let before_kernel = t.firmware.max(t.loader);
    BootPhases {
        firmware_us: known(t.firmware).map(|f| f.saturating_sub(t.loader)),
        loader_us: known(t.loader),
        kernel_us: (t.kernel_known && kernel_done > 0).then_some(kernel_done),
        initrd_us: (t.kernel_known && t.initrd > 0).then(|| t.userspace.saturating_sub(t.initrd)),
        userspace_us: userspace,
        total_us: if !finished {
            None
        } else if t.kernel_known {
            Some(before_kernel + t.finish)
        } else {
            userspace
        },
    }
}

/// One unit of a chain, its times counted from the manager's start (`userspace`).
pub fn chain_unit(name: &str, t: &UnitTimes, userspace: u64) -> ChainUnit {
    let active = t.active_enter > 0;
    ChainUnit {
        name: name.to_string(),
        active_state: t.active_state.clone(),
        active_at_us: active.then(|| t.active_enter.saturating_sub(userspace)),
        start_us: (active && t.inactive_exit > 0 && t.active_enter >= t.inactive_exit)
            .then(|| t.active_enter - t.inactive_exit),
        stopped_at_us: (active && t.active_exit > t.active_enter)
            .then(|| t.active_exit.saturating_sub(userspace)),
    }
}

/// Of a unit's dependencies, the one it waited for last: the one that became active last,
/// not after the unit itself did (when it did); the first of equals.
pub fn waited_for_last(unit: &UnitTimes, deps: &[UnitTimes]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, dep) in deps.iter().enumerate() {
        let in_time = dep.active_enter > 0
            && (unit.active_enter == 0 || dep.active_enter <= unit.active_enter);
        if in_time && best.is_none_or(|b| dep.active_enter > deps[b].active_enter) {
            best = Some(i);
        }
    }
    best
}

/// The properties of `names`, in their order.
async fn show(systemctl: &CommandLine, names: &[String]) -> Result<Vec<UnitTimes>, ApiError> {
    let property = format!("--property={UNIT_PROPERTIES}");
    // After "--", a name such as "-.mount" (the root mount) is not taken for an option.
    let mut args: Vec<&str> = vec!["show", &property, "--"];
    args.extend(names.iter().map(String::as_str));
    let stdout = systemctl
        .stdout(
            &args,
            crate::units::SYSTEMCTL_TIMEOUT,
            "systemctl",
            "--systemctl",
        )
        .await?;
    parse_units(&stdout, names.len()).map_err(ApiError::internal)
}

/// The chain to `target`. A unit that is not found is a 404 when the caller named it
/// (`named`), an empty chain otherwise.
pub async fn chain(
    systemctl: &CommandLine,
    target: &str,
    named: bool,
    userspace: u64,
) -> Result<CriticalChain, ApiError> {
    let mut current = show(systemctl, &[target.to_string()]).await?.remove(0);
    let mut chain = CriticalChain {
        target: target.to_string(),
        load_state: current.load_state.clone(),
        units: Vec::new(),
    };
    if current.load_state == "not-found" {
        if named {
            return Err(ApiError::not_found(format!(
                "?target=: systemd has no unit '{target}'; see GET /units for the units it has"
            )));
        }
        return Ok(chain);
    }
    chain.units.push(chain_unit(target, &current, userspace));
    let mut seen: HashSet<String> = HashSet::from([target.to_string()]);
    while chain.units.len() < MAX_CHAIN_UNITS {
        let deps: Vec<String> = current
            .after
            .iter()
            .filter(|d| !seen.contains(*d))
            .cloned()
            .collect();
        if deps.is_empty() {
            break;
        }
        let mut times = show(systemctl, &deps).await?;
        let Some(next) = waited_for_last(&current, &times) else {
            break;
        };
        chain
            .units
            .push(chain_unit(&deps[next], &times[next], userspace));
        seen.insert(deps[next].clone());
        current = times.swap_remove(next);
    }
    Ok(chain)
}

/// The whole report: the phases, and the chain to each target.
pub async fn report(
    systemctl: &CommandLine,
    query: &BootReportQuery,
) -> Result<BootReport, ApiError> {
    let (targets, named) = query.targets()?;
    let property = format!("--property={MANAGER_PROPERTIES}");
    let stdout = systemctl
        .stdout(
            &["show", &property],
            crate::units::SYSTEMCTL_TIMEOUT,
            "systemctl",
            "--systemctl",
        )
        .await?;
    let manager = parse_manager(&stdout).map_err(ApiError::internal)?;
    let mut chains = Vec::with_capacity(targets.len());
    for target in &targets {
        chains.push(chain(systemctl, target, named, manager.userspace).await?);
    }
    Ok(BootReport {
        finished: manager.finish > 0,
        phases: phases(&manager),
        chains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(enter: u64) -> UnitTimes {
        UnitTimes {
            active_enter: enter,
            ..UnitTimes::default()
        }
    }

    #[test]
    fn a_system_boot_has_every_phase() {
        // The numbers of a UEFI boot with an initrd, as systemd keeps them.
        let t = ManagerTimes {
            firmware: 3_000_000,
            loader: 1_000_000,
            kernel_known: true,
            initrd: 800_000,
            userspace: 2_000_000,
            finish: 6_000_000,
        };
        let p = phases(&t);
        assert_eq!(p.firmware_us, Some(2_000_000));
        assert_eq!(p.loader_us, Some(1_000_000));
        assert_eq!(p.kernel_us, Some(800_000));
        assert_eq!(p.initrd_us, Some(1_200_000));
        assert_eq!(p.userspace_us, Some(4_000_000));
        assert_eq!(p.total_us, Some(9_000_000));
    }

    #[test]
    fn unknown_phases_and_an_unfinished_boot_are_none() {
        let out = b"FirmwareTimestampMonotonic=0\nLoaderTimestampMonotonic=0\nKernelTimestamp=\n\
            InitRDTimestampMonotonic=0\nUserspaceTimestampMonotonic=25896349592\n\
            FinishTimestampMonotonic=0\n";
        let t = parse_manager(out).unwrap();
        assert!(!t.kernel_known);
        assert_eq!(phases(&t), BootPhases::default());
        let t = ManagerTimes {
            finish: 25_896_521_667,
            ..t
        };
        let p = phases(&t);
        assert_eq!(
            (p.firmware_us, p.kernel_us, p.initrd_us),
            (None, None, None)
        );
        assert_eq!(p.userspace_us, Some(172_075));
        assert_eq!(p.total_us, Some(172_075));
        assert!(parse_manager(b"UserspaceTimestampMonotonic=soon\n")
            .unwrap_err()
            .contains("UserspaceTimestampMonotonic"));
    }

    #[test]
    fn show_blocks_become_units_in_order() {
        // As systemd 252's systemctl prints them (properties in its own order).
        let out = b"Id=b.service\nAfter=basic.target a.service app.slice\nLoadState=loaded\n\
            ActiveState=active\nInactiveExitTimestampMonotonic=100\n\
            ActiveEnterTimestampMonotonic=300\nActiveExitTimestampMonotonic=0\n\n\
            Id=nosuch.service\nAfter=\nLoadState=not-found\nActiveState=inactive\n\
            InactiveExitTimestampMonotonic=0\nActiveEnterTimestampMonotonic=0\n\
            ActiveExitTimestampMonotonic=0\n";
        let units = parse_units(out, 2).unwrap();
        assert_eq!(units[0].after, ["basic.target", "a.service", "app.slice"]);
        assert_eq!(units[1].load_state, "not-found");
        assert!(units[1].after.is_empty());
        let c = chain_unit("b.service", &units[0], 50);
        assert_eq!((c.active_at_us, c.start_us), (Some(250), Some(200)));
        assert_eq!(chain_unit("n", &units[1], 50).active_at_us, None);
        assert!(parse_units(out, 3).unwrap_err().contains("--systemctl"));
    }

    #[test]
    fn the_chain_follows_the_dependency_active_last_before_the_unit() {
        let me = unit(1000);
        // Never active; active last but after the unit (restarted since); the one to follow;
        // an earlier one.
        let deps = [unit(0), unit(2000), unit(900), unit(500)];
        assert_eq!(waited_for_last(&me, &deps), Some(2));
        assert_eq!(waited_for_last(&me, &[unit(0)]), None);
        // A unit that never became active: its dependency active last.
        assert_eq!(waited_for_last(&unit(0), &deps), Some(1));
    }

    #[test]
    fn targets_are_checked_and_default_to_the_api_and_configured() {
        let q = BootReportQuery { target: None };
        assert_eq!(
            q.targets().unwrap(),
            (
                vec![
                    "apiserver.service".to_string(),
                    "configured.target".to_string()
                ],
                false
            )
        );
        let q = BootReportQuery {
            target: Some("containerd".into()),
        };
        assert_eq!(q.targets().unwrap().0, ["containerd.service"]);
        let q = BootReportQuery {
            target: Some("../x".into()),
        };
        let e = q.targets().unwrap_err();
        assert!(e.message.starts_with("?target=:"), "{}", e.message);
        // A template is no unit: 404, whether or not its type is given.
        for template in ["getty@", "getty@.service", "a@b@.socket"] {
            let q = BootReportQuery {
                target: Some(template.into()),
            };
            let e = q.targets().unwrap_err();
            assert_eq!(e.status.as_u16(), 404, "{template}: {}", e.message);
            assert!(e.message.contains("template"), "{}", e.message);
        }
        let q = BootReportQuery {
            target: Some("getty@tty1".into()),
        };
        assert_eq!(q.targets().unwrap().0, ["getty@tty1.service"]);
    }
}
