//! `GET /support-bundle`: the node's state in one archive an operator can hand to someone
//! else, with every secret setting's value replaced.
//!
//! The answer is a gzip-compressed tar archive (`application/gzip`) whose one top directory,
//! `ballast-support-<hostname>-<UTC time>/` ([`api_types::support_bundle::top_dir`]), holds a
//! file per part and `MANIFEST.json` ([`api_types::support_bundle::Manifest`]) last, listing
//! each part with its size or the error that kept it out. A part that cannot be read is only
//! missing from the archive; the bundle is still made and the answer is a 200.
//!
//! | file               | read from                                                         |
//! |--------------------|-------------------------------------------------------------------|
//! | `journal.jsonl`    | the journal of the current boot, newest [`JOURNAL_LINES`] entries ([`crate::logs::read`]), one `LogEntry` a line |
//! | `status.json`      | `GET /status` ([`crate::node_status`])                             |
//! | `units.json`       | `GET /units` ([`crate::units`])                                    |
//! | `settings.json`    | the live settings, secret values replaced ([`models::secret::redact_tree`]) |
//! | `history.json`     | the settings history, secret values replaced ([`models::secret::redact_stored_value`]) |
//! | `audit.jsonl`      | the audit trail ([`crate::audit`], which never holds secret values) |
//! | `mountinfo.txt`    | `/proc/self/mountinfo`                                             |
//! | `disk-usage.txt`   | `statvfs` of every mount point with blocks, as `df` would show it  |
//! | `net-dev.txt`, `net-route.txt`, `net-if_inet6.txt` | `/proc/net/{dev,route,if_inet6}` |
//! | `resolv.conf`      | `/etc/resolv.conf`                                                 |
//! | `cmdline.txt`, `kernel-version.txt` | `/proc/cmdline`, `/proc/version`                  |
//! | `kmsg.txt`         | the kernel's ring buffer, read from `/dev/kmsg` without blocking (as `dmesg`) |
//!
//! The files of `/proc`, `/etc` and `/dev` are read under [`BundleConfig::root`]
//! (`--support-root`, `/` on a node), so a test can leave one out; mount points are
//! `statvfs`ed where mountinfo names them. Each file read is cut at [`MAX_FILE_BYTES`].
//!
//! # Encryption
//!
//! With `?recipient=age1...` the archive is encrypted to that age X25519 recipient
//! ([`parse_recipient`], [`encrypt`], with the `age` crate of the rage project) here, on the
//! node, before the answer is sent. The alternative, encrypting in apiclient, was turned down:
//! the plaintext would then cross the socket (and, in the dev variant, the bridge to the build
//! host) and sit in the client's memory; encrypting in the server means only the holder of the
//! identity ever reads the bundle, whichever way it travels. A recipient that does not parse
//! is a 400 that says why, before anything is collected.

use crate::error::ApiError;
use crate::logs::LogFilter;
use crate::server::AppState;
use api_types::support_bundle::{Manifest, ManifestPart, MANIFEST_NAME};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Journal entries of the current boot the bundle keeps, newest last.
pub const JOURNAL_LINES: u32 = 20_000;
/// Most bytes read from one file of the node; the rest is cut (and the cut is said at the end).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most kernel log records read from `/dev/kmsg`.
pub const MAX_KMSG_RECORDS: usize = 100_000;
/// What stands in for a secret value (the audit trail's word).
pub const REDACTED: &str = api_types::audit::REDACTED;

/// Longest recipient text echoed back in an error.
const MAX_ECHOED_RECIPIENT: usize = 80;

/// An age recipient a bundle can be encrypted to.
pub type Recipient = Box<dyn age::Recipient + Send>;

