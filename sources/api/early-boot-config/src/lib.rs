//! # Background
//!
//! A node learns its first settings from *user data*: a TOML document with a `[settings]`
//! table, given by whoever starts the node. early-boot-config runs at boot after the API
//! server is up and before settings are committed; it reads user data from each provider in
//! turn and PATCHes it into the launch transaction ([`constants::LAUNCH_TX`]), where storewolf
//! has left the defaults. Later providers win key by key, since each document is one PATCH into
//! the same transaction. sundog then generates what is still missing, settings-committer makes
//! it live, and the renderer writes the files.
//!
//! Providers, in order:
//!
//! 1. `local-file`: a file on the data partition, `/local/user-data.toml` by default.
//! 2. `kernel-cmdline`: `ballast.user-data=<base64 of the document>` on the kernel command line.
//! 3. `imds`: an instance-metadata service with the AWS IMDSv2 token flow ([`imds`]), at
//!    `http://169.254.169.254` unless `ballast.imds=<url>` on the kernel command line or
//!    `--imds-url` says otherwise (the command line wins, being the more specific);
//!    `ballast.imds=off` turns it off.
//!
//! Each provider's document may be gzip-compressed, and is checked as a whole before anything
//! is sent ([`document`]): TOML syntax, a `settings` table and nothing else, then the model's
//! validation. A document with a problem is refused whole: nothing from it is applied, the
//! reason (with the offending key) is logged at error level, and the other providers still
//! apply. The API server checks again and its refusal counts the same way.
//!
//! # Usage
//!
//! ```text
//! early-boot-config [--socket-path /run/api.sock] [--tx ballast-launch]
//!                   [--local-file /local/user-data.toml] [--cmdline /proc/cmdline]
//!                   [--imds-url URL|off] [--imds-timeout-seconds 10] [--log-level info]
//! ```
//!
//! It ends with one summary line on stderr, for instance
//! `early-boot-config: applied local-file, no user data from kernel-cmdline, refused imds
//! (settings.motd: ...)`. It exits 0 whatever the user data (refused documents and absent
//! providers must not stop the boot), and 1 only when the API server could not be used.
//!
//! # Current limitations
//!
//! * A metadata service that refuses connections or has no route is taken as absent at once,
//!   with no retry; the unit should run after the network is up where one is expected.
//! * Only plain `http://` metadata services, and only the IMDSv2 flow (no IMDSv1 fallback).
//! * User data is settings only: no Bottlerocket-style `[metadata]` or other tables, and no
//!   `user-data` hints such as MIME multipart or cloud-init scripts.
#![forbid(unsafe_code)]

pub mod document;
pub mod error;
pub mod imds;

use base64::Engine;
use boot_params::{Cmdline, IMDS as IMDS_PARAM, USER_DATA as USER_DATA_PARAM};
pub use error::{Error, Result};
use error::{RefusedSnafu, RequestSnafu, StatusSnafu};
use imds::{Fetched, Imds};
use snafu::ResultExt;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the data partition keeps local user data.
pub const DEFAULT_LOCAL_FILE: &str = "/local/user-data.toml";
/// The running kernel's command line.
pub const DEFAULT_CMDLINE: &str = "/proc/cmdline";

/// Provider names, as they appear in logs and the summary.
pub const LOCAL_FILE: &str = "local-file";
pub const KERNEL_CMDLINE: &str = "kernel-cmdline";
pub const IMDS: &str = "imds";

/// What to read and where to send it.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket_path: PathBuf,
    /// The pending transaction that receives the user data.
    pub tx: String,
    pub local_file: PathBuf,
    /// File holding the kernel command line.
    pub cmdline: PathBuf,
    /// Metadata service base URL, or `off`; the default when `None`. `ballast.imds` on the
    /// kernel command line wins over this.
    pub imds_url: Option<String>,
    /// Total time for the metadata service, retries included.
    pub imds_deadline: Duration,
}

