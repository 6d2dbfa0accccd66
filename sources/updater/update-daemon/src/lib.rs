//! # Background
//!
//! The update daemon keeps a node current by itself. It runs after the boot is marked
//! successful and loops: read `settings.updates` and `GET /updates/status` over the API socket,
//! ask the policy engine (`update-policy`) for the next step, take it through the same update
//! API a person uses (`/actions/refresh-updates`, `prepare-update`, `activate-update`,
//! `/actions/reboot`) or through the FleetLock server, and report the decision with `PUT
//! /updates/daemon`, so that `GET /updates/status` shows it under `daemon`, and in the journal.
//!
//! What must survive a restart or a reboot (the last check, whether it holds the fleet lock,
//! the reboot it asked for, this node's lock id) is kept in a small JSON file on the data
//! partition, written atomically before the step that depends on it: the reboot is remembered
//! before it is asked for, so a node never reboots twice for one update.
//!
//! # Usage
//!
//! `update-daemon` (the unit's command). `--once` makes one decision and exits; `--poll 60s`
//! is the longest wait between decisions.
//!
//! # Current limitations
//!
//! * The FleetLock client speaks plain http only; the node's CA bundle and proxy are not used.
//! * Settings changes are seen at the next decision (at most `--poll` later), not at once.
//! * A refresh that fails is retried at the next interval, not sooner.
#![forbid(unsafe_code)]

use api_types::update::{DaemonReport, UpdateStatus, DAEMON_REPORT_URI};
use apiclient::update::Action as ApiAction;
use jiff::Timestamp;
use models::UpdatesSettings;
use serde::{Deserialize, Serialize};
use snafu::{ResultExt, Snafu};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use update_policy::{Action, Decision, Memory, RebootRecord, WindowState};

/// Where the daemon keeps its memory on a node.
pub const STATE_FILE: &str = "/var/lib/ballast/update-daemon/state.json";
/// Where the kernel tells this boot's id.
pub const BOOT_ID_FILE: &str = constants::BOOT_ID_FILE;

#[derive(Debug, Snafu)]
pub enum Error {
    #[snafu(display("Failed to ask the API server: {source}"))]
    Api { source: apiclient::Error },
    #[snafu(display("The API server sent settings that do not parse: {source}"))]
    Settings { source: serde_json::Error },
    #[snafu(display("Failed to read {}: {source}", path.display()))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[snafu(display("State file {} is not valid ({source}); remove it to start afresh", path.display()))]
    ParseState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[snafu(display("Failed to save state in {}: {source}", path.display()))]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub state_file: PathBuf,
    pub boot_id_file: PathBuf,
    /// Longest wait between two decisions.
    pub poll: Duration,
}

/// The daemon's file: the policy's memory and this node's lock id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(flatten)]
    pub memory: Memory,
    /// The id this node gives the FleetLock server; made once.
    #[serde(default)]
    pub node_id: String,
}

impl State {
    /// Loads the state file; an absent file is a fresh state with a new node id.
    pub fn load(path: &Path) -> Result<State, Error> {
        let mut state: State = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).context(ParseStateSnafu { path })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(Error::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        if state.node_id.is_empty() {
            state.node_id = format!("{:032x}", rand::random::<u128>());
        }
        Ok(state)
    }

    /// Writes the state atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let temp = dir.join(".state.json.tmp");
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().context(SaveSnafu { path })
    }
}

/// Reads `settings.updates` over the API.
pub async fn read_settings(socket: &Path) -> Result<UpdatesSettings, Error> {
    let body = apiclient::request(socket, "/settings?keys=settings.updates", "GET", None)
        .await
        .context(ApiSnafu)?;
    let value: serde_json::Value = serde_json::from_str(&body).context(SettingsSnafu)?;
    let updates = value.get("updates").cloned().unwrap_or_default();
    if updates.is_null() {
        return Ok(UpdatesSettings::default());
    }
    serde_json::from_value(updates).context(SettingsSnafu)
}