/// The age recipient given as `?recipient=`: a post-quantum hybrid one (`age1pq1...`, what
/// `age-keygen -pq` of age 1.3 makes) or a classic X25519 one (`age1` and 58 Bech32
/// characters, what `age-keygen` has always made). Anything else is a 400 that names the
/// problem.
pub fn parse_recipient(text: &str) -> Result<Recipient, ApiError> {
    let shown: String = text.chars().take(MAX_ECHOED_RECIPIENT).collect();
    let shown = if shown.len() < text.len() {
        format!("{shown}…")
    } else {
        shown
    };
    let lower = text.to_ascii_lowercase();
    let problem = if text.trim().is_empty() {
        "it is empty".to_string()
    } else if text.starts_with("ssh-") {
        "SSH keys are not accepted; give an age recipient".to_string()
    } else if !lower.starts_with("age1") {
        "it does not start with age1".to_string()
    } else if lower.starts_with("age1pq1") {
        match text.parse::<age::pq::Recipient>() {
            Ok(recipient) => return Ok(Box::new(recipient)),
            Err(reason) => format!(
                "{reason} (a post-quantum recipient is age1pq1 followed by 1952 characters)"
            ),
        }
    } else {
        // Classic X25519 recipients are what most operators hold (every age-keygen before
        // 1.3 makes them); the crate marks them deprecated in favour of the hybrid ones,
        // which are taken too.
        #[allow(deprecated)]
        let parsed = text.parse::<age::x25519::Recipient>();
        match parsed {
            Ok(recipient) => return Ok(Box::new(recipient)),
            Err(reason) => format!(
                "{reason} (an X25519 recipient is age1 followed by 58 characters; plugin \
                 recipients such as age1yubikey1... are not supported)"
            ),
        }
    };
    Err(ApiError::bad_request(format!(
        "{} '{shown}' is not an age recipient: {problem}; give the public key that \
         `age-keygen -y KEYFILE` prints",
        api_types::support_bundle::RECIPIENT_PARAM
    )))
}

/// The schema pattern of `?recipient=`: a hybrid or an X25519 recipient, in lower case
/// (the checksum is checked by [`parse_recipient`] only).
pub fn recipient_pattern() -> String {
    "^age1(pq1[02-9ac-hj-np-z]{1952}|[02-9ac-hj-np-z]{58})$".to_string()
}

/// The length bounds of `?recipient=` (X25519, hybrid).
pub const RECIPIENT_LEN: (usize, usize) = (62, 1959);

/// The archive encrypted to `recipient`, as a binary age file.
pub fn encrypt(archive: &[u8], recipient: &Recipient) -> std::io::Result<Vec<u8>> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&**recipient as &dyn age::Recipient))
            .map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(archive.len() + 4096);
    let mut writer = encryptor.wrap_output(&mut out)?;
    writer.write_all(archive)?;
    writer.finish()?;
    Ok(out)
}

/// Where the bundle reads the node's files.
#[derive(Debug, Clone)]
pub struct BundleConfig {
    /// The directory `/proc`, `/etc` and `/dev` are read under (`--support-root`).
    pub root: PathBuf,
}

impl Default for BundleConfig {
    fn default() -> Self {
        BundleConfig {
            root: PathBuf::from("/"),
        }
    }
}

/// One part: its file name, what it is, and its content or why there is none.
pub struct Part {
    pub name: &'static str,
    pub description: String,
    pub content: Result<Vec<u8>, String>,
}

impl Part {
    fn new(
        name: &'static str,
        description: impl Into<String>,
        content: Result<Vec<u8>, String>,
    ) -> Part {
        if let Err(e) = &content {
            tracing::warn!("support bundle: {name} left out: {e}");
        }
        Part {
            name,
            description: description.into(),
            content,
        }
    }
}

/// A bundle before it is archived.
pub struct Bundle {
    /// The top directory (and, with `.tar.gz`, the file name).
    pub top: String,
    pub created: jiff::Timestamp,
    pub hostname: String,
    pub parts: Vec<Part>,
}