impl Config {
    /// The boot-time configuration with the API socket at `socket_path`.
    pub fn new(socket_path: impl Into<PathBuf>) -> Config {
        Config {
            socket_path: socket_path.into(),
            tx: constants::LAUNCH_TX.to_string(),
            local_file: PathBuf::from(DEFAULT_LOCAL_FILE),
            cmdline: PathBuf::from(DEFAULT_CMDLINE),
            imds_url: None,
            imds_deadline: imds::DEFAULT_DEADLINE,
        }
    }
}

/// What became of one provider's user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Checked and stored in the transaction.
    Applied,
    /// The provider has no user data (or no settings in it): why.
    Nothing(String),
    /// The user data was refused as a whole: the key and reason.
    Refused(String),
    /// The provider could not be read, or the API server could not be used (`api`): why.
    Failed { reason: String, api: bool },
}

/// Every provider's outcome, in provider order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// The outcome of the named provider.
    pub fn outcome(&self, provider: &str) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|(name, _)| *name == provider)
            .map(|(_, outcome)| outcome)
    }

    /// True when the API server could not be used; the binary then exits non-zero.
    pub fn api_failed(&self) -> bool {
        self.outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed { api: true, .. }))
    }
}

impl fmt::Display for Report {
    /// The summary line, e.g. `early-boot-config: applied local-file, refused imds (...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(name, outcome)| match outcome {
                Outcome::Applied => format!("applied {name}"),
                Outcome::Nothing(_) => format!("no user data from {name}"),
                Outcome::Refused(reason) => format!("refused {name} ({reason})"),
                Outcome::Failed { reason, .. } => format!("failed {name} ({reason})"),
            })
            .collect();
        write!(f, "early-boot-config: {}", parts.join(", "))
    }
}

/// Reads every provider in order and applies what passes the checks.
pub async fn run(config: &Config) -> Report {
    let (cmdline, cmdline_problem) = match std::fs::read_to_string(&config.cmdline) {
        Ok(text) => (Cmdline::parse(&text), None),
        Err(e) => {
            let reason = format!(
                "cannot read the kernel command line {}: {e}",
                config.cmdline.display()
            );
            tracing::warn!("{reason}");
            (Cmdline::default(), Some(reason))
        }
    };

    let mut report = Report::default();

    let outcome = match read_local_file(&config.local_file) {
        Ok(Some(raw)) => apply(config, LOCAL_FILE, &raw).await,
        Ok(None) => Outcome::Nothing(format!("{} does not exist", config.local_file.display())),
        Err(reason) => Outcome::Failed { reason, api: false },
    };
    report.outcomes.push(log(LOCAL_FILE, outcome));

    let outcome = match (cmdline_problem, cmdline_user_data(&cmdline)) {
        (Some(reason), _) => Outcome::Failed { reason, api: false },
        (None, Ok(Some(raw))) => apply(config, KERNEL_CMDLINE, &raw).await,
        (None, Ok(None)) => {
            Outcome::Nothing(format!("no {USER_DATA_PARAM} on the kernel command line"))
        }
        (None, Err(reason)) => Outcome::Refused(reason),
    };
    report.outcomes.push(log(KERNEL_CMDLINE, outcome));

    let outcome = match imds_client(config, &cmdline) {
        Ok(None) => Outcome::Nothing("the metadata service is turned off".to_string()),
        Err(reason) => Outcome::Failed { reason, api: false },
        Ok(Some(client)) => {
            tracing::info!("asking {} for user data", client.base());
            match client.fetch().await {
                Fetched::Data(raw) => apply(config, IMDS, &raw).await,
                Fetched::Nothing(reason) => Outcome::Nothing(reason),
                Fetched::Failed(reason) => Outcome::Failed { reason, api: false },
            }
        }
    };
    report.outcomes.push(log(IMDS, outcome));
    report
}

