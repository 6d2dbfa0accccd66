//! The benchmark's items, each with the check that decides it.

use crate::firewall::{self, Family};
use crate::node::Node;
use api_types::cis::{CisMode, CisResult, CisStatus};
use std::os::unix::fs::PermissionsExt;

/// The unit that keeps the clock in step (2.1.1.1).
pub const TIME_SYNC_UNIT: &str = "systemd-timesyncd.service";
/// Its configuration, rendered from settings.ntp.
const TIME_SYNC_CONF: &str = "/etc/systemd/timesyncd.conf";
/// Where persistent journal files live (4.1.2).
const JOURNAL_DIR: &str = "/var/log/journal";
/// journald's main configuration file; drop-ins are in `<dir>/journald.conf.d`.
const JOURNALD_CONF: &str = "/etc/systemd/journald.conf";
/// Drop-in directories of journald, lowest precedence first (a name in a later one hides the
/// same name in an earlier one).
const JOURNALD_DROP_IN_DIRS: &[&str] = &[
    "/usr/lib/systemd/journald.conf.d",
    "/usr/local/lib/systemd/journald.conf.d",
    "/run/systemd/journald.conf.d",
    "/etc/systemd/journald.conf.d",
];
/// modprobe's configuration directories.
const MODPROBE_DIRS: &[&str] = &[
    "/usr/lib/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/run/modprobe.d",
    "/etc/modprobe.d",
];
/// SELinux's enforcing switch in selinuxfs.
const SELINUX_ENFORCE: &str = "/sys/fs/selinux/enforce";

/// What a check decided and the facts it decided on.
type Outcome = (bool, Vec<String>);