impl Bundle {
    /// The manifest of the parts.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            created: self.created.to_string(),
            hostname: self.hostname.clone(),
            parts: self
                .parts
                .iter()
                .map(|p| ManifestPart {
                    name: p.name.to_string(),
                    description: p.description.clone(),
                    bytes: p.content.as_ref().ok().map(|c| c.len() as u64),
                    error: p.content.as_ref().err().cloned(),
                })
                .collect(),
        }
    }

    /// The gzip-compressed tar archive: the top directory, each part that was read, then the
    /// manifest. Entries are owned by root, mode 0600 (0700 for the directory), dated now.
    pub fn archive(&self) -> std::io::Result<Vec<u8>> {
        let mtime = u64::try_from(self.created.as_second()).unwrap_or(0);
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut dir = header(tar::EntryType::Directory, 0o700, 0, mtime);
        tar.append_data(&mut dir, format!("{}/", self.top), std::io::empty())?;
        for part in &self.parts {
            if let Ok(content) = &part.content {
                let mut h = header(tar::EntryType::Regular, 0o600, content.len() as u64, mtime);
                tar.append_data(&mut h, format!("{}/{}", self.top, part.name), &content[..])?;
            }
        }
        let manifest = json_pretty(&self.manifest()).map_err(std::io::Error::other)?;
        let mut h = header(tar::EntryType::Regular, 0o600, manifest.len() as u64, mtime);
        tar.append_data(
            &mut h,
            format!("{}/{MANIFEST_NAME}", self.top),
            &manifest[..],
        )?;
        tar.into_inner()?.finish()
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn json_pretty<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|e| format!("cannot write JSON: {e}"))?;
    text.push(b'\n');
    Ok(text)
}

