//! Test migration: renames `settings.motd` to `settings.greeting` and the group `settings.ntp`
//! to `settings.time`.
#![forbid(unsafe_code)]
use migration_fixtures as common;

use migration_helpers::RenameSetting;

fn main() -> std::process::ExitCode {
    common::run((
        RenameSetting::new("settings.motd", "settings.greeting"),
        common::NAP,
        RenameSetting::new("settings.ntp", "settings.time"),
    ))
}
