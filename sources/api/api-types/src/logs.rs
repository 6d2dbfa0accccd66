//! The node's journal: `GET /logs` answers with a list of [`LogEntry`], oldest first, or with
//! `?follow=true` a stream of them, one JSON object per line (`application/x-ndjson`).
//! Ballast's own route; Bottlerocket has no equivalent (its logs are read from the admin
//! container, or collected with `logdog`).

use serde::{Deserialize, Serialize};

/// The media type of a followed journal: one [`LogEntry`] per line.
pub const NDJSON: &str = "application/x-ndjson";

/// One journal entry, with the fields an operator reads; the journal's other fields are left
/// out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntry {
    /// When the entry was written, RFC 3339 in UTC with microseconds
    /// (e.g. "2026-12-07T06:53:05.123456Z"), from `__REALTIME_TIMESTAMP`.
    pub timestamp: String,
    /// The boot the entry belongs to: 32 lowercase hex digits, from `_BOOT_ID`.
    pub boot_id: String,
    /// The systemd unit that wrote it (e.g. "apiserver.service"), from `_SYSTEMD_UNIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The program's name as it logged it (e.g. "apiserver", "kernel"), from
    /// `SYSLOG_IDENTIFIER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// The process that wrote it, from `_PID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Syslog priority, 0 (emerg) to 7 (debug), from `PRIORITY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 7))]
    pub priority: Option<u8>,
    /// The message. Bytes that are not UTF-8 are replaced with U+FFFD.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_left_out_and_read_back() {
        let entry = LogEntry {
            timestamp: "2026-12-07T06:53:05.123456Z".into(),
            boot_id: "0123456789abcdef0123456789abcdef".into(),
            unit: None,
            identifier: Some("kernel".into()),
            pid: None,
            priority: Some(3),
            message: "hi".into(),
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert!(!text.contains("unit") && !text.contains("pid"), "{text}");
        assert_eq!(serde_json::from_str::<LogEntry>(&text).unwrap(), entry);
    }
}
