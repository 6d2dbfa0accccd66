//! Running a service's restart commands.

use crate::error::{self, Error, Result};
use snafu::{OptionExt, ResultExt};
use std::process::Stdio;
use std::time::Duration;

/// How long a restart command may run before it is killed, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest stretch of a command's output kept in an error message.
const MAX_OUTPUT_CHARS: usize = 2000;

/// Runs one restart command of `service`. The command is split on whitespace into a program and
/// its arguments (no shell is involved); it gets no input, and is killed after `timeout`. Its
/// output is logged; a non-zero exit is an error carrying the output.
pub async fn run_command(service: &str, command: &str, timeout: Duration) -> Result<()> {
    let mut words = command.split_whitespace();
    let program = words
        .next()
        .context(error::EmptyCommandSnafu { service, command })?;
    tracing::info!("service {service}: running '{command}'");
    let child = tokio::process::Command::new(program)
        .args(words)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context(error::CommandStartSnafu { service, command })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            return error::CommandTimeoutSnafu {
                service,
                command,
                seconds: timeout.as_secs(),
            }
            .fail()
        }
        Ok(result) => result.context(error::CommandStartSnafu { service, command })?,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        tracing::info!("service {service}: '{command}': {line}");
    }
    if output.status.success() {
        return Ok(());
    }
    let mut text = format!("{}{}", stdout.trim(), stderr.trim())
        .chars()
        .take(MAX_OUTPUT_CHARS)
        .collect::<String>();
    if text.is_empty() {
        text = "(no output)".to_string();
    }
    Err(Error::CommandFailed {
        service: service.to_string(),
        command: command.to_string(),
        status: output.status,
        output: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn success_failure_timeout_and_missing_program() {
        run_command("s", "/bin/true", DEFAULT_TIMEOUT)
            .await
            .unwrap();
        let message = run_command("s", "/bin/sh -c exit", DEFAULT_TIMEOUT)
            .await
            .map(|_| ())
            .err()
            .map(|e| e.to_string());
        // `sh -c exit` succeeds: words are not shell syntax, so this is just `sh -c exit`.
        assert_eq!(message, None);
        let message = run_command("s", "/bin/false", DEFAULT_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("'/bin/false' of service 's' failed"),
            "{message}"
        );
        let message = run_command("s", "/bin/sleep 5", Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("did not finish"), "{message}");
        let message = run_command("s", "/no/such/program", DEFAULT_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot start"), "{message}");
        let message = run_command("s", "  ", DEFAULT_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("is empty"), "{message}");
    }
}
