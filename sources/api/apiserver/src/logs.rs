//! `GET /logs`: the node's journal, read with `journalctl`.
//!
//! A request goes: the query string ([`LogsQuery`]) is checked into a [`LogFilter`] (a bad
//! parameter is a 400 that names it) -> [`LogFilter::journalctl_args`] turns it into an argument
//! vector (no shell; every value travels as `--option=value`, so none can be read as another
//! option) -> journalctl runs with `--output=json` and each line it prints becomes a
//! [`LogEntry`] ([`entry_from_journal`]).
//!
//! Without `follow` the answer is a JSON array of the newest `lines` entries, oldest first,
//! bounded in time ([`READ_TIMEOUT`]) and size ([`MAX_ANSWER_BYTES`]: when the entries would
//! take more, the oldest are left out). With `follow=true` it is a stream, one entry per line
//! (`application/x-ndjson`), that ends when the client goes away: the stream owns the
//! journalctl child, and dropping it (hyper drops the body when the connection ends) kills it.
//!
//! journalctl's refusals are sorted by what they mean: a pattern it cannot compile is a 400
//! naming `grep`, a boot the journal does not have a 404 naming `boot`, any other failure a 500
//! carrying its stderr; a journalctl that cannot be started is a 503 naming `--journalctl`.

use crate::error::ApiError;
use api_types::logs::LogEntry;
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Most entries one request may ask for (`lines`).
pub const MAX_LINES: u32 = 10_000;
/// Entries answered when `lines` is not given.
pub const DEFAULT_LINES: u32 = 100;
/// Most units one request may name.
pub const MAX_UNITS: usize = 16;
/// Longest unit name, as systemd allows (UNIT_NAME_MAX less its terminating NUL).
pub const MAX_UNIT_NAME_LEN: usize = 255;
/// The suffix added to a unit name given without its type.
const DEFAULT_UNIT_SUFFIX: &str = ".service";
/// Longest unit name a request may give: room is left for [`DEFAULT_UNIT_SUFFIX`], so a name
/// the document allows never becomes too long for systemd once the suffix is added.
pub const MAX_GIVEN_UNIT_NAME_LEN: usize = MAX_UNIT_NAME_LEN - DEFAULT_UNIT_SUFFIX.len();
/// Longest `grep` pattern.
pub const MAX_GREP_LEN: usize = 256;
/// Most bytes of entries in one (non-follow) answer; older entries beyond it are left out.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Longest line of journalctl output read; a longer entry is skipped (and logged).
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// How long a (non-follow) journalctl may run before it is killed and the request fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a follow request waits for journalctl to print or fail before answering 200: a
/// bad pattern or an unknown boot is then still a 4xx rather than a stream that ends at once.
pub const FOLLOW_START: Duration = Duration::from_millis(500);
/// Most bytes of journalctl's stderr kept for an error message.
const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// Unit types journalctl knows; a name ending in none of them gets `.service`.
const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// Syslog priority names, by number.
const PRIORITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The journal fields an entry is built from (journalctl always adds the cursor, both
/// timestamps and the boot id).
const FIELDS: &str = "_SYSTEMD_UNIT,SYSLOG_IDENTIFIER,_PID,PRIORITY,MESSAGE";

/// Where the journal is and what reads it.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The journalctl program (`--journalctl`).
    pub journalctl: PathBuf,
    /// A journal directory (`--journal-dir`, journalctl's `--directory`); the system journal
    /// when `None`.
    pub dir: Option<PathBuf>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            journalctl: PathBuf::from("journalctl"),
            dir: None,
        }
    }
}

/// The query string of `GET /logs`, as given; [`LogsQuery::filter`] checks it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    pub unit: Option<String>,
    pub priority: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub boot: Option<String>,
    pub grep: Option<String>,
    pub lines: Option<String>,
    pub follow: Option<String>,
}

