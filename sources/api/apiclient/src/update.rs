//! `update check`, `update apply`, `update cancel` and `reboot`: the update API driven from the
//! command line, as Bottlerocket's apiclient does.
//!
//! The server runs each update action in the background: `POST /actions/<action>` answers 204
//! at once, and `GET /updates/status` shows the action in `most_recent_command` as `Running`
//! until it ends with `Success` or `Failed` (its `stderr` then says why). The functions here
//! start an action and poll the status until their action is over, reporting progress on a
//! writer (stderr for the binary). A state that does not allow a step is refused by the server
//! with 409 and a sentence saying what to do; that sentence is shown as the error.

use crate::error::{self, Result};
use crate::{parse_value, request};
use serde_json::Value;
use snafu::ResultExt;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub const STATUS_URI: &str = "/updates/status";
/// How often the status is polled while an action runs.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a refresh, an activation or a deactivation may take.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `update apply` waits for the prepare unless told otherwise.
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(600);

/// An update action; its `route()` starts it and its `name()` is the status document's
/// `cmd_type`.
pub use api_types::update::CommandType as Action;
/// The status document (declared once, in `api_types::update`).
pub use api_types::update::{
    CommandRecord, CommandStatus, PartitionInfo, UpdateImage, UpdateProgress as Progress,
    UpdateState, UpdateStatus as Status,
};

/// Fetches the status: the document as sent, and the same parsed.
pub async fn status(socket_path: &Path) -> Result<(Value, Status)> {
    let body = request(socket_path, STATUS_URI, "GET", None).await?;
    let value: Value = serde_json::from_str(&body).context(error::ResponseJsonSnafu {
        method: "GET",
        uri: STATUS_URI,
    })?;
    let status = parse_value("the update status document", &value)?;
    Ok((value, status))
}

/// Starts `action` on the server (204, or the server's refusal as an error).
pub async fn start(socket_path: &Path, action: Action) -> Result<()> {
    request(socket_path, action.route(), "POST", None).await?;
    Ok(())
}

