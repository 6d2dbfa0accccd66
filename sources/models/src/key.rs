//! Dotted keys such as `settings.network.hostname`.
//!
//! The grammar is the `settings-key` crate's, the same the datastore parses and stores: a
//! segment made only of ASCII letters, digits, `-` and `_` is written as is; any other segment is
//! written in double quotes (`settings.kernel.sysctl."net.ipv4.ip_forward"`). A segment may not
//! hold `"`, `\` or control characters, and its datastore file name is limited, so the model
//! refuses such keys itself (see [`check_document_keys`]) instead of leaving them to fail when
//! stored. The same rule names the keys in [`crate::ValidationError`], the metadata keys in
//! [`crate::Defaults`], and the keys [`crate::affected_services`] looks up.

pub use settings_key::{
    check_len, check_segment, join, join_checked, push_segment, split, KeyError as MalformedKey,
    MAX_KEY_LEN, MAX_SEGMENT_FILE_NAME_LEN,
};

use crate::error::ValidationError;
use serde_json::Value;

/// Checks that every key a settings document would be stored under is a valid key: each object
/// member name is a valid segment and each value's full key (from `prefix`, e.g. `settings`) fits
/// the datastore's length limit. Objects are walked; anything else (scalars, lists) is a value.
/// `null` members are skipped, as the model reads them as absent. The error names the key.
pub fn check_document_keys(value: &Value, prefix: &str) -> Result<(), ValidationError> {
    let Value::Object(map) = value else {
        return check_len(prefix).map_err(|e| ValidationError {
            key: e.key,
            reason: format!(
                "the key is too long to be stored: {} (shorten the names in it)",
                e.reason
            ),
        });
    };
    for (name, member) in map {
        if member.is_null() {
            continue;
        }
        let mut key = prefix.to_string();
        push_segment(&mut key, name);
        if let Err(e) = check_segment(name) {
            return Err(ValidationError {
                key,
                reason: format!("'{name}' cannot be a key segment: {}", e.reason),
            });
        }
        check_document_keys(member, &key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn join_quotes_only_when_needed() {
        assert_eq!(
            join(["settings", "network", "hostname"]),
            "settings.network.hostname"
        );
        assert_eq!(
            join(["settings", "kernel", "sysctl", "net.ipv4.ip_forward"]),
            r#"settings.kernel.sysctl."net.ipv4.ip_forward""#
        );
    }

    #[test]
    fn split_undoes_join() {
        for segments in [
            vec!["settings"],
            vec!["settings", "ntp", "time-servers"],
            vec!["settings", "kernel", "sysctl", "net/ipv4/ip_forward"],
            vec!["a", "with spaces and é", "x.y"],
        ] {
            let key = join(&segments);
            assert_eq!(split(&key).unwrap(), segments, "key {key}");
        }
    }

    #[test]
    fn split_refuses_malformed_keys() {
        for key in [
            "", "a..b", "a.", ".a", "\"open", "\"a\"b", "a\"b", "\"a\\\"", "a b",
        ] {
            assert!(split(key).is_err(), "{key:?} should be refused");
        }
    }

    #[test]
    fn document_keys_are_checked_before_storing() {
        let good = json!({"kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}, "motd": null});
        check_document_keys(&good, "settings").unwrap();

        let quote = json!({"kernel": {"sysctl": {"a\"b": "1"}}});
        let err = check_document_keys(&quote, "settings").unwrap_err();
        assert_eq!(err.key, "settings.kernel.sysctl.\"a\"b\"");
        assert!(err.reason.contains("cannot be a key segment"), "{err}");

        let long_name = "x".repeat(240);
        let long = json!({"kernel": {"sysctl": {long_name.clone(): "1"}}});
        let err = check_document_keys(&long, "settings").unwrap_err();
        assert_eq!(err.key, format!("settings.kernel.sysctl.{long_name}"));
        assert!(err.reason.contains("at most 255"), "{err}");

        // A null member is absent: its name is never stored.
        check_document_keys(&json!({"a\\b": null}), "settings").unwrap();
    }
}
