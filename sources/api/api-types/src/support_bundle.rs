//! The support bundle (`GET /support-bundle`, `apiclient support-bundle`): a gzip-compressed
//! tar archive of the node's state, whose one top directory ([`top_dir`]) holds a file per
//! part and [`MANIFEST_NAME`], the [`Manifest`] listing every part with its size, or the error
//! that kept it out.
//!
//! With `?recipient=age1...` ([`RECIPIENT_PARAM`]) the server encrypts the archive to that age
//! X25519 recipient before a byte of it leaves the node: the answer is then an age file
//! (binary, starting with [`AGE_MAGIC`]) of type [`ENCRYPTED_CONTENT_TYPE`], whose plaintext is
//! the same gzip-compressed tar archive; `age -d -i KEY` (or `rage`) opens it.

use serde::{Deserialize, Serialize};

/// The route's path.
pub const PATH: &str = "/support-bundle";
/// The answer's content type.
pub const CONTENT_TYPE: &str = "application/gzip";
/// The answer's content type when it is encrypted (an age file).
pub const ENCRYPTED_CONTENT_TYPE: &str = "application/octet-stream";
/// The query parameter naming the age recipient to encrypt to.
pub const RECIPIENT_PARAM: &str = "recipient";
/// How every binary age file starts (the age format's version line).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The file name suffix of an encrypted bundle, after `.tar.gz`.
pub const ENCRYPTED_SUFFIX: &str = ".age";

/// The manifest's file name in the top directory.
pub const MANIFEST_NAME: &str = "MANIFEST.json";

/// The archive's top directory, and (with `.tar.gz`) its file name:
/// `ballast-support-<hostname>-<UTC time as 20261207T065305Z>`. Characters other than ASCII
/// letters, digits, `-`, `_` and `.` in the host name become `_`.
pub fn top_dir(hostname: &str, utc_compact: &str) -> String {
    let host: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let host = if host.is_empty() || host.chars().all(|c| c == '.') {
        "unknown".to_string()
    } else {
        host
    };
    format!("ballast-support-{host}-{utc_compact}")
}

/// `MANIFEST.json`: what the bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// When the bundle was made (RFC 3339, UTC).
    pub created: String,
    /// The node's host name.
    pub hostname: String,
    /// Every part, in the archive's order, whether or not it could be read.
    pub parts: Vec<ManifestPart>,
}

/// One part of the bundle: a file of the top directory, or why it is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    /// The file name in the top directory (e.g. `journal.jsonl`).
    pub name: String,
    /// What the part is, and where it was read from.
    pub description: String,
    /// The file's size in bytes, when the part was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Why the part is not in the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_dir_keeps_only_safe_characters() {
        assert_eq!(
            top_dir("node-1.example", "20261207T065305Z"),
            "ballast-support-node-1.example-20261207T065305Z"
        );
        assert_eq!(top_dir("a/../b c", "T"), "ballast-support-a_.._b_c-T");
        assert_eq!(top_dir("..", "T"), "ballast-support-unknown-T");
        assert_eq!(top_dir("", "T"), "ballast-support-unknown-T");
    }

    #[test]
    fn a_part_has_a_size_or_an_error() {
        let parts = vec![
            ManifestPart {
                name: "a".into(),
                description: "d".into(),
                bytes: Some(3),
                error: None,
            },
            ManifestPart {
                name: "b".into(),
                description: "d".into(),
                bytes: None,
                error: Some("no".into()),
            },
        ];
        let text = serde_json::to_string(&parts).unwrap();
        assert_eq!(
            text,
            r#"[{"name":"a","description":"d","bytes":3},{"name":"b","description":"d","error":"no"}]"#
        );
        let back: Vec<ManifestPart> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, parts);
    }
}
