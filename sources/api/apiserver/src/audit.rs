//! The audit trail: who asked for which change, when, and what the server answered.
//!
//! Every request that asks to change something ([`is_audited`]: any method but GET, HEAD and
//! OPTIONS, except the read-only `POST /tx/dry-run`) becomes one [`AuditEntry`] once its answer
//! is ready, whatever the answer (a 400 is recorded with its status). The entry names the
//! caller from the connection's peer credentials ([`Peer`], read once per connection by
//! [`crate::listen`]) and the program from `/proc/PID/comm`; the method and the path with its
//! query ([`recorded_path`]: values of query parameters the server does not know are replaced,
//! so nothing a client slips into a query string is kept); the keys the request concerned,
//! which each handler hands over as a response extension ([`Changes`]), with the values it
//! was given except for secret settings ([`models::secret::is_secret`]); and the status.
//!
//! # The file
//!
//! One JSON object per line, appended with a single `write` on an `O_APPEND` descriptor while
//! the answer is still held back, so an answered request is in the file (in the page cache)
//! even if the server crashes right after. A separate thread then flushes the file to disk
//! (`fdatasync`, at most one per [`FLUSH_DELAY`]), off the request path: a power cut can lose
//! the entries of the last moments, never an earlier line. Lines are never rewritten in place. A torn last line (a crash or a
//! full disk in the middle of a write) is ended with a newline before the next entry, and is
//! skipped, with a warning, when the file is read.
//!
//! The file is bounded: before an entry would take it past [`AuditConfig::max_entries`]
//! entries or [`MAX_FILE_BYTES`] bytes, the newest three quarters are written to a new file
//! that replaces the old one by rename (atomic, flushed first), so a busy node never fills its
//! disk and a crash during the trim leaves either the old file or the new one.
//!
//! Each entry is also logged (at info, target `audit`) as one line that starts with
//! `MESSAGE_ID=` [`constants::AUDIT_MESSAGE_ID`], so the journal has it too.

use crate::error::ApiError;
use api_types::audit::{
    AuditChange, AuditEntry, Caller, MAX_CHANGES, MAX_PATH_CHARS, MAX_VALUE_CHARS, REDACTED,
};
use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Entries kept by default: the file is trimmed to the newest three quarters before it would
/// hold more.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Largest the file may grow, whatever the number of entries (an entry is at most about
/// 50 KiB: 100 keys of 255 bytes with values of 200 characters).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The query parameters recorded with their values; any other parameter's value is replaced
/// by [`REDACTED`]. None of these carries a setting's value (a support bundle's `recipient`
/// is a public key, recorded so the trail says whom a bundle was encrypted to).
pub const RECORDED_PARAMS: &[&str] = &["tx", "keys", "id", "timeout", "recipient"];

/// Where the audit trail is kept and how much of it.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub max_entries: usize,
}

impl AuditConfig {
    /// The file beside the datastore versions: `constants::AUDIT_LOG_NAME` in the directory
    /// above the `--datastore-path` link (for the default path, `constants::AUDIT_LOG`).
    pub fn beside_datastore(datastore_path: &Path) -> PathBuf {
        let base = datastore_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        base.join(constants::AUDIT_LOG_NAME)
    }
}

/// The peer credentials of a connection (`SO_PEERCRED`), put on each of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
}

impl Peer {
    /// The credentials of a connected Unix stream; `None` when the kernel does not give them.
    pub fn of(stream: &tokio::net::UnixStream) -> Option<Peer> {
        let cred = stream.peer_cred().ok()?;
        Some(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred
                .pid()
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
        })
    }

    /// The caller as recorded: the credentials and, when it can still be read, the program.
    pub fn caller(&self) -> Caller {
        Caller {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            program: self.pid.and_then(program_name),
        }
    }
}

