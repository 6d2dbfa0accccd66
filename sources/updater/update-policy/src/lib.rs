//! # Background
//!
//! The update daemon keeps a node current by itself, following `settings.updates.policy`:
//! `manual` (do nothing), `check` (look for updates on a schedule), `stage` (also write the
//! chosen update to the inactive partitions) or `auto` (also reboot into it, inside a maintenance
//! window and holding a FleetLock slot when a lock server is configured). This crate is the
//! daemon's judgement and nothing else: a pure function, [`decide`], from what the daemon knows
//! (settings, the time, `GET /updates/status`, what it remembers across restarts and reboots) to
//! one next step and the sentence that explains it. No clock, no I/O: every case is a unit test.
//!
//! The steps are the update API's actions, the ones a person runs with `apiclient update`:
//! refresh, prepare, activate, reboot; plus taking and giving back the fleet lock.
//!
//! # Usage
//!
//! ```
//! use update_policy::{decide, Action, Inputs, Memory};
//! # let status: api_types::update::UpdateStatus = serde_json::from_str(r#"{"update_state": "Idle",
//! #   "available_updates": [], "chosen_update": null, "active_partition": {"image":
//! #   {"arch": "x86_64", "version": "1.0.0", "variant": "node"}, "next_to_boot": true},
//! #   "staging_partition": null, "most_recent_command": null}"#).unwrap();
//! let settings: models::UpdatesSettings =
//!     serde_json::from_value(serde_json::json!({"policy": "check", "check-interval": "1h"})).unwrap();
//! let memory = Memory::default();
//! let decision = decide(&Inputs {
//!     now: "2025-03-01T10:00:00Z".parse().unwrap(),
//!     settings: &settings,
//!     status: &status,
//!     memory: &memory,
//!     boot_id: "b1",
//!     jitter: 0.5,
//!     provisional: None,
//! });
//! assert_eq!(decision.action, Action::Refresh);
//! ```
//!
//! The daemon performs the action, records the decision in the update status, remembers what it
//! must (the time of the check, the lock, the reboot) in [`Memory`], and calls [`decide`] again
//! at [`Decision::wake_at`] or sooner.
//!
//! Safety rules kept here, so that they hold whatever the daemon's loop does:
//! * nothing is started while an update action runs;
//! * a reboot is asked for once per update: after the node comes back on the old version (the
//!   new one failed and rolled back), that version is neither staged nor booted again by the
//!   daemon;
//! * the fleet lock is given back only on a later boot than the reboot that needed it (the
//!   daemon starts after the boot is marked successful), or when it is no longer needed.
//!
//! # Current limitations
//!
//! * A time zone the bundled database does not know, or a window without start or length, stops
//!   reboots (with that reason in the status) rather than being refused when set: the model checks
//!   the zone's form only.
//! * `check-interval` jitter is up to a tenth of the interval, drawn by the caller.
//! * Waiting for an `apiclient exec` session to end is not modeled: the node has no exec yet. A
//!   pending try-mode settings change does hold the reboot (and the fleet lock request) back
//!   until it is confirmed or reverted.

#![forbid(unsafe_code)]

pub mod window;

use api_types::provisional::Provisional;
use api_types::update::{UpdateState, UpdateStatus};
use jiff::{SignedDuration, Timestamp};
use models::modeled_types::UpdatePolicy;
use models::UpdatesSettings;
use serde::{Deserialize, Serialize};
pub use window::{WindowError, WindowState};

/// How often updates are looked for when `check-interval` is not set.
pub const DEFAULT_CHECK_INTERVAL: SignedDuration = SignedDuration::from_secs(3600);
/// Largest share of the interval added at random to each wait.
pub const JITTER_SHARE: f64 = 0.1;

/// What the daemon keeps across its restarts and the node's reboots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// When the daemon last asked for a refresh (whatever its outcome).
    #[serde(default)]
    pub last_check: Option<Timestamp>,
    /// The daemon holds a FleetLock slot.
    #[serde(default)]
    pub lock_held: bool,
    /// The last reboot the daemon asked for.
    #[serde(default)]
    pub reboot: Option<RebootRecord>,
}

/// A reboot the daemon asked for, to boot `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootRecord {
    pub version: String,
    /// The boot (kernel `boot_id`) the reboot was asked from.
    pub boot_id: String,
    pub at: Timestamp,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub now: Timestamp,
    pub settings: &'a UpdatesSettings,
    pub status: &'a UpdateStatus,
    pub memory: &'a Memory,
    /// This boot's id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: &'a str,
    /// A number in [0, 1) drawn by the caller; spreads checks over a fleet.
    pub jitter: f64,
    /// The try-mode settings change pending on the node (`GET /tx/provisional`), if any: no
    /// reboot while it may still be reverted.
    pub provisional: Option<&'a Provisional>,
}