/// A checked query: what journalctl is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    /// Full unit names (with their type suffix).
    pub units: Vec<String>,
    /// Entries at this priority or more important (lower numbers).
    pub priority: Option<u8>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// `0`, `-N` or a 32-hex boot id (lowercase).
    pub boot: Option<String>,
    pub grep: Option<String>,
    pub lines: u32,
    pub follow: bool,
}

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("?{param}=: {message}"))
}

/// The pattern of one unit name (unanchored).
fn unit_name_regex() -> String {
    format!(
        r"[A-Za-z0-9_][A-Za-z0-9@._:\\-]{{0,{}}}",
        MAX_GIVEN_UNIT_NAME_LEN - 1
    )
}

/// The documented pattern of one unit name.
pub fn unit_pattern() -> String {
    format!("^{}$", unit_name_regex())
}

/// The documented pattern of `unit`: one to [`MAX_UNITS`] names, comma-separated.
pub fn unit_list_pattern() -> String {
    let name = unit_name_regex();
    format!("^{name}(?:,{name}){{0,{}}}$", MAX_UNITS - 1)
}

/// The documented pattern of `priority`.
pub fn priority_pattern() -> String {
    format!("^(?:[0-7]|{})$", PRIORITY_NAMES.join("|"))
}

/// The documented pattern of `since` and `until`: RFC 3339, or a relative time.
pub fn time_pattern() -> String {
    // Days that exist in every year of their month; 29 February of a leap year is accepted
    // too, beyond what the pattern shows (a pattern cannot tell leap years cheaply).
    let date = "[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])\
                |(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
    let time = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?";
    let offset = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
    format!("^(?:-[0-9]{{1,9}}[smhd]|{date}[Tt ]{time}{offset})$")
}

/// The documented pattern of `boot`.
pub fn boot_pattern() -> String {
    "^(?:0|-[1-9][0-9]{0,3}|[0-9a-fA-F]{32})$".to_string()
}

/// The documented pattern of `lines`: 1 to [`MAX_LINES`] (spelled out; a unit test holds the
/// two together).
pub fn lines_pattern() -> String {
    "^(?:[1-9][0-9]{0,3}|10000)$".to_string()
}

impl LogsQuery {
    /// Checks every parameter; relative times count back from `now`.
    pub fn filter(self, now: Timestamp) -> Result<LogFilter, ApiError> {
        Ok(LogFilter {
            units: match &self.unit {
                Some(list) => units(list)?,
                None => Vec::new(),
            },
            priority: self.priority.as_deref().map(priority).transpose()?,
            since: self
                .since
                .as_deref()
                .map(|t| time("since", t, now))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|t| time("until", t, now))
                .transpose()?,
            boot: self.boot.as_deref().map(boot).transpose()?,
            grep: self.grep.map(grep).transpose()?,
            lines: match self.lines.as_deref() {
                Some(n) => lines(n)?,
                None => DEFAULT_LINES,
            },
            follow: match self.follow.as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(bad("follow", format!("'{other}' is not true or false")))
                }
            },
        })
    }
}

/// Comma-separated unit names, each given `.service` unless it ends in a unit type.
fn units(list: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<&str> = list.split(',').collect();
    if names.len() > MAX_UNITS {
        return Err(bad(
            "unit",
            format!("{} units given; name at most {MAX_UNITS}", names.len()),
        ));
    }
    names
        .into_iter()
        .map(|name| unit_name("unit", name))
        .collect()
}