/// One decision: read, decide, act, report. Returns the decision (with the reason of a failed
/// step in place of the planned one).
pub async fn tick(config: &Config, state: &mut State) -> Result<Decision, Error> {
    let settings = read_settings(&config.socket).await?;
    let (_, status) = apiclient::update::status(&config.socket)
        .await
        .context(ApiSnafu)?;
    let boot_id = std::fs::read_to_string(&config.boot_id_file)
        .context(ReadSnafu {
            path: &config.boot_id_file,
        })?
        .trim()
        .to_string();
    // A server without try mode answers 404 like one with no try pending.
    let provisional = match apiclient::provisional::show(&config.socket).await {
        Ok(Some(body)) => Some(apiclient::provisional::parse(&body).context(ApiSnafu)?),
        Ok(None) => None,
        Err(e) => return Err(e).context(ApiSnafu),
    };
    let now = Timestamp::now();
    let mut decision = update_policy::decide(&update_policy::Inputs {
        now,
        settings: &settings,
        status: &status,
        memory: &state.memory,
        boot_id: &boot_id,
        jitter: rand::random::<f64>(),
        provisional: provisional.as_ref(),
    });
    let mut lock_waiting = false;
    let outcome = act(config, state, &settings, &status, &decision, &boot_id, now).await;
    match outcome {
        Ok(Some(refusal)) => {
            lock_waiting = true;
            decision.reason = format!("{}; waiting for a slot: {refusal}", decision.reason);
        }
        Ok(None) => {}
        Err(e) => decision.reason = format!("{} — but it failed: {e}", decision.reason),
    }
    tracing::info!(
        decision = decision.action.name(),
        policy = %decision.policy,
        "{}",
        decision.reason
    );
    let report = report(&decision, &settings, state, lock_waiting, now);
    let body = serde_json::to_string(&report).unwrap_or_default();
    if let Err(e) = apiclient::request(&config.socket, DAEMON_REPORT_URI, "PUT", Some(body)).await {
        tracing::warn!("cannot report the decision to the API server: {e}");
    }
    Ok(decision)
}

