//! The settings tree: one type per group under `settings`.
//!
//! Every struct follows the same rules, so a document can hold any subset of the tree (a PATCH,
//! one defaults file) and still be checked completely:
//! * field names are kebab-case in JSON (`http-proxy`, `host-containers`);
//! * every field is an `Option`, left out of the output when `None`;
//! * unknown fields are refused, naming the allowed ones.

use crate::modeled_types::FriendlyVersion;
use crate::modeled_types::{
    BootConfigKey, BootConfigValue, BootstrapContainerMode, DnsDomain, HttpUrl, Identifier,
    ImageReference, JournalRemoteUrl, KmodKey, Lockdown, PauseUntil, PemCertificateString,
    SettingDuration, SingleLineString, SysctlKey, TimeOfDay, Timezone, UpdatePolicy, Url,
    ValidBase64, ValidLinuxHostname, Weekday,
};
use crate::modeled_types::{FirewallProtocol, IpCidr, PortRange};
use crate::modeled_types::{LocalHttpUrl, OciCapability, OciResourceLimitType, SystemdUnitName};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use utoipa::ToSchema;

/// Everything that can be set on a host, under the `settings` key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Message of the day shown at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motd: Option<SingleLineString>,
    /// Hostname and proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSettings>,
    /// Resolver configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSettings>,
    /// Time synchronization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntp: Option<NtpSettings>,
    /// Sysctls, kernel module policy and lockdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelSettings>,
    /// System time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Timezone>,
    /// Where and when to look for OS updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<UpdatesSettings>,
    /// Long-running host containers, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_containers: Option<BTreeMap<Identifier, HostContainer>>,
    /// Containers run during boot before the host is marked configured, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_containers: Option<BTreeMap<Identifier, BootstrapContainer>>,
    /// Registry mirrors and credentials for image pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_registry: Option<ContainerRegistrySettings>,
    /// Extra certificate bundles, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<BTreeMap<Identifier, PkiBundle>>,
    /// Kernel and init command line; applied on the next boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootSettings>,
    /// Where the node's journal goes besides the node itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsSettings>,
    /// What a healthy node looks like: gates try-mode changes and marks a boot successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSettings>,
    /// What every workload container gets unless its request says otherwise: capabilities and
    /// resource limits (the CRI runtime's base OCI spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_defaults: Option<OciDefaultsSettings>,
    /// The workload container runtime's own knobs (containerd's CRI plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<ContainerRuntimeSettings>,
    /// The host firewall: what may reach the node from the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallSettings>,
}

/// `settings.network`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NetworkSettings {
    /// Host name of this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<ValidLinuxHostname>,
    /// Proxy for plain HTTP requests made by the container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<Url>,
    /// Proxy for HTTPS requests made by the container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<Url>,
    /// Hosts, domains or networks reached without the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<Vec<SingleLineString>>,
}

/// `settings.dns`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DnsSettings {
    /// Resolver addresses, IPv4 or IPv6, in order of preference.
    #[serde(
        default,
        deserialize_with = "deserialize_ip_list",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::modeled_types::ip_address_list_schema)]
    pub name_servers: Option<Vec<IpAddr>>,
    /// Domains appended to short names.
    ///
    /// Named `search-list` in JSON; `search-domains` with the `next-dns-names` feature (the demo
    /// of a setting renamed between two OS versions). Deliberately no serde alias: a datastore
    /// that still holds the old name after the update must fail loudly, not be read quietly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "next-dns-names", serde(rename = "search-domains"))]
    pub search_list: Option<Vec<DnsDomain>>,
}

/// The JSON name of [`DnsSettings::search_list`] in this build of the model (`search-list`, or
/// `search-domains` with the `next-dns-names` feature), for code and tests that must hold in
/// both.
#[cfg(not(feature = "next-dns-names"))]
pub const DNS_SEARCH_FIELD: &str = "search-list";
/// The JSON name of [`DnsSettings::search_list`] in this build of the model (`search-list`, or
/// `search-domains` with the `next-dns-names` feature), for code and tests that must hold in
/// both.
#[cfg(feature = "next-dns-names")]
pub const DNS_SEARCH_FIELD: &str = "search-domains";

/// Reads a list of IP addresses, naming the bad entry in the error (serde's own message for a bad
/// address does not show it).
fn deserialize_ip_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<IpAddr>>, D::Error> {
    struct Address(IpAddr);

    impl<'de> Deserialize<'de> for Address {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer)?;
            text.parse().map(Address).map_err(|_| {
                serde::de::Error::custom(format!(
                    "'{}' is not a valid IP address: expected IPv4 such as 10.0.0.2 or IPv6 such as fd00::53",
                    crate::error::printable(&text)
                ))
            })
        }
    }

    let list: Option<Vec<Address>> = Option::deserialize(deserializer)?;
    Ok(list.map(|l| l.into_iter().map(|a| a.0).collect()))
}

