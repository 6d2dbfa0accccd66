//! `get`: reads settings (and other data) and returns them as one JSON value.
//!
//! Prefixes are fetched one by one with `GET /?prefix=<prefix>` and deep-merged, later ones
//! winning on conflicts.  An argument starting with `/` is fetched as it is.  Without arguments
//! the whole model is fetched and only `settings` and `os` are kept, which is what an operator
//! usually wants to see.

use crate::error::{self, Result};
use crate::{encode_query_value, request};
use serde_json::Value;
use snafu::ResultExt;
use std::path::Path;

/// Top-level parts of `GET /` shown when `get` has no arguments.
pub const DEFAULT_SECTIONS: &[&str] = &["settings", "os"];

/// What a `get` invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetRequest {
    /// No arguments: settings and OS information.
    Default,
    /// Everything under these key prefixes, merged.
    Prefixes(Vec<String>),
    /// One API URI, fetched as is.
    Uri(String),
}

impl GetRequest {
    /// Interprets command-line arguments: none, one `/URI`, or any number of prefixes.
    pub fn from_args(args: &[String]) -> Result<Self> {
        if args.is_empty() {
            return Ok(GetRequest::Default);
        }
        if let Some(uri) = args.iter().find(|arg| arg.starts_with('/')) {
            if args.len() > 1 {
                return error::GetMixedArgsSnafu { uri }.fail();
            }
            return Ok(GetRequest::Uri(uri.clone()));
        }
        Ok(GetRequest::Prefixes(args.to_vec()))
    }
}

/// Performs a [`GetRequest`].
pub async fn get(socket_path: impl AsRef<Path>, what: &GetRequest) -> Result<Value> {
    match what {
        GetRequest::Default => get_default(socket_path).await,
        GetRequest::Prefixes(prefixes) => get_prefixes(socket_path, prefixes).await,
        GetRequest::Uri(uri) => get_uri(socket_path, uri).await,
    }
}

/// Fetches `/` and keeps only [`DEFAULT_SECTIONS`].
pub async fn get_default(socket_path: impl AsRef<Path>) -> Result<Value> {
    let mut value = get_uri(socket_path, "/").await?;
    keep_sections(&mut value, DEFAULT_SECTIONS);
    Ok(value)
}

/// Fetches each prefix with `GET /?prefix=<prefix>` and deep-merges the results in order.
/// With no prefixes, returns an empty object.
pub async fn get_prefixes(socket_path: impl AsRef<Path>, prefixes: &[String]) -> Result<Value> {
    let socket_path = socket_path.as_ref();
    let mut merged = Value::Object(serde_json::Map::new());
    for prefix in prefixes {
        let uri = prefix_uri(prefix);
        let value = get_uri(socket_path, &uri).await?;
        merge_json(&mut merged, value);
    }
    Ok(merged)
}

/// Fetches one URI and parses the body as JSON.
pub async fn get_uri(socket_path: impl AsRef<Path>, uri: &str) -> Result<Value> {
    let body = request(socket_path, uri, "GET", None).await?;
    serde_json::from_str(&body).context(error::ResponseJsonSnafu { method: "GET", uri })
}

/// The URI that fetches everything under `prefix`.
pub fn prefix_uri(prefix: &str) -> String {
    format!("/?prefix={}", encode_query_value(prefix))
}

/// Merges `from` into `into`: objects are merged key by key, recursively; anything else in
/// `from` replaces what was in `into`.
pub fn merge_json(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into_map), Value::Object(from_map)) => {
            for (key, from_value) in from_map {
                match into_map.get_mut(&key) {
                    Some(into_value) => merge_json(into_value, from_value),
                    None => {
                        into_map.insert(key, from_value);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

/// Removes every top-level key of an object except `sections`.  Non-objects are left alone.
pub fn keep_sections(value: &mut Value, sections: &[&str]) {
    if let Value::Object(map) = value {
        map.retain(|key, _| sections.contains(&key.as_str()));
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_choose_the_request() {
        assert_eq!(GetRequest::from_args(&[]).unwrap(), GetRequest::Default);
        assert_eq!(
            GetRequest::from_args(&strings(&["settings.motd", "os"])).unwrap(),
            GetRequest::Prefixes(strings(&["settings.motd", "os"]))
        );
        assert_eq!(
            GetRequest::from_args(&strings(&["/tx/list"])).unwrap(),
            GetRequest::Uri("/tx/list".into())
        );
        let err = GetRequest::from_args(&strings(&["settings", "/tx"])).unwrap_err();
        assert!(err.to_string().contains("'/tx'"), "{err}");
    }

    #[test]
    fn prefix_uris_are_escaped() {
        assert_eq!(prefix_uri("settings.motd"), "/?prefix=settings.motd");
        assert_eq!(prefix_uri("a b"), "/?prefix=a%20b");
    }

    #[test]
    fn merge_is_deep() {
        let mut into = json!({"settings": {"motd": "a", "ntp": {"time-servers": ["x"]}}});
        merge_json(
            &mut into,
            json!({"settings": {"ntp": {"options": ["iburst"]}, "kernel": {"lockdown": "none"}}}),
        );
        assert_eq!(
            into,
            json!({"settings": {
                "motd": "a",
                "ntp": {"time-servers": ["x"], "options": ["iburst"]},
                "kernel": {"lockdown": "none"}
            }})
        );
    }

    #[test]
    fn merge_later_values_win() {
        let mut into = json!({"settings": {"motd": "a", "list": [1, 2]}});
        merge_json(&mut into, json!({"settings": {"motd": "b", "list": [3]}}));
        assert_eq!(into, json!({"settings": {"motd": "b", "list": [3]}}));

        // A scalar replaced by an object and the other way round.
        let mut into = json!({"a": 1, "b": {"c": 2}});
        merge_json(&mut into, json!({"a": {"x": 1}, "b": 3}));
        assert_eq!(into, json!({"a": {"x": 1}, "b": 3}));

        // Merging into an empty object copies everything.
        let mut into = json!({});
        merge_json(&mut into, json!({"os": {"arch": "x86_64"}}));
        assert_eq!(into, json!({"os": {"arch": "x86_64"}}));
    }

    #[test]
    fn default_view_keeps_settings_and_os() {
        let mut value = json!({
            "settings": {"motd": "hi"},
            "services": {"motd": {}},
            "configuration-files": {"motd": {}},
            "os": {"arch": "x86_64"}
        });
        keep_sections(&mut value, DEFAULT_SECTIONS);
        assert_eq!(
            value,
            json!({"settings": {"motd": "hi"}, "os": {"arch": "x86_64"}})
        );
    }
}
