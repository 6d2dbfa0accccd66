//! `history` and `undo`: committed settings changes, and reverting them.
//!
//! `GET /history` answers with a JSON array of records
//! `{"id", "time", "transaction", "changes": [{"key", "old", "new"}]}`, where `old` and `new`
//! are the JSON text of the value before and after, or null when the key was unset.
//! `POST /history/undo[?id=ID]` reverts the newest (or the given) record and answers with the
//! record of the revert.

use crate::error::{self, Result};
use crate::{encode_query_value, request};
use serde::Deserialize;
use serde_json::Value;
use snafu::ResultExt;
use std::path::Path;

/// One committed transaction.  `id` and `time` are kept as the server sent them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub id: Value,
    #[serde(default)]
    pub time: Value,
    #[serde(default)]
    pub transaction: Option<String>,
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One key's change within a record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    pub key: String,
    #[serde(default)]
    pub old: Value,
    #[serde(default)]
    pub new: Value,
}

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
    serde_json::from_value(value).context(error::HistoryShapeSnafu)
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

/// Shows a JSON scalar without quotes around strings (`3`, `2024-01-01T00:00:00Z`).
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Shows one side of a change: the JSON text of the value, on one line, or `(unset)`.
fn side(value: &Value) -> String {
    match value {
        Value::Null => "(unset)".to_string(),
        // Normally the server sends JSON text; re-serialize it compactly so it fits one line.
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(parsed) => parsed.to_string(),
            Err(_) => text.replace('\n', "\\n"),
        },
        // Be lenient with servers that send the value itself.
        other => other.to_string(),
    }
}

/// Renders records as an aligned table, one line per changed key.
pub fn format_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "No committed changes recorded.\n".to_string();
    }
    let mut rows: Vec<[String; 4]> = vec![[
        "ID".to_string(),
        "TIME".to_string(),
        "TRANSACTION".to_string(),
        "CHANGE".to_string(),
    ]];
    for record in records {
        let id = plain(&record.id);
        let time = plain(&record.time);
        let transaction = record.transaction.clone().unwrap_or_else(|| "-".into());
        if record.changes.is_empty() {
            rows.push([id, time, transaction, "(no changes)".into()]);
            continue;
        }
        for (i, change) in record.changes.iter().enumerate() {
            let text = format!(
                "{}: {} -> {}",
                change.key,
                side(&change.old),
                side(&change.new)
            );
            if i == 0 {
                rows.push([id.clone(), time.clone(), transaction.clone(), text]);
            } else {
                rows.push([String::new(), String::new(), String::new(), text]);
            }
        }
    }

    let widths: Vec<usize> = (0..3)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for column in 0..3 {
            let cell = &row[column];
            out.push_str(cell);
            let pad = widths[column] - cell.chars().count() + 2;
            out.push_str(&" ".repeat(pad));
        }
        out.push_str(&row[3]);
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
            {"id": 2, "time": "2024-05-01T10:05:00Z", "transaction": "undo-1", "changes": []}
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
    fn lenient_values() {
        let value = json!([{"id": "a1", "changes": [{"key": "k", "old": 1, "new": "not json"}]}]);
        let table = format_table(&records(value).unwrap());
        assert!(table.contains("k: 1 -> not json"), "{table}");
        assert!(
            table.lines().nth(1).unwrap().starts_with("a1  -     -  "),
            "{table}"
        );
    }
}
