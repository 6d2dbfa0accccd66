//! Signing keys and the root of trust (`root.json`) of a repository.
//!
//! A key directory holds `root.json`, the TUF root metadata that nodes trust, and `keys/`, the
//! private keys that sign the other roles:
//!
//! ```text
//! build/repo-keys/
//!     root.json
//!     keys/signing.pk8            one key for every role (the default), or
//!     keys/{root,targets,snapshot,timestamp}.pk8     one key per role (--separate)
//! ```
//!
//! Keys are Ed25519 in PKCS#8 DER, the form `tough` (and `tuftool -k`) read directly. Every role
//! has a threshold of one signature. The directory lives under `build/`, out of git: these
//! are development keys. A release repository would keep its root key offline and its other
//! keys in a KMS; `tough` supports that through its `KeySource` trait, which this crate does not
//! wire up yet.

use crate::error::{self, IoSnafu, Result};
use crate::time::add_span;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use jiff::{Span, Timestamp};
use snafu::{ensure, OptionExt, ResultExt};
use std::collections::HashMap;
use std::io::Write;
use std::num::NonZeroU64;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};
use tough::sign::{parse_keypair, Sign};

/// The root of trust inside a key directory.
pub const ROOT_JSON: &str = "root.json";
/// The subdirectory holding the private keys.
pub const KEYS_SUBDIR: &str = "keys";
/// File extensions taken as private keys in `keys/` (`pem` for RSA keys made elsewhere).
pub const KEY_EXTENSIONS: [&str; 3] = ["pk8", "der", "pem"];
/// The top-level roles, in the order keys are made.
pub const ROLES: [RoleType; 4] = [
    RoleType::Root,
    RoleType::Targets,
    RoleType::Snapshot,
    RoleType::Timestamp,
];

/// How to make a key directory.
#[derive(Debug, Clone)]
pub struct KeyOptions {
    /// One key per role instead of one key for all roles.
    pub separate: bool,
    /// How long root.json is valid.
    pub root_expires: Span,
    /// The time the expiry counts from (the current time, except in tests).
    pub now: Timestamp,
}

impl Default for KeyOptions {
    fn default() -> Self {
        KeyOptions {
            separate: false,
            root_expires: Span::new().years(1),
            now: Timestamp::now(),
        }
    }
}

/// A directory of signing keys with its `root.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key directory at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyDir { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root of trust, `root.json`.
    pub fn root_json(&self) -> PathBuf {
        self.dir.join(ROOT_JSON)
    }

    /// The private key files, sorted.
    pub fn key_files(&self) -> Result<Vec<PathBuf>> {
        let keys = self.dir.join(KEYS_SUBDIR);
        ensure!(
            self.root_json().is_file() && keys.is_dir(),
            error::NoKeysSnafu { dir: &self.dir }
        );
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&keys).context(IoSnafu {
            action: "list",
            path: &keys,
        })? {
            let path = entry
                .context(IoSnafu {
                    action: "list",
                    path: &keys,
                })?
                .path();
            let is_key = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| KEY_EXTENSIONS.contains(&e));
            if is_key && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        ensure!(!files.is_empty(), error::NoKeysSnafu { dir: &self.dir });
        Ok(files)
    }

    /// Every private key, checked to be readable, as `tough` key sources. `tough` signs each
    /// role with the keys that root.json lists for it and ignores the others.
    pub fn signing_keys(&self) -> Result<Vec<Box<dyn KeySource>>> {
        let mut sources: Vec<Box<dyn KeySource>> = Vec::new();
        for path in self.key_files()? {
            let bytes = std::fs::read(&path).context(IoSnafu {
                action: "read",
                path: &path,
            })?;
            parse_keypair(&bytes).context(error::ParseKeySnafu { path: &path })?;
            sources.push(Box::new(LocalKeySource { path }));
        }
        Ok(sources)
    }

    /// Makes new keys and a root.json signed by the root key in `dir`, which must not hold keys
    /// yet. Everything is written to a temporary directory beside `dir` first and moved into
    /// place at the end, so an interrupted run leaves no half-made key directory.
    pub async fn generate(dir: impl Into<PathBuf>, options: &KeyOptions) -> Result<KeyDir> {
        let dir = dir.into();
        ensure!(
            !dir.join(ROOT_JSON).exists() && !dir.join(KEYS_SUBDIR).exists(),
            error::KeysExistSnafu { dir: &dir }
        );
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).context(IoSnafu {
            action: "create",
            path: &parent,
        })?;
        let staging = tempfile::Builder::new()
            .prefix(".repo-keys-")
            .tempdir_in(&parent)
            .context(IoSnafu {
                action: "create a temporary directory in",
                path: &parent,
            })?;
        let keys_dir = staging.path().join(KEYS_SUBDIR);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&keys_dir)
            .context(IoSnafu {
                action: "create",
                path: &keys_dir,
            })?;

        // Which file signs which role.
        let assignments: Vec<(&str, Vec<RoleType>)> = if options.separate {
            vec![
                ("root", vec![RoleType::Root]),
                ("targets", vec![RoleType::Targets]),
                ("snapshot", vec![RoleType::Snapshot]),
                ("timestamp", vec![RoleType::Timestamp]),
            ]
        } else {
            vec![("signing", ROLES.to_vec())]
        };
        let rng = SystemRandom::new();
        let mut keys = HashMap::new();
        let mut roles: HashMap<RoleType, RoleKeys> = HashMap::new();
        let mut root_key_file = None;
        for (name, signs) in &assignments {
            let path = keys_dir.join(format!("{name}.pk8"));
            let document = Ed25519KeyPair::generate_pkcs8(&rng)
                .ok()
                .context(error::GenerateKeySnafu)?;
            write_private(&path, document.as_ref())?;
            let pair =
                parse_keypair(document.as_ref()).context(error::ParseKeySnafu { path: &path })?;
            let key = pair.tuf_key();
            let key_id: Decoded<Hex> = key.key_id().context(error::KeyIdSnafu { path: &path })?;
            keys.insert(key_id.clone(), key);
            for role in signs {
                roles
                    .entry(*role)
                    .or_insert_with(|| RoleKeys {
                        keyids: Vec::new(),
                        threshold: NonZeroU64::MIN,
                        _extra: HashMap::new(),
                    })
                    .keyids
                    .push(key_id.clone());
                if *role == RoleType::Root {
                    root_key_file = Some(path.clone());
                }
            }
        }

        let root = Root {
            spec_version: "1.0.0".to_string(),
            consistent_snapshot: true,
            version: NonZeroU64::MIN,
            expires: add_span(options.now, options.root_expires)?,
            keys,
            roles,
            _extra: HashMap::new(),
        };
        let root_key: Vec<Box<dyn KeySource>> = vec![Box::new(LocalKeySource {
            path: root_key_file.expect("a key signs root"),
        })];
        let signed = SignedRole::new(root.clone(), &KeyHolder::Root(root), &root_key, &rng)
            .await
            .context(error::SignRootSnafu)?;
        let root_path = staging.path().join(ROOT_JSON);
        std::fs::write(&root_path, signed.buffer()).context(IoSnafu {
            action: "write",
            path: &root_path,
        })?;

        // The keys now point into the staging directory; moving it keeps relative names.
        let staging = staging.keep();
        std::fs::rename(&staging, &dir).context(IoSnafu {
            action: "move the new keys into",
            path: &dir,
        })?;
        tracing::info!(dir = %dir.display(), separate = options.separate, "signing keys made");
        Ok(KeyDir { dir })
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .context(IoSnafu {
            action: "create",
            path,
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .context(IoSnafu {
            action: "write",
            path,
        })
}
