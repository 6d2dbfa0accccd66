//! A small reader for deb822 text (apt `.sources` files, `Release` and `Packages` indexes).
//!
//! A file is a list of paragraphs separated by blank lines. A paragraph is a list of `Name: value`
//! fields; a line starting with a space or tab continues the previous field. Field names are
//! compared without regard to case. The reader borrows from the input, so that a 50 MB `Packages`
//! file is read without copying every value.

use crate::error::{Deb822SyntaxSnafu, Result};
use std::borrow::Cow;

/// One paragraph. Values are the raw text after the colon, including continuation lines (with
/// their newlines and leading blanks), trimmed at both ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Paragraph<'a> {
    /// 1-based line number of the paragraph's first field.
    pub line: usize,
    pub fields: Vec<(&'a str, Cow<'a, str>)>,
}

impl Paragraph<'_> {
    /// The value of the field `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// A field being read: its name, the byte range of its value so far, and an owned copy once a
/// comment line has interrupted the value (so the range no longer describes it).
struct OpenField<'a> {
    name: &'a str,
    start: usize,
    end: usize,
    owned: Option<String>,
}

/// Continuation lines of a multi-line value (the first line, which holds the text right after the
/// colon, is skipped when it is empty), each trimmed.
pub(crate) fn value_lines(value: &str) -> impl Iterator<Item = &str> {
    value.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Splits `text` into paragraphs. With `comments`, lines starting with `#` are ignored wherever they
/// appear (apt's `.sources` files allow that); `what` names the input in error messages.
pub(crate) fn parse<'a>(text: &'a str, comments: bool, what: &str) -> Result<Vec<Paragraph<'a>>> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    let mut open: Option<OpenField<'a>> = None;
    let mut offset = 0;

    let close_field = |current: &mut Paragraph<'a>, open: &mut Option<OpenField<'a>>| {
        if let Some(field) = open.take() {
            let value = match field.owned {
                Some(owned) => Cow::Owned(owned.trim().to_string()),
                None => Cow::Borrowed(text[field.start..field.end].trim()),
            };
            current.fields.push((field.name, value));
        }
    };

    for (index, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_start = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\n', '\r']);
        let line_end = line_start + line.len();
        let line_number = index + 1;

        if comments && line.starts_with('#') {
            if let Some(field) = open.as_mut() {
                if field.owned.is_none() {
                    field.owned = Some(text[field.start..field.end].to_string());
                }
            }
            continue;
        }
        if line.trim().is_empty() {
            close_field(&mut current, &mut open);
            if !current.fields.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match open.as_mut() {
                Some(field) => match field.owned.as_mut() {
                    Some(owned) => {
                        owned.push('\n');
                        owned.push_str(line);
                    }
                    None => field.end = line_end,
                },
                None => {
                    return Deb822SyntaxSnafu {
                        what,
                        line: line_number,
                        message: "continuation line without a field before it",
                    }
                    .fail()
                }
            }
            continue;
        }
        let Some(colon) = line.find(':') else {
            return Deb822SyntaxSnafu {
                what,
                line: line_number,
                message: format!("expected 'Field: value', found '{line}'"),
            }
            .fail();
        };
        let name = &line[..colon];
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Deb822SyntaxSnafu {
                what,
                line: line_number,
                message: format!("invalid field name '{name}'"),
            }
            .fail();
        }
        close_field(&mut current, &mut open);
        if current.fields.is_empty() {
            current.line = line_number;
        }
        open = Some(OpenField {
            name,
            start: line_start + colon + 1,
            end: line_end,
            owned: None,
        });
    }
    close_field(&mut current, &mut open);
    if !current.fields.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "A: 1\nB: two\n words\n\n\n# not a comment here\nC:3\r\nD:\n x\n .\n y\n";
        let err = parse(text, false, "t").unwrap_err();
        assert!(err.to_string().contains("line 6"), "{err}");

        let ps = parse(text, true, "t").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("a"), Some("1"));
        assert_eq!(ps[0].get("B"), Some("two\n words"));
        assert_eq!(ps[1].line, 7);
        assert_eq!(ps[1].get("c"), Some("3"));
        let lines: Vec<_> = value_lines(ps[1].get("D").unwrap()).collect();
        assert_eq!(lines, ["x", ".", "y"]);
    }

    #[test]
    fn comment_inside_a_value() {
        let ps = parse("A: x\n# gone\n y\n", true, "t").unwrap();
        assert_eq!(ps[0].get("a"), Some("x\n y"));
    }

    #[test]
    fn orphan_continuation_is_an_error() {
        assert!(parse(" x\n", false, "t").is_err());
    }
}
