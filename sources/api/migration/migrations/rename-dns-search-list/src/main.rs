//! `rename-dns-search-list`: the datastore migration that goes with the models crate's
//! `next-dns-names` feature. Going forward it renames `settings.dns.search-list` to
//! `settings.dns.search-domains`, with its metadata; going backward it renames it back.
//!
//! # Background
//!
//! The VM update test (`tools/xtask/tests/vm_update.rs`) needs an OS version whose model
//! differs from the running one in a setting the user has set. The "next" model is the normal
//! one built with `--cargo-feature models/next-dns-names`, plus the test package
//! `test-next-dns-names` whose resolv.conf template reads the new name. The setting was chosen
//! because it has no default anywhere: the value on the node after the update can only have come
//! through this migration, never from storewolf's defaults, and it shows in a file
//! (`/etc/resolv.conf`, `search ...`).
//!
//! The sibling `rename-ntp-servers` is the same kind of program for a rename that no image
//! makes; this one has an image on the other side, so a node really runs it forward at the first
//! boot of the new version and backward after a rollback.
//!
//! # Usage
//!
//! Published under the name of the version it migrates to, here the test's N+3:
//!
//! ```text
//! cargo build --release -p rename-dns-search-list
//! cp target/release/rename-dns-search-list build/migrations/migrate_v0.1.3_rename-dns-search-list
//! cargo xtask repo add-migrations --from 0.1.0 --to 0.1.3 \
//!     build/migrations/migrate_v0.1.3_rename-dns-search-list
//! ```
//!
//! The VM test does the same through `repo::add_migrations`. By hand, on a copy of a store:
//! `rename-dns-search-list --source-datastore DIR --target-datastore DIR --forward`.
//!
//! # Current limitations
//!
//! - Test only: in no image package, and no real release renames this setting.
//! - When a store holds both names (set by hand behind the API), it refuses, leaving the
//!   datastore unchanged, and says which key to remove.
#![forbid(unsafe_code)]

use migration_helpers::{migrate, RenameSetting};
use std::process::ExitCode;

/// The name in the default model.
const OLD: &str = "settings.dns.search-list";
/// The name in the model built with `next-dns-names`.
const NEW: &str = "settings.dns.search-domains";

fn main() -> ExitCode {
    migrate(RenameSetting::new(OLD, NEW))
}