fn json_lines<T: Serialize>(values: &[T]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for value in values {
        serde_json::to_writer(&mut out, value).map_err(|e| format!("cannot write JSON: {e}"))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The journal query of the bundle: the newest entries of the current boot.
pub fn journal_filter() -> LogFilter {
    LogFilter {
        units: Vec::new(),
        priority: None,
        since: None,
        until: None,
        boot: Some("0".to_string()),
        grep: None,
        lines: JOURNAL_LINES,
        follow: false,
    }
}

/// Reads every part; the ones that wait on programs (journalctl, systemctl, signpost, the
/// updater's status) at the same time.
pub async fn collect(state: &AppState) -> Bundle {
    let created = jiff::Timestamp::now();
    let root = state.bundle.root.clone();
    let journal_filter = journal_filter();
    let (journal, units, boot, update, settings, history, audit, files) = tokio::join!(
        crate::logs::read(&state.journal, &journal_filter),
        crate::units::list(&state.node.systemctl, &state.journal),
        crate::node_status::boot_state(&state.node.signpost),
        state.updates.status(),
        crate::server::live_settings(state),
        crate::server::history(state),
        crate::audit::read(
            state.audit.clone(),
            crate::audit::AuditFilter {
                since: None,
                lines: usize::MAX,
            }
        ),
        node_files(root.clone()),
    );
    let status = crate::node_status::assemble(
        units
            .as_ref()
            .map(|u| api_types::status::UnitsSummary::of(u.clone()))
            .map_err(|e| ApiError::new(e.status, e.message.clone())),
        boot,
        update,
        &state.os_release,
    );
    let message = |e: ApiError| e.message;
    let mut parts = vec![
        Part::new(
            "journal.jsonl",
            format!("the journal of the current boot, its newest {JOURNAL_LINES} entries at most, one JSON entry per line (as GET /logs)"),
            journal
                .map_err(|e| format!("cannot read the journal of the current boot: {}", e.message))
                .and_then(|e| json_lines(&e)),
        ),
        Part::new(
            "status.json",
            "the node's state (GET /status): units, A/B boot state, running version, update state",
            json_pretty(&status),
        ),
        Part::new(
            "units.json",
            "every systemd unit with its state (GET /units)",
            units.map_err(message).and_then(|u| json_pretty(&u)),
        ),
        Part::new(
            "settings.json",
            format!("the live settings (GET /settings), every secret value replaced by \"{REDACTED}\""),
            settings.map_err(message).and_then(|mut tree| {
                models::secret::redact_tree(&mut tree, "settings", REDACTED);
                json_pretty(&tree)
            }),
        ),
        Part::new(
            "history.json",
            format!("the settings history (GET /history), every secret value replaced by \"{REDACTED}\""),
            history.map_err(message).and_then(|mut entries| {
                redact_history(&mut entries);
                json_pretty(&entries)
            }),
        ),
        Part::new(
            "audit.jsonl",
            "the API's audit trail (GET /audit), one JSON entry per line",
            audit.map_err(message).and_then(|e| json_lines(&e)),
        ),
    ];
    parts.extend(files);
    Bundle {
        top: api_types::support_bundle::top_dir(
            &hostname(&root),
            &created.strftime("%Y%m%dT%H%M%SZ").to_string(),
        ),
        created,
        hostname: hostname(&root),
        parts,
    }
}

/// Replaces the secret values in the history's changes.
pub fn redact_history(entries: &mut [api_types::history::HistoryEntry]) {
    for change in entries.iter_mut().flat_map(|e| e.changes.iter_mut()) {
        for value in [&mut change.old, &mut change.new].into_iter().flatten() {
            *value = models::secret::redact_stored_value(&change.key, value, REDACTED);
        }
    }
}

/// The node's host name (`/proc/sys/kernel/hostname`), or `unknown`.
fn hostname(root: &Path) -> String {
    std::fs::read_to_string(under(root, "/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `path` (absolute, as on the node) under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The parts read from files of the node, and the disk usage of its mounts, on a blocking
/// thread.
async fn node_files(root: PathBuf) -> Vec<Part> {
    let task = tokio::task::spawn_blocking(move || read_node_files(&root));
    match task.await {
        Ok(parts) => parts,
        Err(e) => vec![Part::new(
            "node-files",
            "the files read from /proc, /etc and /dev",
            Err(format!("the task reading them failed: {e}")),
        )],
    }
}

/// The plain files: (file name in the bundle, path on the node, description).
pub const NODE_FILES: &[(&str, &str, &str)] = &[
    ("mountinfo.txt", "/proc/self/mountinfo", "the mounts"),
    (
        "net-dev.txt",
        "/proc/net/dev",
        "network interfaces and their counters",
    ),
    ("net-route.txt", "/proc/net/route", "the IPv4 routing table"),
    (
        "net-if_inet6.txt",
        "/proc/net/if_inet6",
        "the IPv6 addresses",
    ),
    (
        "resolv.conf",
        "/etc/resolv.conf",
        "the DNS resolver configuration",
    ),
    ("cmdline.txt", "/proc/cmdline", "the kernel command line"),
    (
        "kernel-version.txt",
        "/proc/version",
        "the kernel's version",
    ),
];

fn read_node_files(root: &Path) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut mountinfo = None;
    for (name, path, what) in NODE_FILES {
        let full = under(root, path);
        let content =
            read_bounded(&full).map_err(|e| format!("cannot read {}: {e}", full.display()));
        if *name == "mountinfo.txt" {
            mountinfo = content.as_ref().ok().cloned();
        }
        parts.push(Part::new(name, format!("{what} ({path})"), content));
    }
    parts.push(Part::new(
        "disk-usage.txt",
        "the size, use and inodes of every mount with blocks (statvfs of the mount points in /proc/self/mountinfo)",
        match mountinfo {
            Some(text) => Ok(disk_usage(&String::from_utf8_lossy(&text)).into_bytes()),
            None => Err("the mounts (/proc/self/mountinfo) cannot be read".to_string()),
        },
    ));
    let kmsg = under(root, "/dev/kmsg");
    parts.push(Part::new(
        "kmsg.txt",
        "the kernel's log (/dev/kmsg, as dmesg shows it): [seconds since boot] <priority> message",
        read_kmsg(&kmsg).map_err(|e| format!("cannot read {}: {e}", kmsg.display())),
    ));
    parts
}

/// A file's content, at most [`MAX_FILE_BYTES`] of it (a line at the end says it was cut).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut content = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut content)?;
    if content.len() as u64 > MAX_FILE_BYTES {
        content.truncate(MAX_FILE_BYTES as usize);
        let _ = write!(content, "\n[cut at {MAX_FILE_BYTES} bytes]\n");
    }
    Ok(content)
}

/// One mount of /proc/self/mountinfo: its mount point (unescaped), type and source.
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
    pub source: String,
}

/// The mounts of a mountinfo text; lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            Some(Mount {
                point: unescape_octal(point),
                fstype: fields.get(dash + 1)?.to_string(),
                source: unescape_octal(fields.get(dash + 2)?),
            })
        })
        .collect()
}