/// The name of process `pid`: its `comm`, else the file name of its `exe`.
fn program_name(pid: u32) -> Option<String> {
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        let comm = comm.trim_end_matches('\n');
        if !comm.is_empty() {
            return Some(comm.to_string());
        }
    }
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// The keys a request concerned, handed from its handler to the audit layer as a response
/// extension.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub changes: Vec<AuditChange>,
    pub omitted: usize,
}

impl Changes {
    /// Keys with the values given (stored JSON text); secret values are left out.
    pub fn with_values<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let mut out = Changes::default();
        for (key, value) in pairs {
            if out.changes.len() == MAX_CHANGES {
                out.omitted += 1;
                continue;
            }
            let redacted = models::secret::is_secret(key);
            out.changes.push(AuditChange {
                key: key.to_string(),
                value: value.filter(|_| !redacted).map(cut_value),
                redacted,
            });
        }
        out
    }

    /// Keys only (a commit, a drop, an apply).
    pub fn keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Changes::with_values(keys.into_iter().map(|k| (k, None)))
    }
}

fn cut_value(value: &str) -> String {
    cut(value, MAX_VALUE_CHARS)
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Whether a request is recorded: every method that may change something (`POST /tx/dry-run`
/// only reads), and `GET /support-bundle`, which changes nothing but hands out the node's
/// logs and state.
pub fn is_audited(method: &Method, path: &str) -> bool {
    (method == Method::GET
        && (path == api_types::support_bundle::PATH || path == api_types::exec::PATH))
        || !(method == Method::GET
            || method == Method::HEAD
            || method == Method::OPTIONS
            || (method == Method::POST && path == "/tx/dry-run"))
}

/// The path and query as recorded: parameters in [`RECORDED_PARAMS`] keep their values, any
/// other's value is [`REDACTED`]; cut to [`MAX_PATH_CHARS`].
pub fn recorded_path(uri: &Uri) -> String {
    let mut path = uri.path().to_string();
    if let Some(query) = uri.query() {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if !RECORDED_PARAMS.contains(&name) => {
                    format!("{name}={REDACTED}")
                }
                _ => param.to_string(),
            })
            .collect();
        path.push('?');
        path.push_str(&params.join("&"));
    }
    cut(&path, MAX_PATH_CHARS)
}