/// One checked unit name, given `.service` unless it ends in a unit type; a malformed one is a
/// 400 naming the query parameter `param` it came in.
pub fn unit_name(param: &str, name: &str) -> Result<String, ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "@._:-\\".contains(c);
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !name.chars().all(allowed) {
        return Err(bad(
            param,
            format!(
                "'{name}' is not a unit name: it starts with a letter, digit or _, and holds only letters, digits and @ . _ : - \\ (e.g. apiserver or apiserver.service)"
            ),
        ));
    }
    if name.len() > MAX_GIVEN_UNIT_NAME_LEN {
        return Err(bad(
            param,
            format!(
                "a unit name is at most {MAX_GIVEN_UNIT_NAME_LEN} characters (systemd's \
                 {MAX_UNIT_NAME_LEN}, less room for {DEFAULT_UNIT_SUFFIX})"
            ),
        ));
    }
    let typed = name
        .rsplit_once('.')
        .is_some_and(|(_, suffix)| UNIT_SUFFIXES.contains(&suffix));
    Ok(if typed {
        name.to_string()
    } else {
        format!("{name}{DEFAULT_UNIT_SUFFIX}")
    })
}

fn priority(text: &str) -> Result<u8, ApiError> {
    if let Some(n) = PRIORITY_NAMES.iter().position(|p| *p == text) {
        return Ok(n as u8);
    }
    match text.parse::<u8>() {
        Ok(n) if n <= 7 => Ok(n),
        _ => Err(bad(
            "priority",
            format!(
                "'{text}' is not a priority: give 0-7 or one of {}",
                PRIORITY_NAMES.join(", ")
            ),
        )),
    }
}

/// An RFC 3339 time, or `-N` with s, m, h or d counted back from `now`.
pub(crate) fn time(param: &str, text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let explain = || {
        bad(
            param,
            format!("'{text}' is neither an RFC 3339 time (2026-12-07T06:53:05Z) nor a relative one (-10m; s, m, h or d)"),
        )
    };
    if let Some(relative) = text.strip_prefix('-') {
        let split = relative.len().saturating_sub(1);
        let (number, unit) = relative.split_at(split);
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(explain()),
        };
        let n: i64 = number
            .parse()
            .ok()
            .filter(|_| number.len() <= 9 && number.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(explain)?;
        let back = SignedDuration::from_secs(n * seconds);
        return Ok(now.checked_sub(back).unwrap_or(Timestamp::UNIX_EPOCH));
    }
    if !text.contains(['T', 't', ' ']) {
        return Err(explain());
    }
    text.parse::<Timestamp>().map_err(|_| explain())
}

fn boot(text: &str) -> Result<String, ApiError> {
    let relative = text == "0"
        || text.strip_prefix('-').is_some_and(|n| {
            (1..=4).contains(&n.len())
                && !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
        });
    let id = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    if relative || id {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(bad(
            "boot",
            format!("'{text}' is not a boot: give 0 (this boot), -1 (the one before), ... or a 32-hex boot id"),
        ))
    }
}

fn grep(pattern: String) -> Result<String, ApiError> {
    if pattern.is_empty() {
        return Err(bad(
            "grep",
            "the pattern is empty; leave grep out to match every message",
        ));
    }
    if pattern.chars().count() > MAX_GREP_LEN {
        return Err(bad(
            "grep",
            format!("the pattern is longer than {MAX_GREP_LEN} characters"),
        ));
    }
    if pattern.contains('\0') {
        return Err(bad("grep", "the pattern holds a NUL character"));
    }
    Ok(pattern)
}

pub(crate) fn lines(text: &str) -> Result<u32, ApiError> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_LINES).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(bad(
            "lines",
            format!("'{text}' is not a number of entries from 1 to {MAX_LINES}"),
        )),
    }
}

