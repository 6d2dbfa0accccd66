//! Health checks: what `settings.health` says a healthy node looks like, evaluated for real.
//!
//! # Background
//!
//! An operator states what "healthy" means for a node as settings
//! ([`models::HealthSettings`]): systemd units that must be active (`containerd.service`), and
//! probes, each with a timeout: HTTP GETs of URLs on the node itself (a workload's
//! `/healthz`), or commands run inside a host container (`pgrep kubelet` in `control`). Two
//! parts of Ballast act on the answer:
//!
//! * the API server, while a try-mode change (`apiclient set --try`) is pending, evaluates the
//!   checks every few seconds and reverts the change at once when one fails, naming it;
//! * the boot's health gate (`health-gate`, run by `mark-successful-boot.service` before
//!   `signpost mark-successful-boot`) waits up to `settings.health.boot-wait` for every check
//!   to pass. A boot whose checks never pass is not marked successful, so signpost's boot
//!   deadline resets it and GRUB boots the previous set: an update that breaks a workload
//!   rolls itself back. The gate writes the failed check to
//!   [`constants::HEALTH_BOOT_FAILURE`] on the data partition ([`BootFailure`], declared in
//!   `api_types::health`), where updog on the set booted after the rollback finds it and names
//!   the checks in the failed update of `GET /updates/status`.
//!
//! # Library
//!
//! [`evaluate`] runs every check once and returns a [`Report`]: the failures, each naming its
//! check ([`Failure::check`], e.g. `unit containerd.service`, `probe app`) and why. [`wait`]
//! evaluates until everything passes or the time is up. Units are asked of the real
//! `systemctl is-active` (the command is a parameter, so tests use `systemctl --user`), URL
//! probes are real HTTP GETs (reqwest, no redirects followed, 2xx passes), and command probes
//! are processes added to the container's running task through the host containerd
//! ([`HostContainerd`], a parameter too), as `apiclient exec` adds them: exit 0 passes; a
//! command still running at the timeout is killed and fails; a container that is missing or
//! not running fails, saying so. All are blocking: call them from a blocking thread.
//!
//! # Current limitations
//!
//! - Probes speak plain HTTP to loopback addresses only (the model refuses anything else), so
//!   no TLS and no check depends on another machine.
//! - A command probe's output is not kept; its exit status is the whole answer.
//! - The model checks a probe one change at a time, so a probe given a `url` and, by a later
//!   change, a `command` is accepted, and fails each evaluation saying to remove one.
//! - Units are checked one `systemctl` run each; fine for the handful a node names.

#![forbid(unsafe_code)]

mod command;

pub use command::HostContainerd;
use models::{HealthProbe, HealthSettings};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::{Duration, Instant};

/// A check that did not pass, and the gate's record (declared once, in `api_types::health`,
/// which the updater reads too).
pub use api_types::health::{read_boot_failure, BootFailure, Failure};

/// The outcome of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// How many checks ran.
    pub checks: usize,
    /// The ones that failed, units first, in the order the settings list them.
    pub failures: Vec<Failure>,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line for logs and errors: `2 of 3 health checks failed: unit a.service is failed;
    /// probe app answered 503`.
    pub fn summary(&self) -> String {
        if self.healthy() {
            return format!("all {} health checks passed", self.checks);
        }
        let list: Vec<String> = self.failures.iter().map(Failure::to_string).collect();
        format!(
            "{} of {} health checks failed: {}",
            self.failures.len(),
            self.checks,
            list.join("; ")
        )
    }
}

/// How to reach the node's service manager: the `systemctl` command with any leading
/// arguments (`["systemctl"]` on a node, `["systemctl", "--user"]` in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    pub systemctl: Vec<String>,
    /// Extra environment for systemctl (a test's user manager is reached through
    /// `XDG_RUNTIME_DIR`); empty on a node.
    pub env: Vec<(String, std::path::PathBuf)>,
    /// Where command probes run.
    pub containerd: HostContainerd,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            systemctl: vec!["systemctl".to_string()],
            env: Vec::new(),
            containerd: HostContainerd::default(),
        }
    }
}

impl Checker {
    /// Runs every check of `settings` once.
    pub fn evaluate(&self, settings: &HealthSettings) -> Report {
        let mut report = Report::default();
        for unit in settings.units.iter().flatten() {
            report.checks += 1;
            if let Err(reason) = self.unit_active(unit.as_str()) {
                report.failures.push(Failure {
                    check: format!("unit {unit}"),
                    reason,
                });
            }
        }
        for (name, probe) in settings.probes.iter().flatten() {
            report.checks += 1;
            if let Err(reason) = self.probe_once(name.as_str(), probe) {
                report.failures.push(Failure {
                    check: format!("probe {name}"),
                    reason,
                });
            }
        }
        report
    }

    /// Evaluates until every check passes or `within` has passed, every `interval`; returns
    /// the last report (healthy, or the failures of the last try).
    pub fn wait(&self, settings: &HealthSettings, within: Duration, interval: Duration) -> Report {
        let start = Instant::now();
        loop {
            let report = self.evaluate(settings);
            if report.healthy() || start.elapsed() + interval > within {
                return report;
            }
            tracing::info!("waiting for the health checks: {}", report.summary());
            std::thread::sleep(interval);
        }
    }