/// The audit layer: records each audited request once its answer is ready, before the answer
/// leaves.
pub async fn record(State(log): State<Arc<AuditLog>>, req: Request, next: Next) -> Response {
    if !is_audited(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let time = jiff::Timestamp::now();
    let method = req.method().to_string();
    let path = recorded_path(req.uri());
    let peer = req.extensions().get::<Peer>().copied();
    let mut response = next.run(req).await;
    let changes = response
        .extensions_mut()
        .remove::<Changes>()
        .unwrap_or_default();
    let entry = AuditEntry {
        time: time.to_string(),
        caller: peer.map(|p| p.caller()),
        method,
        path,
        changes: changes.changes,
        changes_omitted: changes.omitted,
        status: response.status().as_u16(),
    };
    log.append(&entry);
    response
}

/// One journal line for an entry: `MESSAGE_ID=<id> uid=0 pid=12 program=apiclient PATCH
/// /settings?tx=t status=204 keys=settings.motd`.
pub fn journal_line(entry: &AuditEntry) -> String {
    let who = match &entry.caller {
        Some(c) => format!(
            "uid={} gid={} pid={} program={}",
            c.uid,
            c.gid,
            c.pid.map_or("-".to_string(), |p| p.to_string()),
            c.program.as_deref().unwrap_or("-")
        ),
        None => "uid=- gid=- pid=- program=-".to_string(),
    };
    let keys: Vec<&str> = entry.changes.iter().map(|c| c.key.as_str()).collect();
    let mut line = format!(
        "MESSAGE_ID={} {who} {} {} status={}",
        constants::AUDIT_MESSAGE_ID,
        entry.method,
        entry.path,
        entry.status
    );
    if !keys.is_empty() {
        line.push_str(&format!(" keys={}", keys.join(",")));
    }
    if entry.changes_omitted > 0 {
        line.push_str(&format!(" (+{} keys)", entry.changes_omitted));
    }
    line
}

// ---- the file ----

/// The audit file, shared by all requests.
pub struct AuditLog {
    path: PathBuf,
    max_entries: usize,
    writer: Mutex<Writer>,
    /// Wakes the flushing thread; holds at most one wake-up, which covers every write before it
    /// is taken.
    flush: SyncSender<()>,
}

struct Writer {
    file: Arc<File>,
    entries: usize,
    bytes: u64,
    /// The file does not end in a newline (a torn line): the next write starts with one.
    torn: bool,
}

/// Trims happen before the file would exceed its bounds; they keep this share of them.
fn keep_after_trim(max: usize) -> usize {
    max - (max / 4).max(1)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl AuditLog {
    /// Opens (creating, mode 0600) the file and starts the thread that flushes it.
    pub fn open(config: &AuditConfig) -> io::Result<Arc<AuditLog>> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&config.path)?;
        let text = std::fs::read(&config.path)?;
        let torn = text.last().is_some_and(|b| *b != b'\n');
        if torn {
            tracing::warn!(
                "the audit file {} ends in a torn line (a crash during a write); it is kept, and skipped when read",
                config.path.display()
            );
        }
        let writer = Writer {
            file: Arc::new(file),
            entries: text.iter().filter(|b| **b == b'\n').count() + usize::from(torn),
            bytes: text.len() as u64,
            torn,
        };
        let (flush, wake) = sync_channel(1);
        let log = Arc::new(AuditLog {
            path: config.path.clone(),
            max_entries: config.max_entries.max(1),
            writer: Mutex::new(writer),
            flush,
        });
        let weak = Arc::downgrade(&log);
        std::thread::Builder::new()
            .name("audit-flush".into())
            .spawn(move || flush_loop(weak, wake))?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an entry: in the journal, and in the file. A failure to write is logged; the
    /// request it records has already been answered by then, so it is not failed.
    pub fn append(&self, entry: &AuditEntry) {
        tracing::info!(target: "audit", "{}", journal_line(entry));
        let line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!("cannot serialize an audit entry: {e}");
                return;
            }
        };
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.append_locked(&mut writer, &line) {
            tracing::error!(
                "cannot write to the audit file {}: {e}; the entry is only in the journal",
                self.path.display()
            );
        }
        drop(writer);
        let _ = self.flush.try_send(());
    }

    fn append_locked(&self, writer: &mut Writer, line: &[u8]) -> io::Result<()> {
        let size = line.len() as u64 + 2;
        if writer.entries + 1 > self.max_entries || writer.bytes + size > MAX_FILE_BYTES {
            self.trim(writer)?;
        }
        let mut buf = Vec::with_capacity(line.len() + 2);
        if writer.torn {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // One write on an O_APPEND descriptor: the line lands whole after the previous one.
        match (&*writer.file).write_all(&buf) {
            Ok(()) => {
                writer.torn = false;
                writer.entries += 1;
                writer.bytes += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Part of it may be there: end it before the next line.
                writer.torn = true;
                writer.entries += 1;
                Err(e)
            }
        }
    }

    /// Replaces the file with one holding its newest entries, within three quarters of both
    /// bounds. Torn lines are dropped.
    fn trim(&self, writer: &mut Writer) -> io::Result<()> {
        let text = std::fs::read(&self.path)?;
        let keep_entries = keep_after_trim(self.max_entries);
        let keep_bytes = MAX_FILE_BYTES - MAX_FILE_BYTES / 4;
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut bytes = 0u64;
        for line in text.split(|b| *b == b'\n').rev() {
            if kept.len() == keep_entries {
                break;
            }
            if serde_json::from_slice::<AuditEntry>(line).is_err() {
                continue;
            }
            bytes += line.len() as u64 + 1;
            if bytes > keep_bytes {
                break;
            }
            kept.push(line);
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.path.with_file_name(format!(".{name}.trim"));
        let mut out = Vec::with_capacity(bytes as usize);
        for line in kept.iter().rev() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        {
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&out)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        *writer = Writer {
            file: Arc::new(open_append(&self.path)?),
            entries: kept.len(),
            bytes: out.len() as u64,
            torn: false,
        };
        tracing::info!(
            "trimmed the audit file {} to its newest {} entries",
            self.path.display(),
            kept.len()
        );
        Ok(())
    }

    /// The entries the filter selects, oldest first. Lines that do not parse (a torn last
    /// line) are skipped with a warning.
    pub fn read(&self, filter: &AuditFilter) -> io::Result<Vec<AuditEntry>> {
        let text = {
            let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            std::fs::read(&self.path)?
        };
        let mut entries = Vec::new();
        for (number, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let entry: AuditEntry = match serde_json::from_slice(line) {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(
                        "skipping line {} of the audit file {}: not an entry ({e}); a write was cut short",
                        number + 1,
                        self.path.display()
                    );
                    continue;
                }
            };
            let recent = filter.since.is_none_or(|since| {
                entry
                    .time
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t >= since)
            });
            if recent {
                entries.push(entry);
            }
        }
        let skip = entries.len().saturating_sub(filter.lines);
        entries.drain(..skip);
        Ok(entries)
    }
}

