//! The paths and names that more than one program of a Ballast node agrees on.
//!
//! # Background
//!
//! A node is a set of small programs that meet at fixed places: the API server listens on a
//! socket that every client dials, storewolf seeds a transaction that early-boot-config adds to
//! and settings-committer commits, the migrator and the updater share the migration repository
//! and the trusted TUF root, and the build host puts files where the node later looks for them.
//! When each program spells such a place itself, a rename reaches some of them and not others;
//! here each is written once (as Bottlerocket's `constants` crate does), and a test of this
//! crate fails if one of these values comes back as a string literal anywhere else in the
//! workspace.
//!
//! The crate has no dependencies and no I/O, so the smallest node program and the build tools
//! can import it alike.
//!
//! # Usage
//!
//! ```
//! use std::path::Path;
//!
//! assert_eq!(Path::new(constants::API_SOCKET), Path::new("/run/api.sock"));
//! // The image builder writes below a staging directory, so it takes the relative form.
//! assert_eq!(constants::TRUSTED_ROOT_JSON_IN_IMAGE, "usr/share/updates/root.json");
//! ```
//!
//! Values are `&str` so that they also work as clap defaults
//! (`#[arg(long, default_value = constants::API_SOCKET)]`).
//!
//! # Current limitations
//!
//! * systemd units, tmpfiles.d entries and `etc/group` under `packages/` are data, not Rust:
//!   they still spell these values themselves (`--socket-path /run/api.sock`,
//!   `api:x:274:`), and only the VM tests notice if they drift.
//! * Names private to one crate (a file inside the datastore, the updater's cache files) stay in
//!   that crate; this is only for what crosses a crate boundary.
#![forbid(unsafe_code)]

/// The datastore's base directory, as a literal so that [`DATASTORE_CURRENT`] can extend it.
macro_rules! datastore_dir {
    () => {
        "/var/lib/ballast/datastore"
    };
}

/// The API's virtio-serial port name, as a literal so that [`API_PORT`] can extend it.
macro_rules! api_port_name {
    () => {
        "ballast.api"
    };
}

/// The name of the virtio-serial port through which a VM's host reaches the API: the VM
/// harness gives the port this name, and `apibridge` in the guest connects it to [`API_SOCKET`].
pub const API_PORT_NAME: &str = api_port_name!();

/// The device the guest sees for [`API_PORT_NAME`].
pub const API_PORT: &str = concat!("/dev/virtio-ports/", api_port_name!());

/// The Unix socket the API server listens on and every client connects to.
pub const API_SOCKET: &str = "/run/api.sock";

/// The environment variable that tells a program started by the API server (the settings
/// applier, `thar-be-settings`) which socket to call back on.
pub const API_SOCKET_ENV: &str = "BALLAST_API_SOCKET";

/// The group that owns [`API_SOCKET`]; its members may use the API.
pub const API_GROUP: &str = "api";

/// The numeric id of [`API_GROUP`], as the image's `/etc/group` and `apiserver --socket-gid`
/// give it.
pub const API_GID: u32 = 274;

/// The datastore's base directory: one versioned store per OS version, and the `current` link.
pub const DATASTORE_DIR: &str = datastore_dir!();

/// The link to the datastore of the running version, which the API server opens.
pub const DATASTORE_CURRENT: &str = concat!(datastore_dir!(), "/current");

/// The pending transaction that collects settings during boot: storewolf seeds it with
/// defaults, early-boot-config and sundog add to it, settings-committer commits it.
pub const LAUNCH_TX: &str = "ballast-launch";

/// Where the updater leaves the signed migration repository for the migrator.
pub const MIGRATIONS_DIR: &str = "/var/lib/ballast/migrations";

/// The TUF root of trust shipped in the image, used by the updater and the migrator.
pub const TRUSTED_ROOT_JSON: &str = "/usr/share/updates/root.json";

/// [`TRUSTED_ROOT_JSON`] relative to the image's root, where the image build writes it.
pub const TRUSTED_ROOT_JSON_IN_IMAGE: &str = in_image(TRUSTED_ROOT_JSON);

/// The updater's configuration, rendered from `settings.updates`.
pub const UPDOG_CONFIG: &str = "/etc/updog.toml";

/// The running image's os-release file (a link into `/usr/lib`).
pub const OS_RELEASE: &str = "/etc/os-release";

