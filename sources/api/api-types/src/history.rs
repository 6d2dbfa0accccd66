//! The settings history: `GET /history` answers with a list of [`HistoryEntry`], oldest first,
//! and `POST /history/undo` with the entry of the revert. Ballast's own route; Bottlerocket
//! keeps no history.

use crate::audit::Caller;
use serde::{Deserialize, Serialize};

/// One key changed by a commit: old and new values as the stored JSON text (`"\"hi\""` for the
/// string `hi`), null when the key was unset before or after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryChange {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A commit in the settings history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    /// Sequence number, increasing with every commit.
    pub id: u64,
    /// RFC 3339 time of the commit, UTC.
    pub time: String,
    /// The transaction committed ("undo-N" for an undo).
    pub transaction: String,
    /// Only the keys whose value changed, sorted by key.
    pub changes: Vec<HistoryChange>,
    /// Who asked for the commit: the same caller the audit trail records (peer credentials
    /// of the request's connection); for a change the server made by itself (a try-mode
    /// revert), the server with the reason as its program. Absent for commits recorded before
    /// callers were, and for commits made without the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}