/// journalctl's `@seconds.micros` for a time, never before 1970 (which it refuses).
fn journal_time(t: Timestamp) -> String {
    let micros = t.as_microsecond().max(0);
    format!("@{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

impl LogFilter {
    /// Whether no entry can match: since after until.
    pub fn is_empty_range(&self) -> bool {
        matches!((self.since, self.until), (Some(s), Some(u)) if s > u)
    }

    /// journalctl's arguments for this filter, reading `dir` (the system journal when `None`).
    pub fn journalctl_args(&self, dir: Option<&std::path::Path>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--output=json".into(),
            format!("--output-fields={FIELDS}").into(),
            "--no-pager".into(),
            "--quiet".into(),
        ];
        if let Some(dir) = dir {
            let mut arg = OsString::from("--directory=");
            arg.push(dir);
            args.push(arg);
        }
        for unit in &self.units {
            args.push(format!("--unit={unit}").into());
        }
        if let Some(p) = self.priority {
            args.push(format!("--priority={p}").into());
        }
        if let Some(t) = self.since {
            args.push(format!("--since={}", journal_time(t)).into());
        }
        if let Some(t) = self.until {
            args.push(format!("--until={}", journal_time(t)).into());
        }
        if let Some(b) = &self.boot {
            args.push(format!("--boot={b}").into());
        }
        if let Some(g) = &self.grep {
            args.push(format!("--grep={g}").into());
        }
        args.push(format!("--lines={}", self.lines).into());
        if self.follow {
            args.push("--follow".into());
        }
        args
    }
}

// ---- journalctl's JSON ----

/// The text of a field as journalctl prints it: a string; an array of byte values when it is
/// not UTF-8 (read lossily); an array of either when the field appears more than once (the
/// values joined with newlines).
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            let bytes: Vec<u8> = items
                .iter()
                .map(|b| {
                    b.as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .unwrap_or(b'?')
                })
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(field_text).collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
        _ => None,
    }
}

/// An entry from one line of `journalctl --output=json`; `None` for a line that is not an
/// entry (no JSON object or no valid `__REALTIME_TIMESTAMP`).
pub fn entry_from_journal(line: &[u8]) -> Option<LogEntry> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    let text = |name: &str| fields.get(name).and_then(field_text);
    let micros: i64 = text("__REALTIME_TIMESTAMP")?.parse().ok()?;
    let timestamp = Timestamp::from_microsecond(micros).ok()?;
    Some(LogEntry {
        timestamp: format!("{timestamp:.6}"),
        boot_id: text("_BOOT_ID").unwrap_or_default(),
        unit: text("_SYSTEMD_UNIT"),
        identifier: text("SYSLOG_IDENTIFIER"),
        pid: text("_PID").and_then(|p| p.parse().ok()),
        priority: text("PRIORITY")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p <= 7),
        message: text("MESSAGE").unwrap_or_default(),
    })
}

// ---- running journalctl ----

/// journalctl, started with piped stdout and a task collecting (the start of) its stderr.
struct Journalctl {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: tokio::task::JoinHandle<String>,
}

fn start(config: &JournalConfig, filter: &LogFilter) -> Result<Journalctl, ApiError> {
    let mut child = Command::new(&config.journalctl)
        .args(filter.journalctl_args(config.dir.as_deref()))
        .env("SYSTEMD_COLORS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!("cannot run {}: {e}", config.journalctl.display());
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "cannot run journalctl ({}, set with --journalctl): {e}",
                    config.journalctl.display()
                ),
            )
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ApiError::internal(
            "journalctl was started without its pipes",
        ));
    };
    // Read all of stderr (so journalctl never blocks on it) but keep only its start.
    let stderr = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr)
            .take(MAX_STDERR_BYTES)
            .read_to_end(&mut kept)
            .await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&kept).trim().to_string()
    });
    Ok(Journalctl {
        child,
        stdout: BufReader::new(stdout),
        stderr,
    })
}

/// Whether journalctl's exit is its way of saying that `--grep` matched nothing: status 1
/// with nothing on stderr.
fn nothing_matched(filter: &LogFilter, status: std::process::ExitStatus, stderr: &str) -> bool {
    filter.grep.is_some() && status.code() == Some(1) && stderr.is_empty()
}