/// `settings.ntp`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NtpSettings {
    /// Time servers, as host names, addresses or URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_servers: Option<Vec<Url>>,
}

/// `settings.kernel`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KernelSettings {
    /// Sysctl values, applied at boot and on change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<BTreeMap<SysctlKey, SingleLineString>>,
    /// Whether named kernel modules may be loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<BTreeMap<KmodKey, KmodSetting>>,
    /// Kernel lockdown mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockdown: Option<Lockdown>,
}

/// `settings.kernel.modules.<name>`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KmodSetting {
    /// False blocks the module from loading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
}

/// Highest value of `settings.updates.seed`; seeds spread a fleet over update waves.
pub const MAX_UPDATE_SEED: u32 = 2047;

/// `settings.updates`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UpdatesSettings {
    /// Base URL of the TUF repository metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_base_url: Option<Url>,
    /// Base URL of the TUF repository targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_base_url: Option<Url>,
    /// This node's position in update waves, 0 to 2047; generated once at first boot.
    #[serde(
        default,
        deserialize_with = "deserialize_seed",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 0, maximum = 2047)]
    pub seed: Option<u32>,
    /// Version to stay on, or `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_lock: Option<FriendlyVersion>,
    /// Take updates at once instead of waiting for this node's wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_waves: Option<bool>,
    /// What the update daemon does by itself: manual, check, stage or auto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<UpdatePolicy>,
    /// How often the update daemon looks for updates; each wait gets up to a tenth more, at
    /// random, so a fleet does not ask the repository at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<SettingDuration>,
    /// When policy `auto` may reboot, by window name. No window: at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_windows: Option<BTreeMap<Identifier, MaintenanceWindow>>,
    /// A FleetLock server to hold a reboot slot from before the reboot until the new boot is
    /// marked successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_lock: Option<FleetLockSettings>,
    /// `none`, `indefinite`, or the RFC 3339 time until which the update daemon does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<PauseUntil>,
}

/// `settings.updates.maintenance-windows.<name>`: a time span, repeated on the given days, in
/// which policy `auto` may reboot the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Days on which the window opens (it may run on past midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Weekday>>,
    /// Local time the window opens, HH:MM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<TimeOfDay>,
    /// How long it stays open, e.g. `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<SettingDuration>,
    /// IANA time zone of `start` and `days`; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<Timezone>,
}

/// `settings.updates.fleet-lock`: a FleetLock server (Zincati's HTTP protocol).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FleetLockSettings {
    /// Base URL of the server; `/v1/pre-reboot` and `/v1/steady-state` are added to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<HttpUrl>,
    /// The group whose slots this node shares (`default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Identifier>,
}

/// Reads the seed: a whole number from 0 to [`MAX_UPDATE_SEED`]. A number written with a
/// fraction of zero (`1455.0`) is the same number, as JSON Schema's `integer` says.
fn deserialize_seed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // A whole float in range prints without a fraction, and that text is the integer.
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(MAX_UPDATE_SEED))
            .and_then(|f| format!("{f:.0}").parse().ok())
    });
    match whole.and_then(|n| u32::try_from(n).ok()) {
        Some(value) if value <= MAX_UPDATE_SEED => Ok(Some(value)),
        _ => Err(serde::de::Error::custom(format!(
            "'{number}' is not a valid update seed: it must be a whole number between 0 and \
             {MAX_UPDATE_SEED}"
        ))),
    }
}

/// `settings.host-containers.<name>`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostContainer {
    /// Image to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageReference>,
    /// Whether the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Run privileged with access to the host's root filesystem and PID namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superpowered: Option<bool>,
    /// Opaque data handed to the container, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<ValidBase64>,
}

/// `settings.bootstrap-containers.<name>`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BootstrapContainer {
    /// Image to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageReference>,
    /// When it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BootstrapContainerMode>,
    /// A failure stops the boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// Opaque data handed to the container, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<ValidBase64>,
}

/// `settings.container-registry`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContainerRegistrySettings {
    /// Mirrors tried before the registry itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Vec<RegistryMirror>>,
    /// Credentials per registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<RegistryCredential>>,
}

/// One entry of `settings.container-registry.mirrors`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistryMirror {
    /// Registry host being mirrored, e.g. `docker.io`, or `*` for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<SingleLineString>,
    /// Mirror endpoints, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Vec<Url>>,
}

/// One entry of `settings.container-registry.credentials`. Give either `auth`, or `username` and
/// `password`, or `identitytoken`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistryCredential {
    /// Registry host the credential is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<SingleLineString>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SingleLineString>,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SingleLineString>,
    /// Base64 of `username:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ValidBase64>,
    /// OAuth identity token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identitytoken: Option<SingleLineString>,
}

