//! The API server's audit trail: `GET /audit` answers with a list of [`AuditEntry`], oldest
//! first, one for every request that asked to change something (settings, transactions,
//! history, update actions, reboot, the update daemon's report), whether it succeeded or not.
//! The server keeps the same objects, one per line, in its audit file. Ballast's own route;
//! Bottlerocket keeps no audit trail.

use serde::{Deserialize, Serialize};

/// Who sent a request: the peer credentials of its Unix socket connection (`SO_PEERCRED`, as
/// the kernel saw them when the client connected) and, best effort, the program's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The client's process id; absent when the kernel could not give one (a client in
    /// another PID namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The client's program name, from `/proc/PID/comm` while the request was answered;
    /// absent when it could not be read (the process had ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
}

/// A key a request changed (or asked to change, stage, drop or apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditChange {
    pub key: String,
    /// The value given, as the stored JSON text (`"\"hi\""` for the string `hi`), cut to
    /// [`MAX_VALUE_CHARS`] characters (ending in `…` when cut). Absent when the request named
    /// only keys (a commit, an apply) and always for a secret setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// True when the setting is secret (`models::secret`): its value is never recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub redacted: bool,
}

/// One request that asked to change something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// RFC 3339 time the request arrived, UTC.
    pub time: String,
    /// Absent when the connection's credentials could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    /// HTTP method, e.g. "PATCH".
    pub method: String,
    /// Path and query string as sent, except that the value of a query parameter the route
    /// does not know is replaced by [`REDACTED`], and the whole is cut to [`MAX_PATH_CHARS`].
    pub path: String,
    /// The keys concerned, sorted as the server handled them; at most [`MAX_CHANGES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AuditChange>,
    /// How many more keys the request concerned than `changes` lists.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changes_omitted: usize,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// What stands in for a value that is not recorded.
pub const REDACTED: &str = "REDACTED";

/// Longest recorded value, in characters.
pub const MAX_VALUE_CHARS: usize = 200;

/// Longest recorded path with its query, in characters.
pub const MAX_PATH_CHARS: usize = 512;

/// Most keys recorded for one request.
pub const MAX_CHANGES: usize = 100;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_left_out_and_read_back() {
        let entry = AuditEntry {
            time: "2026-12-07T06:53:05Z".into(),
            caller: Some(Caller {
                uid: 0,
                gid: 274,
                pid: Some(42),
                program: None,
            }),
            method: "PATCH".into(),
            path: "/settings?tx=t".into(),
            changes: vec![AuditChange {
                key: "settings.container-registry.credentials".into(),
                value: None,
                redacted: true,
            }],
            changes_omitted: 0,
            status: 204,
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert!(
            !text.contains("program") && !text.contains("value") && !text.contains("omitted"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<AuditEntry>(&text).unwrap(), entry);
    }
}
