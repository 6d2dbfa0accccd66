//! `repo`: makes and keeps Ballast's signed update repository, a TUF repository built with the
//! `tough` crate from the images of `cargo xtask build`.
//!
//! # Background
//!
//! Nodes update from a TUF repository (DESIGN.md): the updater trusts the `root.json` shipped in
//! its image, fetches `timestamp.json`, `snapshot.json` and `targets.json` through `tough`, reads
//! the target `manifest.json`, picks an update for its variant, arch and wave, and streams the
//! `boot`, `root` and `hash` targets onto its inactive partition set, each checked against the
//! length and sha256 in the signed targets metadata. This crate is the publishing side, used by
//! `cargo xtask repo ...` and by tests that need a real repository:
//!
//! * [`KeyDir::generate`]: development signing keys and a signed `root.json` ([`keys`]).
//! * [`add_images`]: compress one build's three partition images, add them and an entry in
//!   `manifest.json` ([`manifest`], waves from [`waves`]), sign targets, snapshot and timestamp.
//! * [`refresh_timestamp`] and [`refresh`]: sign again before metadata expires.
//! * [`validate`]: read the repository back with tough's client exactly as a node would,
//!   download and verify every target, and check the manifest against the targets.
//!
//! A repository directory is ready to serve as is: `metadata/` (the metadata URL) and
//! `targets/` (the targets URL). It uses consistent snapshots, as Bottlerocket's do: metadata
//! files carry their version (`3.targets.json`) and targets their sha256
//! (`<sha256>.manifest.json`), so a client in the middle of an update never mixes two
//! publications; only `timestamp.json` is replaced, and it is moved into place last.
//!
//! ## Compression: zstd
//!
//! Image targets are compressed with zstd (level 9 by default, with the frame's content
//! checksum), named `ballast-<variant>-<arch>-<version>-<build>-{boot.ext4,root.erofs,
//! root.verity}.zst`. Bottlerocket uses lz4; zstd was chosen here because the workspace already
//! builds it (no new dependency for the updater), it compresses the mostly empty BOOT ext4 image
//! and any slack much better than lz4 at a decompression speed (well over 500 MB/s) that still
//! exceeds what a disk or network delivers, and its frame checksum is a second check on what is
//! written to a partition. The erofs root is already lz4hc-compressed inside, so higher levels
//! gain little there; `--zstd-level` trades build time for size.
//!
//! # Usage
//!
//! ```no_run
//! use repo::{add_images, AddOptions, ImageSet, KeyDir, KeyOptions, RepoDir};
//! use std::path::Path;
//!
//! # async fn example() -> repo::Result<()> {
//! let keys = KeyDir::generate("build/repo-keys", &KeyOptions::default()).await?;
//! let repo = RepoDir::new("build/repo");
//! let images = ImageSet::from_build_dir(Path::new("build/images/dev-0.1.0"))?;
//! add_images(&repo, &keys, &images, &AddOptions::default()).await?;
//! let checked = repo.validate(&keys.root_json()).await?;
//! println!("{} targets verified", checked.targets.len());
//! # Ok(())
//! # }
//! ```
//!
//! From the command line: `cargo xtask repo keys`, `cargo xtask repo add --variant dev`,
//! `cargo xtask repo refresh-timestamp`, `cargo xtask repo validate`.
//!
//! # Current limitations
//!
//! * Development keys only: files under `build/repo-keys`, one signature per role. No KMS or
//!   hardware keys, no root rotation (a new `2.root.json` signed by the old and new root keys),
//!   no delegated targets.
//! * One repository for every variant and arch (the manifest tells them apart); Bottlerocket
//!   keeps one per variant and arch. Point `--repo` at different directories to do the same.
//! * Migrations are added per version pair ([`add_migrations`], `cargo xtask repo
//!   add-migrations`); nothing checks that every pair between two published versions is listed.
//! * [`validate`] reads `file://` URLs only (tough's HTTP transport is not enabled), and keeps
//!   one target at a time in a temporary file.
//! * Old targets are never deleted from `targets/`, only from the metadata when an update is
//!   replaced.
//! * No lock: two `add` runs on one repository at the same time can lose one of the additions.
#![forbid(unsafe_code)]

pub mod error;
/// The manifest and wave types live in the `update-metadata` crate, shared with the updater.
pub use update_metadata::{manifest, waves};
pub mod keys;
pub mod repository;
pub mod serve;
pub mod time;

pub use error::{Error, Result};
pub use keys::{KeyDir, KeyOptions};
pub use manifest::{Images, Manifest, Update, MANIFEST_TARGET};
pub use repository::{
    add_images, add_migrations, add_migrations_with, load, refresh, refresh_timestamp, validate,
    AddOptions, CheckedTarget, Expirations, ImageFile, ImageSet, MigrationOptions, Published,
    PublishedMigrations, RepoDir, Validation, Versions, DEFAULT_ZSTD_LEVEL,
};
pub use waves::WavePolicy;

/// Re-exported so callers can name times, spans and versions without depending on the crates.
pub use jiff::{Span, Timestamp};
pub use semver::Version;
/// The TUF client and schema, for callers (such as updater tests) that read the repository.
pub use tough;