/// How long the flushing thread waits after a write before it flushes, so that a burst of
/// requests costs one `fdatasync` (at most about 20 a second) rather than one each, and does
/// not compete with the datastore's own flushes request by request.
pub const FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Flushes the file to disk after entries were written, until the log is gone.
fn flush_loop(log: std::sync::Weak<AuditLog>, wake: Receiver<()>) {
    while wake.recv().is_ok() {
        std::thread::sleep(FLUSH_DELAY);
        // Writes made while this thread slept are covered by the flush below; a write made
        // after this leaves its own wake-up for the next round.
        let _ = wake.try_recv();
        let Some(log) = log.upgrade() else { return };
        let file = log
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .clone();
        if let Err(e) = file.sync_data() {
            tracing::warn!("cannot flush the audit file {}: {e}", log.path.display());
        }
    }
}

// ---- GET /audit ----

/// The query of `GET /audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries at or after this time: RFC 3339, or relative to now (-10m).
    pub since: Option<String>,
    /// How many of the newest matching entries (1 to 10000, default 100).
    pub lines: Option<String>,
}

/// A checked [`AuditQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub since: Option<jiff::Timestamp>,
    pub lines: usize,
}

impl AuditQuery {
    pub fn filter(self, now: jiff::Timestamp) -> Result<AuditFilter, ApiError> {
        Ok(AuditFilter {
            since: self
                .since
                .as_deref()
                .map(|t| crate::logs::time("since", t, now))
                .transpose()?,
            lines: match self.lines.as_deref() {
                Some(n) => crate::logs::lines(n)? as usize,
                None => crate::logs::DEFAULT_LINES as usize,
            },
        })
    }
}

