//! Programs the API server runs for an answer (the updater's `status`, `systemctl`,
//! `signpost`): a command line given as one flag value, and one way to run it with a time
//! limit and turn its failures into answers that name the flag to fix.

use crate::error::ApiError;
use axum::http::StatusCode;
use std::process::Stdio;
use std::time::Duration;

/// Most bytes of a program's stderr quoted in an error.
const MAX_STDERR_QUOTED: usize = 2048;

/// A command line given as one flag value, split on whitespace: `updog`, or
/// `/usr/bin/updog --log-level warn`. No quoting: arguments cannot contain spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    argv: Vec<String>,
}

impl std::str::FromStr for CommandLine {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let argv: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if argv.is_empty() {
            return Err("the command is empty; give a program and its arguments".to_string());
        }
        Ok(CommandLine { argv })
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.argv.join(" "))
    }
}

impl CommandLine {
    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// A command line from a constant known not to be empty.
    pub fn from_static(text: &'static str) -> CommandLine {
        CommandLine {
            argv: text.split_whitespace().map(str::to_string).collect(),
        }
    }

    /// The program to run.
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// A process for this command line with `extra` arguments appended.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, extra: &[S]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).args(extra);
        cmd
    }

    /// A process for this command line with `extra` arguments appended, stdin empty, stdout
    /// and stderr captured, killed when dropped and sent SIGTERM when the API server dies.
    pub fn captured<S: AsRef<std::ffi::OsStr>>(&self, extra: &[S]) -> tokio::process::Command {
        let mut command = self.command(extra);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call (prctl); it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        command
    }

    /// Runs this command line with `extra` and returns its stdout. `what` names the program
    /// in messages ("updater", "systemctl") and `flag` the server flag that sets it. A program
    /// that cannot be started is a 503; one that fails, or takes longer than `timeout`, a 500
    /// quoting its stderr.
    pub async fn stdout(
        &self,
        extra: &[&str],
        timeout: Duration,
        what: &str,
        flag: &str,
    ) -> Result<Vec<u8>, ApiError> {
        let shown = format!("{self} {}", extra.join(" "));
        let child = self
            .captured(extra)
            .spawn()
            .map_err(|e| cannot_run(what, self, flag, &e))?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                ApiError::internal(format!(
                    "'{shown}' did not answer within {} s",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| ApiError::internal(format!("'{shown}': {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(MAX_STDERR_QUOTED).collect();
            return Err(ApiError::internal(format!(
                "'{shown}' failed ({}): {stderr}",
                output.status
            )));
        }
        Ok(output.stdout)
    }
}

/// The answer when a program cannot be started: 503, naming the flag that chooses it.
pub fn cannot_run(what: &str, command: &CommandLine, flag: &str, e: &std::io::Error) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "cannot run the {what} '{}': {e}. Install it, or start the API server with {flag} \
             naming the program to run (now '{command}')",
            command.program()
        ),
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn command_lines_split_on_whitespace() {
        let c: CommandLine = " /usr/bin/updog  --log-level warn ".parse().unwrap();
        assert_eq!(c.program(), "/usr/bin/updog");
        assert_eq!(c.to_string(), "/usr/bin/updog --log-level warn");
        let cmd = c.command(&["--json", "status"]);
        let args: Vec<_> = cmd.as_std().get_args().collect();
        assert_eq!(args, ["--log-level", "warn", "--json", "status"]);
        assert!("  ".parse::<CommandLine>().is_err());
    }

    #[tokio::test]
    async fn failures_name_the_flag_or_quote_stderr() {
        let missing: CommandLine = "/nonexistent/prog".parse().unwrap();
        let e = missing
            .stdout(&[], Duration::from_secs(5), "test program", "--test")
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("--test"), "{}", e.message);
        let failing: CommandLine = "sh -c".parse().unwrap();
        let e = failing
            .stdout(
                &["echo broken >&2; exit 3"],
                Duration::from_secs(5),
                "sh",
                "--sh",
            )
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.contains("broken"), "{}", e.message);
        let out = failing
            .stdout(&["echo fine"], Duration::from_secs(5), "sh", "--sh")
            .await
            .unwrap();
        assert_eq!(out, b"fine\n");
    }
}
