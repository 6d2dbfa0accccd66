//! Try mode: `set --try` and `apply --try` (see [`crate::tx::Finish::Try`]), `confirm` and
//! `provisional`.
//!
//! A try is committed and applied like any change, but the server restores the previous values
//! unless `apiclient confirm` (`POST /tx/confirm`) comes before its deadline; a reboot before
//! the confirm restores them too. `apiclient provisional` shows the pending try (`GET
//! /tx/provisional`, 404 when there is none), secret values replaced by the server.

use crate::error::Result;
use crate::{check_status, parse_document, raw_request, request};
use api_types::provisional::{Provisional, CONFIRM_PATH, PATH};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Reads the server's try document.
pub fn parse(answer: &str) -> Result<Provisional> {
    parse_document("the try-mode document", answer.as_bytes())
}

/// Keeps the pending try; returns the server's answer (the try that was kept).
pub async fn confirm(socket_path: impl AsRef<Path>) -> Result<String> {
    request(socket_path, CONFIRM_PATH, "POST", None).await
}

/// The pending try as the server's JSON, or `None` when none is pending.
pub async fn show(socket_path: impl AsRef<Path>) -> Result<Option<String>> {
    let (status, body) = raw_request(socket_path, PATH, "GET", None).await?;
    if status == 404 {
        return Ok(None);
    }
    check_status("GET", PATH, status, &body)?;
    Ok(Some(body))
}

fn value_text(value: &Option<Value>) -> String {
    match value {
        None => "(none)".to_string(),
        Some(Value::String(text)) => format!("{text:?}"),
        Some(other) => other.to_string(),
    }
}

/// The try as text: one line for the try, then one per key, `  settings.motd: "old" -> "new"`.
pub fn render(doc: &Provisional) -> String {
    let mut text = format!(
        "Trying transaction {} until {} ({} s left of {} s)",
        doc.transaction, doc.deadline, doc.remaining_seconds, doc.timeout_seconds
    );
    if let Some(caller) = &doc.caller {
        let _ = write!(
            text,
            ", asked by uid {} ({})",
            caller.uid,
            caller.program.as_deref().unwrap_or("unknown program")
        );
    }
    text.push('\n');
    for change in &doc.changes {
        let _ = writeln!(
            text,
            "  {}: {} -> {}",
            change.key,
            value_text(&change.old),
            value_text(&change.new)
        );
    }
    text
}

#[cfg(test)]
mod test {
    use super::*;
    use api_types::provisional::ProvisionalChange;
    use serde_json::json;

    #[test]
    fn a_try_reads_as_lines() {
        let doc = Provisional {
            transaction: "apiclient-set-x".into(),
            changes: vec![
                ProvisionalChange {
                    key: "settings.kernel.sysctl.\"vm.swappiness\"".into(),
                    old: None,
                    new: Some(json!("10")),
                    redacted: false,
                },
                ProvisionalChange {
                    key: "settings.motd".into(),
                    old: Some(json!("before")),
                    new: Some(json!("after")),
                    redacted: false,
                },
            ],
            started: "2026-12-07T06:53:05Z".into(),
            deadline: "2026-12-07T06:55:05Z".into(),
            timeout_seconds: 120,
            remaining_seconds: 100,
            caller: None,
        };
        assert_eq!(
            render(&doc),
            "Trying transaction apiclient-set-x until 2026-12-07T06:55:05Z (100 s left of 120 s)\n  \
             settings.kernel.sysctl.\"vm.swappiness\": (none) -> \"10\"\n  \
             settings.motd: \"before\" -> \"after\"\n"
        );
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(parse(&text).unwrap(), doc);
        assert!(parse("{}").unwrap_err().to_string().contains("older"));
    }
}