/// What a failed journalctl means for the request.
fn failure(filter: &LogFilter, status: std::process::ExitStatus, stderr: &str) -> ApiError {
    if stderr.contains("Bad pattern") {
        return bad(
            "grep",
            format!("journalctl cannot use the pattern: {stderr}"),
        );
    }
    if stderr.contains("specified boot") {
        let boot = filter.boot.as_deref().unwrap_or("0");
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("?boot=: the journal has no boot {boot}"),
        );
    }
    tracing::error!("journalctl failed ({status}): {stderr}");
    ApiError::internal(format!("journalctl failed ({status}): {stderr}"))
}

/// Reads one line into `line` (without its newline). Returns `Ok(false)` at the end of the
/// output; a line longer than [`MAX_ENTRY_BYTES`] is read to its end but left empty.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!line.is_empty() || too_long);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_ENTRY_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = found.unwrap_or(chunk.len());
        reader.consume(used);
        if found.is_some() {
            if too_long {
                tracing::warn!("a journal entry longer than {MAX_ENTRY_BYTES} bytes was left out");
            }
            return Ok(true);
        }
    }
}

/// The newest entries that match, oldest first (see the module's documentation for the
/// bounds).
pub async fn read(config: &JournalConfig, filter: &LogFilter) -> Result<Vec<LogEntry>, ApiError> {
    if filter.is_empty_range() {
        return Ok(Vec::new());
    }
    let mut journal = start(config, filter)?;
    let collect = async {
        let mut entries = VecDeque::new();
        let mut size = 0;
        let mut line = Vec::new();
        while read_line(&mut journal.stdout, &mut line).await? {
            let Some(entry) = entry_from_journal(&line) else {
                continue;
            };
            // The entry's size in the answer, near enough: its JSON text.
            size += entry_size(&entry);
            entries.push_back(entry);
            while size > MAX_ANSWER_BYTES {
                match entries.pop_front() {
                    Some(old) => size -= entry_size(&old),
                    None => break,
                }
            }
        }
        std::io::Result::Ok(entries)
    };
    let entries = match tokio::time::timeout(READ_TIMEOUT, collect).await {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => return Err(ApiError::internal(format!("cannot read journalctl's output: {e}"))),
        Err(_) => {
            return Err(ApiError::internal(format!(
                "journalctl did not finish within {} s; ask for fewer lines or narrow the query (unit, since, boot)",
                READ_TIMEOUT.as_secs()
            )))
        }
    };
    let status = journal
        .child
        .wait()
        .await
        .map_err(|e| ApiError::internal(format!("cannot wait for journalctl: {e}")))?;
    let stderr = journal.stderr.await.unwrap_or_default();
    if !status.success() && !nothing_matched(filter, status, &stderr) {
        return Err(failure(filter, status, &stderr));
    }
    Ok(entries.into())
}

fn entry_size(entry: &LogEntry) -> usize {
    serde_json::to_vec(entry).map_or(0, |v| v.len() + 1)
}