/// Where the image build writes os-release, relative to the image's root; [`OS_RELEASE`]
/// links to it.
pub const OS_RELEASE_IN_IMAGE: &str = "usr/lib/os-release";

/// The factory copy of `/etc` in the image, relative to its root: early-init copies it into
/// the tmpfs `/etc` at every boot.
pub const FACTORY_ETC_IN_IMAGE: &str = "usr/share/factory/etc";

/// The boot read-ahead list, relative to the image's root: written by the build, read by
/// early-init right after it mounts the root.
pub const READAHEAD_LIST_IN_IMAGE: &str = "usr/share/ballast/boot-readahead";

/// The merged settings defaults storewolf loads, relative to the image's root.
pub const DEFAULTS_IN_IMAGE: &str = "usr/share/ballast/defaults.toml";

/// The initramfs's list of kernel modules to load, in order, relative to the initramfs root.
pub const MODULES_ORDER_IN_INITRAMFS: &str = "etc/modules.order";

/// [`MODULES_ORDER_IN_INITRAMFS`] as early-init sees it, running inside the initramfs.
pub const MODULES_ORDER: &str = "/etc/modules.order";

/// The directory inside a datastore version directory that keeps the values a migration
/// removed, so that a downgrade can bring them back: written by `migration-helpers`, moved
/// along by the migrator.
pub const MIGRATION_SAVED_DIR: &str = "migration-saved";

/// The first part of every migration's name, `migrate_v<version>_<name>`: the repository tool
/// names them so and the migrator finds them by it.
pub const MIGRATION_PREFIX: &str = "migrate_v";

/// Signed TUF metadata inside an update repository and inside the migration mirror the updater
/// writes for the migrator ([`MIGRATIONS_DIR`]).
pub const REPO_METADATA_DIR: &str = "metadata";

/// Target files inside an update repository and inside the migration mirror.
pub const REPO_TARGETS_DIR: &str = "targets";

/// The kernel's lockdown mode in securityfs (`kernel_lockdown(7)`): corndog applies
/// `settings.kernel.lockdown` there and the VM tests read it back.
pub const KERNEL_LOCKDOWN: &str = "/sys/kernel/security/lockdown";

/// The setting that pauses the update daemon: `apiclient update pause|resume` writes it, the
/// model validates it, the daemon obeys it.
pub const UPDATES_PAUSE_UNTIL_KEY: &str = "settings.updates.pause-until";

/// [`UPDATES_PAUSE_UNTIL_KEY`]'s value when the daemon is not paused.
pub const UPDATES_PAUSE_NONE: &str = "none";

/// [`UPDATES_PAUSE_UNTIL_KEY`]'s value for a pause that lasts until it is resumed.
pub const UPDATES_PAUSE_INDEFINITE: &str = "indefinite";

/// The API server's audit trail, a file beside the datastore versions in [`DATASTORE_DIR`], so
/// that it outlives an OS update: one JSON object per line for every request that changes
/// something. The server finds it next to its `--datastore-path` (by [`AUDIT_LOG_NAME`]).
pub const AUDIT_LOG: &str = concat!(datastore_dir!(), "/api-audit.jsonl");

/// The file name of [`AUDIT_LOG`], which the API server puts in the directory above its
/// datastore link.
pub const AUDIT_LOG_NAME: &str = "api-audit.jsonl";

/// The journal `MESSAGE_ID` of the API server's audit entries (32 hex digits, as
/// `systemd-id128 new` makes them). Each entry is logged as a line beginning
/// `MESSAGE_ID=<this id> `, so `journalctl -u apiserver --grep MESSAGE_ID=<this id>` finds
/// them all.
pub const AUDIT_MESSAGE_ID: &str = "3770a9fae7f44e78a4a58c652494e5a8";

/// The API server's systemd unit: `GET /report/boot` shows the chain of units the boot waited
/// for until it was active (the API ready).
pub const API_SERVER_UNIT: &str = "apiserver.service";

/// The target a node reaches once its settings are applied (packages/api ships it; containerd
/// and mark-successful-boot wait for it): `GET /report/boot`'s second default chain.
pub const CONFIGURED_TARGET: &str = "configured.target";

