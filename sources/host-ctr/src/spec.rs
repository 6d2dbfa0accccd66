//! The OCI runtime spec of a host container: what it shares with the host and what it may do.
//!
//! Every host container uses the host's network and hostname (no network or UTS namespace),
//! sees the API socket at [`constants::API_SOCKET`], its own persistent directory at
//! `/.ballast/host-containers/NAME` and the host's DNS configuration. A superpowered one is
//! privileged, like Bottlerocket's admin container: all capabilities, every device, the host's
//! PID namespace, `/sys` writable, no masked paths, and the host's root read-only at
//! [`constants::HOST_ROOTFS_INSIDE`]. Any other gets Docker's default capabilities, its own PID
//! namespace and the usual masked and read-only paths.
//!
//! The spec is built as JSON (it reads like the document runc gets) and then parsed into
//! `oci_spec::runtime::Spec`, so that a field the runtime spec does not know fails here.

use crate::error::{self, Result};
use serde_json::{json, Value};
use snafu::ResultExt;
use std::path::Path;

/// Docker's (and containerd's) default capabilities for an unprivileged container.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability of Linux 6.1, for a superpowered container, in the order of their numbers
/// (`CAP_CHOWN` is 0): a superpowered container gets those of them in [`bounding_set`], the
/// ones the running kernel knows, so the runtime is not asked for one it cannot give.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What the image's configuration says about the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProcess {
    /// Entrypoint followed by Cmd.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
}

impl ImageProcess {
    /// Reads the process from an OCI image configuration document.
    pub fn from_config(config: &Value) -> ImageProcess {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let c = &config["config"];
        let mut args = strings(&c["Entrypoint"]);
        args.extend(strings(&c["Cmd"]));
        ImageProcess {
            args,
            env: strings(&c["Env"]),
            cwd: c["WorkingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    }
}

/// What a container is for: where it sees its own directory and which cgroup it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A host container (`settings.host-containers`).
    Host,
    /// A bootstrap container (`settings.bootstrap-containers`), run at boot.
    Bootstrap,
}

impl Kind {
    /// The directory inside the container under which it sees its own storage.
    pub fn storage_inside(self) -> &'static str {
        match self {
            Kind::Host => constants::HOST_CONTAINERS_STORAGE_INSIDE,
            Kind::Bootstrap => constants::BOOTSTRAP_CONTAINERS_STORAGE_INSIDE,
        }
    }

    /// The containerd namespace of this kind of container, also its cgroup's parent.
    pub fn namespace(self) -> &'static str {
        match self {
            Kind::Host => constants::HOST_CONTAINERD_NAMESPACE,
            Kind::Bootstrap => constants::BOOTSTRAP_CONTAINERD_NAMESPACE,
        }
    }
}

/// Everything the spec depends on.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub superpowered: bool,
    pub process: &'a ImageProcess,
    /// The container's persistent directory on the host.
    pub storage: &'a Path,
    /// The host's API socket.
    pub api_socket: &'a Path,
    /// The capabilities the runtime can give (bit N: capability N), see [`bounding_set`].
    pub bounding: u64,
}

/// The capabilities a superpowered container can be given (bit N: capability N): every one
/// the running kernel knows (`/proc/sys/kernel/cap_last_cap`); all bits when that cannot be
/// read. host-ctr's own bounding set is no guide: its unit drops every capability, while the
/// host containerd, whose shim starts the container, keeps them all.
pub fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|last| last.trim().parse::<u32>().ok())
        .map(|last| match last {
            63.. => u64::MAX,
            last => (1u64 << (last + 1)) - 1,
        })
        .unwrap_or(u64::MAX)
}

