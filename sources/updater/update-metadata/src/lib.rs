//! `update-metadata`: what Ballast's update repository says about its updates, as both sides
//! read it.
//!
//! # Background
//!
//! An update repository is a TUF repository (DESIGN.md) whose target `manifest.json` lists every
//! OS version it offers, per variant and arch, with the target names of its three partition
//! images, the waves in which the fleet may take it and the settings migrations between
//! versions. Two programs read that file: the repository tool (`tools/repo`, on the build host)
//! writes and checks it, and the updater (`sources/updater/updog`, on the node) picks an update
//! from it. This crate is the part they share, with no signing, network or disk code, so that
//! the node's updater does not carry the publishing tool:
//!
//! * [`manifest`]: the types of `manifest.json` in Bottlerocket's shape, parsing with errors
//!   that name the field, the consistency checks, and the migrations between two versions.
//! * [`waves`]: wave policies (TOML files) turned into the manifest's `waves` map, and on the
//!   node, whether a seed's wave is open at a given time.
//! * [`time`]: adding friendly spans ("2 weeks", "1 day") to times, for expirations and waves.
//!
//! # Usage
//!
//! ```
//! use update_metadata::{Manifest, Version};
//!
//! let text = br#"{"updates": [{"variant": "dev", "arch": "x86_64", "version": "1.1.0",
//!     "max_version": "1.1.0", "waves": {},
//!     "images": {"boot": "b.zst", "root": "r.zst", "hash": "h.zst"}}],
//!     "migrations": {"(1.0.0, 1.1.0)": ["migrate_v1.1.0_motd"]}}"#;
//! let manifest = Manifest::parse(text)?;
//! let update = &manifest.updates[0];
//! assert!(update.is_ready(1000, update_metadata::Timestamp::now()));
//! let steps = manifest.migrations_between(&Version::new(1, 0, 0), &update.version)?;
//! assert_eq!(steps, ["migrate_v1.1.0_motd"]);
//! # Ok::<(), update_metadata::Error>(())
//! ```
//!
//! # Current limitations
//!
//! * Only the fields Bottlerocket's manifest has today; unknown fields are refused, so a newer
//!   manifest with extra fields needs a newer reader.
//! * Wave times are whole seconds.
#![forbid(unsafe_code)]

pub mod error;
pub mod manifest;
pub mod time;
pub mod waves;

pub use error::{Error, Result};
pub use manifest::{Images, Manifest, Update, MANIFEST_TARGET, MAX_SEED};
pub use waves::WavePolicy;

/// Re-exported so callers can name times, spans and versions without depending on the crates.
pub use jiff::{Span, Timestamp};
pub use semver::Version;
