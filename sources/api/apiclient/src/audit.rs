//! `audit`: the API server's audit trail, from `GET /audit`.
//!
//! Each entry prints as one line, oldest first ([`format_entry`]): the time, who asked
//! (`uid=0 apiclient[123]`), the method and path, the status, and the keys concerned (secret
//! settings are marked `(redacted)`; the server never records their values). With `--json`,
//! one JSON object per entry and line, as the server keeps them.

use crate::error::{self, Result};
use crate::output::{print_document, Layout};
use crate::{encode_query_value, parse_document, request};
use snafu::ResultExt;
use std::io::Write;
use std::path::Path;

/// One audit entry (declared once, in `api_types::audit`).
pub use api_types::audit::{AuditEntry, Caller};

/// What to ask the server for, and how to print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditOptions {
    pub since: Option<String>,
    pub lines: Option<u32>,
    /// One JSON object per entry instead of text.
    pub json: bool,
}

impl AuditOptions {
    /// The request URI: `/audit` with a query parameter for each option given.
    pub fn uri(&self) -> String {
        let mut query = Vec::new();
        if let Some(since) = &self.since {
            query.push(format!("since={}", encode_query_value(since)));
        }
        if let Some(lines) = self.lines {
            query.push(format!("lines={lines}"));
        }
        if query.is_empty() {
            "/audit".to_string()
        } else {
            format!("/audit?{}", query.join("&"))
        }
    }
}

/// A caller as a short word: `uid=0 apiclient[123]` (program `?` when unknown, no `[pid]`
/// when the kernel gave none). Also used by `apiclient history`.
pub fn format_caller(c: &Caller) -> String {
    let program = c.program.as_deref().unwrap_or("?");
    match c.pid {
        Some(pid) => format!("uid={} {program}[{pid}]", c.uid),
        None => format!("uid={} {program}", c.uid),
    }
}

/// An entry as one line of text:
/// `2026-12-07T06:53:05Z uid=0 apiclient[123] PATCH /settings?tx=t 204 settings.motd`.
pub fn format_entry(entry: &AuditEntry) -> String {
    let who = entry
        .caller
        .as_ref()
        .map(format_caller)
        .unwrap_or_else(|| "uid=?".to_string());
    let mut line = format!(
        "{} {who} {} {} {}",
        entry.time, entry.method, entry.path, entry.status
    );
    let keys: Vec<String> = entry
        .changes
        .iter()
        .map(|c| {
            if c.redacted {
                format!("{} (redacted)", c.key)
            } else {
                c.key.clone()
            }
        })
        .collect();
    if !keys.is_empty() {
        line.push(' ');
        line.push_str(&keys.join(", "));
    }
    if entry.changes_omitted > 0 {
        line.push_str(&format!(" and {} more", entry.changes_omitted));
    }
    line
}

/// Prints the entries the options select to `out`, oldest first.
pub async fn audit<W: Write>(
    socket_path: impl AsRef<Path>,
    options: &AuditOptions,
    out: &mut W,
) -> Result<()> {
    let body = request(socket_path, &options.uri(), "GET", None).await?;
    let entries: Vec<AuditEntry> = parse_document("the audit trail", body.as_bytes())?;
    for entry in &entries {
        print_document(out, entry, options.json, Layout::Entry, format_entry)?;
    }
    out.flush().context(error::WriteOutputSnafu)
}

#[cfg(test)]
mod test {
    use super::*;
    use api_types::audit::AuditChange;

    #[test]
    fn uri_has_each_option_given() {
        assert_eq!(AuditOptions::default().uri(), "/audit");
        let options = AuditOptions {
            since: Some("2026-12-07T06:53:05+01:00".into()),
            lines: Some(5),
            json: false,
        };
        assert_eq!(
            options.uri(),
            "/audit?since=2026-12-07T06%3A53%3A05%2B01%3A00&lines=5"
        );
    }

    #[test]
    fn an_entry_is_one_readable_line() {
        let entry = AuditEntry {
            time: "2026-12-07T06:53:05Z".into(),
            caller: Some(Caller {
                uid: 0,
                gid: 0,
                pid: Some(123),
                program: Some("apiclient".into()),
            }),
            method: "PATCH".into(),
            path: "/settings?tx=t".into(),
            changes: vec![
                AuditChange {
                    key: "settings.motd".into(),
                    value: Some("\"hi\"".into()),
                    redacted: false,
                },
                AuditChange {
                    key: "settings.container-registry.credentials".into(),
                    value: None,
                    redacted: true,
                },
            ],
            changes_omitted: 2,
            status: 204,
        };
        assert_eq!(
            format_entry(&entry),
            "2026-12-07T06:53:05Z uid=0 apiclient[123] PATCH /settings?tx=t 204 settings.motd, \
             settings.container-registry.credentials (redacted) and 2 more"
        );
    }
}
