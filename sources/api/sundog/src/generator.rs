//! One setting generator: how it is declared in metadata, and running it.

use serde::Deserialize;
use serde_json::Value;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Time a generator gets when its metadata does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes read from a generator's stdout or stderr; more is a failure.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// Most characters of a generator's stderr quoted in a report line.
const MAX_QUOTED_CHARS: usize = 300;

/// Whether a generated value may be generated again. Recorded but not acted on yet: every
/// generated value is kept once committed (see the crate's limitations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strength {
    /// Generated once, then kept like a user's value.
    #[default]
    Strong,
    /// May be regenerated on a later boot while no user has set it.
    Weak,
}

/// A generator as declared by `setting-generator` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    /// Program and arguments (the command string split on whitespace; no shell).
    pub argv: Vec<String>,
    /// Time before the generator is killed.
    pub timeout: Duration,
    /// Value used when the generator fails.
    pub default: Option<Value>,
    pub strength: Strength,
}

/// The table form of the metadata.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Table {
    command: String,
    timeout_seconds: Option<u64>,
    default: Option<Value>,
    #[serde(default)]
    strength: Strength,
}

impl Generator {
    /// Reads `setting-generator` metadata: a command string, or a table `{command,
    /// timeout-seconds?, default?, strength?}`. The error says what is wrong, for the report.
    pub fn from_metadata(value: &Value) -> Result<Generator, String> {
        let table = match value {
            Value::String(command) => Table {
                command: command.clone(),
                timeout_seconds: None,
                default: None,
                strength: Strength::default(),
            },
            Value::Object(_) => Table::deserialize(value)
                .map_err(|e| format!("the setting-generator table is invalid: {e}"))?,
            other => {
                return Err(format!(
                "setting-generator must be a command string or a table with `command`, not {other}"
            ))
            }
        };
        let argv: Vec<String> = table
            .command
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if argv.is_empty() {
            return Err("setting-generator has an empty command".to_string());
        }
        let timeout = match table.timeout_seconds {
            None => DEFAULT_TIMEOUT,
            Some(0) => return Err("timeout-seconds must be at least 1".to_string()),
            Some(seconds) => Duration::from_secs(seconds),
        };
        Ok(Generator {
            argv,
            timeout,
            default: table.default.filter(|v| !v.is_null()),
            strength: table.strength,
        })
    }

    /// The command as written, for messages.
    pub fn command(&self) -> String {
        self.argv.join(" ")
    }

    /// Runs the generator and returns its trimmed stdout (see [`parse_output`] for how it
    /// becomes a value). The error completes a sentence that starts with the command ("'x'
    /// exited with status 1; stderr: ..."). The process runs in a process group
    /// of its own, so that on timeout the whole group (including anything it started) is killed.
    pub async fn run(&self) -> Result<String, String> {
        let mut command = Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("could not be started: {e}"))?;
        let pid = child.id();
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err("the generator's output pipes were not set up".to_string());
        };

        let work = async {
            let (out, err) = tokio::join!(read_limited(&mut stdout), read_limited(&mut stderr));
            let (out, err) = (out?, err?);
            if out.len() > MAX_OUTPUT_BYTES || err.len() > MAX_OUTPUT_BYTES {
                return Ok(Finished::TooMuch);
            }
            let status = child
                .wait()
                .await
                .map_err(|e| format!("cannot wait for the generator: {e}"))?;
            Ok(Finished::Exited(status, out, err))
        };
        let finished = tokio::time::timeout(self.timeout, work).await;
        let finished = match finished {
            Ok(Ok(Finished::Exited(status, out, err))) => (status, out, err),
            Ok(Ok(Finished::TooMuch)) => {
                kill_group(pid);
                let _ = child.wait().await;
                return Err(format!(
                    "printed more than {MAX_OUTPUT_BYTES} bytes; it was killed"
                ));
            }
            Ok(Err(reason)) => {
                kill_group(pid);
                let _ = child.wait().await;
                return Err(reason);
            }
            Err(_) => {
                kill_group(pid);
                let _ = child.wait().await;
                return Err(format!(
                    "timed out after {} s and was killed",
                    self.timeout.as_secs()
                ));
            }
        };
        let (status, out, err) = finished;
        if !status.success() {
            return Err(format!("{}{}", describe_status(status), quote_stderr(&err)));
        }
        output_text(&out).map_err(|reason| format!("{reason}{}", quote_stderr(&err)))
    }
}

enum Finished {
    Exited(ExitStatus, Vec<u8>, Vec<u8>),
    TooMuch,
}

async fn read_limited<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::new();
    reader
        .take(MAX_OUTPUT_BYTES as u64 + 1)
        .read_to_end(&mut buffer)
        .await
        .map_err(|e| format!("cannot read the generator's output: {e}"))?;
    Ok(buffer)
}

