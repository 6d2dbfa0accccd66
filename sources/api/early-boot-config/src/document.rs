//! Checking one provider's user data before anything is sent.
//!
//! User data is a TOML document whose only top-level entry is the `settings` table, as in
//! Bottlerocket:
//!
//! ```toml
//! [settings]
//! motd = "Hello"
//!
//! [settings.network]
//! hostname = "node-1"
//! ```
//!
//! It may be gzip-compressed (recognized by its first two bytes, 1f 8b). The whole document is
//! refused at the first problem: not UTF-8, not TOML, another top-level entry, or a value the
//! model refuses. A [`Refusal`] names the offending key when there is one.

use flate2::read::GzDecoder;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Read;

/// Largest user data accepted, before and after decompression. It matches the API server's
/// request limit, far above the 16 KiB that EC2 allows.
pub const MAX_USER_DATA_BYTES: usize = 1024 * 1024;

/// The only top-level table user data may hold.
const SETTINGS: &str = "settings";

/// Why a provider's user data was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Dotted key of the offending entry, when one is to blame.
    pub key: Option<String>,
    pub reason: String,
}

impl Refusal {
    fn whole(reason: impl Into<String>) -> Refusal {
        Refusal {
            key: None,
            reason: reason.into(),
        }
    }

    fn at(key: impl Into<String>, reason: impl Into<String>) -> Refusal {
        Refusal {
            key: Some(key.into()),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl From<models::ValidationError> for Refusal {
    fn from(e: models::ValidationError) -> Refusal {
        Refusal::at(e.key, e.reason)
    }
}

/// Checks raw user data and returns the settings object (without the outer `settings`), or
/// `None` when the document holds no settings at all (empty, only comments, or `[settings]`
/// with nothing in it).
pub fn parse_user_data(raw: &[u8]) -> Result<Option<Value>, Refusal> {
    let bytes = decompress(raw)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Refusal::whole(format!(
            "user data is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let document: toml::Table =
        toml::from_str(text).map_err(|e| Refusal::whole(describe_toml_error(&e, text)))?;
    let mut settings = None;
    for (name, value) in document {
        if name != SETTINGS {
            return Err(Refusal::at(
                models::key::join([name.as_str()]),
                "unknown top-level entry; user data may only hold the [settings] table",
            ));
        }
        let toml::Value::Table(table) = value else {
            return Err(Refusal::at(
                SETTINGS,
                format!(
                    "must be a table such as [settings], not a {}",
                    value.type_str()
                ),
            ));
        };
        settings = Some(table);
    }
    let Some(table) = settings else {
        return Ok(None);
    };
    if table.is_empty() {
        return Ok(None);
    }
    let value = table_to_json(table, SETTINGS)?;
    models::parse_settings(&value)?;
    Ok(Some(value))
}

/// Gunzips data that starts with the gzip magic; other data is returned as is.
fn decompress(raw: &[u8]) -> Result<Vec<u8>, Refusal> {
    if raw.len() > MAX_USER_DATA_BYTES {
        return Err(Refusal::whole(format!(
            "user data is {} bytes, more than the limit of {MAX_USER_DATA_BYTES}",
            raw.len()
        )));
    }
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::new();
    GzDecoder::new(raw)
        .take(MAX_USER_DATA_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::whole(format!("user data looks gzip-compressed but is not: {e}")))?;
    if out.len() > MAX_USER_DATA_BYTES {
        return Err(Refusal::whole(format!(
            "decompressed user data is more than the limit of {MAX_USER_DATA_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// One line: where in the text the TOML error is and what it is.
fn describe_toml_error(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("user data is not valid TOML: line {line}, column {column}: {message}")
        }
        None => format!("user data is not valid TOML: {message}"),
    }
}

fn table_to_json(table: toml::Table, at: &str) -> Result<Value, Refusal> {
    let mut map = Map::new();
    for (name, value) in table {
        let mut key = at.to_string();
        models::key::push_segment(&mut key, &name);
        map.insert(name, toml_to_json(value, &key)?);
    }
    Ok(Value::Object(map))
}

/// Converts TOML to JSON, refusing what JSON cannot carry, with the key of the value.
fn toml_to_json(value: toml::Value, key: &str) -> Result<Value, Refusal> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| Refusal::at(key, "infinite and NaN numbers are not supported"))?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(_) => {
            return Err(Refusal::at(
                key,
                "TOML dates are not supported; write the value as a string",
            ))
        }
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item, &format!("{key}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => table_to_json(table, key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use serde_json::json;
    use std::io::Write;

    fn refusal(text: &str) -> Refusal {
        parse_user_data(text.as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn settings_become_json() {
        let value = parse_user_data(
            br#"
            # comment
            [settings]
            motd = "hi"
            [settings.kernel.sysctl]
            "net.ipv4.ip_forward" = "1"
            [settings.updates]
            seed = 7
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            value,
            json!({"motd": "hi", "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}, "updates": {"seed": 7}})
        );
    }

    #[test]
    fn documents_without_settings_hold_nothing() {
        for text in ["", "  \n", "# only a comment\n", "[settings]\n"] {
            assert_eq!(parse_user_data(text.as_bytes()).unwrap(), None, "{text:?}");
        }
    }

    #[test]
    fn gzip_is_recognized() {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(b"[settings]\nmotd = \"zipped\"\n")
            .unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(
            parse_user_data(&compressed).unwrap(),
            Some(json!({"motd": "zipped"}))
        );
        let err = parse_user_data(&[0x1f, 0x8b, 0, 1, 2]).unwrap_err();
        assert!(err.reason.contains("gzip"), "{err}");
    }

    #[test]
    fn refusals_name_the_key_and_reason() {
        let err = refusal("[settings]\nmotd = 5\n");
        assert_eq!(err.key.as_deref(), Some("settings.motd"));
        assert!(err.reason.contains("invalid type: integer"), "{err}");

        let err = refusal("[settings]\nmotdd = \"x\"\n");
        assert_eq!(err.key.as_deref(), Some("settings.motdd"));
        assert!(err.reason.contains("unknown field"), "{err}");

        let err = refusal("[settings]\nmotd = \"\"\"\nline one\nline two\"\"\"\n");
        assert_eq!(err.key.as_deref(), Some("settings.motd"));
        assert!(err.reason.contains("line break"), "{err}");

        let err = refusal("[settings.kernel.sysctl]\n\"vm.x\" = 1979-05-27\n");
        assert_eq!(err.key.as_deref(), Some(r#"settings.kernel.sysctl."vm.x""#));
        assert!(err.reason.contains("TOML dates"), "{err}");

        let err = refusal("[settings.ntp]\ntime-servers = [\"ok.example\", 5]\n");
        assert_eq!(err.key.as_deref(), Some("settings.ntp.time-servers[1]"));

        let err = refusal("motd = \"hi\"\n");
        assert_eq!(err.key.as_deref(), Some("motd"));
        assert!(
            err.reason.contains("only hold the [settings] table"),
            "{err}"
        );

        let err = refusal("settings = \"hi\"\n");
        assert_eq!(err.key.as_deref(), Some("settings"));
        assert!(err.reason.contains("must be a table"), "{err}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = refusal("[settings]\nmotd = \"unterminated\n");
        assert_eq!(err.key, None);
        assert!(
            err.reason
                .starts_with("user data is not valid TOML: line 2, column "),
            "{err}"
        );
        assert!(!err.reason.contains('\n'), "{err}");
    }

    #[test]
    fn binary_and_oversized_data_is_refused() {
        assert!(parse_user_data(&[0xff, 0x00])
            .unwrap_err()
            .reason
            .contains("not UTF-8"));
        let big = vec![b'#'; MAX_USER_DATA_BYTES + 1];
        assert!(parse_user_data(&big)
            .unwrap_err()
            .reason
            .contains("more than the limit"));
    }
}
