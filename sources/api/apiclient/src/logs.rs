//! `logs`: the node's journal, from `GET /logs`.
//!
//! Without `--follow` the server answers with a JSON array of entries; with it, with one entry
//! per line as they are written (`application/x-ndjson`), read here piece by piece
//! ([`crate::stream_request`]) and printed as each line completes, until the server or the
//! user ends it. Each entry prints as `TIMESTAMP NAME[PID]: MESSAGE` ([`format_entry`]), or with
//! `--json` as one JSON object per line.

use crate::error::{self, Result};
use crate::output::{print_document, Layout};
use crate::{encode_query_value, parse_document, request, stream_request};
use snafu::ResultExt;
use std::io::Write;
use std::path::Path;

/// One journal entry (declared once, in `api_types::logs`).
pub use api_types::logs::LogEntry;

/// What to ask the server for, and how to print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsOptions {
    pub units: Vec<String>,
    pub priority: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub boot: Option<String>,
    pub grep: Option<String>,
    pub lines: Option<u32>,
    pub follow: bool,
    /// One JSON object per entry instead of text.
    pub json: bool,
}

impl LogsOptions {
    /// The request URI: `/logs` with a query parameter for each option given.
    pub fn uri(&self) -> String {
        let mut query = Vec::new();
        if !self.units.is_empty() {
            query.push(("unit", self.units.join(",")));
        }
        let optional = [
            ("priority", &self.priority),
            ("since", &self.since),
            ("until", &self.until),
            ("boot", &self.boot),
            ("grep", &self.grep),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        if let Some(lines) = self.lines {
            query.push(("lines", lines.to_string()));
        }
        if self.follow {
            query.push(("follow", "true".to_string()));
        }
        if query.is_empty() {
            return "/logs".to_string();
        }
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode_query_value(value)))
            .collect();
        format!("/logs?{}", query.join("&"))
    }
}

/// An entry as one line of text, like journalctl's short format with a full timestamp:
/// `2026-12-07T06:53:05.123456Z apiserver[123]: message`. The name is the identifier, else the
/// unit, else `-`; the PID is shown when known.
pub fn format_entry(entry: &LogEntry) -> String {
    let name = entry
        .identifier
        .as_deref()
        .or(entry.unit.as_deref())
        .unwrap_or("-");
    let pid = entry.pid.map(|p| format!("[{p}]")).unwrap_or_default();
    format!("{} {name}{pid}: {}", entry.timestamp, entry.message)
}

fn print_entry<W: Write>(out: &mut W, entry: &LogEntry, json: bool) -> Result<()> {
    print_document(out, entry, json, Layout::Entry, format_entry)
}

fn parse_entry(line: &[u8]) -> Result<LogEntry> {
    parse_document("a journal entry", line)
}

/// Prints the entries the options select to `out`; with `follow`, goes on until the server
/// ends the answer (or printing fails).
pub async fn logs<W: Write>(
    socket_path: impl AsRef<Path>,
    options: &LogsOptions,
    out: &mut W,
) -> Result<()> {
    let uri = options.uri();
    if !options.follow {
        let body = request(socket_path, &uri, "GET", None).await?;
        let entries: Vec<LogEntry> = parse_document("a list of journal entries", body.as_bytes())?;
        for entry in &entries {
            print_entry(out, entry, options.json)?;
        }
        return out.flush().context(error::WriteOutputSnafu);
    }
    let mut pending = Vec::new();
    stream_request(socket_path, &uri, |data| {
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..end];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            print_entry(out, &parse_entry(line)?, options.json)?;
        }
        out.flush().context(error::WriteOutputSnafu)
    })
    .await
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn uri_has_each_option_given() {
        assert_eq!(LogsOptions::default().uri(), "/logs");
        let options = LogsOptions {
            units: vec!["apiserver".into(), "kubelet.service".into()],
            priority: Some("err".into()),
            since: Some("2026-12-07T06:53:05+01:00".into()),
            grep: Some("a b&c".into()),
            lines: Some(5),
            follow: true,
            ..Default::default()
        };
        assert_eq!(
            options.uri(),
            "/logs?unit=apiserver%2Ckubelet.service&priority=err&since=2026-12-07T06%3A53%3A05%2B01%3A00&grep=a%20b%26c&lines=5&follow=true"
        );
    }

    #[test]
    fn entries_print_like_journalctl() {
        let mut entry = LogEntry {
            timestamp: "2026-12-07T06:53:05.123456Z".into(),
            boot_id: "0123456789abcdef0123456789abcdef".into(),
            unit: Some("apiserver.service".into()),
            identifier: Some("apiserver".into()),
            pid: Some(123),
            priority: Some(6),
            message: "ready".into(),
        };
        assert_eq!(
            format_entry(&entry),
            "2026-12-07T06:53:05.123456Z apiserver[123]: ready"
        );
        entry.identifier = None;
        entry.pid = None;
        assert_eq!(
            format_entry(&entry),
            "2026-12-07T06:53:05.123456Z apiserver.service: ready"
        );
        entry.unit = None;
        assert_eq!(format_entry(&entry), "2026-12-07T06:53:05.123456Z -: ready");
    }
}