/// The next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing now.
    Wait,
    /// `POST /actions/refresh-updates`.
    Refresh,
    /// `POST /actions/prepare-update`.
    Prepare,
    /// FleetLock `pre-reboot`.
    AcquireLock,
    /// `POST /actions/activate-update`.
    Activate,
    /// `POST /actions/reboot`, after remembering the reboot.
    Reboot,
    /// FleetLock `steady-state`.
    ReleaseLock,
}

impl Action {
    /// The word used in the status document and the journal.
    pub fn name(self) -> &'static str {
        match self {
            Action::Wait => "wait",
            Action::Refresh => "refresh",
            Action::Prepare => "prepare",
            Action::AcquireLock => "acquire-lock",
            Action::Activate => "activate",
            Action::Reboot => "reboot",
            Action::ReleaseLock => "release-lock",
        }
    }
}

/// What [`decide`] concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// Why, in a sentence for the status document and the journal.
    pub reason: String,
    /// The policy in force.
    pub policy: UpdatePolicy,
    /// When the next check is due (None: no checks under this policy or while paused).
    pub next_check: Option<Timestamp>,
    /// The maintenance windows at `now` (None when they could not be read; the reason says why).
    pub window: Option<WindowState>,
    /// When paused: until when (None inside `Some`: until resumed).
    pub paused: Option<Option<Timestamp>>,
    /// The earliest time something is due by the clock; the caller may come back sooner.
    pub wake_at: Option<Timestamp>,
}

/// Decides the next step. See the crate documentation for the rules.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let settings = inputs.settings;
    let policy = settings.policy.unwrap_or(UpdatePolicy::Manual);
    let paused = settings
        .pause_until
        .as_ref()
        .and_then(|p| p.paused())
        .filter(|until| until.is_none_or(|t| t > inputs.now));
    let window = window::state(settings.maintenance_windows.as_ref(), inputs.now);
    let next_check =
        (policy != UpdatePolicy::Manual && paused.is_none()).then(|| next_check(inputs));
    let (action, reason) = step(inputs, policy, paused, next_check, &window);
    let window_state = window.ok();
    let wake_at = [
        next_check.filter(|t| *t > inputs.now),
        paused.flatten(),
        match (&window_state, policy) {
            (Some(WindowState::Closed { next }), UpdatePolicy::Auto) => *next,
            (Some(WindowState::Open { until }), UpdatePolicy::Auto) => Some(*until),
            _ => None,
        },
    ]
    .into_iter()
    .flatten()
    .min();
    Decision {
        action,
        reason,
        policy,
        next_check,
        window: window_state,
        paused,
        wake_at,
    }
}

/// When the next refresh is due: the last one plus the interval and its jitter, or now.
fn next_check(inputs: &Inputs<'_>) -> Timestamp {
    let Some(last) = inputs.memory.last_check else {
        return inputs.now;
    };
    let interval = inputs
        .settings
        .check_interval
        .as_ref()
        .map(|d| SignedDuration::from_secs(i64::try_from(d.seconds()).unwrap_or(i64::MAX)))
        .unwrap_or(DEFAULT_CHECK_INTERVAL);
    let jitter = inputs.jitter.clamp(0.0, 1.0) * JITTER_SHARE;
    let extra = SignedDuration::from_secs_f64(interval.as_secs_f64() * jitter);
    last.saturating_add(interval)
        .and_then(|t| t.saturating_add(extra))
        .unwrap_or(Timestamp::MAX)
}