/// Kills the process group led by `pid` (the generator and whatever it started).
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // The group may be gone already; there is nothing to do about a failure here.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("failed ({status})"),
    }
}

/// `; stderr: ...` with the generator's stderr on one line, or nothing when it printed none.
fn quote_stderr(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let folded = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if folded.is_empty() {
        return String::new();
    }
    if folded.chars().count() > MAX_QUOTED_CHARS {
        let cut: String = folded.chars().take(MAX_QUOTED_CHARS).collect();
        format!("; stderr: {cut}...")
    } else {
        format!("; stderr: {folded}")
    }
}

/// A generator's stdout, trimmed. Empty output is refused, as is output that is not UTF-8.
fn output_text(out: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(out)
        .map_err(|_| "printed output that is not UTF-8 text".to_string())?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("exited successfully but printed nothing on stdout".to_string());
    }
    if trimmed == "null" {
        return Err("printed null instead of a value".to_string());
    }
    Ok(trimmed.to_string())
}

/// The values a generator's output may stand for, most specific first: the output read as
/// JSON when it parses (`42`, `["a"]`), then the text itself as a string. The caller takes the
/// first one the model accepts for the key, so `1` for a string setting is `"1"`. Output that
/// is a quoted JSON string (`"text"`) means only that string.
pub fn candidates(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::String(_)) => vec![value],
        Ok(Value::Null) | Err(_) => vec![Value::String(text.to_string())],
        Ok(value) => vec![value, Value::String(text.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_metadata_is_a_command_with_defaults() {
        let generator = Generator::from_metadata(&json!("bork  seed")).unwrap();
        assert_eq!(generator.argv, ["bork", "seed"]);
        assert_eq!(generator.timeout, DEFAULT_TIMEOUT);
        assert_eq!(generator.default, None);
        assert_eq!(generator.strength, Strength::Strong);
    }

    #[test]
    fn table_metadata_reads_every_field() {
        let generator = Generator::from_metadata(&json!({
            "command": "/usr/bin/gen --x",
            "timeout-seconds": 3,
            "default": {"a": 1},
            "strength": "weak"
        }))
        .unwrap();
        assert_eq!(generator.argv, ["/usr/bin/gen", "--x"]);
        assert_eq!(generator.timeout, Duration::from_secs(3));
        assert_eq!(generator.default, Some(json!({"a": 1})));
        assert_eq!(generator.strength, Strength::Weak);
    }

    #[test]
    fn bad_metadata_is_explained() {
        let cases = [
            (json!(5), "must be a command string"),
            (json!(""), "empty command"),
            (json!({"timeout-seconds": 1}), "missing field `command`"),
            (
                json!({"command": "x", "timeout": 1}),
                "unknown field `timeout`",
            ),
            (json!({"command": "x", "timeout-seconds": 0}), "at least 1"),
            (
                json!({"command": "x", "strength": "medium"}),
                "unknown variant `medium`",
            ),
        ];
        for (value, expected) in cases {
            let err = Generator::from_metadata(&value).unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn output_is_trimmed_text() {
        assert_eq!(output_text(b"  node-1 \n").unwrap(), "node-1");
        assert!(output_text(b" \n").unwrap_err().contains("printed nothing"));
        assert!(output_text(b"null\n").unwrap_err().contains("null"));
        assert!(output_text(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn candidates_are_json_then_text() {
        assert_eq!(candidates("42"), [json!(42), json!("42")]);
        assert_eq!(candidates("\"node-1\""), [json!("node-1")]);
        assert_eq!(candidates("null"), [json!("null")]);
        assert_eq!(candidates("[\"a\"]"), [json!(["a"]), json!("[\"a\"]")]);
        assert_eq!(candidates("node-1"), [json!("node-1")]);
        assert_eq!(candidates("{not json"), [json!("{not json")]);
    }

    #[tokio::test]
    async fn runs_commands_and_reports_failures() {
        let ok = Generator::from_metadata(&json!("echo hello")).unwrap();
        assert_eq!(ok.run().await.unwrap(), "hello");

        let failing = Generator::from_metadata(&json!("sh -c echo")).unwrap();
        assert!(failing.run().await.unwrap_err().contains("printed nothing"));

        let status = Generator::from_metadata(&json!("ls /nonexistent-sundog-dir")).unwrap();
        let err = status.run().await.unwrap_err();
        assert!(err.starts_with("exited with status 2; stderr: "), "{err}");
        assert!(err.contains("nonexistent-sundog-dir"), "{err}");

        let missing = Generator::from_metadata(&json!("/nonexistent/generator")).unwrap();
        let err = missing.run().await.unwrap_err();
        assert!(err.starts_with("could not be started: "), "{err}");
    }
}