/// The kernel's id of the running boot (a new random UUID at every boot). The API server
/// stores it with a try-mode change, so that finding the change after a reboot reverts it.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// The datastore key under which the API server keeps a pending try-mode change (`apiclient
/// set --try`): the keys, their previous and new values, the deadline, the caller and the
/// boot. It lives outside `settings`, so no settings document shows it, and it is committed in
/// the same commit as the change it describes.
pub const PROVISIONAL_KEY: &str = "ballast.provisional";

/// The setting that turns journal shipping on (set) or off (unset): the model checks it, the
/// `journal-upload` package renders it into [`JOURNAL_UPLOAD_CONF`], the VM test sets it.
pub const LOGS_REMOTE_URL_KEY: &str = "settings.logs.remote.url";

/// systemd-journal-upload's configuration file, rendered from `settings.logs.remote`; empty
/// while shipping is off, which keeps [`JOURNAL_UPLOAD_UNIT`] from starting.
pub const JOURNAL_UPLOAD_CONF: &str = "/etc/systemd/journal-upload.conf";

/// The unit that ships the journal to a `systemd-journal-remote` receiver.
pub const JOURNAL_UPLOAD_UNIT: &str = "systemd-journal-upload.service";

/// The host containerd's API socket: the containerd instance that runs host containers only
/// (workloads use the orchestrator-facing containerd, which never sees them). Its unit starts
/// `containerd` with [`HOST_CONTAINERD_CONFIG`]; `host-ctr` dials this socket.
pub const HOST_CONTAINERD_SOCKET: &str = "/run/host-containerd/containerd.sock";

/// The host containerd's persistent root (content store, snapshots, metadata).
pub const HOST_CONTAINERD_ROOT: &str = "/var/lib/host-containerd";

/// The host containerd's runtime state (tasks, shims, FIFOs); gone at every boot.
pub const HOST_CONTAINERD_STATE: &str = "/run/host-containerd";

/// The host containerd's configuration file, shipped in the image (not rendered).
pub const HOST_CONTAINERD_CONFIG: &str = "/usr/share/host-containerd/config.toml";

/// The containerd namespace that holds host containers and their images.
pub const HOST_CONTAINERD_NAMESPACE: &str = "ballast-host";

/// The file rendered from `settings.host-containers` and `settings.container-registry` that
/// `host-ctr` reads: one table per host container, mirrors and credentials.
pub const HOST_CTR_CONFIG: &str = "/etc/host-containers/host-ctr.toml";

/// Persistent storage of host containers on the data partition, one directory per container
/// (its user data is the file `user-data` inside).
pub const HOST_CONTAINERS_STORAGE: &str = "/var/lib/host-containers";

/// Where each host container sees its own directory of [`HOST_CONTAINERS_STORAGE`]:
/// `/.ballast/host-containers/NAME`.
pub const HOST_CONTAINERS_STORAGE_INSIDE: &str = "/.ballast/host-containers";

/// Where a superpowered host container sees the host's root filesystem (read-only).
pub const HOST_ROOTFS_INSIDE: &str = "/.ballast/rootfs";

/// The systemd template unit that runs one host container: `host-containers@NAME.service`.
pub const HOST_CONTAINER_UNIT_TEMPLATE: &str = "host-containers@.service";

/// The containerd namespace (on the host containerd) of bootstrap containers, apart from
/// host containers so that the same name can be used by both.
pub const BOOTSTRAP_CONTAINERD_NAMESPACE: &str = "ballast-bootstrap";

/// Persistent storage of bootstrap containers on the data partition, one directory per
/// container (its user data is the file `user-data` inside).
pub const BOOTSTRAP_CONTAINERS_STORAGE: &str = "/var/lib/bootstrap-containers";

/// Where each bootstrap container sees its own directory of
/// [`BOOTSTRAP_CONTAINERS_STORAGE`]: `/.ballast/bootstrap-containers/NAME`.
pub const BOOTSTRAP_CONTAINERS_STORAGE_INSIDE: &str = "/.ballast/bootstrap-containers";

/// The unit that runs the bootstrap containers at boot, before `configured.target`.
pub const BOOTSTRAP_CONTAINERS_UNIT: &str = "bootstrap-containers.service";

/// The health checks (`settings.health`): units that must be active and HTTP probes, which
/// gate try-mode changes (the API server) and the marking of a boot as successful.
pub const HEALTH_KEY: &str = "settings.health";

/// A probe's timeout when its setting names none.
pub const HEALTH_DEFAULT_PROBE_TIMEOUT_SECS: u64 = 5;