    /// `systemctl is-active UNIT`: Ok when it says active (or reloading), else its state.
    fn unit_active(&self, unit: &str) -> Result<(), String> {
        let Some((program, leading)) = self.systemctl.split_first() else {
            return Err("cannot be checked: no systemctl command is configured".to_string());
        };
        let output = Command::new(program)
            .args(leading)
            .args(["is-active", "--", unit])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("cannot be checked: running {program} failed: {e}"))?;
        let state = String::from_utf8_lossy(&output.stdout).trim().to_string();
        match state.as_str() {
            "active" | "reloading" => Ok(()),
            "" => Err(format!(
                "cannot be checked: {program} is-active said nothing ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            state => Err(format!("is {state}")),
        }
    }
}

/// The probe's timeout.
pub fn probe_timeout(probe: &HealthProbe) -> Duration {
    probe
        .timeout
        .as_ref()
        .map(|t| t.as_duration())
        .unwrap_or(Duration::from_secs(
            constants::HEALTH_DEFAULT_PROBE_TIMEOUT_SECS,
        ))
}

/// How long a boot waits for the checks.
pub fn boot_wait(settings: &HealthSettings) -> Duration {
    settings
        .boot_wait
        .as_ref()
        .map(|t| t.as_duration())
        .unwrap_or(Duration::from_secs(
            constants::HEALTH_DEFAULT_BOOT_WAIT_SECS,
        ))
}

impl Checker {
    /// Runs probe `name` once: its URL or its command.
    fn probe_once(&self, name: &str, probe: &HealthProbe) -> Result<(), String> {
        let timeout = probe_timeout(probe);
        match (&probe.url, &probe.command) {
            (Some(_), None) if probe.container.is_some() => Err(format!(
                "has a url and a container; a url probe runs on the node: remove \
                 settings.health.probes.{name}.container"
            )),
            (Some(url), None) => get_once(url.as_str(), timeout),
            (None, Some(command)) => {
                let Some(container) = &probe.container else {
                    return Err(format!(
                        "has a command but no container; set settings.health.probes.{name}.container \
                         to a host container's name"
                    ));
                };
                let command: Vec<String> = command.iter().map(|a| a.as_str().to_string()).collect();
                if command.first().is_none_or(|program| program.is_empty()) {
                    return Err(format!(
                        "has a command without a program; set settings.health.probes.{name}.command \
                         to e.g. [\"sh\", \"-c\", \"pgrep app\"]"
                    ));
                }
                command::run(
                    &self.containerd,
                    name,
                    container.as_str(),
                    &command,
                    timeout,
                )
            }
            (Some(_), Some(_)) => Err(format!(
                "has both a url and a command; remove one of settings.health.probes.{name}.url \
                 and .command"
            )),
            (None, None) => Err(format!(
                "has neither a url nor a command; set settings.health.probes.{name}.url, or \
                 .command and .container"
            )),
        }
    }
}

/// One GET of `url`: Ok on a 2xx answer within `timeout`.
fn get_once(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot be run: {e}"))?;
    match client.get(url).send() {
        Ok(answer) if answer.status().is_success() => Ok(()),
        Ok(answer) => Err(format!("answered {} at {url}", answer.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!(
            "did not answer within {} s at {url}",
            timeout.as_secs()
        )),
        Err(e) => Err(format!("could not reach {url}: {}", root_cause(&e))),
    }
}

/// The innermost error's message (reqwest wraps the connection error that says what happened).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// Errors of reading the checks from the API.
#[derive(Debug, snafu::Snafu)]
#[snafu(visibility(pub))]
pub enum Error {
    #[snafu(display("cannot read {} from the API: {source}", constants::HEALTH_KEY))]
    Api { source: apiclient::error::Error },
    #[snafu(display(
        "the API answered {} that the model refuses: {reason}",
        constants::HEALTH_KEY
    ))]
    Model { reason: String },
}

/// `settings.health` from the API at `socket` (default checks, i.e. none, when unset).
pub async fn from_api(socket: &std::path::Path) -> Result<HealthSettings, Error> {
    use snafu::ResultExt;
    let uri = format!("/settings?prefix={}", constants::HEALTH_KEY);
    let body = apiclient::request(socket, &uri, "GET", None)
        .await
        .context(ApiSnafu)?;
    parse_settings_document(&body)
}

/// The `health` group of a `GET /settings` answer, checked by the model.
pub fn parse_settings_document(body: &str) -> Result<HealthSettings, Error> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| Error::Model {
        reason: e.to_string(),
    })?;
    let settings = models::parse_settings(&value).map_err(|e| Error::Model {
        reason: e.to_string(),
    })?;
    Ok(settings.health.unwrap_or_default())
}

/// What the gate does with its last report: healthy removes an earlier failure record of this
/// same `version` and says so (`Ok`); unhealthy writes the record (atomically) and says what
/// failed (`Err`). A record of another version is kept when healthy: it is the failed update
/// the boot deadline just rolled back from, which the updater has still to report.
pub fn gate_outcome(
    report: &Report,
    version: &str,
    waited: Duration,
    failure_file: &std::path::Path,
) -> Result<String, String> {
    if report.healthy() {
        if read_boot_failure(failure_file).is_none_or(|record| record.version == version) {
            let _ = std::fs::remove_file(failure_file);
        }
        return Ok(format!(
            "{}; this boot may be marked successful",
            report.summary()
        ));
    }
    let record = BootFailure {
        time: jiff::Timestamp::now().to_string(),
        version: version.to_string(),
        waited_seconds: waited.as_secs(),
        failures: report.failures.clone(),
    };
    let line = format!(
        "{}; this boot is not marked successful, so the boot deadline rolls it back",
        record.summary()
    );
    let written = serde_json::to_vec_pretty(&record)
        .map_err(std::io::Error::other)
        .and_then(|text| {
            let partial = failure_file.with_extension("partial");
            std::fs::write(&partial, text)?;
            std::fs::rename(&partial, failure_file)
        });
    match written {
        Ok(()) => Err(line),
        Err(e) => Err(format!(
            "{line} (the record could not be written to {}: {e})",
            failure_file.display()
        )),
    }
}