/// Polls the status until `action` is no longer running; calls `on_poll` with each status seen
/// while it runs. A failed action becomes [`error::Error::UpdateFailed`].
pub async fn wait(
    socket_path: &Path,
    action: Action,
    timeout: Duration,
    mut on_poll: impl FnMut(&Status),
) -> Result<(Value, Status)> {
    let deadline = Instant::now() + timeout;
    loop {
        let (value, status) = status(socket_path).await?;
        match &status.most_recent_command {
            Some(c) if c.cmd_type == action && c.cmd_status == CommandStatus::Running => {
                on_poll(&status);
            }
            Some(c) if c.cmd_type == action && c.cmd_status == CommandStatus::Success => {
                return Ok((value, status));
            }
            Some(c) if c.cmd_type == action => {
                return error::UpdateFailedSnafu {
                    action: action.name(),
                    exit: c
                        .exit_status
                        .map_or("no exit status".to_string(), |e| format!("exit status {e}")),
                    stderr: c.stderr.clone(),
                }
                .fail();
            }
            other => {
                return error::UpdateOvertakenSnafu {
                    action: action.name(),
                    other: other
                        .as_ref()
                        .map_or("none".to_string(), |c| c.cmd_type.to_string()),
                }
                .fail();
            }
        }
        if Instant::now() >= deadline {
            return error::UpdateTimeoutSnafu {
                action: action.name(),
                seconds: timeout.as_secs(),
            }
            .fail();
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Starts `action` and waits for it to end.
pub async fn run(socket_path: &Path, action: Action, timeout: Duration) -> Result<(Value, Status)> {
    start(socket_path, action).await?;
    wait(socket_path, action, timeout, |_| {}).await
}

/// `update check`: refreshes the list of updates and returns the status document.
pub async fn check(socket_path: &Path, timeout: Duration) -> Result<Value> {
    Ok(run(socket_path, Action::Refresh, timeout).await?.0)
}

/// What `update apply` does besides prepare and activate.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Refresh first.
    pub check: bool,
    /// Reboot once the update is activated.
    pub reboot: bool,
    /// How long to wait for the prepare.
    pub timeout: Duration,
}

/// `update apply`: prepares the chosen update (reporting progress on `messages`), activates it
/// and, when asked, reboots. With `check`, refreshes first and stops quietly when nothing is
/// available.
pub async fn apply<W: Write>(
    socket_path: &Path,
    options: ApplyOptions,
    messages: &mut W,
) -> Result<()> {
    let (_, mut current) = status(socket_path).await?;
    if options.check {
        current = run(socket_path, Action::Refresh, ACTION_TIMEOUT).await?.1;
        if current.chosen_update.is_none() && current.update_state == UpdateState::Idle {
            say(messages, "No update is available; nothing to apply.")?;
            return Ok(());
        }
    }
    let version = current
        .chosen_update
        .as_ref()
        .map_or("the chosen update".to_string(), |c| c.version.clone());

    start(socket_path, Action::Prepare).await?;
    say(messages, &format!("Preparing update {version}"))?;
    let mut last = None;
    let mut write_error = None;
    wait(socket_path, Action::Prepare, options.timeout, |status| {
        if let Some(progress) = &status.progress {
            if last.as_ref() != Some(progress) {
                if let Err(e) = say(messages, &progress_line(&version, progress)) {
                    write_error.get_or_insert(e);
                }
                last = Some(progress.clone());
            }
        }
    })
    .await?;
    if let Some(e) = write_error {
        return Err(e);
    }
    say(
        messages,
        &format!("Update {version} is written; activating it"),
    )?;
    run(socket_path, Action::Activate, ACTION_TIMEOUT).await?;
    if options.reboot {
        say(
            messages,
            &format!("Update {version} is activated; rebooting"),
        )?;
        reboot(socket_path).await
    } else {
        say(
            messages,
            &format!(
                "Update {version} is activated and boots next; reboot to use it \
                 (apiclient reboot), or undo with apiclient update cancel"
            ),
        )
    }
}

/// `update cancel`: deactivates an activated update; returns the status document.
pub async fn cancel(socket_path: &Path) -> Result<Value> {
    Ok(run(socket_path, Action::Deactivate, ACTION_TIMEOUT)
        .await?
        .0)
}

/// `reboot`: asks the server to reboot the node. The server may be stopped by the reboot
/// before its answer is written; a connection closed without an answer (not a refused one)
/// therefore means the reboot is under way.
pub async fn reboot(socket_path: &Path) -> Result<()> {
    match request(socket_path, "/actions/reboot", "POST", None).await {
        Ok(_) => Ok(()),
        Err(crate::Error::SendRequest { source, .. }) if source.is_incomplete_message() => {
            tracing::info!("the API server went down before answering: the node is rebooting");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The longest pause `update pause --for` takes; a longer one is an indefinite pause.
pub const PAUSE_MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// `update pause [--for D]`: pauses the update daemon for `duration`, or until resumed when
/// `None`, by setting [`constants::UPDATES_PAUSE_UNTIL_KEY`] (kept across reboots like every
/// setting). Returns the value set: an RFC 3339 time or `indefinite`.
pub async fn pause(socket_path: &Path, duration: Option<Duration>) -> Result<String> {
    let value = match duration {
        None => constants::UPDATES_PAUSE_INDEFINITE.to_string(),
        Some(d) => pause_end(jiff::Timestamp::now(), d)?.to_string(),
    };
    set_pause(socket_path, &value).await?;
    Ok(value)
}

/// `update resume`: ends a pause of the update daemon.
pub async fn resume(socket_path: &Path) -> Result<()> {
    set_pause(socket_path, constants::UPDATES_PAUSE_NONE).await
}

/// When a pause of `duration` from `now` ends, to the second.
pub fn pause_end(now: jiff::Timestamp, duration: Duration) -> Result<jiff::Timestamp> {
    let too_long = || {
        error::PauseTooLongSnafu {
            requested: format!("{} s", duration.as_secs()),
            max_days: PAUSE_MAX.as_secs() / 86_400,
        }
        .build()
    };
    if duration > PAUSE_MAX {
        return Err(too_long());
    }
    let span = jiff::SignedDuration::try_from(duration).map_err(|_| too_long())?;
    now.checked_add(span)
        .and_then(|end| end.round(jiff::Unit::Second))
        .map_err(|_| too_long())
}

async fn set_pause(socket_path: &Path, value: &str) -> Result<()> {
    let pair: crate::set::KeyPair =
        format!("{}={value}", constants::UPDATES_PAUSE_UNTIL_KEY).parse()?;
    crate::set::set(
        socket_path,
        &crate::set::SettingsInput::KeyPairs(vec![pair]),
    )
    .await?;
    Ok(())
}

/// One progress line: "Preparing update 1.2.0: root 32.0 of 64.0 MiB (target 2 of 3)".
pub fn progress_line(version: &str, p: &Progress) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let target = p.target.as_deref().unwrap_or("image");
    let written = p.bytes_written as f64 / MIB;
    let amount = match p.bytes_expected {
        Some(expected) => format!("{written:.1} of {:.1} MiB", expected as f64 / MIB),
        None => format!("{written:.1} MiB"),
    };
    let step = if p.targets_total > 0 {
        format!(
            " (target {} of {})",
            (p.targets_done + 1).min(p.targets_total),
            p.targets_total
        )
    } else {
        String::new()
    };
    match p.phase.as_str() {
        "download" | "" => format!("Preparing update {version}: {target} {amount}{step}"),
        phase => format!("Preparing update {version}: {phase}"),
    }
}

fn say<W: Write>(messages: &mut W, line: &str) -> Result<()> {
    writeln!(messages, "{line}")
        .and_then(|()| messages.flush())
        .context(error::WriteOutputSnafu)
}

/// Parses a duration: seconds ("90"), or a number with s, m or h ("90s", "10m", "1h").
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; write e.g. 90, 90s, 10m, 1h or 2d"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value.saturating_mul(60),
        "h" => value.saturating_mul(3600),
        "d" => value.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}'; use s, m, h or d (e.g. 10m)"
            ))
        }
    };
    if seconds == 0 {
        return Err("a duration must be at least one second".to_string());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn pauses_end_to_the_second_and_not_beyond_the_limit() {
        let now: jiff::Timestamp = "2026-12-07T10:00:00.75Z".parse().unwrap();
        let end = pause_end(now, Duration::from_secs(6 * 3600)).unwrap();
        assert_eq!(end.to_string(), "2026-12-07T16:00:01Z");
        assert!(pause_end(now, PAUSE_MAX).is_ok());
        let err = pause_end(now, PAUSE_MAX + Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("without --for"), "{err}");
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
    }

    #[test]
    fn progress_lines() {
        let mut p = Progress {
            phase: "download".into(),
            target: Some("root".into()),
            bytes_written: 32 << 20,
            bytes_expected: Some(64 << 20),
            targets_done: 1,
            targets_total: 3,
        };
        assert_eq!(
            progress_line("1.2.0", &p),
            "Preparing update 1.2.0: root 32.0 of 64.0 MiB (target 2 of 3)"
        );
        p.bytes_expected = None;
        p.targets_total = 0;
        assert_eq!(
            progress_line("1.2.0", &p),
            "Preparing update 1.2.0: root 32.0 MiB"
        );
        p.phase = "done".into();
        assert_eq!(progress_line("1.2.0", &p), "Preparing update 1.2.0: done");
    }

    #[test]
    fn status_parses_the_document_and_ignores_unknown_fields() {
        let value = serde_json::json!({
            "update_state": "Staged",
            "available_updates": ["1.2.0"],
            "chosen_update": {"arch": "x86_64", "version": "1.2.0", "variant": "dev"},
            "active_partition": {"image": {"arch": "x86_64", "version": "1.1.0", "variant": "dev"}, "next_to_boot": true},
            "staging_partition": {"image": {"arch": "x86_64", "version": "1.2.0", "variant": "dev"}, "next_to_boot": false},
            "most_recent_command": {"cmd_type": "prepare", "cmd_status": "Success", "timestamp": "t", "exit_status": 0, "stderr": ""},
            "progress": null,
            "failed_update": null,
            "something_new": 1
        });
        let status: Status = serde_json::from_value(value).unwrap();
        assert_eq!(status.update_state, UpdateState::Staged);
        assert_eq!(status.chosen_update.unwrap().version, "1.2.0");
        assert!(!status.staging_partition.unwrap().next_to_boot);
        assert_eq!(status.most_recent_command.unwrap().exit_status, Some(0));
    }
}