/// `settings.pki.<name>`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PkiBundle {
    /// Base64 of PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PemCertificateString>,
    /// True adds the certificates to the trust store; false distrusts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
}

/// `settings.boot`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BootSettings {
    /// Reboot by itself when boot settings change, so that they take effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_to_reconcile: Option<bool>,
    /// Kernel parameters; an empty list gives a bare flag such as `quiet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_parameters: Option<BTreeMap<BootConfigKey, Vec<BootConfigValue>>>,
    /// Parameters for init (systemd); an empty list gives a bare flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_parameters: Option<BTreeMap<BootConfigKey, Vec<BootConfigValue>>>,
}

/// `settings.logs`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogsSettings {
    /// Shipping the journal to a remote receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteLogsSettings>,
}

/// `settings.logs.remote`: the journal shipped with `systemd-journal-upload` to a
/// `systemd-journal-remote` receiver. Shipping is on while `url` is set and `enabled` is not
/// false.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RemoteLogsSettings {
    /// `http://host[:port]` of the receiver (port 19532 when absent); the uploader adds
    /// `/upload`. No https yet: it needs client certificates no setting provides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<JournalRemoteUrl>,
    /// False stops shipping and keeps the URL (a setting cannot be removed through the API);
    /// true, or absent, ships while `url` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `settings.health`: the checks a healthy node passes. While a try-mode change is pending, a
/// failing check reverts it at once; a boot is marked successful only once every check
/// passes (within `boot-wait`), so an update that breaks a workload rolls back by itself.
/// No checks (the default) always passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthSettings {
    /// systemd units that must be active, with their type (`containerd.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<SystemdUnitName>>,
    /// Probes by name: a URL on the node that answers 2xx, or a command in a host container
    /// that exits 0, in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<BTreeMap<Identifier, HealthProbe>>,
    /// How long a boot waits for every check to pass before it gives up (and is not marked
    /// successful); 2m when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_wait: Option<SettingDuration>,
}

/// `settings.health.probes.NAME`: either an HTTP GET of a URL on the node (`url`) or a
/// command run in a host container's running task (`command` and `container`), each within
/// `timeout`. Each field is checked on its own, as the schema says: a key=value set stages
/// `command` and `container` one pair after the other, so how they combine can only be judged
/// once the probe is complete. A probe that is incomplete or contradictory (both kinds, a
/// `container` beside a `url`, a command without a program) fails when evaluated, naming the
/// keys to fix, so the health gate and try-mode report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthProbe {
    /// `http://` on a loopback address (127.0.0.0/8, `[::1]`, `localhost`); passes on a 2xx
    /// answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<LocalHttpUrl>,
    /// A program and its arguments (no shell: use `["sh", "-c", "..."]` for one), run in the
    /// host container `container` with that container's environment; passes when it exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<SingleLineString>>,
    /// The host container (`settings.host-containers.NAME`) whose running task `command` runs
    /// in; only with `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Identifier>,
    /// How long the answer, or the command, may take; 5s when unset. A command still running
    /// then is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<SettingDuration>,
}

/// `settings.oci-defaults`: the starting point of every workload container's OCI spec. The CRI
/// runtime starts from it and then applies the request (kubelet's security context), so a pod
/// may still add or drop capabilities of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OciDefaultsSettings {
    /// Capabilities a container has unless its request drops them: true gives it, false (or
    /// absent) does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<BTreeMap<OciCapability, bool>>,
    /// Process resource limits every container starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<BTreeMap<OciResourceLimitType, OciResourceLimit>>,
}

/// The value that stands for "no limit" in [`OciResourceLimit`], as in Bottlerocket.
pub const UNLIMITED: i64 = -1;

/// `settings.oci-defaults.resource-limits.<limit>`: a soft and a hard limit, each a whole
/// number or -1 for unlimited. The soft limit may not exceed the hard one; a missing one takes
/// the other's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    try_from = "RawResourceLimit"
)]
pub struct OciResourceLimit {
    /// The ceiling the process may raise its soft limit to; -1 for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1)]
    pub hard_limit: Option<i64>,
    /// The limit the process starts with; -1 for unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1)]
    pub soft_limit: Option<i64>,
}

impl OciResourceLimit {
    /// The limits as the OCI spec writes them (`hard`, `soft`), unlimited being the largest
    /// 64-bit number (the kernel's RLIM_INFINITY); `None` when neither is set.
    pub fn to_oci(&self) -> Option<(u64, u64)> {
        let as_oci = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
        let hard = self.hard_limit.or(self.soft_limit)?;
        let soft = self.soft_limit.unwrap_or(hard);
        Some((as_oci(hard), as_oci(soft)))
    }
}

