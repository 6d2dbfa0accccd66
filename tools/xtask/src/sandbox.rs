//! The exposure budget of Ballast's own systemd units: how much `systemd-analyze security` may
//! rate each of them (0 is a unit that can do nothing, 10 one that runs as unconfined root).
//!
//! # Background
//!
//! Every unit under `packages/*/files/usr/lib/systemd/system` that starts one of our programs
//! is sandboxed for what its program does (ProtectSystem=strict, a minimal capability bounding
//! set, a system call filter, the address families it uses, ...), with the reasons in a
//! `# Sandbox` comment in the unit. [`BUDGETS`] is the one table of how far each may go: 2.0
//! at most, unless the unit's job needs more, and then the reason is written beside the
//! number. Two tests hold the units to it:
//!
//! * tests/sandbox.rs (host): runs the real `systemd-analyze security --offline=true
//!   --root=<staged tree>` on the unit files as the packages ship them (drop-ins included), and
//!   fails when a unit is over budget or a first-party unit is missing from the table;
//! * tests/vm.rs (dev VM): runs `systemd-analyze security` on the booted node, where the units
//!   are loaded by the running systemd, and fails the same way.
//!
//! # Current limitations
//!
//! * A unit is first-party when its `ExecStart=` runs a program in `/usr/bin` (Debian's programs
//!   live in `/usr/lib/systemd` or are started by Debian's units) or its name starts with
//!   `ballast-` (the firewall's units run Debian's `/usr/sbin/nft`); a unit of ours that starts
//!   something elsewhere under another name would escape [`first_party_units`].
//! * The score is systemd's own weighting; it says nothing about what the program does inside
//!   what the sandbox allows. Keeping the `# Sandbox` comments true is review work.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exposure at most any unit may have without a reason.
pub const DEFAULT_MAX: f64 = 2.0;

/// One unit's allowance.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The unit's file name.
    pub unit: &'static str,
    /// The highest exposure `systemd-analyze security` may report for it.
    pub max: f64,
    /// Why it may go above [`DEFAULT_MAX`]; empty when it does not.
    pub reason: &'static str,
}

const fn within(unit: &'static str) -> Budget {
    Budget {
        unit,
        max: DEFAULT_MAX,
        reason: "",
    }
}

/// Every first-party unit and its budget. Units that need more than [`DEFAULT_MAX`] say why
/// (the unit file's `# Sandbox` comment has the details).
pub const BUDGETS: &[Budget] = &[
    Budget {
        unit: "apiserver.service",
        max: 3.1,
        reason: "the hub: runs the renderer (writes /etc, sethostname, restarts services, \
                 securityfs lockdown) and the updater (network, writes the disk), and reads \
                 the kernel log for support bundles, so it keeps CAP_SYS_ADMIN, CAP_SYSLOG, the \
                 disks, /dev/kmsg, IPv4/IPv6 and the host's hostname",
    },
    within("apibridge.service"),
    within(constants::FIREWALL_BASELINE_UNIT),
    within(constants::FIREWALL_UNIT),
    within("ballast-ready.service"),
    within("ballast-status.service"),
    within("boot-deadline.service"),
    within(constants::BOOTSTRAP_CONTAINERS_UNIT),
    Budget {
        unit: "console-shell.service",
        max: 10.0,
        reason: "dev images only: an unconfined root shell on the serial console is its job",
    },
    within("early-boot-config.service"),
    Budget {
        unit: "host-containerd.service",
        max: 9.6,
        reason: "a container runtime: it makes the namespaces, mounts and cgroups of host \
                 containers and starts superpowered ones with every capability; its shims and \
                 containers inherit its mount namespace and bounding set, so a sandbox here \
                 would change what every container sees. Containers are confined by their \
                 spec (and SELinux labels), not by this unit",
    },
    within(constants::HOST_CONTAINER_UNIT_TEMPLATE),
    within("mark-boot-reached.service"),
    within("mark-successful-boot.service"),
    within("migrator.service"),
    within("settings-applier.service"),
    within("settings-committer.service"),
    within("signpost-reconcile.service"),
    within("storewolf.service"),
    within("sundog.service"),
    within("update-daemon.service"),
];

/// The budget of `unit`, if the table has one.
pub fn budget(unit: &str) -> Option<&'static Budget> {
    BUDGETS.iter().find(|b| b.unit == unit)
}

/// The directory of unit files inside a package's `files/` tree and inside a root.
pub const UNIT_DIR: &str = "usr/lib/systemd/system";