/// A follow stream: the entries that match, one JSON line each, as journalctl prints them,
/// until the stream is dropped (which kills journalctl).
pub async fn follow(
    config: &JournalConfig,
    filter: &LogFilter,
) -> Result<impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static, ApiError> {
    let mut journal = start(config, filter)?;
    // Wait for a first line or an early exit, but not for long: a quiet journal is no error.
    let mut first = Vec::new();
    let started =
        tokio::time::timeout(FOLLOW_START, read_line(&mut journal.stdout, &mut first)).await;
    let first = match started {
        Err(_) => None,
        Ok(Ok(true)) => Some(first),
        Ok(Ok(false)) | Ok(Err(_)) => {
            let status = journal
                .child
                .wait()
                .await
                .map_err(|e| ApiError::internal(format!("cannot wait for journalctl: {e}")))?;
            let stderr = (&mut journal.stderr).await.unwrap_or_default();
            if !status.success() && !nothing_matched(filter, status, &stderr) {
                return Err(failure(filter, status, &stderr));
            }
            None
        }
    };
    let state = (journal, first, Vec::new());
    Ok(futures::stream::unfold(
        state,
        |(mut journal, mut first, mut line)| async move {
            loop {
                let next = match first.take() {
                    Some(pending) => pending,
                    None => match read_line(&mut journal.stdout, &mut line).await {
                        Ok(true) => std::mem::take(&mut line),
                        Ok(false) => return None,
                        Err(e) => return Some((Err(e), (journal, None, line))),
                    },
                };
                if let Some(entry) = entry_from_journal(&next) {
                    let mut bytes = serde_json::to_vec(&entry).unwrap_or_default();
                    bytes.push(b'\n');
                    return Some((Ok(bytes), (journal, None, line)));
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<LogFilter, ApiError> {
        let mut q = LogsQuery::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "unit" => q.unit = v,
                "priority" => q.priority = v,
                "since" => q.since = v,
                "until" => q.until = v,
                "boot" => q.boot = v,
                "grep" => q.grep = v,
                "lines" => q.lines = v,
                "follow" => q.follow = v,
                _ => unreachable!(),
            }
        }
        q.filter("2026-12-07T12:00:00Z".parse().unwrap())
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        let e = query(pairs).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        e.message
    }

    #[test]
    fn units_get_their_type() {
        let f = query(&[("unit", "apiserver,kubelet.socket,getty@tty1,foo.bar")]).unwrap();
        assert_eq!(
            f.units,
            [
                "apiserver.service",
                "kubelet.socket",
                "getty@tty1.service",
                "foo.bar.service"
            ]
        );
        assert!(refused(&[("unit", "a/b")]).starts_with("?unit=:"));
        assert!(refused(&[("unit", "-a")]).contains("not a unit name"));
        assert!(refused(&[("unit", "a,,b")]).contains("''"));
        assert!(refused(&[("unit", "a*")]).contains("?unit="));
        let many = vec!["a"; MAX_UNITS + 1].join(",");
        assert!(refused(&[("unit", &many)]).contains("at most"));
        assert!(refused(&[("unit", &"a".repeat(248))]).contains("at most 247"));
        assert!(query(&[("unit", &"a".repeat(247))]).is_ok());
    }

    #[test]
    fn priorities_by_number_or_name() {
        assert_eq!(query(&[("priority", "err")]).unwrap().priority, Some(3));
        assert_eq!(query(&[("priority", "7")]).unwrap().priority, Some(7));
        assert!(refused(&[("priority", "8")]).starts_with("?priority=:"));
        assert!(refused(&[("priority", "error")]).starts_with("?priority=:"));
    }

    #[test]
    fn times_absolute_and_relative() {
        let f = query(&[("since", "-10m"), ("until", "2026-12-07T13:00:00+01:00")]).unwrap();
        assert_eq!(f.since.unwrap().to_string(), "2026-12-07T11:50:00Z");
        assert_eq!(f.until.unwrap().to_string(), "2026-12-07T12:00:00Z");
        let args = f.journalctl_args(None);
        assert!(
            args.contains(&"--since=@1796644200.000000".into()),
            "{args:?}"
        );
        assert!(refused(&[("since", "yesterday")]).starts_with("?since=:"));
        assert!(refused(&[("until", "-5y")]).starts_with("?until=:"));
        assert!(refused(&[("until", "2026-13-01T00:00:00Z")]).starts_with("?until=:"));
        // Before 1970 is the start of the journal's time.
        let old = query(&[("since", "1900-01-01T00:00:00Z")]).unwrap();
        assert!(old
            .journalctl_args(None)
            .contains(&"--since=@0.000000".into()));
        let backwards = query(&[("since", "-1m"), ("until", "-1h")]).unwrap();
        assert!(backwards.is_empty_range());
    }

    #[test]
    fn boots_lines_grep_follow() {
        assert_eq!(
            query(&[("boot", "-1")]).unwrap().boot.as_deref(),
            Some("-1")
        );
        let id = "0123456789ABCDEF0123456789abcdef";
        assert_eq!(
            query(&[("boot", id)]).unwrap().boot.unwrap(),
            id.to_ascii_lowercase()
        );
        for b in ["1", "-0", "+1", "abc", "-01"] {
            assert!(refused(&[("boot", b)]).starts_with("?boot=:"), "{b}");
        }
        assert_eq!(query(&[]).unwrap().lines, DEFAULT_LINES);
        assert!(lines_pattern().contains(&format!("|{MAX_LINES})")));
        for n in ["0", "10001", "-1", "x", "+5"] {
            assert!(refused(&[("lines", n)]).starts_with("?lines=:"), "{n}");
        }
        assert!(refused(&[("grep", "")]).starts_with("?grep=:"));
        assert!(refused(&[("grep", &"x".repeat(MAX_GREP_LEN + 1))]).starts_with("?grep=:"));
        assert!(refused(&[("follow", "yes")]).starts_with("?follow=:"));
        assert!(query(&[("follow", "true")]).unwrap().follow);
    }

    #[test]
    fn arguments_cannot_become_options() {
        let f = query(&[
            ("grep", "--help"),
            ("unit", "a"),
            ("lines", "5"),
            ("boot", "0"),
        ])
        .unwrap();
        let args = f.journalctl_args(Some(std::path::Path::new("/j")));
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert!(args.contains(&"--grep=--help"), "{args:?}");
        assert!(args.contains(&"--directory=/j"));
        assert!(args.contains(&"--unit=a.service"));
        assert!(args.contains(&"--lines=5"));
        assert!(args.contains(&"--boot=0"));
        assert!(!args.contains(&"--follow"));
    }

    #[test]
    fn entries_from_journal_json() {
        let line = br#"{"__REALTIME_TIMESTAMP":"1796626385123456","_BOOT_ID":"0123456789abcdef0123456789abcdef","_SYSTEMD_UNIT":"apiserver.service","SYSLOG_IDENTIFIER":"apiserver","_PID":"123","PRIORITY":"6","MESSAGE":"hello"}"#;
        let e = entry_from_journal(line).unwrap();
        assert_eq!(e.timestamp, "2026-12-07T06:53:05.123456Z");
        assert_eq!(e.unit.as_deref(), Some("apiserver.service"));
        assert_eq!(e.pid, Some(123));
        assert_eq!(e.priority, Some(6));
        assert_eq!(e.message, "hello");
        let binary = br#"{"__REALTIME_TIMESTAMP":"1796626386000000","_BOOT_ID":"b","MESSAGE":[98,97,100,255,120]}"#;
        let e = entry_from_journal(binary).unwrap();
        assert_eq!(e.message, "bad\u{FFFD}x");
        assert_eq!(e.timestamp, "2026-12-07T06:53:06.000000Z");
        assert_eq!((e.unit, e.pid, e.priority), (None, None, None));
        let twice = br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":["a",[98]]}"#;
        assert_eq!(entry_from_journal(twice).unwrap().message, "a\nb");
        assert!(entry_from_journal(b"not json").is_none());
        assert!(entry_from_journal(br#"{"MESSAGE":"no time"}"#).is_none());
    }

    #[tokio::test]
    async fn long_lines_are_skipped() {
        let mut input = vec![b'x'; MAX_ENTRY_BYTES + 10];
        input.extend_from_slice(b"\nshort\nlast");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        assert!(read_line(&mut reader, &mut line).await.unwrap());
        assert!(line.is_empty());
        assert!(read_line(&mut reader, &mut line).await.unwrap());
        assert_eq!(line, b"short");
        assert!(read_line(&mut reader, &mut line).await.unwrap());
        assert_eq!(line, b"last");
        assert!(!read_line(&mut reader, &mut line).await.unwrap());
    }
}