/// Takes the step. `Ok(Some(reason))` is a lock the server refused.
async fn act(
    config: &Config,
    state: &mut State,
    settings: &UpdatesSettings,
    status: &UpdateStatus,
    decision: &Decision,
    boot_id: &str,
    now: Timestamp,
) -> Result<Option<String>, String> {
    let socket = config.socket.as_path();
    let start = |action| async move {
        apiclient::update::start(socket, action)
            .await
            .map_err(|e| e.to_string())
    };
    match decision.action {
        Action::Wait => {}
        Action::Refresh => {
            state.memory.last_check = Some(now);
            state.save(&config.state_file).map_err(|e| e.to_string())?;
            start(ApiAction::Refresh).await?;
        }
        Action::Prepare => start(ApiAction::Prepare).await?,
        Action::Activate => start(ApiAction::Activate).await?,
        Action::AcquireLock | Action::ReleaseLock => {
            let (url, params) = lock_params(settings, state).ok_or("no fleet lock URL is set")?;
            let acquire = decision.action == Action::AcquireLock;
            let answer = if acquire {
                fleetlock::pre_reboot(&url, &params).await
            } else {
                fleetlock::steady_state(&url, &params).await
            }
            .map_err(|e| e.to_string())?;
            match answer {
                fleetlock::Answer::Granted => {
                    state.memory.lock_held = acquire;
                    state.save(&config.state_file).map_err(|e| e.to_string())?;
                }
                fleetlock::Answer::Refused(why) if acquire => return Ok(Some(why)),
                fleetlock::Answer::Refused(why) => return Err(why),
            }
        }
        Action::Reboot => {
            let version = status
                .staging_partition
                .as_ref()
                .map(|p| p.image.version.clone())
                .unwrap_or_default();
            // Remembered first: whatever happens next, this update is never rebooted into twice.
            state.memory.reboot = Some(RebootRecord {
                version,
                boot_id: boot_id.to_string(),
                at: now,
            });
            state.save(&config.state_file).map_err(|e| e.to_string())?;
            apiclient::update::reboot(socket)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(None)
}

/// The lock server's URL and this node's parameters, when a lock is configured.
fn lock_params(
    settings: &UpdatesSettings,
    state: &State,
) -> Option<(String, fleetlock::ClientParams)> {
    let lock = settings.fleet_lock.as_ref()?;
    let url = lock.url.as_ref()?.to_string();
    let group = lock
        .group
        .as_ref()
        .map(|g| g.to_string())
        .unwrap_or_else(|| fleetlock::DEFAULT_GROUP.to_string());
    Some((
        url,
        fleetlock::ClientParams {
            id: state.node_id.clone(),
            group,
        },
    ))
}

/// The status document's `daemon` for this decision.
fn report(
    decision: &Decision,
    settings: &UpdatesSettings,
    state: &State,
    lock_waiting: bool,
    now: Timestamp,
) -> DaemonReport {
    let (next_window, window_open_until) = match &decision.window {
        Some(WindowState::Closed { next }) => (next.map(|t| t.to_string()), None),
        Some(WindowState::Open { until }) => (None, Some(until.to_string())),
        _ => (None, None),
    };
    let lock = if lock_params(settings, state).is_none() {
        "not-configured"
    } else if state.memory.lock_held {
        "held"
    } else if lock_waiting {
        "waiting"
    } else {
        "free"
    };
    DaemonReport {
        policy: decision.policy.to_string(),
        decided_at: now.to_string(),
        last_decision: decision.action.name().to_string(),
        reason: decision.reason.clone(),
        next_check: decision.next_check.map(|t| t.to_string()),
        next_window,
        window_open_until,
        paused: Some(match decision.paused {
            None => models::modeled_types::PauseUntil::NONE.to_string(),
            Some(None) => models::modeled_types::PauseUntil::INDEFINITE.to_string(),
            Some(Some(t)) => t.to_string(),
        }),
        lock: Some(lock.to_string()),
    }
}

/// Decides again and again: after each decision, waits until the policy's next due time or
/// `poll`, whichever comes first (one second at least). A decision that fails is logged and
/// retried after `poll`.
pub async fn run(config: Config, once: bool) -> Result<(), Error> {
    let mut state = State::load(&config.state_file)?;
    state.save(&config.state_file)?;
    loop {
        let wait = match tick(&config, &mut state).await {
            Ok(decision) => wait_for(&decision, config.poll),
            Err(e) => {
                tracing::error!("{e}");
                config.poll
            }
        };
        if once {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
    }
}

/// How long to wait after `decision`: until its next due time, at most `poll`; a step that
/// started something is followed up soon.
fn wait_for(decision: &Decision, poll: Duration) -> Duration {
    if decision.action != Action::Wait {
        return Duration::from_secs(1).min(poll);
    }
    // A due time already past means now (one second), not the long poll: a negative span
    // does not convert to a Duration.
    let until_due = decision
        .wake_at
        .map(|t| Duration::try_from(Timestamp::now().duration_until(t)).unwrap_or(Duration::ZERO))
        .unwrap_or(poll);
    until_due.min(poll).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting_until(wake_at: Option<Timestamp>) -> Decision {
        Decision {
            action: Action::Wait,
            reason: String::new(),
            policy: models::modeled_types::UpdatePolicy::Auto,
            next_check: wake_at,
            window: None,
            paused: None,
            wake_at,
        }
    }

    #[test]
    fn a_due_time_in_the_past_is_followed_up_at_once() {
        let poll = Duration::from_secs(60);
        let past = Timestamp::now() - jiff::SignedDuration::from_secs(30);
        assert_eq!(
            wait_for(&waiting_until(Some(past)), poll),
            Duration::from_secs(1)
        );
        let soon = Timestamp::now() + jiff::SignedDuration::from_secs(10);
        let wait = wait_for(&waiting_until(Some(soon)), poll);
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert_eq!(wait_for(&waiting_until(None), poll), poll);
        let late = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        assert_eq!(wait_for(&waiting_until(Some(late)), poll), poll);
    }
}