/// The first-party units the packages under `packages_dir` ship (`<package>/files/<UNIT_DIR>`),
/// sorted: service files whose `ExecStart=` runs a program in `/usr/bin`.
pub fn first_party_units(packages_dir: &Path) -> Result<Vec<String>> {
    let mut units = Vec::new();
    for file in unit_files(packages_dir)? {
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".service") || !file.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read unit file {}", file.display()))?;
        let runs_ours = text.lines().any(|line| {
            line.trim()
                .strip_prefix("ExecStart=")
                .map(|cmd| cmd.trim_start_matches(['-', '@', ':', '+', '!']))
                .is_some_and(|cmd| cmd.starts_with("/usr/bin/"))
        });
        // Units named ballast-* are ours whatever they start (the firewall's run Debian's nft).
        if runs_ours || name.starts_with("ballast-") {
            units.push(name.to_string());
        }
    }
    units.sort();
    units.dedup();
    Ok(units)
}

/// Every entry of the packages' unit directories (unit files and drop-in directories).
fn unit_files(packages_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let packages = std::fs::read_dir(packages_dir)
        .with_context(|| format!("cannot list {}", packages_dir.display()))?;
    for package in packages {
        let dir = package?.path().join("files").join(UNIT_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            files.push(entry?.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Copies every package's unit files and drop-in directories into `root`/[`UNIT_DIR`], as
/// the image puts them, so that `systemd-analyze --root` sees what a node loads.
pub fn stage_units(packages_dir: &Path, root: &Path) -> Result<()> {
    let target = root.join(UNIT_DIR);
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for from in unit_files(packages_dir)? {
        let to = target.join(from.file_name().expect("a directory entry has a name"));
        if from.is_dir() {
            std::fs::create_dir_all(&to)
                .with_context(|| format!("cannot create {}", to.display()))?;
            for entry in std::fs::read_dir(&from)? {
                let entry = entry?.path();
                let dest = to.join(entry.file_name().expect("a directory entry has a name"));
                std::fs::copy(&entry, &dest).with_context(|| {
                    format!("cannot copy {} to {}", entry.display(), dest.display())
                })?;
            }
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

/// The overall exposure in `systemd-analyze security` output for `unit` (the line
/// `→ Overall exposure level for apiserver.service: 3.0 OK 🙂`).
pub fn parse_exposure(output: &str, unit: &str) -> Option<f64> {
    let marker = format!("Overall exposure level for {unit}:");
    output.lines().find_map(|line| {
        let (_, rest) = line.split_once(&marker)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The instance a template unit (`name@.service`) is rated as: systemd-analyze rates loaded
/// units, and a template is loaded only through an instance. Other units are rated as named.
pub fn rated_name(unit: &str) -> String {
    match unit.strip_suffix("@.service") {
        Some(template) => format!("{template}@budget.service"),
        None => unit.to_string(),
    }
}

/// Runs `systemd-analyze security --offline=true --root=<root>` on `units` (unit files staged
/// under `root` by [`stage_units`]; templates through an instance, see [`rated_name`]) and
/// returns each unit's exposure.
pub fn offline_exposures(root: &Path, units: &[String]) -> Result<Vec<(String, f64)>> {
    let rated: Vec<String> = units.iter().map(|u| rated_name(u)).collect();
    let out = Command::new("systemd-analyze")
        .arg("security")
        .arg("--offline=true")
        .arg(format!("--root={}", root.display()))
        .arg("--no-pager")
        .args(&rated)
        .output()
        .context("cannot run systemd-analyze (Debian package systemd)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "systemd-analyze security failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    units
        .iter()
        .zip(&rated)
        .map(|(unit, rated)| match parse_exposure(&stdout, rated) {
            Some(score) => Ok((unit.clone(), score)),
            None => bail!("systemd-analyze printed no overall exposure for {unit}: {stdout}"),
        })
        .collect()
}

/// The exposures as a table, each with its budget and whether it is within it.
pub fn table(exposures: &[(String, f64)]) -> String {
    let width = exposures
        .iter()
        .map(|(unit, _)| unit.len())
        .max()
        .unwrap_or(0)
        .max("unit".len());
    let mut out = format!("{:<width$}  exposure  budget\n", "unit");
    for (unit, score) in exposures {
        let (max, mark) = match budget(unit) {
            Some(b) if *score <= b.max => (format!("{:.1}", b.max), ""),
            Some(b) => (format!("{:.1}", b.max), "  OVER BUDGET"),
            None => ("-".to_string(), "  NOT IN THE TABLE"),
        };
        out.push_str(&format!("{unit:<width$}  {score:>8.1}  {max:>6}{mark}\n"));
    }
    out
}

/// What is wrong with `exposures`: units over their budget and units without one.
pub fn violations(exposures: &[(String, f64)]) -> Vec<String> {
    exposures
        .iter()
        .filter_map(|(unit, score)| match budget(unit) {
            None => Some(format!(
                "{unit} has no budget: add it to xtask::sandbox::BUDGETS (at most {DEFAULT_MAX:.1}, \
                 or a reason for more)"
            )),
            Some(b) if *score > b.max => Some(format!(
                "{unit}: exposure {score:.1} is over its budget of {:.1}; tighten its sandbox \
                 or raise the budget with a reason",
                b.max
            )),
            Some(_) => None,
        })
        .collect()
}

/// The unit that empties /tmp early in the boot (tmp.conf's `D /tmp`).
pub const TMPFILES_SETUP: &str = "systemd-tmpfiles-setup.service";

/// Early units (`DefaultDependencies=no`) with `PrivateDevices=yes` that are not ordered after
/// [`TMPFILES_SETUP`], read from a unit file's text and its drop-ins' (in order). systemd 252
/// builds a private /dev in a directory it makes under the host's /tmp; when tmpfiles empties
/// /tmp meanwhile, the unit fails with 226/NAMESPACE (seen in CI: storewolf and migrator, and
/// the boot was never marked successful). systemd adds this ordering for `PrivateTmp=` itself,
/// not for `PrivateDevices=`.
pub fn early_private_dev_unordered(unit: &str, texts: &[String]) -> Option<String> {
    let mut default_deps = true;
    let mut private_dev = false;
    let mut after_tmpfiles = false;
    for line in texts.iter().flat_map(|t| t.lines()).map(str::trim) {
        if let Some(v) = line.strip_prefix("DefaultDependencies=") {
            default_deps = !matches!(v.trim(), "no" | "false" | "0" | "off");
        } else if let Some(v) = line.strip_prefix("PrivateDevices=") {
            private_dev = matches!(v.trim(), "yes" | "true" | "1" | "on");
        } else if let Some(v) = line.strip_prefix("After=") {
            after_tmpfiles |= v.split_whitespace().any(|u| u == TMPFILES_SETUP);
        }
    }
    (!default_deps && private_dev && !after_tmpfiles).then(|| {
        format!(
            "{unit} starts early (DefaultDependencies=no) with PrivateDevices=yes but is not \
             After={TMPFILES_SETUP}: its private /dev is built under /tmp while tmpfiles may \
             empty it (226/NAMESPACE); add the ordering"
        )
    })
}

/// [`early_private_dev_unordered`] over every first-party unit staged under `root` (see
/// [`stage_units`]), drop-ins included.
pub fn namespace_order_violations(root: &Path, units: &[String]) -> Result<Vec<String>> {
    let dir = root.join(UNIT_DIR);
    let mut problems = Vec::new();
    for unit in units {
        let mut texts = vec![std::fs::read_to_string(dir.join(unit))
            .with_context(|| format!("cannot read {unit}"))?];
        if let Ok(entries) = std::fs::read_dir(dir.join(format!("{unit}.d"))) {
            let mut dropins: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            dropins.sort();
            for d in dropins {
                texts.push(std::fs::read_to_string(&d)?);
            }
        }
        problems.extend(early_private_dev_unordered(unit, &texts));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_unit_with_a_private_dev_must_wait_for_tmpfiles() {
        let unit = |body: &str| vec![format!("[Unit]\n{body}\n[Service]\nPrivateDevices=yes\n")];
        assert!(
            early_private_dev_unordered("a.service", &unit("DefaultDependencies=no")).is_some()
        );
        assert!(early_private_dev_unordered(
            "a.service",
            &unit("DefaultDependencies=no\nAfter=local-fs.target systemd-tmpfiles-setup.service")
        )
        .is_none());
        // Ordinary units are ordered after sysinit.target, and so after tmpfiles, already.
        assert!(early_private_dev_unordered("a.service", &unit("")).is_none());
    }

    #[test]
    fn the_overall_line_is_parsed() {
        let out = "✗ UMask=   Files created ...   0.1\n\n\
                   → Overall exposure level for apiserver.service: 3.0 OK 🙂\n";
        assert_eq!(parse_exposure(out, "apiserver.service"), Some(3.0));
        assert_eq!(parse_exposure(out, "storewolf.service"), None);
    }

    #[test]
    fn reasons_go_with_budgets_above_the_default() {
        for b in BUDGETS {
            let above = b.max > DEFAULT_MAX;
            let explained = !b.reason.is_empty();
            assert!(
                above == explained,
                "{}: a budget above {DEFAULT_MAX} needs a reason, and only such a budget",
                b.unit
            );
            assert!(b.max <= 10.0, "{}", b.unit);
        }
        let mut names: Vec<_> = BUDGETS.iter().map(|b| b.unit).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), BUDGETS.len(), "a unit is listed twice");
    }

    #[test]
    fn over_budget_and_unknown_units_are_violations() {
        let exposures = vec![
            ("storewolf.service".to_string(), 0.7),
            ("apiserver.service".to_string(), 3.2),
            ("new.service".to_string(), 0.1),
        ];
        let found = violations(&exposures);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("apiserver.service: exposure 3.2"),
            "{found:?}"
        );
        assert!(found[1].contains("new.service has no budget"), "{found:?}");
        let text = table(&exposures);
        assert!(
            text.contains("OVER BUDGET") && text.contains("NOT IN THE TABLE"),
            "{text}"
        );
    }
}
