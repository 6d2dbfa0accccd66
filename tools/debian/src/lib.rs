//! Debian archive client for building the Ballast image.
//!
//! # Background
//!
//! Ballast's root filesystem is made of Debian 12 ("bookworm") binary packages plus our own
//! binaries. The exact package versions are pinned, with their sizes and sha256 hashes, in a lock
//! file that is checked in (`packages/debian.lock`), so every build of a given commit uses the
//! same bytes. This crate is the build host's side of that:
//!
//! 1. [`host_sources`] reads which archives to use from the host's apt configuration
//!    (`/etc/apt/sources.list.d/debian.sources`, deb822 format), narrowed to component `main` and
//!    architecture `amd64`; without that file it uses Debian 12's default archives.
//! 2. [`Indexes::load`] fetches each suite's `InRelease`, checks its OpenPGP signature with the
//!    host's `gpgv` and the keyring named by `Signed-By`, then fetches the `Packages` index it lists
//!    and checks that index's size and sha256 against the signed `InRelease`. Indexes are cached by
//!    hash, so a second run only downloads the three small `InRelease` files.
//! 3. [`resolve`] computes the dependency closure (`Depends` and `Pre-Depends`) of the requested
//!    packages, leaving out packages the user excludes, and pins the highest version found in any
//!    suite (Debian version ordering: [`Version`]). The result is a [`Lock`].
//! 4. [`fetch()`] downloads the pinned `.deb` files into a cache and checks them against the lock.
//!    The archive serves only current versions; when a pinned one is gone, the error says to run
//!    `cargo xtask lock`, which refreshes the lock.
//! 5. [`extract()`] unpacks a `.deb`'s files into a directory without root privileges, keeping
//!    modes and symlinks but not owners ([`extract_entries`] reports the owners).
//!
//! The trust chain is: Debian's keyring on the build host -> signed `InRelease` -> sha256 of the
//! `Packages` index -> sha256 of each `.deb` -> the lock. Plain HTTP is therefore enough.
//!
//! # Usage
//!
//! ```no_run
//! use debian::{extract, fetch, host_sources, resolve, Indexes, Lock};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), debian::Error> {
//! let cache = Path::new("build/cache/debian");
//! // Refreshing the lock (`cargo xtask lock`):
//! let indexes = Indexes::load(&host_sources()?, cache)?;
//! let lock = resolve(
//!     &["systemd".to_string(), "linux-image-cloud-amd64".to_string()],
//!     &indexes,
//!     &["debconf".to_string(), "perl-base".to_string()],
//! )?;
//! lock.save(Path::new("packages/debian.lock"))?;
//!
//! // Building the image:
//! let lock = Lock::load(Path::new("packages/debian.lock"))?;
//! for deb in fetch(&lock, cache)? {
//!     extract(&deb, Path::new("build/rootfs"))?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `examples/debian.rs` is a small command line over these functions:
//!
//! ```text
//! cargo run -p debian --example debian -- lock --packages systemd,libc6 --exclude debconf --out packages/debian.lock
//! cargo run -p debian --example debian -- fetch --lock packages/debian.lock --cache build/cache/debian
//! cargo run -p debian --example debian -- extract build/cache/debian/debs/hostname_3.23+nmu1_amd64.deb build/rootfs
//! ```
//!
//! The functions block (the HTTP client is `reqwest::blocking`); do not call them from inside an
//! async runtime, or wrap them in `spawn_blocking`.
//!
//! # Current limitations
//!
//! - Only `deb` sources, component `main`, architecture `amd64`, http(s) URIs. `Signed-By` must
//!   name keyring files (no inline keys or fingerprints). Flat repositories are skipped.
//! - Signature checks need `gpgv` on the build host.
//! - The resolver follows `Depends` and `Pre-Depends` only: `Recommends`, `Conflicts`, `Breaks`
//!   and `Essential` are ignored, so packages that everything assumes (coreutils, bash, ...) must
//!   be requested explicitly if the image wants them. Among several providers of a virtual package
//!   the first by name wins (with a warning). Architecture qualifiers (`:any`) are accepted
//!   without checking `Multi-Arch`, which is fine for a single-architecture image.
//! - Only the current versions are reachable (no snapshot.debian.org fallback): an old lock stops
//!   working when Debian publishes a point release or a security update; refresh it.
//! - Cached indexes and `.deb` files are never pruned.
//! - Extraction handles `data.tar` compressed with xz, zstd, gzip or not at all (no bzip2/lzma,
//!   which bookworm does not use), does not run maintainer scripts, does not create device nodes
//!   (that needs root), and leaves owners to the caller.
#![forbid(unsafe_code)]

mod deb822;
pub mod error;
pub mod extract;
pub mod fetch;
mod http;
pub mod index;
pub mod lock;
pub mod packages;
pub mod release;
pub mod sources;
pub mod version;

pub use error::{Error, Result, REFRESH_COMMAND};
pub use extract::{extract, extract_entries, EntryKind, ExtractedEntry};
pub use fetch::{deb_cache_dir, fetch, PROGRESS_TARGET};
pub use index::{load_index, Indexes, PackageIndex};
pub use lock::{check_lock, resolve, Lock, LockedPackage, LOCK_HEADER, LOCK_PATH};
pub use packages::{parse_packages, parse_relations, BinaryPackage, Op, Relation};
pub use release::{verify_clearsigned, FileEntry, Release};
pub use sources::{
    default_sources, host_sources, parse_sources, read_sources_file, sources_or_defaults,
    ArchiveSource,
};
pub use version::{compare_versions, Version};
