//! `rename-ntp-servers`: the datastore migration of the rename demo. Going forward it renames
//! the setting `settings.ntp.time-servers` to `settings.ntp.servers`, with its metadata; going
//! backward it renames it back.
//!
//! # Background
//!
//! The demo shows a setting renamed between two OS versions without losing what the user set:
//! the newer version's model calls the NTP servers `settings.ntp.servers`, the older one
//! `settings.ntp.time-servers` (Bottlerocket's name). Easy to see in a VM: `apiclient get
//! settings.ntp` before and after the update, and `/etc/systemd/timesyncd.conf` keeps the
//! same servers. The key names are fixed here: a migration is run by the migrator with
//! Bottlerocket's fixed interface, so there is no natural place for them on the command line,
//! and a rename that differed from build to build would be a different migration under the
//! same name.
//!
//! # Usage
//!
//! The release that makes the rename, say 0.2.0 after 0.1.0, publishes this program under the
//! name of the version it migrates to:
//!
//! ```text
//! cargo build --release -p rename-ntp-servers
//! mkdir -p build/migrations
//! cp target/release/rename-ntp-servers build/migrations/migrate_v0.2.0_rename-ntp-servers
//! cargo xtask repo add-migrations --from 0.1.0 --to 0.2.0 \
//!     build/migrations/migrate_v0.2.0_rename-ntp-servers
//! ```
//!
//! The updater saves it with the signed metadata; at the first boot of 0.2.0 the migrator runs
//! it forward, and after a rollback to 0.1.0 backward. By hand, on a copy of a store:
//! `rename-ntp-servers --source-datastore DIR --target-datastore DIR --forward`.
//!
//! # Current limitations
//!
//! - Not in any image package: it exists for the demo and runs only as a signed migration.
//! - When a store holds both names (set by hand behind the API), it refuses, leaving the
//!   datastore unchanged, and says which key to remove.
#![forbid(unsafe_code)]

use migration_helpers::{migrate, RenameSetting};
use std::process::ExitCode;

/// The name in the older version.
const OLD: &str = "settings.ntp.time-servers";
/// The name in the newer version.
const NEW: &str = "settings.ntp.servers";

fn main() -> ExitCode {
    migrate(RenameSetting::new(OLD, NEW))
}