fn log(name: &'static str, outcome: Outcome) -> (&'static str, Outcome) {
    match &outcome {
        Outcome::Applied => tracing::info!("{name}: applied its user data"),
        Outcome::Nothing(reason) => tracing::info!("{name}: no user data: {reason}"),
        Outcome::Refused(reason) => {
            tracing::error!("{name}: user data refused, nothing from it is applied: {reason}")
        }
        Outcome::Failed { reason, .. } => {
            tracing::error!("{name}: cannot apply user data: {reason}")
        }
    }
    (name, outcome)
}

/// The local file's bytes; `None` when it does not exist.
fn read_local_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(raw) => Ok(Some(raw)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The decoded `ballast.user-data` parameter; `None` when absent or empty. Standard or
/// URL-safe base64, with or without padding.
fn cmdline_user_data(cmdline: &Cmdline) -> Result<Option<Vec<u8>>, String> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    let Some(encoded) = cmdline.get(USER_DATA_PARAM).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    standard
        .decode(encoded)
        .or_else(|_| url_safe.decode(encoded))
        .map(Some)
        .map_err(|e| format!("{USER_DATA_PARAM} is not valid base64: {e}"))
}

/// The metadata service client, or `None` when it is turned off.
fn imds_client(config: &Config, cmdline: &Cmdline) -> Result<Option<Imds>, String> {
    let (url, origin) = match (
        cmdline.get(IMDS_PARAM).filter(|v| !v.is_empty()),
        config.imds_url.as_deref(),
    ) {
        (Some(url), _) => (url, format!("{IMDS_PARAM} on the kernel command line")),
        (None, Some(url)) => (url, "--imds-url".to_string()),
        (None, None) => (imds::DEFAULT_BASE_URL, "the default".to_string()),
    };
    if url == "off" {
        tracing::info!("the metadata service is turned off by {origin}");
        return Ok(None);
    }
    Imds::new(url, config.imds_deadline)
        .map(|imds| {
            let wait = has_network_link(Path::new(SYS_CLASS_NET))
                || has_network_controller(Path::new(SYS_PCI_DEVICES));
            Some(imds.waiting_for_route(wait))
        })
        .map_err(|reason| format!("{reason} (from {origin})"))
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn only_loopback_means_no_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lo")).unwrap();
        assert!(!has_network_link(dir.path()));
        std::fs::create_dir_all(dir.path().join("br0/bridge")).unwrap();
        assert!(!has_network_link(dir.path()));
        std::fs::create_dir(dir.path().join("eth0")).unwrap();
        assert!(has_network_link(dir.path()));
        assert!(!has_network_link(&dir.path().join("missing")));
    }

    #[test]
    fn a_pci_network_controller_counts_without_a_driver() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("0000:00:02.0");
        std::fs::create_dir(&disk).unwrap();
        std::fs::write(disk.join("class"), "0x010000\n").unwrap();
        assert!(!has_network_controller(dir.path()));
        let nic = dir.path().join("0000:00:03.0");
        std::fs::create_dir(&nic).unwrap();
        std::fs::write(nic.join("class"), "0x020000\n").unwrap();
        assert!(has_network_controller(dir.path()));
    }
}

/// Where the kernel lists network interfaces.
const SYS_CLASS_NET: &str = "/sys/class/net";
/// Where the kernel lists PCI devices, with or without a driver.
const SYS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Whether a PCI network controller (class 0x02) is present, even if its driver is not loaded
/// yet: early in the boot the interface may not exist while udev is still loading drivers.
pub fn has_network_controller(pci_devices: &Path) -> bool {
    std::fs::read_dir(pci_devices).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("class"))
                .is_ok_and(|class| class.trim().starts_with("0x02"))
        })
    })
}

/// Whether the node has a network interface besides loopback: then a missing route to the
/// metadata service may only mean that DHCP has not finished, and it is worth waiting for
/// (within the deadline); without one, there is nothing to wait for.
pub fn has_network_link(sys_class_net: &Path) -> bool {
    std::fs::read_dir(sys_class_net).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name() != "lo" && !e.path().join("bridge").exists())
    })
}

