//! Turning nested JSON into flat key/value pairs and back.
//! Objects recurse; arrays, strings, numbers and booleans are leaves stored as JSON text; null
//! leaves are skipped.

use crate::error::{CorruptSnafu, SerializationSnafu};
use crate::{Key, KeyType, Result};
use serde_json::{Map, Value};
use snafu::{OptionExt, ResultExt};
use std::collections::BTreeMap;

/// `to_pairs(&json!({"motd":"hi","ntp":{"time-servers":["a"]}}), "settings")` gives
/// {settings.motd: "\"hi\"", settings.ntp.time-servers: "[\"a\"]"}. Prefix "" means none.
///
/// An object key containing a dot (or any character outside `[A-Za-z0-9_-]`) becomes a quoted
/// segment. An empty object yields no pairs. A leaf at the top needs a non-empty prefix to name it.
pub fn to_pairs(value: &Value, prefix: &str) -> Result<BTreeMap<Key, String>> {
    let mut segments = if prefix.is_empty() {
        Vec::new()
    } else {
        Key::new(KeyType::Data, prefix)?.segments().to_vec()
    };
    let mut pairs = BTreeMap::new();
    flatten(value, &mut segments, &mut pairs)?;
    Ok(pairs)
}

fn flatten(
    value: &Value,
    segments: &mut Vec<String>,
    pairs: &mut BTreeMap<Key, String>,
) -> Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for (name, inner) in map {
                segments.push(name.clone());
                let result = flatten(inner, segments, pairs);
                segments.pop();
                result?;
            }
            Ok(())
        }
        leaf => {
            if segments.is_empty() {
                return SerializationSnafu {
                    reason: format!("the value {leaf} is not an object and no prefix names it"),
                }
                .fail();
            }
            let key = Key::from_segments(KeyType::Data, segments)?;
            let text = serde_json::to_string(leaf).map_err(|e| crate::Error::Serialization {
                reason: format!("cannot write {key}: {e}"),
            })?;
            pairs.insert(key, text);
            Ok(())
        }
    }
}

/// Inverse of `to_pairs` with prefix "": nested object from the keys' segments (the segments of
/// `strip_prefix`, when given, are removed from every key first; keys not under it are an error).
///
/// No pairs give `{}`. When a key equals `strip_prefix` exactly, its value is the whole result
/// (and no other key may be present). A key that is both a leaf and the parent of another key is
/// an error, and so is stored text that is not JSON.
pub fn from_pairs(pairs: &BTreeMap<Key, String>, strip_prefix: Option<&str>) -> Result<Value> {
    let strip = match strip_prefix {
        None | Some("") => None,
        Some(name) => Some(Key::new(KeyType::Data, name)?),
    };
    let mut root: Option<Value> = None;
    for (key, text) in pairs {
        let segments = match &strip {
            None => key.segments(),
            Some(prefix) => {
                if !key.starts_with_segments(prefix) {
                    return SerializationSnafu {
                        reason: format!("key {key} is not under {prefix}"),
                    }
                    .fail();
                }
                &key.segments()[prefix.segments().len()..]
            }
        };
        let value: Value = serde_json::from_str(text).context(CorruptSnafu { key: key.name() })?;
        insert(&mut root, segments, value, key)?;
    }
    Ok(root.unwrap_or_else(|| Value::Object(Map::new())))
}

fn insert(slot: &mut Option<Value>, segments: &[String], value: Value, key: &Key) -> Result<()> {
    let clash = || SerializationSnafu {
        reason: format!("key {key} is both a value and a group of values"),
    };
    let Some((first, rest)) = segments.split_first() else {
        if slot.is_some() {
            return clash().fail();
        }
        *slot = Some(value);
        return Ok(());
    };
    let map = match slot.get_or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(map) => map,
        _ => return clash().fail(),
    };
    let mut child = map.remove(first);
    if rest.is_empty() && child.is_some() {
        return clash().fail();
    }
    if !rest.is_empty() && child.as_ref().is_some_and(|c| !c.is_object()) {
        return clash().fail();
    }
    insert(&mut child, rest, value, key)?;
    map.insert(
        first.clone(),
        child.with_context(|| SerializationSnafu {
            reason: format!("key {key} produced no value"),
        })?,
    );
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> Key {
        Key::new(KeyType::Data, name).unwrap()
    }

    #[test]
    fn flattens_objects() {
        let value = json!({
            "motd": "hi",
            "ntp": {"time-servers": ["a", "b"]},
            "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}},
            "gone": null,
            "empty": {},
            "n": 42,
            "b": true,
        });
        let pairs = to_pairs(&value, "settings").unwrap();
        let flat: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.name(), v.as_str())).collect();
        assert_eq!(
            flat,
            [
                ("settings.b", "true"),
                ("settings.kernel.sysctl.\"net.ipv4.ip_forward\"", "\"1\""),
                ("settings.motd", "\"hi\""),
                ("settings.n", "42"),
                ("settings.ntp.time-servers", "[\"a\",\"b\"]"),
            ]
        );
        // Round trip (the null and the empty object disappear).
        let back = from_pairs(&pairs, Some("settings")).unwrap();
        assert_eq!(
            back,
            json!({
                "motd": "hi",
                "ntp": {"time-servers": ["a", "b"]},
                "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}},
                "n": 42,
                "b": true,
            })
        );
        let whole = from_pairs(&pairs, None).unwrap();
        assert_eq!(whole["settings"]["motd"], "hi");
    }

    #[test]
    fn prefixes() {
        assert!(to_pairs(&json!({}), "settings").unwrap().is_empty());
        let pairs = to_pairs(&json!({"a": {"b": 1}}), "").unwrap();
        assert_eq!(pairs[&key("a.b")], "1");
        let pairs = to_pairs(&json!("hi"), "settings.motd").unwrap();
        assert_eq!(pairs[&key("settings.motd")], "\"hi\"");
        assert!(to_pairs(&json!("hi"), "").is_err());
        assert!(to_pairs(&json!({"": 1}), "settings").is_err());
        assert!(to_pairs(&json!({"a": 1}), "bad..prefix").is_err());
    }

    #[test]
    fn unflatten_errors() {
        let mut pairs = BTreeMap::new();
        pairs.insert(key("settings.motd"), "\"hi\"".to_string());
        pairs.insert(key("os.arch"), "\"x86_64\"".to_string());
        assert!(from_pairs(&pairs, Some("settings")).is_err());

        let mut pairs = BTreeMap::new();
        pairs.insert(key("a.b"), "1".to_string());
        pairs.insert(key("a.b.c"), "2".to_string());
        assert!(from_pairs(&pairs, None).is_err());

        let mut pairs = BTreeMap::new();
        pairs.insert(key("a.b"), "not json".to_string());
        assert!(matches!(
            from_pairs(&pairs, None),
            Err(crate::Error::Corrupt { .. })
        ));

        assert_eq!(from_pairs(&BTreeMap::new(), None).unwrap(), json!({}));
    }

    #[test]
    fn exact_prefix_gives_the_leaf() {
        let mut pairs = BTreeMap::new();
        pairs.insert(key("settings.motd"), "\"hi\"".to_string());
        assert_eq!(
            from_pairs(&pairs, Some("settings.motd")).unwrap(),
            json!("hi")
        );
    }
}