/// One recommendation of the benchmark.
#[derive(Debug)]
pub struct Item {
    /// The benchmark's number.
    pub id: &'static str,
    /// The benchmark's title.
    pub title: &'static str,
    /// Profile level, 1 or 2.
    pub level: u8,
    /// The check, or `None` for an item a person judges.
    check: Option<fn(&Node<'_>) -> Outcome>,
    /// For a manual item: what to look at (the facts the node can give come from `hint`).
    hint: Option<fn(&Node<'_>) -> Vec<String>>,
}

impl Item {
    /// Whether the node decides this item itself.
    pub fn is_automatic(&self) -> bool {
        self.check.is_some()
    }

    /// Runs the item against `node`.
    pub fn run(&self, node: &Node<'_>) -> CisResult {
        let (mode, status, evidence) = match (self.check, self.hint) {
            (Some(check), _) => {
                let (pass, evidence) = check(node);
                let status = if pass {
                    CisStatus::Pass
                } else {
                    CisStatus::Fail
                };
                (CisMode::Automatic, status, evidence)
            }
            (None, hint) => (
                CisMode::Manual,
                CisStatus::Manual,
                hint.map(|h| h(node)).unwrap_or_default(),
            ),
        };
        if status == CisStatus::Fail {
            tracing::debug!(id = self.id, ?evidence, "CIS item failed");
        }
        CisResult {
            id: self.id.to_string(),
            title: self.title.to_string(),
            level: self.level,
            mode,
            status,
            evidence,
        }
    }
}

const fn auto(
    id: &'static str,
    title: &'static str,
    level: u8,
    check: fn(&Node<'_>) -> Outcome,
) -> Item {
    Item {
        id,
        title,
        level,
        check: Some(check),
        hint: None,
    }
}

const fn manual(
    id: &'static str,
    title: &'static str,
    level: u8,
    hint: fn(&Node<'_>) -> Vec<String>,
) -> Item {
    Item {
        id,
        title,
        level,
        check: None,
        hint: Some(hint),
    }
}

/// Every item of the benchmark, in its order.
pub const ITEMS: &[Item] = &[
    auto(
        "1.1.1.1",
        "Ensure mounting of udf filesystems is disabled",
        2,
        |n| module_disabled(n, "udf"),
    ),
    manual(
        "1.2.1",
        "Ensure software update repositories are configured",
        1,
        update_repositories,
    ),
    auto("1.3.1", "Ensure dm-verity is configured", 1, dm_verity),
    auto(
        "1.4.1",
        "Ensure setuid programs do not create core dumps",
        1,
        |n| sysctls(n, &[("fs.suid_dumpable", "0")]),
    ),
    auto(
        "1.4.2",
        "Ensure address space layout randomization (ASLR) is enabled",
        1,
        |n| sysctls(n, &[("kernel.randomize_va_space", "2")]),
    ),
    auto("1.4.3", "Ensure unprivileged eBPF is disabled", 1, |n| {
        sysctls(n, &[("kernel.unprivileged_bpf_disabled", "1")])
    }),
    auto("1.4.4", "Ensure user namespaces are disabled", 2, |n| {
        sysctls(n, &[("user.max_user_namespaces", "0")])
    }),
    auto("1.5.1", "Ensure SELinux is configured", 1, selinux),
    auto("1.5.2", "Ensure Lockdown is configured", 2, lockdown),
    manual(
        "1.6",
        "Ensure updates, patches, and additional security software are installed",
        1,
        updates,
    ),
    auto(
        "2.1.1.1",
        "Ensure time synchronization is configured and in use",
        1,
        time_sync,
    ),
    auto(
        "3.1.1",
        "Ensure packet redirect sending is disabled",
        2,
        |n| {
            sysctls(
                n,
                &[
                    ("net.ipv4.conf.all.send_redirects", "0"),
                    ("net.ipv4.conf.default.send_redirects", "0"),
                ],
            )
        },
    ),
    auto(
        "3.2.1",
        "Ensure source routed packets are not accepted",
        2,
        |n| {
            sysctls(
                n,
                &[
                    ("net.ipv4.conf.all.accept_source_route", "0"),
                    ("net.ipv4.conf.default.accept_source_route", "0"),
                    ("net.ipv6.conf.all.accept_source_route", "0"),
                    ("net.ipv6.conf.default.accept_source_route", "0"),
                ],
            )
        },
    ),
    auto("3.2.2", "Ensure ICMP redirects are not accepted", 2, |n| {
        sysctls(
            n,
            &[
                ("net.ipv4.conf.all.accept_redirects", "0"),
                ("net.ipv4.conf.default.accept_redirects", "0"),
                ("net.ipv6.conf.all.accept_redirects", "0"),
                ("net.ipv6.conf.default.accept_redirects", "0"),
            ],
        )
    }),
    auto(
        "3.2.3",
        "Ensure secure ICMP redirects are not accepted",
        2,
        |n| {
            sysctls(
                n,
                &[
                    ("net.ipv4.conf.all.secure_redirects", "0"),
                    ("net.ipv4.conf.default.secure_redirects", "0"),
                ],
            )
        },
    ),
    auto("3.2.4", "Ensure suspicious packets are logged", 2, |n| {
        sysctls(
            n,
            &[
                ("net.ipv4.conf.all.log_martians", "1"),
                ("net.ipv4.conf.default.log_martians", "1"),
            ],
        )
    }),
    auto(
        "3.2.5",
        "Ensure broadcast ICMP requests are ignored",
        1,
        |n| sysctls(n, &[("net.ipv4.icmp_echo_ignore_broadcasts", "1")]),
    ),
    auto("3.2.6", "Ensure bogus ICMP responses are ignored", 1, |n| {
        sysctls(n, &[("net.ipv4.icmp_ignore_bogus_error_responses", "1")])
    }),
    auto("3.2.7", "Ensure TCP SYN Cookies is enabled", 1, |n| {
        sysctls(n, &[("net.ipv4.tcp_syncookies", "1")])
    }),
    auto("3.3.1", "Ensure SCTP is disabled", 2, |n| {
        module_disabled(n, "sctp")
    }),
    auto(
        "3.4.1.1",
        "Ensure IPv4 default deny firewall policy",
        2,
        |n| firewall::default_deny(n, Family::V4),
    ),
    auto(
        "3.4.1.2",
        "Ensure IPv4 loopback traffic is configured",
        2,
        |n| firewall::loopback(n, Family::V4),
    ),
    manual(
        "3.4.1.3",
        "Ensure IPv4 outbound and established connections are configured",
        1,
        |n| firewall::established(n, Family::V4),
    ),
    auto(
        "3.4.2.1",
        "Ensure IPv6 default deny firewall policy",
        2,
        |n| firewall::default_deny(n, Family::V6),
    ),
    auto(
        "3.4.2.2",
        "Ensure IPv6 loopback traffic is configured",
        2,
        |n| firewall::loopback(n, Family::V6),
    ),
    manual(
        "3.4.2.3",
        "Ensure IPv6 outbound and established connections are configured",
        1,
        |n| firewall::established(n, Family::V6),
    ),
    auto(
        "4.1.1.1",
        "Ensure journald is configured to write logs to persistent disk",
        1,
        journal_persistent,
    ),
    auto(
        "4.1.2",
        "Ensure permissions on journal files are configured",
        1,
        journal_modes,
    ),
];

/// Each sysctl has its wanted value.
fn sysctls(node: &Node<'_>, wanted: &[(&str, &str)]) -> Outcome {
    let mut pass = true;
    let mut evidence = Vec::new();
    for (key, want) in wanted {
        match node.sysctl(key) {
            Ok(value) if value == *want => evidence.push(format!("{key} = {value}")),
            Ok(value) => {
                pass = false;
                evidence.push(format!(
                    "{key} = {value}, should be {want} (settings.kernel.sysctl.\"{key}\")"
                ));
            }
            Err(e) => {
                pass = false;
                evidence.push(e);
            }
        }
    }
    (pass, evidence)
}

/// Whether modprobe's configuration replaces loading `module` by a program that does nothing.
fn install_override(node: &Node<'_>, module: &str) -> Option<String> {
    for dir in MODPROBE_DIRS {
        for name in node.list(dir).into_iter().filter(|n| n.ends_with(".conf")) {
            let path = format!("{dir}/{name}");
            let Ok(text) = node.read(&path) else { continue };
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let ["install", m, program, ..] = words.as_slice() {
                    let program = program.rsplit('/').next().unwrap_or(program);
                    if *m == module && matches!(program, "true" | "false") {
                        return Some(format!("{path}: {}", line.trim()));
                    }
                }
            }
        }
    }
    None
}

/// 1.1.1.1 and 3.3.1: `module` is not loaded and cannot be: the image lacks it or modprobe is
/// told to run a program that does nothing instead.
fn module_disabled(node: &Node<'_>, module: &str) -> Outcome {
    let mut evidence = Vec::new();
    let loaded = match node.read("/proc/modules") {
        Ok(text) => text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(module)),
        Err(e) => return (false, vec![e]),
    };
    if loaded {
        return (false, vec![format!("{module} is loaded (/proc/modules)")]);
    }
    evidence.push(format!("{module} is not loaded"));
    let release = match node.read("/proc/sys/kernel/osrelease") {
        Ok(r) => r.trim().to_string(),
        Err(e) => return (false, vec![e]),
    };
    let dir = format!("/lib/modules/{release}");
    let file_is = |path: &str| {
        let name = path.rsplit('/').next().unwrap_or(path);
        [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|ext| name == format!("{module}{ext}"))
    };
    let builtin = node
        .read(&format!("{dir}/modules.builtin"))
        .map(|t| t.lines().any(|l| file_is(l.trim())))
        .unwrap_or(false);
    if builtin {
        return (
            false,
            vec![format!(
                "{module} is built into kernel {release} and cannot be disabled"
            )],
        );
    }
    let shipped = match node.read(&format!("{dir}/modules.dep")) {
        Ok(text) => text
            .lines()
            .any(|l| l.split(':').next().is_some_and(file_is)),
        Err(e) => {
            // The API server's sandbox hides the module tree (ProtectKernelModules): then only
            // modprobe's configuration can show the module is disabled.
            evidence.push(format!("cannot tell whether the image has {module} ({e})"));
            true
        }
    };
    let overridden = install_override(node, module);
    if !shipped {
        evidence.push(format!(
            "the image has no {module} module for kernel {release}"
        ));
    }
    match &overridden {
        Some(line) => evidence.push(format!("loading is disabled by {line}")),
        None => evidence.push(format!(
            "no modprobe 'install {module} /bin/false' (settings.kernel.modules.{module}.allowed = false)"
        )),
    }
    (!shipped || overridden.is_some(), evidence)
}

/// 1.3.1: the root file system is the dm-verity device early-init set up from the command
/// line's root hash, mounted read-only.
fn dm_verity(node: &Node<'_>) -> Outcome {
    let mut pass = true;
    let mut evidence = Vec::new();
    match node.read("/proc/cmdline") {
        Ok(cmdline) => {
            let hash = cmdline
                .split_whitespace()
                .find_map(|w| w.strip_prefix(boot_params::ROOT_HASH)?.strip_prefix('='));
            match hash {
                Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    evidence.push(format!(
                        "kernel command line: {}={h}",
                        boot_params::ROOT_HASH
                    ));
                }
                _ => {
                    pass = false;
                    evidence.push(format!(
                        "the kernel command line has no {}= with a sha256 root hash",
                        boot_params::ROOT_HASH
                    ));
                }
            }
        }
        Err(e) => return (false, vec![e]),
    }
    let mountinfo = match node.read("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(e) => return (false, vec![e]),
    };
    // The last mount on / is the one in effect.
    let root = mountinfo
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/"));
    let Some(root) = root else {
        return (
            false,
            vec!["no mount on / in /proc/self/mountinfo".to_string()],
        );
    };
    let fields: Vec<&str> = root.split_whitespace().collect();
    let device = fields.get(2).copied().unwrap_or("");
    let options = fields.get(5).copied().unwrap_or("");
    if options.split(',').any(|o| o == "ro") {
        evidence.push(format!("/ is mounted read-only from device {device}"));
    } else {
        pass = false;
        evidence.push(format!(
            "/ is mounted with {options} (not read-only) from device {device}"
        ));
    }
    match node.read(&format!("/sys/dev/block/{device}/dm/name")) {
        Ok(name) if name.trim() == constants::VERITY_ROOT_DM_NAME => {
            evidence.push(format!(
                "device {device} is device-mapper '{}'",
                name.trim()
            ));
        }
        Ok(name) => {
            pass = false;
            evidence.push(format!(
                "device {device} is device-mapper '{}', not the verity root '{}'",
                name.trim(),
                constants::VERITY_ROOT_DM_NAME
            ));
        }
        Err(_) => {
            pass = false;
            evidence.push(format!("device {device} is not a device-mapper device"));
        }
    }
    (pass, evidence)
}

/// 1.5.1: SELinux is active and enforcing.
fn selinux(node: &Node<'_>) -> Outcome {
    match node.read(SELINUX_ENFORCE) {
        Ok(value) if value.trim() == "1" => {
            let mut evidence = vec![format!("{SELINUX_ENFORCE} = 1 (enforcing)")];
            if let Ok(version) = node.read("/sys/fs/selinux/policyvers") {
                evidence.push(format!("policy version {}", version.trim()));
            }
            (true, evidence)
        }
        Ok(value) => (false, vec![format!("{SELINUX_ENFORCE} = {} (permissive)", value.trim())]),
        Err(_) => (
            false,
            vec![format!(
                "SELinux is not active: {SELINUX_ENFORCE} is missing (Ballast's SELinux policy is not part of this image yet)"
            )],
        ),
    }
}

/// 1.5.2: kernel lockdown is integrity (or the stricter confidentiality).
fn lockdown(node: &Node<'_>) -> Outcome {
    let text = match node.read(constants::KERNEL_LOCKDOWN) {
        Ok(text) => text,
        Err(e) => return (false, vec![e]),
    };
    let current = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or("unknown");
    let pass = matches!(current, "integrity" | "confidentiality");
    let mut evidence = vec![format!("{}: {}", constants::KERNEL_LOCKDOWN, text.trim())];
    if !pass {
        evidence.push("set settings.kernel.lockdown to integrity".to_string());
    }
    (pass, evidence)
}

/// 2.1.1.1: time servers are configured and the time service runs.
fn time_sync(node: &Node<'_>) -> Outcome {
    let mut pass = true;
    let mut evidence = Vec::new();
    match node.read(TIME_SYNC_CONF) {
        Ok(text) => {
            let servers = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("NTP="))
                .next_back()
                .map(str::trim)
                .unwrap_or("");
            if servers.is_empty() {
                pass = false;
                evidence.push(format!(
                    "{TIME_SYNC_CONF} names no NTP servers (settings.ntp.time-servers)"
                ));
            } else {
                evidence.push(format!("{TIME_SYNC_CONF}: NTP={servers}"));
            }
        }
        Err(e) => {
            pass = false;
            evidence.push(e);
        }
    }
    match node.unit_state(TIME_SYNC_UNIT) {
        Ok(state) if state == "active" => evidence.push(format!("{TIME_SYNC_UNIT} is active")),
        Ok(state) => {
            pass = false;
            evidence.push(format!("{TIME_SYNC_UNIT} is {state}"));
        }
        Err(e) => {
            pass = false;
            evidence.push(e);
        }
    }
    (pass, evidence)
}

