//! Which settings hold secrets: the one list every program that shows or records settings
//! consults before printing a value (the API server's audit trail first of all).
//!
//! A secret setting is one whose value grants access or carries a payload the operator did
//! not mean to publish: registry credentials (passwords, `auth`, identity tokens) and the
//! opaque user data handed to host and bootstrap containers (often keys or tokens). Its key
//! may be shown; its value may not.
//!
//! Patterns are dotted keys as the datastore writes them, where `*` stands for exactly one
//! segment (a container's name). A key is secret when it is a pattern's key or lies below one
//! (`settings.container-registry.credentials` is stored as one list value, but a prefix below it
//! is covered too).

/// The secret settings, as key patterns (`*` is one segment). A unit test holds each against
/// the model, so a renamed field cannot leave its secret uncovered silently.
pub const SECRET_SETTINGS: &[&str] = &[
    "settings.container-registry.credentials",
    "settings.host-containers.*.user-data",
    "settings.bootstrap-containers.*.user-data",
];

/// Whether the value of the dotted `key` (e.g. `settings.host-containers.admin.user-data`) is
/// secret. A key that does not parse is treated as secret: a value that cannot be placed is
/// not shown.
pub fn is_secret(key: &str) -> bool {
    let Ok(segments) = crate::key::split(key) else {
        return true;
    };
    is_secret_segments(&segments)
}

/// [`is_secret`] for a key already split into its segments (`["settings", "motd"]`).
pub fn is_secret_segments<S: AsRef<str>>(segments: &[S]) -> bool {
    SECRET_SETTINGS.iter().any(|pattern| {
        let pattern: Vec<&str> = pattern.split('.').collect();
        segments.len() >= pattern.len()
            && pattern
                .iter()
                .zip(segments)
                .all(|(want, got)| *want == "*" || *want == got.as_ref())
    })
}

/// Replaces, in a JSON tree of settings, the value of every secret setting by `replacement`
/// (the value's key may stay: only what it holds is secret). `root` is the dotted key the
/// tree stands at: `settings` for the answer of `GET /settings`, or a setting's own key for
/// its stored value (a value that is an object is walked too, so a secret below it is found).
/// Lists are values, not walked: no pattern reaches into one. Returns how many values were
/// replaced.
pub fn redact_tree(tree: &mut serde_json::Value, root: &str, replacement: &str) -> usize {
    let Ok(mut segments) = crate::key::split(root) else {
        // A key that does not parse: nothing in it can be placed, so nothing is shown.
        *tree = serde_json::Value::String(replacement.to_string());
        return 1;
    };
    redact_below(tree, &mut segments, replacement)
}

fn redact_below(
    tree: &mut serde_json::Value,
    segments: &mut Vec<String>,
    replacement: &str,
) -> usize {
    if is_secret_segments(segments) {
        if tree.is_null() {
            return 0;
        }
        *tree = serde_json::Value::String(replacement.to_string());
        return 1;
    }
    let serde_json::Value::Object(members) = tree else {
        return 0;
    };
    let mut replaced = 0;
    for (name, member) in members.iter_mut() {
        segments.push(name.clone());
        replaced += redact_below(member, segments, replacement);
        segments.pop();
    }
    replaced
}

