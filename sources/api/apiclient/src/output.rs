//! Printing a document the server sent: as text for a person, or with `--json` as JSON.

use crate::error::{self, Result};
use serde::Serialize;
use snafu::ResultExt;
use std::io::Write;

/// How [`print_document`] lays a document out with `--json`, and when it flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A whole answer (`status`, `report boot`): pretty JSON, one newline at the end, flushed.
    Document,
    /// One entry of a list (`logs`, `audit`): one line, JSON on one line; not flushed, so the
    /// caller flushes once after the list (or after each piece of a followed answer).
    Entry,
}

/// Prints `doc` to `out`: as `text(doc)`, or with `json` as the document serialized again.
pub(crate) fn print_document<W: Write, T: Serialize>(
    out: &mut W,
    doc: &T,
    json: bool,
    layout: Layout,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    let mut printed = match (json, layout) {
        (false, _) => text(doc),
        (true, Layout::Document) => {
            serde_json::to_string_pretty(doc).context(error::SerializeBodySnafu)?
        }
        (true, Layout::Entry) => serde_json::to_string(doc).context(error::SerializeBodySnafu)?,
    };
    if layout == Layout::Entry || !printed.ends_with('\n') {
        printed.push('\n');
    }
    out.write_all(printed.as_bytes())
        .context(error::WriteOutputSnafu)?;
    if layout == Layout::Document {
        out.flush().context(error::WriteOutputSnafu)?;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    fn print(doc: &serde_json::Value, json: bool, layout: Layout) -> String {
        let mut out = Vec::new();
        print_document(&mut out, doc, json, layout, |d| format!("text {}", d["a"])).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn documents_are_pretty_and_entries_one_line() {
        let doc = serde_json::json!({"a": 1});
        assert_eq!(print(&doc, false, Layout::Document), "text 1\n");
        assert_eq!(print(&doc, false, Layout::Entry), "text 1\n");
        assert_eq!(print(&doc, true, Layout::Document), "{\n  \"a\": 1\n}\n");
        assert_eq!(print(&doc, true, Layout::Entry), "{\"a\":1}\n");

        // A text that already ends a document's line is not given a second newline.
        let mut out = Vec::new();
        print_document(&mut out, &doc, false, Layout::Document, |_| "done\n".into()).unwrap();
        assert_eq!(out, b"done\n");
    }
}