/// journald's configuration files in the order journald reads them: the main file, then the
/// drop-ins sorted by name, where a name in a later directory hides it in an earlier one.
fn journald_files(node: &Node<'_>) -> Vec<String> {
    let mut drop_ins: std::collections::BTreeMap<String, String> = Default::default();
    for dir in JOURNALD_DROP_IN_DIRS {
        for name in node.list(dir).into_iter().filter(|n| n.ends_with(".conf")) {
            drop_ins.insert(name.clone(), format!("{dir}/{name}"));
        }
    }
    std::iter::once(JOURNALD_CONF.to_string())
        .chain(drop_ins.into_values())
        .collect()
}

/// 4.1.1.1: journald keeps the journal on disk.
fn journal_persistent(node: &Node<'_>) -> Outcome {
    let mut storage: Option<(String, String)> = None;
    for path in journald_files(node) {
        let Ok(text) = node.read(&path) else { continue };
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if section == "[Journal]" {
                if let Some(value) = line.strip_prefix("Storage=") {
                    storage = Some((value.trim().to_string(), path.clone()));
                }
            }
        }
    }
    match storage {
        Some((value, path)) if value == "persistent" => (true, vec![format!("Storage=persistent ({path})")]),
        Some((value, path)) => (false, vec![format!("Storage={value} ({path}); should be persistent")]),
        None => (
            false,
            vec!["no Storage= in journald's configuration: the default (auto) keeps the journal in memory unless /var/log/journal exists".to_string()],
        ),
    }
}