/// This process's capability bounding set (bit N: capability N), from `/proc/self/status`;
/// all bits when it cannot be read. What a runtime started by this process inherits.
pub fn own_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// The capabilities of `wanted` that are in `bounding`.
fn capabilities(wanted: &[&'static str], bounding: u64) -> Vec<&'static str> {
    wanted
        .iter()
        .copied()
        .filter(|cap| {
            ALL_CAPABILITIES
                .iter()
                .position(|c| c == cap)
                .is_some_and(|bit| bit < 64 && bounding & (1u64 << bit) != 0)
        })
        .collect()
}

fn bind(source: &str, destination: &str, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if read_only { "ro" } else { "rw" });
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// The runtime spec as JSON, checked against the runtime-spec types.
pub fn build(input: &SpecInput<'_>) -> Result<Value> {
    let process = input.process;
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    }
    let caps = capabilities(
        if input.superpowered {
            ALL_CAPABILITIES
        } else {
            DEFAULT_CAPABILITIES
        },
        input.bounding,
    );
    let inside = format!("{}/{}", input.kind.storage_inside(), input.name);

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=755"]}),
        bind(
            &input.api_socket.display().to_string(),
            constants::API_SOCKET,
            false,
        ),
        bind(&input.storage.display().to_string(), &inside, false),
        bind("/etc/resolv.conf", "/etc/resolv.conf", true),
        bind("/etc/hosts", "/etc/hosts", true),
    ];
    if input.superpowered {
        mounts.insert(0, bind("/dev", "/dev", false));
        mounts.push(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                           "options": ["nosuid", "noexec", "nodev", "rw"]}),
        );
        mounts.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "rw"]}),
        );
        let mut host_root = bind("/", constants::HOST_ROOTFS_INSIDE, true);
        host_root["options"] = json!(["rbind", "rslave", "ro"]);
        mounts.push(host_root);
    } else {
        mounts.insert(
            0,
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        );
        mounts.push(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                           "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
        mounts.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
    }

    let mut namespaces = vec![json!({"type": "ipc"}), json!({"type": "mount"})];
    if !input.superpowered {
        namespaces.push(json!({"type": "pid"}));
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": format!("/{}/{}", input.kind.namespace(), input.name),
        "resources": {"devices": [{"allow": input.superpowered, "access": "rwm"}]},
    });
    if !input.superpowered {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": process.args,
            "env": env,
            "cwd": process.cwd.as_deref().unwrap_or("/"),
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": !input.superpowered,
        },
        "root": {"path": "rootfs", "readonly": false},
        "mounts": mounts,
        "linux": linux,
    });
    // The typed form catches a misspelt field or an unknown capability.
    let _typed: oci_spec::runtime::Spec =
        serde_json::from_value(spec.clone()).context(error::SpecSnafu { name: input.name })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> ImageProcess {
        ImageProcess::from_config(&json!({"config": {
            "Entrypoint": ["/usr/bin/catatonit", "-P"], "Cmd": null,
            "Env": ["HOME=/root"], "WorkingDir": "/root"}}))
    }

    fn spec(superpowered: bool) -> Value {
        let process = process();
        build(&SpecInput {
            kind: Kind::Host,
            name: "admin",
            superpowered,
            process: &process,
            storage: Path::new("/var/lib/host-containers/admin"),
            api_socket: Path::new(constants::API_SOCKET),
            bounding: u64::MAX,
        })
        .unwrap()
    }

    fn destinations(spec: &Value) -> Vec<&str> {
        spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    fn namespaces(spec: &Value) -> Vec<&str> {
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn capabilities_are_limited_to_the_bounding_set() {
        // Everything but CAP_SYS_RESOURCE (24), as in a sandbox that withholds it.
        let caps = capabilities(ALL_CAPABILITIES, 0x1ff_feff_ffff);
        assert_eq!(caps.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE"));
        assert_eq!(ALL_CAPABILITIES[24], "CAP_SYS_RESOURCE");
        assert_eq!(
            capabilities(DEFAULT_CAPABILITIES, u64::MAX).len(),
            DEFAULT_CAPABILITIES.len()
        );
        assert!(bounding_set() != 0);
    }

    #[test]
    fn reads_the_image_process() {
        let p = process();
        assert_eq!(p.args, ["/usr/bin/catatonit", "-P"]);
        assert_eq!(p.cwd.as_deref(), Some("/root"));
        assert_eq!(
            ImageProcess::from_config(&json!({})),
            ImageProcess::default()
        );
    }

    #[test]
    fn superpowered_sees_the_host() {
        let s = spec(true);
        let d = destinations(&s);
        assert!(d.contains(&constants::HOST_ROOTFS_INSIDE), "{d:?}");
        assert!(d.contains(&constants::API_SOCKET));
        assert!(d.contains(&"/.ballast/host-containers/admin"));
        let ns = namespaces(&s);
        assert!(!ns.contains(&"pid") && !ns.contains(&"network"), "{ns:?}");
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            ALL_CAPABILITIES.len()
        );
        assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], true);
        assert!(s["linux"].get("maskedPaths").is_none());
    }

    #[test]
    fn confined_does_not() {
        let s = spec(false);
        let d = destinations(&s);
        assert!(!d.contains(&constants::HOST_ROOTFS_INSIDE), "{d:?}");
        assert!(d.contains(&constants::API_SOCKET));
        let ns = namespaces(&s);
        assert!(ns.contains(&"pid") && !ns.contains(&"network"), "{ns:?}");
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], false);
        assert!(s["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=")));
    }
}