/// A stored value (JSON text, as the datastore and its history keep it) of the setting `key`,
/// fit to be shown: `replacement` (as a JSON string) when the key is secret, the value with
/// its secret members replaced when it is an object holding some, else the value unchanged.
pub fn redact_stored_value(key: &str, value: &str, replacement: &str) -> String {
    let replaced = || serde_json::Value::String(replacement.to_string()).to_string();
    if is_secret(key) {
        return replaced();
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(mut tree) if tree.is_object() => {
            if redact_tree(&mut tree, key, replacement) == 0 {
                value.to_string()
            } else {
                tree.to_string()
            }
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn secrets_and_their_neighbours() {
        for key in [
            "settings.container-registry.credentials",
            "settings.host-containers.admin.user-data",
            "settings.host-containers.\"my.box\".user-data",
            "settings.bootstrap-containers.setup.user-data",
            "not a key",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "settings.motd",
            "settings.container-registry.mirrors",
            "settings.host-containers.admin.source",
            "settings.host-containers.user-data",
            "settings.bootstrap-containers.setup.essential",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }

    #[test]
    fn trees_lose_their_secret_values_only() {
        let mut tree = json!({
            "motd": "hello",
            "container-registry": {
                "mirrors": [{"registry": "r.example", "endpoint": ["https://m"]}],
                "credentials": [{"registry": "r.example", "password": "hunter2"}]
            },
            "host-containers": {
                "admin": {"source": "a:1", "user-data": "c2VjcmV0"},
                "my.box": {"user-data": "bXk="},
                "empty": {"user-data": null}
            },
            "bootstrap-containers": {"setup": {"user-data": "eA==", "essential": true}}
        });
        assert_eq!(redact_tree(&mut tree, "settings", "R"), 4);
        assert_eq!(tree["motd"], "hello");
        assert_eq!(tree["container-registry"]["credentials"], "R");
        assert_eq!(
            tree["container-registry"]["mirrors"][0]["registry"],
            "r.example"
        );
        assert_eq!(tree["host-containers"]["admin"]["user-data"], "R");
        assert_eq!(tree["host-containers"]["admin"]["source"], "a:1");
        assert_eq!(tree["host-containers"]["my.box"]["user-data"], "R");
        assert!(tree["host-containers"]["empty"]["user-data"].is_null());
        assert_eq!(tree["bootstrap-containers"]["setup"]["user-data"], "R");
        assert_eq!(tree["bootstrap-containers"]["setup"]["essential"], true);
        let text = tree.to_string();
        for secret in ["hunter2", "c2VjcmV0", "bXk=", "eA=="] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // A tree rooted at a secret key is replaced whole.
        let mut whole = json!([{"password": "p"}]);
        redact_tree(&mut whole, "settings.container-registry.credentials", "R");
        assert_eq!(whole, json!("R"));
    }

    #[test]
    fn stored_values_lose_their_secrets() {
        assert_eq!(
            redact_stored_value("settings.host-containers.a.user-data", "\"eA==\"", "R"),
            "\"R\""
        );
        assert_eq!(
            redact_stored_value("settings.motd", "\"hi\"", "R"),
            "\"hi\""
        );
        let parent = redact_stored_value(
            "settings.host-containers.a",
            r#"{"source":"s","user-data":"eA=="}"#,
            "R",
        );
        assert_eq!(parent, r#"{"source":"s","user-data":"R"}"#);
        assert_eq!(redact_stored_value("not a key", "1", "R"), "\"R\"");
    }

    /// Each pattern names a field the model has: a document setting it (with `*` as a name) is
    /// accepted, where a misspelled or renamed field would be refused as unknown.
    #[test]
    fn every_pattern_is_a_field_of_the_model() {
        let samples: &[(&str, Value)] = &[
            (
                "settings.container-registry.credentials",
                json!([{"registry": "r.example", "password": "p"}]),
            ),
            ("settings.host-containers.*.user-data", json!("aGk=")),
            ("settings.bootstrap-containers.*.user-data", json!("aGk=")),
        ];
        assert_eq!(samples.len(), SECRET_SETTINGS.len());
        for (pattern, value) in samples {
            assert!(SECRET_SETTINGS.contains(pattern), "{pattern}");
            let mut doc = value.clone();
            for segment in pattern.split('.').skip(1).collect::<Vec<_>>().iter().rev() {
                let name = if *segment == "*" { "x" } else { segment };
                doc = json!({ name: doc });
            }
            crate::parse_settings(&doc)
                .unwrap_or_else(|e| panic!("{pattern} is not a field of the model: {e}"));
        }
    }
}