/// 4.1.2: no journal file is readable, writable or executable by others.
fn journal_modes(node: &Node<'_>) -> Outcome {
    let mut files = 0usize;
    let mut open = Vec::new();
    let mut pending = vec![node.path(JOURNAL_DIR)];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o007 != 0 {
                    let shown = entry
                        .path()
                        .strip_prefix(node.root())
                        .map(|p| format!("/{}", p.display()))
                        .unwrap_or_else(|_| entry.path().display().to_string());
                    open.push(format!("{shown} has mode {mode:03o}"));
                }
            }
        }
    }
    if open.is_empty() {
        (
            true,
            vec![format!(
                "{files} files under {JOURNAL_DIR}, none with permissions for others"
            )],
        )
    } else {
        let mut evidence = vec![format!(
            "{} of {files} files under {JOURNAL_DIR} have permissions for others",
            open.len()
        )];
        evidence.extend(open.into_iter().take(5));
        (false, evidence)
    }
}

/// Evidence for 1.2.1: where the updater looks for updates.
fn update_repositories(node: &Node<'_>) -> Vec<String> {
    let mut evidence = match node.read(constants::UPDOG_CONFIG) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("url") && !l.starts_with('#'))
            .map(|l| format!("{}: {l}", constants::UPDOG_CONFIG))
            .collect(),
        Err(e) => vec![e],
    };
    evidence.push(
        "check that these are your organization's update repository (settings.updates)".to_string(),
    );
    evidence
}

/// Evidence for 1.6: the running version, and how to look for a newer one.
fn updates(node: &Node<'_>) -> Vec<String> {
    let mut evidence: Vec<String> = match node.read(constants::OS_RELEASE) {
        Ok(text) => text
            .lines()
            .filter(|l| {
                l.starts_with("VERSION_ID=")
                    || l.starts_with("BUILD_ID=")
                    || l.starts_with("VARIANT_ID=")
            })
            .map(str::to_string)
            .collect(),
        Err(e) => vec![e],
    };
    evidence.push("compare with the newest release: apiclient update check".to_string());
    evidence
}