/// How long the boot waits for the health checks when `settings.health.boot-wait` is unset:
/// well inside signpost's boot deadline (300 s), so a boot whose checks never pass is not
/// marked successful and the deadline rolls it back.
pub const HEALTH_DEFAULT_BOOT_WAIT_SECS: u64 = 120;

/// Where the boot's health gate writes why it did not mark the boot successful (on the data
/// partition, so the set booted after the rollback can report it in the update status).
pub const HEALTH_BOOT_FAILURE: &str = "/var/lib/ballast/health/boot-failure.json";

/// The workload containerd's API socket, where kubelet (or any CRI client) finds the CRI
/// runtime service and image service.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// The OCI spec every workload container starts from, rendered from `settings.oci-defaults`
/// and named by the runc runtime's `base_runtime_spec` in the workload containerd's config.
pub const CRI_BASE_SPEC: &str = "/etc/containerd/cri-base.json";

/// The CA bundle rendered from `settings.pki`: the workload containerd trusts it
/// (`SSL_CERT_FILE` in its unit) and host-ctr adds it to its registry client's roots.
pub const CA_BUNDLE: &str = "/etc/pki/tls/certs/ca-bundle.crt";
/// The host firewall's settings (`settings.firewall`); the `firewall` package renders them
/// into [`FIREWALL_RULESET`].
pub const FIREWALL_KEY: &str = "settings.firewall";

/// The nftables ruleset rendered from [`FIREWALL_KEY`], loaded by [`FIREWALL_UNIT`].
pub const FIREWALL_RULESET: &str = "/etc/ballast/firewall.nft";

/// The ruleset loaded before the network comes up: the template rendered with the default
/// settings, shipped in the image and loaded by [`FIREWALL_BASELINE_UNIT`].
pub const FIREWALL_BASELINE: &str = "/usr/share/ballast/firewall-baseline.nft";

/// The unit that loads [`FIREWALL_RULESET`]; the renderer restarts it on every change.
pub const FIREWALL_UNIT: &str = "ballast-firewall.service";

/// The unit that loads [`FIREWALL_BASELINE`] before `network-pre.target`.
pub const FIREWALL_BASELINE_UNIT: &str = "ballast-firewall-baseline.service";

/// The kernel's whole ruleset as `nft -j list ruleset` printed it right after
/// [`FIREWALL_UNIT`] loaded [`FIREWALL_RULESET`]; the CIS report reads it.
pub const FIREWALL_LOADED_JSON: &str = "/run/ballast-firewall.json";

/// The nftables table (family `inet`) that holds Ballast's inbound filter.
pub const FIREWALL_TABLE: &str = "ballast";

/// The device-mapper name early-init gives the dm-verity device of the root image; the CIS
/// report looks for it under /sys/dev/block.
pub const VERITY_ROOT_DM_NAME: &str = "root";

/// Every distinctive path and name above, for the test that keeps them from
/// being spelled out again elsewhere.
pub const ALL: &[&str] = &[
    API_SOCKET,
    API_SOCKET_ENV,
    API_PORT_NAME,
    API_PORT,
    DATASTORE_DIR,
    DATASTORE_CURRENT,
    LAUNCH_TX,
    MIGRATIONS_DIR,
    TRUSTED_ROOT_JSON,
    TRUSTED_ROOT_JSON_IN_IMAGE,
    UPDOG_CONFIG,
    OS_RELEASE,
    OS_RELEASE_IN_IMAGE,
    FACTORY_ETC_IN_IMAGE,
    READAHEAD_LIST_IN_IMAGE,
    DEFAULTS_IN_IMAGE,
    MODULES_ORDER_IN_INITRAMFS,
    MODULES_ORDER,
    MIGRATION_SAVED_DIR,
    MIGRATION_PREFIX,
    UPDATES_PAUSE_UNTIL_KEY,
    KERNEL_LOCKDOWN,
    AUDIT_LOG,
    AUDIT_LOG_NAME,
    AUDIT_MESSAGE_ID,
    BOOT_ID_FILE,
    PROVISIONAL_KEY,
    LOGS_REMOTE_URL_KEY,
    JOURNAL_UPLOAD_CONF,
    JOURNAL_UPLOAD_UNIT,
    HOST_CONTAINERD_SOCKET,
    CONTAINERD_SOCKET,
    CRI_BASE_SPEC,
    CA_BUNDLE,
    HOST_CONTAINERD_ROOT,
    HOST_CONTAINERD_STATE,
    HOST_CONTAINERD_CONFIG,
    HOST_CONTAINERD_NAMESPACE,
    HOST_CTR_CONFIG,
    HOST_CONTAINERS_STORAGE,
    HOST_CONTAINERS_STORAGE_INSIDE,
    HOST_ROOTFS_INSIDE,
    HOST_CONTAINER_UNIT_TEMPLATE,
    BOOTSTRAP_CONTAINERD_NAMESPACE,
    BOOTSTRAP_CONTAINERS_STORAGE,
    BOOTSTRAP_CONTAINERS_STORAGE_INSIDE,
    BOOTSTRAP_CONTAINERS_UNIT,
    HEALTH_BOOT_FAILURE,
    FIREWALL_KEY,
    FIREWALL_RULESET,
    FIREWALL_BASELINE,
    FIREWALL_UNIT,
    FIREWALL_BASELINE_UNIT,
    FIREWALL_LOADED_JSON,
    // FIREWALL_TABLE and VERITY_ROOT_DM_NAME are left out: common words.
    // REPO_METADATA_DIR and REPO_TARGETS_DIR are left out: "metadata" and "targets" are
    // common words with other meanings (JSON fields, test fixtures).
];

