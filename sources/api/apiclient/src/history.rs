//! `history` and `undo`: committed settings changes, and reverting them.
//!
//! `GET /history` answers with a JSON array of records
//! `{"id", "time", "transaction", "changes": [{"key", "old", "new"}], "caller"?}`, where `old`
//! and `new` are the JSON text of the value before and after, or null when the key was unset,
//! and `caller` is who asked for the commit (as in the audit trail; absent in records from
//! before callers were recorded, shown as `-`).
//! `POST /history/undo[?id=ID]` reverts the newest (or the given) record and answers with the
//! record of the revert.

use crate::error::{self, Result};
use crate::{encode_query_value, parse_value, request};
use serde_json::Value;
use snafu::ResultExt;
use std::path::Path;

/// One committed transaction, and one key's change within it (declared once, in
/// `api_types::history`).
pub use api_types::history::{HistoryChange as Change, HistoryEntry as Record};

/// Fetches `/history` as JSON.
pub async fn fetch(socket_path: impl AsRef<Path>) -> Result<Value> {
    let body = request(socket_path, "/history", "GET", None).await?;
    serde_json::from_str(&body).context(error::ResponseJsonSnafu {
        method: "GET",
        uri: "/history",
    })
}

/// Reads the records out of a `/history` response.
pub fn records(value: Value) -> Result<Vec<Record>> {
    parse_value("the list of history records", &value)
}

/// The URI that undoes the newest record, or the record `id`.
pub fn undo_uri(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("/history/undo?id={}", encode_query_value(id)),
        None => "/history/undo".to_string(),
    }
}

/// Undoes the newest record, or the record `id`; returns the server's answer (the record of
/// the revert).
pub async fn undo(socket_path: impl AsRef<Path>, id: Option<&str>) -> Result<String> {
    request(socket_path, &undo_uri(id), "POST", None).await
}

/// Shows one side of a change: the JSON text of the value, on one line, or `(unset)`.
fn side(text: Option<&str>) -> String {
    match text {
        None => "(unset)".to_string(),
        // The server sends the stored JSON text; re-serialize it compactly so it fits one line.
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(parsed) => parsed.to_string(),
            Err(_) => text.replace('\n', "\\n"),
        },
    }
}

/// Renders records as an aligned table, one line per changed key.
pub fn format_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "No committed changes recorded.\n".to_string();
    }
    let mut rows: Vec<[String; 5]> = vec![[
        "ID".to_string(),
        "TIME".to_string(),
        "TRANSACTION".to_string(),
        "CALLER".to_string(),
        "CHANGE".to_string(),
    ]];
    for record in records {
        let id = record.id.to_string();
        let time = record.time.clone();
        let transaction = record.transaction.clone();
        let caller = record
            .caller
            .as_ref()
            .map(crate::audit::format_caller)
            .unwrap_or_else(|| "-".to_string());
        if record.changes.is_empty() {
            rows.push([id, time, transaction, caller, "(no changes)".into()]);
            continue;
        }
        for (i, change) in record.changes.iter().enumerate() {
            let text = format!(
                "{}: {} -> {}",
                change.key,
                side(change.old.as_deref()),
                side(change.new.as_deref())
            );
            if i == 0 {
                rows.push([
                    id.clone(),
                    time.clone(),
                    transaction.clone(),
                    caller.clone(),
                    text,
                ]);
            } else {
                rows.push([
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    text,
                ]);
            }
        }
    }

    let widths: Vec<usize> = (0..4)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for column in 0..4 {
            let cell = &row[column];
            out.push_str(cell);
            let pad = widths[column] - cell.chars().count() + 2;
            out.push_str(&" ".repeat(pad));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn undo_uris() {
        assert_eq!(undo_uri(None), "/history/undo");
        assert_eq!(undo_uri(Some("7")), "/history/undo?id=7");
    }

    #[test]
    fn table_shows_each_change() {
        let value = json!([
            {"id": 1, "time": "2024-05-01T10:00:00Z", "transaction": "apiclient-set-abc",
             "changes": [
                {"key": "settings.motd", "old": null, "new": "\"hi\""},
                {"key": "settings.ntp.time-servers", "old": "[\"a\"]", "new": "[\n \"b\"\n]"}
             ]},
            {"id": 2, "time": "2024-05-01T10:05:00Z", "transaction": "undo-1", "changes": [],
             "caller": {"uid": 0, "gid": 0, "pid": 42, "program": "apiclient"}}
        ]);
        let table = format_table(&records(value).unwrap());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("ID  TIME"), "{table}");
        assert!(lines[1].starts_with("1   2024-05-01T10:00:00Z  apiclient-set-abc"));
        assert!(
            lines[1].ends_with("settings.motd: (unset) -> \"hi\""),
            "{table}"
        );
        assert!(
            lines[2].ends_with("settings.ntp.time-servers: [\"a\"] -> [\"b\"]"),
            "{table}"
        );
        assert!(lines[2].starts_with("    "), "{table}");
        assert!(lines[3].ends_with("(no changes)"), "{table}");
        // The caller, or `-` for a record from before callers were recorded.
        let caller = lines[0].find("CALLER").unwrap();
        assert_eq!(lines[1].find("-  "), Some(caller), "{table}");
        assert_eq!(
            lines[3].find("uid=0 apiclient[42]"),
            Some(caller),
            "{table}"
        );
        // The CHANGE column lines up.
        let column = lines[0].find("CHANGE").unwrap();
        assert_eq!(lines[1].find("settings.motd"), Some(column));
        assert_eq!(lines[2].find("settings.ntp"), Some(column));
    }

    #[test]
    fn empty_history() {
        assert_eq!(format_table(&[]), "No committed changes recorded.\n");
    }

    #[test]
    fn unexpected_shape_is_an_error() {
        assert!(records(json!({"not": "an array"})).is_err());
        assert!(records(json!([{"time": "x"}])).is_err());
    }

    #[test]
    fn stored_text_that_is_not_json_is_shown_on_one_line() {
        let value = json!([{"id": 3, "time": "t", "transaction": "x",
                            "changes": [{"key": "k", "old": "1", "new": "not\njson"}]}]);
        let table = format_table(&records(value).unwrap());
        assert!(table.contains("k: 1 -> not\\njson"), "{table}");
        assert!(
            table.lines().nth(1).unwrap().starts_with("3   t     x  "),
            "{table}"
        );
    }

    #[test]
    fn a_server_that_sends_other_shapes_is_refused() {
        // The history document is typed: an id that is not a number is not Ballast's.
        let value = json!([{"id": "a1", "time": "t", "transaction": "x", "changes": []}]);
        assert!(records(value).is_err());
    }
}