/// Checks one provider's document and PATCHes it.
async fn apply(config: &Config, name: &str, raw: &[u8]) -> Outcome {
    let settings = match document::parse_user_data(raw) {
        Ok(Some(settings)) => settings,
        Ok(None) => return Outcome::Nothing("the document holds no settings".to_string()),
        Err(refusal) => return Outcome::Refused(refusal.to_string()),
    };
    tracing::debug!(
        "{name}: sending its settings to transaction '{}'",
        config.tx
    );
    match patch(&config.socket_path, &config.tx, &settings).await {
        Ok(()) => Outcome::Applied,
        Err(e) if e.is_refusal() => Outcome::Refused(e.to_string()),
        Err(e) => Outcome::Failed {
            reason: e.to_string(),
            api: true,
        },
    }
}

/// One PATCH with the whole document, so the server stores all of it or nothing.
async fn patch(socket_path: &Path, tx: &str, settings: &serde_json::Value) -> Result<()> {
    let uri = format!("/settings?tx={}", apiclient::encode_query_value(tx));
    let (status, body) =
        apiclient::raw_request(socket_path, &uri, "PATCH", Some(settings.to_string()))
            .await
            .context(RequestSnafu { socket_path })?;
    match status {
        200..=299 => Ok(()),
        400 => RefusedSnafu {
            message: apiclient::server_message(&body),
        }
        .fail(),
        _ => StatusSnafu {
            status,
            message: apiclient::server_message(&body),
        }
        .fail(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_user_data_accepts_common_base64_forms() {
        let text = "[settings]\nmotd = \"hi???~~~\"\n";
        let standard = base64::engine::general_purpose::STANDARD.encode(text);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        assert_ne!(standard.trim_end_matches('='), url_safe);
        for encoded in [standard, url_safe] {
            let cmdline = Cmdline::parse(&format!("quiet {USER_DATA_PARAM}={encoded}"));
            assert_eq!(
                cmdline_user_data(&cmdline).unwrap().unwrap(),
                text.as_bytes()
            );
        }
        assert_eq!(cmdline_user_data(&Cmdline::parse("quiet")), Ok(None));
        let bad = Cmdline::parse(&format!("{USER_DATA_PARAM}=!!!"));
        assert!(cmdline_user_data(&bad)
            .unwrap_err()
            .contains("not valid base64"));
    }

    #[test]
    fn imds_url_comes_from_cmdline_then_flag_then_default() {
        let mut config = Config::new(constants::API_SOCKET);
        let none = Cmdline::default();
        let base =
            |c: &Config, k: &Cmdline| imds_client(c, k).unwrap().map(|i| i.base().to_string());
        assert_eq!(base(&config, &none).unwrap(), "http://169.254.169.254/");
        config.imds_url = Some("http://10.0.0.1:80".into());
        assert_eq!(base(&config, &none).unwrap(), "http://10.0.0.1/");
        let cmdline = Cmdline::parse("ballast.imds=http://127.0.0.1:9");
        assert_eq!(base(&config, &cmdline).unwrap(), "http://127.0.0.1:9/");
        assert_eq!(base(&config, &Cmdline::parse("ballast.imds=off")), None);
        config.imds_url = Some("off".into());
        assert_eq!(base(&config, &none), None);
        let err = imds_client(&config, &Cmdline::parse("ballast.imds=ftp://x")).unwrap_err();
        assert!(
            err.contains("ballast.imds on the kernel command line"),
            "{err}"
        );
    }

    #[test]
    fn summary_lists_providers_in_order() {
        let report = Report {
            outcomes: vec![
                (LOCAL_FILE, Outcome::Applied),
                (KERNEL_CMDLINE, Outcome::Nothing("none".into())),
                (IMDS, Outcome::Refused("settings.motd: bad".into())),
            ],
        };
        assert_eq!(
            report.to_string(),
            "early-boot-config: applied local-file, no user data from kernel-cmdline, refused imds (settings.motd: bad)"
        );
        assert!(!report.api_failed());
    }
}
