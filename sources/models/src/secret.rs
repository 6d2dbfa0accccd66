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
    SECRET_SETTINGS.iter().any(|pattern| {
        let pattern: Vec<&str> = pattern.split('.').collect();
        segments.len() >= pattern.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(want, got)| *want == "*" || want == got)
    })
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