/// The kernel's `\ooo` escapes (space, tab, newline, backslash) undone.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).unwrap_or_default();
        if bytes[i] == b'\\' && code.len() == 3 && code.iter().all(|c| (b'0'..=b'7').contains(c)) {
            let value = code.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `df`-like table of the mounts that have blocks (pseudo file systems have none); a mount
/// point that cannot be asked gets a line saying why.
fn disk_usage(mountinfo: &str) -> String {
    let mut out = format!(
        "{:<12} {:>14} {:>14} {:>14} {:>5} {:>10} {:>10} {:<24} {}\n",
        "type", "size", "used", "avail", "use%", "inodes", "iused", "source", "mounted on"
    );
    for mount in parse_mountinfo(mountinfo) {
        match nix::sys::statvfs::statvfs(mount.point.as_str()) {
            Ok(st) => {
                let blocks = st.blocks();
                if blocks == 0 {
                    continue;
                }
                let unit = st.fragment_size();
                let size = blocks * unit;
                let used = blocks.saturating_sub(st.blocks_free()) * unit;
                let avail = st.blocks_available() * unit;
                let pct = if used + avail == 0 {
                    0
                } else {
                    (used * 100).div_ceil(used + avail)
                };
                let files = st.files();
                let iused = files.saturating_sub(st.files_free());
                out.push_str(&format!(
                    "{:<12} {size:>14} {used:>14} {avail:>14} {pct:>4}% {files:>10} {iused:>10} {:<24} {}\n",
                    mount.fstype, mount.source, mount.point
                ));
            }
            Err(e) => out.push_str(&format!(
                "{:<12} (statvfs failed: {e}) {:<24} {}\n",
                mount.fstype, mount.source, mount.point
            )),
        }
    }
    out
}

/// The kernel's log records, read from `/dev/kmsg` without blocking: each read gives one
/// record, `EAGAIN` says there are no more, `EPIPE` that the ring overwrote records since the
/// last read (reading goes on). Each record becomes `[seconds.micros] <priority> message`.
fn read_kmsg(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut lines: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut size = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..MAX_KMSG_RECORDS {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let line = kmsg_line(&String::from_utf8_lossy(&buf[..n]));
                size += line.len();
                lines.push_back(line);
                while size as u64 > MAX_FILE_BYTES {
                    match lines.pop_front() {
                        Some(old) => size -= old.len(),
                        None => break,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                lines.push_back("[records lost: the ring buffer overwrote them]\n".to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(lines.into_iter().collect::<String>().into_bytes())
}

/// A `/dev/kmsg` record (`prio,seq,micros,flags;message`, then ` KEY=value` lines) as one
/// line: `[   12.345678] <6> message`.
pub fn kmsg_line(record: &str) -> String {
    let first = record.lines().next().unwrap_or("");
    let Some((head, message)) = first.split_once(';') else {
        return format!("{first}\n");
    };
    let fields: Vec<&str> = head.split(',').collect();
    let level = fields
        .first()
        .and_then(|p| p.parse::<u32>().ok())
        .map_or(0, |p| p & 7);
    let micros = fields
        .get(2)
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "[{:>5}.{:06}] <{level}> {message}\n",
        micros / 1_000_000,
        micros % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::history::{HistoryChange, HistoryEntry};

    #[test]
    fn mountinfo_lines_become_mounts() {
        let text = "22 1 259:3 / / ro,relatime shared:1 - erofs /dev/dm-0 ro\n\
                    30 22 0:25 / /mnt/with\\040space rw master:2 - ext4 /dev/vda\\0401 rw\n\
                    garbage\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts,
            [
                Mount {
                    point: "/".into(),
                    fstype: "erofs".into(),
                    source: "/dev/dm-0".into()
                },
                Mount {
                    point: "/mnt/with space".into(),
                    fstype: "ext4".into(),
                    source: "/dev/vda 1".into()
                },
            ]
        );
        assert_eq!(unescape_octal("a\\134b\\"), "a\\b\\");
        assert_eq!(unescape_octal("\\99x"), "\\99x");
    }

    #[test]
    fn disk_usage_lists_real_mounts() {
        let table = disk_usage(
            "1 0 0:1 / / rw - rootfs rootfs rw\n2 0 0:2 / /no/such/dir rw - ext4 x rw\n",
        );
        assert!(table.starts_with("type"), "{table}");
        assert!(table.contains("/no/such/dir"), "{table}");
        assert!(table.contains("statvfs failed"), "{table}");
    }

    #[test]
    fn kmsg_records_read_like_dmesg() {
        assert_eq!(
            kmsg_line("6,339,5140900,-;apiserver: API ready\n SUBSYSTEM=x\n"),
            "[    5.140900] <6> apiserver: API ready\n"
        );
        assert_eq!(kmsg_line("30,1,1,c;x"), "[    0.000001] <6> x\n");
        assert_eq!(kmsg_line("odd"), "odd\n");
    }

    #[test]
    fn history_keeps_keys_and_loses_secret_values() {
        let mut entries = vec![HistoryEntry {
            id: 1,
            time: "t".into(),
            transaction: "tx".into(),
            changes: vec![
                HistoryChange {
                    key: "settings.host-containers.admin.user-data".into(),
                    old: Some("\"b2xk\"".into()),
                    new: Some("\"bmV3\"".into()),
                },
                HistoryChange {
                    key: "settings.motd".into(),
                    old: None,
                    new: Some("\"hi\"".into()),
                },
            ],
            caller: None,
        }];
        redact_history(&mut entries);
        let text = serde_json::to_string(&entries).unwrap();
        assert!(!text.contains("b2xk") && !text.contains("bmV3"), "{text}");
        assert_eq!(entries[0].changes[0].new.as_deref(), Some("\"REDACTED\""));
        assert_eq!(entries[0].changes[1].new.as_deref(), Some("\"hi\""));
        assert_eq!(entries[0].changes[1].old, None);
    }

    #[test]
    fn the_archive_holds_each_read_part_and_the_manifest() {
        let bundle = Bundle {
            top: "ballast-support-h-T".into(),
            created: "2026-12-07T06:53:05Z".parse().unwrap(),
            hostname: "h".into(),
            parts: vec![
                Part::new("a.txt", "a", Ok(b"hello".to_vec())),
                Part::new("b.txt", "b", Err("no b".into())),
            ],
        };
        let gz = bundle.archive().unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut names = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            if name.ends_with(MANIFEST_NAME) {
                let manifest: Manifest = serde_json::from_str(&text).unwrap();
                assert_eq!(manifest.parts[0].bytes, Some(5));
                assert_eq!(manifest.parts[1].error.as_deref(), Some("no b"));
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "ballast-support-h-T/",
                "ballast-support-h-T/a.txt",
                "ballast-support-h-T/MANIFEST.json"
            ]
        );
    }
}