/// The step and its reason, before lock bookkeeping.
fn step(
    inputs: &Inputs<'_>,
    policy: UpdatePolicy,
    paused: Option<Option<Timestamp>>,
    next_check: Option<Timestamp>,
    window: &Result<WindowState, WindowError>,
) -> (Action, String) {
    let status = inputs.status;
    let memory = inputs.memory;
    let running_version = status.active_partition.image.version.as_str();

    if let Some(running) = status.running() {
        return (
            Action::Wait,
            format!(
                "the {} action is running; nothing starts until it ends",
                running.cmd_type
            ),
        );
    }

    if let Some(reboot) = &memory.reboot {
        if reboot.boot_id == inputs.boot_id {
            return (
                Action::Wait,
                format!(
                    "a reboot into {} was asked for at {}; waiting for it",
                    reboot.version, reboot.at
                ),
            );
        }
        if memory.lock_held {
            let outcome = if reboot.version == running_version {
                format!("the node runs {running_version} and its boot was marked successful")
            } else {
                format!(
                    "the update to {} rolled back; the node runs {running_version} again",
                    reboot.version
                )
            };
            return (
                Action::ReleaseLock,
                format!("{outcome}: giving back the fleet lock"),
            );
        }
    }

    let release_or_wait = |reason: String| {
        if memory.lock_held {
            (
                Action::ReleaseLock,
                format!("{reason}; the fleet lock is not needed now"),
            )
        } else {
            (Action::Wait, reason)
        }
    };

    if let Some(until) = paused {
        return release_or_wait(match until {
            Some(t) => format!("paused until {t} (apiclient update resume carries on now)"),
            None => "paused until resumed (apiclient update resume)".to_string(),
        });
    }
    if policy == UpdatePolicy::Manual {
        return release_or_wait(
            "policy manual: updates happen only when someone asks (apiclient update)".to_string(),
        );
    }

    let state = status.update_state;
    if state != UpdateState::Ready && next_check.is_some_and(|t| t <= inputs.now) {
        return (Action::Refresh, "the check interval has passed".to_string());
    }

    // The update in play: staged (or activated) on the other set, else the one chosen.
    let staged = status
        .staging_partition
        .as_ref()
        .map(|p| p.image.version.clone());
    let chosen = status.chosen_update.as_ref().map(|u| u.version.clone());
    let failed = failed_version(inputs);

    match state {
        UpdateState::Idle => release_or_wait(match failed {
            Some(version) => format!(
                "update {version} failed to boot once and rolled back; it is not tried again \
                 ({running_version} runs, and no other update is known)"
            ),
            None => format!("up to date: {running_version} is the newest allowed version"),
        }),
        UpdateState::Available => {
            let version = chosen.unwrap_or_default();
            if policy == UpdatePolicy::Check {
                return release_or_wait(format!(
                    "update {version} is available; policy check does not download it"
                ));
            }
            if failed.as_deref() == Some(version.as_str()) {
                return release_or_wait(format!(
                    "update {version} failed to boot once and rolled back; it is not tried again"
                ));
            }
            (Action::Prepare, format!("update {version} is available"))
        }
        UpdateState::Staged | UpdateState::Ready => {
            let version = staged.or(chosen).unwrap_or_default();
            if policy != UpdatePolicy::Auto {
                return release_or_wait(format!(
                    "update {version} is {}; under policy {policy} a person or an orchestrator \
                     reboots into it",
                    if state == UpdateState::Ready {
                        "activated"
                    } else {
                        "staged"
                    }
                ));
            }
            if failed.as_deref() == Some(version.as_str()) {
                return release_or_wait(format!(
                    "update {version} failed to boot once and rolled back; it is not tried again"
                ));
            }
            match window {
                Err(e) => return release_or_wait(format!("{e}; no reboot until it is fixed")),
                Ok(WindowState::Closed { next }) => {
                    return release_or_wait(match next {
                        Some(t) => format!(
                            "update {version} is {}; the maintenance window opens at {t}",
                            state.to_string().to_lowercase()
                        ),
                        None => format!(
                            "update {version} is {}; no maintenance window ever opens (no days?)",
                            state.to_string().to_lowercase()
                        ),
                    })
                }
                Ok(WindowState::Open { .. } | WindowState::Always) => {}
            }
            if let Some(try_change) = inputs.provisional {
                return (
                    Action::Wait,
                    format!(
                        "update {version} is {}; a try-mode settings change (transaction {}) \
                         is pending until {}: no reboot until it is confirmed or reverted",
                        state.to_string().to_lowercase(),
                        try_change.transaction,
                        try_change.deadline
                    ),
                );
            }
            let lock_configured = inputs
                .settings
                .fleet_lock
                .as_ref()
                .is_some_and(|l| l.url.is_some());
            if lock_configured && !memory.lock_held {
                return (
                    Action::AcquireLock,
                    format!("update {version} is ready to boot; asking the fleet lock for a slot"),
                );
            }
            if state == UpdateState::Staged {
                (
                    Action::Activate,
                    format!("update {version} is staged and a reboot is allowed now"),
                )
            } else {
                (Action::Reboot, format!("rebooting into update {version}"))
            }
        }
    }
}

/// The version this node tried and came back from: the daemon's own reboot into it ended on
/// the old version, or the updater reported a rollback.
fn failed_version(inputs: &Inputs<'_>) -> Option<String> {
    let running = inputs.status.active_partition.image.version.as_str();
    if let Some(reboot) = &inputs.memory.reboot {
        if reboot.boot_id != inputs.boot_id && reboot.version != running {
            return Some(reboot.version.clone());
        }
    }
    inputs
        .status
        .failed_update
        .as_ref()
        .map(|f| f.version.clone())
}

#[cfg(test)]
mod tests;