/// [`OciResourceLimit`] as written, before the checks that span both fields.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawResourceLimit {
    #[serde(default, deserialize_with = "deserialize_rlimit")]
    hard_limit: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_rlimit")]
    soft_limit: Option<i64>,
}

impl TryFrom<RawResourceLimit> for OciResourceLimit {
    type Error = String;

    fn try_from(raw: RawResourceLimit) -> Result<Self, String> {
        let limit = OciResourceLimit {
            hard_limit: raw.hard_limit,
            soft_limit: raw.soft_limit,
        };
        if let (Some(hard), Some(soft)) = (raw.hard_limit, raw.soft_limit) {
            let (hard_oci, soft_oci) = limit.to_oci().unwrap_or_default();
            if soft_oci > hard_oci {
                return Err(format!(
                    "soft-limit {soft} is above hard-limit {hard}: a process could never \
                     reach it; raise hard-limit or lower soft-limit"
                ));
            }
        }
        Ok(limit)
    }
}

/// Reads one resource limit: a whole number from -1 ([`UNLIMITED`]) up.
fn deserialize_rlimit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    bounded_integer(
        deserializer,
        UNLIMITED,
        i64::MAX,
        "a resource limit",
        "-1 (unlimited) or a whole number from 0",
    )
}

/// Reads an optional whole number in `min..=max`, refusing others with `expected` in the reason.
fn bounded_integer<'de, D: Deserializer<'de>>(
    deserializer: D,
    min: i64,
    max: i64,
    what: &str,
    expected: &str,
) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match number.as_i64() {
        Some(value) if (min..=max).contains(&value) => Ok(Some(value)),
        _ => Err(serde::de::Error::custom(format!(
            "'{number}' is not a valid {what}: expected {expected}"
        ))),
    }
}

/// Most image layers containerd fetches at once for one pull.
pub const MAX_CONCURRENT_DOWNLOADS: i64 = 1024;

/// `settings.container-runtime`: containerd's CRI plugin, as kubelet reaches it. Names follow
/// Bottlerocket's, except `pause-image` (see there).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ContainerRuntimeSettings {
    /// How many layers of one image are downloaded at once, 1 to 1024.
    #[serde(
        default,
        deserialize_with = "deserialize_downloads",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 1, maximum = 1024)]
    pub max_concurrent_downloads: Option<i64>,
    /// Lets processes in a pod bind ports below 1024 without CAP_NET_BIND_SERVICE (pods in
    /// their own network namespace only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_unprivileged_ports: Option<bool>,
    /// Lets processes in a pod send ICMP echo without CAP_NET_RAW (pods in their own network
    /// namespace only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_unprivileged_icmp: Option<bool>,
    /// Longer container log lines are split at this many bytes; -1 for no limit.
    #[serde(
        default,
        deserialize_with = "deserialize_log_line_size",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = -1)]
    pub max_container_log_line_size: Option<i64>,
    /// The image whose process holds each pod's namespaces (containerd's `sandbox_image`).
    /// Bottlerocket calls it `kubernetes.pod-infra-container-image`; Ballast has no kubernetes
    /// group and the image belongs to the runtime whatever orchestrator drives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_image: Option<ImageReference>,
}

fn deserialize_downloads<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    bounded_integer(
        deserializer,
        1,
        MAX_CONCURRENT_DOWNLOADS,
        "number of concurrent downloads",
        "a whole number from 1 to 1024",
    )
}

fn deserialize_log_line_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    let size = bounded_integer(
        deserializer,
        -1,
        i64::from(i32::MAX),
        "log line size",
        "-1 (no limit) or a number of bytes from 1 to 2147483647",
    )?;
    if size == Some(0) {
        return Err(serde::de::Error::custom(
            "'0' is not a valid log line size: expected -1 (no limit) or a number of bytes from 1 to 2147483647",
        ));
    }
    Ok(size)
}

/// `settings.firewall`: the host's inbound filter (nftables). While enabled, traffic to the node
/// is dropped unless it is loopback, part of or related to a connection the node made, an
/// essential ICMP or ICMPv6 message (neighbour discovery among them), a DHCP reply, or matched
/// by one of the `inbound` rules. Outbound traffic and traffic forwarded to containers are not
/// filtered: containers publish ports through their own network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FirewallSettings {
    /// False removes the filter and admits everything; true, or absent, filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// What the operator opens, by rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<BTreeMap<Identifier, FirewallRule>>,
}

/// `settings.firewall.inbound.NAME`: admits new connections to some ports. A rule takes effect
/// once it has both `protocol` and `ports`; until then it is left out of the ruleset (the
/// rendered file says so).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FirewallRule {
    /// tcp or udp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<FirewallProtocol>,
    /// Destination ports: numbers, or "first-last" ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
    /// Source addresses or networks admitted (IPv4 and IPv6 may be mixed); every source when
    /// absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<IpCidr>>,
}
