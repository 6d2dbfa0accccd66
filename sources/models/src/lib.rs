//! # Background
//!
//! Every setting of a Ballast host lives in the API server, and this crate says what a setting
//! may be. It holds the typed settings tree ([`Settings`] and one struct per group such as
//! [`NetworkSettings`]), the validated scalar types those groups are made of
//! ([`modeled_types`]), the bookkeeping types the config renderer uses ([`Service`],
//! [`ConfigurationFile`]), the description of the running image ([`OsInfo`]), and the shared
//! defaults with their metadata ([`Defaults`], [`shared_defaults`]).
//!
//! The API server checks every PATCH with [`parse_settings`] before anything is written, so a bad
//! value is refused with the key and the reason, and the daemons that render files from settings
//! never see a value that breaks their output (a newline in a hostname, a sysctl key that
//! escapes its directory). The defaults loader merges [`shared_defaults`] with the variant's own
//! files and writes the result; the renderer maps a changed key to services with
//! [`affected_services`].
//!
//! # Usage
//!
//! ```
//! use serde_json::json;
//!
//! // A PATCH body: the object under "settings", any subset of the tree.
//! let settings = models::parse_settings(&json!({"network": {"hostname": "node-1"}})).unwrap();
//! assert_eq!(settings.network.unwrap().hostname.unwrap(), "node-1");
//!
//! // A refusal names the full key.
//! let err = models::parse_settings(&json!({"kernel": {"sysctl": {"net.ipv4.ip_forward": "1\n"}}}))
//!     .unwrap_err();
//! assert_eq!(err.key, r#"settings.kernel.sysctl."net.ipv4.ip_forward""#);
//!
//! // Defaults: embedded shared files, then a variant's file over them.
//! let variant = models::Defaults::from_toml_str("[settings.kernel]\nlockdown = \"integrity\"\n").unwrap();
//! let defaults = models::shared_defaults().merge(variant);
//! defaults.check_references().unwrap();
//! let services = models::affected_services(&defaults.metadata, "settings.ntp.time-servers");
//! assert!(services.contains("timesyncd"));
//! ```
//!
//! Which settings are secret (registry credentials, container user data) is said once, in
//! [`secret`]: whatever shows or records a setting's value asks [`secret::is_secret`] first.
//!
//! Dotted keys follow one rule everywhere (errors, metadata keys, [`affected_services`]): plain
//! segments as is, other segments in double quotes; see [`key`].
//!
//! # Cargo feature `next-dns-names` (test only)
//!
//! Off by default and in every real image. It stands for "the model of the next OS version" in
//! the demo of a setting renamed between two versions: with it, `settings.dns.search-list` is
//! called `settings.dns.search-domains` ([`settings::DNS_SEARCH_FIELD`] names the one in use),
//! with no alias, so a datastore that was not migrated is refused rather than read. The VM update
//! test builds one image with it and carries a node's value across the update and back with the
//! `rename-dns-search-list` migration.
//!
//! # Current limitations
//!
//! * One settings model for every variant. Bottlerocket builds the model per variant as a plugin
//!   and versions each group; here a variant can only change default values, not the shape.
//! * Validation is per value. Rules that span fields (for instance "a registry credential needs
//!   `auth` or `username` and `password`") are left to the consumers.
//! * Values are checked for form, not existence: a [`Timezone`](modeled_types::Timezone) may name a zone missing from the
//!   image's tz database, an [`ImageReference`](modeled_types::ImageReference) may not exist, a [`PemCertificateString`](modeled_types::PemCertificateString) is not
//!   parsed as X.509.
//! * In list elements the error key carries an index (`settings.ntp.time-servers[1]`), which is
//!   not a key the datastore knows; strip from `[` to get the setting.
//! * Bottlerocket's `bootstrap-commands` and the orchestrator groups are not modeled yet;
//!   `container-runtime` has the CRI knobs a kubelet-driven node needs (not the snapshotter
//!   choice), and the pause image lives there as `pause-image`, not under `kubernetes`.
#![forbid(unsafe_code)]

pub mod defaults;
pub mod error;
pub mod key;
pub mod model;
pub mod modeled_types;
pub mod os;
pub mod secret;
pub mod settings;
pub mod validate;

pub use defaults::{affected_services, shared_defaults, Defaults, Metadata};
pub use error::{DefaultsError, OsReleaseError, ValidationError};
pub use model::{ConfigurationFile, Model, Service};
pub use os::OsInfo;
pub use settings::{
    BootSettings, BootstrapContainer, ContainerRegistrySettings, ContainerRuntimeSettings,
    DnsSettings, FirewallRule, FirewallSettings, FleetLockSettings, HealthProbe, HealthSettings,
    HostContainer, KernelSettings, KmodSetting, LogsSettings, MaintenanceWindow, NetworkSettings,
    NtpSettings, OciDefaultsSettings, OciResourceLimit, PkiBundle, RegistryCredential,
    RegistryMirror, RemoteLogsSettings, Settings, UpdatesSettings, MAX_UPDATE_SEED,
};
pub use validate::parse_settings;