/// An absolute node path relative to the image's root (the leading `/` removed). Fails to
/// compile when used on a path that is not absolute.
pub const fn in_image(path: &'static str) -> &'static str {
    match path.as_bytes().split_first() {
        Some((b'/', rest)) => match std::str::from_utf8(rest) {
            Ok(relative) => relative,
            Err(_) => panic!("a path built from a &str stays UTF-8 after its leading '/'"),
        },
        _ => panic!("in_image needs an absolute path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_forms_match_node_forms() {
        assert_eq!(format!("/{TRUSTED_ROOT_JSON_IN_IMAGE}"), TRUSTED_ROOT_JSON);
        assert_eq!(format!("/{MODULES_ORDER_IN_INITRAMFS}"), MODULES_ORDER);
        assert_eq!(in_image("/etc/os-release"), "etc/os-release");
    }

    #[test]
    fn current_is_below_the_datastore() {
        let current = std::path::Path::new(DATASTORE_CURRENT);
        assert_eq!(current.parent(), Some(std::path::Path::new(DATASTORE_DIR)));
        assert_eq!(current.file_name().unwrap(), "current");
    }

    #[test]
    fn the_audit_log_is_named_beside_the_datastore() {
        let log = std::path::Path::new(AUDIT_LOG);
        assert_eq!(log.parent(), Some(std::path::Path::new(DATASTORE_DIR)));
        assert_eq!(log.file_name().unwrap(), AUDIT_LOG_NAME);
        assert_eq!(AUDIT_MESSAGE_ID.len(), 32);
        assert!(AUDIT_MESSAGE_ID
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn the_port_device_is_named_after_the_port() {
        let port = std::path::Path::new(API_PORT);
        assert_eq!(port.file_name().unwrap(), API_PORT_NAME);
        assert_eq!(
            port.parent(),
            Some(std::path::Path::new("/dev/virtio-ports"))
        );
    }

    #[test]
    fn node_paths_are_absolute_and_image_paths_are_not() {
        for path in [
            API_SOCKET,
            DATASTORE_DIR,
            DATASTORE_CURRENT,
            MIGRATIONS_DIR,
            TRUSTED_ROOT_JSON,
            UPDOG_CONFIG,
            OS_RELEASE,
            MODULES_ORDER,
        ] {
            assert!(path.starts_with('/'), "{path}");
        }
        for path in [
            TRUSTED_ROOT_JSON_IN_IMAGE,
            OS_RELEASE_IN_IMAGE,
            FACTORY_ETC_IN_IMAGE,
            READAHEAD_LIST_IN_IMAGE,
            DEFAULTS_IN_IMAGE,
            MODULES_ORDER_IN_INITRAMFS,
        ] {
            assert!(!path.starts_with('/') && !path.is_empty(), "{path}");
        }
    }

    #[test]
    fn all_values_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for value in ALL {
            assert!(seen.insert(value), "{value} listed twice");
        }
    }
}