/// Reads the entries `GET /audit` answers with, off the async threads.
pub async fn read(log: Arc<AuditLog>, filter: AuditFilter) -> Result<Vec<AuditEntry>, ApiError> {
    tokio::task::spawn_blocking(move || {
        log.read(&filter).map_err(|e| {
            tracing::error!("cannot read the audit file {}: {e}", log.path().display());
            ApiError::internal(format!("cannot read the audit file: {e}"))
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("request task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            time: format!("2026-12-07T06:53:{:02}Z", n % 60),
            caller: None,
            method: "PATCH".into(),
            path: format!("/settings?tx=t{n}"),
            changes: Vec::new(),
            changes_omitted: 0,
            status: 204,
        }
    }

    fn all(log: &AuditLog) -> Vec<AuditEntry> {
        log.read(&AuditFilter {
            since: None,
            lines: usize::MAX,
        })
        .unwrap()
    }

    #[test]
    fn only_changes_are_audited() {
        assert!(is_audited(&Method::PATCH, "/settings"));
        assert!(is_audited(&Method::POST, "/tx/commit"));
        assert!(is_audited(&Method::DELETE, "/tx"));
        assert!(is_audited(&Method::PUT, "/updates/daemon"));
        assert!(!is_audited(&Method::GET, "/settings"));
        assert!(!is_audited(&Method::POST, "/tx/dry-run"));
        assert!(is_audited(&Method::GET, "/support-bundle"));
        assert!(is_audited(&Method::GET, "/exec"));
        assert!(!is_audited(&Method::GET, "/support-bundle/x"));
    }

    #[test]
    fn unknown_query_values_are_not_recorded() {
        let uri: Uri = "/settings?tx=a&password=hunter2&keys=motd&flag"
            .parse()
            .unwrap();
        assert_eq!(
            recorded_path(&uri),
            format!("/settings?tx=a&password={REDACTED}&keys=motd&flag")
        );
        let long: Uri = format!("/tx/apply?keys={}", "a".repeat(1000))
            .parse()
            .unwrap();
        assert_eq!(recorded_path(&long).chars().count(), MAX_PATH_CHARS + 1);
    }

    #[test]
    fn secret_values_are_left_out_and_long_ones_cut() {
        let long = "x".repeat(500);
        let changes = Changes::with_values([
            ("settings.motd", Some("\"hi\"")),
            (
                "settings.host-containers.admin.user-data",
                Some("\"c2VjcmV0\""),
            ),
            ("settings.ntp.time-servers", Some(long.as_str())),
        ]);
        assert_eq!(changes.changes[0].value.as_deref(), Some("\"hi\""));
        assert!(changes.changes[1].redacted && changes.changes[1].value.is_none());
        assert_eq!(
            changes.changes[2].value.as_ref().unwrap().chars().count(),
            MAX_VALUE_CHARS + 1
        );
        let many = Changes::keys((0..MAX_CHANGES + 5).map(|_| "settings.motd"));
        assert_eq!((many.changes.len(), many.omitted), (MAX_CHANGES, 5));
    }

    #[test]
    fn the_journal_line_starts_with_the_message_id() {
        let mut e = entry(1);
        e.caller = Some(Caller {
            uid: 0,
            gid: 274,
            pid: Some(9),
            program: Some("apiclient".into()),
        });
        e.changes = Changes::keys(["settings.motd"]).changes;
        assert_eq!(
            journal_line(&e),
            format!(
                "MESSAGE_ID={} uid=0 gid=274 pid=9 program=apiclient PATCH /settings?tx=t1 status=204 keys=settings.motd",
                constants::AUDIT_MESSAGE_ID
            )
        );
    }

    #[test]
    fn a_torn_line_is_ended_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut text = serde_json::to_vec(&entry(1)).unwrap();
        text.push(b'\n');
        text.extend_from_slice(br#"{"time":"2026-12-07T06:5"#);
        std::fs::write(&path, &text).unwrap();
        let log = AuditLog::open(&AuditConfig {
            path: path.clone(),
            max_entries: 100,
        })
        .unwrap();
        assert_eq!(all(&log), vec![entry(1)]);
        log.append(&entry(2));
        assert_eq!(all(&log), vec![entry(1), entry(2)]);
        // The torn piece stays on a line of its own.
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 3, "{lines}");
    }

    #[test]
    fn the_bound_holds_and_the_newest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            path: path.clone(),
            max_entries: 8,
        };
        let log = AuditLog::open(&config).unwrap();
        for n in 0..50 {
            log.append(&entry(n));
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            assert!(lines <= 8, "{lines} entries after {n}");
        }
        let kept = all(&log);
        assert_eq!(kept.last(), Some(&entry(49)));
        // A reopened log counts what is there and keeps the bound.
        drop(log);
        let log = AuditLog::open(&config).unwrap();
        log.append(&entry(50));
        assert!(all(&log).len() <= 8);
        assert_eq!(
            log.read(&AuditFilter {
                since: None,
                lines: 2
            })
            .unwrap(),
            vec![entry(49), entry(50)]
        );
    }
}
